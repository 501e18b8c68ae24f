use std::sync::Mutex as StdMutex;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use heapster_dataflows::{EntityKey, MetricId, MetricSet, Value};

use super::*;
use crate::batch::EventBatch;
use crate::batch::MetricBatch;

/// One chunk per set: `"<time> <set>\n"`, one point each.
struct Lines;

impl Encode for Lines {
    fn metrics(&mut self, window: Window<'_>, emit: &mut dyn FnMut(Chunk)) -> Encoded {
        let batch = window.batch();
        for i in 0..batch.sets.len() {
            emit(Chunk { body: Bytes::from(format!("{} {i}\n", batch.time)), points: 1 });
        }
        Encoded::default()
    }

    fn events(&mut self, events: &[Event], emit: &mut dyn FnMut(Chunk)) -> Encoded {
        if !events.is_empty() {
            let body: String = events.iter().map(|e| format!("event {}\n", e.uid)).collect();
            emit(Chunk { body: Bytes::from(body), points: events.len() as u64 });
        }
        Encoded::default()
    }
}

/// A backend that is up or down at the test's command, recording what it took.
#[derive(Clone, Default)]
struct Backend {
    down: Arc<AtomicBool>,
    taken: Arc<StdMutex<Vec<String>>>,
    attempts: Arc<AtomicU64>,
}

impl Deliver for Backend {
    fn send(&mut self, chunks: &[Chunk]) -> Vec<Sent> {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        if self.down.load(Ordering::Relaxed) {
            return chunks.iter().map(|_| Sent::Retry("down".into())).collect();
        }
        let mut taken = self.taken.lock().unwrap();
        for chunk in chunks {
            taken.push(String::from_utf8(chunk.body.to_vec()).unwrap());
        }
        chunks.iter().map(|_| Sent::Written { refused: 0 }).collect()
    }
}

fn window(time: Time, sets: usize) -> SinkInput {
    let sets = (0..sets)
        .map(|i| {
            let mut set = MetricSet::new(EntityKey::Node { node: format!("n{i}").as_str().into() });
            set.values.set(MetricId::CpuUsageRate, Value::Int(1));
            set
        })
        .collect();
    SinkInput::Metrics(Arc::new(MetricBatch { time, sets }))
}

fn events(time: Time, uids: &[&str]) -> SinkInput {
    let events = uids.iter().map(|u| Event { uid: (*u).into(), ..Event::default() }).collect();
    SinkInput::Events(Arc::new(EventBatch { time, events, resource_version: None }))
}

struct Running {
    tx: Option<crossbeam_channel::Sender<SinkInput>>,
    pending: Arc<AtomicUsize>,
    stats: Arc<SinkStats>,
    buffered: Option<Buffered>,
    stop: Arc<AtomicBool>,
}

impl Running {
    fn start(config: BufferConfig, dir: Option<PathBuf>, at_bound: AtBound, backend: &Backend) -> Running {
        Running::start_with(config, dir, at_bound, backend.clone())
    }

    fn start_with(
        config: BufferConfig,
        dir: Option<PathBuf>,
        at_bound: AtBound,
        deliver: impl Deliver,
    ) -> Running {
        let (tx, rx) = crossbeam_channel::unbounded();
        let stats = Arc::new(SinkStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let plan = Plan {
            name: "test".into(),
            config,
            dir,
            at_bound,
            retry: Backoff::new(Duration::from_millis(1), Duration::from_millis(20)),
            stop: Arc::clone(&stop),
            stop_grace: Duration::from_millis(50),
        };
        let pending = Arc::new(AtomicUsize::new(0));
        let buffered =
            Buffered::start(plan, rx, Arc::clone(&pending), Arc::clone(&stats), Lines, deliver).unwrap();
        Running { tx: Some(tx), pending, stats, buffered: Some(buffered), stop }
    }

    fn send(&self, input: SinkInput) {
        if matches!(input, SinkInput::Metrics(_)) {
            self.pending.fetch_add(1, Ordering::Relaxed);
        }
        self.tx.as_ref().unwrap().send(input).unwrap();
    }

    fn finish(&mut self) {
        self.tx = None;
        self.buffered.take().unwrap().join();
    }

    /// Chunks in the buffer.
    fn shared_len(&self) -> usize {
        self.buffered.as_ref().unwrap().shared.lock().entries.len()
    }

    fn load(&self, counter: impl Fn(&SinkStats) -> &AtomicU64) -> u64 {
        counter(&self.stats).load(Ordering::Relaxed)
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn memory(max_bytes: u64) -> BufferConfig {
    BufferConfig { kind: BufferKind::Memory, max_bytes }
}

#[test]
fn parses_buffer_options() {
    let parse = |q: &str| {
        let mut opts = UriOptions::parse("--sink", "x", Some(q));
        BufferConfig::from_options(&mut opts, "--sink", "x")
    };
    assert_eq!(parse("").unwrap(), BufferConfig::default());
    assert_eq!(
        parse("buffer=disk").unwrap(),
        BufferConfig { kind: BufferKind::Disk, max_bytes: DEFAULT_DISK_BYTES }
    );
    assert_eq!(parse("max_buffer_bytes=64MiB").unwrap().max_bytes, 64 << 20);
    assert_eq!(parse("max_buffer_bytes=1000").unwrap().max_bytes, 1000);
    for bad in ["max_buffer_bytes=0", "max_buffer_bytes=1TB", "max_buffer_bytes=-1", "buffer=tape"] {
        let err = parse(bad).unwrap_err();
        assert!(err.reason.contains(bad.split('=').next().unwrap()), "{bad}: {err}");
    }
}

#[test]
fn an_outage_loses_nothing_and_order_is_kept() {
    let backend = Backend::default();
    backend.down.store(true, Ordering::Relaxed);
    let mut sink = Running::start(memory(1 << 20), None, AtBound::DropOldest, &backend);
    for t in 1..=5 {
        sink.send(window(t * 1000, 3));
    }
    wait_until("retries", || backend.attempts.load(Ordering::Relaxed) >= 3);
    assert!(backend.taken.lock().unwrap().is_empty());
    backend.down.store(false, Ordering::Relaxed);
    sink.finish();
    let taken = backend.taken.lock().unwrap().clone();
    let expected: Vec<String> =
        (1..=5).flat_map(|t| (0..3).map(move |i| format!("{} {i}\n", t * 1000))).collect();
    assert_eq!(taken, expected);
    assert_eq!((sink.load(|s| &s.windows), sink.load(|s| &s.points)), (5, 15));
    assert_eq!(sink.load(|s| &s.dropped_points), 0);
    assert!(sink.load(|s| &s.retries) >= 3);
}

#[test]
fn at_the_bound_the_oldest_windows_are_dropped_and_counted() {
    let backend = Backend::default();
    backend.down.store(true, Ordering::Relaxed);
    // Each chunk is "<time> <i>\n": 7 bytes for times of 4 digits; a window of 2 sets is 14
    // bytes, so 50 bytes hold 3 windows.
    let mut sink = Running::start(memory(50), None, AtBound::DropOldest, &backend);
    sink.send(window(1000, 2));
    wait_until("first attempt", || backend.attempts.load(Ordering::Relaxed) >= 1);
    for t in 2..=6 {
        sink.send(window(t * 1000, 2));
    }
    wait_until("drops", || sink.load(|s| &s.dropped_windows) == 3);
    backend.down.store(false, Ordering::Relaxed);
    sink.finish();
    let taken = backend.taken.lock().unwrap().clone();
    let times: std::collections::BTreeSet<&str> = taken.iter().map(|l| &l[..4]).collect();
    // The oldest go, except a window in the middle of a send at that moment.
    let times: Vec<&str> = times.into_iter().collect();
    assert!(times == ["4000", "5000", "6000"] || times == ["1000", "5000", "6000"], "{times:?}");
    assert_eq!(sink.load(|s| &s.dropped_windows), 3);
    assert_eq!(sink.load(|s| &s.dropped_points), 6);
    assert_eq!(sink.load(|s| &s.windows), 3);
    assert_eq!(sink.load(|s| &s.points), 6);
}

#[test]
fn a_window_larger_than_the_bound_is_paced_while_the_backend_takes_writes() {
    let backend = Backend::default();
    // 10 chunks of 7 bytes against a bound of 20: the window never fits at once.
    let mut sink = Running::start(memory(20), None, AtBound::DropOldest, &backend);
    sink.send(window(1000, 10));
    sink.send(window(2000, 10));
    sink.finish();
    assert_eq!(backend.taken.lock().unwrap().len(), 20);
    assert_eq!((sink.load(|s| &s.windows), sink.load(|s| &s.dropped_windows)), (2, 0));
    assert_eq!(sink.load(|s| &s.points), 20);
}

#[test]
fn events_are_never_dropped_and_acknowledged_once_written() {
    let backend = Backend::default();
    backend.down.store(true, Ordering::Relaxed);
    let mut sink = Running::start(memory(20), None, AtBound::DropOldest, &backend);
    sink.send(events(1, &["a"]));
    sink.send(events(2, &[]));
    sink.send(window(3000, 2));
    sink.send(events(3, &["bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "c"]));
    wait_until("retries", || backend.attempts.load(Ordering::Relaxed) >= 3);
    assert_eq!(sink.load(|s| &s.events_written_through), 1, "nothing written: tick 1 is not acknowledged");
    assert_eq!(sink.load(|s| &s.dropped_events), 0);
    backend.down.store(false, Ordering::Relaxed);
    wait_until("acknowledgement", || sink.load(|s| &s.events_written_through) == 4);
    sink.finish();
    let taken = backend.taken.lock().unwrap().join("");
    assert!(taken.contains("event a\n") && taken.contains("event c\n"), "{taken}");
    assert_eq!(sink.load(|s| &s.events), 3);
    assert_eq!(sink.load(|s| &s.dropped_events), 0);
}

#[test]
fn replay_waits_at_the_bound_instead_of_dropping() {
    let backend = Backend::default();
    backend.down.store(true, Ordering::Relaxed);
    let mut sink = Running::start(memory(20), None, AtBound::Wait, &backend);
    for t in 1..=6 {
        sink.send(window(t * 1000, 2));
    }
    wait_until("retries", || backend.attempts.load(Ordering::Relaxed) >= 3);
    backend.down.store(false, Ordering::Relaxed);
    sink.finish();
    assert_eq!(backend.taken.lock().unwrap().len(), 12);
    assert_eq!((sink.load(|s| &s.windows), sink.load(|s| &s.dropped_windows)), (6, 0));
}

#[test]
fn stopping_with_the_backend_down_reports_what_was_not_written() {
    let backend = Backend::default();
    backend.down.store(true, Ordering::Relaxed);
    // Two windows fill the buffer: the events wait in the queue (replay), and the stop
    // must not hang on them.
    let mut sink = Running::start(memory(20), None, AtBound::Wait, &backend);
    sink.send(window(1000, 2));
    sink.send(window(2000, 3));
    sink.send(events(1, &["a", "b"]));
    wait_until("retries", || backend.attempts.load(Ordering::Relaxed) >= 2);
    sink.stop.store(true, Ordering::Relaxed);
    sink.finish();
    assert!(backend.taken.lock().unwrap().is_empty());
    assert_eq!((sink.load(|s| &s.dropped_windows), sink.load(|s| &s.dropped_points)), (2, 5));
    assert_eq!(sink.load(|s| &s.dropped_events), 2);
    assert_eq!(sink.load(|s| &s.errors), 1);
    assert!(sink.load(|s| &s.events_written_through) <= 1, "tick 1 never acknowledged");
}

#[test]
fn the_disk_buffer_survives_a_restart_and_is_sent_first() {
    let dir = tempfile::tempdir().unwrap();
    let disk = BufferConfig { kind: BufferKind::Disk, max_bytes: 1 << 20 };
    let backend = Backend::default();
    backend.down.store(true, Ordering::Relaxed);
    let mut first = Running::start(disk.clone(), Some(dir.path().into()), AtBound::DropOldest, &backend);
    for t in 1..=3 {
        first.send(window(t * 1000, 2));
    }
    first.send(events(1, &["x"]));
    wait_until("chunks on disk", || fs::read_dir(dir.path()).unwrap().count() == 7);
    // Stopped while the backend is down: kept on disk, not counted as dropped.
    first.stop.store(true, Ordering::Relaxed);
    first.finish();
    assert_eq!(first.load(|s| &s.dropped_windows), 0);
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 7);

    backend.down.store(false, Ordering::Relaxed);
    let mut second = Running::start(disk, Some(dir.path().into()), AtBound::DropOldest, &backend);
    second.send(window(4000, 1));
    second.finish();
    let taken = backend.taken.lock().unwrap().clone();
    assert_eq!(
        taken,
        ["1000 0\n", "1000 1\n", "2000 0\n", "2000 1\n", "3000 0\n", "3000 1\n", "event x\n", "4000 0\n"]
    );
    assert_eq!((second.load(|s| &s.windows), second.load(|s| &s.points)), (4, 7));
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "written chunks are removed");
}

#[test]
fn damaged_chunk_files_are_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(format!("{:020}.chunk", 5)), b"heapster-chunk 1 metrics 5 1000 1 99\nshort")
        .unwrap();
    fs::write(dir.path().join(format!("{:020}.tmp", 6)), b"half").unwrap();
    let entries = load(dir.path()).unwrap();
    assert!(entries.is_empty());
    let mut names: Vec<String> =
        fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, [format!("{:020}.bad", 5)]);
}

/// A backend that takes up to eight chunks a send, wants a window's chunks before the next
/// window's, and refuses one event of every events chunk; it records each send's chunks.
#[derive(Clone, Default)]
struct Ordered {
    down: Arc<AtomicBool>,
    sends: Arc<StdMutex<Vec<Vec<String>>>>,
}

impl Deliver for Ordered {
    fn send(&mut self, chunks: &[Chunk]) -> Vec<Sent> {
        if self.down.load(Ordering::Relaxed) {
            return chunks.iter().map(|_| Sent::Retry("down".into())).collect();
        }
        let bodies: Vec<String> =
            chunks.iter().map(|c| String::from_utf8(c.body.to_vec()).unwrap()).collect();
        let outcomes =
            bodies.iter().map(|b| Sent::Written { refused: u64::from(b.starts_with("event")) }).collect();
        self.sends.lock().unwrap().push(bodies);
        outcomes
    }

    fn parallel(&self) -> usize {
        8
    }

    fn in_order(&self) -> bool {
        true
    }
}

#[test]
fn an_in_order_backend_is_sent_one_window_at_a_time() {
    let backend = Ordered::default();
    backend.down.store(true, Ordering::Relaxed);
    let mut run = Running::start_with(BufferConfig::default(), None, AtBound::Wait, backend.clone());
    // Buffered during the outage: three windows of three chunks each.
    for time in [1, 2, 3] {
        run.send(window(time, 3));
    }
    wait_until("the windows buffered", || run.shared_len() == 9);
    backend.down.store(false, Ordering::Relaxed);
    run.finish();
    let sends = backend.sends.lock().unwrap().clone();
    let times: Vec<Vec<&str>> =
        sends.iter().map(|send| send.iter().map(|b| b.split(' ').next().unwrap()).collect()).collect();
    assert_eq!(times, [["1", "1", "1"], ["2", "2", "2"], ["3", "3", "3"]], "{sends:?}");
    assert_eq!(run.load(|s| &s.windows), 3);
}

#[test]
fn events_the_backend_refused_in_a_written_chunk_count_as_dropped() {
    let backend = Ordered::default();
    let mut run = Running::start_with(BufferConfig::default(), None, AtBound::Wait, backend.clone());
    run.send(events(7, &["a", "b", "c"]));
    run.finish();
    assert_eq!(run.load(|s| &s.dropped_events), 1);
    assert_eq!(run.load(|s| &s.events), 2);
    assert_eq!(run.load(|s| &s.events_written_through), 8, "the batch is acknowledged");
}

/// A backend that is up but takes `delay` per request.
struct Slow {
    delay: Duration,
    backend: Backend,
}

impl Deliver for Slow {
    fn send(&mut self, chunks: &[Chunk]) -> Vec<Sent> {
        std::thread::sleep(self.delay);
        self.backend.send(chunks)
    }
}

#[test]
fn a_stopping_flush_to_a_slow_backend_is_bounded_and_reports_the_rest() {
    let backend = Backend::default();
    let slow = Slow { delay: Duration::from_millis(20), backend: backend.clone() };
    let memory = BufferConfig { kind: BufferKind::Memory, max_bytes: 1 << 20 };
    let mut sink = Running::start_with(memory, None, AtBound::DropOldest, slow);
    let windows = 20;
    for time in 1..=windows {
        sink.send(window(time * 1000, 1));
    }
    // Twenty requests of 20 ms each cannot fit in the 50 ms grace.
    sink.stop.store(true, Ordering::Relaxed);
    sink.finish();
    let written = sink.load(|s| &s.windows);
    let dropped = sink.load(|s| &s.dropped_windows);
    assert!(dropped > 0, "the flush ran past its grace: {written} windows written");
    assert_eq!(written + dropped, windows, "every window written or reported");
    assert_eq!(backend.taken.lock().unwrap().len() as u64, written);
    assert_eq!(sink.load(|s| &s.errors), 1);
}
