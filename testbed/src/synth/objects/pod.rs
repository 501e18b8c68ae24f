//! PodList items: `GET /api/v1/pods`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::synth::cluster::{Cluster, Pod, PodKind, Resources, VolumeSource};

use super::{Empty, Lazy, List, Meta, OwnerRef, image_ref, list};

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
