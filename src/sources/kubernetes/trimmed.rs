//! Nodes and pods as the watches decode them: only the fields the scrape targets and the
//! enrichment metadata read, everything else skipped by the decoder without being allocated.
//!
//! A pod of a real cluster is 3-4 kB of JSON (volumes, mounts, conditions, tolerations, image
//! ids); the graph needs a tenth of it. 30,000 pods decoded whole cost seconds of CPU at start
//! and a heap of short-lived strings. Each trimmed object turns into the `k8s-openapi` type
//! with just those fields set, so [`super::objects`] converts live and replayed objects alike.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerStatus, Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus, Pod, PodSpec,
    PodStatus, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Deserializer};

/// The metadata an object is known by.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    labels: Option<BTreeMap<String, String>>,
}

fn object_meta<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    let meta = Option::<Meta>::deserialize(d)?.unwrap_or_default();
    Ok(ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        resource_version: meta.resource_version,
        labels: meta.labels,
        ..ObjectMeta::default()
    })
}

/// A pod: its containers' names, images and resources, its node, its restart counts.
#[derive(Clone, Debug, Deserialize)]
pub struct TrimmedPod {
    #[serde(default, deserialize_with = "object_meta")]
    metadata: ObjectMeta,
    spec: Option<TrimmedPodSpec>,
    status: Option<TrimmedPodStatus>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TrimmedPodSpec {
    containers: Vec<TrimmedContainer>,
    node_name: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
struct TrimmedContainer {
    name: String,
    image: Option<String>,
    resources: Option<TrimmedResources>,
}

#[derive(Clone, Debug, Deserialize)]
struct TrimmedResources {
    requests: Option<BTreeMap<String, Quantity>>,
    limits: Option<BTreeMap<String, Quantity>>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TrimmedPodStatus {
    container_statuses: Option<Vec<TrimmedContainerStatus>>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TrimmedContainerStatus {
    name: String,
    restart_count: i32,
}

impl TrimmedPod {
    /// The pod with the fields read here set and the rest at their defaults.
    pub fn into_pod(self) -> Pod {
        let spec = self.spec.map(|spec| PodSpec {
            containers: spec
                .containers
                .into_iter()
                .map(|c| Container {
                    name: c.name,
                    image: c.image,
                    resources: c.resources.map(|r| ResourceRequirements {
                        requests: r.requests,
                        limits: r.limits,
                        ..ResourceRequirements::default()
                    }),
                    ..Container::default()
                })
                .collect(),
            node_name: spec.node_name,
            ..PodSpec::default()
        });
        let status = self.status.map(|status| PodStatus {
            container_statuses: status.container_statuses.map(|statuses| {
                statuses
                    .into_iter()
                    .map(|s| ContainerStatus {
                        name: s.name,
                        restart_count: s.restart_count,
                        ..Default::default()
                    })
                    .collect()
            }),
            ..PodStatus::default()
        });
        Pod { metadata: self.metadata, spec, status }
    }
}

impl TrimmedPod {
    /// `(namespace, name, node)`, what places the pod's metadata on a worker; `None` without a
    /// name or namespace (such a pod is refused whole).
    pub fn place(&self) -> Option<(&str, &str, Option<&str>)> {
        let ns = non_empty(self.metadata.namespace.as_deref())?;
        let name = non_empty(self.metadata.name.as_deref())?;
        let node = non_empty(self.spec.as_ref().and_then(|s| s.node_name.as_deref()));
        Some((ns, name, node))
    }
}

/// A list item's placement alone: a cluster process reads every pod of a list, but decodes
/// whole only those its workers enrich with; the rest of each item is skipped unallocated.
#[derive(Deserialize)]
pub struct PodPlace<'a> {
    #[serde(borrow, default)]
    metadata: Option<PlaceMeta<'a>>,
    #[serde(borrow, default)]
    spec: Option<PlaceSpec<'a>>,
}

#[derive(Deserialize)]
struct PlaceMeta<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    namespace: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct PlaceSpec<'a> {
    #[serde(borrow, default, rename = "nodeName")]
    node_name: Option<Cow<'a, str>>,
}

impl PodPlace<'_> {
    /// As [`TrimmedPod::place`].
    pub fn place(&self) -> Option<(&str, &str, Option<&str>)> {
        let meta = self.metadata.as_ref()?;
        let ns = non_empty(meta.namespace.as_deref())?;
        let name = non_empty(meta.name.as_deref())?;
        let node = non_empty(self.spec.as_ref().and_then(|s| s.node_name.as_deref()));
        Some((ns, name, node))
    }
}

/// A list item's name alone, for a node list read the same way.
#[derive(Deserialize)]
pub struct NamePlace<'a> {
    #[serde(borrow, default)]
    metadata: Option<PlaceMeta<'a>>,
}

impl NamePlace<'_> {
    pub fn name(&self) -> Option<&str> {
        non_empty(self.metadata.as_ref()?.name.as_deref())
    }
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

/// A node: its addresses, readiness, ids, schedulability, capacity and allocatable.
#[derive(Clone, Debug, Deserialize)]
pub struct TrimmedNode {
    #[serde(default, deserialize_with = "object_meta")]
    metadata: ObjectMeta,
    spec: Option<TrimmedNodeSpec>,
    status: Option<TrimmedNodeStatus>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TrimmedNodeSpec {
    #[serde(rename = "providerID")]
    provider_id: Option<String>,
    #[serde(rename = "externalID")]
    external_id: Option<String>,
    unschedulable: Option<bool>,
}

#[derive(Clone, Debug, Deserialize)]
struct TrimmedNodeStatus {
    addresses: Option<Vec<NodeAddress>>,
    conditions: Option<Vec<TrimmedCondition>>,
    capacity: Option<BTreeMap<String, Quantity>>,
    allocatable: Option<BTreeMap<String, Quantity>>,
}

#[derive(Clone, Debug, Deserialize)]
struct TrimmedCondition {
    #[serde(rename = "type")]
    type_: String,
    status: String,
}

impl TrimmedNode {
    /// The node with the fields read here set and the rest at their defaults.
    pub fn into_node(self) -> Node {
        let spec = self.spec.map(|spec| NodeSpec {
            provider_id: spec.provider_id,
            external_id: spec.external_id,
            unschedulable: spec.unschedulable,
            ..NodeSpec::default()
        });
        let status = self.status.map(|status| NodeStatus {
            addresses: status.addresses,
            conditions: status.conditions.map(|conditions| {
                conditions
                    .into_iter()
                    .map(|c| NodeCondition { type_: c.type_, status: c.status, ..NodeCondition::default() })
                    .collect()
            }),
            capacity: status.capacity,
            allocatable: status.allocatable,
            ..NodeStatus::default()
        });
        Node { metadata: self.metadata, spec, status }
    }
}

/// Lists and watches them as the API's pods and nodes.
macro_rules! resource {
    ($ty:ty, $kind:literal, $plural:literal, $scope:ty) => {
        impl kube::Resource for $ty {
            type DynamicType = ();
            type Scope = $scope;

            fn kind(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($kind)
            }
            fn group(_: &()) -> Cow<'_, str> {
                Cow::Borrowed("")
            }
            fn version(_: &()) -> Cow<'_, str> {
                Cow::Borrowed("v1")
            }
            fn plural(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($plural)
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

resource!(TrimmedPod, "Pod", "pods", k8s_openapi::NamespaceResourceScope);
resource!(TrimmedNode, "Node", "nodes", k8s_openapi::ClusterResourceScope);

#[cfg(test)]
mod tests {
    use super::*;
    use heapster_dataflows::model::Interner;

    use crate::sources::kubernetes::objects::{node_meta, node_target, pod_meta};

    /// A trimmed object converts exactly as the whole one: same target, same metadata.
    #[test]
    fn trimmed_objects_convert_as_whole_ones() {
        let pod = br#"{"metadata":{"name":"web-1","namespace":"prod","uid":"u1","labels":{"app":"web"},
            "annotations":{"a":"b"},"ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"r","uid":"x"}]},
            "spec":{"nodeName":"n1","volumes":[{"name":"v","emptyDir":{}}],"containers":[
              {"name":"app","image":"img:1","resources":{"requests":{"cpu":"250m","memory":"64Mi"},"limits":{"nvidia.com/gpu":"2"}}},
              {"name":"side","resources":{}}]},
            "status":{"phase":"Running","containerStatuses":[{"name":"app","restartCount":3,"ready":true,"image":"img:1","imageID":"sha"}]}}"#;
        let whole: Pod = serde_json::from_slice(pod).unwrap();
        let trimmed: TrimmedPod = serde_json::from_slice(pod).unwrap();
        let (mut a, mut b) = (Interner::default(), Interner::default());
        let (mut wa, mut wb) = (Vec::new(), Vec::new());
        let want = pod_meta(&whole, &mut a, &mut wa).unwrap();
        assert_eq!(trimmed.place(), Some(("prod", "web-1", Some("n1"))));
        let got = pod_meta(&trimmed.into_pod(), &mut b, &mut wb).unwrap();
        assert_eq!(got, want);
        assert_eq!(want.1.containers.len(), 2);
        let place: PodPlace<'_> = serde_json::from_slice(pod).unwrap();
        assert_eq!(place.place(), Some(("prod", "web-1", Some("n1"))));
        let pending: PodPlace<'_> =
            serde_json::from_str(r#"{"metadata":{"name":"p","namespace":"n"},"spec":{"nodeName":""}}"#)
                .unwrap();
        assert_eq!(pending.place(), Some(("n", "p", None)));
        let nameless: PodPlace<'_> = serde_json::from_str(r#"{"metadata":{"namespace":"n"}}"#).unwrap();
        assert_eq!(nameless.place(), None);
        assert_eq!(want.1.containers[0].restart_count, Some(3));

        let node = br#"{"metadata":{"name":"n1","labels":{"zone":"a"}},
            "spec":{"providerID":"gce://p/z/n1","unschedulable":true},
            "status":{"addresses":[{"type":"InternalIP","address":"10.0.0.1"},{"type":"Hostname","address":"h1"}],
              "conditions":[{"type":"Ready","status":"True","reason":"KubeletReady"}],
              "capacity":{"cpu":"4","memory":"16Gi"},"allocatable":{"cpu":"3900m"},
              "images":[{"names":["a"],"sizeBytes":1}]}}"#;
        let whole: Node = serde_json::from_slice(node).unwrap();
        assert_eq!(serde_json::from_slice::<NamePlace<'_>>(node).unwrap().name(), Some("n1"));
        let trimmed = serde_json::from_slice::<TrimmedNode>(node).unwrap().into_node();
        assert_eq!(node_target(&trimmed).unwrap(), node_target(&whole).unwrap());
        assert!(node_target(&whole).unwrap().ready && !node_target(&whole).unwrap().schedulable);
        let (mut a, mut b) = (Interner::default(), Interner::default());
        assert_eq!(
            node_meta(&trimmed, &mut b, &mut Vec::new()).unwrap(),
            node_meta(&whole, &mut a, &mut Vec::new()).unwrap()
        );
    }
}
