//! The one backoff: the waits between retries of something failing (a sink's writes, a watch).
//!
//! Capped exponential with jitter, from [`backon`]: the wait after the n-th failure in a row is
//! between half and all of `base * 2^(n-1)`, at most `cap`, at random so that many writers do
//! not retry in step. Callers sleep themselves (a thread on a condition variable, a task on a
//! tokio timer), so this only hands out the waits.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// How the waits grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The longest first wait.
    pub base: Duration,
    /// The longest wait of all.
    pub cap: Duration,
}

impl Backoff {
    pub const fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff { base, cap }
    }

    /// The waits of one run of failures, first to last, without end.
    pub fn waits(&self) -> Waits {
        Waits { backoff: *self, iter: self.build() }
    }

    /// backon adds up to one wait again as jitter: built from half the bounds, the waits land
    /// between half and all of them.
    fn build(&self) -> ExponentialBackoff {
        ExponentialBuilder::default()
            .with_min_delay(self.base / 2)
            .with_max_delay(self.cap / 2)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
    }
}

/// The waits of one run of failures; [`Waits::reset`] after a success starts a new run.
#[derive(Debug)]
pub struct Waits {
    backoff: Backoff,
    iter: ExponentialBackoff,
}

impl Waits {
    /// The wait after one more failure.
    pub fn next_wait(&mut self) -> Duration {
        self.iter.next().unwrap_or(self.backoff.cap).min(self.backoff.cap)
    }

    /// A success: the next failure waits the shortest again.
    pub fn reset(&mut self) {
        self.iter = self.backoff.build();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_to_the_cap_with_jitter_and_restart_after_a_reset() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let mut waits = backoff.waits();
        for (failure, full) in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1000), (6, 1000)] {
            let d = waits.next_wait();
            let full = Duration::from_millis(full);
            assert!(d >= full / 2 && d <= full, "failure {failure}: {d:?}");
        }
        let longest = (0..40).map(|_| waits.next_wait()).max().unwrap();
        assert!(longest <= Duration::from_secs(1), "{longest:?}");
        waits.reset();
        let first = waits.next_wait();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100), "{first:?}");

        let spread: std::collections::HashSet<Duration> =
            (0..20).map(|_| backoff.waits().next_wait()).collect();
        assert!(spread.len() > 1, "jitter varies");
    }
}
