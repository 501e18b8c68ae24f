//! What a sink counts, read by the collector's own metrics and its exit line.

use std::sync::atomic::AtomicU64;

/// Counters of one sink.
#[derive(Debug, Default)]
pub struct SinkStats {
    pub windows: AtomicU64,
    pub points: AtomicU64,
    pub dropped_windows: AtomicU64,
    pub dropped_points: AtomicU64,
    pub errors: AtomicU64,
    pub events: AtomicU64,
    pub dropped_events: AtomicU64,
    /// One past the last events tick written in full (0: none yet). Checkpoints never go past
    /// what every sink has written.
    pub events_written_through: AtomicU64,
    /// Sends tried again after a failure that may pass.
    pub retries: AtomicU64,
    /// Points never sent because the backend cannot store them (NaN, a series key too long).
    pub skipped_points: AtomicU64,
    /// Entities whose points were sent with their `labels` tag shortened to fit.
    pub shortened: AtomicU64,
    /// Windows this sink is done with: written, encoded into its buffer, failed or dropped. A
    /// replay waits on it so that one window is in memory at a time.
    pub windows_handled: AtomicU64,
}
