//! The wall clock the collector's windows and ticks are counted on. It imports nothing of the
//! collector, so that anything (telemetry, the API) may read it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, in ms since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Sleeps until `deadline_ms`, waking early when `stop` is set. Returns false if stopped.
pub async fn sleep_until(deadline_ms: u64, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = now_ms();
        if now >= deadline_ms {
            return true;
        }
        tokio::time::sleep(Duration::from_millis((deadline_ms - now).min(200))).await;
    }
}
