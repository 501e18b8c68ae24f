//! What every sink is: a parsed `--sink` config that names itself and opens either a local
//! writer or the two halves of [`super::queue`], and what the run hands it.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use heapster_dataflows::Event;

use super::queue::Queued;
use crate::batch::Window;

/// A sink, once its `--sink` URI is parsed.
pub trait Sink: fmt::Debug + Send + Sync + 'static {
    /// How logs and metrics name the sink; never with a secret.
    fn name(&self) -> String;

    /// Opens the sink's writer. Fails only when the sink can never work (a file that cannot be
    /// created, bad credentials): a backend that is not up yet is the queue's to retry.
    fn open(&self, context: &SinkContext) -> Result<Opened, SinkError>;

    /// Whether the sink prints the whole cluster's table of each window ([`LocalWrite::table`]):
    /// the graph gathers that table only when some sink wants it.
    fn wants_table(&self) -> bool {
        false
    }
}

/// An opened sink, in one of the two ways sinks run.
pub enum Opened {
    /// Written on the sink's thread as inputs come (the terminal, a file): its failures do not
    /// pass with time, so nothing is retried.
    Local(Box<dyn LocalWrite>),
    /// Encoded into the byte-bounded buffer and delivered from it, retried until the backend
    /// takes it.
    Queued(Queued),
}

/// A local sink's writer.
pub trait LocalWrite: Send {
    fn metrics(&mut self, window: Window<'_>) -> io::Result<()>;

    /// [`LocalWrite::metrics`], and the points the window held, written or not (the sink's
    /// counters). Counting first is a pass over every set of the window, each elsewhere on the
    /// heap: a writer that counts as it encodes says so instead.
    fn metrics_counted(&mut self, window: Window<'_>) -> (u64, io::Result<()>) {
        let points = window.batch().point_count() as u64;
        (points, self.metrics(window))
    }

    /// A metrics-only sink leaves events alone.
    fn events(&mut self, _events: &[Event]) -> io::Result<()> {
        Ok(())
    }

    /// The whole cluster's log table of a window (the log sink's; others leave it alone).
    fn table(&mut self, _table: &crate::batch::table::WindowTable) -> io::Result<()> {
        Ok(())
    }
}

/// Why a sink could not open.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The backend's own error: bad credentials, an address that cannot be used.
    #[error(transparent)]
    Backend(Box<dyn std::error::Error + Send + Sync>),
}

/// A parsed `--sink` value.
#[derive(Clone, Debug)]
pub struct SinkConfig(pub(super) Arc<dyn Sink>);

impl SinkConfig {
    pub fn new(sink: impl Sink) -> SinkConfig {
        SinkConfig(Arc::new(sink))
    }

    pub fn name(&self) -> String {
        self.0.name()
    }

    pub fn wants_table(&self) -> bool {
        self.0.wants_table()
    }

    pub fn sink(&self) -> &dyn Sink {
        &*self.0
    }
}

/// What a sink needs from the run besides its URI.
#[derive(Clone, Debug, Default)]
pub struct SinkContext {
    /// `--state_dir`: the disk buffers live under it.
    pub state_dir: Option<PathBuf>,
    /// Set when the collector is told to stop.
    pub stop: Arc<AtomicBool>,
}
