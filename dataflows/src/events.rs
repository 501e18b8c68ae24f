//! The events graph: `dedup`, so each distinct state of an event is exported once.
//!
//! ```text
//! events (one worker watches the API) ──exchange by uid──> dedup ──> events to export
//! seed (checkpoint)                    ──exchange by uid──┘
//! ```
//!
//! A state is `(uid, count, last_timestamp)`. Per uid the operator keeps the latest state it
//! exported (or was seeded with) and emits an event only if its state is newer:
//!
//! - a repeated event (count bumped, or `last_timestamp` moved) is a new state: exported;
//! - the same state again (a re-list, a watch that resumed a little early) is dropped;
//! - an older state arriving after a newer one is dropped. A re-list can deliver one: a list
//!   served from an API server's watch cache (`resourceVersion=0`, or another replica behind a
//!   load balancer) may lag what the watch already showed. Its count is already included in the
//!   newer state, and exporting it would make the series go backwards in the sinks.
//!
//! Time is ingestion time in ms (the source stamps each event with its window). When the
//! frontier passes a window `t`, entries whose `last_timestamp` is before `t - ttl` are evicted:
//! Kubernetes deletes an event `--event-ttl` (1 h by default) after its last update, so no
//! re-list can bring it back. The TTL must therefore be at least the API server's
//! `--event-ttl`; with a shorter one, an event older than the TTL is exported again by every
//! re-list that still carries it.
//!
//! Checkpoints: the emitted events are exactly the states the operator now holds (seeded
//! states aside, which came from the checkpoint already), so whoever writes checkpoints keeps
//! its seen set from the output's [`Event::state`]s (see [`Seen::of`]); the operator exposes no
//! other state.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustc_hash::FxBuildHasher;
use serde::{Deserialize, Serialize};
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::progress::frontier::MutableAntichain;

use crate::metrics::window::Windows;
use crate::model::{Event, Name, Time, stable_hash};

/// Bounds of the dedup state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DedupConfig {
    /// Entries whose `last_timestamp` is older than this, relative to the window, are dropped.
    pub ttl_ms: u64,
    /// At most this many entries in all (each worker holds its share); beyond it the oldest by
    /// `last_timestamp` go first.
    pub max_entries: usize,
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig { ttl_ms: 60 * 60 * 1000, max_entries: 1_000_000 }
    }
}

/// What the dedup operators did, summed over workers; the process reads them for self-metrics.
#[derive(Debug, Default)]
pub struct DedupCounters {
    /// Events emitted.
    pub exported: AtomicU64,
    /// Events dropped: the same state again, or an older one.
    pub duplicates: AtomicU64,
    /// Entries dropped by the TTL.
    pub evicted_ttl: AtomicU64,
    /// Entries dropped because the state was full.
    pub evicted_full: AtomicU64,
    /// Entries held now.
    pub entries: AtomicU64,
}

/// One seen state: `(uid, count, last_timestamp)`, what a checkpoint stores.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Seen {
    pub uid: Name,
    pub count: i64,
    /// ms since the epoch.
    pub last_timestamp: i64,
}

impl Seen {
    /// The state an event is in.
    pub fn of(event: &Event) -> Seen {
        Seen { uid: event.uid.clone(), count: event.count, last_timestamp: event.last_timestamp }
    }
}

/// What a [`DedupState`] did since the last [`DedupState::take_tally`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub exported: u64,
    pub duplicates: u64,
    pub evicted_ttl: u64,
    pub evicted_full: u64,
}

/// The latest state of each uid, bounded by a TTL and a size.
pub struct DedupState {
    ttl_ms: u64,
    max_entries: usize,
    /// uid -> (count, last_timestamp).
    latest: HashMap<Uid, (i64, i64), BuildHasherDefault<Rehash>>,
    /// last_timestamp -> the uids stored at it: the eviction order. A uid whose state moved to
    /// another timestamp stays behind in its old bucket until that bucket goes, and is skipped
    /// then (an entry is evicted only from the bucket of its current timestamp). Buckets hold
    /// plain lists, so storing a state costs no string comparisons.
    by_age: BTreeMap<i64, Bucket>,
    tally: Tally,
}

/// A uid with its hash, worked out once: growing the table and probing it then read no
/// string (each uid's text is elsewhere on the heap, a cache miss per entry moved), and a probe
/// compares the strings only when the hashes are equal.
#[derive(Clone)]
struct Uid {
    hash: u64,
    uid: Name,
}

impl Uid {
    fn new(uid: &Name) -> Uid {
        Uid { hash: FxBuildHasher.hash_one(uid.as_str()), uid: uid.clone() }
    }
}

impl Hash for Uid {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialEq for Uid {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.uid == other.uid
    }
}

impl Eq for Uid {}

/// Takes a [`Uid`]'s hash as it is.
#[derive(Default)]
struct Rehash(u64);

impl Hasher for Rehash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `Uid` is hashed here, through `write_u64`; anything else still spreads.
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The uids stored at one `last_timestamp`.
#[derive(Default)]
struct Bucket {
    uids: Vec<Uid>,
    /// Whether `uids` is in descending order (the smallest last), for evicting by the bound.
    sorted: bool,
}

impl DedupState {
    /// `max_entries` is this state's own bound (at least one entry is always kept).
    pub fn new(ttl_ms: u64, max_entries: usize) -> DedupState {
        DedupState {
            ttl_ms,
            max_entries: max_entries.max(1),
            latest: HashMap::default(),
            by_age: BTreeMap::new(),
            tally: Tally::default(),
        }
    }

    /// Whether `event` is a new state (export it); remembers it if so.
    pub fn offer(&mut self, event: &Event) -> bool {
        let new = self.remember(&event.uid, event.count, event.last_timestamp);
        if new {
            self.tally.exported += 1;
        } else {
            self.tally.duplicates += 1;
        }
        new
    }

    /// Loads a state exported before (from a checkpoint); keeps the newer if the uid is known.
    pub fn seed(&mut self, seen: &Seen) {
        self.remember(&seen.uid, seen.count, seen.last_timestamp);
    }

    /// Drops entries whose `last_timestamp` is before `now_ms - ttl`; returns how many.
    pub fn evict(&mut self, now_ms: Time) -> usize {
        let horizon = i64::try_from(now_ms.saturating_sub(self.ttl_ms)).unwrap_or(i64::MAX);
        let mut evicted = 0;
        while let Some(entry) = self.by_age.first_entry() {
            if *entry.key() >= horizon {
                break;
            }
            let (ts, bucket) = entry.remove_entry();
            for uid in bucket.uids {
                if self.latest.get(&uid).is_some_and(|held| held.1 == ts) {
                    self.latest.remove(&uid);
                    evicted += 1;
                }
            }
        }
        self.tally.evicted_ttl += evicted as u64;
        evicted
    }

    /// The latest state known for `uid`.
    pub fn get(&self, uid: &str) -> Option<Seen> {
        let uid = Uid::new(&Name::new(uid));
        self.latest.get(&uid).map(|&(count, last_timestamp)| Seen {
            uid: uid.uid.clone(),
            count,
            last_timestamp,
        })
    }

    pub fn len(&self) -> usize {
        self.latest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }

    /// What happened since the last call.
    pub fn take_tally(&mut self) -> Tally {
        std::mem::take(&mut self.tally)
    }

    /// Stores the state if it is newer than the uid's; returns whether it was.
    fn remember(&mut self, uid: &Name, count: i64, last_timestamp: i64) -> bool {
        let candidate = (count, last_timestamp);
        // One lookup for a new uid too (a burst is all new uids), for the price of a handle.
        let key = Uid::new(uid);
        let hash = key.hash;
        match self.latest.entry(key) {
            Entry::Occupied(held) if *held.get() >= candidate => return false,
            Entry::Occupied(mut held) => {
                let held = held.get_mut();
                let moved = held.1 != last_timestamp;
                *held = candidate;
                if !moved {
                    // Already in this timestamp's bucket.
                    return true;
                }
            }
            Entry::Vacant(slot) => {
                slot.insert(candidate);
            }
        }
        let bucket = self.by_age.entry(last_timestamp).or_default();
        bucket.uids.push(Uid { hash, uid: uid.clone() });
        bucket.sorted = false;
        while self.latest.len() > self.max_entries {
            if !self.evict_oldest() {
                break;
            }
        }
        true
    }

    /// Drops the entry with the oldest `last_timestamp` (of those, the least uid); false if
    /// there is none.
    fn evict_oldest(&mut self) -> bool {
        while let Some(mut entry) = self.by_age.first_entry() {
            let ts = *entry.key();
            let bucket = entry.get_mut();
            if !bucket.sorted {
                bucket.uids.sort_unstable_by(|a, b| b.uid.cmp(&a.uid));
                bucket.sorted = true;
            }
            while let Some(uid) = bucket.uids.pop() {
                if self.latest.get(&uid).is_some_and(|held| held.1 == ts) {
                    self.latest.remove(&uid);
                    self.tally.evicted_full += 1;
                    if bucket.uids.is_empty() {
                        entry.remove();
                    }
                    return true;
                }
            }
            entry.remove();
        }
        false
    }
}

fn route(uid: &str) -> u64 {
    stable_hash(&[uid])
}

/// The `dedup` operator: emits each event whose state is new, on the worker that owns its uid.
///
/// `seed` carries the states of a checkpoint; events of a window wait until the seed input has
/// passed that window, so the caller must advance or close the seed input once it has sent the
/// checkpoint. `config.max_entries` is split evenly between workers.
pub fn dedup<'s>(
    events: StreamVec<'s, Time, Event>,
    seed: StreamVec<'s, Time, Seen>,
    config: DedupConfig,
    counters: Arc<DedupCounters>,
) -> StreamVec<'s, Time, Event> {
    let peers = events.scope().peers().max(1);
    let per_worker = config.max_entries.div_ceil(peers);
    let by_uid = Exchange::new(|event: &Event| route(&event.uid));
    let seed_by_uid = Exchange::new(|seen: &Seen| route(&seen.uid));
    events.binary_frontier(seed, by_uid, seed_by_uid, "dedup", move |_cap, _info| {
        let mut state = DedupState::new(config.ttl_ms, per_worker);
        let mut waiting = Windows::default();
        // Every window before this one has been offered, and the TTL applied as of it.
        let mut evicted_through: Option<Time> = None;
        let mut published_entries = 0usize;
        move |(events_in, events_frontier), (seed_in, seed_frontier), output| {
            // First: the frontier may have passed windows while this worker was not scheduled,
            // and what arrives now belongs to later windows.
            apply_ttl(&mut state, &mut evicted_through, [events_frontier, seed_frontier], &waiting);
            seed_in.for_each(|_cap, data| {
                for seen in data.iter() {
                    state.seed(seen);
                }
            });
            events_in.for_each(|cap, data| {
                if let Some(cap) = cap.retain_least(output.output_index()) {
                    waiting.stash(cap, data);
                }
            });
            // Events wait only while checkpointed states may still arrive.
            while let Some((cap, mut data)) = waiting.next_complete(&[seed_frontier]) {
                keep_new(&mut state, &mut data);
                output.session(&cap).give_container(&mut data);
            }
            apply_ttl(&mut state, &mut evicted_through, [events_frontier, seed_frontier], &waiting);
            publish(&counters, state.take_tally(), &mut published_entries, state.len());
        }
    })
}

/// Keeps the events of `data` whose state is new.
fn keep_new(state: &mut DedupState, data: &mut Vec<Event>) {
    let offered = data.len();
    data.retain(|event| state.offer(event));
    if data.len() < offered {
        // The texts of a list's events share chunks: those kept nearly alone in theirs (a
        // re-list brings few new states) take their own bytes, not their chunks, with them.
        for event in data {
            event.text.detach_if_sparse();
        }
    }
}

/// Applies the TTL as of the last window that no input can still add to and that has no events
/// waiting, if it moved.
fn apply_ttl<D>(
    state: &mut DedupState,
    evicted_through: &mut Option<Time>,
    frontiers: [&MutableAntichain<Time>; 2],
    waiting: &Windows<D>,
) {
    let open = frontiers.iter().filter_map(|f| f.frontier().first().copied()).min();
    let Some(open) = open.filter(|open| *open > 0 && !waiting.has_before(*open)) else { return };
    let passed = open - 1;
    if evicted_through.is_none_or(|t| t < passed) {
        state.evict(passed);
        *evicted_through = Some(passed);
    }
}

/// Adds a worker's tally to the shared counters, and moves `entries` by its change in size.
fn publish(counters: &DedupCounters, tally: Tally, published: &mut usize, entries: usize) {
    let add = |counter: &AtomicU64, n: u64| {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    };
    add(&counters.exported, tally.exported);
    add(&counters.duplicates, tally.duplicates);
    add(&counters.evicted_ttl, tally.evicted_ttl);
    add(&counters.evicted_full, tally.evicted_full);
    if entries > *published {
        add(&counters.entries, (entries - *published) as u64);
    } else if entries < *published {
        counters.entries.fetch_sub((*published - entries) as u64, Ordering::Relaxed);
    }
    *published = entries;
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use timely::dataflow::ProbeHandle;
    use timely::dataflow::operators::{Input, Inspect, Probe};

    use super::*;
    use crate::model::EventText;

    const HOUR: u64 = 60 * 60 * 1000;

    fn event(uid: &str, count: i64, last_timestamp: i64) -> Event {
        Event {
            uid: Name::new(uid),
            count,
            last_timestamp,
            text: EventText::new(String::new(), "", "", &format!("{uid} seen {count} times")),
            ..Event::default()
        }
    }

    fn seen(uid: &str, count: i64, last_timestamp: i64) -> Seen {
        Seen { uid: Name::new(uid), count, last_timestamp }
    }

    #[test]
    fn duplicates_and_repeats() {
        let mut state = DedupState::new(HOUR, 100);
        assert!(state.offer(&event("a", 1, 1000)));
        assert!(!state.offer(&event("a", 1, 1000)), "the same state again");
        assert!(state.offer(&event("a", 2, 5000)), "a count bump is a new state");
        assert!(state.offer(&event("a", 2, 6000)), "a moved timestamp is a new state");
        assert!(state.offer(&event("b", 1, 1000)), "another uid");
        assert_eq!(state.get("a"), Some(seen("a", 2, 6000)));
        let tally = state.take_tally();
        assert_eq!(tally, Tally { exported: 4, duplicates: 1, ..Tally::default() });
        assert_eq!(state.take_tally(), Tally::default(), "taking resets");
    }

    #[test]
    fn older_states_are_not_exported_again() {
        let mut state = DedupState::new(HOUR, 100);
        assert!(state.offer(&event("a", 3, 9000)));
        assert!(!state.offer(&event("a", 2, 8000)), "a lower count");
        assert!(!state.offer(&event("a", 3, 8500)), "same count, older timestamp");
        assert!(!state.offer(&event("a", 2, 9500)), "lower count with a later timestamp");
        assert_eq!(state.get("a"), Some(seen("a", 3, 9000)));
        assert_eq!(state.take_tally().duplicates, 3);
    }

    #[test]
    fn relist_of_unchanged_events_exports_only_changes() {
        let mut state = DedupState::new(HOUR, 100);
        let list: Vec<Event> = (0..5).map(|i| event(&format!("e{i}"), 1, 1000 + i)).collect();
        assert!(list.iter().all(|e| state.offer(e)));
        let mut relist = list.clone();
        relist[2].count = 2;
        relist[2].last_timestamp = 9000;
        let exported: Vec<&str> = relist.iter().filter(|e| state.offer(e)).map(|e| e.uid.as_str()).collect();
        assert_eq!(exported, ["e2"]);
    }

    #[test]
    fn ttl_evicts_entries_older_than_the_window_minus_ttl() {
        let mut state = DedupState::new(1000, 100);
        state.offer(&event("old", 1, 500));
        state.offer(&event("edge", 1, 4000));
        state.offer(&event("new", 1, 4500));
        assert_eq!(state.evict(5000), 1, "only last_timestamp < 4000 goes");
        assert_eq!(state.get("old"), None);
        assert!(state.get("edge").is_some());
        assert_eq!(state.len(), 2);
        assert!(state.offer(&event("old", 1, 500)), "forgotten, so new again");
        assert_eq!(state.evict(0), 0, "a window before the TTL evicts nothing");
        assert_eq!(state.take_tally().evicted_ttl, 1);
    }

    #[test]
    fn bound_evicts_the_oldest_by_last_timestamp() {
        let mut state = DedupState::new(HOUR, 3);
        for (uid, ts) in [("c", 3000), ("a", 1000), ("b", 2000)] {
            state.offer(&event(uid, 1, ts));
        }
        assert!(state.offer(&event("d", 1, 4000)));
        assert_eq!(state.len(), 3);
        assert_eq!(state.get("a"), None, "the oldest went");
        // A newer state moves an entry to the young end.
        assert!(state.offer(&event("b", 2, 5000)));
        assert!(state.offer(&event("e", 1, 4500)));
        assert_eq!(state.get("c"), None);
        assert!(state.get("b").is_some());
        assert_eq!(state.take_tally().evicted_full, 2);
    }

    #[test]
    fn an_entry_is_evicted_from_its_current_timestamp_only() {
        let mut state = DedupState::new(10_000, 3);
        // `a` moves on from 1000; its old place must not take it along.
        assert!(state.offer(&event("a", 1, 1000)));
        assert!(state.offer(&event("a", 2, 1000)), "a count bump at the same time");
        assert!(state.offer(&event("a", 3, 9000)));
        assert!(state.offer(&event("b", 1, 1000)));
        assert_eq!(state.evict(11_500), 1, "only b is older than 1500");
        assert_eq!(state.get("a"), Some(seen("a", 3, 9000)));
        assert_eq!(state.get("b"), None);
        assert_eq!(state.evict(20_000), 1, "a goes once, by its current time");
        assert!(state.is_empty());

        // Full, with equal times: the least uid goes first, as before.
        for uid in ["m", "k", "z"] {
            assert!(state.offer(&event(uid, 1, 50_000)));
        }
        assert!(state.offer(&event("n", 1, 60_000)));
        assert_eq!(state.get("k"), None, "the least uid of the oldest time");
        assert!(state.offer(&event("o", 1, 60_000)));
        assert_eq!(state.get("m"), None);
        assert_eq!(state.len(), 3);
        assert_eq!(state.take_tally().evicted_full, 2);
    }

    #[test]
    fn seeded_states_are_not_exported_but_newer_ones_are() {
        let mut state = DedupState::new(HOUR, 100);
        state.seed(&seen("a", 2, 2000));
        state.seed(&seen("a", 1, 1000));
        assert_eq!(state.get("a"), Some(seen("a", 2, 2000)), "seeding keeps the newer state");
        assert!(!state.offer(&event("a", 2, 2000)));
        assert!(!state.offer(&event("a", 1, 1000)));
        assert!(state.offer(&event("a", 3, 3000)));
        let tally = state.take_tally();
        assert_eq!((tally.exported, tally.duplicates), (1, 2), "seeding counts as neither");
    }

    /// One step of a test run: advance every input to `time`, worker 0 sends `events` (and,
    /// before the first step, `seeds`), then run until the graph has passed `time`.
    struct Step {
        time: Time,
        events: Vec<Event>,
    }

    /// Runs the dedup graph on `workers` workers; returns what it emitted (sorted by time, then
    /// event) and the counters.
    fn run(
        workers: usize,
        config: DedupConfig,
        seeds: Vec<Seen>,
        steps: Vec<Step>,
    ) -> (Vec<(Time, Event)>, Arc<DedupCounters>) {
        let out = Arc::new(Mutex::new(Vec::new()));
        let counters = Arc::new(DedupCounters::default());
        let (seeds, steps) = (Arc::new(seeds), Arc::new(steps));
        let guards = {
            let (out, counters) = (Arc::clone(&out), Arc::clone(&counters));
            timely::execute(timely::Config::process(workers), move |worker| {
                let index = worker.index();
                let probe = ProbeHandle::new();
                let (out, counters, config) = (Arc::clone(&out), Arc::clone(&counters), config.clone());
                let (mut events_in, mut seed_in) = worker.dataflow::<Time, _, _>(|scope| {
                    let (events_in, events) = scope.new_input::<Vec<Event>>();
                    let (seed_in, seed) = scope.new_input::<Vec<Seen>>();
                    dedup(events, seed, config, counters)
                        .inspect_core(move |batch| {
                            if let Ok((stamp, events)) = batch {
                                let time = stamp.least().unwrap();
                                let mut out = out.lock().unwrap();
                                out.extend(events.iter().map(|e| (*time, e.clone())));
                            }
                        })
                        .probe_with(&probe);
                    (events_in, seed_in)
                });
                if index == 0 {
                    for s in seeds.iter() {
                        seed_in.send(s.clone());
                    }
                }
                drop(seed_in);
                for step in steps.iter() {
                    events_in.advance_to(step.time);
                    if index == 0 {
                        for e in &step.events {
                            events_in.send(e.clone());
                        }
                    }
                    events_in.advance_to(step.time + 1);
                    worker.step_while(|| probe.less_equal(&step.time));
                }
            })
            .unwrap()
        };
        guards.join().into_iter().for_each(|r| r.unwrap());
        let mut out = std::mem::take(&mut *out.lock().unwrap());
        out.sort();
        (out, counters)
    }

    /// Events whose texts share one chunk, as a list's reader makes them.
    fn listed(uids: &[&str], count: i64) -> Vec<Event> {
        let mut chunks = crate::event_text::TextChunks::default();
        let mut events: Vec<Event> = uids
            .iter()
            .map(|uid| {
                let start = chunks.written();
                chunks.buf().push_str(&format!(r#"{{"message":"{uid} seen"}}"#));
                Event {
                    uid: Name::new(uid),
                    count,
                    last_timestamp: 1000,
                    text: chunks.text(start, "", "", &format!("{uid} seen"), [None; 3]),
                    ..Event::default()
                }
            })
            .collect();
        chunks.seal(events.iter_mut().map(|e| &mut e.text));
        events
    }

    #[test]
    fn states_kept_from_a_thinned_batch_hold_only_their_own_text() {
        let mut state = DedupState::new(HOUR, 100);
        let seen = ["a", "b", "c", "d", "e", "f"];
        let mut first = listed(&seen, 1);
        keep_new(&mut state, &mut first);
        assert_eq!(first.len(), 6);
        assert!(first.iter().all(|e| e.text.shares_chunk()), "a whole batch keeps its chunk");
        let mut relist = listed(&[&seen[..], &["g"]].concat(), 1);
        keep_new(&mut state, &mut relist);
        let [g] = &relist[..] else { panic!("one new state: {relist:?}") };
        assert!(!g.text.shares_chunk(), "the one new state of seven takes its own text");
        assert_eq!((g.uid.as_str(), g.message(), g.raw()), ("g", "g seen", r#"{"message":"g seen"}"#));
        let mut half = listed(&["a", "b", "c", "x", "y", "z"], 1);
        keep_new(&mut state, &mut half);
        assert_eq!(half.iter().map(|e| e.uid.as_str()).collect::<Vec<_>>(), ["x", "y", "z"]);
        assert!(half.iter().all(|e| e.text.shares_chunk()), "half the chunk still held: it stays");
    }

    fn step(time: Time, events: Vec<Event>) -> Step {
        Step { time, events }
    }

    fn uids(out: &[(Time, Event)]) -> Vec<(Time, &str, i64)> {
        out.iter().map(|(t, e)| (*t, e.uid.as_str(), e.count)).collect()
    }

    fn load(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    #[test]
    fn operator_exports_each_state_once_on_one_and_two_workers() {
        let t0: Time = 1_700_000_000_000;
        let ts = t0 as i64;
        let steps = || {
            let first: Vec<Event> = (0..20).map(|i| event(&format!("uid-{i}"), 1, ts - i)).collect();
            let mut relist = first.clone();
            relist[3] = event("uid-3", 2, ts + 500);
            relist.push(event("uid-3", 2, ts + 500));
            relist.push(event("uid-7", 0, ts));
            vec![step(t0, first), step(t0 + 1000, relist), step(t0 + 2000, vec![])]
        };
        let (one, counters_one) = run(1, DedupConfig::default(), vec![], steps());
        let (two, counters_two) = run(2, DedupConfig::default(), vec![], steps());
        assert_eq!(one.len(), 21, "20 first states and one count bump");
        assert_eq!(one.iter().filter(|(t, _)| *t == t0 + 1000).count(), 1);
        assert_eq!(uids(&one).iter().find(|(t, ..)| *t == t0 + 1000), Some(&(t0 + 1000, "uid-3", 2)));
        assert_eq!(one, two, "the same output whatever the number of workers");
        for counters in [counters_one, counters_two] {
            assert_eq!(load(&counters.exported), 21);
            assert_eq!(load(&counters.duplicates), 21, "19 unchanged, a repeat of the bump, an older one");
            assert_eq!(load(&counters.entries), 20);
        }
    }

    #[test]
    fn operator_evicts_by_ttl_as_the_frontier_passes() {
        let t0: Time = 1_700_000_000_000;
        let ts = t0 as i64;
        let config = DedupConfig { ttl_ms: 10_000, max_entries: 100 };
        for workers in [1, 2] {
            let steps = vec![
                step(t0, vec![event("a", 1, ts), event("b", 1, ts + 15_000)]),
                step(t0 + 1000, vec![event("a", 1, ts)]),
                // The window at t0 + 20 s evicts "a" (older than t0 + 10 s), not "b".
                step(t0 + 20_000, vec![]),
                step(t0 + 21_000, vec![event("a", 1, ts), event("b", 1, ts + 15_000)]),
            ];
            let (out, counters) = run(workers, config.clone(), vec![], steps);
            assert_eq!(uids(&out), [(t0, "a", 1), (t0, "b", 1), (t0 + 21_000, "a", 1)], "{workers} workers");
            assert!(load(&counters.evicted_ttl) >= 1);
            assert_eq!(load(&counters.duplicates), 2);
        }
    }

    #[test]
    fn operator_bounds_its_state() {
        let t0: Time = 1_700_000_000_000;
        let ts = t0 as i64;
        let config = DedupConfig { ttl_ms: HOUR, max_entries: 4 };
        let events: Vec<Event> = (0..10).map(|i| event(&format!("uid-{i}"), 1, ts + i)).collect();
        for workers in [1, 2] {
            let (out, counters) =
                run(workers, config.clone(), vec![], vec![step(t0, events.clone()), step(t0 + 1, vec![])]);
            assert_eq!(out.len(), 10);
            let entries = load(&counters.entries);
            assert!(entries <= 4, "{entries} entries held by {workers} workers");
            assert_eq!(load(&counters.evicted_full), 10 - entries);
        }
    }

    #[test]
    fn operator_seeds_before_the_first_events() {
        let t0: Time = 1_700_000_000_000;
        let ts = t0 as i64;
        for workers in [1, 2] {
            let seeds = vec![seen("a", 3, ts - 1000), seen("b", 1, ts - 1000)];
            let steps = vec![step(
                t0,
                vec![
                    event("a", 3, ts - 1000),
                    event("a", 2, ts - 2000),
                    event("b", 2, ts),
                    event("c", 1, ts),
                ],
            )];
            let (out, counters) = run(workers, DedupConfig::default(), seeds, steps);
            assert_eq!(uids(&out), [(t0, "b", 2), (t0, "c", 1)], "{workers} workers");
            assert_eq!(load(&counters.duplicates), 2);
            assert_eq!(load(&counters.entries), 3);
        }
    }
}
