//! A single-pass reader of the Summary's usual shape, straight from the bytes.
//!
//! It fills the same `wire` structs the serde path fills and hands them to the same `Decoder`,
//! but it takes only what it reads exactly: strings without escapes, non-negative integers of at
//! most 18 digits, `null`, and each field's expected kind. Anything else (an escape, a
//! fraction, a negative or huge number, a value of the wrong type, a duplicate field, broken
//! JSON, nesting past [`MAX_SKIP_DEPTH`]) gives up with [`Fallback`], and the body is parsed
//! again on the serde path, which decides what it means: an odd body behaves exactly as it
//! did, and the usual one is read without serde_json's per-token dispatch.
//!
//! Input is only read through checked slices (`get`); no byte past the body is assumed.

use std::borrow::Cow;

use super::{Decoder, SummaryReport, same, wire};
use crate::sources::NodeTarget;
use crate::sources::lenient::{Float, Lenient, List, Num, Obj, Object, Text};
use heapster_dataflows::model::{Interner, MetricSet};

/// The body holds something this reader does not take exactly; the serde path decides.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Fallback;

pub(super) type Read<T> = Result<T, Fallback>;

/// Nesting of skipped values read here (serde_json allows 128 levels in all).
const MAX_SKIP_DEPTH: usize = 32;

/// Digits of an integer read here: 18 always fit an `i64`.
const MAX_DIGITS: usize = 18;

/// Decodes `text` into metric sets appended to `out`, as `super::decode` would; on
/// [`Fallback`] the caller drops what was appended.
pub(super) fn decode(
    text: &str,
    node: &NodeTarget,
    fallback_time_ns: i64,
    interner: &mut Interner,
    out: &mut Vec<MetricSet>,
) -> Read<SummaryReport> {
    let mut decoder = Decoder::new(node, fallback_time_ns, interner, out, text.len());
    summary(&mut Reader::new(text), &mut decoder, |r, decoder, i| {
        let pod = obj(pod)(r)?;
        decoder.pod_item(&pod, i);
        Ok(())
    })?;
    Ok(decoder.finish())
}

/// The whole body: one object with `node` and `pods`, then nothing but whitespace; each pod
/// read by `pod` (the reader at its first byte, and its index).
pub(super) fn summary<'a>(
    r: &mut Reader<'a>,
    decoder: &mut Decoder<'_>,
    mut pod: impl FnMut(&mut Reader<'a>, &mut Decoder<'_>, usize) -> Read<()>,
) -> Read<()> {
    r.ws();
    r.expect(b'{')?;
    let (mut node_read, mut pods_read) = (false, false);
    r.entries(|r, key| match key {
        b"node" => {
            once(&mut node_read)?;
            let stats = obj(node)(r)?;
            decoder.node_entry(&stats);
            Ok(())
        }
        b"pods" => {
            once(&mut pods_read)?;
            match r.peek() {
                Some(b'[') => {
                    r.at += 1;
                    let mut next = 0;
                    r.items(|r| {
                        pod(r, decoder, next)?;
                        next += 1;
                        Ok(())
                    })
                }
                _ => r.null::<()>().map(drop),
            }
        }
        _ => r.skip(0),
    })?;
    r.ws();
    if r.at == r.bytes.len() { Ok(()) } else { Err(Fallback) }
}

/// A field read a second time: serde's derive rejects it, so the serde path reports it.
fn once(read: &mut bool) -> Read<()> {
    if std::mem::replace(read, true) { Err(Fallback) } else { Ok(()) }
}

/// A struct of `wire`: its keys in the order kubelets send them, each with the reader that
/// fills its field, or `skip` for a key Heapster does not read (kept in the list only so that
/// the key after it is found in place). Other keys are skipped; a field read twice gives up
/// (serde's derive rejects it, so the serde path reports it).
macro_rules! fields {
    (@entry $r:ident, $value:ident, $seen:ident, $bit:ident, skip) => {
        $r.skip(0)
    };
    (@entry $r:ident, $value:ident, $seen:ident, $bit:ident, $field:ident: $read:expr) => {{
        if $seen & $bit != 0 {
            return Err(Fallback);
        }
        $seen |= $bit;
        $value.$field = ($read)($r)?;
        Ok(())
    }};
    ($r:ident, $ty:ty { $($key:literal => $field:ident $(: $read:expr)?),* $(,)? }) => {{
        const KEYS: &[&[u8]] = &[$(concat!("\"", $key, "\"").as_bytes()),*];
        let mut value = <$ty>::default();
        let mut seen = 0u64;
        $r.known_entries(KEYS, |r, k| {
            let (mut i, mut bit) = (0usize, 1u64);
            $(
                if k == Some(i) {
                    return fields!(@entry r, value, seen, bit, $field $(: $read)?);
                }
                i += 1;
                bit <<= 1;
            )*
            let _ = (i, bit);
            r.skip(0)
        })?;
        Ok(value)
    }};
}

fn node<'a>(r: &mut Reader<'a>) -> Read<wire::NodeStats<'a>> {
    fields!(r, wire::NodeStats<'a> {
        "nodeName" => node_name: text,
        "systemContainers" => system_containers: list(obj(container)),
        "startTime" => start_time: text,
        "cpu" => cpu: obj(cpu),
        "memory" => memory: obj(memory),
        "network" => network: obj(network),
        "fs" => fs: obj(fs),
        "runtime" => skip,
        "rlimit" => skip,
    })
}

fn pod<'a>(r: &mut Reader<'a>) -> Read<wire::PodStats<'a>> {
    fields!(r, wire::PodStats<'a> {
        "podRef" => pod_ref: obj(pod_ref),
        "startTime" => start_time: text,
        "containers" => containers: list(obj(container)),
        "cpu" => cpu: obj(cpu),
        "memory" => memory: obj(memory),
        "network" => network: obj(network),
        "volume" => volume: list(obj(fs)),
        "ephemeral-storage" => ephemeral_storage: obj(fs),
    })
}

fn pod_ref<'a>(r: &mut Reader<'a>) -> Read<wire::PodRef<'a>> {
    fields!(r, wire::PodRef<'a> {
        "name" => name: text,
        "namespace" => namespace: text,
        "uid" => uid: text,
    })
}

fn container<'a>(r: &mut Reader<'a>) -> Read<wire::ContainerStats<'a>> {
    fields!(r, wire::ContainerStats<'a> {
        "name" => name: text,
        "startTime" => start_time: text,
        "cpu" => cpu: obj(cpu),
        "memory" => memory: obj(memory),
        "rootfs" => rootfs: obj(fs),
        "logs" => logs: obj(fs),
        "accelerators" => accelerators: list(obj(accelerator)),
        "userDefinedMetrics" => user_defined_metrics: list(obj(user_defined_metric)),
    })
}

fn cpu<'a>(r: &mut Reader<'a>) -> Read<wire::CpuStats<'a>> {
    fields!(r, wire::CpuStats<'a> {
        "time" => time: text,
        "usageNanoCores" => skip,
        "usageCoreNanoSeconds" => usage_core_nano_seconds: num,
    })
}

fn memory<'a>(r: &mut Reader<'a>) -> Read<wire::MemoryStats<'a>> {
    fields!(r, wire::MemoryStats<'a> {
        "time" => time: text,
        "availableBytes" => skip,
        "usageBytes" => usage_bytes: num,
        "workingSetBytes" => working_set_bytes: num,
        "rssBytes" => rss_bytes: num,
        "pageFaults" => page_faults: num,
        "majorPageFaults" => major_page_faults: num,
    })
}

fn network<'a>(r: &mut Reader<'a>) -> Read<wire::NetworkStats<'a>> {
    fields!(r, wire::NetworkStats<'a> {
        "time" => time: text,
        "name" => skip,
        "rxBytes" => rx_bytes: num,
        "rxErrors" => rx_errors: num,
        "txBytes" => tx_bytes: num,
        "txErrors" => tx_errors: num,
        "interfaces" => interfaces: list(obj(interface)),
    })
}

fn interface(r: &mut Reader<'_>) -> Read<wire::InterfaceStats> {
    fields!(r, wire::InterfaceStats {
        "name" => skip,
        "rxBytes" => rx_bytes: num,
        "rxErrors" => rx_errors: num,
        "txBytes" => tx_bytes: num,
        "txErrors" => tx_errors: num,
    })
}

/// Also a volume's stats, whose `name` comes last.
fn fs<'a>(r: &mut Reader<'a>) -> Read<wire::FsStats<'a>> {
    fields!(r, wire::FsStats<'a> {
        "time" => skip,
        "availableBytes" => available_bytes: num,
        "capacityBytes" => capacity_bytes: num,
        "usedBytes" => used_bytes: num,
        "inodesFree" => inodes_free: num,
        "inodes" => inodes: num,
        "inodesUsed" => skip,
        "name" => name: text,
    })
}

fn accelerator<'a>(r: &mut Reader<'a>) -> Read<wire::AcceleratorStats<'a>> {
    fields!(r, wire::AcceleratorStats<'a> {
        "make" => make: text,
        "model" => model: text,
        "id" => id: text,
        "memoryTotal" => memory_total: num,
        "memoryUsed" => memory_used: num,
        "dutyCycle" => duty_cycle: num,
    })
}

fn user_defined_metric<'a>(r: &mut Reader<'a>) -> Read<wire::UserDefinedMetric<'a>> {
    fields!(r, wire::UserDefinedMetric<'a> {
        "name" => name: text,
        "type" => kind: text,
        "value" => value: float,
    })
}

/// A lenient number: a plain non-negative integer, or `null`.
fn num(r: &mut Reader<'_>) -> Read<Num> {
    match r.peek() {
        Some(b'0'..=b'9') => r.uint().map(Lenient::Value),
        _ => r.null(),
    }
}

/// A lenient float, taken here only when written as a plain integer (as serde_json's `u64`).
fn float(r: &mut Reader<'_>) -> Read<Float> {
    match r.peek() {
        Some(b'0'..=b'9') => r.uint().map(|v| Lenient::Value(v as f64)),
        _ => r.null(),
    }
}

fn text<'a>(r: &mut Reader<'a>) -> Read<Text<'a>> {
    match r.peek() {
        Some(b'"') => r.string().map(|s| Lenient::Value(Cow::Borrowed(s))),
        _ => r.null(),
    }
}

/// A lenient object read by `read` once its `{` is taken.
fn obj<'a, T>(read: impl Fn(&mut Reader<'a>) -> Read<T>) -> impl Fn(&mut Reader<'a>) -> Read<Obj<T>> {
    move |r| match r.peek() {
        Some(b'{') => {
            r.at += 1;
            read(r).map(|v| Lenient::Value(Object(v)))
        }
        _ => r.null(),
    }
}

/// A lenient array, each item read by `item`.
fn list<'a, T>(item: impl Fn(&mut Reader<'a>) -> Read<T>) -> impl Fn(&mut Reader<'a>) -> Read<List<T>> {
    move |r| match r.peek() {
        Some(b'[') => {
            r.at += 1;
            let mut items = Vec::new();
            r.items(|r| {
                items.push(item(r)?);
                Ok(())
            })?;
            Ok(Lenient::Value(items))
        }
        _ => r.null(),
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The eight bytes at `i`, the first in the lowest byte; `None` within eight of the end.
#[inline]
fn word_at(bytes: &[u8], i: usize) -> Option<u64> {
    let chunk: [u8; 8] = bytes.get(i..i.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(chunk))
}

/// A high bit in each byte of `word` that can end a plain string (`"`, `\`, a control
/// character). Above the lowest flagged byte there may be false flags; the lowest is exact.
#[inline]
fn string_stops(word: u64) -> u64 {
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    zero(word ^ (ONES * u64::from(b'"'))) | zero(word ^ (ONES * u64::from(b'\\'))) | below_space
}

/// How many ASCII digits `word` begins with (its lowest bytes), 0 to 8.
#[inline]
fn leading_digits(word: u64) -> usize {
    const HIGH_NIBBLES: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    // A digit byte gives 0x33; a carry of the addition only reaches bytes above a non-digit.
    let digits = (word & HIGH_NIBBLES) | ((word.wrapping_add(0x0606_0606_0606_0606) & HIGH_NIBBLES) >> 4);
    ((digits ^ 0x3333_3333_3333_3333).trailing_zeros() / 8) as usize
}

/// 10^k for the k digits [`Reader::uint`] reads at once.
const POWERS_OF_TEN: [u64; 8] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000];

/// The value of eight ASCII digits, the first (most significant) in the lowest byte.
#[inline]
fn parse_eight_digits(word: u64) -> u64 {
    let pairs = (word & 0x0F0F_0F0F_0F0F_0F0F).wrapping_mul(2561) >> 8;
    let quads = (pairs & 0x00FF_00FF_00FF_00FF).wrapping_mul(6_553_601) >> 16;
    (quads & 0x0000_FFFF_0000_FFFF).wrapping_mul(42_949_672_960_001) >> 32
}

/// The body and where reading is in it. `text` and `bytes` are the same body.
pub(super) struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        Reader { text, bytes: text.as_bytes(), at: 0 }
    }

    #[inline]
    pub(super) fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// JSON's whitespace, as serde_json takes it.
    #[inline]
    fn ws(&mut self) {
        let mut i = self.at;
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(i) {
            i += 1;
        }
        self.at = i;
    }

    #[inline]
    pub(super) fn expect(&mut self, byte: u8) -> Read<()> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(Fallback)
        }
    }

    fn literal(&mut self, word: &[u8]) -> Read<()> {
        let end = self.at.checked_add(word.len()).ok_or(Fallback)?;
        if self.bytes.get(self.at..end) == Some(word) {
            self.at = end;
            Ok(())
        } else {
            Err(Fallback)
        }
    }

    /// `null`, as an absent lenient value; anything else is not this reader's to judge.
    pub(super) fn null<T>(&mut self) -> Read<Lenient<T>> {
        self.literal(b"null").map(|()| Lenient::Absent)
    }

    /// A string without escapes or control characters, borrowed from the body; eight bytes
    /// at a time while no byte can end it.
    #[inline]
    pub(super) fn string(&mut self) -> Read<&'a str> {
        self.expect(b'"')?;
        let (bytes, start) = (self.bytes, self.at);
        let mut i = start;
        while let Some(word) = word_at(bytes, i) {
            let stops = string_stops(word);
            if stops != 0 {
                i += (stops.trailing_zeros() / 8) as usize;
                break;
            }
            i += 8;
        }
        while let Some(&b) = bytes.get(i) {
            if b == b'"' || b == b'\\' || b < 0x20 {
                break;
            }
            i += 1;
        }
        if bytes.get(i) != Some(&b'"') {
            return Err(Fallback);
        }
        self.at = i + 1;
        // The body is valid UTF-8 and the quotes are ASCII, so this slice is whole characters.
        self.text.get(start..i).ok_or(Fallback)
    }

    /// `0` or a non-negative integer without leading zeros, fraction or exponent; eight
    /// digits at a time, and the last few of them at once (not a byte at a time, whose loop
    /// exit a branch predictor cannot guess for numbers of every length).
    #[inline]
    pub(super) fn uint(&mut self) -> Read<i64> {
        let (bytes, start) = (self.bytes, self.at);
        let mut i = start;
        let mut n = 0u64;
        while let Some(word) = word_at(bytes, i) {
            let k = leading_digits(word);
            if k == 8 {
                n = n.wrapping_mul(100_000_000).wrapping_add(parse_eight_digits(word));
                i += 8;
                continue;
            }
            if k > 0 {
                // The k digits moved to the top of the word, `0`s below them.
                let shift = 8 * (8 - k) as u32;
                let padded = (word << shift) | ((ONES * u64::from(b'0')) >> (64 - shift));
                n = n.wrapping_mul(POWERS_OF_TEN[k]).wrapping_add(parse_eight_digits(padded));
                i += k;
            }
            // Every digit is read: fewer than eight and not at the end.
            self.at = i;
            return self.uint_end(start, n);
        }
        while let Some(d @ b'0'..=b'9') = bytes.get(i).copied() {
            n = n.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
            i += 1;
        }
        self.at = i;
        self.uint_end(start, n)
    }

    /// Judges the digits from `start` to the reader's place, whose value is `n`.
    #[inline]
    fn uint_end(&mut self, start: usize, n: u64) -> Read<i64> {
        let (bytes, i) = (self.bytes, self.at);
        let digits = i - start;
        let leading_zero = digits > 1 && bytes.get(start) == Some(&b'0');
        if digits == 0
            || digits > MAX_DIGITS
            || leading_zero
            || matches!(self.peek(), Some(b'.' | b'e' | b'E'))
        {
            return Err(Fallback);
        }
        i64::try_from(n).map_err(|_| Fallback)
    }

    /// The entries of an object whose `{` was taken: each key handed to `entry` with the
    /// reader at its value, which `entry` must consume.
    #[inline]
    fn entries(&mut self, mut entry: impl FnMut(&mut Self, &'a [u8]) -> Read<()>) -> Read<()> {
        self.members(|r| {
            let key = r.string()?;
            r.colon()?;
            entry(r, key.as_bytes())
        })
    }

    /// [`Reader::entries`] for an object of known keys (`keys`, each with its quotes, in the
    /// order they usually come): `entry` gets the index of each key in `keys`, `None` for
    /// another. The key after the last one found is looked for first, by one comparison of the
    /// bytes; only a key out of that order is read as a string and looked up.
    #[inline]
    pub(super) fn known_entries(
        &mut self,
        keys: &[&[u8]],
        mut entry: impl FnMut(&mut Self, Option<usize>) -> Read<()>,
    ) -> Read<()> {
        let mut next = 0;
        self.members(|r| {
            let k = match keys.get(next) {
                // A quoted key of plain characters is exactly what `string` would read.
                Some(quoted) if r.bytes.get(r.at..r.at + quoted.len()).is_some_and(|at| same(at, quoted)) => {
                    r.at += quoted.len();
                    Some(next)
                }
                _ => {
                    let key = r.string()?.as_bytes();
                    keys.iter()
                        .position(|quoted| quoted.get(1..quoted.len() - 1).is_some_and(|k| same(k, key)))
                }
            };
            if let Some(k) = k {
                next = k + 1;
            }
            r.colon()?;
            entry(r, k)
        })
    }

    /// The members of an object whose `{` was taken, each read by `member` (its key, the colon
    /// and its value) from the reader at the member's first byte.
    #[inline]
    fn members(&mut self, mut member: impl FnMut(&mut Self) -> Read<()>) -> Read<()> {
        self.ws();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(());
        }
        loop {
            self.ws();
            member(self)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(Fallback),
            }
        }
    }

    /// The `:` between a key and its value, with the spaces around it.
    #[inline]
    fn colon(&mut self) -> Read<()> {
        self.ws();
        self.expect(b':')?;
        self.ws();
        Ok(())
    }

    /// The items of an array whose `[` was taken, each consumed by `item`.
    #[inline]
    pub(super) fn items(&mut self, mut item: impl FnMut(&mut Self) -> Read<()>) -> Read<()> {
        self.ws();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(());
        }
        loop {
            self.ws();
            item(self)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(Fallback),
            }
        }
    }

    /// Passes over one value of any kind, checked as serde_json checks what it ignores.
    pub(super) fn skip(&mut self, depth: usize) -> Read<()> {
        match self.peek() {
            Some(b'"') => self.string().map(drop),
            Some(b'-' | b'0'..=b'9') => self.skip_number(),
            Some(b'n') => self.literal(b"null"),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'{') if depth < MAX_SKIP_DEPTH => {
                self.at += 1;
                self.entries(|r, _| r.skip(depth + 1))
            }
            Some(b'[') if depth < MAX_SKIP_DEPTH => {
                self.at += 1;
                self.items(|r| r.skip(depth + 1))
            }
            _ => Err(Fallback),
        }
    }

    /// JSON's number grammar; the value is not needed.
    fn skip_number(&mut self) -> Read<()> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(Fallback),
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return Err(Fallback);
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            if self.digits() == 0 {
                return Err(Fallback);
            }
        }
        Ok(())
    }

    /// Passes over a run of digits (of a number skipped), eight bytes at a time.
    fn digits(&mut self) -> usize {
        let start = self.at;
        while let Some(word) = word_at(self.bytes, self.at) {
            let k = leading_digits(word);
            self.at += k;
            if k < 8 {
                return self.at - start;
            }
        }
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
        self.at - start
    }
}

#[cfg(test)]
mod tests;
