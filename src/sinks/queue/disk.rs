//! The disk buffer's files: one chunk a file, a one-line header (what, window or batch,
//! points, body length) before the body, written under a temporary name and renamed.

use std::collections::VecDeque;
use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

use bytes::Bytes;
use tracing::warn;

use super::{Entry, What};

/// Reads the chunk headers of a disk buffer, oldest first. Damaged files are set aside.
pub(super) fn load(dir: &Path) -> io::Result<VecDeque<Entry>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        if name.ends_with(".tmp") {
            // Half-written by a run that died: its window was never complete in the buffer.
            let _ = fs::remove_file(&path);
            continue;
        }
        let Some(seq) = name.strip_suffix(".chunk").and_then(|s| s.parse::<u64>().ok()) else { continue };
        match read_header(&path) {
            Ok((what, item, points, bytes)) => found.push(Entry {
                seq,
                item,
                what,
                points,
                bytes,
                last: false,
                body: None,
                in_flight: false,
                refused: 0,
            }),
            Err(e) => {
                warn!("disk buffer: {} is damaged ({e}); set aside as .bad", path.display());
                let _ = fs::rename(&path, path.with_extension("bad"));
            }
        }
    }
    found.sort_by_key(|e| e.seq);
    let mut entries: VecDeque<Entry> = found.into();
    for i in 0..entries.len() {
        let next_item = entries.get(i + 1).map(|e| e.item);
        entries[i].last = next_item != Some(entries[i].item);
    }
    Ok(entries)
}

const MAGIC: &str = "heapster-chunk 1";

pub(super) fn header(what: What, item: u64, points: u64, body: usize) -> String {
    match what {
        What::Metrics { time } => format!("{MAGIC} metrics {item} {time} {points} {body}\n"),
        What::Events { events, .. } => format!("{MAGIC} events {item} {events} {points} {body}\n"),
    }
}

/// (what, item, points, file bytes) of a chunk file, checking its length.
pub(super) fn read_header(path: &Path) -> io::Result<(What, u64, u64, u64)> {
    let mut file = fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut head = [0u8; 128];
    let n = file.read(&mut head)?;
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_string());
    let end = head[..n].iter().position(|b| *b == b'\n').ok_or_else(|| bad("no header"))?;
    let text = std::str::from_utf8(&head[..end]).map_err(|_| bad("header not UTF-8"))?;
    let rest = text.strip_prefix(MAGIC).ok_or_else(|| bad("not a chunk file"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let [kind, item, x, points, body] = fields[..] else { return Err(bad("header fields")) };
    let num = |s: &str| s.parse::<u64>().map_err(|_| bad("header number"));
    let (item, x, points, body) = (num(item)?, num(x)?, num(points)?, num(body)?);
    if len != end as u64 + 1 + body {
        return Err(bad("truncated"));
    }
    let what = match kind {
        "metrics" => What::Metrics { time: x },
        "events" => What::Events { tick: None, events: x },
        _ => return Err(bad("kind")),
    };
    Ok((what, item, points, len))
}

pub(super) fn read_body(path: &Path) -> io::Result<Bytes> {
    let data = fs::read(path)?;
    let start = data.iter().position(|b| *b == b'\n').map_or(data.len(), |i| i + 1);
    Ok(Bytes::from(data).slice(start..))
}

/// Writes a chunk file under a temporary name, then renames it; returns its size.
pub(super) fn write_chunk_file(path: &Path, header: &str, body: &[u8]) -> io::Result<u64> {
    let tmp = path.with_extension("tmp");
    let mut file = fs::File::create(&tmp)?;
    file.write_all(header.as_bytes())?;
    file.write_all(body)?;
    drop(file);
    fs::rename(&tmp, path)?;
    Ok((header.len() + body.len()) as u64)
}
