//! How a replay keeps time: as fast as the graph takes windows, or at the recorded pace, and
//! always ready to stop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use heapster_dataflows::Time;

use crate::bridge::WorkersGone;
use crate::scenario::Scenario;

/// How fast windows follow each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pace {
    /// As fast as the graph takes them.
    Fast,
    /// At the recorded resolution.
    Real,
}

/// The clock of one replay.
pub(super) struct Pacer {
    pace: Pace,
    started: Instant,
    /// The first window's time: the replay's zero.
    first: Time,
}

impl Pacer {
    pub(super) fn new(pace: Pace, scenario: &Scenario) -> Pacer {
        let first = scenario.windows.first().map_or(0, |w| w.time);
        Pacer { pace, started: Instant::now(), first }
    }

    /// Waits until the window ending at `time` is due; false when `stop` is set.
    pub(super) fn wait(&self, time: Time, stop: &AtomicBool) -> bool {
        if self.pace == Pace::Real {
            sleep_until(self.started + Duration::from_millis(time.saturating_sub(self.first)), stop);
        }
        !stop.load(Ordering::Relaxed)
    }
}

/// How often a paced replay looks at the stop flag while it waits for a window.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// Sleeps until `due`, or until `stop` is set: a stop never waits for the next window.
fn sleep_until(due: Instant, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let Some(left) = due.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else {
            return;
        };
        std::thread::sleep(left.min(STOP_CHECK));
    }
}

/// Whether the workers stopped (logged: a replay ends early only then or when told to stop).
pub(crate) fn stopped(sent: Result<(), WorkersGone>) -> bool {
    sent.is_err_and(|_| {
        tracing::warn!("workers stopped before the replay ended");
        true
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paced_wait_ends_when_stopped() {
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let setter = {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                stop.store(true, Ordering::Relaxed);
            })
        };
        let started = Instant::now();
        sleep_until(started + Duration::from_secs(600), &stop);
        // Far from the 600 s it was due to wait, however slow the machine.
        assert!(started.elapsed() < Duration::from_secs(60), "{:?}", started.elapsed());
        setter.join().unwrap();
        // A due time already past returns at once, stopped or not.
        sleep_until(Instant::now(), &AtomicBool::new(false));
    }
}
