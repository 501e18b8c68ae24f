//! The pods of a usual body read straight into their metric sets, by the byte reader of
//! `fast.rs` without its `wire` structs.
//!
//! The byte reader fills a pod's `wire` structs (some 500 bytes a container, moved through
//! results, lenient values and vectors) that the `Decoder` then reads again. Here each value goes
//! into its set as it is read: a container's set is filled while its object is read and gets its
//! key and labels when its pod ends (a pod's `podRef` may come after its containers); a pod's
//! volumes are gathered and moved into a vector of their size at its end.
//!
//! It takes what the byte reader takes, less the rare parts (accelerators, user-defined metrics),
//! and only bodies that give no warning: for anything else it gives up with [`Fallback`] and the
//! byte reader reads the body again, whose sets and warnings stay the reference. Where both take
//! a body the sets are the same (`direct/tests.rs` compares them with the serde path's). The node,
//! once a body, is read through the byte reader's structs.

use heapster_dataflows::catalog::{LabeledMetricId, MetricId};
use heapster_dataflows::model::{EntityKey, Interner, LabelId, LabeledValue, MetricSet, Name, Resource};

use super::fast::{self, Fallback, Read, Reader};
use super::{Decoder, Duplicates, FS_VALUES, Path, SummaryReport, set_uptime};
use crate::sources::NodeTarget;
use crate::sources::parse::{push_labeled_to, set_value};

/// What the direct reader keeps while it reads one pod; reused from pod to pod.
#[derive(Default)]
pub(super) struct Scratch {
    /// The pod's volume values, in the order the `Decoder` adds them.
    volumes: Vec<LabeledValue>,
    /// The pod's container sets with their names, keyed when the pod ends.
    containers: Vec<(MetricSet, Name)>,
}

/// Decodes `text` into metric sets appended to `out`, as `super::decode` would; on
/// [`Fallback`] the caller drops what was appended.
pub(super) fn decode(
    text: &str,
    node: &NodeTarget,
    fallback_time_ns: i64,
    interner: &mut Interner,
    out: &mut Vec<MetricSet>,
) -> Read<SummaryReport> {
    let mut decoder = Decoder::new(node, fallback_time_ns, interner, out, text.len());
    fast::summary(&mut Reader::new(text), &mut decoder, |r, decoder, _| pod(r, decoder))?;
    let report = decoder.finish();
    // A warning (a name missing, a time unread, a set twice) is the byte reader's to give, in
    // its place among the others.
    if report.warnings.is_empty() { Ok(report) } else { Err(Fallback) }
}

/// Where a warning of this reader would be: never shown, as any warning sends the body on.
const AT: Path<'static> = Path::root("pods");

/// A name filled in when the set's pod ends.
fn pending() -> Name {
    Name::new("")
}

/// One pod: its set, then its containers' sets, as the `Decoder` emits them.
fn pod(r: &mut Reader<'_>, d: &mut Decoder<'_>) -> Read<()> {
    const KEYS: &[&[u8]] = &[
        b"\"podRef\"",
        b"\"startTime\"",
        b"\"containers\"",
        b"\"cpu\"",
        b"\"memory\"",
        b"\"network\"",
        b"\"volume\"",
        b"\"ephemeral-storage\"",
    ];
    // `null` is skipped without a word, as by the `Decoder`.
    if !open(r, b'{')? {
        return Ok(());
    }
    let mut set = MetricSet::new(EntityKey::Pod { ns: pending(), pod: pending() });
    let mut names = None;
    let mut start = None;
    // Heapster times a pod by its network stats, then its cpu, then its memory stats.
    let mut times = [None; 3];
    let mut ephemeral = None;
    let mut volume_items = 0;
    d.direct.volumes.clear();
    d.direct.containers.clear();
    object(r, KEYS, |r, k| {
        match k {
            0 => names = Some(pod_ref(r, d)?),
            1 => start = text(r)?,
            2 => list(r, |r| container(r, d))?,
            3 => times[1] = cpu(r, &mut set)?,
            4 => times[2] = memory(r, &mut set)?,
            5 => times[0] = network(r, &mut set)?,
            6 => {
                list(r, |r| {
                    volume_items += 1;
                    volume(r, d)
                })?;
            }
            7 => ephemeral = fs(r)?.and_then(|fs| fs.values[0]),
            _ => r.skip(0)?,
        }
        Ok(())
    })?;
    let Some((ns, pod_name, labels)) = names else {
        return Err(Fallback);
    };
    set.key = EntityKey::Pod { ns: ns.clone(), pod: pod_name.clone() };
    set.labels = labels;
    let start = start.and_then(|s| d.time_of(s, AT));
    set.create_time = start.unwrap_or(0);
    set.scrape_time = scrape_time(d, &times);
    set_uptime(&mut set, start);
    // Five values a volume: sized once, as the set lives through the window.
    let mut labeled = Vec::with_capacity(FS_VALUES * volume_items);
    labeled.append(&mut d.direct.volumes);
    set.labeled = labeled;
    set_value(&mut set, MetricId::EphemeralStorageUsage, ephemeral);
    let labels = set.labels.clone();
    d.emit(set, AT, Duplicates::KeepLast);

    let mut containers = std::mem::take(&mut d.direct.containers);
    for (mut set, name) in containers.drain(..) {
        let mut container_labels = labels.clone();
        container_labels.set(LabelId::ContainerName, name.clone());
        set.labels = container_labels;
        set.key = EntityKey::PodContainer { ns: ns.clone(), pod: pod_name.clone(), container: name };
        d.emit(set, AT, Duplicates::KeepNewer);
    }
    d.direct.containers = containers;
    Ok(())
}

/// A pod's names, interned, and its labels; a pod without a name or namespace is the byte
/// reader's to warn about.
fn pod_ref(r: &mut Reader<'_>, d: &mut Decoder<'_>) -> Read<(Name, Name, heapster_dataflows::model::Labels)> {
    const KEYS: &[&[u8]] = &[b"\"name\"", b"\"namespace\"", b"\"uid\""];
    if !open(r, b'{')? {
        return Err(Fallback);
    }
    let mut values = [None; 3];
    object(r, KEYS, |r, k| {
        match values.get_mut(k) {
            Some(value) => *value = text(r)?,
            None => r.skip(0)?,
        }
        Ok(())
    })?;
    let [Some(name), Some(namespace), uid] = values else {
        return Err(Fallback);
    };
    if name.is_empty() || namespace.is_empty() {
        return Err(Fallback);
    }
    let ns = d.names.intern(namespace);
    let pod_name = d.names.intern(name);
    let mut labels = d.node_labels.clone();
    if let Some(uid) = uid.filter(|u| !u.is_empty()) {
        labels.set(LabelId::PodId, d.names.intern(uid));
    }
    labels.set(LabelId::PodName, pod_name.clone());
    labels.set(LabelId::NamespaceName, ns.clone());
    Ok((ns, pod_name, labels))
}

/// One container's set, filled as its object is read, kept in the scratch until its pod ends.
fn container(r: &mut Reader<'_>, d: &mut Decoder<'_>) -> Read<()> {
    const KEYS: &[&[u8]] = &[
        b"\"name\"",
        b"\"startTime\"",
        b"\"cpu\"",
        b"\"memory\"",
        b"\"rootfs\"",
        b"\"logs\"",
        b"\"accelerators\"",
        b"\"userDefinedMetrics\"",
    ];
    if !open(r, b'{')? {
        return Ok(());
    }
    let mut set =
        MetricSet::new(EntityKey::PodContainer { ns: pending(), pod: pending(), container: pending() });
    // rootfs and logs.
    set.labeled.reserve_exact(2 * FS_VALUES);
    let (mut name, mut start, mut times) = (None, None, [None; 2]);
    let (mut rootfs, mut logs) = (None, None);
    object(r, KEYS, |r, k| {
        match k {
            0 => name = text(r)?,
            1 => start = text(r)?,
            2 => times[0] = cpu(r, &mut set)?,
            3 => times[1] = memory(r, &mut set)?,
            4 => rootfs = fs(r)?,
            5 => logs = fs(r)?,
            // Values of a kind few containers have: the `Decoder` adds them.
            6 | 7 => empty_list(r)?,
            _ => r.skip(0)?,
        }
        Ok(())
    })?;
    let name = name.filter(|n| !n.is_empty()).ok_or(Fallback)?;
    let name = d.names.intern(name);
    let start = start.and_then(|s| d.time_of(s, AT));
    set.create_time = start.unwrap_or(0);
    set.scrape_time = scrape_time(d, &times);
    set_uptime(&mut set, start);
    let rootfs_used = rootfs.and_then(|fs| fs.push(&mut set.labeled, &Resource::ROOT_FS));
    let logs_used = logs.and_then(|fs| fs.push(&mut set.labeled, &Resource::LOGS_FS));
    // Heapster's container ephemeral storage: writable layer plus logs, only when both are known.
    if let (Some(rootfs), Some(logs)) = (rootfs_used, logs_used) {
        set_value(&mut set, MetricId::EphemeralStorageUsage, Some(rootfs.saturating_add(logs)));
    }
    d.direct.containers.push((set, name));
    Ok(())
}

/// A pod volume's values, gathered for its pod.
fn volume(r: &mut Reader<'_>, d: &mut Decoder<'_>) -> Read<()> {
    let Some(fs) = fs(r)? else {
        return Ok(());
    };
    let name = fs.name.filter(|n| !n.is_empty()).ok_or(Fallback)?;
    let resource = Resource::Id(d.intern_prefixed("Volume:", name));
    fs.push(&mut d.direct.volumes, &resource);
    Ok(())
}

/// Heapster's `getScrapeTime`: the first time present, else the window end.
fn scrape_time(d: &mut Decoder<'_>, times: &[Option<&str>]) -> i64 {
    for time in times.iter().flatten() {
        if let Some(ns) = d.time_of(time, AT) {
            return ns;
        }
    }
    d.fallback
}

/// A cpu object's usage into `set`; its time.
fn cpu<'a>(r: &mut Reader<'a>, set: &mut MetricSet) -> Read<Option<&'a str>> {
    const KEYS: &[&[u8]] = &[b"\"time\"", b"\"usageNanoCores\"", b"\"usageCoreNanoSeconds\""];
    let mut time = None;
    if open(r, b'{')? {
        object(r, KEYS, |r, k| {
            match k {
                0 => time = text(r)?,
                2 => set_value(set, MetricId::CpuUsage, uint(r)?),
                _ => r.skip(0)?,
            }
            Ok(())
        })?;
    }
    Ok(time)
}

/// A memory object's values into `set`; its time.
fn memory<'a>(r: &mut Reader<'a>, set: &mut MetricSet) -> Read<Option<&'a str>> {
    const KEYS: &[&[u8]] = &[
        b"\"time\"",
        b"\"availableBytes\"",
        b"\"usageBytes\"",
        b"\"workingSetBytes\"",
        b"\"rssBytes\"",
        b"\"pageFaults\"",
        b"\"majorPageFaults\"",
    ];
    const IDS: [MetricId; 5] = [
        MetricId::MemoryUsage,
        MetricId::MemoryWorkingSet,
        MetricId::MemoryRss,
        MetricId::MemoryPageFaults,
        MetricId::MemoryMajorPageFaults,
    ];
    let mut time = None;
    if open(r, b'{')? {
        object(r, KEYS, |r, k| {
            match k {
                0 => time = text(r)?,
                2..=6 => set_value(set, IDS[k - 2], uint(r)?),
                _ => r.skip(0)?,
            }
            Ok(())
        })?;
    }
    Ok(time)
}

/// The network counters into `set`: the top-level ones (the default interface), and where one
/// is absent the sum over `interfaces` (Windows kubelets send only those); its time.
fn network<'a>(r: &mut Reader<'a>, set: &mut MetricSet) -> Read<Option<&'a str>> {
    const KEYS: &[&[u8]] = &[
        b"\"time\"",
        b"\"name\"",
        b"\"rxBytes\"",
        b"\"rxErrors\"",
        b"\"txBytes\"",
        b"\"txErrors\"",
        b"\"interfaces\"",
    ];
    let mut time = None;
    if !open(r, b'{')? {
        return Ok(time);
    }
    let (mut top, mut sums) = ([None; 4], [None::<i64>; 4]);
    object(r, KEYS, |r, k| {
        match k {
            0 => time = text(r)?,
            2..=5 => top[k - 2] = uint(r)?,
            6 => list(r, |r| interface(r, &mut sums))?,
            _ => r.skip(0)?,
        }
        Ok(())
    })?;
    let ids =
        [MetricId::NetworkRx, MetricId::NetworkRxErrors, MetricId::NetworkTx, MetricId::NetworkTxErrors];
    for ((id, top), sum) in ids.into_iter().zip(top).zip(sums) {
        set_value(set, id, top.or(sum));
    }
    Ok(time)
}

/// One interface's counters added to `sums`.
fn interface(r: &mut Reader<'_>, sums: &mut [Option<i64>; 4]) -> Read<()> {
    const KEYS: &[&[u8]] = &[b"\"name\"", b"\"rxBytes\"", b"\"rxErrors\"", b"\"txBytes\"", b"\"txErrors\""];
    if !open(r, b'{')? {
        return Ok(());
    }
    object(r, KEYS, |r, k| {
        match k {
            1..=4 => {
                if let Some(v) = uint(r)? {
                    let sum = &mut sums[k - 1];
                    *sum = Some(sum.unwrap_or(0).saturating_add(v));
                }
            }
            _ => r.skip(0)?,
        }
        Ok(())
    })
}

/// A filesystem's values (also a volume's, with its name).
struct Fs<'a> {
    /// In the order [`Fs::push`] adds them: used, capacity, available, inodes, inodes free.
    values: [Option<i64>; FS_VALUES],
    name: Option<&'a str>,
}

impl Fs<'_> {
    const METRICS: [LabeledMetricId; FS_VALUES] = [
        LabeledMetricId::FsUsage,
        LabeledMetricId::FsLimit,
        LabeledMetricId::FsAvailable,
        LabeledMetricId::FsInodes,
        LabeledMetricId::FsInodesFree,
    ];

    /// Heapster's filesystem metrics for `resource`; returns the used bytes.
    fn push(&self, labeled: &mut Vec<LabeledValue>, resource: &Resource) -> Option<i64> {
        for (id, value) in Self::METRICS.into_iter().zip(self.values) {
            push_labeled_to(labeled, id, resource, value);
        }
        self.values[0]
    }
}

fn fs<'a>(r: &mut Reader<'a>) -> Read<Option<Fs<'a>>> {
    const KEYS: &[&[u8]] = &[
        b"\"time\"",
        b"\"availableBytes\"",
        b"\"capacityBytes\"",
        b"\"usedBytes\"",
        b"\"inodesFree\"",
        b"\"inodes\"",
        b"\"inodesUsed\"",
        b"\"name\"",
    ];
    if !open(r, b'{')? {
        return Ok(None);
    }
    let mut fs = Fs { values: [None; FS_VALUES], name: None };
    object(r, KEYS, |r, k| {
        match k {
            1 => fs.values[2] = uint(r)?,
            2 => fs.values[1] = uint(r)?,
            3 => fs.values[0] = uint(r)?,
            4 => fs.values[4] = uint(r)?,
            5 => fs.values[3] = uint(r)?,
            7 => fs.name = text(r)?,
            _ => r.skip(0)?,
        }
        Ok(())
    })?;
    Ok(Some(fs))
}

/// The members of an object whose `{` was taken, by the index of their key in `keys` (as
/// `fast.rs` lists them, in the order kubelets send them); other keys are skipped. A key read
/// twice gives up: serde's derive rejects some, and the byte reader judges.
#[inline]
fn object<'a>(
    r: &mut Reader<'a>,
    keys: &[&[u8]],
    mut field: impl FnMut(&mut Reader<'a>, usize) -> Read<()>,
) -> Read<()> {
    let mut seen = 0u64;
    r.known_entries(keys, |r, k| match k {
        Some(k) => {
            let bit = 1u64 << k;
            if seen & bit != 0 {
                return Err(Fallback);
            }
            seen |= bit;
            field(r, k)
        }
        None => r.skip(0),
    })
}

/// Takes `byte` (`{`, `[`) and says so, or `null` and says it was not there.
#[inline]
fn open(r: &mut Reader<'_>, byte: u8) -> Read<bool> {
    if r.peek() == Some(byte) {
        r.expect(byte)?;
        Ok(true)
    } else {
        r.null::<()>().map(|_| false)
    }
}

/// An array (or `null`), each item read by `item`.
#[inline]
fn list<'a>(r: &mut Reader<'a>, item: impl FnMut(&mut Reader<'a>) -> Read<()>) -> Read<()> {
    if open(r, b'[')? { r.items(item) } else { Ok(()) }
}

/// An array that must be empty (or `null`).
fn empty_list(r: &mut Reader<'_>) -> Read<()> {
    list(r, |_| Err(Fallback))
}

/// A plain string, or `null` as `None`.
#[inline]
fn text<'a>(r: &mut Reader<'a>) -> Read<Option<&'a str>> {
    match r.peek() {
        Some(b'"') => r.string().map(Some),
        _ => r.null::<()>().map(|_| None),
    }
}

/// A plain non-negative integer, or `null` as `None`.
#[inline]
fn uint(r: &mut Reader<'_>) -> Read<Option<i64>> {
    match r.peek() {
        Some(b'0'..=b'9') => r.uint().map(Some),
        _ => r.null::<()>().map(|_| None),
    }
}

#[cfg(test)]
mod tests;
