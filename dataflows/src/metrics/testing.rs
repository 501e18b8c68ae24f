//! Runs a metrics operator in a real timely computation, fed window by window the way the
//! bridge feeds workers: metadata on worker 0 first, then each worker's sets, then the close.

use std::sync::{Arc, Mutex};

use differential_dataflow::VecCollection;
use differential_dataflow::input::Input as _;
use timely::dataflow::operators::{Input, Inspect, Probe};
use timely::dataflow::{ProbeHandle, StreamVec};

use crate::meta::MetaRecord;
use crate::model::{MetricSet, Time};

/// The graph under test, from the sets and metadata inputs to its output.
pub type Graph = for<'s> fn(
    StreamVec<'s, Time, MetricSet>,
    VecCollection<'s, Time, MetaRecord>,
) -> StreamVec<'s, Time, MetricSet>;

/// One window's input.
#[derive(Clone)]
pub struct Window {
    pub time: Time,
    pub meta: Vec<MetaRecord>,
    /// Each set with the worker that feeds it at two workers (`worker % workers` at any count),
    /// so a test says where a node is in each window.
    pub sets: Vec<(usize, MetricSet)>,
}

/// Runs `graph` on `workers` workers; returns its output sorted by window, then key.
pub fn run(workers: usize, windows: &[Window], graph: Graph) -> Vec<(Time, MetricSet)> {
    let out = Arc::new(Mutex::new(Vec::new()));
    let windows = Arc::new(windows.to_vec());
    let collected = Arc::clone(&out);
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let probe = ProbeHandle::new();
        let out = Arc::clone(&collected);
        let (mut sets_in, mut meta_in) = worker.dataflow::<Time, _, _>(|scope| {
            let (sets_in, sets) = scope.new_input::<Vec<MetricSet>>();
            let (meta_in, meta) = scope.new_collection::<MetaRecord, isize>();
            graph(sets, meta)
                .inspect_core(move |batch| {
                    if let Ok((stamp, sets)) = batch {
                        let time = *stamp.least().expect("a batch has a time");
                        out.lock().expect("output lock").extend(sets.iter().map(|s| (time, s.clone())));
                    }
                })
                .probe_with(&probe);
            (sets_in, meta_in)
        });
        for window in windows.iter() {
            meta_in.advance_to(window.time);
            if index == 0 {
                for record in &window.meta {
                    meta_in.insert(record.clone());
                }
            }
            meta_in.advance_to(window.time + 1);
            meta_in.flush();
            sets_in.advance_to(window.time);
            for (_, set) in window.sets.iter().filter(|(w, _)| w % peers == index) {
                sets_in.send(set.clone());
            }
            sets_in.advance_to(window.time + 1);
            worker.step_while(|| probe.less_equal(&window.time));
        }
    })
    .expect("timely starts");
    for result in guards.join() {
        result.expect("worker finished");
    }
    let mut out = std::mem::take(&mut *out.lock().expect("output lock"));
    out.sort_by(|a, b| (a.0, &a.1.key).cmp(&(b.0, &b.1.key)));
    out
}

/// The set of `key` in window `time`.
pub fn find<'a>(out: &'a [(Time, MetricSet)], time: Time, key: &crate::EntityKey) -> &'a MetricSet {
    out.iter()
        .find(|(t, s)| *t == time && &s.key == key)
        .map(|(_, s)| s)
        .unwrap_or_else(|| panic!("no set for {key} in window {time}"))
}
