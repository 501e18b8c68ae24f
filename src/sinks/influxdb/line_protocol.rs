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
use heapster_dataflows::model::{EntityKey, LabelId, LabeledMetric, Labels, Resource, Values};
use heapster_dataflows::{LabeledMetricId, MetricId, MetricSet, Value};

use crate::batch::{MetricBatch, Window, prefetch};

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

/// Encoded sets an owned window keeps at least before [`Cursor::release`] frees them (emptied,
/// a couple of hundred bytes each).
pub const RELEASE_SETS: usize = 1024;

/// Where an encoding pass stopped, so a batch can be encoded one chunk at a time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    set: usize,
    /// Next index into `MetricId::ALL`.
    value: usize,
    /// Next index into the set's labeled values.
    labeled: usize,
    /// Sets before this one have been emptied ([`Cursor::release`]).
    emptied: usize,
}

impl Cursor {
    pub fn is_done(&self, batch: &MetricBatch) -> bool {
        self.set >= batch.sets.len()
    }

    /// Frees the sets the cursor has passed when the window owns them; the cursor moves with
    /// the rest. Sets are freed [`RELEASE_SETS`] or an eighth of those left at a time (or all at
    /// the end): each release shifts the rest left, which a release per small chunk would
    /// repeat for little gain (a thousand at a time moved 35 MB a window at 94,000 sets).
    ///
    /// What each encoded set holds (key, labels, values) is freed at once, a chunk at a time,
    /// while it is still in the CPU's caches from encoding: freed a thousand sets later, every
    /// name's reference count and every freed block was a trip to memory again.
    pub fn release(&mut self, window: &mut Window<'_>) {
        let Some(batch) = window.owned_mut() else { return };
        let end = self.set.min(batch.sets.len());
        for set in batch.sets.get_mut(self.emptied.min(end)..end).unwrap_or_default() {
            let body: &mut heapster_dataflows::model::SetBody = set;
            body.key = EntityKey::Cluster;
            body.labels = Labels::default();
            body.values = Values::default();
            body.labeled = Vec::new();
        }
        self.emptied = end;
        if self.set >= RELEASE_SETS.max(batch.sets.len() / 8) || self.is_done(batch) {
            self.release_sets(batch);
        }
    }

    /// Drops the sets already encoded; the cursor then stands on the same set, now the first.
    pub fn release_sets(&mut self, batch: &mut MetricBatch) {
        let done = self.set.min(batch.sets.len());
        batch.sets.drain(..done);
        self.set -= done;
        self.emptied = self.emptied.saturating_sub(done);
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
    /// The current set's tags before escaping, empty between chunks: kept for its allocation,
    /// as a fresh one of over a kilobyte made glibc consolidate the freed sets' memory at
    /// every chunk.
    tags: Vec<Tag<'static>>,
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
    /// `,key=` escaped, for the set's own keys (escaped once); empty for other keys.
    head: &'a [u8],
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
            tags: Vec::with_capacity(24),
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
        let mut tags = reuse(std::mem::take(&mut self.tags));
        let stats = self.encode_sets(batch, cursor, max_points, out, &mut tags);
        self.tags = reuse(tags);
        stats
    }

    fn encode_sets<'a>(
        &'a mut self,
        batch: &'a MetricBatch,
        cursor: &mut Cursor,
        max_points: usize,
        out: &mut Vec<u8>,
        tags: &mut Vec<Tag<'a>>,
    ) -> EncodeStats {
        let max_points = max_points.max(1);
        let mut stats = EncodeStats::default();
        let mut ts_buf = itoa::Buffer::new();
        // ` <timestamp>\n`: the same end for every line of the batch.
        let mut end = Vec::with_capacity(24);
        end.push(b' ');
        end.extend_from_slice(ts_buf.format(batch.time.saturating_mul(1_000_000)).as_bytes());
        end.push(b'\n');
        let end = end.as_slice();
        let LineEncoder {
            opts,
            skip_metrics,
            skip_labeled,
            set_tags,
            point_tags,
            tags: _,
            out: _,
            heads,
            labeled_heads,
            shortened,
        } = self;
        let mut custom_head;

        while let Some(set) = batch.sets.get(cursor.set) {
            prefetch_sets(&batch.sets, cursor.set);
            let fresh = cursor.value == 0 && cursor.labeled == 0;
            match set_tag_block(set, &opts.cluster_name, tags, set_tags) {
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
                    *cursor = Cursor { set: cursor.set + 1, value: 0, labeled: 0, ..*cursor };
                    continue;
                }
            }

            // The values present and not left out, from the cursor on: a set has 10 to 25 of
            // the catalog's metrics.
            let from = u64::MAX.checked_shl(cursor.value as u32).unwrap_or(0);
            let mut bits = set.values.mask() & !*skip_metrics & from;
            while bits != 0 {
                // A value's bit is its metric's place in the catalog.
                let at = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let Some(&id) = MetricId::ALL.get(at) else { break };
                let Some(value) = set.values.get(id) else { continue };
                if !is_finite(value) {
                    stats.skipped += 1;
                    continue;
                }
                if stats.written == max_points {
                    cursor.value = at;
                    return stats;
                }
                write_point(out, &heads[at], &set_tags.bytes, value, end);
                stats.written += 1;
            }
            cursor.value = MetricId::ALL.len();

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
                        merge_resource_tags(tags, set_tags, &[("resource_id", id)], point_tags);
                        merged = Some(&labeled.resource);
                        point_tags
                    }
                    Resource::Accelerator(a) => {
                        let resource =
                            [("accelerator_id", a.id.as_str()), ("make", &a.make), ("model", &a.model)];
                        merge_resource_tags(tags, set_tags, &resource, point_tags);
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
                write_point(out, head, tag_block, labeled.value, end);
                stats.written += 1;
                cursor.labeled += 1;
            }

            *cursor = Cursor { set: cursor.set + 1, value: 0, labeled: 0, ..*cursor };
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

/// An emptied vector of tags, its allocation kept for tags of another lifetime.
fn reuse<'b>(mut tags: Vec<Tag<'_>>) -> Vec<Tag<'b>> {
    tags.clear();
    // Collecting from a vector's own iterator into the same layout reuses its allocation; the
    // closure never runs, and `filter` could not change the lifetime.
    #[allow(clippy::unnecessary_filter_map)]
    tags.into_iter().filter_map(|_| None).collect()
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
    let escaped = |b: &u8| if TAG_TABLE.is_special(*b) { 2 } else { 1 };
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

/// A set's own tag keys (Heapster's labels, `type`, `cluster_name`), sorted by key once: a set's
/// tags are then a merge with its extra labels (already sorted), not a sort per set.
#[derive(Clone, Copy)]
enum Own {
    Label(LabelId),
    Type,
    Cluster,
}

static OWN_TAGS: std::sync::LazyLock<Vec<(&'static str, Own, Vec<u8>)>> = std::sync::LazyLock::new(|| {
    let mut own: Vec<(&'static str, Own)> =
        LabelId::ALL.iter().map(|id| (id.key(), Own::Label(*id))).collect();
    own.push(("type", Own::Type));
    own.push(("cluster_name", Own::Cluster));
    own.retain(|(key, _)| !EXCLUDED_TAGS.contains(key));
    own.sort_unstable_by_key(|(key, _)| *key);
    own.into_iter()
        .map(|(key, id)| {
            let mut head = vec![b','];
            push_escaped(&mut head, key, &TAG_TABLE);
            head.push(b'=');
            (key, id, head)
        })
        .collect()
});

/// The set's tags sorted by key, one per key: of several for one key, the cluster name wins over
/// a label copied from pod labels, which wins over Heapster's own (as in Heapster's label map,
/// where the cluster name was set last). Empty keys and values, and [`EXCLUDED_TAGS`], are left
/// out.
fn collect_tags<'a>(
    set: &'a MetricSet,
    cluster_name: &'a str,
    tags: &mut Vec<Tag<'a>>,
    block: &mut TagBlock,
) {
    tags.clear();
    let mut extra = set
        .labels
        .extra
        .iter()
        .map(|(key, value)| Tag { key, head: &[], value, rank: 1 })
        .filter(|t| !t.key.is_empty() && !t.value.is_empty() && !EXCLUDED_TAGS.contains(&t.key))
        .peekable();
    // Extras are sorted by key; the first of several for one key is kept.
    let push = |tags: &mut Vec<Tag<'a>>, tag: Tag<'a>| {
        if tags.last().is_none_or(|last| last.key != tag.key) {
            tags.push(tag);
        }
    };
    for (key, own, head) in OWN_TAGS.iter() {
        let (key, own) = (*key, *own);
        while let Some(tag) = extra.next_if(|t| t.key < key) {
            push(tags, tag);
        }
        let (value, rank) = match own {
            Own::Label(id) => (set.labels.get(id).map_or("", |v| v.as_str()), 0),
            Own::Type => (set.key.type_label(), 0),
            Own::Cluster => (cluster_name, 2),
        };
        let mut best = (!value.is_empty()).then_some(Tag { key, head, value, rank });
        while let Some(tag) = extra.next_if(|t| t.key == key) {
            if best.is_none_or(|b| tag.rank > b.rank) {
                best = Some(tag);
            }
        }
        if let Some(tag) = best {
            tags.push(tag);
        }
    }
    for tag in extra {
        push(tags, tag);
    }
    escape_tags(tags, block);
}

fn escape_tags(tags: &[Tag<'_>], block: &mut TagBlock) {
    block.bytes.clear();
    block.starts.clear();
    for tag in tags.iter() {
        block.starts.push(block.bytes.len());
        if tag.head.is_empty() {
            push_tag(&mut block.bytes, tag.key, tag.value);
        } else {
            block.bytes.extend_from_slice(tag.head);
            push_escaped(&mut block.bytes, tag.value, &TAG_TABLE);
        }
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

/// Asks the CPU for the sets after `at` ahead of time. A window's sets were built on other
/// threads and lie all over the heap: without this, the encoder waits on memory at every set
/// (its body, then its values and labeled values), which was most of its time.
#[inline]
fn prefetch_sets(sets: &[MetricSet], at: usize) {
    // The body four sets ahead (its cache lines); what the set two ahead points to, its body
    // asked for two sets ago: its values and labeled values, every line of them, and its label
    // strings (a string's length lies just before its bytes, most often in the same line).
    if let Some(set) = sets.get(at + 4) {
        let body: &heapster_dataflows::model::SetBody = set;
        prefetch_lines((body as *const heapster_dataflows::model::SetBody).cast(), size_of_val(body));
    }
    if let Some(set) = sets.get(at + 2) {
        prefetch_lines(set.values.as_ptr().cast(), set.values.len() * size_of::<u64>());
        prefetch_lines(set.labeled.as_ptr().cast(), size_of_val(set.labeled.as_slice()));
        for (_, own, _) in OWN_TAGS.iter() {
            if let Own::Label(id) = own
                && let Some(name) = set.labels.get(*id)
            {
                prefetch(name.as_str().as_ptr());
            }
        }
    }
}

/// Prefetches the lines of `len` bytes at `start`, at most four.
#[inline]
fn prefetch_lines(start: *const u8, len: usize) {
    let mut line = 0;
    while line < len.min(256) {
        prefetch(start.wrapping_add(line));
        line += 64;
    }
}

/// One line; `end` is ` <timestamp>\n`.
fn write_point(out: &mut Vec<u8>, head: &Head, tags: &[u8], value: Value, end: &[u8]) {
    // The most a value takes (`-9223372036854775808i`, or ryu's 24 bytes): one capacity check.
    out.reserve(head.measurement.len() + tags.len() + head.field.len() + 24 + end.len());
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
    out.extend_from_slice(end);
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
///
/// Runs between special bytes are copied whole: a `labels` value has a comma every few bytes,
/// and every tag value of every set passes through here once per window.
fn push_escaped(out: &mut Vec<u8>, s: &str, table: &Escapes) {
    let mut s = s.as_bytes();
    while let [rest @ .., b'\\'] = s {
        s = rest;
    }
    let mut start = 0;
    while let Some(at) = table.find(&s[start..]) {
        let at = start + at;
        out.extend_from_slice(&s[start..at]);
        match s[at] {
            b'\n' | b'\r' => out.extend_from_slice(b"\\ "),
            b => {
                out.push(b'\\');
                out.push(b);
            }
        }
        start = at + 1;
    }
    out.extend_from_slice(&s[start..]);
}

/// Which bytes need attention: a lookup table for single bytes and the same set as word
/// patterns, so that a scan looks at eight bytes per step.
struct Escapes {
    table: [bool; 256],
    /// Each special byte repeated in every byte of a word; unused entries repeat the first.
    words: [u64; 5],
}

const LOW_BITS: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

impl Escapes {
    const fn new(special: &[u8]) -> Escapes {
        let mut table = [false; 256];
        let mut all = [b'\n', b'\r', 0, 0, 0];
        let mut n = 2;
        table[b'\n' as usize] = true;
        table[b'\r' as usize] = true;
        let mut i = 0;
        while i < special.len() {
            table[special[i] as usize] = true;
            all[n] = special[i];
            n += 1;
            i += 1;
        }
        let mut words = [0u64; 5];
        let mut w = 0;
        while w < 5 {
            let b = if w < n { all[w] } else { all[0] };
            words[w] = LOW_BITS * b as u64;
            w += 1;
        }
        Escapes { table, words }
    }

    #[inline]
    fn is_special(&self, b: u8) -> bool {
        self.table[usize::from(b)]
    }

    /// The index of the first byte of `s` that needs escaping.
    #[inline]
    fn find(&self, s: &[u8]) -> Option<usize> {
        let mut chunks = s.chunks_exact(8);
        let mut base = 0;
        for chunk in chunks.by_ref() {
            let word = chunk.try_into().map_or(0, u64::from_le_bytes);
            // The high bit of each byte equal to one of the specials (the lowest such byte is
            // exact; bytes above a match may show false positives, which `trailing_zeros` skips).
            let mut hits = 0;
            for pattern in self.words {
                let x = word ^ pattern;
                hits |= x.wrapping_sub(LOW_BITS) & !x & HIGH_BITS;
            }
            if hits != 0 {
                return Some(base + (hits.trailing_zeros() / 8) as usize);
            }
            base += 8;
        }
        chunks.remainder().iter().position(|b| self.is_special(*b)).map(|at| base + at)
    }
}

static MEASUREMENT_TABLE: Escapes = Escapes::new(MEASUREMENT_SPECIAL);
static TAG_TABLE: Escapes = Escapes::new(TAG_SPECIAL);

#[cfg(test)]
mod tests;
