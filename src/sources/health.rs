//! Per-node scrape outcomes, so a failing node is logged when its state changes (failing,
//! failing differently, recovered), not every window.

use std::collections::BTreeMap;
use std::sync::Mutex;

use heapster_dataflows::Name;

/// The last outcome of each node, to log changes only.
#[derive(Default)]
pub struct Health {
    failing: Mutex<BTreeMap<Name, String>>,
}

impl Health {
    /// Records an outcome; logs it if it differs from the node's last one.
    pub fn record(&self, node: &Name, outcome: Result<(), &str>) {
        let mut failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Ok(()) => {
                if failing.remove(node).is_some() {
                    tracing::info!(node = %node, "node answers again");
                }
            }
            Err(error) => {
                if failing.get(node).map(String::as_str) != Some(error) {
                    tracing::warn!(node = %node, "scrape failed: {error}");
                    failing.insert(node.clone(), error.to_string());
                }
            }
        }
    }

    /// How many nodes are failing now.
    pub fn failing(&self) -> usize {
        self.failing.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_state_changes() {
        let health = Health::default();
        let node = Name::new("n1");
        health.record(&node, Err("HTTP 500"));
        health.record(&node, Err("HTTP 500"));
        assert_eq!(health.failing(), 1);
        health.record(&node, Ok(()));
        assert_eq!(health.failing(), 0);
    }
}
