use heapster_dataflows::catalog::Kind;
use heapster_dataflows::model::LabeledValue;
use heapster_dataflows::{EntityKey, LabelId, LabeledMetricId, Name};

use super::*;

const T: u64 = 1_700_000_000_000;

fn labeled(id: LabeledMetricId, resource: Resource, value: Value) -> LabeledValue {
    LabeledValue { metric: LabeledMetric::Catalog(id), resource, value }
}

fn small_batch() -> MetricBatch {
    let mut node = MetricSet::new(EntityKey::Node { node: "n1".into() });
    node.labels.set(LabelId::Nodename, "n1".into());
    node.labels.set(LabelId::Hostname, "h1".into());
    node.labels.set(LabelId::HostId, "i-123".into());
    node.labels.set(LabelId::Schedulable, "true".into());
    node.labels.set(LabelId::ContainerName, "".into());
    node.values.set(MetricId::CpuUsage, Value::Int(1000));
    node.values.set(MetricId::CpuUsageRate, Value::Int(250));
    node.values.set(MetricId::MemoryNodeUtilization, Value::Float(0.5));

    let mut pod = MetricSet::new(EntityKey::PodContainer {
        ns: "kube-system".into(),
        pod: "dns-1".into(),
        container: "dnsmasq".into(),
    });
    pod.labels.set(LabelId::NamespaceName, "kube-system".into());
    pod.labels.set(LabelId::PodName, "dns-1".into());
    pod.labels.set(LabelId::PodId, "uid-1".into());
    pod.labels.set(LabelId::ContainerName, "dnsmasq".into());
    pod.labels.set(LabelId::ContainerBaseImage, "img:1".into());
    pod.labels.set(LabelId::Labels, "app:dns,tier:x y".into());
    pod.labels.set_extra(vec![(Name::new("team"), Name::new("a=b"))]);
    pod.values.set(MetricId::MemoryUsage, Value::Int(1024));
    pod.values.set(MetricId::MemoryPageFaultsRate, Value::Float(f64::NAN));
    pod.labeled.push(labeled(LabeledMetricId::FsUsage, Resource::Id("/".into()), Value::Int(5)));
    pod.labeled.push(labeled(
        LabeledMetricId::AcceleratorMemoryUsed,
        Resource::accelerator("nvidia".into(), "tesla k80".into(), "gpu0".into()),
        Value::Int(7),
    ));
    pod.labeled.push(LabeledValue {
        metric: LabeledMetric::custom("custom/requests".into(), Kind::Gauge),
        resource: Resource::None,
        value: Value::Float(1.5),
    });
    MetricBatch { time: T, sets: vec![node, pod] }
}

fn encode_all(
    opts: LineOptions,
    batch: &MetricBatch,
    max_points: usize,
) -> (Vec<(String, usize)>, EncodeStats) {
    let mut enc = LineEncoder::new(opts);
    let mut chunks = Vec::new();
    let stats = enc
        .encode(batch, max_points, |bytes, n| {
            chunks.push((String::from_utf8(bytes.to_vec()).unwrap(), n));
            Ok::<(), ()>(())
        })
        .unwrap();
    (chunks, stats)
}

const NODE_TAGS: &str = "cluster_name=default,nodename=n1,schedulable=true,type=node";
const POD_TAGS_A: &str = "cluster_name=default,container_base_image=img:1,container_name=dnsmasq,\
                          labels=app:dns\\,tier:x\\ y,namespace_name=kube-system,pod_name=dns-1";
const POD_TAGS_B: &str = "team=a\\=b,type=pod_container";
const TS: &str = "1700000000000000000";

#[test]
fn heapster_schema_exact_bytes() {
    let (chunks, stats) = encode_all(LineOptions::default(), &small_batch(), 10_000);
    let expected = [
        format!("cpu/usage,{NODE_TAGS} value=1000i {TS}"),
        format!("cpu/usage_rate,{NODE_TAGS} value=250i {TS}"),
        format!("memory/node_utilization,{NODE_TAGS} value=0.5 {TS}"),
        format!("memory/usage,{POD_TAGS_A},{POD_TAGS_B} value=1024i {TS}"),
        format!("filesystem/usage,{POD_TAGS_A},resource_id=/,{POD_TAGS_B} value=5i {TS}"),
        format!(
            "accelerator/memory_used,accelerator_id=gpu0,cluster_name=default,container_base_image=img:1,\
             container_name=dnsmasq,labels=app:dns\\,tier:x\\ y,make=nvidia,model=tesla\\ k80,\
             namespace_name=kube-system,pod_name=dns-1,{POD_TAGS_B} value=7i {TS}"
        ),
        format!("custom/requests,{POD_TAGS_A},{POD_TAGS_B} value=1.5 {TS}"),
    ];
    let expected: String = expected.iter().map(|l| format!("{l}\n")).collect();
    assert_eq!(chunks, vec![(expected, 7)]);
    assert_eq!(stats, EncodeStats { written: 7, skipped: 1 });
}

#[test]
fn with_fields_splits_name_at_first_slash() {
    let mut batch = small_batch();
    batch.sets[0].values.set(MetricId::Uptime, Value::Int(9));
    batch.sets.truncate(1);
    batch.sets[0].labeled.push(LabeledValue {
        metric: LabeledMetric::custom("custom/a/b".into(), Kind::Gauge),
        resource: Resource::None,
        value: Value::Int(1),
    });
    let opts = LineOptions { with_fields: true, ..LineOptions::default() };
    let (chunks, _) = encode_all(opts, &batch, 100);
    let lines: Vec<&str> = chunks[0].0.lines().collect();
    assert_eq!(
        lines,
        vec![
            format!("cpu,{NODE_TAGS} usage=1000i {TS}"),
            format!("cpu,{NODE_TAGS} usage_rate=250i {TS}"),
            format!("memory,{NODE_TAGS} node_utilization=0.5 {TS}"),
            format!("uptime,{NODE_TAGS} value=9i {TS}"),
            format!("custom,{NODE_TAGS} a/b=1i {TS}"),
        ]
    );
}

#[test]
fn escapes_per_spec_and_keeps_lines_whole() {
    let mut set = MetricSet::new(EntityKey::Cluster);
    set.labels.set_extra(vec![
        (Name::new("k,e y"), Name::new("v=1,2 3")),
        (Name::new("multi"), Name::new("line\nbreak")),
        (Name::new("trail"), Name::new("back\\")),
    ]);
    set.labeled.push(LabeledValue {
        metric: LabeledMetric::custom("custom/a b,c=d".into(), Kind::Gauge),
        resource: Resource::None,
        value: Value::Int(1),
    });
    let batch = MetricBatch { time: 1, sets: vec![set] };
    let (chunks, _) = encode_all(LineOptions::default(), &batch, 10);
    assert_eq!(
        chunks[0].0,
        "custom/a\\ b\\,c=d,cluster_name=default,k\\,e\\ y=v\\=1\\,2\\ 3,multi=line\\ break,trail=back,\
         type=cluster value=1i 1000000\n"
    );
    let opts = LineOptions { with_fields: true, cluster_name: "my cluster".into(), ..LineOptions::default() };
    let (chunks, _) = encode_all(opts, &batch, 10);
    assert!(chunks[0].0.starts_with("custom,cluster_name=my\\ cluster,"), "{}", chunks[0].0);
    assert!(chunks[0].0.contains(" a\\ b\\,c\\=d=1i "), "{}", chunks[0].0);
}

#[test]
fn tag_collisions_resolve_like_heapsters_label_map() {
    let mut set = MetricSet::new(EntityKey::Node { node: "n".into() });
    set.labels.set_extra(vec![
        (Name::new("type"), Name::new("from-pod")),
        (Name::new("cluster_name"), Name::new("ignored")),
        (Name::new("resource_id"), Name::new("ignored-too")),
        (Name::new("pod_id"), Name::new("excluded")),
    ]);
    set.labeled.push(labeled(LabeledMetricId::FsUsage, Resource::Id("/".into()), Value::Int(1)));
    let batch = MetricBatch { time: 0, sets: vec![set] };
    let (chunks, _) = encode_all(LineOptions::default(), &batch, 10);
    assert_eq!(chunks[0].0, "filesystem/usage,cluster_name=default,resource_id=/,type=from-pod value=1i 0\n");
}

#[test]
fn chunks_at_max_points_and_matches_one_pass() {
    let mut batch = MetricBatch { time: T, sets: Vec::new() };
    for i in 0..25 {
        let mut set = MetricSet::new(EntityKey::Node { node: format!("n{i}").as_str().into() });
        set.values.set(MetricId::MemoryUsage, Value::Int(i));
        set.values.set(MetricId::CpuNodeUtilization, Value::Float(if i == 3 { f64::INFINITY } else { 0.25 }));
        set.labeled.push(labeled(LabeledMetricId::FsUsage, Resource::Id("/".into()), Value::Int(i)));
        batch.sets.push(set);
    }
    let (whole, whole_stats) = encode_all(LineOptions::default(), &batch, usize::MAX);
    let (chunks, stats) = encode_all(LineOptions::default(), &batch, 10);
    assert_eq!(stats, whole_stats);
    assert_eq!(stats, EncodeStats { written: 74, skipped: 1 });
    let sizes: Vec<usize> = chunks.iter().map(|(_, n)| *n).collect();
    assert_eq!(sizes, vec![10, 10, 10, 10, 10, 10, 10, 4]);
    for (text, n) in &chunks {
        assert_eq!(text.lines().count(), *n);
    }
    let joined: String = chunks.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(joined, whole[0].0);
    assert_eq!(LineEncoder::new(LineOptions::default()).count(&batch), stats);

    // An owned window frees what it has encoded and still writes the same chunks.
    let mut owned = Vec::new();
    let mut enc = LineEncoder::new(LineOptions::default());
    let owned_stats = enc
        .encode(batch.clone(), 10, |bytes, n| {
            owned.push((String::from_utf8(bytes.to_vec()).unwrap(), n));
            Ok::<(), ()>(())
        })
        .unwrap();
    assert_eq!((owned, owned_stats), (chunks, stats));
}

#[test]
fn release_drops_encoded_sets_and_keeps_the_place() {
    let mut batch = MetricBatch { time: T, sets: Vec::new() };
    for i in 0..6 {
        let mut set = MetricSet::new(EntityKey::Node { node: format!("n{i}").as_str().into() });
        set.values.set(MetricId::MemoryUsage, Value::Int(i));
        set.values.set(MetricId::MemoryWorkingSet, Value::Int(i));
        batch.sets.push(set);
    }
    let mut enc = LineEncoder::new(LineOptions::default());
    let mut cursor = Cursor::default();
    let mut out = Vec::new();
    // 5 points: sets 0 and 1 whole, half of set 2.
    assert_eq!(enc.encode_chunk(&batch, &mut cursor, 5, &mut out).written, 5);
    cursor.release_sets(&mut batch);
    assert_eq!(batch.sets.len(), 4, "sets 0 and 1 are gone");
    assert_eq!(batch.sets[0].key, EntityKey::Node { node: "n2".into() });
    out.clear();
    assert_eq!(enc.encode_chunk(&batch, &mut cursor, 1, &mut out).written, 1);
    let line = String::from_utf8(out).unwrap();
    assert!(line.starts_with("memory/working_set,") && line.contains(" value=2i "), "{line}");
}

#[test]
fn owned_window_empties_encoded_sets_and_writes_the_same_bytes() {
    let batch = small_batch();
    let (borrowed, _) = encode_all(LineOptions::default(), &batch, 2);
    // Chunk by chunk, as the file sink encodes an owned window.
    let mut enc = LineEncoder::new(LineOptions::default());
    let mut window = Window::Owned(batch.clone());
    let mut cursor = Cursor::default();
    let mut owned = Vec::new();
    let mut out = Vec::new();
    out.clear();
    let first = enc.encode_chunk(window.batch(), &mut cursor, 4, &mut out);
    owned.push((String::from_utf8(out.clone()).unwrap(), first.written));
    cursor.release(&mut window);
    let node = &window.batch().sets[0];
    assert!(node.values.is_empty() && node.labels == Labels::default(), "the node set, encoded, is emptied");
    let pod = &window.batch().sets[1];
    assert_eq!(pod.values, batch.sets[1].values, "the pod set, half encoded, is whole");
    while !cursor.is_done(window.batch()) {
        out.clear();
        let stats = enc.encode_chunk(window.batch(), &mut cursor, 2, &mut out);
        cursor.release(&mut window);
        if stats.written > 0 {
            owned.push((String::from_utf8(out.clone()).unwrap(), stats.written));
        }
    }
    assert!(window.batch().sets.is_empty(), "every set is freed at the end");
    let join = |chunks: &[(String, usize)]| chunks.iter().map(|(c, _)| c.as_str()).collect::<String>();
    assert_eq!(join(&owned), join(&borrowed));
}

#[test]
fn skips_non_finite_and_counts_them() {
    let mut set = MetricSet::new(EntityKey::Cluster);
    set.values.set(MetricId::CpuNodeUtilization, Value::Float(f64::NAN));
    set.values.set(MetricId::MemoryNodeUtilization, Value::Float(f64::NEG_INFINITY));
    set.labeled.push(labeled(
        LabeledMetricId::DiskIoReadBytesRate,
        Resource::Id("sda".into()),
        Value::Float(f64::NAN),
    ));
    let batch = MetricBatch { time: 0, sets: vec![set] };
    let (chunks, stats) = encode_all(LineOptions::default(), &batch, 10);
    assert!(chunks.is_empty());
    assert_eq!(stats, EncodeStats { written: 0, skipped: 3 });
}

#[test]
fn disable_counter_metrics_leaves_out_counters_with_rates() {
    let mut set = MetricSet::new(EntityKey::Node { node: "n".into() });
    set.values.set(MetricId::CpuUsage, Value::Int(1));
    set.values.set(MetricId::CpuUsageRate, Value::Int(2));
    set.values.set(MetricId::NetworkRx, Value::Int(3));
    set.values.set(MetricId::Uptime, Value::Int(4));
    set.labeled.push(labeled(LabeledMetricId::DiskIoReadBytes, Resource::Id("sda".into()), Value::Int(5)));
    set.labeled.push(labeled(LabeledMetricId::FsUsage, Resource::Id("/".into()), Value::Int(6)));
    let batch = MetricBatch { time: 0, sets: vec![set] };
    let opts = LineOptions { disable_counter_metrics: true, ..LineOptions::default() };
    let (chunks, stats) = encode_all(opts.clone(), &batch, 10);
    let names: Vec<&str> = chunks[0].0.lines().map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(names, vec!["cpu/usage_rate", "uptime", "filesystem/usage"]);
    assert_eq!(stats.written, 3);
    assert_eq!(LineEncoder::new(opts).count(&batch), stats);
}

#[test]
fn floats_use_forms_influxdb_parses() {
    let mut out = Vec::new();
    for f in [1e20, 1.5e-7, 123.0, -0.0, f64::MAX, 5e-324] {
        write_point(&mut out, &Head::new("m", false), b"", Value::Float(f), b" 0\n");
    }
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "m value=1e20 0\nm value=1.5e-7 0\nm value=123.0 0\nm value=-0.0 0\n\
         m value=1.7976931348623157e308 0\nm value=5e-324 0\n"
    );
}

#[test]
fn tags_too_long_even_without_labels_skip_the_set() {
    let mut pod = MetricSet::new(EntityKey::Pod { ns: "ns".into(), pod: "p".into() });
    pod.labels.set(LabelId::Labels, "a:b".into());
    pod.labels.extra.push(("huge".into(), "v".repeat(70_000).as_str().into()));
    pod.values.set(MetricId::MemoryUsage, Value::Int(1));
    pod.values.set(MetricId::CpuUsageRate, Value::Int(2));
    let mut node = MetricSet::new(EntityKey::Node { node: "n1".into() });
    node.values.set(MetricId::MemoryUsage, Value::Int(3));
    let batch = MetricBatch { time: T, sets: vec![pod, node] };
    let mut encoder = LineEncoder::new(LineOptions::default());
    let mut out = Vec::new();
    let stats = encoder.encode_chunk(&batch, &mut Cursor::default(), 100, &mut out);
    assert_eq!(stats, EncodeStats { written: 1, skipped: 2 });
    assert_eq!(encoder.shortened(), 0);
    assert!(String::from_utf8(out).unwrap().starts_with("memory/usage,cluster_name=default,type=node "));
}

/// The escaping rules, one byte at a time: what the word-at-a-time scan must give.
fn escaped_bytewise(s: &str, special: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in s.trim_end_matches('\\').as_bytes() {
        match b {
            b'\n' | b'\r' => out.extend_from_slice(b"\\ "),
            b if special.contains(&b) => out.extend_from_slice(&[b'\\', b]),
            b => out.push(b),
        }
    }
    out
}

#[test]
fn word_scan_escapes_every_special_byte_at_every_offset() {
    // Every special (and near-miss bytes around them) at every place of strings of up to three
    // words, so matches land in each byte of a word, across words and in the tail.
    let near = ['\n', '\r', ' ', ',', '=', '\\', '!', '<', '>', '-', '+', '\u{0b}', '\u{0c}', 'é', 'a'];
    for len in 0..25 {
        for at in 0..len.max(1) {
            for &c in &near {
                for &second in &[None, Some(','), Some('\n'), Some('=')] {
                    let mut s: Vec<char> = (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect();
                    if len > 0 {
                        s[at] = c;
                        if let Some(d) = second {
                            let other = (at * 7 + 3) % len;
                            s[other] = d;
                        }
                    }
                    let s: String = s.into_iter().collect();
                    for (table, special) in
                        [(&TAG_TABLE, TAG_SPECIAL), (&MEASUREMENT_TABLE, MEASUREMENT_SPECIAL)]
                    {
                        let mut out = Vec::new();
                        push_escaped(&mut out, &s, table);
                        assert_eq!(out, escaped_bytewise(&s, special), "{s:?}");
                    }
                }
            }
        }
    }
}

#[test]
fn tag_buffer_keeps_its_allocation_between_chunks() {
    let mut tags: Vec<Tag<'_>> = Vec::with_capacity(24);
    let key = String::from("k");
    tags.push(Tag { key: &key, head: &[], value: &key, rank: 0 });
    let before = tags.as_ptr() as usize;
    let reused: Vec<Tag<'static>> = reuse(tags);
    assert!(reused.is_empty());
    assert!(reused.capacity() >= 24);
    assert_eq!(reused.as_ptr() as usize, before, "the same allocation");
}
