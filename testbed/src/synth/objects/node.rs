//! NodeList items: `GET /api/v1/nodes`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::synth::catalog::{KUBE_PROXY_IMAGE, PAUSE_IMAGE};
use crate::synth::cluster::{
    Cluster, NODE_ALLOCATABLE_EPHEMERAL, NODE_ALLOCATABLE_MEMORY_KI, NODE_ALLOCATABLE_MILLICORES,
    NODE_CPU_CORES, NODE_FS_CAPACITY, NODE_MEMORY_KI, Node,
};

use super::{KUBE_VERSION, Lazy, List, Map, Meta, PROJECT, image_ref, list};

#[derive(Serialize)]
struct NodeObj<'a> {
    metadata: Meta<'a>,
    spec: NodeSpec<'a>,
    status: NodeStatus<'a>,
}

#[derive(Serialize)]
struct NodeSpec<'a> {
    #[serde(rename = "podCIDR")]
    pod_cidr: &'a str,
    #[serde(rename = "podCIDRs")]
    pod_cidrs: [&'a str; 1],
    #[serde(rename = "providerID")]
    provider_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    taints: Vec<Taint<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Taint<'a> {
    key: &'static str,
    effect: &'static str,
    time_added: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NodeStatus<'a> {
    capacity: BTreeMap<&'static str, String>,
    allocatable: BTreeMap<&'static str, String>,
    conditions: Vec<Condition<'a>>,
    addresses: [Address<'a>; 2],
    daemon_endpoints: DaemonEndpoints,
    node_info: NodeInfo<'a>,
    images: Vec<Image>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Condition<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    status: &'static str,
    last_heartbeat_time: &'a str,
    last_transition_time: &'a str,
    reason: &'static str,
    message: &'static str,
}

#[derive(Serialize)]
struct Address<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    address: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DaemonEndpoints {
    kubelet_endpoint: Endpoint,
}

#[derive(Serialize)]
struct Endpoint {
    #[serde(rename = "Port")]
    port: u16,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NodeInfo<'a> {
    #[serde(rename = "machineID")]
    machine_id: &'a str,
    #[serde(rename = "systemUUID")]
    system_uuid: &'a str,
    #[serde(rename = "bootID")]
    boot_id: &'a str,
    kernel_version: &'static str,
    os_image: &'static str,
    container_runtime_version: &'static str,
    kubelet_version: &'static str,
    kube_proxy_version: &'static str,
    operating_system: &'static str,
    architecture: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Image {
    names: [String; 2],
    size_bytes: u64,
}

fn node_obj<'a>(cluster: &'a Cluster, n: &'a Node) -> NodeObj<'a> {
    let heartbeat = n.heartbeat.as_str();
    let since = n.created.as_str();
    let ok = |kind, reason, message| Condition {
        kind,
        status: "False",
        last_heartbeat_time: heartbeat,
        last_transition_time: since,
        reason,
        message,
    };
    let ready = if n.ready {
        Condition {
            kind: "Ready",
            status: "True",
            last_heartbeat_time: heartbeat,
            last_transition_time: &n.ready_since,
            reason: "KubeletReady",
            message: "kubelet is posting ready status",
        }
    } else {
        Condition {
            kind: "Ready",
            status: "False",
            last_heartbeat_time: heartbeat,
            last_transition_time: &n.ready_since,
            reason: "KubeletNotReady",
            message: "PLEG is not healthy: pleg was last seen active 3m4.61s ago; threshold is 3m0s",
        }
    };
    let conditions = vec![
        Condition {
            reason: "RouteCreated",
            message: "NodeController create implicit route",
            ..ok("NetworkUnavailable", "", "")
        },
        ok("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        ok("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ok("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        ready,
    ];
    let taints = if n.ready {
        Vec::new()
    } else {
        vec![
            Taint { key: "node.kubernetes.io/not-ready", effect: "NoSchedule", time_added: &n.ready_since },
            Taint { key: "node.kubernetes.io/not-ready", effect: "NoExecute", time_added: &n.ready_since },
        ]
    };
    let region = n.zone.rsplit_once('-').map_or(n.zone, |(r, _)| r);
    let labels = Map::from([
        ("beta.kubernetes.io/arch", "amd64"),
        ("beta.kubernetes.io/instance-type", "e2-standard-8"),
        ("beta.kubernetes.io/os", "linux"),
        ("cloud.google.com/gke-boot-disk", "pd-balanced"),
        ("cloud.google.com/gke-nodepool", "pool-1"),
        ("cloud.google.com/machine-family", "e2"),
        ("failure-domain.beta.kubernetes.io/region", region),
        ("failure-domain.beta.kubernetes.io/zone", n.zone),
        ("kubernetes.io/arch", "amd64"),
        ("kubernetes.io/hostname", n.name.as_str()),
        ("kubernetes.io/os", "linux"),
        ("node.kubernetes.io/instance-type", "e2-standard-8"),
        ("topology.kubernetes.io/region", region),
        ("topology.kubernetes.io/zone", n.zone),
    ]);
    let annotations = Map::from([
        ("container.googleapis.com/instance_id", n.instance_id.as_str()),
        ("node.alpha.kubernetes.io/ttl", "0"),
        ("volumes.kubernetes.io/controller-managed-attach-detach", "true"),
    ]);
    let quantities = |cpu: String, memory_ki: u64, ephemeral: String| {
        BTreeMap::from([
            ("cpu", cpu),
            ("ephemeral-storage", ephemeral),
            ("hugepages-1Gi", "0".to_string()),
            ("hugepages-2Mi", "0".to_string()),
            ("memory", format!("{memory_ki}Ki")),
            ("pods", n.max_pods.to_string()),
        ])
    };
    NodeObj {
        metadata: Meta {
            name: &n.name,
            generate_name: None,
            namespace: None,
            uid: &n.uid,
            resource_version: n.rv.to_string(),
            creation_timestamp: &n.created,
            labels,
            annotations,
            owner_references: Vec::new(),
        },
        spec: NodeSpec {
            pod_cidr: &n.pod_cidr,
            pod_cidrs: [&n.pod_cidr],
            provider_id: format!("gce://{PROJECT}/{}/{}", n.zone, n.name),
            taints,
        },
        status: NodeStatus {
            capacity: quantities(
                NODE_CPU_CORES.to_string(),
                NODE_MEMORY_KI,
                format!("{}Ki", NODE_FS_CAPACITY / 1_024),
            ),
            allocatable: quantities(
                format!("{NODE_ALLOCATABLE_MILLICORES}m"),
                NODE_ALLOCATABLE_MEMORY_KI,
                NODE_ALLOCATABLE_EPHEMERAL.to_string(),
            ),
            conditions,
            addresses: [
                Address { kind: "InternalIP", address: &n.ip },
                Address { kind: "Hostname", address: &n.name },
            ],
            daemon_endpoints: DaemonEndpoints { kubelet_endpoint: Endpoint { port: 10_250 } },
            node_info: NodeInfo {
                machine_id: &n.machine_id,
                system_uuid: &n.system_uuid,
                boot_id: &n.boot_id,
                kernel_version: "6.6.56+",
                os_image: "Container-Optimized OS from Google",
                container_runtime_version: "containerd://1.7.24",
                kubelet_version: KUBE_VERSION,
                kube_proxy_version: KUBE_VERSION,
                operating_system: "linux",
                architecture: "amd64",
            },
            images: node_images(cluster, n),
        },
    }
}

/// The images pulled on a node, largest first as the kubelet lists them.
fn node_images(cluster: &Cluster, n: &Node) -> Vec<Image> {
    let mut names: BTreeSet<&str> = BTreeSet::from([PAUSE_IMAGE, KUBE_PROXY_IMAGE]);
    for &p in &n.pods {
        names.extend(cluster.pods[p].containers.iter().map(|c| c.image));
    }
    let mut images: Vec<Image> = names
        .into_iter()
        .map(|name| {
            let (digest, size) = image_ref(name);
            Image { names: [digest, name.to_string()], size_bytes: size }
        })
        .collect();
    images.sort_by(|a, b| b.size_bytes.cmp(&a.size_bytes).then_with(|| a.names[1].cmp(&b.names[1])));
    images
}

pub fn nodes(cluster: &Cluster) -> List<impl Serialize + '_> {
    let mut nodes: Vec<&Node> = cluster.nodes.iter().collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    list("NodeList", cluster.rv, Lazy { items: nodes, to_obj: move |n| node_obj(cluster, n) })
}
