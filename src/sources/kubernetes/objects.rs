//! Kubernetes API objects turned into scrape targets and enrichment metadata.
//!
//! Recorded lists (replay) and watches (live) carry the same objects, decoded alike to the fields
//! the graph reads ([`super::trimmed`]), so both convert here. One
//! bad object never costs the others: list items are decoded one by one, and a problem with an
//! item or with one of its quantities becomes a warning naming the object.

use std::collections::BTreeMap;
use std::net::IpAddr;

use heapster_dataflows::Name;
use heapster_dataflows::meta::{
    ContainerMeta, MetaRecord, NamespaceMeta, NodeMeta, NodeResources, PodMeta, Resources,
};
use heapster_dataflows::model::Interner;
use k8s_openapi::api::core::v1::{Container, ContainerStatus, Namespace, Node, NodeAddress, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use thiserror::Error;

use super::quantity::{self, QuantityError};
use super::raw_list::{RawList, identity};
use super::trimmed::{NamePlace, PodPlace, TrimmedNode, TrimmedPod};
use crate::sources::NodeTarget;

/// Resource names whose quantities count accelerators, besides any `<vendor>/gpu`.
const LEGACY_GPU_RESOURCES: [&str; 1] = ["alpha.kubernetes.io/nvidia-gpu"];

#[derive(Debug, Error)]
pub enum ObjectError {
    #[error("{kind} has no name")]
    MissingName { kind: &'static str },
    #[error("pod {name} has no namespace")]
    MissingNamespace { name: String },
    #[error("not a {expected}: {source}")]
    NotAList {
        expected: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("not a {expected}: its kind is {found:?}")]
    WrongKind { expected: &'static str, found: String },
    #[error("not a {expected}: it has no items")]
    NoItems { expected: &'static str },
}

/// A node list converted: what to scrape and what to enrich with.
#[derive(Debug, Default)]
pub struct NodeListParsed {
    pub targets: Vec<NodeTarget>,
    pub records: Vec<MetaRecord>,
    pub resource_version: Option<String>,
    /// Items skipped and quantities dropped, one line each, naming the object.
    pub warnings: Vec<String>,
}

/// A pod or namespace list converted.
#[derive(Debug, Default)]
pub struct MetaListParsed {
    pub records: Vec<MetaRecord>,
    pub resource_version: Option<String>,
    /// Items skipped and quantities dropped, one line each, naming the object.
    pub warnings: Vec<String>,
}

/// Node -> scrape target, by Heapster's rules (see [`node_target_interned`]).
pub fn node_target(node: &Node) -> Result<NodeTarget, ObjectError> {
    node_target_interned(node, &mut Interner::default())
}

/// Node -> scrape target, sharing names with the metadata.
///
/// Heapster's rules: hostname is the `Hostname` address, else the node name; host id is
/// `spec.providerID`, else `spec.externalID`; the kubelet is reached on the `InternalIP`, else the
/// `ExternalIP`. A node is ready only if it has a `Ready` condition that is `True`, so a node
/// that never reported is not scraped.
pub fn node_target_interned(node: &Node, interner: &mut Interner) -> Result<NodeTarget, ObjectError> {
    let name = object_name(&node.metadata, "node")?;
    let status = node.status.as_ref();
    let spec = node.spec.as_ref();
    let addresses = status.and_then(|s| s.addresses.as_deref()).unwrap_or_default();
    let hostname = addresses
        .iter()
        .find(|a| a.type_ == "Hostname" && !a.address.is_empty())
        .map_or(name, |a| a.address.as_str());
    let host_id = spec
        .and_then(|s| non_empty(s.provider_id.as_deref()).or_else(|| non_empty(s.external_id.as_deref())))
        .unwrap_or("");
    let ready = status
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let schedulable = !spec.and_then(|s| s.unschedulable).unwrap_or(false);
    let address = ip_address(addresses, "InternalIP").or_else(|| ip_address(addresses, "ExternalIP"));
    Ok(NodeTarget {
        name: interner.intern(name),
        hostname: interner.intern(hostname),
        host_id: interner.intern(host_id),
        schedulable,
        schedulable_label: false,
        ready,
        address: address.map(str::to_string),
    })
}

/// Node -> its name and metadata: labels, capacity, allocatable.
///
/// A quantity that does not parse leaves that resource absent and adds a warning.
pub fn node_meta(
    node: &Node,
    interner: &mut Interner,
    warnings: &mut Vec<String>,
) -> Result<(Name, NodeMeta), ObjectError> {
    let name = object_name(&node.metadata, "node")?;
    let status = node.status.as_ref();
    let mut resources = |list: Option<&BTreeMap<String, Quantity>>, what: &str| {
        let mut amount = |resource: &str, unit: Unit| {
            amount(list, resource, unit, warnings, || format!("node {name}: {what} {resource}"))
        };
        NodeResources {
            cpu_millis: amount("cpu", Unit::Milli),
            memory_bytes: amount("memory", Unit::Whole),
            ephemeral_bytes: amount("ephemeral-storage", Unit::Whole),
        }
    };
    let capacity = resources(status.and_then(|s| s.capacity.as_ref()), "capacity");
    let allocatable = resources(status.and_then(|s| s.allocatable.as_ref()), "allocatable");
    let meta = NodeMeta { labels: labels(&node.metadata, interner), capacity, allocatable };
    Ok((interner.intern(name), meta))
}

/// Pod -> `(namespace, name)` and its metadata.
///
/// Finished pods (`Succeeded`, `Failed`) are kept: their last metrics are still enriched by name.
pub fn pod_meta(
    pod: &Pod,
    interner: &mut Interner,
    warnings: &mut Vec<String>,
) -> Result<((Name, Name), PodMeta), ObjectError> {
    let name = object_name(&pod.metadata, "pod")?;
    let ns = non_empty(pod.metadata.namespace.as_deref())
        .ok_or_else(|| ObjectError::MissingNamespace { name: name.to_string() })?;
    let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.as_deref()).unwrap_or_default();
    let containers = pod
        .spec
        .as_ref()
        .map(|spec| spec.containers.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|c| container_meta(c, statuses, interner, warnings, &format!("pod {ns}/{name}")))
        .collect();
    let meta = PodMeta {
        uid: interner.intern(pod.metadata.uid.as_deref().unwrap_or("")),
        labels: labels(&pod.metadata, interner),
        node: non_empty(pod.spec.as_ref().and_then(|s| s.node_name.as_deref())).map(|n| interner.intern(n)),
        containers,
    };
    Ok(((interner.intern(ns), interner.intern(name)), meta))
}

/// Namespace -> its name and uid.
pub fn namespace_meta(ns: &Namespace, interner: &mut Interner) -> Result<(Name, NamespaceMeta), ObjectError> {
    let name = object_name(&ns.metadata, "namespace")?;
    let uid = interner.intern(ns.metadata.uid.as_deref().unwrap_or(""));
    Ok((interner.intern(name), NamespaceMeta { uid }))
}

/// A `NodeList` body (`GET /api/v1/nodes`) -> targets and metadata; bad items are skipped with a
/// warning.
pub fn parse_node_list(body: &[u8], interner: &mut Interner) -> Result<NodeListParsed, ObjectError> {
    node_list(body, interner, |_| true)
}

/// A `PodList` body (`GET /api/v1/pods`, or a kubelet's `/pods`) -> metadata; bad items are
/// skipped with a warning.
pub fn parse_pod_list(body: &[u8], interner: &mut Interner) -> Result<MetaListParsed, ObjectError> {
    pod_list(body, interner, |_| true)
}

/// A pod's `(namespace, name, node)`, what places its metadata on a worker; `None` for a pod
/// that cannot be placed (no name or namespace).
pub type PodPlacement<'a> = Option<(&'a str, &'a str, Option<&'a str>)>;

/// [`parse_node_list`] of the nodes `keep` takes by name (`None`: a node without one): the
/// others are skipped without being decoded, for a cluster process that needs only its own.
pub fn parse_node_list_where(
    body: &[u8],
    interner: &mut Interner,
    keep: impl Fn(Option<&str>) -> bool,
) -> Result<NodeListParsed, ObjectError> {
    node_list(body, interner, |raw: &RawValue| {
        keep(serde_json::from_str::<NamePlace<'_>>(raw.get()).ok().as_ref().and_then(NamePlace::name))
    })
}

/// [`parse_pod_list`] of the pods `keep` takes by their placement: the others are skipped
/// after reading just their namespace, name and node, for a cluster process that enriches
/// only its own nodes' pods.
pub fn parse_pod_list_where(
    body: &[u8],
    interner: &mut Interner,
    keep: impl Fn(PodPlacement<'_>) -> bool,
) -> Result<MetaListParsed, ObjectError> {
    pod_list(body, interner, |raw: &RawValue| {
        keep(serde_json::from_str::<PodPlace<'_>>(raw.get()).ok().as_ref().and_then(PodPlace::place))
    })
}

fn node_list(
    body: &[u8],
    interner: &mut Interner,
    keep: impl FnMut(&RawValue) -> bool,
) -> Result<NodeListParsed, ObjectError> {
    let mut targets = Vec::new();
    let mut records = Vec::new();
    let mut warnings = Vec::new();
    let resource_version =
        parse_list_where(body, ListKind::NODES, &mut warnings, keep, |node: TrimmedNode, warnings| {
            let node = node.into_node();
            let target = node_target_interned(&node, interner)?;
            let (name, meta) = node_meta(&node, interner, warnings)?;
            targets.push(target);
            records.push(MetaRecord::Node { name, meta });
            Ok(())
        })?;
    Ok(NodeListParsed { targets, records, resource_version, warnings })
}

fn pod_list(
    body: &[u8],
    interner: &mut Interner,
    keep: impl FnMut(&RawValue) -> bool,
) -> Result<MetaListParsed, ObjectError> {
    let mut records = Vec::new();
    let mut warnings = Vec::new();
    let resource_version =
        parse_list_where(body, ListKind::PODS, &mut warnings, keep, |pod: TrimmedPod, warnings| {
            let pod = pod.into_pod();
            let ((ns, name), meta) = pod_meta(&pod, interner, warnings)?;
            records.push(MetaRecord::Pod { ns, name, meta: std::sync::Arc::new(meta) });
            Ok(())
        })?;
    Ok(MetaListParsed { records, resource_version, warnings })
}

/// A `NamespaceList` body (`GET /api/v1/namespaces`) -> metadata; bad items are skipped with a
/// warning.
pub fn parse_namespace_list(body: &[u8], interner: &mut Interner) -> Result<MetaListParsed, ObjectError> {
    let mut records = Vec::new();
    let mut warnings = Vec::new();
    let resource_version =
        parse_list(body, ListKind::NAMESPACES, &mut warnings, |ns: Namespace, _warnings| {
            let (name, meta) = namespace_meta(&ns, interner)?;
            records.push(MetaRecord::Namespace { name, meta });
            Ok(())
        })?;
    Ok(MetaListParsed { records, resource_version, warnings })
}

struct ListKind {
    list: &'static str,
    item: &'static str,
}

impl ListKind {
    const NODES: ListKind = ListKind { list: "NodeList", item: "node" };
    const PODS: ListKind = ListKind { list: "PodList", item: "pod" };
    const NAMESPACES: ListKind = ListKind { list: "NamespaceList", item: "namespace" };
}

/// Decodes a list and hands each item that decodes to `convert`; returns the list's
/// resourceVersion.
fn parse_list<T: DeserializeOwned>(
    body: &[u8],
    kind: ListKind,
    warnings: &mut Vec<String>,
    convert: impl FnMut(T, &mut Vec<String>) -> Result<(), ObjectError>,
) -> Result<Option<String>, ObjectError> {
    parse_list_where(body, kind, warnings, |_| true, convert)
}

/// [`parse_list`] of the items `keep` takes, the others skipped before they are decoded.
fn parse_list_where<T: DeserializeOwned>(
    body: &[u8],
    kind: ListKind,
    warnings: &mut Vec<String>,
    mut keep: impl FnMut(&RawValue) -> bool,
    mut convert: impl FnMut(T, &mut Vec<String>) -> Result<(), ObjectError>,
) -> Result<Option<String>, ObjectError> {
    let list: RawList<'_> = serde_json::from_slice(body)
        .map_err(|source| ObjectError::NotAList { expected: kind.list, source })?;
    if let Some(found) = list.kind.filter(|k| k != kind.list) {
        return Err(ObjectError::WrongKind { expected: kind.list, found });
    }
    let items = list.items.ok_or(ObjectError::NoItems { expected: kind.list })?.unwrap_or_default();
    for (index, raw) in items.into_iter().enumerate() {
        if !keep(raw) {
            continue;
        }
        let result = match serde_json::from_str::<T>(raw.get()) {
            Ok(item) => convert(item, warnings),
            Err(e) => {
                warnings.push(format!("{} item {index}{}: {e}", kind.list, identity(raw, kind.item)));
                continue;
            }
        };
        if let Err(e) = result {
            warnings.push(format!("{} item {index} skipped: {e}", kind.list));
        }
    }
    Ok(list.metadata.and_then(|m| m.resource_version).filter(|v| !v.is_empty()))
}

fn object_name<'a>(meta: &'a ObjectMeta, kind: &'static str) -> Result<&'a str, ObjectError> {
    non_empty(meta.name.as_deref()).ok_or(ObjectError::MissingName { kind })
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

/// The first address of that type that is an IP: the kubelet URL is built from it.
fn ip_address<'a>(addresses: &'a [NodeAddress], type_: &str) -> Option<&'a str> {
    addresses
        .iter()
        .filter(|a| a.type_ == type_)
        .map(|a| a.address.as_str())
        .find(|a| a.parse::<IpAddr>().is_ok())
}

/// Labels as interned pairs, sorted by key (the API's map already is).
fn labels(meta: &ObjectMeta, interner: &mut Interner) -> Vec<(Name, Name)> {
    meta.labels.iter().flatten().map(|(k, v)| (interner.intern(k), interner.intern(v))).collect()
}

fn container_meta(
    container: &Container,
    statuses: &[ContainerStatus],
    interner: &mut Interner,
    warnings: &mut Vec<String>,
    pod: &str,
) -> ContainerMeta {
    let resources = container.resources.as_ref();
    let mut side = |list: Option<&BTreeMap<String, Quantity>>, what: &str| {
        let context = |resource: &str| format!("{pod} container {}: {what} {resource}", container.name);
        let mut amount =
            |resource: &str, unit: Unit| amount(list, resource, unit, warnings, || context(resource));
        Resources {
            cpu_millis: amount("cpu", Unit::Milli),
            memory_bytes: amount("memory", Unit::Whole),
            ephemeral_bytes: amount("ephemeral-storage", Unit::Whole),
            accelerators: accelerators(list, warnings, &context),
        }
    };
    let requests = side(resources.and_then(|r| r.requests.as_ref()), "requests");
    let limits = side(resources.and_then(|r| r.limits.as_ref()), "limits");
    ContainerMeta {
        name: interner.intern(&container.name),
        image: interner.intern(container.image.as_deref().unwrap_or("")),
        requests,
        limits,
        restart_count: statuses.iter().find(|s| s.name == container.name).map(|s| i64::from(s.restart_count)),
    }
}

#[derive(Clone, Copy)]
enum Unit {
    /// Thousandths: cpu in millicores.
    Milli,
    /// Whole units: bytes, device counts.
    Whole,
}

fn convert(q: &str, unit: Unit) -> Result<i64, QuantityError> {
    match unit {
        Unit::Milli => quantity::milli_value(q),
        Unit::Whole => quantity::value(q),
    }
}

/// One resource of a list; a bad quantity is a warning (`context` names where it was) and absent.
fn amount(
    list: Option<&BTreeMap<String, Quantity>>,
    resource: &str,
    unit: Unit,
    warnings: &mut Vec<String>,
    context: impl FnOnce() -> String,
) -> Option<i64> {
    let q = list?.get(resource)?;
    convert(&q.0, unit).map_err(|e| warnings.push(format!("{}: {e}", context()))).ok()
}

fn is_accelerator(resource: &str) -> bool {
    resource.ends_with("/gpu") || LEGACY_GPU_RESOURCES.contains(&resource)
}

/// Sum of every GPU resource (`nvidia.com/gpu`, `amd.com/gpu`, ...); absent if none is listed.
fn accelerators(
    list: Option<&BTreeMap<String, Quantity>>,
    warnings: &mut Vec<String>,
    context: &dyn Fn(&str) -> String,
) -> Option<i64> {
    let mut total: Option<i64> = None;
    for (resource, q) in list?.iter().filter(|(r, _)| is_accelerator(r)) {
        match convert(&q.0, Unit::Whole) {
            Ok(n) => match total.unwrap_or(0).checked_add(n) {
                Some(sum) => total = Some(sum),
                None => warnings.push(format!("{}: sum of accelerators is out of range", context(resource))),
            },
            Err(e) => warnings.push(format!("{}: {e}", context(resource))),
        }
    }
    total
}

#[cfg(test)]
mod tests;
