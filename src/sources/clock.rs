//! The wall clock the collector's windows and ticks are counted on. It imports nothing of the
//! collector, so that anything (telemetry, the API) may read it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, in ms since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Wakes every task waiting in [`sleep_until`] or [`stopped`] when a stop is requested, so that
/// none has to poll its flag often: an idle collector's tasks sleep until their next window.
static STOP_REQUESTED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// How often a waiter looks at its flag all the same (a flag set without [`request_stop`]), and
/// the longest sleep between two readings of the wall clock.
const STOP_CHECK: Duration = Duration::from_secs(1);

/// Sets `stop` and wakes every task waiting on a stop flag.
pub fn request_stop(stop: &AtomicBool) {
    stop.store(true, Ordering::Relaxed);
    STOP_REQUESTED.notify_waiters();
}

/// Returns once `stop` is set.
pub async fn stopped(stop: &AtomicBool) {
    loop {
        let notified = STOP_REQUESTED.notified();
        tokio::pin!(notified);
        // Registered before the flag is read, so a stop between the two is not missed.
        notified.as_mut().enable();
        if stop.load(Ordering::Relaxed) {
            return;
        }
        tokio::select! {
            () = notified => {}
            () = tokio::time::sleep(STOP_CHECK) => {}
        }
    }
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
        // The wall clock is read again at least every `STOP_CHECK`: windows are aligned to it.
        let nap = Duration::from_millis(deadline_ms - now).min(STOP_CHECK);
        tokio::select! {
            () = tokio::time::sleep(nap) => {}
            () = stopped(stop) => return false,
        }
    }
}
