//! The API objects of the current window, their resource versions, and the watch event log.
//!
//! One counter stamps every change, as etcd's revision does: a list answers the counter, an
//! object carries the counter value of its last change, and a watch from RV N replays the logged
//! events above N. Events older than the log keeps are compacted away, after which a watch from
//! before them is `410 Expired`, so clients must list again, as with a real apiserver.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::scenario::ApiList;

/// `(namespace, name)`; namespace is empty for cluster-scoped objects.
pub type Key = (String, String);

#[derive(Debug)]
struct Object {
    /// As recorded (after address rewriting), without a resource version: what changes compare.
    content: Value,
    rv: u64,
}

#[derive(Debug)]
struct Event {
    rv: u64,
    list: ApiList,
    namespace: String,
    line: Bytes,
}

/// A watch asked for events the log no longer has.
#[derive(Debug, PartialEq, Eq)]
pub struct Expired {
    pub requested: u64,
    pub compacted_through: u64,
}

impl Expired {
    /// The `ERROR` watch event a real apiserver sends for it.
    pub fn line(&self) -> Bytes {
        let status = status_value(
            410,
            "Expired",
            &format!("too old resource version: {} ({})", self.requested, self.compacted_through),
        );
        event_line("ERROR", &status)
    }
}

#[derive(Debug)]
pub struct Store {
    rv: u64,
    objects: [BTreeMap<Key, Object>; 3],
    log: VecDeque<Event>,
    capacity: usize,
    /// Highest RV of an event no longer in the log.
    compacted_through: u64,
}

fn index(list: ApiList) -> usize {
    match list {
        ApiList::Nodes => 0,
        ApiList::Pods => 1,
        ApiList::Namespaces => 2,
    }
}

/// `kind` of a list's items.
pub fn item_kind(list: ApiList) -> &'static str {
    match list {
        ApiList::Nodes => "Node",
        ApiList::Pods => "Pod",
        ApiList::Namespaces => "Namespace",
    }
}

/// The key of an object: its name, and its namespace if it has one.
pub fn object_key(object: &Value) -> Option<Key> {
    let meta = object.get("metadata")?;
    let name = meta.get("name")?.as_str().filter(|n| !n.is_empty())?;
    let ns = meta.get("namespace").and_then(Value::as_str).unwrap_or("");
    Some((ns.to_string(), name.to_string()))
}

impl Store {
    /// The first window's objects, stamped 1, 2, ...; history before them counts as compacted.
    /// Items must have keys ([`object_key`]); later duplicates of a key win.
    pub fn new(initial: [Vec<Value>; 3], capacity: usize) -> Store {
        let mut store = Store {
            rv: 0,
            objects: Default::default(),
            log: VecDeque::new(),
            capacity: capacity.max(1),
            compacted_through: 0,
        };
        for (i, items) in initial.into_iter().enumerate() {
            for (key, content) in keyed(items) {
                store.rv += 1;
                store.objects[i].insert(key, Object { content, rv: store.rv });
            }
        }
        store.compacted_through = store.rv;
        store
    }

    /// The current resource version (the counter).
    pub fn rv(&self) -> u64 {
        self.rv
    }

    pub fn compacted_through(&self) -> u64 {
        self.compacted_through
    }

    /// Replaces a list with the next window's items, logging one event per difference, in key
    /// order: new -> ADDED, changed -> MODIFIED, gone -> DELETED with its last state.
    pub fn replace(&mut self, list: ApiList, items: Vec<Value>) {
        let i = index(list);
        let mut next = keyed(items);
        let keys: BTreeSet<Key> = self.objects[i].keys().chain(next.keys()).cloned().collect();
        for key in keys {
            match (self.objects[i].remove(&key), next.remove(&key)) {
                (Some(old), Some(new)) if old.content == new => {
                    self.objects[i].insert(key, old);
                }
                (old, Some(new)) => {
                    let kind = if old.is_some() { "MODIFIED" } else { "ADDED" };
                    self.rv += 1;
                    let line = event_line(kind, &stamped(list, &new, self.rv, true));
                    self.push(list, &key.0, line);
                    self.objects[i].insert(key, Object { content: new, rv: self.rv });
                }
                (Some(old), None) => {
                    self.rv += 1;
                    let line = event_line("DELETED", &stamped(list, &old.content, self.rv, true));
                    self.push(list, &key.0, line);
                }
                (None, None) => {}
            }
        }
    }

    fn push(&mut self, list: ApiList, namespace: &str, line: Bytes) {
        self.log.push_back(Event { rv: self.rv, list, namespace: namespace.to_string(), line });
        while self.log.len() > self.capacity {
            if let Some(dropped) = self.log.pop_front() {
                self.compacted_through = dropped.rv;
            }
        }
    }

    /// Forgets every logged event: a watch from any RV below the current one is now expired.
    pub fn compact_all(&mut self) {
        self.log.clear();
        self.compacted_through = self.rv;
    }

    /// The event lines of `list` (in `namespace`, if given) above `rv`.
    pub fn events_after(
        &self,
        list: ApiList,
        namespace: Option<&str>,
        rv: u64,
    ) -> Result<Vec<Bytes>, Expired> {
        if rv < self.compacted_through {
            return Err(Expired { requested: rv, compacted_through: self.compacted_through });
        }
        let start = self.log.partition_point(|e| e.rv <= rv);
        Ok(self
            .log
            .range(start..)
            .filter(|e| e.list == list && namespace.is_none_or(|ns| e.namespace == ns))
            .map(|e| e.line.clone())
            .collect())
    }

    /// The current objects of `list` (in `namespace`, if given), stamped; `with_kind` adds
    /// `kind` and `apiVersion`, as watch events and single gets carry but list items do not.
    pub fn objects(&self, list: ApiList, namespace: Option<&str>, with_kind: bool) -> Vec<Value> {
        self.objects[index(list)]
            .iter()
            .filter(|((ns, _), _)| namespace.is_none_or(|want| ns == want))
            .map(|(_, o)| stamped(list, &o.content, o.rv, with_kind))
            .collect()
    }

    pub fn get(&self, list: ApiList, key: &Key) -> Option<Value> {
        self.objects[index(list)].get(key).map(|o| stamped(list, &o.content, o.rv, true))
    }

    /// The list body `GET /api/v1/<list>` answers.
    pub fn list_body(&self, list: ApiList, namespace: Option<&str>) -> Bytes {
        let body = json!({
            "kind": format!("{}List", item_kind(list)),
            "apiVersion": "v1",
            "metadata": {"resourceVersion": self.rv.to_string()},
            "items": self.objects(list, namespace, false),
        });
        Bytes::from(body.to_string())
    }

    /// Names of the nodes whose `Ready` condition is `True`, the nodes a collector scrapes.
    pub fn ready_nodes(&self) -> BTreeSet<String> {
        self.objects[index(ApiList::Nodes)]
            .iter()
            .filter(|(_, o)| is_ready(&o.content))
            .map(|((_, name), _)| name.clone())
            .collect()
    }
}

fn keyed(items: Vec<Value>) -> BTreeMap<Key, Value> {
    items
        .into_iter()
        .filter_map(|mut item| {
            let key = object_key(&item)?;
            if let Some(meta) = item.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("resourceVersion");
            }
            Some((key, item))
        })
        .collect()
}

fn is_ready(node: &Value) -> bool {
    node.pointer("/status/conditions").and_then(Value::as_array).is_some_and(|conditions| {
        conditions.iter().any(|c| {
            c.get("type").and_then(Value::as_str) == Some("Ready")
                && c.get("status").and_then(Value::as_str) == Some("True")
        })
    })
}

fn stamped(list: ApiList, content: &Value, rv: u64, with_kind: bool) -> Value {
    let mut object = content.clone();
    if let Some(map) = object.as_object_mut() {
        if with_kind {
            map.insert("kind".into(), Value::from(item_kind(list)));
            map.insert("apiVersion".into(), Value::from("v1"));
        }
        let meta = map.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert("resourceVersion".into(), Value::from(rv.to_string()));
        }
    }
    object
}

/// One line of a watch stream.
pub fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

/// A `BOOKMARK` event at `rv`; `initial_end` marks the end of `sendInitialEvents`.
pub fn bookmark_line(list: ApiList, rv: u64, initial_end: bool) -> Bytes {
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    event_line("BOOKMARK", &json!({"kind": item_kind(list), "apiVersion": "v1", "metadata": metadata}))
}

/// A `Status` object, the body of every apiserver error.
pub fn status_value(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ns: &str, name: &str, label: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": ns, "labels": {"app": label}, "resourceVersion": "999"}})
    }

    fn node(name: &str, ready: bool) -> Value {
        let status = if ready { "True" } else { "False" };
        json!({"metadata": {"name": name}, "status": {"conditions": [{"type": "Ready", "status": status}]}})
    }

    fn lines(events: Vec<Bytes>) -> Vec<(String, String, String)> {
        events
            .iter()
            .map(|line| {
                let v: Value = serde_json::from_slice(line).unwrap();
                let o = &v["object"];
                (
                    v["type"].as_str().unwrap().to_string(),
                    o["metadata"]["name"].as_str().unwrap().to_string(),
                    o["metadata"]["resourceVersion"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn stamps_initial_objects_and_lists_them() {
        let store =
            Store::new([vec![node("n1", true)], vec![pod("a", "p1", "x"), pod("b", "p2", "y")], vec![]], 10);
        assert_eq!(store.rv(), 3);
        assert_eq!(store.compacted_through(), 3);
        let body: Value = serde_json::from_slice(&store.list_body(ApiList::Pods, None)).unwrap();
        assert_eq!(body["kind"], "PodList");
        assert_eq!(body["metadata"]["resourceVersion"], "3");
        let rvs: Vec<&str> = body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["resourceVersion"].as_str().unwrap())
            .collect();
        assert_eq!(rvs, ["2", "3"]);
        assert!(body["items"][0].get("kind").is_none());
        assert_eq!(store.objects(ApiList::Pods, Some("b"), true)[0]["kind"], "Pod");
        assert_eq!(store.ready_nodes(), BTreeSet::from(["n1".to_string()]));
    }

    #[test]
    fn diffs_into_events_and_replays_them_from_a_resource_version() {
        let mut store = Store::new(
            [vec![], vec![pod("a", "p1", "x"), pod("a", "p2", "x"), pod("b", "p3", "x")], vec![]],
            10,
        );
        let listed = store.rv();
        store.replace(
            ApiList::Pods,
            vec![pod("a", "p1", "x"), pod("a", "p2", "changed"), pod("a", "p4", "x")],
        );
        let all = lines(store.events_after(ApiList::Pods, None, listed).unwrap());
        assert_eq!(
            all,
            [
                ("MODIFIED".to_string(), "p2".to_string(), "4".to_string()),
                ("ADDED".to_string(), "p4".to_string(), "5".to_string()),
                ("DELETED".to_string(), "p3".to_string(), "6".to_string()),
            ]
        );
        assert_eq!(lines(store.events_after(ApiList::Pods, Some("b"), listed).unwrap()).len(), 1);
        assert_eq!(lines(store.events_after(ApiList::Pods, None, 5).unwrap())[0].1, "p3");
        assert!(store.events_after(ApiList::Nodes, None, listed).unwrap().is_empty());
        // The unchanged pod keeps its version.
        let p1 = store.get(ApiList::Pods, &("a".into(), "p1".into())).unwrap();
        assert_eq!(p1["metadata"]["resourceVersion"], "1");
        assert_eq!(
            store.events_after(ApiList::Pods, None, 2),
            Err(Expired { requested: 2, compacted_through: 3 })
        );
    }

    #[test]
    fn compacts_beyond_capacity_and_on_demand() {
        let mut store = Store::new([vec![], vec![], vec![]], 2);
        store.replace(ApiList::Pods, vec![pod("a", "p1", "x"), pod("a", "p2", "x"), pod("a", "p3", "x")]);
        assert_eq!(store.compacted_through(), 1);
        assert!(store.events_after(ApiList::Pods, None, 0).is_err());
        assert_eq!(store.events_after(ApiList::Pods, None, 1).unwrap().len(), 2);
        store.compact_all();
        let expired = store.events_after(ApiList::Pods, None, 2).unwrap_err();
        let line: Value = serde_json::from_slice(&expired.line()).unwrap();
        assert_eq!(line["type"], "ERROR");
        assert_eq!(line["object"]["code"], 410);
        assert_eq!(line["object"]["message"], "too old resource version: 2 (3)");
        assert!(store.events_after(ApiList::Pods, None, 3).unwrap().is_empty());
    }
}
