//! Interned names: the label strings every window repeats, shared instead of copied.

use std::fmt;
use std::hash::{Hash, Hasher};

use arcstr::ArcStr;

use rustc_hash::FxHashSet;
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
}

impl Interner {
    pub fn intern(&mut self, s: &str) -> Name {
        if let Some(name) = self.names.get(s) {
            return name.clone();
        }
        let name = Name::new(s);
        self.names.insert(name.clone());
        name
    }

    /// Forgets names that only the interner still holds.
    pub fn sweep(&mut self) {
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
}
