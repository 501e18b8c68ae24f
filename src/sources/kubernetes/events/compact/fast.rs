//! The common case of [`super::compact_event`] without building a tree: the event's bytes are
//! scanned once into a flat tape of members (each object's members side by side), then written
//! from the tape in key order, strings and numbers copied as they are. The same tape gives the
//! fields the model takes (see `light::CoreItem::from_tape`), so an item of a list is read once.
//!
//! It takes only what it can write exactly as serde_json would: keys without escapes, integers
//! of up to 18 digits (no `-0`), nesting below serde_json's limit. Anything else, valid or not,
//! returns `None` and the tree path decides.

use std::cmp::Ordering;

/// How a value is written.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(in crate::sources::kubernetes::events) enum Kind {
    /// As it is: a number, a literal, or a string whose escapes (if any) are those serde_json
    /// writes itself (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`).
    Verbatim,
    /// A string with other escapes (`\u`, `\/`): decoded and written again.
    Recode,
    Object,
    Array,
}

/// One value on the tape, with its key when it is a member of an object.
#[derive(Clone, Copy, Debug)]
pub(in crate::sources::kubernetes::events) struct Node {
    /// The key's text, without quotes (empty for array elements).
    key: (u32, u32),
    /// The value's extent in the scanned text.
    pub start: u32,
    pub end: u32,
    pub kind: Kind,
    /// A string holding escapes.
    pub escaped: bool,
    /// Containers: their members are `nodes[first..first + len]`.
    first: u32,
    len: u32,
}

/// The members of every object and array of one scanned value; reused from item to item.
#[derive(Default)]
pub(in crate::sources::kubernetes::events) struct Tape {
    nodes: Vec<Node>,
    /// Members of the containers still open.
    stack: Vec<Node>,
    root: Option<Node>,
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
    let b = raw.as_bytes();
    let mut tape = Tape::default();
    let end = tape.scan(b, ws(b, 0))?;
    if ws(b, end) != b.len() {
        return None;
    }
    tape.write(raw, &mut [])
}

/// Where the JSON object at the start of `b` ends, when it is one this path takes (see the
/// module's doc); `None` when it is not, or when `b` ends inside it.
#[cfg(test)]
pub(super) fn object_end(b: &[u8]) -> Option<usize> {
    Tape::default().scan(b, 0)
}

impl Tape {
    /// Scans the object at `b[i]`, checking it; returns where it ends, or `None` when it is
    /// outside what this path takes or `b` ends inside it. Offsets on the tape are into `b`.
    pub fn scan(&mut self, b: &[u8], i: usize) -> Option<usize> {
        self.nodes.clear();
        self.stack.clear();
        self.root = None;
        // Offsets are kept as u32.
        let b = b.get(..b.len().min(u32::MAX as usize))?;
        if b.get(i) != Some(&b'{') {
            return None;
        }
        let root = self.value(b, i, 0)?;
        self.root = Some(root);
        Some(root.end as usize)
    }

    /// The scanned object.
    pub fn root(&self) -> Option<Node> {
        self.root
    }

    /// The members of a container (none for anything else).
    pub fn members(&self, node: &Node) -> &[Node] {
        self.nodes.get(node.first as usize..(node.first + node.len) as usize).unwrap_or(&[])
    }

    /// A member's key.
    pub fn key<'r>(&self, raw: &'r str, node: &Node) -> &'r str {
        raw.get(node.key.0 as usize..node.key.1 as usize).unwrap_or("")
    }

    fn value(&mut self, b: &[u8], i: usize, depth: usize) -> Option<Node> {
        let node = |start: usize, end: usize, kind, escaped| Node {
            key: (0, 0),
            start: start as u32,
            end: end as u32,
            kind,
            escaped,
            first: 0,
            len: 0,
        };
        match *b.get(i)? {
            open @ (b'{' | b'[') => {
                if depth + 1 > MAX_DEPTH {
                    return None;
                }
                let object = open == b'{';
                let close = if object { b'}' } else { b']' };
                let base = self.stack.len();
                let mut j = ws(b, i + 1);
                let end = if b.get(j) == Some(&close) {
                    j + 1
                } else {
                    loop {
                        let key = if object {
                            let (key_end, escapes) = string(b, j)?;
                            if escapes != Escapes::None {
                                return None;
                            }
                            let key = (j as u32 + 1, key_end as u32 - 1);
                            j = ws(b, key_end);
                            if b.get(j) != Some(&b':') {
                                return None;
                            }
                            j = ws(b, j + 1);
                            key
                        } else {
                            (0, 0)
                        };
                        let mut member = self.value(b, j, depth + 1)?;
                        member.key = key;
                        self.stack.push(member);
                        j = ws(b, member.end as usize);
                        match *b.get(j)? {
                            b',' => j = ws(b, j + 1),
                            c if c == close => break j + 1,
                            _ => return None,
                        }
                    }
                };
                let first = self.nodes.len();
                self.nodes.extend(self.stack.drain(base..));
                let kind = if object { Kind::Object } else { Kind::Array };
                Some(Node {
                    first: first as u32,
                    len: (self.nodes.len() - first) as u32,
                    ..node(i, end, kind, false)
                })
            }
            b'"' => {
                let (end, escapes) = string(b, i)?;
                Some(match escapes {
                    Escapes::None => node(i, end, Kind::Verbatim, false),
                    Escapes::Simple => node(i, end, Kind::Verbatim, true),
                    Escapes::Other => {
                        serde_json::from_slice::<String>(&b[i..end]).ok()?;
                        node(i, end, Kind::Recode, true)
                    }
                })
            }
            _ => scalar(b, i).map(|end| node(i, end, Kind::Verbatim, false)),
        }
    }

    /// Writes the scanned object (`raw` is the text scanned) compact and key-sorted. `marks`
    /// name values by their start; each gets where its text (inside the quotes) lands in the
    /// output, if it is written as it is.
    pub fn write(&mut self, raw: &str, marks: &mut [(u32, Option<usize>)]) -> Option<String> {
        let root = self.root?;
        let mut out = String::with_capacity((root.end - root.start) as usize);
        self.object(raw, root, &mut out, Strip::Top, marks)?;
        Some(out)
    }

    /// As [`Tape::write`], appending to `out` (places are counted from where the object
    /// starts); `out` is left as it was when this returns `None`.
    pub fn write_into(
        &mut self,
        raw: &str,
        out: &mut String,
        marks: &mut [(u32, Option<usize>)],
    ) -> Option<()> {
        let root = self.root?;
        let base = out.len();
        if self.object(raw, root, out, Strip::Top, marks).is_none() {
            out.truncate(base);
            return None;
        }
        for (_, place) in marks.iter_mut() {
            *place = place.and_then(|p| p.checked_sub(base));
        }
        Some(())
    }

    fn object(
        &mut self,
        raw: &str,
        node: Node,
        out: &mut String,
        strip: Strip,
        marks: &mut [(u32, Option<usize>)],
    ) -> Option<()> {
        let b = raw.as_bytes();
        let (base, top) = (node.first as usize, (node.first + node.len) as usize);
        let key = |m: &Node| &b[m.key.0 as usize..m.key.1 as usize];
        let members = self.nodes.get_mut(base..top)?;
        if !members.is_sorted_by(|x, y| key_order(key(x), key(y)).is_le()) {
            // Stable: of duplicate keys the last written stays last, and is the one kept.
            members.sort_by(|x, y| key_order(key(x), key(y)));
        }
        out.push('{');
        let mut first = true;
        for m in base..top {
            let member = self.nodes[m];
            let name = key(&member);
            let duplicate = m + 1 < top && key(&self.nodes[m + 1]) == name;
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
            let inner =
                if strip == Strip::Top && name == b"metadata" { Strip::Metadata } else { Strip::Nothing };
            self.value_out(raw, member, out, inner, marks)?;
        }
        out.push('}');
        Some(())
    }

    fn value_out(
        &mut self,
        raw: &str,
        node: Node,
        out: &mut String,
        strip: Strip,
        marks: &mut [(u32, Option<usize>)],
    ) -> Option<()> {
        let (start, end) = (node.start as usize, node.end as usize);
        match node.kind {
            Kind::Verbatim => {
                if let Some(mark) = marks.iter_mut().find(|(at, _)| *at == node.start) {
                    mark.1 = Some(out.len() + 1);
                }
                out.push_str(raw.get(start..end)?);
            }
            Kind::Recode => {
                // Decoded and written again as serde_json writes it.
                let text: String = serde_json::from_str(raw.get(start..end)?).ok()?;
                out.push_str(&serde_json::to_string(&text).ok()?);
            }
            Kind::Object => self.object(raw, node, out, strip, marks)?,
            Kind::Array => {
                out.push('[');
                for m in node.first..node.first + node.len {
                    if m > node.first {
                        out.push(',');
                    }
                    let item = *self.nodes.get(m as usize)?;
                    self.value_out(raw, item, out, Strip::Nothing, marks)?;
                }
                out.push(']');
            }
        }
        Some(())
    }
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

/// The escapes a string holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Escapes {
    None,
    /// Only those serde_json writes the same way.
    Simple,
    Other,
}

/// The string at `i` (its opening quote): where it ends, and which escapes it holds. Raw
/// control characters make it invalid; an `Other` escape is checked when the string is decoded.
fn string(b: &[u8], i: usize) -> Option<(usize, Escapes)> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let mut escapes = Escapes::None;
    let mut j = i + 1;
    loop {
        let at = j + memchr::memchr2(b'"', b'\\', b.get(j..)?)?;
        if b[j..at].iter().any(|&c| c < 0x20) {
            return None;
        }
        if b[at] == b'"' {
            return Some((at + 1, escapes));
        }
        match b.get(at + 1)? {
            b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => {
                if escapes == Escapes::None {
                    escapes = Escapes::Simple;
                }
            }
            _ => escapes = Escapes::Other,
        }
        j = at + 2;
    }
}

/// The text of a string whose escapes are all [`Escapes::Simple`] (`inner` is without quotes).
pub(in crate::sources::kubernetes::events) fn unescape_simple(inner: &str) -> Option<String> {
    let mut out = String::with_capacity(inner.len());
    let mut rest = inner;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let c = match rest.as_bytes().get(at + 1)? {
            b'"' => '"',
            b'\\' => '\\',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            _ => return None,
        };
        out.push(c);
        rest = &rest[at + 2..];
    }
    out.push_str(rest);
    Some(out)
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
