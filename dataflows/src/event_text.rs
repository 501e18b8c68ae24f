//! An event's own text in one allocation: its JSON, then those of its name, resource version
//! and message that the JSON does not hold verbatim.
//!
//! A burst of events is held whole until every worker has passed its tick, so what one event
//! costs is what a burst costs. The name, the version and (most often) the message are written
//! verbatim inside the JSON; kept as spans into it they take no allocation of their own, and an
//! event is freed with one `free` instead of five.
//!
//! The events of a list go further: their texts are written side by side into shared chunks
//! ([`TextChunks`]), so a burst costs one allocation per chunk, and the thread that frees the
//! events (not the one that read them) gives back a chunk at a time, not an event at a time.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where a part lies in the text.
#[derive(Clone, Copy, Default)]
struct Span {
    start: u32,
    len: u32,
}

/// Where an event's text is held.
#[derive(Clone)]
enum Store {
    /// An allocation of its own.
    Own(Box<str>),
    /// `chunk[start..start + len]`, beside the texts of other events of the same list.
    Shared { chunk: Arc<String>, start: u32, len: u32 },
    /// Written into the chunk [`TextChunks`] is filling, at `start`; the chunk is not shared
    /// yet. Only the reader of a list holds such texts, until it seals them.
    Pending { start: u32, len: u32 },
}

impl Default for Store {
    fn default() -> Self {
        Store::Own(Box::default())
    }
}

/// The JSON, name, resource version and message of an event. Compared, hashed and serialized
/// by those four strings, whatever their layout.
#[derive(Clone, Default)]
pub struct EventText {
    text: Store,
    /// The JSON is `text[..raw]`.
    raw: u32,
    name: Span,
    resource_version: Span,
    message: Span,
}

impl EventText {
    /// The four parts; `raw` is reused as the allocation when it holds the others verbatim.
    pub fn new(raw: String, name: &str, resource_version: &str, message: &str) -> EventText {
        EventText::with_places(raw, name, resource_version, message, [None; 3])
    }

    /// As [`EventText::new`], told where in `raw` the name, the version and the message may
    /// be: a place that holds its part is taken without a search; the others are searched.
    pub fn with_places(
        raw: String,
        name: &str,
        resource_version: &str,
        message: &str,
        places: [Option<usize>; 3],
    ) -> EventText {
        let parts = [name, resource_version, message];
        let found = find(&raw, parts, places, true);
        let missing: usize =
            parts.iter().zip(&found).filter(|(_, at)| at.is_none()).map(|(p, _)| p.len()).sum();
        let raw_len = raw.len();
        let mut text = raw;
        if missing > 0 {
            text.reserve_exact(missing);
        }
        let mut spans = [Span::default(); 3];
        for ((part, at), span) in parts.iter().zip(found).zip(&mut spans) {
            let start = at.unwrap_or_else(|| {
                let start = text.len();
                text.push_str(part);
                start
            });
            *span = Span { start: offset(start), len: offset(part.len()) };
        }
        let [name, resource_version, message] = spans;
        EventText {
            text: Store::Own(text.into_boxed_str()),
            raw: offset(raw_len),
            name,
            resource_version,
            message,
        }
    }

    /// The whole text: the JSON, then the parts it does not hold.
    fn text(&self) -> &str {
        match &self.text {
            Store::Own(text) => text,
            Store::Shared { chunk, start, len } => {
                let start = *start as usize;
                chunk.get(start..start + *len as usize).unwrap_or("")
            }
            Store::Pending { .. } => "",
        }
    }

    /// This text in an allocation of its own, when it shares a chunk: kept alone (the other
    /// events of its list dropped), it then holds no more than its own bytes.
    pub fn detach(&mut self) {
        if let Store::Shared { .. } = self.text {
            self.text = Store::Own(Box::from(self.text()));
        }
    }

    /// [`EventText::detach`] when its chunk is mostly held for texts no event holds any
    /// more: by the count of its holders, over four times the bytes they hold (at this text's
    /// size). A chunk still well used stays, as copying out of it would only add to it.
    pub fn detach_if_sparse(&mut self) {
        if let Store::Shared { chunk, len, .. } = &self.text {
            let held = Arc::strong_count(chunk).saturating_mul(*len as usize);
            if held.saturating_mul(4) < chunk.len() {
                self.detach();
            }
        }
    }

    /// The event's JSON as the source kept it (empty when there is none).
    pub fn raw(&self) -> &str {
        self.text().get(..self.raw as usize).unwrap_or("")
    }

    pub fn name(&self) -> &str {
        self.part(self.name)
    }

    pub fn resource_version(&self) -> &str {
        self.part(self.resource_version)
    }

    pub fn message(&self) -> &str {
        self.part(self.message)
    }

    /// This text with another message.
    pub fn with_message(&self, message: &str) -> EventText {
        EventText::new(self.raw().to_string(), self.name(), self.resource_version(), message)
    }

    /// This text with another JSON.
    pub fn with_raw(&self, raw: String) -> EventText {
        EventText::new(raw, self.name(), self.resource_version(), self.message())
    }

    /// Whether this text lies in a chunk shared with other events' texts.
    pub fn shares_chunk(&self) -> bool {
        matches!(self.text, Store::Shared { .. })
    }

    /// Bytes held, for accounting.
    pub fn heap_bytes(&self) -> usize {
        self.text().len()
    }

    fn part(&self, span: Span) -> &str {
        let start = span.start as usize;
        self.text().get(start..start + span.len as usize).unwrap_or("")
    }

    fn parts(&self) -> (&str, &str, &str, &str) {
        (self.raw(), self.name(), self.resource_version(), self.message())
    }
}

/// Bytes a chunk is allocated with; a text that does not fit in what is left starts another.
const CHUNK_BYTES: usize = 64 << 10;

/// Writes the texts of a list's events side by side into chunks of [`CHUNK_BYTES`].
///
/// A text is written with [`TextChunks::buf`] and taken with [`TextChunks::text`], which gives
/// a pending [`EventText`]: its parts read as empty until [`TextChunks::seal`] has shared the
/// chunk with it. The reader seals every text it took before the events leave it.
#[derive(Default)]
pub struct TextChunks {
    buf: String,
}

impl TextChunks {
    /// Whether `bytes` more fit in the chunk being filled without growing it; when not, the
    /// caller seals what it holds, and the next write starts a new chunk.
    pub fn fits(&self, bytes: usize) -> bool {
        self.buf.is_empty() || self.buf.capacity() - self.buf.len() >= bytes
    }

    /// The chunk being filled, to write a text at its end (from `buf().len()`). A text given
    /// up is taken back with [`TextChunks::truncate`].
    pub fn buf(&mut self) -> &mut String {
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(CHUNK_BYTES);
        }
        &mut self.buf
    }

    /// Bytes in the chunk being filled: where the next text starts.
    pub fn written(&self) -> usize {
        self.buf.len()
    }

    /// Gives up what was written from `start` on.
    pub fn truncate(&mut self, start: usize) {
        if start <= self.buf.len() && self.buf.is_char_boundary(start) {
            self.buf.truncate(start);
        }
    }

    /// The JSON written from `start` to the end as an event's text, with its parts (as
    /// [`EventText::with_places`], places counted from `start`); pending until sealed.
    pub fn text(
        &mut self,
        start: usize,
        name: &str,
        resource_version: &str,
        message: &str,
        places: [Option<usize>; 3],
    ) -> EventText {
        let parts = [name, resource_version, message];
        let raw = self.buf.get(start..).unwrap_or("");
        let raw_len = raw.len();
        // A place given that does not hold its part holds it escaped: no search finds it.
        let found = find(raw, parts, places, false);
        let mut spans = [Span::default(); 3];
        for ((part, at), span) in parts.iter().zip(found).zip(&mut spans) {
            let at = at.unwrap_or_else(|| {
                let at = self.buf.len() - start;
                self.buf.push_str(part);
                at
            });
            *span = Span { start: offset(at), len: offset(part.len()) };
        }
        let [name, resource_version, message] = spans;
        let len = self.buf.len().saturating_sub(start);
        EventText {
            text: Store::Pending { start: offset(start), len: offset(len) },
            raw: offset(raw_len),
            name,
            resource_version,
            message,
        }
    }

    /// Shares the chunk written so far with its pending texts among `texts`, and starts
    /// another with the next write.
    pub fn seal<'t>(&mut self, texts: impl IntoIterator<Item = &'t mut EventText>) {
        if self.buf.is_empty() {
            return;
        }
        let mut chunk = std::mem::take(&mut self.buf);
        // The last chunk of a list is rarely full (shrinking it in place costs no copy).
        chunk.shrink_to_fit();
        let chunk = Arc::new(chunk);
        for text in texts {
            if let Store::Pending { start, len } = text.text {
                text.text = Store::Shared { chunk: Arc::clone(&chunk), start, len };
            }
        }
    }
}

/// Where each part occurs in `raw` as a whole JSON string (between quotes, so written without
/// escapes); an empty part needs no place. One pass over the quotes finds them all; with
/// `search` false, only the parts without a place given are searched.
fn find<const N: usize>(
    raw: &str,
    parts: [&str; N],
    places: [Option<usize>; N],
    search: bool,
) -> [Option<usize>; N] {
    let mut found = [None; N];
    for ((at, part), place) in found.iter_mut().zip(parts).zip(places) {
        *at = if part.is_empty() {
            Some(0)
        } else {
            place.filter(|&p| raw.get(p..p.saturating_add(part.len())) == Some(part))
        };
    }
    let mut wanted = [false; N];
    for ((wanted, at), place) in wanted.iter_mut().zip(&found).zip(places) {
        *wanted = at.is_none() && (search || place.is_none());
    }
    let mut left = wanted.iter().filter(|w| **w).count();
    let bytes = raw.as_bytes();
    for quote in memchr::memchr_iter(b'"', bytes) {
        if left == 0 {
            break;
        }
        let start = quote + 1;
        let rest = &bytes[start..];
        let Some(&first) = rest.first() else { break };
        for ((part, at), wanted) in parts.iter().zip(&mut found).zip(&mut wanted) {
            // The first byte tells most strings apart without a call.
            let part = part.as_bytes();
            if *wanted
                && part.first() == Some(&first)
                && rest.get(part.len()) == Some(&b'"')
                && rest.starts_with(part)
            {
                *at = Some(start);
                *wanted = false;
                left -= 1;
            }
        }
    }
    found
}

/// An offset as stored. Texts are bounded far below 4 GiB (an event's JSON is cut to fit
/// InfluxDB's 64 KiB strings); a larger one would read as empty parts, never out of bounds.
fn offset(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl PartialEq for EventText {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for EventText {}

impl PartialOrd for EventText {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for EventText {
    fn cmp(&self, other: &Self) -> Ordering {
        self.parts().cmp(&other.parts())
    }
}

impl Hash for EventText {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.parts().hash(state)
    }
}

impl fmt::Debug for EventText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventText")
            .field("name", &self.name())
            .field("resource_version", &self.resource_version())
            .field("message", &self.message())
            .field("raw", &self.raw())
            .finish()
    }
}

impl Serialize for EventText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.parts().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for EventText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (raw, name, resource_version, message): (String, String, String, String) =
            Deserialize::deserialize(deserializer)?;
        Ok(EventText::new(raw, &name, &resource_version, &message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_found_in_the_json_take_no_room() {
        let raw = r#"{"message":"pulled","metadata":{"name":"a.1","resourceVersion":"7"}}"#;
        let text = EventText::new(raw.to_string(), "a.1", "7", "pulled");
        assert_eq!(text.parts(), (raw, "a.1", "7", "pulled"));
        assert_eq!(text.heap_bytes(), raw.len());
    }

    #[test]
    fn parts_not_in_the_json_are_appended() {
        let raw = r#"{"message":"say \"hi\"","metadata":{"name":"a.1","x":"9a"}}"#;
        let text = EventText::new(raw.to_string(), "a.1", "9", "say \"hi\"");
        assert_eq!(text.parts(), (raw, "a.1", "9", "say \"hi\""));
        assert_eq!(text.heap_bytes(), raw.len() + 1 + 8, "9 is only part of a string there");
        let none = EventText::new(String::new(), "n", "", "m");
        assert_eq!(none.parts(), ("", "n", "", "m"));
        assert_eq!(EventText::default().parts(), ("", "", "", ""));
    }

    #[test]
    fn places_given_are_taken_when_they_hold_their_part() {
        let raw = r#"{"a":"x","message":"x","metadata":{"name":"a.1","resourceVersion":"7"}}"#;
        let searched = EventText::new(raw.to_string(), "a.1", "7", "x");
        let message_at = raw.find(r#""message":"x""#).unwrap() + 11;
        let placed = EventText::with_places(
            raw.to_string(),
            "a.1",
            "7",
            "x",
            [Some(0), Some(raw.len()), Some(message_at)],
        );
        assert_eq!(placed, searched);
        assert_eq!(placed.parts(), (raw, "a.1", "7", "x"), "wrong places fall back to the search");
        assert_eq!(placed.message.start as usize, message_at, "a right place is taken");
        assert_eq!(searched.message.start, 6, "the search finds the first");
        assert_eq!(placed.heap_bytes(), raw.len());
    }

    #[test]
    fn equal_by_content_whatever_the_layout() {
        let inside = EventText::new(r#"{"m":"x"}"#.to_string(), "", "", "x");
        let outside = EventText::new(String::new(), "", "", "x").with_raw(r#"{"m":"x"}"#.to_string());
        assert_eq!(inside, outside);
        let other = inside.with_message("y");
        assert_ne!(inside, other);
        assert_eq!(other.message(), "y");
        assert_eq!(other.raw(), inside.raw());
    }

    #[test]
    fn texts_written_into_chunks_read_as_their_own_once_sealed() {
        let mut chunks = TextChunks::default();
        let first = r#"{"message":"pulled","metadata":{"name":"a.1","resourceVersion":"7"}}"#;
        chunks.buf().push_str(first);
        let mut texts = vec![chunks.text(0, "a.1", "7", "pulled", [None; 3])];
        assert_eq!(texts[0].parts(), ("", "", "", ""), "pending: nothing to read yet");
        let start = chunks.written();
        chunks.buf().push_str(r#"{"given":"up"}"#);
        chunks.truncate(start);
        let second = r#"{"message":"x","metadata":{"name":"b.1"}}"#;
        chunks.buf().push_str(second);
        texts.push(chunks.text(start, "b.1", "9", "say \"hi\"", [None, None, Some(12)]));
        chunks.seal(texts.iter_mut());
        assert_eq!(texts[0], EventText::new(first.to_string(), "a.1", "7", "pulled"));
        assert_eq!(texts[1].parts(), (second, "b.1", "9", "say \"hi\""), "missing parts appended");
        assert_eq!(texts[1], EventText::new(second.to_string(), "b.1", "9", "say \"hi\""));
        assert!(
            matches!(&texts[0].text, Store::Shared { chunk, .. } if chunk.len() == first.len() + second.len() + 1 + 8)
        );
        let mut alone = texts.pop().unwrap();
        alone.detach();
        assert!(matches!(alone.text, Store::Own(_)));
        assert_eq!(alone.parts(), (second, "b.1", "9", "say \"hi\""));
        assert_eq!(chunks.written(), 0, "the next text starts another chunk");
    }

    #[test]
    fn round_trips_through_serde() {
        let text = EventText::new(r#"{"a":"b"}"#.to_string(), "b", "12", "c");
        let json = serde_json::to_string(&text).unwrap();
        let back: EventText = serde_json::from_str(&json).unwrap();
        assert_eq!(back, text);
        assert_eq!(back.parts(), text.parts());
    }
}
