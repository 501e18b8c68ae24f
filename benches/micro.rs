//! Criterion micro-benchmarks of the hot paths: Summary API parsing and line-protocol encoding.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use heapster::batch::MetricBatch;
use heapster::sinks::influxdb::line_protocol::{LineEncoder, LineOptions};
use heapster::sources::NodeTarget;
use heapster::sources::kubelet::summary::parse_summary;
use heapster_dataflows::model::{Interner, LabeledMetric, LabeledValue, Resource};
use heapster_dataflows::{EntityKey, LabelId, LabeledMetricId, MetricId, MetricSet, Name, Value};

fn capture() -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/captures/kubelet-summary-gke.json");
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn parse(c: &mut Criterion) {
    let body = capture();
    let node = NodeTarget::named("gke-lenaic-pool-1-1c8b424c-wnkn");
    let mut interner = Interner::default();
    let mut out = Vec::new();
    let mut group = c.benchmark_group("summary");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("parse_gke_capture", |b| {
        b.iter(|| {
            out.clear();
            parse_summary(&body, &node, 0, &mut interner, &mut out).map(|r| r.sets)
        })
    });
    group.finish();
}

fn encode(c: &mut Criterion) {
    let body = capture();
    let node = NodeTarget::named("gke-lenaic-pool-1-1c8b424c-wnkn");
    let mut sets = Vec::new();
    if let Err(e) = parse_summary(&body, &node, 0, &mut Interner::default(), &mut sets) {
        panic!("capture: {e}");
    }
    let batch = MetricBatch { time: 1_574_255_640_000, sets };
    let mut encoder = LineEncoder::new(LineOptions::default());
    let mut bytes = 0usize;
    let _ = encoder.encode(&batch, usize::MAX, |b, _| -> Result<(), ()> {
        bytes += b.len();
        Ok(())
    });
    let mut group = c.benchmark_group("line_protocol");
    group.throughput(Throughput::Elements(batch.point_count() as u64));
    group.bench_function("encode_gke_node", |b| {
        b.iter(|| {
            encoder.encode(&batch, 10_000, |b, _| -> Result<(), ()> {
                std::hint::black_box(b);
                Ok(())
            })
        })
    });
    group.finish();
    println!("line_protocol: {} points, {bytes} bytes per node of the capture", batch.point_count());
}

/// A window shaped like the live benchmark's 1,000 nodes x 30 pods: per node a node set, three
/// system containers and 30 pods of two containers, with Heapster's labels and a pod-label
/// string; the values vary so that numbers format as they would.
fn synthetic_window(nodes: usize, pods: usize) -> MetricBatch {
    let name = |s: String| Name::new(&s);
    let mut sets = Vec::new();
    let mut n = 0u64;
    let mut fill = |set: &mut MetricSet, count: usize| {
        for id in MetricId::ALL.iter().take(count) {
            n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            set.values.set(*id, Value::Int((n >> 40) as i64));
        }
        set.values.set(MetricId::ALL[count], Value::Float((n >> 40) as f64 / 1e3));
    };
    let ns = [Name::new("default"), Name::new("kube-system"), Name::new("team-a")];
    for node in 0..nodes {
        let node_name = name(format!("node-{node:04}.c.example.internal"));
        let mut set = MetricSet::new(EntityKey::Node { node: node_name.clone() });
        set.labels.set(LabelId::Nodename, node_name.clone());
        set.labels.set(LabelId::Hostname, node_name.clone());
        set.labels.set(LabelId::HostId, name(format!("i-{node:016x}")));
        set.labels.set(LabelId::Schedulable, Name::new("true"));
        set.labels.set(LabelId::Labels, name(format!("kubernetes.io/hostname:node-{node:04},region:eu")));
        fill(&mut set, 30);
        set.labeled.push(LabeledValue {
            metric: LabeledMetric::Catalog(LabeledMetricId::FsUsage),
            resource: Resource::Id(Name::new("/dev/sda1")),
            value: Value::Int(node as i64),
        });
        sets.push(set);
        for sys in ["kubelet", "runtime", "pods"] {
            let mut set =
                MetricSet::new(EntityKey::SysContainer { node: node_name.clone(), name: Name::new(sys) });
            set.labels.set(LabelId::Nodename, node_name.clone());
            set.labels.set(LabelId::ContainerName, Name::new(sys));
            fill(&mut set, 10);
            sets.push(set);
        }
        for pod in 0..pods {
            let ns = ns[pod % ns.len()].clone();
            let pod_name = name(format!("web-{node:04}-{pod:02}-7d9f8c6b5-x2k4p"));
            let labels = name(format!("app:web-{pod:02},pod-template-hash:7d9f8c6b5,tier:frontend"));
            let mut set = MetricSet::new(EntityKey::Pod { ns: ns.clone(), pod: pod_name.clone() });
            for (id, v) in [
                (LabelId::NamespaceName, &ns),
                (LabelId::PodName, &pod_name),
                (LabelId::Nodename, &node_name),
                (LabelId::Labels, &labels),
            ] {
                set.labels.set(id, v.clone());
            }
            set.labels.set(LabelId::PodId, name(format!("{node:08x}-{pod:04x}-4a1b-9c2d-0123456789ab")));
            fill(&mut set, 24);
            sets.push(set);
            for container in ["app", "sidecar"] {
                let mut c = MetricSet::new(EntityKey::PodContainer {
                    ns: ns.clone(),
                    pod: pod_name.clone(),
                    container: Name::new(container),
                });
                c.labels = sets[sets.len() - 1].labels.clone();
                c.labels.set(LabelId::ContainerName, Name::new(container));
                c.labels.set(
                    LabelId::ContainerBaseImage,
                    name(format!("registry.example.com/{container}:1.2.3")),
                );
                fill(&mut c, 16);
                c.labeled.push(LabeledValue {
                    metric: LabeledMetric::Catalog(LabeledMetricId::FsUsage),
                    resource: Resource::Id(Name::new("/")),
                    value: Value::Int(pod as i64),
                });
                sets.push(c);
            }
        }
    }
    sets.sort_by(|a, b| a.key.cmp(&b.key));
    MetricBatch { time: 1_574_255_640_000, sets }
}

/// A whole 1,000 x 30 window through one encoder, window after window, as the file sink
/// encodes it (1,000-point chunks); the same window each time, as the sets of a cluster
/// mostly keep their labels from one window to the next.
fn encode_window(c: &mut Criterion) {
    let batch = synthetic_window(1_000, 30);
    let mut encoder = LineEncoder::new(LineOptions::default());
    let mut bytes = 0usize;
    let _ = encoder.encode(&batch, 1_000, |b, _| -> Result<(), ()> {
        bytes += b.len();
        Ok(())
    });
    println!(
        "line_protocol: {} sets, {} points, {bytes} bytes a window",
        batch.sets.len(),
        batch.point_count()
    );
    let mut group = c.benchmark_group("line_protocol");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("encode_window_1000x30", |b| {
        b.iter(|| {
            encoder.encode(&batch, 1_000, |b, _| -> Result<(), ()> {
                std::hint::black_box(b);
                Ok(())
            })
        })
    });
    // The floor: the same bytes copied once, a chunk at a time.
    let mut lines = Vec::new();
    let _ = encoder.encode(&batch, 1_000, |b, _| -> Result<(), ()> {
        lines.push(b.to_vec());
        Ok(())
    });
    let mut out = Vec::with_capacity(lines.iter().map(Vec::len).max().unwrap_or(0));
    group.bench_function("memcpy_window_1000x30", |b| {
        b.iter(|| {
            for chunk in &lines {
                out.clear();
                out.extend_from_slice(chunk);
                std::hint::black_box(&out);
            }
        })
    });
    group.finish();
}

criterion_group!(benches, parse, encode, encode_window);
criterion_main!(benches);
