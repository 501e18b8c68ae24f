//! Pods as controllers create them: names, labels, owners, volumes, containers and resource
//! settings, placed node by node.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::catalog::{Controller, FLUENTD, KUBE_PROXY_IMAGE};
use super::cluster::{
    Clock, Cluster, Container, ContainerSim, MIB, Owner, Pod, PodKind, PodSim, Resources, Volume,
    VolumeSource, pages, rfc3339,
};
use super::rng::{K8S_ALPHABET, Rng};

impl Cluster {
    /// The node's share of pods: the per-node daemons first, then replicas of the workloads.
    pub(super) fn place_pods(&mut self, node: usize, clock: Clock, daemons_only: bool, rng: &mut Rng) {
        let slots = if daemons_only { self.pods_per_node.min(2) } else { self.pods_per_node };
        for slot in 0..slots {
            let pod = match slot {
                0 => self.fluentd_pod(node, rng),
                1 => self.kube_proxy_pod(node, rng),
                _ => {
                    let w = self.workload_order[self.next_workload % self.workload_order.len()];
                    self.next_workload += 1;
                    self.workload_pod(node, w, rng)
                }
            };
            let (created, start, c_lo, c_hi) = self.pod_times(node, clock, slot < 2, rng);
            let mut pod = pod;
            pod.created = rfc3339(created);
            pod.start_secs = start;
            pod.start = rfc3339(start);
            pod.ready_since = rfc3339(c_hi + rng.range(1, 4) as i64);
            for c in &mut pod.containers {
                c.start_secs = rng.range(c_lo as u64, c_hi as u64) as i64;
                c.start = rfc3339(c.start_secs);
            }
            if !pod.host_network {
                // The node's podCIDR, from .2 up.
                let n = node as u32;
                let base = Ipv4Addr::new(10, ((48 + n / 256) % 256) as u8, (n % 256) as u8, 2);
                pod.ip = Ipv4Addr::from(u32::from(base).wrapping_add(slot as u32)).to_string();
            }
            pod.rv = self.next_rv();
            self.nodes[node].pods.push(self.pods.len());
            self.pods.push(pod);
        }
    }

    /// (created, started, earliest and latest container start) of a new pod.
    fn pod_times(&self, node: usize, clock: Clock, daemon: bool, rng: &mut Rng) -> (i64, i64, i64, i64) {
        let node_created = self.nodes[node].created_secs;
        match clock {
            Clock::Settled { start } => {
                let created = if daemon {
                    node_created + rng.range(5, 30) as i64
                } else {
                    let lo = node_created + 120;
                    rng.range(lo as u64, (start - 900).max(lo) as u64) as i64
                };
                let started = created + rng.range(2, 6) as i64;
                (created, started, started + 1, started + 20)
            }
            Clock::Fresh => {
                // Everything must happen before this window's scrapes, which sit at most
                // `max_off` seconds before its end; the node registered just after the last one.
                let room = (self.res_s - self.max_off as i64 - 4).max(1);
                let started = node_created + 1;
                (node_created, started, started + 1, started + room)
            }
        }
    }

    fn token_volume(&mut self, ns: usize, account: &'static str, rng: &mut Rng) -> Volume {
        let name = self
            .tokens
            .entry((ns, account))
            .or_insert_with(|| format!("{account}-token-{}", rng.chars(K8S_ALPHABET, 5)))
            .clone();
        Volume {
            source: VolumeSource::Secret(name.clone()),
            name,
            mount_path: "/var/run/secrets/kubernetes.io/serviceaccount".into(),
            read_only: true,
            used: 12_288,
            inodes_used: 9,
            growth: 0,
            off: 0,
        }
    }

    fn unique_pod_name(&mut self, ns: usize, prefix: &str, rng: &mut Rng) -> String {
        loop {
            let name = format!("{prefix}{}", rng.chars(K8S_ALPHABET, 5));
            if self.pod_names.insert((ns, name.clone())) {
                return name;
            }
        }
    }

    fn fluentd_pod(&mut self, node: usize, rng: &mut Rng) -> Pod {
        let name = self.unique_pod_name(0, "fluentd-", rng);
        let mut volumes = vec![
            host_path("varlog", "/var/log", "Directory"),
            host_path("varrun", "/var/run/google-fluentbit/pos-files", "DirectoryOrCreate"),
            config_map_volume("fluentd-config", "/etc/fluent-bit", rng),
        ];
        volumes.push(self.token_volume(0, "fluentd", rng));
        let labels = BTreeMap::from([
            ("controller-revision-hash".to_string(), self.fluentd_hash.clone()),
            ("k8s-app".to_string(), "fluentd".to_string()),
            ("pod-template-generation".to_string(), "3".to_string()),
        ]);
        let owner = Owner {
            api_version: "apps/v1",
            kind: "DaemonSet",
            name: "fluentd".into(),
            uid: self.fluentd_uid.clone(),
        };
        let resources = [
            Resources {
                cpu_request_m: Some(50),
                memory_request_mi: Some(100),
                memory_limit_mi: Some(500),
                ..Resources::default()
            },
            Resources {
                cpu_request_m: Some(5),
                memory_request_mi: Some(20),
                cpu_limit_m: Some(50),
                memory_limit_mi: Some(64),
            },
        ];
        let containers = FLUENTD
            .iter()
            .zip(resources)
            .enumerate()
            .map(|(i, ((name, image), res))| new_container(name, image, res, None, mounts(i, &volumes), rng))
            .collect();
        let mut pod = new_pod(0, name, node, PodKind::DaemonSet, owner, labels, volumes, containers, rng);
        pod.generate_name = Some("fluentd-".into());
        pod.service_account = Some("fluentd");
        pod.host_network = true;
        pod.critical = true;
        pod.ip = self.nodes[node].ip.clone();
        pod
    }

    fn kube_proxy_pod(&mut self, node: usize, rng: &mut Rng) -> Pod {
        let node_name = self.nodes[node].name.clone();
        let name = format!("kube-proxy-{node_name}");
        self.pod_names.insert((0, name.clone()));
        let volumes = vec![
            host_path("usr-ca-certs", "/usr/share/ca-certificates", ""),
            host_path("etc-ssl-certs", "/etc/ssl/certs", ""),
            host_path("kubeconfig", "/var/lib/kube-proxy/kubeconfig", "FileOrCreate"),
            host_path("varlog", "/var/log", ""),
            host_path("iptableslock", "/run/xtables.lock", "FileOrCreate"),
            host_path("lib-modules", "/lib/modules", ""),
        ];
        let labels = BTreeMap::from([
            ("component".to_string(), "kube-proxy".to_string()),
            ("tier".to_string(), "node".to_string()),
        ]);
        let owner =
            Owner { api_version: "v1", kind: "Node", name: node_name, uid: self.nodes[node].uid.clone() };
        let res = Resources { cpu_request_m: Some(100), ..Resources::default() };
        let container =
            new_container("kube-proxy", KUBE_PROXY_IMAGE, res, None, (0..volumes.len()).collect(), rng);
        let mut pod = new_pod(0, name, node, PodKind::Mirror, owner, labels, volumes, vec![container], rng);
        let hash = rng.hex(32);
        pod.annotations = BTreeMap::from([
            ("kubernetes.io/config.hash", hash.clone()),
            ("kubernetes.io/config.mirror", hash),
            ("kubernetes.io/config.seen", rfc3339(self.nodes[node].boot_secs + 12)),
            ("kubernetes.io/config.source", "file".to_string()),
        ]);
        pod.host_network = true;
        pod.critical = true;
        pod.ip = self.nodes[node].ip.clone();
        pod
    }

    fn workload_pod(&mut self, node: usize, w: usize, rng: &mut Rng) -> Pod {
        let (template, ns) = (self.workloads[w].template, self.workloads[w].ns);
        let hash = self.workloads[w].hash.clone();
        let mut labels = BTreeMap::from([("app".to_string(), template.name.to_string())]);
        let (name, generate_name, owner_kind, owner_name, kind) = match template.controller {
            Controller::Deployment => {
                let owner = format!("{}-{hash}", template.name);
                let prefix = format!("{owner}-");
                labels.insert("pod-template-hash".into(), hash);
                (self.unique_pod_name(ns, &prefix, rng), prefix, "ReplicaSet", owner, PodKind::Deployment)
            }
            Controller::StatefulSet => {
                let ordinal = self.workloads[w].next_ordinal;
                self.workloads[w].next_ordinal += 1;
                let name = format!("{}-{ordinal}", template.name);
                self.pod_names.insert((ns, name.clone()));
                labels.insert("apps.kubernetes.io/pod-index".into(), ordinal.to_string());
                labels.insert("controller-revision-hash".into(), hash);
                labels.insert("statefulset.kubernetes.io/pod-name".into(), name.clone());
                let owner = template.name.to_string();
                (name, format!("{}-", template.name), "StatefulSet", owner, PodKind::StatefulSet)
            }
        };
        let mut volumes = Vec::new();
        if let Some(cm) = template.config_map {
            volumes.push(config_map_volume(cm, &format!("/etc/{cm}"), rng));
        }
        if let Some((name, path)) = template.empty_dir {
            volumes.push(Volume {
                name: name.into(),
                source: VolumeSource::EmptyDir,
                mount_path: path.into(),
                read_only: false,
                used: pages(rng.log_range(4_096, 2_048 * MIB)),
                inodes_used: rng.range(2, 2_000),
                growth: rng.below(MIB),
                off: 0,
            });
        }
        volumes.push(self.token_volume(ns, template.service_account, rng));
        let owner = Owner {
            api_version: "apps/v1",
            kind: owner_kind,
            name: owner_name,
            uid: self.workloads[w].owner_uid.clone(),
        };
        let containers = template
            .containers
            .iter()
            .enumerate()
            .map(|(i, (name, image))| {
                let port = if i == 0 { template.port } else { None };
                new_container(name, image, self.workloads[w].resources[i], port, mounts(i, &volumes), rng)
            })
            .collect();
        let mut pod = new_pod(ns, name, node, kind, owner, labels, volumes, containers, rng);
        pod.generate_name = Some(generate_name);
        pod.service_account = Some(template.service_account);
        pod
    }
}

fn host_path(name: &str, path: &'static str, kind: &'static str) -> Volume {
    Volume {
        name: name.into(),
        source: VolumeSource::HostPath { path, kind },
        mount_path: path.into(),
        read_only: false,
        used: 0,
        inodes_used: 0,
        growth: 0,
        off: 0,
    }
}

fn config_map_volume(name: &str, path: &str, rng: &mut Rng) -> Volume {
    Volume {
        name: name.into(),
        source: VolumeSource::ConfigMap(name.into()),
        mount_path: path.into(),
        read_only: true,
        used: rng.range(1, 16) * 4_096,
        inodes_used: rng.range(3, 12),
        growth: 0,
        off: 0,
    }
}

/// The main container mounts every volume; sidecars mount the token and scratch space.
fn mounts(container: usize, volumes: &[Volume]) -> Vec<usize> {
    (0..volumes.len())
        .filter(|&v| {
            container == 0 || matches!(volumes[v].source, VolumeSource::Secret(_) | VolumeSource::EmptyDir)
        })
        .collect()
}

fn new_container(
    name: &'static str,
    image: &'static str,
    resources: Resources,
    port: Option<u16>,
    mounts: Vec<usize>,
    rng: &mut Rng,
) -> Container {
    let mut cpu_base = if rng.chance(8) { rng.below(400_000) } else { rng.log_range(1_000_000, 400_000_000) };
    if let Some(limit) = resources.cpu_limit_m {
        cpu_base = cpu_base.min(limit * 850_000);
    }
    let mut ws_base = rng.log_range(4 * MIB, 384 * MIB);
    if let Some(limit) = resources.memory_limit_mi {
        ws_base = ws_base.min(limit * MIB * 80 / 100);
    }
    Container {
        name,
        image,
        resources,
        port,
        mounts,
        restart_count: 0,
        start_secs: 0,
        start: String::new(),
        id: format!("containerd://{}", rng.hex(64)),
        last_terminated: None,
        sim: ContainerSim {
            cpu_base,
            ws_base,
            pf_rate: rng.log_range(2, 4_000),
            rootfs_used: pages(rng.log_range(16 * 1_024, 8 * MIB)),
            rootfs_inodes: rng.range(5, 500),
            log_rate: rng.log_range(1, 4_000),
            ..ContainerSim::default()
        },
    }
}

#[allow(clippy::too_many_arguments)]
fn new_pod(
    ns: usize,
    name: String,
    node: usize,
    kind: PodKind,
    owner: Owner,
    labels: BTreeMap<String, String>,
    volumes: Vec<Volume>,
    containers: Vec<Container>,
    rng: &mut Rng,
) -> Pod {
    Pod {
        ns,
        name,
        uid: rng.uuid(),
        node,
        kind,
        generate_name: None,
        owner,
        labels,
        annotations: BTreeMap::new(),
        created: String::new(),
        start_secs: 0,
        start: String::new(),
        rv: 0,
        deleted: false,
        ready: true,
        ready_since: String::new(),
        ip: String::new(),
        host_network: false,
        service_account: None,
        critical: false,
        volumes,
        containers,
        sim: PodSim {
            rx_rate: rng.log_range(100, 200_000),
            tx_rate: rng.log_range(50, 100_000),
            pause_nano: rng.below(300_000),
            pause_ws: pages(rng.range(300 * 1_024, 1_024 * 1_024)),
            ..PodSim::default()
        },
    }
}
