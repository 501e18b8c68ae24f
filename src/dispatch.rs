//! The collector thread: complete windows and event ticks from the workers, out to every sink,
//! and the event checkpoint moved forward as far as every sink has written.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use heapster_dataflows::Event;

use crate::batch::EventBatch;
use crate::bridge::{Collected, Collector, Completed, Stats};
use crate::checkpoint::Checkpointer;
use crate::sinks::{SinkHandle, SinkInput, SinkStats};

/// How often acknowledgements are looked at when the workers are quiet while a sink still has
/// work queued or events await their checkpoint. With nothing pending the thread sleeps until the
/// next message: an idle collector wakes for its windows only.
const ACK_POLL: Duration = Duration::from_millis(500);

/// Runs until the workers are done; then flushes the sinks and saves the last checkpoint.
pub fn dispatch(
    collected: Receiver<Collected>,
    workers: usize,
    sinks: Vec<SinkHandle>,
    stats: Arc<Stats>,
    mut checkpointer: Option<Checkpointer>,
) -> Vec<(String, Arc<SinkStats>)> {
    let mut collector = Collector::new(workers);
    stats.in_sinks.watch(sinks.iter().map(|s| Arc::clone(&s.stats)).collect());
    let mut unwritten: VecDeque<EventBatch> = VecDeque::new();
    let mut pending = false;
    loop {
        let received = if pending {
            collected.recv_timeout(ACK_POLL)
        } else {
            collected.recv().map_err(|_| RecvTimeoutError::Disconnected)
        };
        match received {
            Ok(message) => {
                for completed in collector.absorb(message) {
                    match completed {
                        Completed::Metrics(batch) => {
                            stats.add_window(&batch);
                            crate::telemetry::global().window_complete(&batch);
                            // The last sink gets the collector's own reference: a lone sink
                            // then owns the window and frees it as it writes.
                            let batch = Arc::new(batch);
                            stats.in_sinks.hand();
                            if let Some((last, others)) = sinks.split_last() {
                                for sink in others {
                                    sink.send(SinkInput::Metrics(Arc::clone(&batch)));
                                }
                                last.send(SinkInput::Metrics(batch));
                            }
                        }
                        Completed::Cancelled { .. } => {
                            stats.cancelled_windows.fetch_add(1, Ordering::Relaxed);
                        }
                        Completed::Table(table) => {
                            let table = Arc::new(table);
                            for sink in &sinks {
                                sink.send(SinkInput::Table(Arc::clone(&table)));
                            }
                        }
                        Completed::Events(batch) => {
                            // The checkpointer needs only each event's state: the events
                            // themselves are freed once every sink has encoded them.
                            if checkpointer.is_some() {
                                unwritten.push_back(states_of(&batch));
                            }
                            let batch = Arc::new(batch);
                            for sink in &sinks {
                                sink.send(SinkInput::Events(Arc::clone(&batch)));
                            }
                        }
                    }
                }
                stats.in_sinks.passed(collector.frontier());
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        for sink in &sinks {
            crate::telemetry::global().sink_queue_depth(&sink.name, sink.queue_depth());
        }
        let stats: Vec<Arc<SinkStats>> = sinks.iter().map(|s| Arc::clone(&s.stats)).collect();
        acknowledge(&mut unwritten, &stats, checkpointer.as_mut());
        pending = !unwritten.is_empty()
            || checkpointer.as_ref().is_some_and(Checkpointer::is_dirty)
            || sinks.iter().any(|s| s.queue_depth() > 0);
    }
    let finished: Vec<(String, Arc<SinkStats>)> =
        sinks.into_iter().map(|s| (s.name.clone(), s.finish())).collect();
    let stats: Vec<Arc<SinkStats>> = finished.iter().map(|(_, s)| Arc::clone(s)).collect();
    acknowledge(&mut unwritten, &stats, checkpointer.as_mut());
    if let Some(checkpointer) = checkpointer
        && let Err(e) = checkpointer.finish()
    {
        tracing::error!("the event checkpoint could not be saved: {e}");
    }
    finished
}

/// A batch with only what the checkpoint keeps of each event: its state.
fn states_of(batch: &EventBatch) -> EventBatch {
    let events = batch
        .events
        .iter()
        .map(|e| Event {
            uid: e.uid.clone(),
            count: e.count,
            last_timestamp: e.last_timestamp,
            ..Event::default()
        })
        .collect();
    EventBatch { time: batch.time, events, resource_version: batch.resource_version.clone() }
}

/// Hands the checkpointer every batch all sinks have written, in order, and saves if due.
fn acknowledge(
    unwritten: &mut VecDeque<EventBatch>,
    sinks: &[Arc<SinkStats>],
    checkpointer: Option<&mut Checkpointer>,
) {
    let Some(checkpointer) = checkpointer else { return };
    let written =
        sinks.iter().map(|s| s.events_written_through.load(Ordering::Relaxed)).min().unwrap_or(u64::MAX);
    while let Some(batch) = unwritten.front() {
        if batch.time >= written {
            break;
        }
        checkpointer.exported(&batch.events);
        if let Some(rv) = &batch.resource_version {
            checkpointer.resource_version(rv);
        }
        unwritten.pop_front();
    }
    if let Err(e) = checkpointer.tick() {
        tracing::error!("the event checkpoint could not be saved (will retry): {e}");
    }
}
