//! NodeList, PodList and NamespaceList bodies as `GET /api/v1/{nodes,pods,namespaces}` answers:
//! list `kind`/`apiVersion`/`metadata.resourceVersion`, items without their own type fields.

mod node;
mod pod;

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};

use super::cluster::Cluster;
use super::rng::{self, Rng};

const KUBE_VERSION: &str = "v1.33.5-gke.1080000";
const PROJECT: &str = "prod-project";

type Map<'a> = BTreeMap<&'a str, &'a str>;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct List<T> {
    kind: &'static str,
    api_version: &'static str,
    metadata: ListMeta,
    items: T,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ListMeta {
    resource_version: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Meta<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    generate_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    uid: &'a str,
    resource_version: String,
    creation_timestamp: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: Map<'a>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: Map<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    owner_references: Vec<OwnerRef<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OwnerRef<'a> {
    api_version: &'a str,
    kind: &'a str,
    name: &'a str,
    uid: &'a str,
    controller: bool,
    block_owner_deletion: bool,
}

/// An empty JSON object (`securityContext: {}`, `emptyDir: {}`).
#[derive(Serialize)]
struct Empty {}

/// List items built one at a time as the encoder reaches them: a 30,000-pod list only ever
/// exists as bytes, never as objects.
struct Lazy<'a, T, F> {
    items: Vec<&'a T>,
    to_obj: F,
}

impl<'a, T, O: Serialize, F: Fn(&'a T) -> O> Serialize for Lazy<'a, T, F> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.items.iter().map(|&item| (self.to_obj)(item)))
    }
}

pub(super) fn list<T>(kind: &'static str, rv: u64, items: T) -> List<T> {
    List { kind, api_version: "v1", metadata: ListMeta { resource_version: rv.to_string() }, items }
}

// ---- namespaces ----

#[derive(Serialize)]
struct NamespaceObj<'a> {
    metadata: Meta<'a>,
    spec: NamespaceSpec,
    status: NamespaceStatus,
}

#[derive(Serialize)]
struct NamespaceSpec {
    finalizers: [&'static str; 1],
}

#[derive(Serialize)]
struct NamespaceStatus {
    phase: &'static str,
}

pub fn namespaces(cluster: &Cluster) -> List<impl Serialize + '_> {
    let mut sorted: Vec<_> = cluster.namespaces.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let items = sorted
        .into_iter()
        .map(|ns| NamespaceObj {
            metadata: Meta {
                name: &ns.name,
                generate_name: None,
                namespace: None,
                uid: &ns.uid,
                resource_version: ns.rv.to_string(),
                creation_timestamp: &ns.created,
                labels: Map::from([("kubernetes.io/metadata.name", ns.name.as_str())]),
                annotations: Map::new(),
                owner_references: Vec::new(),
            },
            spec: NamespaceSpec { finalizers: ["kubernetes"] },
            status: NamespaceStatus { phase: "Active" },
        })
        .collect::<Vec<_>>();
    list("NamespaceList", cluster.rv, items)
}

/// The digest and size of an image: a function of its name only, as in a registry.
fn image_ref(image: &str) -> (String, u64) {
    let mut rng = Rng::keyed(0, rng::IMAGE, image);
    let repo = match (image.rfind(':'), image.rfind('/')) {
        (Some(colon), slash) if slash.is_none_or(|s| s < colon) => &image[..colon],
        _ => image,
    };
    (format!("{repo}@sha256:{}", rng.hex(64)), rng.log_range(700_000, 900_000_000))
}

pub use node::nodes;
pub use pod::pods;
