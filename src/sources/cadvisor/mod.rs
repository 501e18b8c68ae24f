//! The cAdvisor sources: machines running cAdvisor without Kubernetes' API, found in a hosts
//! file (`cadvisor:external`) or in a CoreOS fleet cluster (`cadvisor:coreos`).
//!
//! - [`config`]: the `cadvisor:` URI.
//! - [`hosts`]: Heapster's hosts file, and the watcher that re-reads it when it changes.
//! - [`fleet`]: machines from fleet's registry in etcd (v2 keys API) or from fleet's HTTP API.
//! - [`scrape`]: `/api/v1.3/subcontainers/` and `/api/v1.3/machine` requests.
//! - [`parse`]: cAdvisor bodies into metric sets.
//! - [`source`]: the window loop feeding the workers.
//!
//! Recorded cAdvisor scenarios are replayed by [`crate::sources::replay::cadvisor`] and written
//! by [`crate::record::cadvisor`].

pub mod config;
pub mod fleet;
pub mod hosts;
pub mod parse;
pub mod scrape;
pub mod source;
mod wire;

use std::collections::BTreeMap;

use heapster_dataflows::model::Interner;
use heapster_dataflows::{MetricSet, Name};
use serde::{Deserialize, Serialize};

use crate::bridge::{Fetched, Parsed};
use crate::sources::{NodeTarget, ScrapeError};

/// A machine to scrape, as Heapster's hosts file lists it. `ID` and `Labels` are this
/// collector's additions: fleet's machine ID and metadata, so that a scenario recorded from
/// fleet replays with the same labels.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Host {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "IP")]
    pub ip: String,
    #[serde(rename = "ID", default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(rename = "Labels", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Heapster's hosts file: `{"Items": [{"Name": ..., "IP": ...}, ...]}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostList {
    #[serde(rename = "Items", default)]
    pub items: Vec<Host>,
}

impl HostList {
    /// Sorted by name, one host per name (the last listed wins), nameless ones dropped.
    pub fn normalized(mut self) -> HostList {
        self.items.retain(|h| !h.name.is_empty());
        self.items.reverse();
        self.items.sort_by(|a, b| a.name.cmp(&b.name));
        self.items.dedup_by(|a, b| a.name == b.name);
        self
    }
}

/// A host as the workers see it: its node identity and its metadata as one `labels` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CadvisorTarget {
    pub target: NodeTarget,
    /// `k:v` pairs sorted and joined by `,` (Heapster's `labels` label); none when empty.
    pub labels: Option<Name>,
}

impl Host {
    pub fn target(&self) -> CadvisorTarget {
        let labels = (!self.labels.is_empty()).then(|| {
            let joined: Vec<String> = self.labels.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            Name::from(joined.join(","))
        });
        CadvisorTarget {
            target: NodeTarget {
                name: Name::new(&self.name),
                hostname: Name::new(&self.name),
                host_id: Name::new(&self.id),
                schedulable: true,
                // Heapster's cAdvisor sources never tagged nodes schedulable.
                schedulable_label: false,
                ready: true,
                address: (!self.ip.is_empty()).then(|| self.ip.clone()),
            },
            labels,
        }
    }
}

/// One host's answer for one window: the subcontainers body, and the machine body when it was
/// read (capacity changes rarely; it is asked for once and after failures).
#[derive(Debug)]
pub struct CadvisorScrape {
    pub host: CadvisorTarget,
    pub machine: Option<Vec<u8>>,
    pub body: Result<Vec<u8>, ScrapeError>,
}

impl Fetched for CadvisorScrape {
    fn node(&self) -> &Name {
        &self.host.target.name
    }

    /// cAdvisor stamps every sample, so the window's time is not needed.
    fn parse(self: Box<Self>, _window_ns: i64, interner: &mut Interner, out: &mut Vec<MetricSet>) -> Parsed {
        // The source logged a failure when the host's state changed.
        let Ok(body) = self.body else { return Parsed::Unfetched };
        let machine = self.machine.as_deref();
        let bytes = (body.len() + machine.map_or(0, <[u8]>::len)) as u64;
        let bodies = parse::Bodies { subcontainers: &body, machine };
        let host = &self.host;
        match parse::parse_cadvisor(bodies, &host.target, host.labels.as_ref(), interner, out) {
            Ok(report) => Parsed::Sets { bytes, warnings: report.warnings },
            Err(error) => Parsed::Rejected { bytes, what: "cAdvisor body", error: Box::new(error) },
        }
    }
}
