//! A Kubernetes list body with its items left undecoded, so that each item can fail on its
//! own: one bad object costs a warning, never the rest of the list.

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawList<'a> {
    pub kind: Option<String>,
    pub metadata: Option<VersionMeta>,
    /// Absent: not a list. `null`: an empty list (Go encodes a nil slice so).
    #[serde(borrow, default, deserialize_with = "present")]
    pub items: Option<Option<Vec<&'a RawValue>>>,
}

/// The `metadata` of a list or a bookmark: only its version matters.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct VersionMeta {
    pub resource_version: Option<String>,
}

/// Just enough of a broken item to name it in a warning.
#[derive(Deserialize)]
struct ItemIdentity {
    metadata: Option<ItemIdentityMeta>,
}

#[derive(Deserialize)]
struct ItemIdentityMeta {
    name: Option<String>,
    namespace: Option<String>,
}

fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// ` (pod ns/name)`, when a broken item still says who it is.
pub(super) fn identity(raw: &RawValue, item: &str) -> String {
    let Ok(ItemIdentity { metadata: Some(meta) }) = serde_json::from_str(raw.get()) else {
        return String::new();
    };
    match (meta.namespace, meta.name) {
        (Some(ns), Some(name)) => format!(" ({item} {ns}/{name})"),
        (None, Some(name)) => format!(" ({item} {name})"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_items_raw_and_names_broken_ones() {
        let body = br#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"9"},"items":[{"metadata":{"namespace":"web","name":"a"},"spec":7}]}"#;
        let list: RawList<'_> = serde_json::from_slice(body).unwrap();
        assert_eq!(list.metadata.and_then(|m| m.resource_version).as_deref(), Some("9"));
        let items = list.items.flatten().unwrap();
        assert_eq!(identity(items[0], "pod"), " (pod web/a)");
        let empty: RawList<'_> = serde_json::from_slice(br#"{"kind":"PodList","items":null}"#).unwrap();
        assert!(matches!(empty.items, Some(None)));
        let none: RawList<'_> = serde_json::from_slice(br#"{"kind":"Status"}"#).unwrap();
        assert!(none.items.is_none());
    }
}
