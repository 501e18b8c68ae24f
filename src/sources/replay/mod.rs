//! `replay:PATH`: a recorded scenario fed window by window, as the live source would.
//!
//! Deterministic: the same scenario gives the same windows, whatever the number of workers or
//! processes. The scenario's kind picks the replay:
//!
//! - [`kubernetes`]: API lists and kubelet summaries.
//! - [`cadvisor`]: hosts files and cAdvisor bodies.
//! - [`config`]: the `replay:` URI, the errors and the report.
//! - [`pace`]: fast, or at the recorded pace.

pub mod cadvisor;
pub mod config;
pub mod kubernetes;
pub mod pace;

use std::sync::atomic::AtomicBool;

pub use config::{ReplayConfig, ReplayError, ReplayReport};
pub use pace::Pace;

use crate::bridge::Feeds;
use crate::cluster::Share;
use crate::scenario::Scenario;

pub struct Replay {
    scenario: Scenario,
    pace: Pace,
    schedulable_label: bool,
}

impl Replay {
    /// The scenario, for a process with `share` of the cluster's workers: it replays only the
    /// nodes its feeds own.
    pub fn open(config: &ReplayConfig, share: Share) -> Result<Replay, ReplayError> {
        let scenario = Scenario::open(&config.path)?;
        if share.processes > 1 && scenario.is_cadvisor() {
            return Err(ReplayError::CadvisorInCluster(scenario.dir.clone()));
        }
        Ok(Replay { scenario, pace: config.pace, schedulable_label: config.schedulable_label })
    }

    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// Feeds every window to the workers; stops early when `stop` is set.
    pub fn run(&self, feeds: &Feeds, stop: &AtomicBool) -> Result<ReplayReport, ReplayError> {
        if self.scenario.is_cadvisor() {
            cadvisor::run(&self.scenario, self.pace, feeds, stop)
        } else {
            kubernetes::run(&self.scenario, self.pace, self.schedulable_label, feeds, stop)
        }
    }
}
