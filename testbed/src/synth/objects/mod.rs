//! NodeList, PodList and NamespaceList bodies as `GET /api/v1/{nodes,pods,namespaces}` answers:
//! list `kind`/`apiVersion`/`metadata.resourceVersion`, items without their own type fields.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Serialize, Serializer};

use super::catalog::{KUBE_PROXY_IMAGE, PAUSE_IMAGE};
use super::cluster::{
    Cluster, NODE_ALLOCATABLE_EPHEMERAL, NODE_ALLOCATABLE_MEMORY_KI, NODE_ALLOCATABLE_MILLICORES,
    NODE_CPU_CORES, NODE_FS_CAPACITY, NODE_MEMORY_KI, Node, Pod, PodKind, Resources, VolumeSource,
};
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

// ---- nodes ----

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

/// The digest and size of an image: a function of its name only, as in a registry.
fn image_ref(image: &str) -> (String, u64) {
    let mut rng = Rng::keyed(0, rng::IMAGE, image);
    let repo = match (image.rfind(':'), image.rfind('/')) {
        (Some(colon), slash) if slash.is_none_or(|s| s < colon) => &image[..colon],
        _ => image,
    };
    (format!("{repo}@sha256:{}", rng.hex(64)), rng.log_range(700_000, 900_000_000))
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

// ---- pods ----

#[derive(Serialize)]
struct PodObj<'a> {
    metadata: Meta<'a>,
    spec: PodSpec<'a>,
    status: PodStatus<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec<'a> {
    volumes: Vec<VolumeObj<'a>>,
    containers: Vec<ContainerObj<'a>>,
    restart_policy: &'static str,
    termination_grace_period_seconds: u32,
    dns_policy: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_account_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_account: Option<&'a str>,
    node_name: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    host_network: bool,
    security_context: Empty,
    scheduler_name: &'static str,
    tolerations: Vec<Toleration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    priority_class_name: Option<&'static str>,
    priority: u32,
    enable_service_links: bool,
    preemption_policy: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VolumeObj<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    host_path: Option<HostPathObj>,
    #[serde(skip_serializing_if = "Option::is_none")]
    empty_dir: Option<Empty>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<SecretObj<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    config_map: Option<ConfigMapObj<'a>>,
}

#[derive(Serialize)]
struct HostPathObj {
    path: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SecretObj<'a> {
    secret_name: &'a str,
    default_mode: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConfigMapObj<'a> {
    name: &'a str,
    default_mode: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ContainerObj<'a> {
    name: &'a str,
    image: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ports: Vec<Port>,
    resources: ResourcesObj,
    volume_mounts: Vec<Mount<'a>>,
    termination_message_path: &'static str,
    termination_message_policy: &'static str,
    image_pull_policy: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Port {
    container_port: u16,
    protocol: &'static str,
}

#[derive(Serialize)]
struct ResourcesObj {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    limits: BTreeMap<&'static str, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    requests: BTreeMap<&'static str, String>,
}

impl ResourcesObj {
    fn new(r: &Resources) -> ResourcesObj {
        let quantities = |cpu: Option<u64>, memory: Option<u64>| {
            let mut q = BTreeMap::new();
            if let Some(m) = cpu {
                q.insert("cpu", format!("{m}m"));
            }
            if let Some(mi) = memory {
                q.insert("memory", format!("{mi}Mi"));
            }
            q
        };
        ResourcesObj {
            limits: quantities(r.cpu_limit_m, r.memory_limit_mi),
            requests: quantities(r.cpu_request_m, r.memory_request_mi),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Mount<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    read_only: bool,
    mount_path: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Toleration {
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'static str>,
    operator: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    effect: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    toleration_seconds: Option<u32>,
}

fn tolerations(kind: PodKind) -> Vec<Toleration> {
    match kind {
        PodKind::DaemonSet | PodKind::Mirror => ["NoExecute", "NoSchedule"]
            .into_iter()
            .map(|e| Toleration { key: None, operator: "Exists", effect: Some(e), toleration_seconds: None })
            .collect(),
        _ => ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"]
            .into_iter()
            .map(|k| Toleration {
                key: Some(k),
                operator: "Exists",
                effect: Some("NoExecute"),
                toleration_seconds: Some(300),
            })
            .collect(),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PodStatus<'a> {
    phase: &'static str,
    conditions: Vec<PodCondition<'a>>,
    #[serde(rename = "hostIP")]
    host_ip: &'a str,
    #[serde(rename = "hostIPs")]
    host_ips: [Ip<'a>; 1],
    #[serde(rename = "podIP")]
    pod_ip: &'a str,
    #[serde(rename = "podIPs")]
    pod_ips: [Ip<'a>; 1],
    start_time: &'a str,
    container_statuses: Vec<ContainerStatus<'a>>,
    qos_class: &'static str,
}

#[derive(Serialize)]
struct Ip<'a> {
    ip: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PodCondition<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    status: &'static str,
    last_probe_time: (),
    last_transition_time: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ContainerStatus<'a> {
    name: &'a str,
    state: State<'a>,
    last_state: LastState<'a>,
    ready: bool,
    restart_count: u32,
    image: &'a str,
    #[serde(rename = "imageID")]
    image_id: String,
    #[serde(rename = "containerID")]
    container_id: &'a str,
    started: bool,
}

#[derive(Serialize)]
struct State<'a> {
    running: Running<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Running<'a> {
    started_at: &'a str,
}

#[derive(Serialize)]
struct LastState<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    terminated: Option<TerminatedObj<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TerminatedObj<'a> {
    exit_code: i32,
    reason: &'a str,
    started_at: &'a str,
    finished_at: &'a str,
    #[serde(rename = "containerID")]
    container_id: &'a str,
}

fn pod_obj<'a>(cluster: &'a Cluster, p: &'a Pod) -> PodObj<'a> {
    let node = &cluster.nodes[p.node];
    let volumes = p
        .volumes
        .iter()
        .map(|v| {
            let mut obj =
                VolumeObj { name: &v.name, host_path: None, empty_dir: None, secret: None, config_map: None };
            match &v.source {
                VolumeSource::Secret(name) => {
                    obj.secret = Some(SecretObj { secret_name: name, default_mode: 420 })
                }
                VolumeSource::ConfigMap(name) => {
                    obj.config_map = Some(ConfigMapObj { name, default_mode: 420 })
                }
                VolumeSource::EmptyDir => obj.empty_dir = Some(Empty {}),
                VolumeSource::HostPath { path, kind } => obj.host_path = Some(HostPathObj { path, kind }),
            }
            obj
        })
        .collect();
    let containers = p
        .containers
        .iter()
        .map(|c| ContainerObj {
            name: c.name,
            image: c.image,
            ports: c.port.map(|port| Port { container_port: port, protocol: "TCP" }).into_iter().collect(),
            resources: ResourcesObj::new(&c.resources),
            volume_mounts: c
                .mounts
                .iter()
                .map(|&m| Mount {
                    name: &p.volumes[m].name,
                    read_only: p.volumes[m].read_only,
                    mount_path: &p.volumes[m].mount_path,
                })
                .collect(),
            termination_message_path: "/dev/termination-log",
            termination_message_policy: "File",
            image_pull_policy: "IfNotPresent",
        })
        .collect();
    let statuses = p
        .containers
        .iter()
        .map(|c| ContainerStatus {
            name: c.name,
            state: State { running: Running { started_at: &c.start } },
            last_state: LastState {
                terminated: c.last_terminated.as_ref().map(|t| TerminatedObj {
                    exit_code: t.exit_code,
                    reason: t.reason,
                    started_at: &t.started,
                    finished_at: &t.finished,
                    container_id: &t.id,
                }),
            },
            ready: true,
            restart_count: c.restart_count,
            image: c.image,
            image_id: image_ref(c.image).0,
            container_id: &c.id,
            started: true,
        })
        .collect();
    let condition = |kind, ok: bool, at| PodCondition {
        kind,
        status: if ok { "True" } else { "False" },
        last_probe_time: (),
        last_transition_time: at,
    };
    let conditions = vec![
        condition("PodReadyToStartContainers", true, &p.start),
        condition("Initialized", true, &p.start),
        condition("Ready", p.ready, &p.ready_since),
        condition("ContainersReady", true, &p.ready_since),
        condition("PodScheduled", true, &p.created),
    ];
    let owner = &p.owner;
    PodObj {
        metadata: Meta {
            name: &p.name,
            generate_name: p.generate_name.as_deref(),
            namespace: Some(&cluster.namespaces[p.ns].name),
            uid: &p.uid,
            resource_version: p.rv.to_string(),
            creation_timestamp: &p.created,
            labels: p.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
            annotations: p.annotations.iter().map(|(k, v)| (*k, v.as_str())).collect(),
            owner_references: vec![OwnerRef {
                api_version: owner.api_version,
                kind: owner.kind,
                name: &owner.name,
                uid: &owner.uid,
                controller: true,
                block_owner_deletion: owner.kind != "Node",
            }],
        },
        spec: PodSpec {
            volumes,
            containers,
            restart_policy: "Always",
            termination_grace_period_seconds: 30,
            dns_policy: if p.host_network && p.kind == PodKind::DaemonSet {
                "ClusterFirstWithHostNet"
            } else {
                "ClusterFirst"
            },
            service_account_name: p.service_account,
            service_account: p.service_account,
            node_name: &node.name,
            host_network: p.host_network,
            security_context: Empty {},
            scheduler_name: "default-scheduler",
            tolerations: tolerations(p.kind),
            priority_class_name: p.critical.then_some("system-node-critical"),
            priority: if p.critical { 2_000_001_000 } else { 0 },
            enable_service_links: true,
            preemption_policy: "PreemptLowerPriority",
        },
        status: PodStatus {
            phase: "Running",
            conditions,
            host_ip: &node.ip,
            host_ips: [Ip { ip: &node.ip }],
            pod_ip: &p.ip,
            pod_ips: [Ip { ip: &p.ip }],
            start_time: &p.start,
            container_statuses: statuses,
            qos_class: p.qos_class(),
        },
    }
}

/// Live pods in the API server's order: by namespace, then name.
pub fn pods(cluster: &Cluster) -> List<impl Serialize + '_> {
    let mut live: Vec<&Pod> = cluster.pods.iter().filter(|p| !p.deleted).collect();
    live.sort_by(|a, b| {
        (&cluster.namespaces[a.ns].name, &a.name).cmp(&(&cluster.namespaces[b.ns].name, &b.name))
    });
    list("PodList", cluster.rv, Lazy { items: live, to_obj: move |p| pod_obj(cluster, p) })
}
