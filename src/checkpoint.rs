//! The event checkpoint under `--state_dir`: which event states were exported, and where the
//! watch stood, so a restart neither re-sends nor skips events.
//!
//! One file, `state.bin`: a header (magic, format version, payload length, FNV-1a checksum)
//! and the [`Checkpoint`] in bincode. Saves are atomic: write `state.bin.tmp`, fsync, rename
//! over `state.bin`, fsync the directory; a crash leaves the old file or the new one, never a
//! mix, and a leftover `.tmp` is ignored.
//!
//! A `state.bin` that does not read back is refused, not replaced: since saves are atomic it
//! means disk damage, another program, or a newer heapster's format (a downgrade), all of which
//! an operator should see. Starting empty instead would export every event still in the API
//! (up to an hour of them) to every sink again. The error names the file; moving it away is the
//! deliberate way to start without dedup state.
//!
//! When to call [`Checkpointer::exported`] decides the guarantee: after the sinks have taken
//! the events, a crash in between sends them again (at least once); before, it may lose them.
//! Give [`Checkpointer::resource_version`] only a version whose events have all been passed
//! to `exported`, or a restart that resumes the watch there skips the rest.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use heapster_dataflows::events::Seen;
use heapster_dataflows::hash::fnv1a;
use heapster_dataflows::{Event, Name};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use thiserror::Error;

const MAGIC: [u8; 8] = *b"HPSTEVCK";
/// Bump on any change to the header or to [`Checkpoint`]'s encoding.
const FORMAT_VERSION: u32 = 1;
/// Magic, version, payload length, checksum.
const HEADER_LEN: usize = 8 + 4 + 8 + 8;
const STATE_FILE: &str = "state.bin";
const TMP_FILE: &str = "state.bin.tmp";

/// What a restart needs to carry on exactly where it stopped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Where to resume the watch; `None`: list first.
    pub resource_version: Option<String>,
    /// The latest exported state of each event still within the TTL.
    pub seen: Vec<Seen>,
}

#[derive(Debug, Error)]
pub enum CheckpointError {
    #[error("state dir {}: {source}", path.display())]
    Dir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{} is not a heapster event checkpoint; move it away to start without dedup state",
        path.display()
    )]
    NotACheckpoint { path: PathBuf },
    #[error(
        "{} has checkpoint format version {found}, this build reads version {FORMAT_VERSION}; \
         run the heapster that wrote it, or move the file away to start without dedup state",
        path.display()
    )]
    Version { path: PathBuf, found: u32 },
    #[error(
        "{} is corrupt ({what}); move it away to start without dedup state (events still in the \
         API are then exported again)",
        path.display()
    )]
    Corrupt { path: PathBuf, what: String },
    #[error("encoding the checkpoint: {0}")]
    Encode(#[from] bincode::error::EncodeError),
}

/// The checkpoint file of one state directory.
#[derive(Debug)]
pub struct CheckpointStore {
    dir: PathBuf,
    path: PathBuf,
    tmp: PathBuf,
}

impl CheckpointStore {
    /// Creates `dir` if needed and loads its checkpoint, if it has one. A checkpoint that does
    /// not read back is an error naming the file (see the module doc for why).
    pub fn open(dir: &Path) -> Result<(CheckpointStore, Option<Checkpoint>), CheckpointError> {
        fs::create_dir_all(dir).map_err(|source| CheckpointError::Dir { path: dir.to_path_buf(), source })?;
        let store =
            CheckpointStore { dir: dir.to_path_buf(), path: dir.join(STATE_FILE), tmp: dir.join(TMP_FILE) };
        let checkpoint = match fs::read(&store.path) {
            Ok(bytes) => Some(decode(&bytes, &store.path)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(source) => return Err(CheckpointError::Read { path: store.path.clone(), source }),
        };
        Ok((store, checkpoint))
    }

    /// Replaces the checkpoint atomically and durably.
    pub fn save(&mut self, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        let bytes = encode(checkpoint)?;
        let write_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CheckpointError::Write { path, source }
        };
        let mut file = File::create(&self.tmp).map_err(write_error(&self.tmp))?;
        file.write_all(&bytes).map_err(write_error(&self.tmp))?;
        file.sync_all().map_err(write_error(&self.tmp))?;
        drop(file);
        fs::rename(&self.tmp, &self.path).map_err(write_error(&self.path))?;
        // The rename is durable only once the directory is.
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(write_error(&self.dir))?;
        Ok(())
    }

    /// The checkpoint file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn encode(checkpoint: &Checkpoint) -> Result<Vec<u8>, CheckpointError> {
    let payload = bincode::serde::encode_to_vec(checkpoint, bincode::config::standard())?;
    let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len());
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&fnv1a(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    Ok(bytes)
}

fn decode(bytes: &[u8], path: &Path) -> Result<Checkpoint, CheckpointError> {
    let corrupt = |what: String| CheckpointError::Corrupt { path: path.to_path_buf(), what };
    if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
        if MAGIC.starts_with(bytes) {
            return Err(corrupt(format!("truncated to {} bytes", bytes.len())));
        }
        return Err(CheckpointError::NotACheckpoint { path: path.to_path_buf() });
    }
    let Some(header) = bytes.get(..HEADER_LEN) else {
        return Err(corrupt(format!("truncated to {} bytes, inside the header", bytes.len())));
    };
    let word =
        |at: usize, len: usize| header[at..at + len].iter().rev().fold(0u64, |n, b| n << 8 | u64::from(*b));
    let version = word(8, 4) as u32;
    if version != FORMAT_VERSION {
        return Err(CheckpointError::Version { path: path.to_path_buf(), found: version });
    }
    let (length, sum) = (word(12, 8), word(20, 8));
    let payload = &bytes[HEADER_LEN..];
    if payload.len() as u64 != length {
        return Err(corrupt(format!("the payload is {} bytes, the header says {length}", payload.len())));
    }
    if fnv1a(payload) != sum {
        return Err(corrupt("checksum mismatch".to_string()));
    }
    let (checkpoint, used): (Checkpoint, usize) =
        bincode::serde::decode_from_slice(payload, bincode::config::standard())
            .map_err(|e| corrupt(format!("undecodable payload: {e}")))?;
    if used != payload.len() {
        return Err(corrupt(format!("{} bytes after the checkpoint", payload.len() - used)));
    }
    Ok(checkpoint)
}

/// Wall-clock time in ms since the epoch; injectable so tests need no sleeps.
pub type Clock = Box<dyn FnMut() -> i64 + Send>;

fn system_clock() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Keeps the seen set in step with exported events and saves it at most every `interval`, and
/// on [`finish`](Checkpointer::finish). States older than the TTL are pruned at each save: the
/// API has deleted those events, so no re-list can bring them back.
pub struct Checkpointer {
    store: CheckpointStore,
    /// uid -> (count, last_timestamp), the latest exported.
    seen: FxHashMap<Name, (i64, i64)>,
    resource_version: Option<String>,
    interval_ms: i64,
    ttl_ms: i64,
    clock: Clock,
    /// When the last save was tried (a failed one too: errors come at most once an interval).
    last_attempt: Option<i64>,
    dirty: bool,
}

impl Checkpointer {
    /// Starts from a loaded checkpoint's `seen` and `resource_version` (or empty ones).
    pub fn new(
        store: CheckpointStore,
        seen: Vec<Seen>,
        resource_version: Option<String>,
        interval: Duration,
        ttl_ms: u64,
    ) -> Checkpointer {
        let mut checkpointer = Checkpointer {
            store,
            seen: FxHashMap::default(),
            resource_version,
            interval_ms: i64::try_from(interval.as_millis()).unwrap_or(i64::MAX),
            ttl_ms: i64::try_from(ttl_ms).unwrap_or(i64::MAX),
            clock: Box::new(system_clock),
            last_attempt: None,
            dirty: false,
        };
        for s in seen {
            checkpointer.remember(s.uid, s.count, s.last_timestamp);
        }
        checkpointer.dirty = false;
        checkpointer
    }

    /// Replaces the wall clock (ms since the epoch).
    pub fn with_clock(mut self, clock: impl FnMut() -> i64 + Send + 'static) -> Checkpointer {
        self.clock = Box::new(clock);
        self
    }

    /// Records the states of events the sinks have taken (see the module doc for when).
    pub fn exported(&mut self, events: &[Event]) {
        for event in events {
            self.remember(event.uid.clone(), event.count, event.last_timestamp);
        }
    }

    /// Records where the watch stands; only once every event up to it went to `exported`.
    pub fn resource_version(&mut self, rv: &str) {
        if self.resource_version.as_deref() != Some(rv) {
            self.resource_version = Some(rv.to_string());
            self.dirty = true;
        }
    }

    /// Saves if something changed and the last save is at least an interval ago (or the clock
    /// went back); returns whether it saved.
    pub fn tick(&mut self) -> Result<bool, CheckpointError> {
        if !self.dirty {
            return Ok(false);
        }
        let now = (self.clock)();
        let due = self.last_attempt.is_none_or(|last| now < last || now - last >= self.interval_ms);
        if !due {
            return Ok(false);
        }
        self.save(now)?;
        Ok(true)
    }

    /// Whether states changed since the last save (a later `tick` will save them).
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Saves what changed since the last save, whatever the interval.
    pub fn finish(mut self) -> Result<(), CheckpointError> {
        if self.dirty {
            let now = (self.clock)();
            self.save(now)?;
        }
        Ok(())
    }

    /// The states held now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// The checkpoint a save would write now (before pruning).
    pub fn checkpoint(&self) -> Checkpoint {
        let mut seen: Vec<Seen> = self
            .seen
            .iter()
            .map(|(uid, &(count, last_timestamp))| Seen { uid: uid.clone(), count, last_timestamp })
            .collect();
        seen.sort();
        Checkpoint { resource_version: self.resource_version.clone(), seen }
    }

    fn remember(&mut self, uid: Name, count: i64, last_timestamp: i64) {
        let state = (count, last_timestamp);
        match self.seen.get_mut(&uid) {
            Some(held) if *held >= state => {}
            Some(held) => {
                *held = state;
                self.dirty = true;
            }
            None => {
                self.seen.insert(uid, state);
                self.dirty = true;
            }
        }
    }

    fn save(&mut self, now: i64) -> Result<(), CheckpointError> {
        self.last_attempt = Some(now);
        let horizon = now.saturating_sub(self.ttl_ms);
        self.seen.retain(|_, (_, last_timestamp)| *last_timestamp >= horizon);
        self.store.save(&self.checkpoint())?;
        self.dirty = false;
        crate::telemetry::global().checkpoint_saved();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;

    const HOUR: u64 = 3_600_000;

    fn seen(uid: &str, count: i64, last_timestamp: i64) -> Seen {
        Seen { uid: Name::new(uid), count, last_timestamp }
    }

    fn event(uid: &str, count: i64, last_timestamp: i64) -> Event {
        Event { uid: Name::new(uid), count, last_timestamp, ..Event::default() }
    }

    fn sample() -> Checkpoint {
        Checkpoint {
            resource_version: Some("4002".to_string()),
            seen: vec![
                seen("440bdb23-2429-11e6-b9c2-42010af00026", 3, 1_464_366_633_000),
                seen("é-uid", 1, -5),
            ],
        }
    }

    /// A settable clock shared with the test.
    fn clock(start: i64) -> (Arc<AtomicI64>, impl FnMut() -> i64 + Send + 'static) {
        let now = Arc::new(AtomicI64::new(start));
        let reader = Arc::clone(&now);
        (now, move || reader.load(Ordering::SeqCst))
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("nested/state");
        let (mut store, loaded) = CheckpointStore::open(&state).unwrap();
        assert_eq!(loaded, None, "a new directory has no checkpoint");
        assert!(state.is_dir());
        store.save(&sample()).unwrap();
        store.save(&Checkpoint { resource_version: None, seen: vec![] }).unwrap();
        store.save(&sample()).unwrap();
        let (_, loaded) = CheckpointStore::open(&state).unwrap();
        assert_eq!(loaded, Some(sample()));
        assert!(!state.join(TMP_FILE).exists(), "the temporary file was renamed");
    }

    #[test]
    fn a_leftover_tmp_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = CheckpointStore::open(dir.path()).unwrap();
        store.save(&sample()).unwrap();
        // A crash mid-save leaves a partial temporary file next to the good one.
        fs::write(dir.path().join(TMP_FILE), &fs::read(store.path()).unwrap()[..10]).unwrap();
        let (mut store, loaded) = CheckpointStore::open(dir.path()).unwrap();
        assert_eq!(loaded, Some(sample()));
        let next = Checkpoint { resource_version: Some("5000".into()), seen: vec![] };
        store.save(&next).unwrap();
        assert_eq!(CheckpointStore::open(dir.path()).unwrap().1, Some(next));
    }

    fn open_error(bytes: &[u8]) -> (String, CheckpointError) {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(STATE_FILE), bytes).unwrap();
        let err = CheckpointStore::open(dir.path()).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(&dir.path().join(STATE_FILE).display().to_string()), "{message}");
        (message, err)
    }

    #[test]
    fn a_damaged_file_is_a_clear_error_naming_it() {
        let good = encode(&sample()).unwrap();
        for len in [3, HEADER_LEN - 1, HEADER_LEN, good.len() - 1] {
            let (message, err) = open_error(&good[..len]);
            assert!(matches!(err, CheckpointError::Corrupt { .. }), "{len}: {err:?}");
            assert!(message.contains("truncated") || message.contains("the header says"), "{message}");
        }
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        let (message, _) = open_error(&flipped);
        assert!(message.contains("checksum"), "{message}");
        let mut longer = good.clone();
        longer.push(0);
        assert!(matches!(open_error(&longer).1, CheckpointError::Corrupt { .. }));

        let (message, err) = open_error(b"{\"seen\": []}");
        assert!(matches!(err, CheckpointError::NotACheckpoint { .. }), "{message}");
        let mut newer = good.clone();
        newer[8] = 2;
        assert!(matches!(open_error(&newer).1, CheckpointError::Version { found: 2, .. }));
    }

    #[test]
    fn the_file_format_keeps_its_fnv1a_checksum() {
        // The header's checksum is part of the file format: files written by earlier releases,
        // with this FNV-1a written out by hand, must still open.
        let old = |bytes: &[u8]| {
            bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
            })
        };
        let payload = bincode::serde::encode_to_vec(sample(), bincode::config::standard()).unwrap();
        let mut written = MAGIC.to_vec();
        written.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        written.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        written.extend_from_slice(&old(&payload).to_le_bytes());
        written.extend_from_slice(&payload);
        assert_eq!(encode(&sample()).unwrap(), written, "the file format changed");
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(STATE_FILE), &written).unwrap();
        let (_, loaded) = CheckpointStore::open(dir.path()).unwrap();
        assert_eq!(loaded, Some(sample()));
    }

    #[test]
    fn a_valid_header_over_a_bad_payload_is_corrupt() {
        let payload = [0xff_u8; 16];
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&fnv1a(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
        let (message, err) = open_error(&bytes);
        assert!(matches!(err, CheckpointError::Corrupt { .. }));
        assert!(message.contains("undecodable"), "{message}");
    }

    #[test]
    fn saves_are_rate_limited() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = CheckpointStore::open(dir.path()).unwrap();
        let (now, clock) = clock(10 * HOUR as i64);
        let t0 = now.load(Ordering::SeqCst);
        let mut cp = Checkpointer::new(store, vec![], None, Duration::from_secs(10), HOUR).with_clock(clock);
        assert!(!cp.tick().unwrap(), "nothing to save");
        cp.exported(&[event("a", 1, t0)]);
        assert!(cp.tick().unwrap(), "the first change saves at once");
        cp.exported(&[event("b", 1, t0)]);
        now.store(t0 + 9_999, Ordering::SeqCst);
        assert!(!cp.tick().unwrap(), "too soon");
        assert_eq!(CheckpointStore::open(dir.path()).unwrap().1.unwrap().seen.len(), 1);
        now.store(t0 + 10_000, Ordering::SeqCst);
        assert!(cp.tick().unwrap());
        assert!(!cp.tick().unwrap(), "nothing changed since");
        cp.exported(&[event("a", 1, t0)]);
        now.store(t0 + 30_000, Ordering::SeqCst);
        assert!(!cp.tick().unwrap(), "an already-saved state changes nothing");
        cp.exported(&[event("a", 2, t0 + 1)]);
        now.store(t0 + 100, Ordering::SeqCst);
        assert!(cp.tick().unwrap(), "a clock that went back does not stall saves");
        assert_eq!(
            CheckpointStore::open(dir.path()).unwrap().1.unwrap().seen,
            vec![seen("a", 2, t0 + 1), seen("b", 1, t0)]
        );
    }

    #[test]
    fn finish_saves_what_is_pending() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = CheckpointStore::open(dir.path()).unwrap();
        let (_, clock) = clock(HOUR as i64);
        let mut cp =
            Checkpointer::new(store, vec![], None, Duration::from_secs(3600), HOUR).with_clock(clock);
        cp.exported(&[event("a", 1, HOUR as i64)]);
        assert!(cp.tick().unwrap());
        cp.exported(&[event("a", 2, HOUR as i64)]);
        assert!(!cp.tick().unwrap());
        cp.finish().unwrap();
        assert_eq!(
            CheckpointStore::open(dir.path()).unwrap().1.unwrap().seen,
            vec![seen("a", 2, HOUR as i64)]
        );
    }

    #[test]
    fn ttl_prunes_old_states_at_save() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = CheckpointStore::open(dir.path()).unwrap();
        let now = 5 * HOUR as i64;
        let (_, clock) = clock(now);
        let loaded = vec![seen("old", 4, now - HOUR as i64 - 1), seen("edge", 1, now - HOUR as i64)];
        let mut cp = Checkpointer::new(store, loaded, None, Duration::from_secs(60), HOUR).with_clock(clock);
        assert_eq!(cp.len(), 2);
        cp.exported(&[event("new", 1, now), event("edge", 1, now - 2 * HOUR as i64)]);
        assert!(cp.tick().unwrap());
        assert_eq!(cp.len(), 2);
        let saved = CheckpointStore::open(dir.path()).unwrap().1.unwrap();
        assert_eq!(saved.seen, vec![seen("edge", 1, now - HOUR as i64), seen("new", 1, now)]);
    }

    #[test]
    fn the_resource_version_stored_is_the_one_given() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = CheckpointStore::open(dir.path()).unwrap();
        let (now, clock) = clock(HOUR as i64);
        let mut cp = Checkpointer::new(store, vec![], Some("100".into()), Duration::from_secs(1), HOUR)
            .with_clock(clock);
        cp.resource_version("100");
        assert!(!cp.tick().unwrap(), "the same version is no change");
        cp.resource_version("250");
        cp.resource_version("249");
        assert!(cp.tick().unwrap());
        assert_eq!(
            CheckpointStore::open(dir.path()).unwrap().1.unwrap().resource_version.as_deref(),
            Some("249")
        );
        cp.resource_version("300");
        now.fetch_add(1, Ordering::SeqCst);
        cp.finish().unwrap();
        let saved = CheckpointStore::open(dir.path()).unwrap().1.unwrap();
        assert_eq!(saved.resource_version.as_deref(), Some("300"));
    }

    #[test]
    fn a_failed_save_is_an_error_and_is_retried_after_the_interval() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let (store, _) = CheckpointStore::open(&state).unwrap();
        let (now, clock) = clock(HOUR as i64);
        let mut cp = Checkpointer::new(store, vec![], None, Duration::from_secs(5), HOUR).with_clock(clock);
        cp.exported(&[event("a", 1, HOUR as i64)]);
        fs::remove_dir_all(&state).unwrap();
        let err = cp.tick().unwrap_err();
        assert!(matches!(err, CheckpointError::Write { .. }), "{err:?}");
        fs::create_dir_all(&state).unwrap();
        assert!(!cp.tick().unwrap(), "not again within the interval");
        now.fetch_add(5_000, Ordering::SeqCst);
        assert!(cp.tick().unwrap());
        assert_eq!(CheckpointStore::open(&state).unwrap().1.unwrap().seen.len(), 1);
    }
}
