//! InfluxDB line protocol for metric sets, in Heapster's schema.
//!
//! One point per metric value: measurement = metric name, one field `value`, tags = the set's
//! labels plus `type` and `cluster_name` (labeled values add their resource tags). With
//! `with_fields` the name is split at its first `/` into measurement and field, as Heapster's
//! `withfields=true` did.
//!
//! This runs for every point of every window, so each set's tag block is escaped once and copied
//! for each of its points, and numbers are formatted without allocating.

use heapster_dataflows::catalog::{LABELED_RATES, RATES};
use heapster_dataflows::model::{LabeledMetric, Resource};
use heapster_dataflows::{LabeledMetricId, MetricId, MetricSet, Value};

use crate::batch::{MetricBatch, Window};

/// Labels Heapster's InfluxDB sink left out of tags: each is unique per pod or host, so as
/// tags they only multiplied series without helping any query (`pod_name`, `nodename` and
/// `namespace_name` identify the same things).
const EXCLUDED_TAGS: &[&str] = &["namespace_id", "pod_id", "hostname", "host_id"];

/// How points are shaped; the sink's URI options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineOptions {
    /// `cpu/usage_rate` as measurement `cpu`, field `usage_rate` (Heapster's `withfields`).
    pub with_fields: bool,
    pub cluster_name: String,
    /// Leave out the cumulative metrics that have a rate (Heapster's `disable_counter_metrics`).
    pub disable_counter_metrics: bool,
}

impl Default for LineOptions {
    fn default() -> Self {
        LineOptions {
            with_fields: false,
            cluster_name: "default".to_string(),
            disable_counter_metrics: false,
        }
    }
}

/// InfluxDB refuses a line whose series key (measurement and tags, as sent) is longer.
pub const MAX_KEY_BYTES: usize = 65_535;
/// A set's tags get at most this much of a key: the rest is room for the measurement and a
/// labeled value's resource tags.
const SET_TAG_BUDGET: usize = MAX_KEY_BYTES - 1_024;

/// What an encoding pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncodeStats {
    /// Points written as lines.
    pub written: usize,
    /// Points InfluxDB cannot store: float values that are NaN or infinite, and points whose
    /// series key would be too long even with the `labels` tag shortened.
    pub skipped: usize,
}

impl std::ops::AddAssign for EncodeStats {
    fn add_assign(&mut self, other: EncodeStats) {
        self.written += other.written;
        self.skipped += other.skipped;
    }
}

/// Where an encoding pass stopped, so a batch can be encoded one chunk at a time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    set: usize,
    /// Next index into `MetricId::ALL`.
    value: usize,
    /// Next index into the set's labeled values.
    labeled: usize,
}

impl Cursor {
    pub fn is_done(&self, batch: &MetricBatch) -> bool {
        self.set >= batch.sets.len()
    }

    /// Frees the sets the cursor has passed when the window owns them; the cursor moves with
    /// the rest.
    pub fn release(&mut self, window: &mut Window<'_>) {
        if let Some(batch) = window.owned_mut() {
            self.release_sets(batch);
        }
    }

    /// Drops the sets already encoded; the cursor then stands on the same set, now the first.
    pub fn release_sets(&mut self, batch: &mut MetricBatch) {
        let done = self.set.min(batch.sets.len());
        batch.sets.drain(..done);
        self.set -= done;
    }
}

/// Encodes metric batches, keeping its buffers between batches.
pub struct LineEncoder {
    opts: LineOptions,
    /// Bit per `MetricId` / `LabeledMetricId` left out by `disable_counter_metrics`.
    skip_metrics: u64,
    skip_labeled: u64,
    /// The current set's tags.
    set_tags: TagBlock,
    /// A labeled value's tags: the set's merged with its resource's.
    point_tags: Vec<u8>,
    /// Output buffer of [`LineEncoder::encode`].
    out: Vec<u8>,
    /// Escaped measurement and ` field=` of every catalog metric, computed once.
    heads: Vec<Head>,
    labeled_heads: Vec<Head>,
    /// Sets whose `labels` tag was shortened to fit InfluxDB's key limit.
    shortened: u64,
}

/// What a point of one metric starts with and what precedes its value.
#[derive(Clone, Debug, Default)]
struct Head {
    measurement: Vec<u8>,
    /// ` field=`.
    field: Vec<u8>,
}

impl Head {
    fn new(name: &str, with_fields: bool) -> Head {
        let (measurement, field) = match name.split_once('/') {
            Some((m, f)) if with_fields && !f.is_empty() => (m, f),
            Some((m, _)) if with_fields => (m, "value"),
            _ => (name, "value"),
        };
        let mut head = Head::default();
        push_escaped(&mut head.measurement, measurement, &MEASUREMENT_TABLE);
        head.field.push(b' ');
        push_escaped(&mut head.field, field, &TAG_TABLE);
        head.field.push(b'=');
        head
    }
}

/// One tag before escaping; higher `rank` wins when two share a key.
#[derive(Clone, Copy)]
struct Tag<'a> {
    key: &'a str,
    value: &'a str,
    rank: u8,
}

impl LineEncoder {
    pub fn new(opts: LineOptions) -> Self {
        let (mut skip_metrics, mut skip_labeled) = (0u64, 0u64);
        if opts.disable_counter_metrics {
            for (counter, _) in RATES {
                skip_metrics |= 1 << *counter as u64;
            }
            for (counter, _) in LABELED_RATES {
                skip_labeled |= 1 << *counter as u64;
            }
        }
        let heads = MetricId::ALL.iter().map(|id| Head::new(id.name(), opts.with_fields)).collect();
        let labeled_heads =
            LabeledMetricId::ALL.iter().map(|id| Head::new(id.name(), opts.with_fields)).collect();
        LineEncoder {
            heads,
            labeled_heads,
            opts,
            skip_metrics,
            skip_labeled,
            set_tags: TagBlock::default(),
            point_tags: Vec::with_capacity(512),
            out: Vec::new(),
            shortened: 0,
        }
    }

    /// Sets whose `labels` tag was shortened so that InfluxDB takes their points.
    pub fn shortened(&self) -> u64 {
        self.shortened
    }

    pub fn options(&self) -> &LineOptions {
        &self.opts
    }

    /// Encodes every point of `batch` in order, handing chunks of at most `max_points` lines to
    /// `emit` (bytes, number of points). Returns the totals.
    pub fn encode<'a, E>(
        &mut self,
        window: impl Into<Window<'a>>,
        max_points: usize,
        mut emit: impl FnMut(&[u8], usize) -> Result<(), E>,
    ) -> Result<EncodeStats, E> {
        let mut window = window.into();
        let mut out = std::mem::take(&mut self.out);
        let mut cursor = Cursor::default();
        let mut total = EncodeStats::default();
        let mut result = Ok(());
        while !cursor.is_done(window.batch()) {
            out.clear();
            let stats = self.encode_chunk(window.batch(), &mut cursor, max_points, &mut out);
            cursor.release(&mut window);
            total += stats;
            if stats.written > 0 {
                result = emit(&out, stats.written);
                if result.is_err() {
                    break;
                }
            }
        }
        self.out = out;
        result.map(|()| total)
    }

    /// Appends to `out` the next at most `max_points` points after `cursor`, and moves it on.
    /// Fewer points (possibly none) means the batch is done.
    pub fn encode_chunk(
        &mut self,
        batch: &MetricBatch,
        cursor: &mut Cursor,
        max_points: usize,
        out: &mut Vec<u8>,
    ) -> EncodeStats {
        let max_points = max_points.max(1);
        let mut stats = EncodeStats::default();
        let mut ts_buf = itoa::Buffer::new();
        let timestamp = ts_buf.format(batch.time.saturating_mul(1_000_000)).as_bytes();
        let LineEncoder {
            opts,
            skip_metrics,
            skip_labeled,
            set_tags,
            point_tags,
            out: _,
            heads,
            labeled_heads,
            shortened,
        } = self;
        let mut custom_head;
        let mut tags: Vec<Tag<'_>> = Vec::with_capacity(24);

        while let Some(set) = batch.sets.get(cursor.set) {
            let fresh = cursor.value == 0 && cursor.labeled == 0;
            match set_tag_block(set, &opts.cluster_name, &mut tags, set_tags) {
                Fit::Fits => {}
                Fit::Shortened => {
                    if fresh {
                        *shortened += 1;
                        tracing::warn!(
                            entity = %set.key,
                            "labels tag shortened: the series key would be over InfluxDB's {MAX_KEY_BYTES} bytes"
                        );
                    }
                }
                Fit::TooLong => {
                    let points = set.point_count();
                    tracing::warn!(
                        entity = %set.key,
                        points,
                        "points skipped: their series key is over InfluxDB's {MAX_KEY_BYTES} bytes"
                    );
                    stats.skipped += points;
                    *cursor = Cursor { set: cursor.set + 1, value: 0, labeled: 0 };
                    continue;
                }
            }

            while let Some(&id) = MetricId::ALL.get(cursor.value) {
                let Some(value) = set.values.get(id) else {
                    cursor.value += 1;
                    continue;
                };
                if *skip_metrics & (1 << id as u64) != 0 {
                    cursor.value += 1;
                    continue;
                }
                if !is_finite(value) {
                    stats.skipped += 1;
                    cursor.value += 1;
                    continue;
                }
                if stats.written == max_points {
                    return stats;
                }
                write_point(out, &heads[id as usize], &set_tags.bytes, value, timestamp);
                stats.written += 1;
                cursor.value += 1;
            }

            // Labeled values come grouped by resource: merge each resource's tags once.
            let mut merged: Option<&Resource> = None;
            while let Some(labeled) = set.labeled.get(cursor.labeled) {
                if let LabeledMetric::Catalog(id) = labeled.metric
                    && *skip_labeled & (1 << id as u64) != 0
                {
                    cursor.labeled += 1;
                    continue;
                }
                if !is_finite(labeled.value) {
                    stats.skipped += 1;
                    cursor.labeled += 1;
                    continue;
                }
                if stats.written == max_points {
                    return stats;
                }
                let tag_block: &[u8] = match &labeled.resource {
                    Resource::None => &set_tags.bytes,
                    resource if merged == Some(resource) => point_tags,
                    Resource::Id(id) => {
                        merge_resource_tags(&tags, set_tags, &[("resource_id", id)], point_tags);
                        merged = Some(&labeled.resource);
                        point_tags
                    }
                    Resource::Accelerator(a) => {
                        let resource =
                            [("accelerator_id", a.id.as_str()), ("make", &a.make), ("model", &a.model)];
                        merge_resource_tags(&tags, set_tags, &resource, point_tags);
                        merged = Some(&labeled.resource);
                        point_tags
                    }
                };
                let head = match &labeled.metric {
                    LabeledMetric::Catalog(id) => &labeled_heads[*id as usize],
                    LabeledMetric::Custom(custom) => {
                        custom_head = Head::new(&custom.name, opts.with_fields);
                        &custom_head
                    }
                };
                if head.measurement.len() + tag_block.len() > MAX_KEY_BYTES {
                    tracing::warn!(entity = %set.key, "a point skipped: its series key is over InfluxDB's {MAX_KEY_BYTES} bytes");
                    stats.skipped += 1;
                    cursor.labeled += 1;
                    continue;
                }
                write_point(out, head, tag_block, labeled.value, timestamp);
                stats.written += 1;
                cursor.labeled += 1;
            }

            *cursor = Cursor { set: cursor.set + 1, value: 0, labeled: 0 };
        }
        stats
    }

    /// The points `batch` would give and the values it would skip, without encoding them.
    pub fn count(&self, batch: &MetricBatch) -> EncodeStats {
        let mut stats = EncodeStats::default();
        for set in &batch.sets {
            for (id, value) in set.values.iter() {
                if self.skip_metrics & (1 << id as u64) == 0 {
                    tally(&mut stats, value);
                }
            }
            for labeled in &set.labeled {
                let left_out = matches!(labeled.metric,
                    LabeledMetric::Catalog(id) if self.skip_labeled & (1 << id as u64) != 0);
                if !left_out {
                    tally(&mut stats, labeled.value);
                }
            }
        }
        stats
    }
}

/// A set's escaped tags, `,k=v` each, and where each one starts.
#[derive(Default)]
struct TagBlock {
    bytes: Vec<u8>,
    starts: Vec<usize>,
}

impl TagBlock {
    fn segment(&self, i: usize) -> &[u8] {
        let end = self.starts.get(i + 1).copied().unwrap_or(self.bytes.len());
        &self.bytes[self.starts[i]..end]
    }
}

/// Whether a set's tags fit in a series key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fit {
    Fits,
    /// Only with the `labels` tag cut short (at a label boundary) or left out.
    Shortened,
    /// Not even without the `labels` tag.
    TooLong,
}

/// Collects the set's tags sorted by key into `tags` (kept for merging resource tags in later)
/// and escapes them into `block`, one segment per entry of `tags`. A block over the key budget
/// gets its `labels` tag shortened.
fn set_tag_block<'a>(
    set: &'a MetricSet,
    cluster_name: &'a str,
    tags: &mut Vec<Tag<'a>>,
    block: &mut TagBlock,
) -> Fit {
    collect_tags(set, cluster_name, tags, block);
    if block.bytes.len() <= SET_TAG_BUDGET {
        return Fit::Fits;
    }
    let excess = block.bytes.len() - SET_TAG_BUDGET;
    let Some(at) = tags.iter().position(|t| t.key == "labels") else { return Fit::TooLong };
    // The longest prefix whose escaped form is `excess` bytes shorter than the whole.
    let value = tags[at].value;
    let escaped = |b: &u8| if TAG_TABLE[usize::from(*b)] { 2 } else { 1 };
    let room = value.as_bytes().iter().map(escaped).sum::<usize>().saturating_sub(excess);
    let mut used = 0;
    let mut cut = 0;
    for b in value.as_bytes() {
        used += escaped(b);
        if used > room {
            break;
        }
        cut += 1;
    }
    while !value.is_char_boundary(cut) {
        cut -= 1;
    }
    let kept = value[..cut].rfind(',').map_or("", |comma| &value[..comma]);
    if kept.is_empty() {
        tags.remove(at);
    } else {
        tags[at].value = kept;
    }
    escape_tags(tags, block);
    if block.bytes.len() <= SET_TAG_BUDGET { Fit::Shortened } else { Fit::TooLong }
}

fn collect_tags<'a>(
    set: &'a MetricSet,
    cluster_name: &'a str,
    tags: &mut Vec<Tag<'a>>,
    block: &mut TagBlock,
) {
    tags.clear();
    for (id, value) in set.labels.iter() {
        tags.push(Tag { key: id.key(), value, rank: 0 });
    }
    tags.push(Tag { key: "type", value: set.key.type_label(), rank: 0 });
    // Labels copied from pod labels override Heapster's own, as they did in its label map; the
    // cluster name overrides everything, as Heapster set it last.
    for (key, value) in &set.labels.extra {
        tags.push(Tag { key, value, rank: 1 });
    }
    tags.push(Tag { key: "cluster_name", value: cluster_name, rank: 2 });
    tags.retain(|t| !t.key.is_empty() && !t.value.is_empty() && !EXCLUDED_TAGS.contains(&t.key));
    tags.sort_unstable_by(|a, b| a.key.cmp(b.key).then(b.rank.cmp(&a.rank)));
    tags.dedup_by(|later, first| later.key == first.key);
    escape_tags(tags, block);
}

fn escape_tags(tags: &[Tag<'_>], block: &mut TagBlock) {
    block.bytes.clear();
    block.starts.clear();
    for tag in tags.iter() {
        block.starts.push(block.bytes.len());
        push_tag(&mut block.bytes, tag.key, tag.value);
    }
}

/// Writes into `out` the set's tag block with `resource` tags (sorted by key) merged in at their
/// places; a resource tag replaces a set tag of the same key.
fn merge_resource_tags(tags: &[Tag<'_>], block: &TagBlock, resource: &[(&str, &str)], out: &mut Vec<u8>) {
    out.clear();
    let mut i = 0;
    for &(key, value) in resource {
        if value.is_empty() {
            continue;
        }
        while i < tags.len() && tags[i].key < key {
            out.extend_from_slice(block.segment(i));
            i += 1;
        }
        if i < tags.len() && tags[i].key == key {
            i += 1;
        }
        push_tag(out, key, value);
    }
    while i < tags.len() {
        out.extend_from_slice(block.segment(i));
        i += 1;
    }
}

fn write_point(out: &mut Vec<u8>, head: &Head, tags: &[u8], value: Value, timestamp: &[u8]) {
    out.extend_from_slice(&head.measurement);
    out.extend_from_slice(tags);
    out.extend_from_slice(&head.field);
    match value {
        Value::Int(i) => {
            out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
            out.push(b'i');
        }
        Value::Float(f) => out.extend_from_slice(ryu::Buffer::new().format_finite(f).as_bytes()),
    }
    out.push(b' ');
    out.extend_from_slice(timestamp);
    out.push(b'\n');
}

fn is_finite(value: Value) -> bool {
    match value {
        Value::Int(_) => true,
        Value::Float(f) => f.is_finite(),
    }
}

fn tally(stats: &mut EncodeStats, value: Value) {
    if is_finite(value) {
        stats.written += 1;
    } else {
        stats.skipped += 1;
    }
}

/// Characters a measurement escapes with a backslash.
const MEASUREMENT_SPECIAL: &[u8] = b", ";
/// Characters tag keys, tag values and field keys escape with a backslash.
const TAG_SPECIAL: &[u8] = b",= ";

/// Appends `,key=value`, both escaped.
pub(super) fn push_tag(out: &mut Vec<u8>, key: &str, value: &str) {
    out.push(b',');
    push_escaped(out, key, &TAG_TABLE);
    out.push(b'=');
    push_escaped(out, value, &TAG_TABLE);
}

/// Escapes per the line-protocol spec. Two things it cannot express are made safe instead: a line
/// break (which would end the line) becomes an escaped space, and trailing backslashes (which
/// would escape the separator that follows) are dropped.
fn push_escaped(out: &mut Vec<u8>, s: &str, table: &[bool; 256]) {
    let s = s.trim_end_matches('\\').as_bytes();
    if !s.iter().any(|b| table[usize::from(*b)]) {
        out.extend_from_slice(s);
        return;
    }
    for &b in s {
        match b {
            b'\n' | b'\r' => out.extend_from_slice(b"\\ "),
            b if table[usize::from(b)] => {
                out.push(b'\\');
                out.push(b);
            }
            b => out.push(b),
        }
    }
}

/// Which bytes need attention, one lookup per byte on the hot path.
const fn escape_table(special: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    table[b'\n' as usize] = true;
    table[b'\r' as usize] = true;
    let mut i = 0;
    while i < special.len() {
        table[special[i] as usize] = true;
        i += 1;
    }
    table
}

static MEASUREMENT_TABLE: [bool; 256] = escape_table(MEASUREMENT_SPECIAL);
static TAG_TABLE: [bool; 256] = escape_table(TAG_SPECIAL);

#[cfg(test)]
mod tests {
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
        let opts =
            LineOptions { with_fields: true, cluster_name: "my cluster".into(), ..LineOptions::default() };
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
        assert_eq!(
            chunks[0].0,
            "filesystem/usage,cluster_name=default,resource_id=/,type=from-pod value=1i 0\n"
        );
    }

    #[test]
    fn chunks_at_max_points_and_matches_one_pass() {
        let mut batch = MetricBatch { time: T, sets: Vec::new() };
        for i in 0..25 {
            let mut set = MetricSet::new(EntityKey::Node { node: format!("n{i}").as_str().into() });
            set.values.set(MetricId::MemoryUsage, Value::Int(i));
            set.values
                .set(MetricId::CpuNodeUtilization, Value::Float(if i == 3 { f64::INFINITY } else { 0.25 }));
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
        set.labeled.push(labeled(
            LabeledMetricId::DiskIoReadBytes,
            Resource::Id("sda".into()),
            Value::Int(5),
        ));
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
            write_point(&mut out, &Head::new("m", false), b"", Value::Float(f), b"0");
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
}
