//! The fixture's clock: which recorded window is current.
//!
//! By default it moves on when every Ready node of the current window has asked for its summary,
//! not on a timer: the collector scrapes all nodes at the start of its window, so its window k
//! reads body k however slow the machine is, and the objects of window k+1 arrive during its
//! window k. A collector that scrapes nothing (events only) gets [`run_timer`] instead.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::Shared;

/// Enters the next window `every` after the current one was entered (by the timer or by a forced
/// advance), until the last window.
pub(super) async fn run_timer(shared: Arc<Shared>, every: Duration) {
    let mut changes = shared.changes.subscribe();
    loop {
        let due = {
            let state = shared.state();
            if state.clock.is_last() {
                return;
            }
            state.entered + every
        };
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {
                let mut state = shared.state();
                // A forced advance may have moved the window (and its deadline) meanwhile.
                if state.entered + every <= tokio::time::Instant::now() {
                    shared.advance_locked(&mut state);
                }
            }
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

#[derive(Debug)]
pub struct Clock {
    window: usize,
    windows: usize,
    /// Ready nodes of the current window's node list.
    ready: BTreeSet<String>,
    /// Nodes that asked for their summary since the current window began.
    scraped: BTreeSet<String>,
}

impl Clock {
    pub fn new(windows: usize, ready: BTreeSet<String>) -> Clock {
        Clock { window: 0, windows, ready, scraped: BTreeSet::new() }
    }

    pub fn window(&self) -> usize {
        self.window
    }

    pub fn windows(&self) -> usize {
        self.windows
    }

    pub fn is_last(&self) -> bool {
        self.window + 1 >= self.windows
    }

    /// A summary request arrived from `node`: returns the window whose body it gets, and whether
    /// the clock should now advance. A window with no Ready node never advances by itself.
    pub fn scrape(&mut self, node: &str) -> (usize, bool) {
        self.scraped.insert(node.to_string());
        let complete = !self.ready.is_empty() && self.ready.is_subset(&self.scraped);
        (self.window, complete && !self.is_last())
    }

    /// Enters the next window, whose node list has these Ready nodes. No-op on the last window.
    pub fn enter_next(&mut self, ready: BTreeSet<String>) -> bool {
        if self.is_last() {
            return false;
        }
        self.window += 1;
        self.ready = ready;
        self.scraped.clear();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn advances_once_every_ready_node_was_scraped() {
        let mut clock = Clock::new(3, set(&["a", "b"]));
        assert_eq!(clock.scrape("a"), (0, false));
        assert_eq!(clock.scrape("a"), (0, false));
        assert_eq!(clock.scrape("not-ready"), (0, false));
        assert_eq!(clock.scrape("b"), (0, true));
        assert!(clock.enter_next(set(&["b"])));
        assert_eq!(clock.window(), 1);
        // Scrapes of the previous window do not count.
        assert_eq!(clock.scrape("a"), (1, false));
        assert_eq!(clock.scrape("b"), (1, true));
        assert!(clock.enter_next(set(&["b"])));
        // The last window stays.
        assert_eq!(clock.scrape("b"), (2, false));
        assert!(!clock.enter_next(set(&["b"])));
        assert_eq!(clock.window(), 2);
    }

    #[test]
    fn a_window_without_ready_nodes_waits_for_a_forced_advance() {
        let mut clock = Clock::new(2, BTreeSet::new());
        assert_eq!(clock.scrape("a"), (0, false));
        assert!(clock.enter_next(BTreeSet::new()));
        assert_eq!(clock.window(), 1);
    }
}
