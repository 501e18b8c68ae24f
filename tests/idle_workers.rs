//! An idle worker sleeps: nothing wakes its thread until its feed has a message or timely has
//! work for it, and then it wakes at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use heapster::bridge::{Collected, Feed, Stats, WorkerConfig, run_workers};
use heapster::cluster::Share;
use heapster_dataflows::meta::LabelPolicy;

/// Bounds every wait, so a bug fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(30);

/// Threads of this process named `name`, by id.
fn threads_named(name: &str) -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|tid| {
            std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).is_ok_and(|c| c.trim() == name)
        })
        .collect()
}

/// How many times a thread has given up the CPU: once per sleep and wake-up.
fn switches(tid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).expect("status");
    status
        .lines()
        .filter(|l| l.starts_with("voluntary_ctxt_switches:") || l.starts_with("nonvoluntary_ctxt_switches:"))
        .map(|l| l.split(':').nth(1).and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0))
        .sum()
}

#[test]
fn an_idle_worker_sleeps_until_its_feed_wakes_it() {
    let (feed, fed) = heapster::bridge::Feed::channel(8);
    let (collected, collector) = crossbeam_channel::unbounded();
    let config = WorkerConfig {
        workers: 1,
        share: Share::single(1),
        labels: LabelPolicy::default(),
        events: None,
        table: false,
    };
    let workers =
        std::thread::spawn(move || run_workers(config, vec![fed], collected, Arc::new(Stats::default())));

    let started = Instant::now();
    let tid = loop {
        if let [tid] = threads_named("timely:work-0").as_slice() {
            break tid.clone();
        }
        assert!(started.elapsed() < PATIENCE, "no worker thread");
        std::thread::sleep(Duration::from_millis(10));
    };
    // Let it settle into idleness, then count its wake-ups over a second of nothing to do.
    feed.send(Feed::Close { time: 1_000 }).expect("feed");
    let frontier_past = |time: u64| loop {
        match collector.recv_timeout(PATIENCE) {
            Ok(Collected::Frontier { frontier, .. }) if frontier.is_none_or(|f| f > time) => break,
            Ok(_) => {}
            Err(e) => panic!("no frontier past {time}: {e}"),
        }
    };
    frontier_past(1_000);
    let before = switches(&tid);
    std::thread::sleep(Duration::from_secs(1));
    let woken = switches(&tid) - before;
    // A worker polling its feed every millisecond wakes about a thousand times here.
    assert!(woken < 50, "the idle worker woke {woken} times in a second");

    // A message wakes it: the next window closes and reaches the collector.
    feed.send(Feed::Close { time: 2_000 }).expect("feed");
    frontier_past(2_000);
    drop(feed);
    workers.join().expect("workers thread").expect("workers");
}
