//! Cluster mode: one dataflow across several processes, over timely's own networking.
//!
//! Every process runs the same graph with `-w` workers; worker `w` of process `p` is global
//! worker `p * workers + w`. A node belongs to the global worker its stable hash picks, so each
//! process scrapes (or replays) only its own share of the nodes. A node's metric sets stay on the
//! worker that scraped them from parse to sink (`heapster_dataflows::metrics::route`). Each
//! process reads the node and pod lists (or watches) but decodes and feeds only the objects its
//! own workers enrich with ([`Share::keeps`]), so no process handles the whole cluster's pods and
//! no pod's metadata crosses processes; between processes travel only the namespaces (to all),
//! the namespace and cluster sums, and events. Process 0 is the leader: it alone feeds the
//! namespaces and events into the graph (the exchanges route them to their owners), and it
//! alone keeps the event watch's resource version.
//!
//! - [`connect`]: the peers' sockets, with a bounded wait and a handshake that checks every
//!   process runs the same layout, then handed to timely.
//! - [`lost`]: a lost peer ends the process with a message naming it.

pub mod connect;
pub mod lost;

use std::path::Path;
use std::time::Duration;

use heapster_dataflows::meta::MetaRecord;
use heapster_dataflows::metrics::route;
use heapster_dataflows::model::node_owner;

use crate::config::ConfigError;

/// The `--processes`, `--process`, `--hostfile` flags, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    pub processes: usize,
    pub process: usize,
    /// `host:port` of every process, in process order.
    pub addresses: Vec<String>,
    /// How long to wait for every peer at start.
    pub connect_timeout: Duration,
}

impl ClusterConfig {
    /// `None` for a single process (`--processes 1`, the default).
    pub fn from_flags(
        processes: usize,
        process: usize,
        hostfile: Option<&Path>,
        connect_timeout: Duration,
    ) -> Result<Option<ClusterConfig>, ConfigError> {
        if process >= processes.max(1) {
            return Err(ConfigError::new(
                "--process",
                &process.to_string(),
                format!("must be below --processes ({processes})"),
            ));
        }
        if processes <= 1 {
            return Ok(None);
        }
        let Some(hostfile) = hostfile else {
            return Err(ConfigError::new(
                "--hostfile",
                "",
                format!("required with --processes {processes}: a file with one host:port per line"),
            ));
        };
        let shown = hostfile.display().to_string();
        let text = std::fs::read_to_string(hostfile)
            .map_err(|e| ConfigError::new("--hostfile", &shown, format!("cannot read: {e}")))?;
        let addresses =
            parse_hostfile(&text).map_err(|e| ConfigError::new("--hostfile", &shown, e.to_string()))?;
        if addresses.len() < processes {
            return Err(ConfigError::new(
                "--hostfile",
                &shown,
                format!("names {} processes, but --processes is {processes}", addresses.len()),
            ));
        }
        Ok(Some(ClusterConfig {
            processes,
            process,
            addresses: addresses.into_iter().take(processes).collect(),
            connect_timeout,
        }))
    }
}

/// A hostfile line that is not `host:port`.
#[derive(Debug, thiserror::Error)]
#[error("line {number}: {line:?} is not host:port")]
pub struct HostfileError {
    number: usize,
    line: String,
}

/// One `host:port` per line; blank lines and `#` comments are skipped.
fn parse_hostfile(text: &str) -> Result<Vec<String>, HostfileError> {
    let mut addresses = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let valid = line
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
        if !valid || line.contains(char::is_whitespace) {
            return Err(HostfileError { number: number + 1, line: line.to_string() });
        }
        addresses.push(line.to_string());
    }
    Ok(addresses)
}

/// Which workers of the whole cluster this process runs, and so which nodes are its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share {
    pub process: usize,
    pub processes: usize,
    /// Workers per process.
    pub workers: usize,
}

impl Share {
    /// A single process with `workers` workers.
    pub fn single(workers: usize) -> Share {
        Share { process: 0, processes: 1, workers: workers.max(1) }
    }

    pub fn of(cluster: Option<&ClusterConfig>, workers: usize) -> Share {
        match cluster {
            Some(c) => Share { process: c.process, processes: c.processes, workers: workers.max(1) },
            None => Share::single(workers),
        }
    }

    /// Workers in the whole cluster.
    pub fn peers(&self) -> usize {
        self.processes * self.workers
    }

    /// The global index of this process's first worker.
    pub fn first_worker(&self) -> usize {
        self.process * self.workers
    }

    /// The process that feeds metadata and events.
    pub fn is_leader(&self) -> bool {
        self.process == 0
    }

    /// The local worker that owns `node`, if one of this process's workers does.
    pub fn local_owner(&self, node: &str) -> Option<usize> {
        let owner = node_owner(node, self.peers());
        (owner / self.workers == self.process).then_some(owner % self.workers)
    }

    /// Whether a timely exchange `route` lands on one of this process's workers.
    pub fn owns_route(&self, route: u64) -> bool {
        (route % self.peers() as u64) as usize / self.workers == self.process
    }

    /// Whether this process feeds `record` into the graph: a node's or pod's metadata where the
    /// graph enriches with it (the owner of its node), so that it never crosses to another
    /// process; namespaces, which every worker gets, from the leader alone.
    pub fn keeps(&self, record: &MetaRecord) -> bool {
        match record {
            MetaRecord::Namespace { .. } => self.is_leader(),
            _ => self.owns_route(route::record(record)),
        }
    }

    /// [`Share::keeps`] for a pod known by its namespace, name and node before it is decoded
    /// whole; `None` (a pod that cannot be placed, and will be refused with a warning) is the
    /// leader's, so the warning is logged once.
    pub fn keeps_pod(&self, place: Option<(&str, &str, Option<&str>)>) -> bool {
        match place {
            Some((ns, name, node)) => self.owns_route(route::pod(ns, name, node)),
            None => self.is_leader(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_has_exactly_one_owner_in_the_cluster() {
        let shares: Vec<Share> = (0..3).map(|process| Share { process, processes: 3, workers: 2 }).collect();
        let mut per_process = [0usize; 3];
        for i in 0..300 {
            let node = format!("node-{i}");
            let owners: Vec<(usize, usize)> =
                shares.iter().filter_map(|s| s.local_owner(&node).map(|w| (s.process, w))).collect();
            assert_eq!(owners.len(), 1, "{node}: {owners:?}");
            let (process, local) = owners[0];
            // The same global worker a single process with six workers would pick.
            assert_eq!(process * 2 + local, node_owner(&node, 6));
            per_process[process] += 1;
        }
        assert!(per_process.iter().all(|&n| n > 60), "{per_process:?}");
        assert_eq!(Share::single(4).local_owner("a"), Some(node_owner("a", 4)));
    }

    #[test]
    fn every_record_is_fed_by_exactly_the_process_that_enriches_with_it() {
        use std::sync::Arc;

        use heapster_dataflows::Name;
        use heapster_dataflows::meta::{NamespaceMeta, PodMeta};

        let shares: Vec<Share> = (0..3).map(|process| Share { process, processes: 3, workers: 2 }).collect();
        let pod = |name: &str, node: Option<&str>| MetaRecord::Pod {
            ns: Name::new("web"),
            name: Name::new(name),
            meta: Arc::new(PodMeta {
                uid: Name::new("u"),
                labels: vec![],
                node: node.map(Name::new),
                containers: Arc::from(Vec::new()),
            }),
        };
        for i in 0..100 {
            let node = format!("node-{i}");
            let (bound, pending) = (pod(&format!("p{i}"), Some(&node)), pod(&format!("p{i}"), None));
            let feeders: Vec<usize> = shares.iter().filter(|s| s.keeps(&bound)).map(|s| s.process).collect();
            let owner: Vec<usize> =
                shares.iter().filter(|s| s.local_owner(&node).is_some()).map(|s| s.process).collect();
            assert_eq!(feeders, owner, "{node}: a pod is fed by its node's process");
            assert_eq!(shares.iter().filter(|s| s.keeps(&pending)).count(), 1);
            for s in &shares {
                assert_eq!(s.keeps_pod(Some(("web", &format!("p{i}"), Some(&node)))), s.keeps(&bound));
                assert_eq!(s.keeps_pod(Some(("web", &format!("p{i}"), None))), s.keeps(&pending));
            }
        }
        let ns =
            MetaRecord::Namespace { name: Name::new("web"), meta: NamespaceMeta { uid: Name::new("u") } };
        let feeders: Vec<usize> = shares.iter().filter(|s| s.keeps(&ns)).map(|s| s.process).collect();
        assert_eq!(feeders, [0], "namespaces come from the leader");
        assert_eq!(shares.iter().filter(|s| s.keeps_pod(None)).map(|s| s.process).collect::<Vec<_>>(), [0]);
        assert!(Share::single(3).keeps(&pod("p", Some("n"))));
    }

    #[test]
    fn hostfiles_parse_or_name_the_bad_line() {
        let text = "# peers\n10.0.0.1:2101\n\nheapster-1.heapster:2101  # second\n";
        assert_eq!(parse_hostfile(text).unwrap(), ["10.0.0.1:2101", "heapster-1.heapster:2101"]);
        assert!(parse_hostfile("a:1\nb\n").unwrap_err().to_string().starts_with("line 2"));
        assert!(parse_hostfile("a:0\n").is_err());
        assert!(parse_hostfile("a b:1\n").is_err());
    }

    #[test]
    fn flags_are_checked() {
        let t = Duration::from_secs(1);
        assert_eq!(ClusterConfig::from_flags(1, 0, None, t).unwrap(), None);
        assert_eq!(ClusterConfig::from_flags(2, 2, None, t).unwrap_err().flag, "--process");
        assert_eq!(ClusterConfig::from_flags(2, 0, None, t).unwrap_err().flag, "--hostfile");
        let dir = std::env::temp_dir().join(format!("heapster-hostfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hosts");
        std::fs::write(&file, "127.0.0.1:1\n127.0.0.1:2\n").unwrap();
        let config = ClusterConfig::from_flags(2, 1, Some(&file), t).unwrap().unwrap();
        assert_eq!(config.addresses, ["127.0.0.1:1", "127.0.0.1:2"]);
        let err = ClusterConfig::from_flags(3, 1, Some(&file), t).unwrap_err();
        assert!(err.reason.contains("names 2 processes"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
