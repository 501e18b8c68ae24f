//! `file:PATH`: InfluxDB line protocol appended to a file, window after window.
//!
//! The same bytes the InfluxDB sink would send, so a run can be checked byte for byte against a
//! golden file or loaded into InfluxDB later. `file:/dev/null` measures encoding alone.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use super::influxdb::line_protocol::{LineEncoder, LineOptions};
use super::sink::{LocalWrite, Opened, Sink, SinkContext, SinkError};
use crate::batch::Window;
use crate::config::{ConfigError, UriOptions};

/// Points encoded at a time: bounds the encoder's buffer, whatever the window's size. A few
/// hundred kB with long label sets (ten times that kept a 12 MB buffer alive between windows).
const CHUNK_POINTS: usize = 1_000;

/// The file writer's own buffer. Smaller than a full chunk, so that a full chunk goes to the
/// file in one write instead of being copied through it; it gathers only short last chunks.
const WRITE_BUFFER: usize = 64 << 10;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileConfig {
    pub path: PathBuf,
    pub with_fields: bool,
    pub cluster_name: String,
}

impl FileConfig {
    /// `file:PATH[?withfields=false&cluster_name=default]`.
    pub fn from_uri(uri: &str) -> Result<FileConfig, ConfigError> {
        let rest = uri.strip_prefix("file:").unwrap_or(uri);
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        if path.is_empty() {
            return Err(ConfigError::new("--sink", uri, "expected file:PATH"));
        }
        let mut opts = UriOptions::parse("--sink", uri, query);
        let with_fields = opts.bool_or("withfields", false)?;
        let cluster_name = opts.string_or("cluster_name", "default");
        opts.finish("file sink", &["withfields", "cluster_name"])?;
        Ok(FileConfig { path: PathBuf::from(path), with_fields, cluster_name })
    }
}

impl Sink for FileConfig {
    fn name(&self) -> String {
        format!("file:{}", self.path.display())
    }

    fn open(&self, _context: &SinkContext) -> Result<Opened, SinkError> {
        Ok(Opened::Local(Box::new(FileSink::create(self)?)))
    }
}

impl LocalWrite for FileSink {
    fn metrics(&mut self, window: Window<'_>) -> io::Result<()> {
        self.write(window)
    }

    fn metrics_counted(&mut self, window: Window<'_>) -> (u64, io::Result<()>) {
        self.write_counted(window)
    }
}

pub struct FileSink {
    out: BufWriter<File>,
    encoder: LineEncoder,
}

impl FileSink {
    /// Creates (or truncates) the file.
    pub fn create(config: &FileConfig) -> io::Result<FileSink> {
        let file = File::create(&config.path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", config.path.display())))?;
        let encoder = LineEncoder::new(LineOptions {
            with_fields: config.with_fields,
            cluster_name: config.cluster_name.clone(),
            disable_counter_metrics: false,
        });
        Ok(FileSink { out: BufWriter::with_capacity(WRITE_BUFFER, file), encoder })
    }

    /// Appends the window and flushes, so a reader never sees half a window.
    pub fn write<'a>(&mut self, window: impl Into<Window<'a>>) -> io::Result<()> {
        self.write_counted(window).1
    }

    /// [`FileSink::write`], and the points the window held (written, or skipped as InfluxDB
    /// could not store them). After a failed write the rest is still encoded, to be counted
    /// and freed, but not written.
    pub fn write_counted<'a>(&mut self, window: impl Into<Window<'a>>) -> (u64, io::Result<()>) {
        let out = &mut self.out;
        let mut result = Ok(());
        let Ok(stats) = self.encoder.encode(window, CHUNK_POINTS, |bytes, _points| {
            if result.is_ok() {
                result = out.write_all(bytes);
            }
            Ok::<(), std::convert::Infallible>(())
        });
        let points = (stats.written + stats.skipped) as u64;
        (points, result.and_then(|()| self.out.flush()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_uris() {
        let c = FileConfig::from_uri("file:/tmp/x.lp?withfields=true&cluster_name=prod").unwrap();
        assert_eq!(c.path, PathBuf::from("/tmp/x.lp"));
        assert!(c.with_fields);
        assert_eq!(c.cluster_name, "prod");
        assert!(FileConfig::from_uri("file:").is_err());
        assert!(FileConfig::from_uri("file:/x?db=1").unwrap_err().reason.contains("\"db\""));
    }

    fn window(sets: usize) -> crate::batch::MetricBatch {
        use heapster_dataflows::{EntityKey, MetricId, MetricSet, Value};
        let sets = (0..sets)
            .map(|i| {
                let mut set = MetricSet::new(EntityKey::Node { node: format!("n{i:04}").as_str().into() });
                set.values.set(MetricId::MemoryUsage, Value::Int(i as i64));
                set.values
                    .set(MetricId::MemoryNodeUtilization, Value::Float(if i == 7 { f64::NAN } else { 0.5 }));
                set
            })
            .collect();
        crate::batch::MetricBatch { time: 1_700_000_000_000, sets }
    }

    #[test]
    fn counts_the_points_it_writes_and_those_a_failed_write_loses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.lp");
        let config =
            |path: &std::path::Path| FileConfig::from_uri(&format!("file:{}", path.display())).unwrap();
        let batch = window(2_500);
        let mut sink = FileSink::create(&config(&path)).unwrap();
        let (points, result) = sink.metrics_counted(Window::Owned(batch.clone()));
        result.unwrap();
        assert_eq!(points, batch.point_count() as u64);
        let written = std::fs::read_to_string(&path).unwrap();
        assert_eq!(written.lines().count(), batch.point_count() - 1, "the NaN is not written");

        // A device that takes nothing: the write fails, every point is still counted.
        let mut full = FileSink::create(&config(std::path::Path::new("/dev/full"))).unwrap();
        let (points, result) = full.metrics_counted(Window::Borrowed(&batch));
        assert!(result.is_err());
        assert_eq!(points, batch.point_count() as u64);
    }
}
