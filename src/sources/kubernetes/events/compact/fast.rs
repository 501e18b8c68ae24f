//! The common case of [`super::compact_event`] without building a tree: the event's bytes are
//! scanned in place, each object's members sorted as offsets on one shared stack, and strings
//! and numbers copied as they are.
//!
//! It takes only what it can write exactly as serde_json would: keys without escapes, integers
//! of up to 18 digits (no `-0`), nesting below serde_json's limit. Anything else, valid or not,
//! returns `None` and the tree path decides.

use std::cmp::Ordering;

/// One member of an object being written: its key, and its value's extent.
#[derive(Clone, Copy)]
struct Member {
    key: (u32, u32),
    value: (u32, u32),
    /// The value is written as it is: a string without escapes, a number or a literal.
    verbatim: bool,
}

/// Which key an object at this place leaves out (as the tree path's `Strip`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Strip {
    Top,
    Metadata,
    Nothing,
}

/// Deeper than this is left to the tree path (serde_json refuses past 128).
const MAX_DEPTH: usize = 100;

/// The compact, key-sorted JSON of the object `raw` without `metadata.managedFields`, or `None`
/// when `raw` is outside what this path takes.
pub(super) fn compact(raw: &str) -> Option<String> {
    // Offsets are kept as u32.
    u32::try_from(raw.len()).ok()?;
    let b = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut stack = Vec::with_capacity(32);
    let start = ws(b, 0);
    if b.get(start) != Some(&b'{') {
        return None;
    }
    let end = object(raw, start, &mut out, &mut stack, Strip::Top, 1)?;
    if ws(b, end) != b.len() {
        return None;
    }
    Some(out)
}

fn ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// Keys in byte order, most told apart by their first byte without a call.
#[inline]
fn key_order(a: &[u8], b: &[u8]) -> Ordering {
    match (a.first(), b.first()) {
        (Some(x), Some(y)) if x != y => x.cmp(y),
        _ => a.cmp(b),
    }
}

/// Writes the object at `i` (its `{`); returns where it ends.
fn object(
    raw: &str,
    i: usize,
    out: &mut String,
    stack: &mut Vec<Member>,
    strip: Strip,
    depth: usize,
) -> Option<usize> {
    if depth > MAX_DEPTH {
        return None;
    }
    let b = raw.as_bytes();
    // First the members' places, then the members in key order.
    let base = stack.len();
    let mut i = ws(b, i + 1);
    let end = if b.get(i) == Some(&b'}') {
        i + 1
    } else {
        loop {
            let (key_end, escaped) = string(b, i)?;
            if escaped {
                return None;
            }
            let key = (i as u32 + 1, key_end as u32 - 1);
            i = ws(b, key_end);
            if b.get(i) != Some(&b':') {
                return None;
            }
            let start = ws(b, i + 1);
            let (value_end, verbatim) = skip(b, start, depth)?;
            stack.push(Member { key, value: (start as u32, value_end as u32), verbatim });
            i = ws(b, value_end);
            match b.get(i)? {
                b',' => i = ws(b, i + 1),
                b'}' => break i + 1,
                _ => return None,
            }
        }
    };
    let key = |m: &Member| &b[m.key.0 as usize..m.key.1 as usize];
    let members = &mut stack[base..];
    if !members.is_sorted_by(|x, y| key_order(key(x), key(y)).is_le()) {
        // Stable: of duplicate keys the last written stays last, and is the one kept.
        members.sort_by(|x, y| key_order(key(x), key(y)));
    }
    out.push('{');
    let mut first = true;
    let top = stack.len();
    for m in base..top {
        let member = stack[m];
        let name = key(&member);
        let duplicate = m + 1 < top && key(&stack[m + 1]) == name;
        if duplicate || (strip == Strip::Metadata && name == b"managedFields") {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        // Keys hold no escapes, so they are written as they came.
        out.push_str(raw.get(member.key.0 as usize - 1..member.key.1 as usize + 1)?);
        out.push(':');
        let (start, end) = (member.value.0 as usize, member.value.1 as usize);
        if member.verbatim {
            out.push_str(raw.get(start..end)?);
            continue;
        }
        let inner = if strip == Strip::Top && name == b"metadata" { Strip::Metadata } else { Strip::Nothing };
        value(raw, start, out, stack, inner, depth)?;
    }
    out.push('}');
    stack.truncate(base);
    Some(end)
}

/// Writes a value that is not written as it is: an object, an array, or a string with
/// escapes.
fn value(
    raw: &str,
    i: usize,
    out: &mut String,
    stack: &mut Vec<Member>,
    strip: Strip,
    depth: usize,
) -> Option<usize> {
    let b = raw.as_bytes();
    match *b.get(i)? {
        b'{' => object(raw, i, out, stack, strip, depth + 1),
        b'[' => {
            if depth + 1 > MAX_DEPTH {
                return None;
            }
            out.push('[');
            let mut i = ws(b, i + 1);
            if b.get(i) == Some(&b']') {
                out.push(']');
                return Some(i + 1);
            }
            loop {
                let (end, verbatim) = skip(b, i, depth + 1)?;
                if verbatim {
                    out.push_str(raw.get(i..end)?);
                } else {
                    value(raw, i, out, stack, Strip::Nothing, depth + 1)?;
                }
                i = ws(b, end);
                match b.get(i)? {
                    b',' => {
                        out.push(',');
                        i = ws(b, i + 1);
                    }
                    b']' => {
                        out.push(']');
                        return Some(i + 1);
                    }
                    _ => return None,
                }
            }
        }
        b'"' => {
            let (end, _) = string(b, i)?;
            // Decoded and written again as serde_json writes it; it refuses what is invalid.
            let text: String = serde_json::from_str(raw.get(i..end)?).ok()?;
            out.push_str(&serde_json::to_string(&text).ok()?);
            Some(end)
        }
        _ => None,
    }
}

/// Where the JSON object at the start of `b` ends, when it is one this path takes (see the
/// module's doc); `None` when it is not, or when `b` ends inside it.
pub(in crate::sources::kubernetes::events) fn object_end(b: &[u8]) -> Option<usize> {
    if b.first() != Some(&b'{') {
        return None;
    }
    skip(b, 0, 0).map(|(end, _)| end)
}

/// Skips the value at `i`, checking it; returns where it ends and whether it is written as it
/// is (see [`Member::verbatim`]).
fn skip(b: &[u8], i: usize, depth: usize) -> Option<(usize, bool)> {
    match *b.get(i)? {
        open @ (b'{' | b'[') => {
            let close = if open == b'{' { b'}' } else { b']' };
            if depth + 1 > MAX_DEPTH {
                return None;
            }
            let mut i = ws(b, i + 1);
            if b.get(i) == Some(&close) {
                return Some((i + 1, false));
            }
            loop {
                if close == b'}' {
                    let (key_end, _) = skip(b, i, depth).filter(|_| b[i] == b'"')?;
                    i = ws(b, key_end);
                    if b.get(i) != Some(&b':') {
                        return None;
                    }
                    i = ws(b, i + 1);
                }
                i = ws(b, skip(b, i, depth + 1)?.0);
                match *b.get(i)? {
                    b',' => i = ws(b, i + 1),
                    c if c == close => return Some((i + 1, false)),
                    _ => return None,
                }
            }
        }
        b'"' => {
            let (end, escaped) = string(b, i)?;
            if escaped {
                serde_json::from_slice::<String>(&b[i..end]).ok()?;
            }
            Some((end, !escaped))
        }
        _ => scalar(b, i).map(|end| (end, true)),
    }
}

/// The string at `i` (its opening quote): where it ends, and whether it holds escapes. Raw
/// control characters make it invalid.
fn string(b: &[u8], i: usize) -> Option<(usize, bool)> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let mut escaped = false;
    let mut j = i + 1;
    loop {
        let at = j + memchr::memchr2(b'"', b'\\', b.get(j..)?)?;
        if b[j..at].iter().any(|&c| c < 0x20) {
            return None;
        }
        if b[at] == b'"' {
            return Some((at + 1, escaped));
        }
        // The escaped character is checked when the string is decoded.
        escaped = true;
        j = at + 2;
    }
}

/// A literal, or an integer of up to 18 digits as serde_json writes it back: the same text.
fn scalar(b: &[u8], i: usize) -> Option<usize> {
    let rest = b.get(i..)?;
    for literal in [&b"true"[..], b"false", b"null"] {
        if rest.starts_with(literal) {
            return Some(i + literal.len());
        }
    }
    let negative = rest.first() == Some(&b'-');
    let digits = &rest[usize::from(negative)..];
    let count = digits.iter().take_while(|c| c.is_ascii_digit()).count();
    // `-0` is a float to serde_json; fractions, exponents, leading zeros and big numbers are
    // left to it too.
    if count == 0 || count > 18 || (digits[0] == b'0' && (count > 1 || negative)) {
        return None;
    }
    let end = i + usize::from(negative) + count;
    match b.get(end) {
        Some(b'.' | b'e' | b'E') => None,
        _ => Some(end),
    }
}
