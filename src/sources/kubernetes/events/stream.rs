//! An `EventList` decoded as it is read: each item is converted as soon as it is complete, and
//! the events go out in chunks, so a list of any size needs memory for one read buffer and one
//! chunk, not for the whole body.
//!
//! Items are streamed when the list says what it is (`kind` and `apiVersion`) before its
//! `items`, as API servers write it; otherwise the items are kept undecoded until the end, where
//! the list's `apiVersion` tells how to read them.

use std::borrow::Cow;
use std::io::{self, Read};
use std::ops::{ControlFlow, Range};

use serde::Deserialize;
use serde::de::Error as _;
use serde_json::value::RawValue;

use super::super::raw_list::{VersionMeta, identity};
use super::compact::Tape;
use super::{EVENTS_V1, EventError, EventListParsed, convert_item, convert_scanned};
use heapster_dataflows::event_text::TextChunks;
use heapster_dataflows::name::Interner;

/// Bytes read at a time.
const READ_SIZE: usize = 1 << 20;

/// Events a chunk reserves room for at once (a list read whole grows past it).
const MAX_RESERVE: usize = 4096;

/// Reads an `EventList` (core `v1` or `events.k8s.io/v1`) from `reader`, handing each `chunk`
/// events (and the warnings about the items read meanwhile) to `each`; stops early when `each`
/// breaks. Returns the list's `resourceVersion`.
///
/// Bad items are skipped with a warning naming them; a body that is not an `EventList` is an
/// error, after the events of the items before the fault have been handed over.
pub fn read_event_list(
    reader: impl Read,
    chunk: usize,
    mut each: impl FnMut(EventListParsed) -> ControlFlow<()>,
) -> Result<Option<String>, EventError> {
    let mut input =
        Input { reader, buf: Vec::new(), pos: 0, eof: false, tape: Tape::default(), scanned: false };
    let mut list = ListState { chunk: chunk.max(1), ..ListState::default() };
    match read_list(&mut input, &mut list, &mut each) {
        Ok(()) => {}
        Err(Stop::Stopped) => return Ok(list.resource_version),
        Err(Stop::Failed(e)) => return Err(e),
    }
    if list.kind.as_deref().is_some_and(|k| k != "EventList") {
        return Err(EventError::WrongKind(list.kind.unwrap_or_default()));
    }
    if !list.items_seen {
        return Err(EventError::NoItems);
    }
    // Items that came before the list said what it is.
    let pending = std::mem::take(&mut list.pending);
    for raw in pending {
        if list.item(raw.get(), None, &mut each).is_break() {
            return Ok(list.resource_version);
        }
    }
    let _ = list.flush(&mut each);
    Ok(list.resource_version)
}

enum Stop {
    /// `each` asked to stop.
    Stopped,
    Failed(EventError),
}

impl From<EventError> for Stop {
    fn from(e: EventError) -> Self {
        Stop::Failed(e)
    }
}

#[derive(Default)]
struct ListState {
    chunk: usize,
    kind: Option<String>,
    api_version: Option<String>,
    resource_version: Option<String>,
    items_seen: bool,
    index: usize,
    /// Undecoded items, waiting for the list's `apiVersion`.
    pending: Vec<Box<RawValue>>,
    out: EventListParsed,
    names: Interner,
    /// Where the events' texts are written; `out.events[sealed..]` may hold pending ones.
    texts: TextChunks,
    sealed: usize,
}

impl ListState {
    /// Whether items can be converted as they come: the list already said what it is.
    fn streaming(&self) -> bool {
        self.kind.is_some() && self.api_version.is_some()
    }

    /// Converts one item; `raw` is valid JSON, and `tape` its scan if it was scanned.
    fn item(
        &mut self,
        raw: &str,
        tape: Option<&mut Tape>,
        each: &mut impl FnMut(EventListParsed) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let index = self.index;
        self.index += 1;
        let events_v1 = self.api_version.as_deref() == Some(EVENTS_V1);
        let converted = match tape {
            Some(tape) => {
                // Compacting never makes an item longer than it came (the parts the JSON
                // lacks are bounded by it too), so twice its length is room enough.
                if !self.texts.fits(raw.len().saturating_mul(2)) {
                    self.seal();
                }
                convert_scanned(raw, events_v1, &mut self.names, Some(tape), Some(&mut self.texts))
            }
            None => convert_item(raw, events_v1, &mut self.names),
        };
        match converted {
            Ok(Ok((event, mut warnings))) => {
                if self.out.events.capacity() == 0 {
                    // A chunk's events in one allocation, not a series of doublings.
                    self.out.events.reserve_exact(self.chunk.min(MAX_RESERVE));
                }
                self.out.events.push(event);
                self.out.warnings.append(&mut warnings);
            }
            Ok(Err(e)) => self.out.warnings.push(format!("EventList item {index} skipped: {e}")),
            Err(e) => {
                let who = serde_json::from_str(raw).map(|raw| identity(raw, "event")).unwrap_or_default();
                self.out.warnings.push(format!("EventList item {index}{who}: {e}"))
            }
        }
        if self.out.events.len() >= self.chunk { self.flush(each) } else { ControlFlow::Continue(()) }
    }

    fn flush(&mut self, each: &mut impl FnMut(EventListParsed) -> ControlFlow<()>) -> ControlFlow<()> {
        if self.out.events.is_empty() && self.out.warnings.is_empty() {
            return ControlFlow::Continue(());
        }
        self.seal();
        self.sealed = 0;
        let mut out = std::mem::take(&mut self.out);
        out.resource_version.clone_from(&self.resource_version);
        each(out)
    }

    /// Shares the chunk written so far with the events that wait for it.
    fn seal(&mut self) {
        let waiting = self.out.events.get_mut(self.sealed..).unwrap_or_default();
        self.texts.seal(waiting.iter_mut().map(|event| &mut event.text));
        self.sealed = self.out.events.len();
    }
}

fn read_list(
    input: &mut Input<impl Read>,
    list: &mut ListState,
    each: &mut impl FnMut(EventListParsed) -> ControlFlow<()>,
) -> Result<(), Stop> {
    input.expect(b'{')?;
    if input.peek()? == Some(b'}') {
        input.pos += 1;
    } else {
        loop {
            let key = input.value()?;
            let key: Cow<'_, str> = input.decode(key)?;
            let key = key.into_owned();
            input.expect(b':')?;
            match key.as_str() {
                "items" => read_items(input, list, each)?,
                "kind" => {
                    let range = input.value()?;
                    list.kind = input.decode(range)?;
                    if let Some(kind) = list.kind.as_deref().filter(|k| *k != "EventList") {
                        return Err(EventError::WrongKind(kind.to_string()).into());
                    }
                }
                "apiVersion" => {
                    let range = input.value()?;
                    list.api_version = input.decode(range)?;
                }
                "metadata" => {
                    let range = input.value()?;
                    let meta: Option<VersionMeta> = input.decode(range)?;
                    list.resource_version = meta.and_then(|m| m.resource_version).filter(|v| !v.is_empty());
                }
                _ => {
                    input.value()?;
                }
            }
            match input.next_byte()? {
                Some(b',') => {}
                Some(b'}') => break,
                _ => return Err(not_a_list("expected `,` or `}` after a member of the list").into()),
            }
        }
    }
    if input.peek()?.is_some() {
        return Err(not_a_list("trailing characters after the list").into());
    }
    Ok(())
}

fn read_items(
    input: &mut Input<impl Read>,
    list: &mut ListState,
    each: &mut impl FnMut(EventListParsed) -> ControlFlow<()>,
) -> Result<(), Stop> {
    list.items_seen = true;
    if input.peek()? == Some(b'n') {
        let range = input.value()?;
        let _: () = input.decode(range)?;
        return Ok(());
    }
    input.expect(b'[')?;
    if input.peek()? == Some(b']') {
        input.pos += 1;
        return Ok(());
    }
    loop {
        let range = input.value()?;
        if list.streaming() {
            // The range is valid JSON already; only its text needs checking.
            let (raw, tape) = match std::str::from_utf8(&input.buf[range.clone()]) {
                // The scan's offsets are into the range, which it started.
                Ok(raw) => (raw, input.scanned.then_some(&mut input.tape)),
                Err(_) => (input.decode::<&RawValue>(range)?.get(), None),
            };
            if list.item(raw, tape, each).is_break() {
                return Err(Stop::Stopped);
            }
        } else {
            let raw: &RawValue = input.decode(range)?;
            list.pending.push(raw.to_owned());
        }
        match input.next_byte()? {
            Some(b',') => {}
            Some(b']') => return Ok(()),
            _ => return Err(not_a_list("expected `,` or `]` after an item").into()),
        }
    }
}

fn not_a_list(what: &str) -> EventError {
    EventError::NotAList(serde_json::Error::custom(what))
}

/// The body, read a buffer at a time.
struct Input<R> {
    reader: R,
    buf: Vec<u8>,
    pos: usize,
    eof: bool,
    /// The scan of the last value read, when `scanned` says it is one.
    tape: Tape,
    scanned: bool,
}

impl<R: Read> Input<R> {
    /// Reads more, keeping what is not consumed yet; false at the end of the body.
    fn fill(&mut self) -> Result<bool, EventError> {
        if self.eof {
            return Ok(false);
        }
        self.buf.drain(..self.pos);
        self.pos = 0;
        let len = self.buf.len();
        self.buf.resize(len + READ_SIZE, 0);
        let read = loop {
            match self.reader.read(&mut self.buf[len..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.buf.truncate(len);
                    return Err(EventError::Read(e));
                }
            }
        };
        self.buf.truncate(len + read);
        self.eof = read == 0;
        Ok(read > 0)
    }

    /// The next byte that is not whitespace, not consumed; `None` at the end of the body.
    fn peek(&mut self) -> Result<Option<u8>, EventError> {
        loop {
            while let Some(&b) = self.buf.get(self.pos) {
                if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                    return Ok(Some(b));
                }
                self.pos += 1;
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    fn next_byte(&mut self) -> Result<Option<u8>, EventError> {
        let b = self.peek()?;
        if b.is_some() {
            self.pos += 1;
        }
        Ok(b)
    }

    fn expect(&mut self, wanted: u8) -> Result<(), EventError> {
        match self.next_byte()? {
            Some(b) if b == wanted => Ok(()),
            Some(b) => {
                Err(not_a_list(&format!("expected `{}`, found `{}`", wanted as char, b.escape_ascii())))
            }
            None => Err(not_a_list(&format!("expected `{}`, found the end of the body", wanted as char))),
        }
    }

    /// The next whole JSON value, consumed; reads on while the buffer ends inside it.
    fn value(&mut self) -> Result<Range<usize>, EventError> {
        self.peek()?;
        // An event as API servers write it is found by a scan that checks it as it goes, and
        // whose tape its conversion reads; anything else, or an item the buffer ends inside,
        // is measured by serde_json.
        self.scanned = false;
        let (buf, tape) = (&self.buf, &mut self.tape);
        if let Some(len) = buf.get(self.pos..).and_then(|rest| tape.scan(rest, 0)) {
            let start = self.pos;
            self.pos += len;
            self.scanned = true;
            return Ok(start..self.pos);
        }
        loop {
            let slice = &self.buf[self.pos..];
            let mut de = serde_json::Deserializer::from_slice(slice);
            let parsed = <&RawValue>::deserialize(&mut de)
                .map(|raw| (raw.get().as_ptr() as usize - slice.as_ptr() as usize, raw.get().len()));
            match parsed {
                Ok((offset, len)) => {
                    let start = self.pos + offset;
                    let end = start + len;
                    // A number at the very end of the buffer may go on in the next read: read on
                    // and decode it again.
                    if end < self.buf.len() || self.eof {
                        self.pos = end;
                        return Ok(start..end);
                    }
                    self.fill()?;
                }
                Err(e) if e.is_eof() && self.fill()? => {}
                Err(e) => return Err(EventError::NotAList(e)),
            }
        }
    }

    fn decode<'a, T: Deserialize<'a>>(&'a self, range: Range<usize>) -> Result<T, EventError> {
        serde_json::from_slice(&self.buf[range]).map_err(EventError::NotAList)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::sources::kubernetes::events::parse_event_list;
    use heapster_dataflows::Event;

    /// Hands out at most `step` bytes per read: every value ends up split across reads.
    struct Trickle<'a> {
        body: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(out.len()).min(self.body.len());
            out[..n].copy_from_slice(&self.body[..n]);
            self.body = &self.body[n..];
            Ok(n)
        }
    }

    fn item(uid: &str, message: &str, count: i64) -> Value {
        json!({"metadata": {"name": format!("{uid}.1"), "namespace": "web", "uid": uid,
                "resourceVersion": "12345"},
            "involvedObject": {"kind": "Pod", "namespace": "web", "name": "api", "uid": "p-1"},
            "reason": "Pulled", "message": message, "type": "Normal", "count": count,
            "lastTimestamp": "2026-11-01T10:00:00Z", "source": {"component": "kubelet"}})
    }

    /// A list as an API server writes it (kind and apiVersion first), with odd spacing and a
    /// number ending a member.
    fn body() -> String {
        let items: Vec<String> = [
            item("u-1", "plain", 1),
            item("u-2", "with \"quotes\" and \\u00e9: \u{e9}", 22),
            json!({"metadata": {"name": "bad", "namespace": "web"}, "involvedObject": 5}),
            item("u-3", "", 333),
        ]
        .iter()
        .map(Value::to_string)
        .collect();
        format!(
            "{{ \"kind\" : \"EventList\",\n \"apiVersion\":\"v1\", \"metadata\":{{\"resourceVersion\":\"99\"}},\n \"items\" : [ {} ] , \"extra\": 1234567}}\n",
            items.join(" ,\n ")
        )
    }

    fn read_all(reader: impl Read, chunk: usize) -> (Vec<Event>, Vec<String>, Vec<usize>, Option<String>) {
        let (mut events, mut warnings, mut sizes) = (Vec::new(), Vec::new(), Vec::new());
        let version = read_event_list(reader, chunk, |mut part| {
            sizes.push(part.events.len());
            events.append(&mut part.events);
            warnings.append(&mut part.warnings);
            ControlFlow::Continue(())
        })
        .unwrap();
        (events, warnings, sizes, version)
    }

    #[test]
    fn split_reads_give_what_one_read_gives() {
        let body = body();
        let whole = parse_event_list(body.as_bytes()).unwrap();
        assert_eq!(whole.events.len(), 3);
        assert_eq!(whole.warnings.len(), 1, "{:?}", whole.warnings);
        assert!(whole.warnings[0].contains("item 2 (event web/bad)"), "{:?}", whole.warnings);
        assert_eq!(whole.resource_version.as_deref(), Some("99"));
        assert_eq!(whole.events[1].message(), "with \"quotes\" and \\u00e9: \u{e9}");
        for step in [1, 2, 3, 7, 64, 4096] {
            let (events, warnings, _, version) = read_all(Trickle { body: body.as_bytes(), step }, 100);
            assert_eq!(events, whole.events, "reads of {step} bytes");
            assert_eq!(warnings, whole.warnings, "reads of {step} bytes");
            assert_eq!(version, whole.resource_version, "reads of {step} bytes");
        }
    }

    #[test]
    fn events_go_out_in_chunks_and_a_break_stops_the_read() {
        let body = body();
        let (events, _, sizes, _) = read_all(body.as_bytes(), 2);
        assert_eq!(events.iter().map(|e| e.uid.as_str()).collect::<Vec<_>>(), ["u-1", "u-2", "u-3"]);
        assert_eq!(sizes, [2, 1]);
        let mut calls = 0;
        let version = read_event_list(body.as_bytes(), 1, |_| {
            calls += 1;
            ControlFlow::Break(())
        })
        .unwrap();
        assert_eq!((calls, version.as_deref()), (1, Some("99")));
    }

    #[test]
    fn items_before_the_api_version_wait_for_it() {
        let note = json!({"metadata": {"name": "x.1", "namespace": "ns", "uid": "u-9"},
            "eventTime": "2024-03-01T00:00:00.000000Z", "note": "hello", "type": "Normal"});
        let body = format!(
            r#"{{"items":[{note}],"kind":"EventList","apiVersion":"events.k8s.io/v1","metadata":{{"resourceVersion":"5"}}}}"#
        );
        let (events, warnings, _, version) = read_all(Trickle { body: body.as_bytes(), step: 5 }, 10);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].message(), "hello", "read as events.k8s.io/v1");
        assert_eq!(version.as_deref(), Some("5"));
        let wrong = format!(r#"{{"items":[{note}],"kind":"PodList"}}"#);
        let result = read_event_list(wrong.as_bytes(), 10, |_| panic!("no event of a PodList goes out"));
        assert!(matches!(result, Err(EventError::WrongKind(k)) if k == "PodList"));
    }

    #[test]
    fn a_cut_body_is_an_error_after_the_events_before_the_cut() {
        let body = body();
        let cut = &body.as_bytes()[..body.find("u-3").unwrap()];
        let mut got = 0;
        let result = read_event_list(Trickle { body: cut, step: 10 }, 1, |part| {
            got += part.events.len();
            ControlFlow::Continue(())
        });
        assert!(matches!(result, Err(EventError::NotAList(_))), "{result:?}");
        assert_eq!(got, 2, "the events before the cut went out");
        for garbage in ["", "[]", "{\"kind\":\"EventList\",\"items\":[]} x", "{\"items\":[1,]}", "{\"a\" 1}"]
        {
            let result = read_event_list(garbage.as_bytes(), 1, |_| ControlFlow::Continue(()));
            assert!(matches!(result, Err(EventError::NotAList(_))), "{garbage:?}: {result:?}");
        }
    }

    #[test]
    fn a_read_error_is_reported() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk gone"))
            }
        }
        let result = read_event_list(Failing, 1, |_| ControlFlow::Continue(()));
        assert!(matches!(result, Err(EventError::Read(_))), "{result:?}");
    }
}
