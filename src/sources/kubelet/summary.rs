// Over 600 lines on purpose: one decoder for the whole Summary API (node, pods, containers, volumes, accelerators, custom metrics), whose Heapster rules read best side by side.
//! Kubelet `/stats/summary` parsing: one body in, Heapster's metric sets out.
//!
//! The mapping is Heapster's summary source (`metrics/sources/summary/summary.go`), plus inodes,
//! ephemeral storage, accelerators, and interface sums for kubelets that send no top-level
//! network counters (Windows).
//!
//! The body is decoded in one pass into structs that borrow their strings from it; every field is
//! a `lenient` value (`sources/lenient.rs`), so a field of the wrong type costs that one metric and a
//! warning naming its JSON path, never the rest of the node. Only broken JSON fails a body, and
//! then nothing of it is kept. The node and each pod become metric sets as soon as they are read:
//! no decoded pod waits for the rest of the body.
//!
//! Two readers fill the same structs: a byte reader (`summary/fast.rs`) for bodies of the usual
//! shape, and the serde path (lenient types over serde_json) for everything it does not read
//! exactly, which so keeps the last word on odd bodies. Before both, the same byte reader fills
//! the pods' sets directly, without the structs (`summary/direct.rs`), for bodies that give no
//! warning. Thread CPU per body, release build, the 2-core development machine under load
//! (`cargo bench --bench summary_parse`): the GKE capture (37.6 kB; 31 sets) 37 µs against 63 µs
//! on the serde path, a synthesized 30-pod node (73 kB) 78-81 µs against 155 µs (the byte reader
//! through the structs: 45 µs and 105 µs). A SIMD parser under the lenient types measured no
//! better than serde_json (simd-json with AVX2: 2-3% less CPU; sonic-rs: slower without AVX2 in
//! the build's target).

use std::collections::hash_map::Entry;
use std::fmt;

use heapster_dataflows::catalog::{Kind, LabeledMetricId, MetricId};
use heapster_dataflows::model::{
    Accelerator, CustomMetric, EntityKey, Interner, LabelId, LabeledMetric, LabeledValue, Labels, MetricSet,
    Name, Recall, Resource, Value,
};
use rustc_hash::FxHashMap;
use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess};

use crate::sources::NodeTarget;
use crate::sources::lenient::{
    Entries, Items, List, Obj, Quoted, StreamList, StreamObj, Text, excerpt, quote_out_of_range,
};
use crate::sources::parse::{Fields, push_labeled, set_value};

/// What one body produced besides its metric sets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SummaryReport {
    /// Metric sets appended to the output.
    pub sets: usize,
    /// Values dropped or entities skipped, each naming the node and the JSON path.
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    /// Not JSON, or not a JSON object. `offset` is the byte where the problem was seen.
    #[error(
        "node {node}: malformed summary at byte offset {offset} (line {line}, column {column}): {message}"
    )]
    Malformed { node: Name, offset: usize, line: usize, column: usize, message: String },
}

/// Past this many, warnings are only counted: a body broken everywhere must not flood the log.
const MAX_WARNINGS: usize = 100;

/// The labeled values of one filesystem ([`Decoder::fs`]).
const FS_VALUES: usize = 5;

/// Go's zero `time.Time`, which Heapster treats as "no time".
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Appends one MetricSet per node, system container, pod and container to `out`.
/// `fallback_time_ns` (window end, ns since epoch) is used as scrape time when the body gives none.
///
/// On error nothing is appended.
pub fn parse_summary(
    body: &[u8],
    node: &NodeTarget,
    fallback_time_ns: i64,
    interner: &mut Interner,
    out: &mut Vec<MetricSet>,
) -> Result<SummaryReport, SummaryError> {
    // One pass over the body checks all of it; both readers then skip their per-string check.
    let text = std::str::from_utf8(body).map_err(|e| invalid_utf8(node, body, &e))?;
    let first = out.len();
    match direct::decode(text, node, fallback_time_ns, interner, out) {
        Ok(report) => return Ok(report),
        Err(fast::Fallback) => out.truncate(first),
    }
    match fast::decode(text, node, fallback_time_ns, interner, out) {
        Ok(report) => return Ok(report),
        Err(fast::Fallback) => out.truncate(first),
    }
    parse_text(text, body, node, fallback_time_ns, interner, out)
}

/// [`parse_summary`] on the serde path alone, which judges every body the byte reader does not
/// take; public so that benchmarks can compare the two.
#[doc(hidden)]
pub fn parse_summary_serde(
    body: &[u8],
    node: &NodeTarget,
    fallback_time_ns: i64,
    interner: &mut Interner,
    out: &mut Vec<MetricSet>,
) -> Result<SummaryReport, SummaryError> {
    let text = std::str::from_utf8(body).map_err(|e| invalid_utf8(node, body, &e))?;
    parse_text(text, body, node, fallback_time_ns, interner, out)
}

/// The serde path: lenient types over serde_json, and a second pass when a number is past
/// `f64`'s range. `text` is `body`, checked as UTF-8.
fn parse_text(
    text: &str,
    body: &[u8],
    node: &NodeTarget,
    fallback_time_ns: i64,
    interner: &mut Interner,
    out: &mut Vec<MetricSet>,
) -> Result<SummaryReport, SummaryError> {
    let first = out.len();
    let decoded = match decode(text, node, fallback_time_ns, interner, out) {
        Ok(decoded) => decoded,
        Err(e) => {
            out.truncate(first);
            // A number past f64's range costs that value, not the node: parse again with it quoted.
            let Some(quoted) = out_of_range(&e).then(|| quote_out_of_range(text)).flatten() else {
                return Err(malformed(node, body, &e));
            };
            decode(&quoted.text, node, fallback_time_ns, interner, out).map_err(|e| {
                out.truncate(first);
                malformed_quoted(node, body, &quoted, &e)
            })?
        }
    };
    match decoded {
        Ok(report) => Ok(report),
        Err(found) => {
            out.truncate(first);
            Err(not_an_object(node, body, found))
        }
    }
}

/// One pass over `text`: the node and each pod become metric sets as soon as they are read, so
/// no decoded pod outlives its own sets. `Ok(Err(found))`: the body is JSON but not an object.
fn decode(
    text: &str,
    node: &NodeTarget,
    fallback_time_ns: i64,
    interner: &mut Interner,
    out: &mut Vec<MetricSet>,
) -> Result<Result<SummaryReport, String>, serde_json::Error> {
    let mut decoder = Decoder::new(node, fallback_time_ns, interner, out, text.len());
    let mut json = serde_json::Deserializer::from_str(text);
    let root = StreamObj(&mut decoder).deserialize(&mut json)?;
    json.end()?;
    Ok(match root.get() {
        Ok(Some(_)) => Ok(decoder.finish()),
        Ok(None) => Err("null".to_owned()),
        Err(found) => Err(found.to_string()),
    })
}

fn out_of_range(e: &serde_json::Error) -> bool {
    e.to_string().starts_with("number out of range")
}

/// serde_json's message without its position.
fn message_of(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    text.strip_suffix(&suffix).unwrap_or(&text).to_owned()
}

/// An error in the body with its out-of-range numbers quoted, placed in the original body.
fn malformed_quoted(node: &NodeTarget, body: &[u8], quoted: &Quoted, e: &serde_json::Error) -> SummaryError {
    let offset = byte_offset(quoted.text.as_bytes(), e.line(), e.column());
    at_offset(node, body, quoted.original_offset(offset).min(body.len()), message_of(e))
}

fn malformed(node: &NodeTarget, body: &[u8], e: &serde_json::Error) -> SummaryError {
    let (line, column) = (e.line(), e.column());
    let message = message_of(e);
    SummaryError::Malformed {
        node: node.name.clone(),
        offset: byte_offset(body, line, column),
        line,
        column,
        message,
    }
}

/// serde_json counts lines from 1 by `\n`, and its column is the 1-based column of the last byte
/// it read (0 at the start of a line).
fn byte_offset(body: &[u8], line: usize, column: usize) -> usize {
    let line_start = match line {
        0 | 1 => 0,
        n => body
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(n - 2)
            .map_or(body.len(), |(i, _)| i + 1),
    };
    (line_start + column.saturating_sub(1)).min(body.len())
}

fn invalid_utf8(node: &NodeTarget, body: &[u8], e: &std::str::Utf8Error) -> SummaryError {
    at_offset(node, body, e.valid_up_to(), "invalid UTF-8".to_owned())
}

fn not_an_object(node: &NodeTarget, body: &[u8], found: impl fmt::Display) -> SummaryError {
    let offset = body.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(body.len());
    at_offset(node, body, offset, format!("expected a summary object, found {found}"))
}

/// An error at a byte we located ourselves, with serde_json's line and column convention.
fn at_offset(node: &NodeTarget, body: &[u8], offset: usize, message: String) -> SummaryError {
    let before = &body[..offset];
    let line_start = before.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    SummaryError::Malformed {
        node: node.name.clone(),
        offset,
        line: 1 + before.iter().filter(|b| **b == b'\n').count(),
        column: offset - line_start + 1,
        message,
    }
}

/// The kubelet's `stats/v1alpha1` types, reduced to what Heapster reads. Unknown fields are
/// skipped without being decoded.
mod wire;

/// The same types read straight from the bytes when the body is of the usual shape.
mod fast;

/// The pods of a usual body read straight into metric sets, by the same byte reader.
mod direct;

/// A JSON path, built on the stack and only rendered for a warning.
#[derive(Clone, Copy)]
struct Path<'p> {
    parent: Option<&'p Path<'p>>,
    name: &'static str,
    index: Option<usize>,
}

impl<'p> Path<'p> {
    const fn root(name: &'static str) -> Path<'static> {
        Path { parent: None, name, index: None }
    }

    const fn root_item(name: &'static str, index: usize) -> Path<'static> {
        Path { parent: None, name, index: Some(index) }
    }

    fn field(&'p self, name: &'static str) -> Path<'p> {
        Path { parent: Some(self), name, index: None }
    }

    fn item(&'p self, name: &'static str, index: usize) -> Path<'p> {
        Path { parent: Some(self), name, index: Some(index) }
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(parent) = self.parent {
            write!(f, "{parent}.")?;
        }
        f.write_str(self.name)?;
        if let Some(i) = self.index {
            write!(f, "[{i}]")?;
        }
        Ok(())
    }
}

struct Warnings {
    node: Name,
    list: Vec<String>,
    suppressed: usize,
}

impl Warnings {
    fn push(&mut self, at: Path<'_>, message: impl fmt::Display) {
        if self.list.len() < MAX_WARNINGS {
            self.list.push(format!("node {}: {at}: {message}", self.node));
        } else {
            self.suppressed += 1;
        }
    }

    fn finish(mut self) -> Vec<String> {
        if self.suppressed > 0 {
            self.list.push(format!("node {}: {} more warnings not shown", self.node, self.suppressed));
        }
        self.list
    }
}

/// What to keep when two sets of one body have the same key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Duplicates {
    /// The later in the body (Heapster's map overwrite).
    KeepLast,
    /// The one with the later start time; a tie goes to the later in the body (Heapster's rule
    /// for containers: a terminated container must not hide the running one).
    KeepNewer,
}

/// Heapster's legacy names for the kubelet's system containers.
fn system_container_name(name: &str) -> &str {
    match name {
        "runtime" => "docker-daemon",
        "misc" => "system",
        other => other,
    }
}

/// A time the summary gives that is not one.
#[derive(Debug, thiserror::Error)]
enum TimeError {
    #[error("{excerpt:?} is not an RFC 3339 time: {source}")]
    Syntax { excerpt: String, source: jiff::Error },
    #[error("{0:?} is out of range")]
    OutOfRange(String),
}

fn parse_time(s: &str) -> Result<Option<i64>, TimeError> {
    if s == GO_ZERO_TIME {
        return Ok(None);
    }
    if let Some(ns) = utc_seconds_ns(s) {
        return Ok(Some(ns));
    }
    let ts: jiff::Timestamp =
        s.parse().map_err(|source| TimeError::Syntax { excerpt: excerpt(s), source })?;
    i64::try_from(ts.as_nanosecond()).map(Some).map_err(|_| TimeError::OutOfRange(excerpt(s)))
}

/// The kubelet's usual form, `YYYY-MM-DDTHH:MM:SSZ`, in ns since the epoch, read directly (a
/// general RFC 3339 parse costs several times more). `None` for any other form or a value it
/// does not plainly hold (a leap second, a year outside i64 nanoseconds), which `jiff` then judges.
fn utc_seconds_ns(s: &str) -> Option<i64> {
    let (date, time) = utc_parts(s)?;
    Some((date_seconds(date)? + time_seconds(time)?) * 1_000_000_000)
}

/// The date (`YYYY-MM-DD`) and time of day (`HH:MM:SS`) of a time of the usual form.
#[inline]
fn utc_parts(s: &str) -> Option<(&[u8; 10], &[u8; 8])> {
    let b: &[u8; 20] = s.as_bytes().try_into().ok()?;
    if [b[10], b[13], b[16], b[19]] != *b"T::Z" {
        return None;
    }
    Some((b[..10].try_into().ok()?, b[11..19].try_into().ok()?))
}

/// The value of the ASCII digits `b[range]`, if all are digits.
#[inline]
fn digits(b: &[u8], range: std::ops::Range<usize>) -> Option<i64> {
    b.get(range)?.iter().try_fold(0i64, |n, d| d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0')))
}

/// Seconds from the epoch to the start of a `YYYY-MM-DD` day, for years whose every second
/// fits i64 nanoseconds (1677-09-21 to 2262-04-11: whole years inside that are read here).
fn date_seconds(b: &[u8; 10]) -> Option<i64> {
    if [b[4], b[7]] != *b"--" {
        return None;
    }
    let (year, month, day) = (digits(b, 0..4)?, digits(b, 5..7)?, digits(b, 8..10)?);
    if !(1678..=2261).contains(&year) || !(1..=12).contains(&month) {
        return None;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=month_days).contains(&day) {
        return None;
    }
    // Days since 1970-01-01 of a proleptic Gregorian date (years counted from March, so the
    // leap day comes last).
    let y = if month <= 2 { year - 1 } else { year };
    let (era, year_of_era) = (y.div_euclid(400), y.rem_euclid(400));
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    Some((era * 146_097 + day_of_era - 719_468) * 86_400)
}

/// Seconds into the day of `HH:MM:SS`; `None` past 23:59:59 (a leap second is jiff's to judge).
#[inline]
fn time_seconds(b: &[u8; 8]) -> Option<i64> {
    if [b[2], b[5]] != *b"::" {
        return None;
    }
    let (hour, minute, second) = (digits(b, 0..2)?, digits(b, 3..5)?, digits(b, 6..8)?);
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    Some(hour * 3_600 + minute * 60 + second)
}

/// The last two days read by [`utc_seconds_ns`]: a body's sample times are nearly all of one
/// day, its start times of a few earlier ones, while their seconds differ too much for a cache
/// of whole times to hit.
#[derive(Default)]
struct DayCache {
    /// Valid dates and their [`date_seconds`], the last used first.
    last: [Option<([u8; 10], i64)>; 2],
}

impl DayCache {
    /// [`utc_seconds_ns`], the date read only when it is not one of the last two.
    #[inline]
    fn utc_seconds_ns(&mut self, s: &str) -> Option<i64> {
        let (date, time) = utc_parts(s)?;
        let seconds = match self.last {
            [Some((last, seconds)), _] if last == *date => seconds,
            [_, Some((last, seconds))] if last == *date => {
                self.last.swap(0, 1);
                seconds
            }
            _ => {
                let seconds = date_seconds(date)?;
                self.last = [Some((*date, seconds)), self.last[0]];
                seconds
            }
        };
        Some((seconds + time_seconds(time)?) * 1_000_000_000)
    }
}

/// The last few times of other forms (a fraction, an offset) parsed by `jiff`; start times and
/// sample times alternate, so one entry would rarely hit.
#[derive(Default)]
struct TimeCache {
    entries: [(String, i64); 4],
    next: usize,
}

impl TimeCache {
    fn get(&self, s: &str) -> Option<i64> {
        if s.is_empty() {
            return None;
        }
        self.entries.iter().find(|(text, _)| same(text.as_bytes(), s.as_bytes())).map(|(_, ns)| *ns)
    }

    fn put(&mut self, s: &str, ns: i64) {
        let (text, value) = &mut self.entries[self.next];
        text.clear();
        text.push_str(s);
        *value = ns;
        self.next = (self.next + 1) % self.entries.len();
    }
}

/// Whether two short byte strings (keys, times) are equal, compared inline a word at a time:
/// libc's `memcmp`, which `==` calls, costs a call and a dispatch per comparison, and the
/// reader compares a few thousand short strings per body.
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let word = |s: &[u8], i: usize| {
        s.get(i..i + 8).and_then(|w| <[u8; 8]>::try_from(w).ok()).map(u64::from_le_bytes)
    };
    let n = a.len();
    if n < 8 {
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    let mut i = 0;
    while i + 8 < n {
        if word(a, i) != word(b, i) {
            return false;
        }
        i += 8;
    }
    // The last eight bytes, overlapping the words before when `n` is not a multiple of eight.
    word(a, n - 8) == word(b, n - 8)
}

fn set_uptime(set: &mut MetricSet, start: Option<i64>) {
    if let Some(start) = start {
        let ms = set.scrape_time.saturating_sub(start).max(0) / 1_000_000;
        set.values.set(MetricId::Uptime, Value::Int(ms));
    }
}

/// A metric-set key by the addresses of its names. Within one body every name of a key comes
/// from the interner (or is the node's own), so equal names are the same allocation and this
/// is equality without hashing or cloning strings.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Identity(u8, usize, usize, usize);

impl Identity {
    fn of(key: &EntityKey) -> Identity {
        let at = |name: &Name| name.as_str().as_ptr() as usize;
        match key {
            EntityKey::Cluster => Identity(0, 0, 0, 0),
            EntityKey::Namespace { ns } => Identity(1, at(ns), 0, 0),
            EntityKey::Node { node } => Identity(2, at(node), 0, 0),
            EntityKey::SysContainer { node, name } => Identity(3, at(node), at(name), 0),
            EntityKey::Pod { ns, pod } => Identity(4, at(ns), at(pod), 0),
            EntityKey::PodContainer { ns, pod, container } => Identity(5, at(ns), at(pod), at(container)),
        }
    }
}

/// The summary object's entries: the node and the pods, each turned into sets as it is read.
impl<'de> Entries<'de> for Decoder<'_> {
    fn entries<A: MapAccess<'de>>(&mut self, mut map: A) -> Result<(), A::Error> {
        let mut pods_read = false;
        while let Some(field) = map.next_key::<wire::SummaryField>()? {
            match field {
                wire::SummaryField::Node => {
                    if self.node_sets.is_some() {
                        return Err(A::Error::duplicate_field("node"));
                    }
                    let node: Obj<wire::NodeStats<'de>> = map.next_value()?;
                    self.node_entry(&node);
                }
                wire::SummaryField::Pods => {
                    if pods_read {
                        return Err(A::Error::duplicate_field("pods"));
                    }
                    pods_read = true;
                    let pods = map.next_value_seed(StreamList(&mut Pods { decoder: self, next: 0 }))?;
                    self.list(&pods, Path::root("pods"));
                }
                wire::SummaryField::Other => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// The pods array, one pod at a time.
struct Pods<'d, 't> {
    decoder: &'d mut Decoder<'t>,
    next: usize,
}

impl<'de> Items<'de> for Pods<'_, '_> {
    fn items<A: SeqAccess<'de>>(&mut self, mut seq: A) -> Result<(), A::Error> {
        while let Some(pod) = seq.next_element::<Obj<wire::PodStats<'de>>>()? {
            self.decoder.pod_item(&pod, self.next);
            self.next += 1;
        }
        Ok(())
    }
}

/// Turns one decoded body into metric sets.
struct Decoder<'t> {
    target: &'t NodeTarget,
    fallback: i64,
    /// The interner, through the names of this node's previous body.
    names: Recall<'t>,
    out: &'t mut Vec<MetricSet>,
    first: usize,
    /// Where each key of this body sits in `out`.
    seen: FxHashMap<Identity, usize>,
    /// Where the node's own sets went in `out`, once its entry was read.
    node_sets: Option<(usize, usize)>,
    warnings: Warnings,
    /// For building `custom/<name>` and `Volume:<name>` before interning them.
    scratch: String,
    times: TimeCache,
    day: DayCache,
    node_labels: Labels,
    /// What the direct reader keeps while it reads a pod.
    direct: direct::Scratch,
}

impl<'p> Fields<Path<'p>> for Decoder<'_> {
    fn warn(&mut self, at: Path<'p>, message: impl fmt::Display) {
        self.warnings.push(at, message);
    }
}

impl<'t> Decoder<'t> {
    fn new(
        target: &'t NodeTarget,
        fallback: i64,
        interner: &'t mut Interner,
        out: &'t mut Vec<MetricSet>,
        body_len: usize,
    ) -> Self {
        let node_labels = target.labels();
        let names = interner.recall(&target.name);
        Decoder {
            target,
            fallback,
            names,
            first: out.len(),
            out,
            // A set per 700-800 bytes of a typical body, and room for a node's few.
            seen: FxHashMap::with_capacity_and_hasher(8 + body_len / 512, Default::default()),
            node_sets: None,
            warnings: Warnings { node: target.name.clone(), list: Vec::new(), suppressed: 0 },
            scratch: String::new(),
            times: TimeCache::default(),
            day: DayCache::default(),
            node_labels,
            direct: direct::Scratch::default(),
        }
    }

    /// The body is read: the node comes first in `out` even when its entry came last or not at
    /// all (a body without one still gets a node set, as Heapster's does).
    fn finish(mut self) -> SummaryReport {
        if self.node_sets.is_none() {
            self.node_entry(&Obj::Absent);
        }
        if let Some((start, end)) = self.node_sets
            && start > self.first
        {
            self.out[self.first..end].rotate_right(end - start);
        }
        SummaryReport { sets: self.out.len() - self.first, warnings: self.warnings.finish() }
    }

    fn list<'v, T>(&mut self, v: &'v List<T>, at: Path<'_>) -> &'v [T] {
        self.get(v, at).map_or(&[], Vec::as_slice)
    }

    fn text<'v>(&mut self, v: &'v Text<'_>, at: Path<'_>) -> Option<&'v str> {
        self.get(v, at).map(|s| &**s)
    }

    /// A name the entity cannot go without: if unusable, says so and that `what` is skipped.
    fn required<'v>(&mut self, v: &'v Text<'_>, at: Path<'_>, what: &str) -> Option<&'v str> {
        match v.get() {
            Ok(Some(s)) if !s.is_empty() => Some(s),
            Ok(Some(_)) => {
                self.warn(at, format_args!("empty; {what} skipped"));
                None
            }
            Ok(None) => {
                self.warn(at, format_args!("missing; {what} skipped"));
                None
            }
            Err(found) => {
                self.warn(at, format_args!("expected a string, found {found}; {what} skipped"));
                None
            }
        }
    }

    /// An RFC 3339 time in ns since the epoch; unusable times are warned about and absent.
    fn time(&mut self, v: &Text<'_>, at: Path<'_>) -> Option<i64> {
        let s = self.text(v, at)?;
        self.time_of(s, at)
    }

    /// [`Decoder::time`] of a string.
    fn time_of(&mut self, s: &str, at: Path<'_>) -> Option<i64> {
        if let Some(ns) = self.day.utc_seconds_ns(s) {
            return Some(ns);
        }
        if let Some(ns) = self.times.get(s) {
            return Some(ns);
        }
        match parse_time(s) {
            Ok(Some(ns)) => {
                self.times.put(s, ns);
                Some(ns)
            }
            Ok(None) => None,
            Err(error) => {
                self.warn(at, error);
                None
            }
        }
    }

    /// Heapster's `getScrapeTime`: the first time present, else the window end.
    fn scrape_time(&mut self, candidates: &[(Option<&Text<'_>>, Path<'_>)]) -> i64 {
        for (time, at) in candidates {
            if let Some(ns) = time.and_then(|t| self.time(t, *at)) {
                return ns;
            }
        }
        self.fallback
    }

    fn intern_prefixed(&mut self, prefix: &str, name: &str) -> Name {
        self.scratch.clear();
        self.scratch.push_str(prefix);
        self.scratch.push_str(name);
        self.names.intern(&self.scratch)
    }

    fn emit(&mut self, set: MetricSet, at: Path<'_>, rule: Duplicates) {
        match self.seen.entry(Identity::of(&set.key)) {
            Entry::Vacant(slot) => {
                slot.insert(self.out.len());
                self.out.push(set);
            }
            Entry::Occupied(slot) => {
                let index = *slot.get();
                let keep_old = rule == Duplicates::KeepNewer && set.create_time < self.out[index].create_time;
                let kept = match (rule, keep_old) {
                    (Duplicates::KeepLast, _) => "keeping this one",
                    (Duplicates::KeepNewer, false) => "keeping this one, started later",
                    (Duplicates::KeepNewer, true) => "keeping the earlier one, started later",
                };
                self.warnings.push(at, format_args!("{} appears twice; {kept}", set.key));
                if !keep_old {
                    self.out[index] = set;
                }
            }
        }
    }

    fn node_entry(&mut self, node: &Obj<wire::NodeStats<'_>>) {
        let at = Path::root("node");
        let start = self.out.len();
        let node = self.obj(node, at);
        self.node(node.unwrap_or(&wire::NodeStats::default()), at);
        self.node_sets = Some((start, self.out.len()));
    }

    fn pod_item(&mut self, pod: &Obj<wire::PodStats<'_>>, i: usize) {
        let at = Path::root_item("pods", i);
        if let Some(pod) = self.obj(pod, at) {
            self.pod(pod, at);
        }
    }

    fn node(&mut self, node: &wire::NodeStats<'_>, at: Path<'_>) {
        let name_at = at.field("nodeName");
        if let Some(name) = self.text(&node.node_name, name_at)
            && name != &*self.target.name
        {
            self.warn(name_at, format_args!("the body is from node {:?}", excerpt(name)));
        }
        let mut set = MetricSet::new(EntityKey::Node { node: self.target.name.clone() });
        set.labels = self.node_labels.clone();
        if self.target.schedulable_label {
            let schedulable = self.names.intern(if self.target.schedulable { "true" } else { "false" });
            set.labels.set(LabelId::Schedulable, schedulable);
        }

        let (cpu_at, memory_at, network_at) = (at.field("cpu"), at.field("memory"), at.field("network"));
        let cpu = self.obj(&node.cpu, cpu_at);
        let memory = self.obj(&node.memory, memory_at);
        let network = self.obj(&node.network, network_at);
        let start = self.time(&node.start_time, at.field("startTime"));
        set.create_time = start.unwrap_or(0);
        set.scrape_time = self.scrape_time(&[
            (cpu.map(|c| &c.time), cpu_at.field("time")),
            (memory.map(|m| &m.time), memory_at.field("time")),
            (network.map(|n| &n.time), network_at.field("time")),
        ]);
        set_uptime(&mut set, start);
        self.cpu(&mut set, cpu, cpu_at);
        self.memory(&mut set, memory, memory_at);
        self.network(&mut set, network, network_at);
        let fs_at = at.field("fs");
        if let Some(fs) = self.obj(&node.fs, fs_at) {
            set.labeled.reserve_exact(FS_VALUES);
            let used = self.fs(&mut set, fs, &Resource::ROOT_FS, fs_at);
            set_value(&mut set, MetricId::EphemeralStorageUsage, used);
        }
        self.emit(set, at, Duplicates::KeepLast);

        let containers = self.list(&node.system_containers, at.field("systemContainers"));
        for (i, container) in containers.iter().enumerate() {
            let at = at.item("systemContainers", i);
            let Some(container) = self.obj(container, at) else {
                continue;
            };
            let Some(name) = self.required(&container.name, at.field("name"), "container") else {
                continue;
            };
            let name = self.names.intern(system_container_name(name));
            let mut labels = self.node_labels.clone();
            labels.set(LabelId::ContainerName, name.clone());
            let key = EntityKey::SysContainer { node: self.target.name.clone(), name };
            let set = self.container(container, at, key, labels);
            self.emit(set, at, Duplicates::KeepLast);
        }
    }

    fn pod(&mut self, pod: &wire::PodStats<'_>, at: Path<'_>) {
        let ref_at = at.field("podRef");
        let Some(pod_ref) = self.obj(&pod.pod_ref, ref_at) else {
            if pod.pod_ref.is_absent() {
                self.warn(ref_at, "missing; pod skipped");
            }
            return;
        };
        let Some(name) = self.required(&pod_ref.name, ref_at.field("name"), "pod") else {
            return;
        };
        let Some(namespace) = self.required(&pod_ref.namespace, ref_at.field("namespace"), "pod") else {
            return;
        };
        let uid = self.text(&pod_ref.uid, ref_at.field("uid"));
        let ns = self.names.intern(namespace);
        let pod_name = self.names.intern(name);
        let mut labels = self.node_labels.clone();
        if let Some(uid) = uid.filter(|u| !u.is_empty()) {
            labels.set(LabelId::PodId, self.names.intern(uid));
        }
        labels.set(LabelId::PodName, pod_name.clone());
        labels.set(LabelId::NamespaceName, ns.clone());

        let mut set = MetricSet::new(EntityKey::Pod { ns: ns.clone(), pod: pod_name.clone() });
        set.labels = labels.clone();
        let (cpu_at, memory_at, network_at) = (at.field("cpu"), at.field("memory"), at.field("network"));
        let cpu = self.obj(&pod.cpu, cpu_at);
        let memory = self.obj(&pod.memory, memory_at);
        let network = self.obj(&pod.network, network_at);
        let start = self.time(&pod.start_time, at.field("startTime"));
        set.create_time = start.unwrap_or(0);
        // Heapster times a pod by its network stats, so its rates match Heapster's; a pod
        // without them is timed by its cpu or memory stats rather than the window end.
        set.scrape_time = self.scrape_time(&[
            (network.map(|n| &n.time), network_at.field("time")),
            (cpu.map(|c| &c.time), cpu_at.field("time")),
            (memory.map(|m| &m.time), memory_at.field("time")),
        ]);
        set_uptime(&mut set, start);
        // The kubelet's own pod totals (cgroup of the whole pod, so pause container and pod
        // overhead included); `aggregate` sums containers only for what a pod lacks here.
        self.cpu(&mut set, cpu, cpu_at);
        self.memory(&mut set, memory, memory_at);
        self.network(&mut set, network, network_at);
        let volumes = self.list(&pod.volume, at.field("volume"));
        // Five values a volume: sized once, as the set lives through the window.
        set.labeled.reserve_exact(FS_VALUES * volumes.len());
        for (i, volume) in volumes.iter().enumerate() {
            let at = at.item("volume", i);
            let Some(volume) = self.obj(volume, at) else {
                continue;
            };
            let Some(name) = self.required(&volume.name, at.field("name"), "volume") else {
                continue;
            };
            let resource = Resource::Id(self.intern_prefixed("Volume:", name));
            self.fs(&mut set, volume, &resource, at);
        }
        let ephemeral_at = at.field("ephemeral-storage");
        if let Some(ephemeral) = self.obj(&pod.ephemeral_storage, ephemeral_at) {
            let used = self.num(&ephemeral.used_bytes, ephemeral_at.field("usedBytes"));
            set_value(&mut set, MetricId::EphemeralStorageUsage, used);
        }
        self.emit(set, at, Duplicates::KeepLast);

        for (i, container) in self.list(&pod.containers, at.field("containers")).iter().enumerate() {
            let at = at.item("containers", i);
            let Some(container) = self.obj(container, at) else {
                continue;
            };
            let Some(name) = self.required(&container.name, at.field("name"), "container") else {
                continue;
            };
            let name = self.names.intern(name);
            let mut labels = labels.clone();
            labels.set(LabelId::ContainerName, name.clone());
            let key = EntityKey::PodContainer { ns: ns.clone(), pod: pod_name.clone(), container: name };
            let set = self.container(container, at, key, labels);
            self.emit(set, at, Duplicates::KeepNewer);
        }
    }

    fn container(
        &mut self,
        container: &wire::ContainerStats<'_>,
        at: Path<'_>,
        key: EntityKey,
        labels: Labels,
    ) -> MetricSet {
        let mut set = MetricSet::new(key);
        set.labels = labels;
        // rootfs and logs.
        set.labeled.reserve_exact(2 * FS_VALUES);
        let (cpu_at, memory_at) = (at.field("cpu"), at.field("memory"));
        let cpu = self.obj(&container.cpu, cpu_at);
        let memory = self.obj(&container.memory, memory_at);
        let start = self.time(&container.start_time, at.field("startTime"));
        set.create_time = start.unwrap_or(0);
        set.scrape_time = self.scrape_time(&[
            (cpu.map(|c| &c.time), cpu_at.field("time")),
            (memory.map(|m| &m.time), memory_at.field("time")),
        ]);
        set_uptime(&mut set, start);
        self.cpu(&mut set, cpu, cpu_at);
        self.memory(&mut set, memory, memory_at);
        let (rootfs_at, logs_at) = (at.field("rootfs"), at.field("logs"));
        let mut rootfs_used = None;
        if let Some(fs) = self.obj(&container.rootfs, rootfs_at) {
            rootfs_used = self.fs(&mut set, fs, &Resource::ROOT_FS, rootfs_at);
        }
        let mut logs_used = None;
        if let Some(fs) = self.obj(&container.logs, logs_at) {
            logs_used = self.fs(&mut set, fs, &Resource::LOGS_FS, logs_at);
        }
        // Heapster's container ephemeral storage: writable layer plus logs, only when both are known.
        if let (Some(rootfs), Some(logs)) = (rootfs_used, logs_used) {
            set_value(&mut set, MetricId::EphemeralStorageUsage, Some(rootfs.saturating_add(logs)));
        }
        self.accelerators(&mut set, container, at);
        self.custom_metrics(&mut set, container, at);
        set
    }

    fn cpu(&mut self, set: &mut MetricSet, cpu: Option<&wire::CpuStats<'_>>, at: Path<'_>) {
        if let Some(cpu) = cpu {
            self.set(set, MetricId::CpuUsage, &cpu.usage_core_nano_seconds, at.field("usageCoreNanoSeconds"));
        }
    }

    fn memory(&mut self, set: &mut MetricSet, memory: Option<&wire::MemoryStats<'_>>, at: Path<'_>) {
        let Some(memory) = memory else { return };
        for (id, field, name) in [
            (MetricId::MemoryUsage, &memory.usage_bytes, "usageBytes"),
            (MetricId::MemoryWorkingSet, &memory.working_set_bytes, "workingSetBytes"),
            (MetricId::MemoryRss, &memory.rss_bytes, "rssBytes"),
            (MetricId::MemoryPageFaults, &memory.page_faults, "pageFaults"),
            (MetricId::MemoryMajorPageFaults, &memory.major_page_faults, "majorPageFaults"),
        ] {
            self.set(set, id, field, at.field(name));
        }
    }

    /// The top-level counters (the default interface); where one is absent, the sum over
    /// `interfaces` (Windows kubelets send only those).
    fn network(&mut self, set: &mut MetricSet, network: Option<&wire::NetworkStats<'_>>, at: Path<'_>) {
        let Some(network) = network else { return };
        const FIELDS: [(MetricId, &str); 4] = [
            (MetricId::NetworkRx, "rxBytes"),
            (MetricId::NetworkRxErrors, "rxErrors"),
            (MetricId::NetworkTx, "txBytes"),
            (MetricId::NetworkTxErrors, "txErrors"),
        ];
        let top = network.counters();
        let mut values = [None; 4];
        for (k, (_, name)) in FIELDS.iter().enumerate() {
            values[k] = self.num(top[k], at.field(name));
        }
        if top.iter().any(|n| n.is_absent()) {
            let interfaces = self.list(&network.interfaces, at.field("interfaces"));
            for (i, interface) in interfaces.iter().enumerate() {
                let at = at.item("interfaces", i);
                let Some(interface) = self.obj(interface, at) else {
                    continue;
                };
                for (k, field) in interface.counters().into_iter().enumerate() {
                    if !top[k].is_absent() {
                        continue;
                    }
                    if let Some(v) = self.num(field, at.field(FIELDS[k].1)) {
                        values[k] = Some(values[k].unwrap_or(0i64).saturating_add(v));
                    }
                }
            }
        }
        for ((id, _), value) in FIELDS.iter().zip(values) {
            set_value(set, *id, value);
        }
    }

    /// Heapster's filesystem metrics for one resource; returns `usedBytes`.
    fn fs(
        &mut self,
        set: &mut MetricSet,
        fs: &wire::FsStats<'_>,
        resource: &Resource,
        at: Path<'_>,
    ) -> Option<i64> {
        let mut used = None;
        for (id, field, name) in [
            (LabeledMetricId::FsUsage, &fs.used_bytes, "usedBytes"),
            (LabeledMetricId::FsLimit, &fs.capacity_bytes, "capacityBytes"),
            (LabeledMetricId::FsAvailable, &fs.available_bytes, "availableBytes"),
            (LabeledMetricId::FsInodes, &fs.inodes, "inodes"),
            (LabeledMetricId::FsInodesFree, &fs.inodes_free, "inodesFree"),
        ] {
            let value = self.labeled(set, id, resource, field, at.field(name));
            if id == LabeledMetricId::FsUsage {
                used = value;
            }
        }
        used
    }

    fn accelerators(&mut self, set: &mut MetricSet, container: &wire::ContainerStats<'_>, at: Path<'_>) {
        let accelerators = self.list(&container.accelerators, at.field("accelerators"));
        for (i, accelerator) in accelerators.iter().enumerate() {
            let at = at.item("accelerators", i);
            let Some(a) = self.obj(accelerator, at) else {
                continue;
            };
            let make = self.text(&a.make, at.field("make")).unwrap_or("");
            let model = self.text(&a.model, at.field("model")).unwrap_or("");
            let id = self.text(&a.id, at.field("id")).unwrap_or("");
            let resource = Resource::Accelerator(Box::new(Accelerator {
                make: self.names.intern(make),
                model: self.names.intern(model),
                id: self.names.intern(id),
            }));
            for (metric, field, name) in [
                (LabeledMetricId::AcceleratorMemoryTotal, &a.memory_total, "memoryTotal"),
                (LabeledMetricId::AcceleratorMemoryUsed, &a.memory_used, "memoryUsed"),
                (LabeledMetricId::AcceleratorDutyCycle, &a.duty_cycle, "dutyCycle"),
            ] {
                let value = self.num(field, at.field(name));
                push_labeled(set, metric, &resource, value);
            }
        }
    }

    fn custom_metrics(&mut self, set: &mut MetricSet, container: &wire::ContainerStats<'_>, at: Path<'_>) {
        let metrics = self.list(&container.user_defined_metrics, at.field("userDefinedMetrics"));
        for (i, metric) in metrics.iter().enumerate() {
            let at = at.item("userDefinedMetrics", i);
            let Some(m) = self.obj(metric, at) else {
                continue;
            };
            let Some(name) = self.required(&m.name, at.field("name"), "metric") else {
                continue;
            };
            let kind = match m.kind.get() {
                Ok(Some(kind)) => match &**kind {
                    "gauge" | "delta" => Kind::Gauge,
                    "cumulative" => Kind::Cumulative,
                    other => {
                        let message = format!("unknown type {:?}; metric skipped", excerpt(other));
                        self.warn(at.field("type"), message);
                        continue;
                    }
                },
                Ok(None) => {
                    self.warn(at.field("type"), "missing; metric skipped");
                    continue;
                }
                Err(found) => {
                    let message = format!("expected a string, found {found}; metric skipped");
                    self.warn(at.field("type"), message);
                    continue;
                }
            };
            let Some(&value) = self.get(&m.value, at.field("value")) else {
                continue;
            };
            let name = self.intern_prefixed("custom/", name);
            let value = LabeledValue {
                metric: LabeledMetric::Custom(Box::new(CustomMetric { name, kind })),
                resource: Resource::None,
                value: Value::Float(value),
            };
            // One value per name, as in Heapster's map.
            match set.labeled.iter_mut().find(|l| l.metric.name() == value.metric.name()) {
                Some(old) => *old = value,
                None => set.labeled.push(value),
            }
        }
    }
}

#[cfg(test)]
mod tests;
