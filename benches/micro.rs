//! Criterion micro-benchmarks of the hot paths: Summary API parsing and line-protocol encoding.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use heapster::batch::MetricBatch;
use heapster::sinks::influxdb::line_protocol::{LineEncoder, LineOptions};
use heapster::sources::NodeTarget;
use heapster::sources::kubelet::summary::parse_summary;
use heapster_dataflows::model::Interner;

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

criterion_group!(benches, parse, encode);
criterion_main!(benches);
