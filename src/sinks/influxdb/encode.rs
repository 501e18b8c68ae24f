//! Windows and event batches as line-protocol chunks of bounded size.

use bytes::Bytes;
use heapster_dataflows::Event;

use super::events::EventEncoder;
use super::line_protocol::{Cursor, EncodeStats, LineEncoder};
use crate::batch::Window;
use crate::sinks::queue::{Chunk, Encode, Encoded};

/// At most this many points per `/write` request, as Heapster sent.
pub const MAX_POINTS_PER_WRITE: usize = 10_000;
/// An event chunk is closed once it holds this many bytes: events carry their JSON and may be
/// large, and InfluxDB refuses bodies over its `max-body-size` (25 MB by default).
pub const MAX_EVENT_BYTES_PER_WRITE: usize = 4 << 20;

/// Lines to write, produced one chunk at a time so that memory stays bounded.
pub(super) trait ChunkSource {
    /// Appends the next chunk to `out` and says what it holds; `None` when nothing is left.
    fn next_chunk(&mut self, out: &mut Vec<u8>) -> Option<EncodeStats>;
}

/// A metric window's points.
pub(super) struct MetricChunks<'a> {
    pub(super) encoder: &'a mut LineEncoder,
    pub(super) window: Window<'a>,
    pub(super) cursor: Cursor,
}

impl ChunkSource for MetricChunks<'_> {
    fn next_chunk(&mut self, out: &mut Vec<u8>) -> Option<EncodeStats> {
        if self.cursor.is_done(self.window.batch()) {
            return None;
        }
        let stats =
            self.encoder.encode_chunk(self.window.batch(), &mut self.cursor, MAX_POINTS_PER_WRITE, out);
        self.cursor.release(&mut self.window);
        Some(stats)
    }
}

/// Events' points: at most [`MAX_POINTS_PER_WRITE`] and about [`MAX_EVENT_BYTES_PER_WRITE`] a
/// chunk.
pub(super) struct EventChunks<'a> {
    pub(super) encoder: &'a EventEncoder,
    pub(super) events: &'a [&'a Event],
    pub(super) next: usize,
}

impl ChunkSource for EventChunks<'_> {
    fn next_chunk(&mut self, out: &mut Vec<u8>) -> Option<EncodeStats> {
        if self.next >= self.events.len() {
            return None;
        }
        let mut stats = EncodeStats::default();
        while let Some(event) = self.events.get(self.next)
            && stats.written < MAX_POINTS_PER_WRITE
            && (stats.written == 0 || out.len() < MAX_EVENT_BYTES_PER_WRITE)
        {
            self.next += 1;
            match self.encoder.encode(event, out) {
                Ok(()) => stats.written += 1,
                // Selected events all have a time; counted should that ever change.
                Err(_) => stats.skipped += 1,
            }
        }
        Some(stats)
    }
}

/// Encodes windows and events as line-protocol chunks of at most [`MAX_POINTS_PER_WRITE`] points.
pub struct InfluxEncode {
    pub(super) encoder: LineEncoder,
    pub(super) events: EventEncoder,
}

impl Encode for InfluxEncode {
    fn metrics(&mut self, window: Window<'_>, emit: &mut dyn FnMut(Chunk)) -> Encoded {
        let before = self.encoder.shortened();
        let merged = self.encoder.options().with_fields;
        let mut chunks = MetricChunks { encoder: &mut self.encoder, window, cursor: Cursor::default() };
        let skipped = if merged {
            emit_all(&mut super::fields::MergedChunks::new(chunks), emit)
        } else {
            emit_all(&mut chunks, emit)
        };
        Encoded { skipped, shortened: self.encoder.shortened() - before }
    }

    fn events(&mut self, events: &[Event], emit: &mut dyn FnMut(Chunk)) -> Encoded {
        let selection = self.events.select(events);
        let mut chunks = EventChunks { encoder: &self.events, events: &selection.events, next: 0 };
        let skipped = emit_all(&mut chunks, emit) + selection.unwritable as u64;
        Encoded { skipped, shortened: 0 }
    }
}

/// Hands every chunk to `emit`; returns the points skipped.
fn emit_all(chunks: &mut impl ChunkSource, emit: &mut dyn FnMut(Chunk)) -> u64 {
    let mut capacity = 0;
    let mut skipped = 0;
    loop {
        let mut body = Vec::with_capacity(capacity);
        let Some(stats) = chunks.next_chunk(&mut body) else { break };
        skipped += stats.skipped as u64;
        if stats.written > 0 {
            capacity = capacity.max(body.len());
            emit(Chunk { body: Bytes::from(body), points: stats.written as u64 });
        }
    }
    skipped
}
