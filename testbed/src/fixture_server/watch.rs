//! Watch streams: one JSON event per line over a chunked response, as the apiserver sends them.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};

use super::http::{Body, ChannelBody, is_true};
use super::status::status;
use super::store::{Expired, View, bookmark_line};
use super::{FixtureStats, Shared};
use heapster::scenario::ApiList;

/// Answers `GET <list>?watch=1...`.
pub fn watch(
    shared: Arc<Shared>,
    list: ApiList,
    view: View,
    namespace: Option<String>,
    query: &HashMap<String, String>,
) -> Response<Body> {
    let from = match query.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(rv) => match rv.parse::<u64>() {
            Ok(rv) => Some(rv),
            Err(_) => {
                let message = format!("invalid resource version {rv:?}");
                return status(StatusCode::BAD_REQUEST, "BadRequest", &message);
            }
        },
    };
    let send_initial = is_true(query.get("sendInitialEvents"));
    let deadline = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|&t| t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t));
    let changes = shared.changes.subscribe();
    let (tx, body) = ChannelBody::channel(64);
    // Where the stream starts is fixed here, before the client has the headers, so that every
    // change after it has them reaches it.
    let mut first = Vec::new();
    let stream = {
        let state = shared.state();
        let ns = namespace.as_deref();
        let mut position = state.store.rv();
        match from {
            Some(rv) if !send_initial => match state.store.events_after(list, view, ns, rv) {
                Ok(_) => position = rv,
                Err(expired) => first.push(Line::Expired(expired.line())),
            },
            _ => {
                first.extend(state.store.initial_lines(list, view, ns).into_iter().map(Line::Event));
                if send_initial {
                    first.push(Line::Bookmark(bookmark_line(list, view, position, true)));
                }
            }
        }
        WatchStream {
            shared: shared.clone(),
            list,
            view,
            namespace,
            bookmarks: is_true(query.get("allowWatchBookmarks")),
            deadline,
            position,
            gone_epoch: state.gone_epoch,
            drop_epoch: state.drop_epoch,
            window: state.clock.window(),
            changes,
            tx,
        }
    };
    shared.count(|s| s.watches_opened += 1);
    tokio::spawn(stream.run(first));
    let mut response = Response::new(body);
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Bytes of watch lines sent as one chunk, at most (plus one line).
const CHUNK: usize = 256 * 1024;

enum Line {
    Event(Bytes),
    Bookmark(Bytes),
    Expired(Bytes),
}

impl Line {
    fn count(&self, stats: &mut FixtureStats) {
        match self {
            Line::Event(_) => stats.watch_events += 1,
            Line::Bookmark(_) => stats.bookmarks += 1,
            Line::Expired(_) => stats.watches_expired += 1,
        }
    }

    fn into_bytes(self) -> Bytes {
        match self {
            Line::Event(b) | Line::Bookmark(b) | Line::Expired(b) => b,
        }
    }
}

/// What the current state asks of a stream.
enum Next {
    Send(Vec<Line>),
    /// Send these, then end the stream cleanly.
    End(Vec<Line>),
    /// Cut the connection without the final chunk.
    Cut,
}

struct WatchStream {
    shared: Arc<Shared>,
    list: ApiList,
    view: View,
    namespace: Option<String>,
    bookmarks: bool,
    deadline: Option<Instant>,
    /// Every event up to this RV was sent.
    position: u64,
    gone_epoch: u64,
    drop_epoch: u64,
    /// The window when the stream last looked, for bookmarks on window changes.
    window: usize,
    changes: watch::Receiver<u64>,
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
}

impl WatchStream {
    async fn run(mut self, first: Vec<Line>) {
        let expired = first.iter().any(|l| matches!(l, Line::Expired(_)));
        if !self.send(first).await || expired {
            return;
        }
        let interval = self.shared.bookmark_interval;
        let mut ticks = tokio::time::interval_at(Instant::now() + interval, interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            self.changes.borrow_and_update();
            match self.look() {
                Next::Send(lines) => {
                    if !self.send(lines).await {
                        return;
                    }
                }
                Next::End(lines) => {
                    self.send(lines).await;
                    return;
                }
                Next::Cut => {
                    self.shared.count(|s| s.watches_dropped += 1);
                    let cut = io::Error::new(io::ErrorKind::ConnectionAborted, "watch dropped by fault");
                    let _ = self.tx.send(Err(cut)).await;
                    return;
                }
            }
            tokio::select! {
                changed = self.changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = ticks.tick(), if self.bookmarks => {
                    let bookmark = bookmark_line(self.list, self.view, self.position, false);
                    if !self.send(vec![Line::Bookmark(bookmark)]).await {
                        return;
                    }
                }
                _ = sleep_until(self.deadline) => return,
                _ = self.tx.closed() => return,
            }
        }
    }

    /// Faults first, then the events since the last look, then a bookmark if the window moved.
    fn look(&mut self) -> Next {
        let state = self.shared.state();
        if state.gone_epoch != self.gone_epoch {
            let expired =
                Expired { requested: self.position, compacted_through: state.store.compacted_through() };
            return Next::End(vec![Line::Expired(expired.line())]);
        }
        if state.drop_epoch != self.drop_epoch {
            return Next::Cut;
        }
        match state.store.events_after(self.list, self.view, self.namespace.as_deref(), self.position) {
            Err(expired) => Next::End(vec![Line::Expired(expired.line())]),
            Ok(events) => {
                let mut lines: Vec<Line> = events.into_iter().map(Line::Event).collect();
                self.position = state.store.rv();
                if self.bookmarks && state.clock.window() != self.window {
                    lines.push(Line::Bookmark(bookmark_line(self.list, self.view, self.position, false)));
                }
                self.window = state.clock.window();
                Next::Send(lines)
            }
        }
    }

    /// Sends lines in chunks of about [`CHUNK`] bytes, so that a burst streams as it is
    /// written rather than after one huge copy; false once the client is gone.
    async fn send(&self, lines: Vec<Line>) -> bool {
        if lines.is_empty() {
            return true;
        }
        self.shared.count(|s| lines.iter().for_each(|l| l.count(s)));
        let mut chunk = Vec::new();
        for line in lines {
            chunk.extend_from_slice(&line.into_bytes());
            if chunk.len() >= CHUNK
                && self.tx.send(Ok(Bytes::from(std::mem::take(&mut chunk)))).await.is_err()
            {
                return false;
            }
        }
        chunk.is_empty() || self.tx.send(Ok(Bytes::from(chunk))).await.is_ok()
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
