//! Synthetic cAdvisor scenarios: hosts running Kubernetes-labelled containers, their
//! `/api/v1.3/subcontainers/` bodies shaped field for field like the captures in
//! `../shared/captures` (one sample per container, as the live source asks for), and their
//! `/api/v1.3/machine` bodies. Deterministic: the same spec writes the same bytes.

use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use heapster::scenario::ScenarioWriter;
use heapster::sources::cadvisor::{Host, HostList};

/// The system containers every host has, as cAdvisor names their cgroups.
const SYSTEM_CONTAINERS: [&str; 3] = ["/docker-daemon", "/kubelet", "/system"];

#[derive(Clone, Debug)]
pub struct CadvisorSpec {
    pub hosts: usize,
    pub pods_per_host: usize,
    /// Application containers per pod, besides its `POD` infrastructure container.
    pub containers_per_pod: usize,
    pub windows: usize,
    pub resolution_seconds: u64,
    /// The first window's end, ms since the epoch.
    pub start_ms: u64,
    /// Host `i` gets address `base + i` (the fixture server's cAdvisors), in the hosts file.
    pub base_ip: std::net::Ipv4Addr,
}

impl CadvisorSpec {
    pub fn new(hosts: usize, pods_per_host: usize, windows: usize) -> CadvisorSpec {
        CadvisorSpec {
            hosts,
            pods_per_host,
            containers_per_pod: 1,
            windows,
            resolution_seconds: 5,
            start_ms: 1_700_000_000_000,
            base_ip: std::net::Ipv4Addr::new(127, 0, 0, 2),
        }
    }

    /// The hosts, in name order, with their metadata labels.
    pub fn hosts(&self) -> Vec<Host> {
        (0..self.hosts)
            .map(|i| Host {
                name: host_name(i),
                ip: std::net::Ipv4Addr::from(u32::from(self.base_ip).wrapping_add(i as u32)).to_string(),
                id: host_name(i),
                labels: [("region".to_string(), ["eu", "us"][i % 2].to_string())].into_iter().collect(),
            })
            .collect()
    }
}

pub fn host_name(i: usize) -> String {
    format!("host-{i:04}")
}

/// Writes the scenario: window 0 lists every host; bodies for every host and window.
pub fn write_cadvisor_scenario(spec: &CadvisorSpec, out: &Path) -> io::Result<PathBuf> {
    let mut writer = ScenarioWriter::create(out, "synthetic cAdvisor hosts", spec.resolution_seconds)?;
    let hosts = spec.hosts();
    for w in 0..spec.windows {
        let time = spec.start_ms + w as u64 * spec.resolution_seconds * 1000;
        let window = writer.window(time)?;
        if w == 0 {
            let mut body =
                serde_json::to_vec_pretty(&HostList { items: hosts.clone() }).map_err(io::Error::other)?;
            body.push(b'\n');
            window.cadvisor_hosts(&body)?;
        }
        for (h, host) in hosts.iter().enumerate() {
            if w == 0 {
                window.cadvisor_machine(&host.name, &machine_body(h))?;
            }
            window.cadvisor(&host.name, &subcontainers_body(spec, h, w, time))?;
        }
    }
    writer.finish()
}

pub fn machine_body(host: usize) -> Vec<u8> {
    let body = json!({
        "num_cores": 2 + host % 3,
        "cpu_frequency_khz": 2_300_000,
        "memory_capacity": (4u64 + (host % 4) as u64) << 30,
        "machine_id": format!("{:032x}", host + 1),
        "system_uuid": format!("uuid-{host}"),
        "boot_id": format!("boot-{host}"),
        "filesystems": [{"device": "/dev/sda1", "capacity": 105_553_100_800u64, "type": "vfs", "inodes": 6_553_600}],
        "network_devices": [{"name": "eth0", "mac_address": "42:01:0a:f0:00:03", "speed": 0, "mtu": 1460}],
        "topology": [{"node_id": 0, "memory": 0, "cores": [{"core_id": 0, "thread_ids": [0]}]}],
        "cloud_provider": "GCE",
        "instance_type": "n1-standard-2",
        "instance_id": format!("{}", 1000 + host),
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

fn rfc3339(ns: u64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(ns)).map(|t| t.to_string()).unwrap_or_default()
}

/// One host's answer in window `w` (ending at `time_ms`).
pub fn subcontainers_body(spec: &CadvisorSpec, host: usize, w: usize, time_ms: u64) -> Vec<u8> {
    let sample_ns = (time_ms - 1_000) * 1_000_000 + (host as u64 % 1000) * 1_000;
    let created_ns = (spec.start_ms - 3_600_000) * 1_000_000;
    let elapsed_s = (w as u64 + 1) * spec.resolution_seconds;
    let mut containers = Vec::new();
    let mut sub = Vec::new();
    let mut push = |name: String, labels: Option<Value>, image: Option<&str>, scale: u64, network: bool| {
        sub.push(json!({ "name": name }));
        let mut spec_json = json!({
            "creation_time": rfc3339(created_ns),
            "has_cpu": true,
            "cpu": {"limit": 1024, "max_limit": 0, "mask": "0-1"},
            "has_memory": true,
            "memory": {"limit": 18_446_744_073_709_551_615u64, "swap_limit": 18_446_744_073_709_551_615u64},
            "has_network": network,
            "has_filesystem": true,
            "has_diskio": true,
            "has_custom_metrics": false,
        });
        let mut info = json!({ "name": name });
        if let Some(labels) = labels {
            spec_json["labels"] = labels.clone();
            info["id"] = json!(format!("{:064x}", scale));
            info["aliases"] = json!([format!("k8s_{}", scale), format!("{:064x}", scale)]);
            info["namespace"] = json!("docker");
            info["labels"] = labels;
        }
        if let Some(image) = image {
            spec_json["image"] = json!(image);
        }
        let rx = scale * 1_000 * elapsed_s;
        info["spec"] = spec_json;
        info["stats"] = json!([{
            "timestamp": rfc3339(sample_ns),
            "cpu": {
                "usage": {
                    "total": scale * 50_000_000 * elapsed_s,
                    "per_cpu_usage": [scale * 25_000_000 * elapsed_s, scale * 25_000_000 * elapsed_s],
                    "user": scale * 30_000_000 * elapsed_s,
                    "system": scale * 20_000_000 * elapsed_s
                },
                "load_average": scale % 7
            },
            "diskio": {
                "io_service_bytes": [{"major": 8, "minor": 0, "stats": {
                    "Async": scale * 10 * elapsed_s, "Read": scale * 4_096 * elapsed_s,
                    "Sync": scale * 20 * elapsed_s, "Total": scale * 12_288 * elapsed_s,
                    "Write": scale * 8_192 * elapsed_s}}],
                "io_serviced": [{"major": 8, "minor": 0, "stats": {
                    "Async": scale, "Read": scale, "Sync": scale, "Total": 2 * scale, "Write": scale}}],
                "io_queued": [{"major": 8, "minor": 0, "stats": {"Async": 0, "Read": 0, "Sync": 0, "Total": 0, "Write": 0}}]
            },
            "memory": {
                "usage": scale * 1_048_576 + (w as u64 % 3) * 4096,
                "cache": scale * 262_144,
                "rss": scale * 524_288,
                "swap": 0,
                "working_set": scale * 786_432,
                "failcnt": 0,
                "container_data": {"pgfault": scale * 100 * elapsed_s, "pgmajfault": scale * elapsed_s / 5},
                "hierarchical_data": {"pgfault": scale * 100 * elapsed_s, "pgmajfault": scale * elapsed_s / 5}
            },
            "network": {
                "name": if network { "eth0" } else { "" },
                "rx_bytes": if network { rx } else { 0 }, "rx_packets": if network { rx / 1000 } else { 0 },
                "rx_errors": 0, "rx_dropped": 0,
                "tx_bytes": if network { rx / 2 } else { 0 }, "tx_packets": if network { rx / 2000 } else { 0 },
                "tx_errors": 0, "tx_dropped": 0,
                "interfaces": if network { json!([{"name": "eth0", "rx_bytes": rx, "rx_packets": rx / 1000,
                    "rx_errors": 0, "rx_dropped": 0, "tx_bytes": rx / 2, "tx_packets": rx / 2000,
                    "tx_errors": 0, "tx_dropped": 0}]) } else { json!(null) },
                "tcp": {"Established": 0, "SynSent": 0, "SynRecv": 0, "FinWait1": 0, "FinWait2": 0, "TimeWait": 0,
                    "Close": 0, "CloseWait": 0, "LastAck": 0, "Listen": 0, "Closing": 0},
                "tcp6": {"Established": 0, "SynSent": 0, "SynRecv": 0, "FinWait1": 0, "FinWait2": 0, "TimeWait": 0,
                    "Close": 0, "CloseWait": 0, "LastAck": 0, "Listen": 0, "Closing": 0}
            },
            "filesystem": [{
                "device": "/dev/sda1", "type": "vfs", "capacity": 105_553_100_800u64,
                "usage": scale * 40_960, "base_usage": scale * 4_096, "available": 97_304_723_456u64,
                "inodes_free": 6_447_557, "reads_completed": 0, "reads_merged": 0, "sectors_read": 0,
                "read_time": 0, "writes_completed": 0, "writes_merged": 0, "sectors_written": 0,
                "write_time": 0, "io_in_progress": 0, "io_time": 0, "weighted_io_time": 0
            }],
            "task_stats": {"nr_sleeping": 0, "nr_running": 0, "nr_stopped": 0, "nr_uninterruptible": 0, "nr_io_wait": 0}
        }]);
        containers.push(info);
    };
    let base = host as u64 * 1000;
    for (i, name) in SYSTEM_CONTAINERS.iter().enumerate() {
        push(name.to_string(), None, None, base + 900 + i as u64, false);
    }
    for p in 0..spec.pods_per_host {
        let pod = format!("app-{host}-{p}");
        let ns = ["default", "kube-system", "web"][p % 3];
        let uid = format!("{:08x}-0000-4000-8000-{:012x}", host, p);
        let labels = |container: &str| {
            json!({
                "io.kubernetes.container.hash": "7b520f3f",
                "io.kubernetes.container.name": container,
                "io.kubernetes.container.restartCount": "0",
                "io.kubernetes.container.terminationMessagePath": "/dev/termination-log",
                "io.kubernetes.pod.name": pod,
                "io.kubernetes.pod.namespace": ns,
                "io.kubernetes.pod.terminationGracePeriod": "30",
                "io.kubernetes.pod.uid": uid,
            })
        };
        let id = base + 10 * p as u64;
        push(
            format!("/{:064x}", id),
            Some(labels("POD")),
            Some("gcr.io/google_containers/pause:2.0"),
            id + 1,
            true,
        );
        for c in 0..spec.containers_per_pod {
            let name = format!("c{c}");
            push(
                format!("/{:064x}", id + 2 + c as u64),
                Some(labels(&name)),
                Some("nginx:1.9"),
                id + 2 + c as u64,
                false,
            );
        }
    }
    push("/".to_string(), None, None, base + 999, true);
    if let Some(root) = containers.last_mut() {
        root["subcontainers"] = Value::Array(sub[..sub.len() - 1].to_vec());
    }
    serde_json::to_vec(&containers).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use heapster::sources::cadvisor::parse::{Bodies, parse_cadvisor};
    use heapster_dataflows::model::Interner;

    #[test]
    fn bodies_parse_without_warnings_and_have_every_container() {
        let spec = CadvisorSpec::new(3, 4, 2);
        let host = &spec.hosts()[1];
        let body = subcontainers_body(&spec, 1, 1, spec.start_ms + 5000);
        let machine = machine_body(1);
        let mut out = Vec::new();
        let report = parse_cadvisor(
            Bodies { subcontainers: &body, machine: Some(&machine) },
            &host.target().target,
            None,
            &mut Interner::default(),
            &mut out,
        )
        .expect("parses");
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        // Node, 3 system containers, 4 pods and 4 containers.
        assert_eq!(out.len(), 12);
        assert_eq!(subcontainers_body(&spec, 1, 1, spec.start_ms + 5000), body, "deterministic");
    }
}
