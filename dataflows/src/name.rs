//! Interned names: the label strings every window repeats, shared instead of copied.

use std::fmt;
use std::hash::{Hash, Hasher};

use arcstr::ArcStr;

use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A shared, immutable string. Names repeat every window, so they are interned once and shared.
///
/// Equality and order are the strings', with a shortcut: two handles of one interned string
/// are equal without reading it (keys are compared millions of times a window).
///
/// The handle is one pointer (the length lives beside the bytes): a set holds a dozen names
/// and a window holds 100,000 sets, so the length word of a fat `Arc<str>` costs ~10 MB a window.
#[derive(Clone, Default)]
pub struct Name(ArcStr);

/// The string's hash, consistent with `eq` (equal strings hash alike whatever their handles).
impl Hash for Name {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl PartialEq for Name {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        ArcStr::ptr_eq(&self.0, &other.0) || self.as_str() == other.as_str()
    }
}

impl Eq for Name {}

impl PartialOrd for Name {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    #[inline]
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if ArcStr::ptr_eq(&self.0, &other.0) {
            return std::cmp::Ordering::Equal;
        }
        self.as_str().cmp(other.as_str())
    }
}

impl Name {
    pub fn new(s: &str) -> Self {
        Name(ArcStr::from(s))
    }

    #[inline]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A name for a string literal (`arcstr::literal!`): it is not counted, so the values that
    /// repeat it (a filesystem's `/` in every container's set) clone and drop it without an
    /// atomic operation. Equal to any other handle of the same string.
    pub const fn from_literal(literal: ArcStr) -> Name {
        Name(literal)
    }
}

impl std::ops::Deref for Name {
    type Target = str;
    #[inline]
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Self {
        Name::new(s)
    }
}

impl From<String> for Name {
    fn from(s: String) -> Self {
        Name(ArcStr::from(s))
    }
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(Name::new(&s))
    }
}

/// Hands out one shared [`Name`] per distinct string.
///
/// `sweep` drops names nobody else holds any more, so pods that come and go do not grow it.
#[derive(Default)]
pub struct Interner {
    names: FxHashSet<Name>,
    /// Per source (a node), the names its latest body interned, in order ([`Interner::recall`]).
    recalls: FxHashMap<Name, Recalled>,
    /// The name last interned through each slot of [`Interner::intern_at`].
    recent: [Option<Name>; RECENT_SLOTS],
}

/// Slots of [`Interner::intern_at`].
pub const RECENT_SLOTS: usize = 12;

/// The names one source's latest body interned.
struct Recalled {
    names: Vec<Name>,
    /// Whether the source sent a body since the last sweep.
    fresh: bool,
}

/// How far past a missed name [`Recall`] looks for where the last body went on.
const RESYNC: usize = 16;

impl Interner {
    /// As [`Interner::intern`], trying first the name last interned through `slot` (one per
    /// field of a record): a field that repeats from one record to the next (a namespace, a
    /// pod's name over its events) then costs a comparison instead of a hash and a probe.
    /// A slot past [`RECENT_SLOTS`] only interns.
    pub fn intern_at(&mut self, slot: usize, s: &str) -> Name {
        if let Some(Some(last)) = self.recent.get(slot)
            && last.as_str() == s
        {
            return last.clone();
        }
        let name = self.intern(s);
        if let Some(recent) = self.recent.get_mut(slot) {
            *recent = Some(name.clone());
        }
        name
    }

    pub fn intern(&mut self, s: &str) -> Name {
        if let Some(name) = self.names.get(s) {
            return name.clone();
        }
        let name = Name::new(s);
        self.names.insert(name.clone());
        name
    }

    /// Interns one body of `source`, expecting the names of its previous body in the same order.
    ///
    /// A kubelet lists its pods in the same order every window, and most of their names (pod
    /// names, uids, volumes) are unique: each is a table miss in a set of 150,000 names, while
    /// the same name one window earlier is the next in a short list.
    pub fn recall(&mut self, source: &Name) -> Recall<'_> {
        let last = self.recalls.remove(source).map(|r| r.names).unwrap_or_default();
        Recall { next: Vec::with_capacity(last.len()), last, at: 0, source: source.clone(), interner: self }
    }

    /// Forgets names that only the interner still holds, and the recalled bodies of sources
    /// that sent none since the previous sweep.
    pub fn sweep(&mut self) {
        self.recalls.retain(|_, recalled| std::mem::replace(&mut recalled.fresh, false));
        self.recent = Default::default();
        // Literals (the empty name) are not counted and cost nothing to keep.
        self.names.retain(|n| ArcStr::strong_count(&n.0).is_none_or(|count| count > 1));
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// An [`Interner`] for one body of one source; remembers its names for the source's next body
/// when dropped.
pub struct Recall<'i> {
    interner: &'i mut Interner,
    source: Name,
    /// The previous body's names, and where this body is in them.
    last: Vec<Name>,
    at: usize,
    next: Vec<Name>,
}

impl Recall<'_> {
    pub fn intern(&mut self, s: &str) -> Name {
        let name = match self.last.get(self.at) {
            Some(name) if name.as_str() == s => {
                self.at += 1;
                name.clone()
            }
            _ => {
                let name = self.interner.intern(s);
                // A pod gone since the last body: go on after it (addresses only, no strings read).
                let ahead = &self.last[self.at.min(self.last.len())..];
                if let Some(i) = ahead.iter().take(RESYNC).position(|n| ArcStr::ptr_eq(&n.0, &name.0)) {
                    self.at += i + 1;
                }
                name
            }
        };
        self.next.push(name.clone());
        name
    }
}

impl Drop for Recall<'_> {
    fn drop(&mut self) {
        let names = std::mem::take(&mut self.next);
        self.interner.recalls.insert(self.source.clone(), Recalled { names, fresh: true });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interner_shares_and_sweeps() {
        let mut i = Interner::default();
        let a = i.intern("node-1");
        let b = i.intern("node-1");
        assert!(ArcStr::ptr_eq(&a.0, &b.0));
        i.intern("gone");
        i.sweep();
        assert_eq!(i.len(), 1);
    }

    #[test]
    fn intern_at_shares_through_slots_and_sweeps() {
        let mut i = Interner::default();
        let a = i.intern_at(0, "default");
        assert!(ArcStr::ptr_eq(&a.0, &i.intern_at(0, "default").0), "the slot's last name");
        let other = i.intern_at(0, "kube-system");
        assert_eq!(other.as_str(), "kube-system", "another value in the slot");
        assert!(ArcStr::ptr_eq(&a.0, &i.intern_at(1, "default").0), "shared with other slots");
        assert!(ArcStr::ptr_eq(&a.0, &i.intern("default").0));
        assert_eq!(i.intern_at(RECENT_SLOTS + 3, "far").as_str(), "far", "past the slots: interned");
        drop((a, other));
        i.sweep();
        assert_eq!(i.len(), 0, "the slots hold nothing past a sweep");
    }

    #[test]
    fn recall_finds_the_last_bodys_names_and_goes_on_after_a_gap() {
        let mut i = Interner::default();
        let node = Name::new("node-1");
        let first: Vec<Name> = {
            let mut r = i.recall(&node);
            ["ns", "pod-a", "pod-b", "pod-c"].iter().map(|s| r.intern(s)).collect()
        };
        let mut r = i.recall(&node);
        // pod-a is gone and pod-d is new; the rest are the very same names.
        assert!(ArcStr::ptr_eq(&r.intern("ns").0, &first[0].0));
        assert!(ArcStr::ptr_eq(&r.intern("pod-b").0, &first[2].0));
        assert_eq!(r.at, 3, "resynchronised past the missing name");
        assert!(ArcStr::ptr_eq(&r.intern("pod-c").0, &first[3].0));
        assert_eq!(r.intern("pod-d").as_str(), "pod-d");
        drop(r);
        assert_eq!(i.recalls[&node].names.len(), 4);
    }

    #[test]
    fn sweep_forgets_sources_that_sent_nothing() {
        let mut i = Interner::default();
        let (quiet, busy) = (Name::new("quiet"), Name::new("busy"));
        i.recall(&quiet).intern("pod-q");
        i.recall(&busy).intern("pod-b");
        i.sweep();
        assert_eq!(i.len(), 2, "recalled names are still held");
        i.recall(&busy).intern("pod-b");
        i.sweep();
        assert!(!i.recalls.contains_key(&quiet));
        assert_eq!(i.len(), 1, "only the busy source's name is left");
    }
}
