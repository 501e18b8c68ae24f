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
        let out = &mut self.out;
        self.encoder.encode(window, CHUNK_POINTS, |bytes, _points| out.write_all(bytes))?;
        self.out.flush()
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
}
