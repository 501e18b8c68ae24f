//! `rate`: per-second (and millicore) rates from cumulative counters, Heapster's rules.
//!
//! A rate needs the same entity in the previous window, a scrape time that moved forward and an
//! unchanged `create_time`: a restarted container gets no rate in the window it restarted. A
//! counter that went backwards without a restart gives no rate either (Heapster would have
//! written a negative one).

use indexmap::IndexMap;
use rustc_hash::FxBuildHasher;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;

use super::window::Held;
use crate::catalog::{LABELED_RATES, LabeledMetricId, MetricId, RATES};

// `Prev::counted` has a bit per counter.
const _: () = assert!(RATES.len() <= 8);
use crate::model::{EntityKey, LabeledMetric, LabeledValue, MetricSet, Resource, Time, Value};

/// Counters of one entity from its latest window.
struct Prev {
    window: Time,
    scrape_time: i64,
    create_time: i64,
    /// `RATES` counters; bit `i` of `counted` says whether `counters[i]` was reported (a
    /// presence mask keeps the state of 100,000 entities compact).
    counters: [i64; RATES.len()],
    counted: u8,
    /// Exactly sized, and empty (no allocation) for the many entities without disk counters.
    labeled: Box<[(LabeledMetricId, Resource, i64)]>,
}

/// The latest window of every entity this worker scrapes.
///
/// Kept in the order entities were first seen: a kubelet lists its sets in the same order every
/// window, so the entry after the last one found is, nearly always, the next set's. Checking it
/// costs one key comparison (the names are the same interned handles), where a hash lookup reads
/// every name's bytes and an entry at a random place in a table of 100,000.
#[derive(Default)]
pub struct RateState {
    prev: IndexMap<EntityKey, Prev, FxBuildHasher>,
    /// Where the next set's entry is expected.
    next: usize,
}

impl RateState {
    /// Adds rates to sets of window `time` from the entity's previous window, and remembers them.
    pub fn apply_at(&mut self, time: Time, sets: &mut [MetricSet]) {
        for set in sets.iter_mut() {
            match self.find(&set.key) {
                Some(at) => {
                    self.next = at + 1;
                    let prev = &mut self.prev[at];
                    // A second set for one entity in one window keeps the first as the base.
                    if prev.window < time {
                        add_rates(prev, set);
                        remember_into(prev, time, set);
                    }
                }
                None => {
                    let (at, _) = self.prev.insert_full(set.key.clone(), remember(time, set));
                    self.next = at + 1;
                }
            }
        }
    }

    /// The position of `key`'s entry: the expected one, or else by hash.
    fn find(&self, key: &EntityKey) -> Option<usize> {
        match self.prev.get_index(self.next) {
            Some((expected, _)) if expected == key => Some(self.next),
            _ => self.prev.get_index_of(key),
        }
    }

    /// Forgets entities missing from the complete window `time`: Heapster only computes a rate
    /// against the window just before.
    pub fn complete(&mut self, time: Time) {
        // In order: the entries stay where the next window's sets expect them.
        self.prev.retain(|_, prev| prev.window >= time);
        self.next = 0;
    }

    /// One whole window: rates, then forget what it did not have.
    pub fn apply(&mut self, time: Time, sets: &mut [MetricSet]) {
        self.apply_at(time, sets);
        self.complete(time);
    }

    pub fn len(&self) -> usize {
        self.prev.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prev.is_empty()
    }
}

fn remember(window: Time, set: &MetricSet) -> Prev {
    let mut counters = [0; RATES.len()];
    let counted = remember_counters(set, &mut counters);
    let labeled = set
        .labeled
        .iter()
        .filter_map(|l| match l.metric {
            LabeledMetric::Catalog(id) if LABELED_RATES.iter().any(|(c, _)| *c == id) => {
                Some((id, l.resource.clone(), l.value.as_i64()))
            }
            _ => None,
        })
        .collect();
    Prev { window, scrape_time: set.scrape_time, create_time: set.create_time, counters, counted, labeled }
}

/// [`remember`] into an entity's existing state, reusing its labeled counters' room when the
/// set has as many as last time (it nearly always has).
fn remember_into(prev: &mut Prev, window: Time, set: &MetricSet) {
    let mut labeled = set.labeled.iter().filter_map(|l| match l.metric {
        LabeledMetric::Catalog(id) if LABELED_RATES.iter().any(|(c, _)| *c == id) => {
            Some((id, &l.resource, l.value.as_i64()))
        }
        _ => None,
    });
    if labeled.clone().count() != prev.labeled.len() {
        *prev = remember(window, set);
        return;
    }
    for (slot, (id, resource, value)) in prev.labeled.iter_mut().zip(&mut labeled) {
        slot.0 = id;
        if slot.1 != *resource {
            slot.1 = resource.clone();
        }
        slot.2 = value;
    }
    let counted = remember_counters(set, &mut prev.counters);
    prev.counted = counted;
    prev.window = window;
    prev.scrape_time = set.scrape_time;
    prev.create_time = set.create_time;
}

/// Stores the set's `RATES` counters in `counters`; returns the presence mask.
fn remember_counters(set: &MetricSet, counters: &mut [i64; RATES.len()]) -> u8 {
    let mut counted = 0;
    for (i, (slot, (counter, _))) in counters.iter_mut().zip(RATES).enumerate() {
        *slot = 0;
        if let Some(value) = set.values.get_i64(*counter) {
            *slot = value;
            counted |= 1 << i;
        }
    }
    counted
}

fn add_rates(prev: &Prev, set: &mut MetricSet) {
    let elapsed_ns = set.scrape_time - prev.scrape_time;
    if elapsed_ns <= 0 || set.create_time != prev.create_time {
        return;
    }
    for (i, ((counter, rate), old)) in RATES.iter().zip(prev.counters).enumerate() {
        if prev.counted & (1 << i) == 0 {
            continue;
        }
        let Some(new) = set.values.get_i64(*counter) else { continue };
        if new < old {
            continue;
        }
        let delta = new - old;
        let value = if *rate == MetricId::CpuUsageRate {
            // ns of CPU per ns of wall time, in millicores; i128 keeps large deltas exact.
            Value::Int((1000 * i128::from(delta) / i128::from(elapsed_ns)) as i64)
        } else {
            Value::Float(1e9 * delta as f64 / elapsed_ns as f64)
        };
        set.values.set(*rate, value);
    }
    for (counter, resource, old) in prev.labeled.iter() {
        let Some(new) = set.labeled_value(*counter, resource).map(Value::as_i64) else { continue };
        let Some((_, rate)) = LABELED_RATES.iter().find(|(c, _)| c == counter) else { continue };
        if new >= *old {
            set.labeled.push(LabeledValue {
                metric: LabeledMetric::Catalog(*rate),
                resource: resource.clone(),
                value: Value::Float(1e9 * (new - old) as f64 / elapsed_ns as f64),
            });
        }
    }
}

/// The `rate` operator. Each worker keeps the state of the nodes it scrapes, and a node always
/// goes to the same worker, so no exchange is needed; sets stream through as they come.
pub fn rate(sets: StreamVec<'_, Time, MetricSet>) -> StreamVec<'_, Time, MetricSet> {
    sets.unary_frontier(Pipeline, "rate", |_cap, _info| {
        let mut state = RateState::default();
        // Windows seen, to forget what each did not have once it is complete.
        let mut seen: Held<()> = Held::default();
        move |(input, frontier), output| {
            input.for_each(|cap, data| {
                let Some(cap) = cap.retain_least(output.output_index()) else { return };
                let time = *cap.time();
                seen.entry(time, || ());
                state.apply_at(time, data);
                output.session(&cap).give_container(data);
            });
            while let Some((time, ())) = seen.next_passed(&[frontier]) {
                state.complete(time);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Name;

    const S: i64 = 1_000_000_000;

    fn container(cpu_ns: i64, scrape_s: i64, created_s: i64) -> MetricSet {
        let mut set = MetricSet::new(EntityKey::PodContainer {
            ns: Name::new("default"),
            pod: Name::new("web-1"),
            container: Name::new("nginx"),
        });
        set.values.set(MetricId::CpuUsage, Value::Int(cpu_ns));
        set.values.set(MetricId::MemoryPageFaults, Value::Int(scrape_s * 10));
        set.scrape_time = scrape_s * S;
        set.create_time = created_s * S;
        set
    }

    #[test]
    fn cpu_rate_is_millicores_and_others_per_second() {
        let mut state = RateState::default();
        let mut w1 = vec![container(10 * S, 100, 1)];
        state.apply(60000, &mut w1);
        assert_eq!(w1[0].values.get(MetricId::CpuUsageRate), None, "no rate without a previous window");

        // 15 s of CPU over 60 s = 250 millicores; 600 page faults over 60 s = 10/s.
        let mut w2 = vec![container(25 * S, 160, 1)];
        state.apply(120000, &mut w2);
        assert_eq!(w2[0].values.get(MetricId::CpuUsageRate), Some(Value::Int(250)));
        assert_eq!(w2[0].values.get(MetricId::MemoryPageFaultsRate), Some(Value::Float(10.0)));
    }

    #[test]
    fn no_rate_across_a_restart_or_a_stale_scrape() {
        let mut state = RateState::default();
        state.apply(180000, &mut [container(10 * S, 100, 1)]);
        let mut restarted = vec![container(S, 160, 150)];
        state.apply(240000, &mut restarted);
        assert_eq!(restarted[0].values.get(MetricId::CpuUsageRate), None);

        let mut stale = vec![container(2 * S, 160, 150)];
        state.apply(300000, &mut stale);
        assert_eq!(stale[0].values.get(MetricId::CpuUsageRate), None, "scrape time did not move");

        let mut next = vec![container(3 * S, 220, 150)];
        state.apply(360000, &mut next);
        assert_eq!(next[0].values.get(MetricId::CpuUsageRate), Some(Value::Int(16)));
    }

    #[test]
    fn forgets_entities_missing_from_a_window() {
        let mut state = RateState::default();
        state.apply(420000, &mut [container(10 * S, 100, 1)]);
        state.apply(480000, &mut []);
        assert!(state.is_empty());
        let mut back = vec![container(25 * S, 220, 1)];
        state.apply(540000, &mut back);
        assert_eq!(back[0].values.get(MetricId::CpuUsageRate), None);
    }

    #[test]
    fn entities_in_another_order_or_new_find_their_previous_window() {
        let keyed = |pod: &str, cpu_ns: i64, scrape_s: i64| {
            let mut set = container(cpu_ns, scrape_s, 1);
            set.key = EntityKey::PodContainer {
                ns: Name::new("default"),
                pod: Name::new(pod),
                container: Name::new("nginx"),
            };
            set
        };
        let mut state = RateState::default();
        state.apply(60000, &mut [keyed("a", 0, 100), keyed("b", 0, 100), keyed("c", 0, 100)]);
        let mut w2 =
            vec![keyed("c", 3 * S, 160), keyed("new", S, 160), keyed("a", S, 160), keyed("b", 2 * S, 160)];
        state.apply(120000, &mut w2);
        let rates: Vec<Option<Value>> = w2.iter().map(|s| s.values.get(MetricId::CpuUsageRate)).collect();
        assert_eq!(rates, [Some(Value::Int(50)), None, Some(Value::Int(16)), Some(Value::Int(33))]);
        let mut w3 = vec![keyed("b", 5 * S, 220), keyed("new", 4 * S, 220)];
        state.apply(180000, &mut w3);
        let rates: Vec<Option<Value>> = w3.iter().map(|s| s.values.get(MetricId::CpuUsageRate)).collect();
        assert_eq!(rates, [Some(Value::Int(50)), Some(Value::Int(50))]);
        assert_eq!(state.len(), 2, "a and c forgotten");
    }

    #[test]
    fn counter_going_backwards_gives_no_rate() {
        let mut state = RateState::default();
        state.apply(600000, &mut [container(10 * S, 100, 1)]);
        let mut w = vec![container(5 * S, 160, 1)];
        state.apply(660000, &mut w);
        assert_eq!(w[0].values.get(MetricId::CpuUsageRate), None);
    }

    #[test]
    fn labeled_disk_rates() {
        let mut state = RateState::default();
        let disk = |bytes: i64, at: i64| {
            let mut s = container(0, at, 1);
            s.labeled.push(LabeledValue {
                metric: LabeledMetric::Catalog(LabeledMetricId::DiskIoReadBytes),
                resource: Resource::Id(Name::new("sda")),
                value: Value::Int(bytes),
            });
            s
        };
        state.apply(720000, &mut [disk(1000, 100)]);
        let mut w = vec![disk(7000, 160)];
        state.apply(780000, &mut w);
        assert_eq!(
            w[0].labeled_value(LabeledMetricId::DiskIoReadBytesRate, &Resource::Id(Name::new("sda"))),
            Some(Value::Float(100.0))
        );
        // A second device appears, then the first goes: what is remembered follows each window.
        let mut two = disk(13000, 220);
        two.labeled.push(LabeledValue {
            metric: LabeledMetric::Catalog(LabeledMetricId::DiskIoReadBytes),
            resource: Resource::Id(Name::new("sdb")),
            value: Value::Int(500),
        });
        state.apply(840000, std::slice::from_mut(&mut two));
        let rate = |set: &MetricSet, dev: &str| {
            set.labeled_value(LabeledMetricId::DiskIoReadBytesRate, &Resource::Id(Name::new(dev)))
        };
        assert_eq!(rate(&two, "sda"), Some(Value::Float(100.0)));
        assert_eq!(rate(&two, "sdb"), None, "no previous window for sdb");
        let mut only_b = container(0, 280, 1);
        only_b.labeled.push(LabeledValue {
            metric: LabeledMetric::Catalog(LabeledMetricId::DiskIoReadBytes),
            resource: Resource::Id(Name::new("sdb")),
            value: Value::Int(6500),
        });
        state.apply(900000, std::slice::from_mut(&mut only_b));
        assert_eq!(rate(&only_b, "sdb"), Some(Value::Float(100.0)));
        assert_eq!(rate(&only_b, "sda"), None);
        // As many devices as before, but another one: its counter replaces sdb's.
        let one = |dev: &str, bytes: i64, at: i64| {
            let mut set = container(0, at, 1);
            set.labeled.push(LabeledValue {
                metric: LabeledMetric::Catalog(LabeledMetricId::DiskIoReadBytes),
                resource: Resource::Id(Name::new(dev)),
                value: Value::Int(bytes),
            });
            set
        };
        let mut c = one("sdc", 100, 340);
        state.apply(960000, std::slice::from_mut(&mut c));
        assert_eq!((rate(&c, "sdc"), rate(&c, "sdb")), (None, None));
        let mut c = one("sdc", 700, 400);
        state.apply(1020000, std::slice::from_mut(&mut c));
        assert_eq!(rate(&c, "sdc"), Some(Value::Float(10.0)));
    }
}
