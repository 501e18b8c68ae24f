//! Summary API parsing, the byte reader against the serde path, per body: the two real
//! captures and a synthesized node of 30 pods (compact JSON, as the bench cluster's kubelets
//! send). Criterion's own figures, then a plain table of MB/s and µs per body for each path.
//!
//! `cargo bench --bench summary_parse`

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use heapster::sources::NodeTarget;
use heapster::sources::kubelet::summary::{SummaryError, SummaryReport, parse_summary, parse_summary_serde};
use heapster_dataflows::model::{Interner, MetricSet};
use heapster_testbed::synth::{SynthSpec, synth};

type Parser =
    fn(&[u8], &NodeTarget, i64, &mut Interner, &mut Vec<MetricSet>) -> Result<SummaryReport, SummaryError>;

const PATHS: [(&str, Parser); 2] = [("bytes", parse_summary), ("serde", parse_summary_serde)];

/// (label, node name, body).
fn bodies() -> Vec<(&'static str, String, Vec<u8>)> {
    let captures = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/captures");
    let read = |file: &str| {
        let path = format!("{captures}/{file}");
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    synth(&SynthSpec::new(1, 30, 1), dir.path()).unwrap_or_else(|e| panic!("synth: {e}"));
    let kubelet = dir.path().join("windows/0000/kubelet");
    let file = std::fs::read_dir(&kubelet)
        .and_then(|mut d| d.next().transpose())
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no body in {}", kubelet.display()));
    let name = file.path().file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    vec![
        ("gke", "gke-lenaic-pool-1-1c8b424c-wnkn".to_owned(), read("kubelet-summary-gke.json")),
        ("windows", "ip-172-29-160-189.ec2.internal".to_owned(), read("kubelet-summary-windows.json")),
        ("synth_30_pods", name, std::fs::read(file.path()).unwrap_or_else(|e| panic!("synth body: {e}"))),
    ]
}

fn parse(c: &mut Criterion) {
    let bodies = bodies();
    let mut group = c.benchmark_group("summary_parse");
    for (label, node, body) in &bodies {
        let node = NodeTarget::named(node);
        group.throughput(Throughput::Bytes(body.len() as u64));
        for (path, parser) in PATHS {
            let mut interner = Interner::default();
            let mut out = Vec::new();
            group.bench_function(format!("{label}/{path}"), |b| {
                b.iter(|| {
                    out.clear();
                    parser(body, &node, 0, &mut interner, &mut out).map(|r| r.sets)
                })
            });
        }
    }
    group.finish();
    // Not while a profiler runs one benchmark alone.
    if !std::env::args().any(|a| a == "--profile-time") {
        table(&bodies);
    }
}

/// This thread's CPU time: what a loaded machine's other work does not add to.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        panic!("clock_gettime: {}", std::io::Error::last_os_error());
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Each path alone for about a second of this thread's CPU per body, the figures side by side
/// (CPU time, not wall time, so a busy machine skews them less than criterion's).
fn table(bodies: &[(&str, String, Vec<u8>)]) {
    println!(
        "\n{:<14} {:>8} {:>6} {:>14} {:>9} {:>8}",
        "body", "bytes", "path", "cpu µs/body", "MB/s", "speedup"
    );
    for (label, node, body) in bodies {
        let node = NodeTarget::named(node);
        let mut micros = [0f64; 2];
        for (k, (path, parser)) in PATHS.into_iter().enumerate() {
            let mut interner = Interner::default();
            let mut out = Vec::new();
            let (start, mut rounds) = (thread_cpu(), 0u32);
            while thread_cpu() - start < Duration::from_secs(1) {
                out.clear();
                if let Err(e) = parser(body, &node, 0, &mut interner, &mut out) {
                    panic!("{label}: {e}");
                }
                rounds += 1;
            }
            micros[k] = (thread_cpu() - start).as_secs_f64() * 1e6 / f64::from(rounds);
            let mb_s = body.len() as f64 / micros[k];
            let speedup = if k == 0 { String::new() } else { format!("{:.2}x", micros[1] / micros[0]) };
            println!("{label:<14} {:>8} {path:>6} {:>14.1} {mb_s:>9.0} {speedup:>8}", body.len(), micros[k]);
        }
    }
}

criterion_group!(benches, parse);
criterion_main!(benches);
