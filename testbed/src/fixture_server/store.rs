//! The API objects of the current window, their resource versions, and the watch event log.
//!
//! One counter stamps every change, as etcd's revision does: a list answers the counter, an
//! object carries the counter value of its last change, and a watch from RV N replays the logged
//! events above N. Events older than the log keeps are compacted away, after which a watch from
//! before them is `410 Expired`, so clients must list again, as with a real apiserver.
//!
//! Every watch line and list item is encoded once, when its object changes (list items on the
//! first list that needs them), and shared by every watch and list after: a burst of thousands of
//! events costs each watcher a copy of pointers, not an encoding.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::OnceLock;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::status::status_value;
use heapster::scenario::ApiList;

/// `(namespace, name)`; namespace is empty for cluster-scoped objects.
pub type Key = (String, String);

/// How objects are shown: as core v1, or (events only) as `events.k8s.io/v1`, the same objects
/// converted as the apiserver converts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Core,
    EventsV1,
}

impl View {
    pub(super) fn api_version(self) -> &'static str {
        match self {
            View::Core => "v1",
            View::EventsV1 => "events.k8s.io/v1",
        }
    }

    /// The object as this view shows it; `content` is core v1.
    fn show(self, list: ApiList, content: &Value, rv: u64, with_kind: bool) -> Value {
        let core = stamped(list, content, rv, with_kind);
        match self {
            View::Core => core,
            View::EventsV1 => events_v1(&core, with_kind),
        }
    }
}

#[derive(Debug)]
struct Object {
    /// As recorded (after address rewriting), without a resource version: what changes compare.
    content: Value,
    rv: u64,
    /// The core list item, encoded by the first list that shows it.
    item: OnceLock<Bytes>,
}

impl Object {
    fn new(content: Value, rv: u64) -> Object {
        Object { content, rv, item: OnceLock::new() }
    }
}

#[derive(Debug)]
struct Event {
    rv: u64,
    list: ApiList,
    namespace: String,
    line: Bytes,
    /// The `events.k8s.io/v1` line, encoded when a watch of that view first needs it.
    line_v1: OnceLock<Bytes>,
}

impl Event {
    fn line(&self, view: View) -> Bytes {
        match view {
            View::Core => self.line.clone(),
            View::EventsV1 => self.line_v1.get_or_init(|| convert_line(&self.line)).clone(),
        }
    }
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

const LISTS: usize = ApiList::WITH_EVENTS.len();

#[derive(Debug)]
pub struct Store {
    rv: u64,
    objects: [BTreeMap<Key, Object>; LISTS],
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
        ApiList::Events => 3,
    }
}

/// `kind` of a list's items.
pub fn item_kind(list: ApiList) -> &'static str {
    match list {
        ApiList::Nodes => "Node",
        ApiList::Pods => "Pod",
        ApiList::Namespaces => "Namespace",
        ApiList::Events => "Event",
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
    /// The first window's objects (by [`ApiList::WITH_EVENTS`] order), stamped 1, 2, ...;
    /// history before them counts as compacted. Items must have keys ([`object_key`]); later
    /// duplicates of a key win.
    pub fn new(initial: [Vec<Value>; LISTS], capacity: usize) -> Store {
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
                store.objects[i].insert(key, Object::new(content, store.rv));
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
    /// order: new -> ADDED, changed -> MODIFIED, gone -> DELETED with its last state. The log
    /// grows past its capacity until [`Store::trim`].
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
                    self.objects[i].insert(key, Object::new(new, self.rv));
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
        self.log.push_back(Event {
            rv: self.rv,
            list,
            namespace: namespace.to_string(),
            line,
            line_v1: OnceLock::new(),
        });
    }

    /// Drops the oldest events beyond the log's capacity, but none above `keep_above`: the
    /// changes of one window stay whole, so a watch that was current before them never expires
    /// for a burst alone.
    pub fn trim(&mut self, keep_above: u64) {
        while self.log.len() > self.capacity && self.log.front().is_some_and(|e| e.rv <= keep_above) {
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
        view: View,
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
            .map(|e| e.line(view))
            .collect())
    }

    fn current<'a>(
        &'a self,
        list: ApiList,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Object> + 'a {
        self.objects[index(list)]
            .iter()
            .filter(move |((ns, _), _)| namespace.is_none_or(|want| ns == want))
            .map(|(_, o)| o)
    }

    /// ADDED lines for the current objects of `list` (in `namespace`, if given): the start of
    /// a watch without a resource version.
    pub fn initial_lines(&self, list: ApiList, view: View, namespace: Option<&str>) -> Vec<Bytes> {
        self.current(list, namespace)
            .map(|o| event_line("ADDED", &view.show(list, &o.content, o.rv, true)))
            .collect()
    }

    /// A single object, with `kind` and `apiVersion`, as a get answers it.
    pub fn get(&self, list: ApiList, view: View, key: &Key) -> Option<Value> {
        self.objects[index(list)].get(key).map(|o| view.show(list, &o.content, o.rv, true))
    }

    /// The list body `GET /api/v1/<list>` answers; items carry no `kind`, as in a real list.
    pub fn list_body(&self, list: ApiList, view: View, namespace: Option<&str>) -> Bytes {
        let mut body = Vec::new();
        body.extend_from_slice(
            format!(
                r#"{{"kind":"{}List","apiVersion":"{}","metadata":{{"resourceVersion":"{}"}},"items":["#,
                item_kind(list),
                view.api_version(),
                self.rv
            )
            .as_bytes(),
        );
        for (n, object) in self.current(list, namespace).enumerate() {
            if n > 0 {
                body.push(b',');
            }
            match view {
                View::Core => body.extend_from_slice(object.item.get_or_init(|| {
                    Bytes::from(stamped(list, &object.content, object.rv, false).to_string())
                })),
                View::EventsV1 => body.extend_from_slice(
                    view.show(list, &object.content, object.rv, false).to_string().as_bytes(),
                ),
            }
        }
        body.extend_from_slice(b"]}");
        Bytes::from(body)
    }

    /// The items of `list` as [`Store::list_body`] shows them, one encoded item each: what a
    /// paged list hands out a page at a time.
    pub fn list_items(&self, list: ApiList, view: View, namespace: Option<&str>) -> Vec<Bytes> {
        self.current(list, namespace)
            .map(|object| match view {
                View::Core => object
                    .item
                    .get_or_init(|| Bytes::from(stamped(list, &object.content, object.rv, false).to_string()))
                    .clone(),
                View::EventsV1 => Bytes::from(view.show(list, &object.content, object.rv, false).to_string()),
            })
            .collect()
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

/// A core v1 Event as `events.k8s.io/v1` shows it: the apiserver's conversion renames fields
/// and keeps the legacy ones as `deprecated*`.
pub fn events_v1(core: &Value, with_kind: bool) -> Value {
    let mut out = Map::new();
    if with_kind {
        out.insert("kind".into(), Value::from("Event"));
        out.insert("apiVersion".into(), Value::from("events.k8s.io/v1"));
    }
    out.insert("eventTime".into(), core.get("eventTime").cloned().unwrap_or(Value::Null));
    let renames = [
        ("metadata", "metadata"),
        ("series", "series"),
        ("reportingComponent", "reportingController"),
        ("reportingInstance", "reportingInstance"),
        ("action", "action"),
        ("reason", "reason"),
        ("involvedObject", "regarding"),
        ("related", "related"),
        ("message", "note"),
        ("type", "type"),
        ("source", "deprecatedSource"),
        ("firstTimestamp", "deprecatedFirstTimestamp"),
        ("lastTimestamp", "deprecatedLastTimestamp"),
        ("count", "deprecatedCount"),
    ];
    for (from, to) in renames {
        if let Some(value) = core.get(from).filter(|v| !v.is_null()) {
            out.insert(to.into(), value.clone());
        }
    }
    Value::Object(out)
}

/// A logged core watch line in the `events.k8s.io/v1` view.
fn convert_line(line: &Bytes) -> Bytes {
    match serde_json::from_slice::<Value>(line) {
        Ok(event) => {
            let kind = event.get("type").and_then(Value::as_str).unwrap_or("ERROR");
            event_line(kind, &events_v1(&event["object"], true))
        }
        // Lines are encoded here; a line that does not parse back is a bug, not input.
        Err(_) => line.clone(),
    }
}

/// One line of a watch stream.
pub fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

/// A `BOOKMARK` event at `rv`; `initial_end` marks the end of `sendInitialEvents`.
pub fn bookmark_line(list: ApiList, view: View, rv: u64, initial_end: bool) -> Bytes {
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    let object = json!({"kind": item_kind(list), "apiVersion": view.api_version(), "metadata": metadata});
    event_line("BOOKMARK", &object)
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
        let store = Store::new(
            [vec![node("n1", true)], vec![pod("a", "p1", "x"), pod("b", "p2", "y")], vec![], vec![]],
            10,
        );
        assert_eq!(store.rv(), 3);
        assert_eq!(store.compacted_through(), 3);
        let body: Value = serde_json::from_slice(&store.list_body(ApiList::Pods, View::Core, None)).unwrap();
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
        // Listing again reuses the encoded items.
        assert_eq!(
            store.list_body(ApiList::Pods, View::Core, None),
            store.list_body(ApiList::Pods, View::Core, None)
        );
        let initial: Value =
            serde_json::from_slice(&store.initial_lines(ApiList::Pods, View::Core, Some("b"))[0]).unwrap();
        assert_eq!(initial["type"], "ADDED");
        assert_eq!(initial["object"]["kind"], "Pod");
        assert_eq!(initial["object"]["metadata"]["name"], "p2");
        assert_eq!(store.ready_nodes(), BTreeSet::from(["n1".to_string()]));
    }

    #[test]
    fn diffs_into_events_and_replays_them_from_a_resource_version() {
        let mut store = Store::new(
            [vec![], vec![pod("a", "p1", "x"), pod("a", "p2", "x"), pod("b", "p3", "x")], vec![], vec![]],
            10,
        );
        let listed = store.rv();
        store.replace(
            ApiList::Pods,
            vec![pod("a", "p1", "x"), pod("a", "p2", "changed"), pod("a", "p4", "x")],
        );
        let all = lines(store.events_after(ApiList::Pods, View::Core, None, listed).unwrap());
        assert_eq!(
            all,
            [
                ("MODIFIED".to_string(), "p2".to_string(), "4".to_string()),
                ("ADDED".to_string(), "p4".to_string(), "5".to_string()),
                ("DELETED".to_string(), "p3".to_string(), "6".to_string()),
            ]
        );
        assert_eq!(lines(store.events_after(ApiList::Pods, View::Core, Some("b"), listed).unwrap()).len(), 1);
        assert_eq!(lines(store.events_after(ApiList::Pods, View::Core, None, 5).unwrap())[0].1, "p3");
        assert!(store.events_after(ApiList::Nodes, View::Core, None, listed).unwrap().is_empty());
        // The unchanged pod keeps its version.
        let p1 = store.get(ApiList::Pods, View::Core, &("a".into(), "p1".into())).unwrap();
        assert_eq!(p1["metadata"]["resourceVersion"], "1");
        assert_eq!(
            store.events_after(ApiList::Pods, View::Core, None, 2),
            Err(Expired { requested: 2, compacted_through: 3 })
        );
    }

    #[test]
    fn compacts_beyond_capacity_and_on_demand() {
        let mut store = Store::new([vec![], vec![], vec![], vec![]], 2);
        store.replace(ApiList::Pods, vec![pod("a", "p1", "x"), pod("a", "p2", "x"), pod("a", "p3", "x")]);
        // One window's changes stay whole, however many.
        store.trim(0);
        assert_eq!(store.compacted_through(), 0);
        assert_eq!(store.events_after(ApiList::Pods, View::Core, None, 0).unwrap().len(), 3);
        store.trim(3);
        assert_eq!(store.compacted_through(), 1);
        assert!(store.events_after(ApiList::Pods, View::Core, None, 0).is_err());
        assert_eq!(store.events_after(ApiList::Pods, View::Core, None, 1).unwrap().len(), 2);
        store.compact_all();
        let expired = store.events_after(ApiList::Pods, View::Core, None, 2).unwrap_err();
        let line: Value = serde_json::from_slice(&expired.line()).unwrap();
        assert_eq!(line["type"], "ERROR");
        assert_eq!(line["object"]["code"], 410);
        assert_eq!(line["object"]["message"], "too old resource version: 2 (3)");
        assert!(store.events_after(ApiList::Pods, View::Core, None, 3).unwrap().is_empty());
    }

    fn event(name: &str, count: u64) -> Value {
        json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
            "involvedObject": {"kind": "Pod", "namespace": "default", "name": "p1", "uid": "uid-p1"},
            "reason": "BackOff", "message": "Back-off restarting failed container", "type": "Warning",
            "source": {"component": "kubelet", "host": "n1"}, "reportingComponent": "kubelet",
            "reportingInstance": "n1", "firstTimestamp": "2026-11-01T10:00:01Z",
            "lastTimestamp": "2026-11-01T10:00:31Z", "count": count, "eventTime": null,
        })
    }

    #[test]
    fn events_show_as_core_v1_and_as_events_k8s_io() {
        let mut store = Store::new([vec![], vec![], vec![], vec![event("p1.1", 1)]], 10);
        store.replace(ApiList::Events, vec![event("p1.1", 4)]);
        let core: Value =
            serde_json::from_slice(&store.events_after(ApiList::Events, View::Core, None, 1).unwrap()[0])
                .unwrap();
        assert_eq!(
            (core["type"].as_str(), core["object"]["kind"].as_str()),
            (Some("MODIFIED"), Some("Event"))
        );
        assert_eq!(core["object"]["count"], 4);
        let v1: Value =
            serde_json::from_slice(&store.events_after(ApiList::Events, View::EventsV1, None, 1).unwrap()[0])
                .unwrap();
        let object = &v1["object"];
        assert_eq!(v1["type"], "MODIFIED");
        assert_eq!(
            (object["kind"].as_str(), object["apiVersion"].as_str()),
            (Some("Event"), Some("events.k8s.io/v1"))
        );
        assert_eq!(object["deprecatedCount"], 4);
        assert_eq!(object["note"], core["object"]["message"]);
        assert_eq!(object["regarding"], core["object"]["involvedObject"]);
        assert_eq!(object["reportingController"], "kubelet");
        assert_eq!(object["deprecatedSource"]["host"], "n1");
        assert_eq!(object["metadata"]["resourceVersion"], "2");
        assert!(object.get("message").is_none() && object["eventTime"].is_null());
        let list: Value =
            serde_json::from_slice(&store.list_body(ApiList::Events, View::EventsV1, None)).unwrap();
        assert_eq!(
            (list["kind"].as_str(), list["apiVersion"].as_str()),
            (Some("EventList"), Some("events.k8s.io/v1"))
        );
        assert_eq!(list["items"][0]["note"], object["note"]);
        assert!(list["items"][0].get("kind").is_none());
        let bookmark: Value =
            serde_json::from_slice(&bookmark_line(ApiList::Events, View::EventsV1, 2, false)).unwrap();
        assert_eq!(bookmark["object"]["apiVersion"], "events.k8s.io/v1");
    }
}
