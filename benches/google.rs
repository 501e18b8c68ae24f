//! Google sinks' encoding: Cloud Monitoring series per second and CPU seconds for one window of
//! a 1,000-node x 30-pod cluster (goal: under 0.3 CPU-s, peak RSS under 256 MiB), and Cloud
//! Logging entries per second (goal: over 100,000/s). Encoding only: request bodies are built
//! exactly as the sinks send them, then dropped.
//!
//! Sizes: `BENCH_GCM_NODES`, `BENCH_GCM_PODS`, `BENCH_GCL_EVENTS`; under `cargo test` (no
//! `--bench`) smoke sizes run.

use std::time::Instant;

mod common;

use common::{peak_rss_kib, size};
use heapster::batch::MetricBatch;
use heapster::sinks::gcl::encode::{EntryEncoder, Severity};
use heapster::sinks::gcm::encode::{Cursor, MAX_SERIES_PER_REQUEST, Selection, SeriesEncoder};
use heapster_dataflows::model::{EventText, ObjectRef};
use heapster_dataflows::{EntityKey, Event, LabelId, MetricId, MetricSet, Name, Value};

const WINDOW_MS: u64 = 1_793_527_200_000;

fn main() {
    let nodes = size("BENCH_GCM_NODES", 1000, 20);
    let pods = size("BENCH_GCM_PODS", 30, 3);
    let events = size("BENCH_GCL_EVENTS", 100_000, 1000);

    let batch = window(nodes, pods);
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let mut encoder = SeriesEncoder::new(Selection::All, "bench-project", "us-central1-a", "default");
    let mut cursor = Cursor::default();
    let (mut series, mut requests, mut bytes) = (0usize, 0usize, 0usize);
    let mut body = Vec::with_capacity(256 * 1024);
    while !cursor.is_done(&batch) {
        body.clear();
        let encoded = encoder.request(&batch, &mut cursor, &mut body);
        assert!(encoded.series <= MAX_SERIES_PER_REQUEST);
        series += encoded.series;
        requests += usize::from(encoded.series > 0);
        bytes += body.len();
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    assert!(series > 0, "the window has series");
    println!(
        "gcm encoding: {nodes} nodes x {pods} pods: {series} series in {requests} requests ({} MiB) in {wall:.3} s wall, {cpu:.2} CPU-s: {:.0} series/s; peak RSS {} MiB",
        bytes >> 20,
        series as f64 / wall,
        peak_rss_kib() / 1024
    );

    let events: Vec<Event> = (0..events).map(event).collect();
    let refs: Vec<&Event> = events.iter().collect();
    let encoder = EntryEncoder::new("bench-project", "us-central1-a", "default", Severity::FromType);
    let started = Instant::now();
    let (mut entries, mut requests, mut next) = (0usize, 0usize, 0usize);
    while next < refs.len() {
        let (body, count, consumed) = encoder.request(&refs[next..]);
        assert!(!body.is_empty());
        entries += count;
        requests += 1;
        next += consumed;
    }
    let wall = started.elapsed().as_secs_f64();
    println!(
        "gcl encoding: {entries} entries in {requests} requests in {wall:.3} s: {:.0} entries/s",
        entries as f64 / wall
    );
}

/// One window: per node a node set and 3 system containers, per pod a pod set and 2 containers,
/// each with the values the kubelet source and the aggregation give them.
fn window(nodes: usize, pods: usize) -> MetricBatch {
    let mut sets = Vec::with_capacity(nodes * (4 + pods * 3) + 8);
    let fill = |set: &mut MetricSet, ids: &[MetricId], seed: usize| {
        for (i, id) in ids.iter().enumerate() {
            let value = match id.desc().ty {
                heapster_dataflows::catalog::ValueType::Int => Value::Int((seed * 31 + i) as i64),
                heapster_dataflows::catalog::ValueType::Float => Value::Float((seed + i) as f64 / 7.0),
            };
            set.values.set(*id, value);
        }
    };
    let common: Vec<MetricId> = MetricId::ALL
        .iter()
        .copied()
        .filter(|id| !id.name().contains("node_") && !id.name().starts_with("ephemeral"))
        .take(24)
        .collect();
    let node_metrics: Vec<MetricId> = MetricId::ALL.iter().copied().take(40).collect();
    for n in 0..nodes {
        let node = Name::new(&format!("gke-bench-pool-{n:05}"));
        let mut set = MetricSet::new(EntityKey::Node { node: node.clone() });
        set.labels.set(LabelId::Hostname, node.clone());
        set.labels.set(LabelId::HostId, Name::new(&format!("{}", 1_000_000 + n)));
        set.create_time = WINDOW_MS as i64 - 3_600_000;
        fill(&mut set, &node_metrics, n);
        sets.push(set);
        for sys in ["kubelet", "runtime", "pods"] {
            let mut set =
                MetricSet::new(EntityKey::SysContainer { node: node.clone(), name: Name::new(sys) });
            set.labels.set(LabelId::Hostname, node.clone());
            set.create_time = WINDOW_MS as i64 - 3_600_000;
            fill(&mut set, &common, n);
            sets.push(set);
        }
        for p in 0..pods {
            let ns = Name::new(["default", "web", "kube-system", "batch"][p % 4]);
            let pod = Name::new(&format!("app-{n:05}-{p:02}"));
            let mut set = MetricSet::new(EntityKey::Pod { ns: ns.clone(), pod: pod.clone() });
            set.labels.set(LabelId::Hostname, node.clone());
            set.labels.set(LabelId::Labels, Name::new("app:bench,tier:web"));
            set.create_time = WINDOW_MS as i64 - 600_000;
            fill(&mut set, &common, n + p);
            sets.push(set);
            for c in ["app", "sidecar"] {
                let key =
                    EntityKey::PodContainer { ns: ns.clone(), pod: pod.clone(), container: Name::new(c) };
                let mut set = MetricSet::new(key);
                set.labels.set(LabelId::Hostname, node.clone());
                set.labels.set(LabelId::ContainerBaseImage, Name::new("registry.k8s.io/app:1.0"));
                set.create_time = WINDOW_MS as i64 - 600_000;
                fill(&mut set, &common, n + p + 1);
                sets.push(set);
            }
        }
    }
    MetricBatch { time: WINDOW_MS, sets }
}

fn event(i: usize) -> Event {
    let pod = format!("app-{:05}-{:02}", i / 30, i % 30);
    Event {
        uid: Name::new(&format!("00000000-0000-4000-8000-{i:012}")),
        namespace: Name::new("web"),
        involved: ObjectRef {
            kind: Name::new("Pod"),
            namespace: Name::new("web"),
            name: Name::new(&pod),
            uid: Name::new(&format!("p-{i}")),
        },
        reason: Name::new(if i.is_multiple_of(5) { "BackOff" } else { "Pulled" }),
        kind: Name::new(if i.is_multiple_of(5) { "Warning" } else { "Normal" }),
        source_component: Name::new("kubelet"),
        source_host: Name::new("gke-bench-pool-00001"),
        first_timestamp: WINDOW_MS as i64 - 60_000,
        last_timestamp: WINDOW_MS as i64 + (i % 60_000) as i64,
        count: 1 + (i % 3) as i64,
        text: EventText::new(
            String::new(),
            &format!("{pod}.{i:x}"),
            &format!("{}", 1000 + i),
            &format!("Successfully pulled image \"registry.k8s.io/app:1.0\" in {} ms", i % 997),
        ),
    }
}

/// User + system CPU seconds of this process so far (Linux, 100 ticks a second).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}
