use std::collections::BTreeSet;

use heapster_dataflows::model::{LabeledMetric, LabeledValue, Resource};
use heapster_dataflows::{EntityKey, LabelId, LabeledMetricId, MetricId, MetricSet, Value};

use super::*;
use crate::batch::MetricBatch;
use crate::sinks::influxdb::encode::{InfluxEncode, MAX_POINTS_PER_WRITE};
use crate::sinks::influxdb::events::EventEncoder;
use crate::sinks::influxdb::line_protocol::{LineEncoder, LineOptions};
use crate::sinks::queue::{Chunk, Encode, Encoded};

fn merged(lines: &str) -> String {
    let mut out = Vec::new();
    merge_lines(lines.as_bytes(), &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn adjacent_lines_of_one_series_and_time_become_one() {
    let lines = "cpu,t=a usage_rate=1i 5\ncpu,t=a limit=2i 5\nmemory,t=a usage=3i 5\nmemory,t=a rss=4.5 5\n\
                 cpu,t=b usage_rate=6i 5\n";
    assert_eq!(
        merged(lines),
        "cpu,t=a usage_rate=1i,limit=2i 5\nmemory,t=a usage=3i,rss=4.5 5\ncpu,t=b usage_rate=6i 5\n"
    );
}

#[test]
fn another_time_or_a_repeated_field_starts_a_new_line() {
    let lines = "m,t=a f=1i 5\nm,t=a g=2i 6\nm,t=a g=3i 6\nm,t=a h=4i 6\n";
    assert_eq!(merged(lines), "m,t=a f=1i 5\nm,t=a g=2i 6\nm,t=a g=3i,h=4i 6\n");
    // A field key with an escaped `=` is the whole key, not its first part.
    assert_eq!(merged("m a\\=b=1i 5\nm a=2i 5\n"), "m a\\=b=1i,a=2i 5\n");
    assert_eq!(merged("m a\\=b=1i 5\nm a\\=b=2i 5\n"), "m a\\=b=1i 5\nm a\\=b=2i 5\n");
}

#[test]
fn keys_are_compared_as_influxdb_parses_them() {
    // Escaped spaces belong to the key; a key that only starts like the open one is another.
    let lines = "m\\ x,t=a\\ b f=1i 5\nm\\ x,t=a\\ b g=2i 5\nm\\ x,t=a\\ bc f=3i 5\nm\\ x,t=a\\ b f=4i 5\n";
    assert_eq!(merged(lines), "m\\ x,t=a\\ b f=1i,g=2i 5\nm\\ x,t=a\\ bc f=3i 5\nm\\ x,t=a\\ b f=4i 5\n");
    // A backslash escapes whatever follows it, a backslash too.
    assert_eq!(merged("m,t=a\\\\ f=1i 5\nm,t=a\\\\ g=2i 5\n"), "m,t=a\\\\ f=1i,g=2i 5\n");
    // Field keys with escaped spaces keep them; the timestamp is after the last space.
    assert_eq!(merged("m,t=a f\\ x=1i 5\nm,t=a g=2 5\n"), "m,t=a f\\ x=1i,g=2 5\n");
}

#[test]
fn lines_of_another_shape_pass_through_unchanged() {
    let lines = "m,t=a f=1i 5\nnotime f=1i\nm,t=a f=1i 5\nm,t=a g=2i x5\n\nm,t=a g=3i -5\nm,t=a h=4i -5";
    assert_eq!(
        merged(lines),
        "m,t=a f=1i 5\nnotime f=1i\nm,t=a f=1i 5\nm,t=a g=2i x5\n\nm,t=a g=3i,h=4i -5\n"
    );
    assert_eq!(merged(""), "");
}

fn encode_with_fields() -> InfluxEncode {
    let opts = LineOptions { with_fields: true, ..LineOptions::default() };
    InfluxEncode { encoder: LineEncoder::new(opts), events: EventEncoder::new(true, "default") }
}

/// Every (series key, field, time) of `lines`, with its value.
fn points(lines: &str) -> BTreeSet<(String, String, String)> {
    let mut points = BTreeSet::new();
    for line in lines.lines() {
        let key_len = key_end(line.as_bytes()).unwrap();
        let parts = Parts::split(line.as_bytes(), key_len).unwrap();
        let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
        let fields = text(parts.field);
        let mut fields = fields.as_str();
        // The test's values are numbers and its field keys have no commas.
        while !fields.is_empty() {
            let (field, rest) = fields.split_once(',').unwrap_or((fields, ""));
            assert!(points.insert((text(parts.key), field.to_string(), text(parts.time))), "{line}");
            fields = rest;
        }
    }
    points
}

fn window(sets: usize) -> MetricBatch {
    let mut batch = MetricBatch { time: 1_700_000_000_000, sets: Vec::new() };
    for i in 0..sets {
        let mut set = MetricSet::new(EntityKey::PodContainer {
            ns: "ns".into(),
            pod: format!("pod-{i}").as_str().into(),
            container: "c".into(),
        });
        set.labels.set(LabelId::PodName, format!("pod-{i}").as_str().into());
        set.labels.set(LabelId::Labels, "app:web,tier:front end".into());
        set.values.set(MetricId::CpuUsage, Value::Int(i as i64));
        set.values.set(MetricId::CpuUsageRate, Value::Int(3));
        set.values.set(MetricId::CpuLimit, Value::Int(100));
        set.values.set(MetricId::MemoryUsage, Value::Int(1 << 20));
        set.values.set(MetricId::MemoryWorkingSet, Value::Int(512));
        // Skipped as today: not a number.
        set.values.set(MetricId::MemoryPageFaultsRate, Value::Float(f64::NAN));
        for fs in ["/", "Volume:data"] {
            for (metric, v) in [(LabeledMetricId::FsUsage, 7), (LabeledMetricId::FsLimit, 9)] {
                set.labeled.push(LabeledValue {
                    metric: LabeledMetric::Catalog(metric),
                    resource: Resource::Id(fs.into()),
                    value: Value::Int(v),
                });
            }
        }
        batch.sets.push(set);
    }
    batch
}

fn chunks(encode: &mut InfluxEncode, batch: &MetricBatch) -> (Vec<Chunk>, Encoded) {
    let mut chunks = Vec::new();
    let encoded = encode.metrics(batch.into(), &mut |c| chunks.push(c));
    (chunks, encoded)
}

#[test]
fn the_sink_writes_the_same_points_as_one_field_per_line() {
    // 10 values a set (one skipped), over 10,000 values in all: two chunks.
    let batch = window(1_500);
    let mut one_per_line = Vec::new();
    let stats = LineEncoder::new(LineOptions { with_fields: true, ..LineOptions::default() })
        .encode(&batch, usize::MAX, |bytes, _| {
            one_per_line.extend_from_slice(bytes);
            Ok::<(), ()>(())
        })
        .unwrap();
    let one_per_line = String::from_utf8(one_per_line).unwrap();
    assert_eq!((stats.written, stats.skipped), (13_500, 1_500));

    let (chunks, encoded) = chunks(&mut encode_with_fields(), &batch);
    assert_eq!(encoded.skipped, 1_500);
    assert_eq!(chunks.iter().map(|c| c.points).sum::<u64>(), 13_500);
    assert!(chunks.iter().all(|c| c.points <= MAX_POINTS_PER_WRITE as u64));
    assert_eq!(chunks.len(), 2);
    let text: String = chunks.iter().map(|c| std::str::from_utf8(&c.body).unwrap()).collect();
    assert_eq!(points(&text), points(&one_per_line));
    assert_eq!(points(&text).len(), 13_500);
    // cpu, memory, and filesystem for each of two resources: four lines a set, bar where a
    // chunk ends inside a series.
    let lines = text.lines().count();
    assert!((6_000..=6_002).contains(&lines), "{lines} lines");
    assert!(
        text.contains(",type=pod_container usage=0i,usage_rate=3i,limit=100i 1700000000000000000\n"),
        "{}",
        &text[..500]
    );
}

#[test]
fn default_schema_is_left_as_it_was() {
    let batch = window(3);
    let mut plain = Vec::new();
    LineEncoder::new(LineOptions::default())
        .encode(&batch, usize::MAX, |bytes, _| {
            plain.extend_from_slice(bytes);
            Ok::<(), ()>(())
        })
        .unwrap();
    let mut encode = InfluxEncode {
        encoder: LineEncoder::new(LineOptions::default()),
        events: EventEncoder::new(false, "default"),
    };
    let (chunks, _) = chunks(&mut encode, &batch);
    let body: Vec<u8> = chunks.iter().flat_map(|c| c.body.iter().copied()).collect();
    assert_eq!(body, plain);
}
