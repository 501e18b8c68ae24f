//! The events source: list all events, then watch from the list's resourceVersion with
//! bookmarks; on 410 Gone list again, on a broken stream or an API error back off and resume.
//!
//! Events are handed to the graph in one-second ticks, each with the version the watch had
//! reached: the checkpoint records it once every sink has written the tick, so a restart
//! resumes the watch there (or lists again if it expired) and the dedup state drops what was
//! already exported.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{AsyncBufReadExt, StreamExt};
use heapster_dataflows::{Event, Time};

use super::events::{EventError, WatchEvent, parse_event_list, parse_watch_line};
use crate::backoff::Backoff;
use crate::bridge::{Feeds, WorkersGone};
use crate::sources::clock::now_ms;

/// Events are fed in ticks this long.
const TICK: Duration = Duration::from_secs(1);
/// A watch asks the API server to end it after this, and is then resumed.
const WATCH_TIMEOUT_SECONDS: u64 = 290;
/// Waits between failed attempts, from the start again after a success; a cap short enough that
/// the watch resumes within a few seconds of the API server's recovery.
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(4));

#[derive(Debug, thiserror::Error)]
pub enum EventSourceError {
    #[error(transparent)]
    WorkersGone(#[from] WorkersGone),
}

/// Where the watch stands and what it read since the last tick.
struct Progress {
    feeds: Feeds,
    pending: Vec<Event>,
    resource_version: Option<String>,
    last_tick: Time,
}

impl Progress {
    /// Hands the pending events to worker 0 and closes the tick at every worker.
    fn tick(&mut self) -> Result<(), EventSourceError> {
        let step = TICK.as_millis() as u64;
        let time = (now_ms() / step * step).max(self.last_tick + 1);
        self.last_tick = time;
        self.feeds.events(time, std::mem::take(&mut self.pending))?;
        self.feeds.events_tick(time, self.resource_version.clone())?;
        Ok(())
    }
}

/// Runs until `stop` is set.
pub async fn run(
    client: kube::Client,
    feeds: Feeds,
    resume_from: Option<String>,
    stop: Arc<AtomicBool>,
) -> Result<(), EventSourceError> {
    let mut progress = Progress { feeds, pending: Vec::new(), resource_version: resume_from, last_tick: 0 };
    if let Some(rv) = &progress.resource_version {
        tracing::info!(resource_version = %rv, "resuming the event watch from the checkpoint");
    }
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut backoff = BACKOFF.waits();
    let mut last_error: Option<String> = None;
    let report = |error: String, last_error: &mut Option<String>| {
        if last_error.as_deref() != Some(error.as_str()) {
            tracing::debug!("event watch: {error}; retrying with backoff");
            super::reach::failed(&error);
            *last_error = Some(error);
        }
    };

    while !stop.load(Ordering::Relaxed) {
        if progress.resource_version.is_none() {
            match list(&client).await {
                Ok((events, rv, warnings)) => {
                    for w in warnings {
                        tracing::warn!("{w}");
                    }
                    tracing::info!(
                        events = events.len(),
                        resource_version = rv.as_deref().unwrap_or("-"),
                        "listed events"
                    );
                    progress.pending.extend(events);
                    progress.resource_version = rv;
                    backoff.reset();
                }
                Err(e) => {
                    report(e.to_string(), &mut last_error);
                    if !wait(&mut ticker, &mut progress, backoff.next_wait(), &stop).await? {
                        break;
                    }
                    continue;
                }
            }
        }
        let Some(rv) = progress.resource_version.clone() else { continue };
        let path = format!(
            "/api/v1/events?watch=1&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds={WATCH_TIMEOUT_SECONDS}"
        );
        let stream = match http::Request::get(&path).body(Vec::new()) {
            Ok(request) => client.request_stream(request).await,
            Err(e) => {
                tracing::error!("event watch request: {e}");
                break;
            }
        };
        let stream = match stream {
            Ok(stream) => stream,
            Err(kube::Error::Api(status)) if status.code == 410 => {
                tracing::info!(resource_version = %rv, "the event watch's version expired (410); listing again");
                crate::telemetry::global().watch_restart("events");
                progress.resource_version = None;
                continue;
            }
            Err(e) => {
                report(crate::errors::error_chain(&e), &mut last_error);
                if !wait(&mut ticker, &mut progress, backoff.next_wait(), &stop).await? {
                    break;
                }
                continue;
            }
        };
        if last_error.take().is_some() {
            tracing::info!("event watch resumed");
            super::reach::answered();
        }
        backoff.reset();
        let mut lines = stream.lines();
        loop {
            tokio::select! {
                line = lines.next() => match line {
                    Some(Ok(line)) => {
                        if line.trim().is_empty() {
                            continue;
                        }
                        if !apply(&line, &mut progress) {
                            break;
                        }
                    }
                    Some(Err(e)) => {
                        report(format!("stream broken: {e}"), &mut last_error);
                        break;
                    }
                    None => break,
                },
                _ = ticker.tick() => {
                    progress.tick()?;
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
            }
        }
    }
    progress.tick()?;
    tracing::info!("event source stopped");
    Ok(())
}

/// Takes one watch line; false when the watch must be opened again.
fn apply(line: &str, progress: &mut Progress) -> bool {
    match parse_watch_line(line.as_bytes()) {
        Ok((event, warnings)) => {
            for w in warnings {
                tracing::warn!("{w}");
            }
            match event {
                WatchEvent::Added(e) | WatchEvent::Modified(e) => {
                    progress.resource_version = Some(e.resource_version().to_string());
                    progress.pending.push(e);
                    true
                }
                WatchEvent::Deleted(e) => {
                    progress.resource_version = Some(e.resource_version().to_string());
                    true
                }
                WatchEvent::Bookmark { resource_version } => {
                    progress.resource_version = Some(resource_version);
                    true
                }
                WatchEvent::Gone { message } => {
                    tracing::info!("the event watch expired (410: {message}); listing again");
                    crate::telemetry::global().watch_restart("events");
                    progress.resource_version = None;
                    false
                }
                WatchEvent::Error { code, message } => {
                    tracing::warn!(code = ?code, "the event watch ended with an error: {message}");
                    false
                }
            }
        }
        Err(e) => {
            // One bad event never stops the stream.
            tracing::warn!("event skipped: {e}");
            true
        }
    }
}

/// Why the events could not be listed (retried with backoff).
#[derive(Debug, thiserror::Error)]
enum ListError {
    #[error(transparent)]
    Request(#[from] http::Error),
    #[error("{}", crate::errors::error_chain(.0))]
    Api(#[from] kube::Error),
    #[error(transparent)]
    Parse(#[from] EventError),
}

async fn list(client: &kube::Client) -> Result<(Vec<Event>, Option<String>, Vec<String>), ListError> {
    let request = http::Request::get("/api/v1/events").body(Vec::new())?;
    let body = client.request_text(request).await?;
    let parsed = parse_event_list(body.as_bytes())?;
    Ok((parsed.events, parsed.resource_version, parsed.warnings))
}

/// Waits `delay`, still ticking; false when stopped.
async fn wait(
    ticker: &mut tokio::time::Interval,
    progress: &mut Progress,
    delay: Duration,
    stop: &AtomicBool,
) -> Result<bool, EventSourceError> {
    let deadline = tokio::time::Instant::now() + delay;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return Ok(!stop.load(Ordering::Relaxed)),
            _ = ticker.tick() => {
                progress.tick()?;
                if stop.load(Ordering::Relaxed) {
                    return Ok(false);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_at_a_few_seconds_and_reset_by_a_success() {
        let mut backoff = BACKOFF.waits();
        // Well over thirty seconds of failures: no wait ever exceeds the cap.
        let waits: Vec<Duration> = (0..20).map(|_| backoff.next_wait()).collect();
        assert!(waits.iter().sum::<Duration>() >= Duration::from_secs(30));
        assert!(waits[0] <= BACKOFF.base, "{waits:?}");
        let longest = waits.iter().max().copied().unwrap();
        assert!(longest <= Duration::from_secs(5), "waits grew to {longest:?}");
        assert!(longest > BACKOFF.base, "waits grow: {waits:?}");
        // After a success, a new outage starts from the shortest wait.
        backoff.reset();
        assert!(backoff.next_wait() <= BACKOFF.base);
    }
}
