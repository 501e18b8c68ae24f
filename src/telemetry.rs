//! The collector's own metrics, served at `/metrics` in Prometheus' text format, and what the
//! HTTP API reads: the last complete window and whether the source can list nodes.
//!
//! One process-wide [`Telemetry`] ([`global`]): sources, sinks and the collector thread record
//! into it with a call, no handle threaded through. Counters a run already keeps (windows,
//! metric sets, sink and dedup counters) are not copied: the run [`attach`](Telemetry::attach)es
//! them and `/metrics` reads them when scraped. Everything here is atomics or an `ArcSwap`, so
//! recording never waits on a reader and readers never touch a worker.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use heapster_dataflows::events::DedupCounters;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::batch::MetricBatch;
use crate::bridge::Stats;
use crate::sinks::SinkStats;
use crate::sources::clock::now_ms;

pub use crate::api::snapshot::Snapshot;

/// The `Content-Type` of [`Telemetry::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeOutcome {
    node: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabel {
    resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabel {
    sink: String,
}

/// Counters of the running collector, read when `/metrics` is scraped.
#[derive(Clone, Debug)]
pub struct RunCounters {
    pub stats: Arc<Stats>,
    pub sinks: Vec<(String, Arc<SinkStats>)>,
    pub events: Option<Arc<DedupCounters>>,
    /// The window length.
    pub resolution: Duration,
    /// The `--label_separator`, to read pod labels back for label selectors.
    pub label_separator: String,
}

/// The process's own metrics and the state the HTTP API serves.
pub struct Telemetry {
    registry: Registry,
    scrapes: Family<NodeOutcome, Counter>,
    scrape_seconds: AtomicHistogram,
    watch_restarts: Family<ResourceLabel, Counter>,
    sink_queue: Family<SinkLabel, Gauge>,
    shared: Arc<Shared>,
    /// Whether windows are turned into [`Snapshot`]s (only while the API server runs).
    publish: AtomicBool,
}

/// What the registry's collector and the API both read.
#[derive(Debug, Default)]
struct Shared {
    run: ArcSwapOption<RunCounters>,
    /// Wall-clock ms of the last checkpoint save (0: none).
    checkpoint_saved_ms: AtomicU64,
    /// Wall-clock ms when the last window reached the sinks (0: none yet).
    last_window_at_ms: AtomicU64,
    /// Why the node list cannot be had, while it cannot.
    nodes_failing: ArcSwapOption<String>,
    snapshot: ArcSwapOption<Snapshot>,
    started_ms: AtomicU64,
}

static GLOBAL: LazyLock<Telemetry> = LazyLock::new(Telemetry::new);

/// The process-wide telemetry.
pub fn global() -> &'static Telemetry {
    &GLOBAL
}

impl Telemetry {
    pub(crate) fn new() -> Telemetry {
        let mut registry = Registry::with_prefix("heapster");
        let info = Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]);
        registry.register("build", "The collector's version", info);
        let scrapes = Family::<NodeOutcome, Counter>::default();
        registry.register("node_scrapes", "Kubelet scrapes by node and outcome (ok, error)", scrapes.clone());
        let scrape_seconds =
            AtomicHistogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]);
        registry.register_with_unit(
            "node_scrape_duration",
            "How long a kubelet scrape took, failures included",
            Unit::Seconds,
            scrape_seconds.clone(),
        );
        let watch_restarts = Family::<ResourceLabel, Counter>::default();
        registry.register(
            "watch_restarts",
            "Watches that had to list again (410 Gone, a broken stream), by resource",
            watch_restarts.clone(),
        );
        let sink_queue = Family::<SinkLabel, Gauge>::default();
        registry.register(
            "sink_queue_depth",
            "Windows and event batches waiting in a sink's queue",
            sink_queue.clone(),
        );
        let shared = Arc::new(Shared::default());
        shared.started_ms.store(now_ms(), Ordering::Relaxed);
        registry.register_collector(Box::new(RunCollector(Arc::clone(&shared))));
        Telemetry {
            registry,
            scrapes,
            scrape_seconds,
            watch_restarts,
            sink_queue,
            shared,
            publish: AtomicBool::new(false),
        }
    }

    /// A run's counters, read from now on.
    pub fn attach(&self, run: RunCounters) {
        self.shared.run.store(Some(Arc::new(run)));
    }

    /// The attached run, if any.
    pub fn run(&self) -> Option<Arc<RunCounters>> {
        self.shared.run.load_full()
    }

    /// One kubelet scrape and how long it took.
    pub fn scrape(&self, node: &str, ok: bool, took: Duration) {
        let outcome = if ok { "ok" } else { "error" };
        self.scrapes.get_or_create(&NodeOutcome { node: node.to_string(), outcome }).inc();
        self.scrape_seconds.observe(took.as_secs_f64());
    }

    /// A watch of `resource` listed again after its start.
    pub fn watch_restart(&self, resource: &str) {
        self.watch_restarts.get_or_create(&ResourceLabel { resource: resource.to_string() }).inc();
    }

    /// How many inputs wait in a sink's queue now.
    pub fn sink_queue_depth(&self, sink: &str, depth: usize) {
        self.sink_queue.get_or_create(&SinkLabel { sink: sink.to_string() }).set(depth as i64);
    }

    /// The event checkpoint was saved.
    pub fn checkpoint_saved(&self) {
        self.shared.checkpoint_saved_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// The node list failed (`Some(why)`) or works again (`None`).
    pub fn nodes_failing(&self, why: Option<String>) {
        self.shared.nodes_failing.store(why.map(Arc::new));
    }

    pub fn nodes_failure(&self) -> Option<Arc<String>> {
        self.shared.nodes_failing.load_full()
    }

    /// Turns windows into snapshots for the API from now on.
    pub fn start_publishing(&self) {
        self.publish.store(true, Ordering::Relaxed);
    }

    /// A window reached the sinks: note when, and publish it for the API if it is served.
    pub fn window_complete(&self, batch: &MetricBatch) {
        self.shared.last_window_at_ms.store(now_ms(), Ordering::Relaxed);
        if !self.publish.load(Ordering::Relaxed) {
            return;
        }
        let (resolution, separator) = match self.run() {
            Some(run) => (run.resolution, run.label_separator.clone()),
            None => (Duration::from_secs(60), ",".to_string()),
        };
        self.shared.snapshot.store(Some(Arc::new(Snapshot::of(batch, resolution, &separator))));
    }

    /// The last complete window, as the API serves it.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.shared.snapshot.load_full()
    }

    /// Wall-clock ms when the last window reached the sinks, and when the process started.
    pub fn last_window_at_ms(&self) -> Option<u64> {
        Some(self.shared.last_window_at_ms.load(Ordering::Relaxed)).filter(|ms| *ms > 0)
    }

    pub fn started_ms(&self) -> u64 {
        self.shared.started_ms.load(Ordering::Relaxed)
    }

    /// Everything, in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!("encoding /metrics failed: {e}");
        }
        out
    }
}

/// A histogram of atomics. prometheus-client's `Histogram` sits behind a mutex that `/metrics`
/// holds while it encodes: on the API's idle-priority thread, preempted with the mutex held, it
/// would stall every scrape that records its latency until the API thread got a core again.
#[derive(Clone, Debug)]
struct AtomicHistogram(Arc<HistogramCells>);

#[derive(Debug)]
struct HistogramCells {
    /// Upper bounds, ascending, the last infinite (printed `+Inf`).
    bounds: Vec<f64>,
    /// Observations per bucket (not cumulative), as prometheus-client encodes them.
    counts: Vec<AtomicU64>,
    /// The sum of observations, as `f64` bits.
    sum: AtomicU64,
}

impl AtomicHistogram {
    fn new(bounds: impl IntoIterator<Item = f64>) -> AtomicHistogram {
        let bounds: Vec<f64> = bounds.into_iter().chain([f64::INFINITY]).collect();
        let counts = bounds.iter().map(|_| AtomicU64::new(0)).collect();
        AtomicHistogram(Arc::new(HistogramCells { bounds, counts, sum: AtomicU64::new(0f64.to_bits()) }))
    }

    fn observe(&self, value: f64) {
        let cells = &self.0;
        // NaN lands in the last bucket, as prometheus-client puts it.
        let bucket = cells.bounds.iter().position(|bound| value <= *bound).unwrap_or(cells.bounds.len() - 1);
        if let Some(count) = cells.counts.get(bucket) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        let add = |bits: u64| Some((f64::from_bits(bits) + value).to_bits());
        let _ = cells.sum.fetch_update(Ordering::Relaxed, Ordering::Relaxed, add);
    }
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        let cells = &self.0;
        let buckets: Vec<(f64, u64)> =
            cells.bounds.iter().zip(&cells.counts).map(|(b, c)| (*b, c.load(Ordering::Relaxed))).collect();
        // The count from the buckets read, so that `_count` equals the `+Inf` bucket.
        let count = buckets.iter().map(|(_, c)| c).sum();
        let sum = f64::from_bits(cells.sum.load(Ordering::Relaxed));
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        prometheus_client::metrics::MetricType::Histogram
    }
}

/// Reads the run's own counters at scrape time.
#[derive(Debug)]
struct RunCollector(Arc<Shared>);

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: f64,
) -> fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, unit, metric.metric_type())?)
}

/// One counter per sink, labelled `sink`.
fn per_sink(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    sinks: &[(String, Arc<SinkStats>)],
    value: impl Fn(&SinkStats) -> u64,
) -> fmt::Result {
    let mut family =
        encoder.encode_descriptor(name, help, None, prometheus_client::metrics::MetricType::Counter)?;
    for (sink, stats) in sinks {
        let label = SinkLabel { sink: sink.clone() };
        ConstCounter::new(value(stats)).encode(family.encode_family(&label)?)?;
    }
    Ok(())
}

impl Collector for RunCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let now = now_ms();
        let saved = self.0.checkpoint_saved_ms.load(Ordering::Relaxed);
        if saved > 0 {
            let age = now.saturating_sub(saved) as f64 / 1000.0;
            gauge(
                &mut encoder,
                "event_checkpoint_age",
                "Time since the event checkpoint was last saved",
                Some(&Unit::Seconds),
                age,
            )?;
        }
        let last = self.0.last_window_at_ms.load(Ordering::Relaxed);
        if last > 0 {
            let ts = last as f64 / 1000.0;
            gauge(
                &mut encoder,
                "last_window_exported_timestamp",
                "When the last window reached the sinks (Unix time)",
                Some(&Unit::Seconds),
                ts,
            )?;
        }
        let up = if self.0.nodes_failing.load().is_some() { 0.0 } else { 1.0 };
        gauge(
            &mut encoder,
            "source_nodes_listed",
            "1 while the source can list nodes, 0 while it cannot",
            None,
            up,
        )?;
        let Some(run) = self.0.run.load_full() else { return Ok(()) };
        let stats = &run.stats;
        counter(
            &mut encoder,
            "windows_exported",
            "Complete windows handed to the sinks",
            get(&stats.windows),
        )?;
        counter(&mut encoder, "metric_sets", "Metric sets in exported windows", get(&stats.metric_sets))?;
        counter(&mut encoder, "points", "Points (values) in exported windows", get(&stats.metric_values))?;
        counter(
            &mut encoder,
            "scrapes",
            "Node summaries fed to the workers, failures included",
            get(&stats.scrapes),
        )?;
        counter(
            &mut encoder,
            "scrape_errors",
            "Node summaries that failed or were rejected",
            get(&stats.scrape_errors),
        )?;
        counter(&mut encoder, "summary_bytes", "Bytes of node summaries parsed", get(&stats.summary_bytes))?;
        let windows = get(&stats.windows);
        if windows > 0 {
            let sets = get(&stats.metric_sets) as f64 / windows as f64;
            let points = get(&stats.metric_values) as f64 / windows as f64;
            gauge(
                &mut encoder,
                "window_metric_sets",
                "Metric sets per exported window, on average",
                None,
                sets,
            )?;
            gauge(&mut encoder, "window_points", "Points per exported window, on average", None, points)?;
        }
        let sinks = &run.sinks;
        per_sink(&mut encoder, "sink_points_written", "Points a sink wrote", sinks, |s| get(&s.points))?;
        per_sink(
            &mut encoder,
            "sink_points_dropped",
            "Points a sink dropped (queue full, refused, failed)",
            sinks,
            |s| get(&s.dropped_points),
        )?;
        per_sink(
            &mut encoder,
            "sink_windows_dropped",
            "Windows a sink dropped because its queue was full",
            sinks,
            |s| get(&s.dropped_windows),
        )?;
        per_sink(&mut encoder, "sink_errors", "Writes a sink gave up on", sinks, |s| get(&s.errors))?;
        per_sink(
            &mut encoder,
            "sink_retries",
            "Sends a sink tried again after a failure that may pass",
            sinks,
            |s| get(&s.retries),
        )?;
        per_sink(&mut encoder, "sink_events_written", "Events a sink wrote", sinks, |s| get(&s.events))?;
        per_sink(&mut encoder, "sink_events_dropped", "Events a sink dropped", sinks, |s| {
            get(&s.dropped_events)
        })?;
        if let Some(events) = &run.events {
            let exported = get(&events.exported);
            let duplicates = get(&events.duplicates);
            counter(
                &mut encoder,
                "events_seen",
                "Event states read from the API server",
                exported + duplicates,
            )?;
            counter(
                &mut encoder,
                "events_exported",
                "Event states exported (new uid, count or time)",
                exported,
            )?;
            counter(
                &mut encoder,
                "events_duplicates",
                "Event states dropped as already exported",
                duplicates,
            )?;
            counter(
                &mut encoder,
                "events_evicted",
                "Event states forgotten (past the TTL or over the entry limit)",
                get(&events.evicted_ttl) + get(&events.evicted_full),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_prometheus_names_with_units_and_totals() {
        let t = Telemetry::new();
        t.scrape("node-a", true, Duration::from_millis(30));
        t.scrape("node-a", false, Duration::from_millis(3));
        t.watch_restart("nodes");
        t.sink_queue_depth("log", 2);
        let stats = Arc::new(Stats::default());
        stats.windows.store(2, Ordering::Relaxed);
        stats.metric_sets.store(10, Ordering::Relaxed);
        let sink = Arc::new(SinkStats::default());
        sink.points.store(77, Ordering::Relaxed);
        sink.retries.store(3, Ordering::Relaxed);
        t.attach(RunCounters {
            stats,
            sinks: vec![("log".into(), sink)],
            events: Some(Arc::new(DedupCounters::default())),
            resolution: Duration::from_secs(5),
            label_separator: ",".into(),
        });
        let text = t.encode();
        for line in [
            "heapster_node_scrapes_total{node=\"node-a\",outcome=\"ok\"} 1",
            "heapster_node_scrapes_total{node=\"node-a\",outcome=\"error\"} 1",
            "heapster_node_scrape_duration_seconds_count 2",
            "heapster_node_scrape_duration_seconds_sum 0.033",
            "heapster_node_scrape_duration_seconds_bucket{le=\"0.005\"} 1",
            "heapster_node_scrape_duration_seconds_bucket{le=\"0.025\"} 1",
            "heapster_node_scrape_duration_seconds_bucket{le=\"0.05\"} 2",
            "heapster_node_scrape_duration_seconds_bucket{le=\"+Inf\"} 2",
            "heapster_watch_restarts_total{resource=\"nodes\"} 1",
            "heapster_sink_queue_depth{sink=\"log\"} 2",
            "heapster_windows_exported_total 2",
            "heapster_window_metric_sets 5.0",
            "heapster_sink_points_written_total{sink=\"log\"} 77",
            "heapster_sink_retries_total{sink=\"log\"} 3",
            "heapster_events_exported_total 0",
            "heapster_source_nodes_listed 1.0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
        assert!(text.contains("heapster_build_info{version=\""), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        t.nodes_failing(Some("connection refused".into()));
        assert!(t.encode().lines().any(|l| l == "heapster_source_nodes_listed 0.0"));
    }
}
