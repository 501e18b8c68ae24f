//! Per-window stashes: hold records under a capability until every input frontier has passed
//! their window, so an operator only ever sees complete windows.

use std::collections::BTreeMap;

use timely::dataflow::operators::Capability;
use timely::progress::frontier::MutableAntichain;

use crate::model::Time;

/// Records of each pending window, with the capability to emit that window's output.
pub struct Windows<D> {
    pending: BTreeMap<Time, (Capability<Time>, Vec<D>)>,
}

impl<D> Default for Windows<D> {
    fn default() -> Self {
        Windows { pending: BTreeMap::new() }
    }
}

impl<D> Windows<D> {
    /// Stashes `data` for the window of `cap`.
    pub fn stash(&mut self, cap: Capability<Time>, data: &mut Vec<D>) {
        let time = *cap.time();
        self.pending.entry(time).or_insert_with(|| (cap, Vec::new())).1.append(data);
    }

    /// Whether a window before `time` is pending.
    pub fn has_before(&self, time: Time) -> bool {
        self.pending.first_key_value().is_some_and(|(t, _)| *t < time)
    }

    /// Takes the oldest window that no frontier can still add to.
    pub fn next_complete(
        &mut self,
        frontiers: &[&MutableAntichain<Time>],
    ) -> Option<(Capability<Time>, Vec<D>)> {
        let (&time, _) = self.pending.first_key_value()?;
        if frontiers.iter().any(|f| f.less_equal(&time)) {
            return None;
        }
        self.pending.pop_first().map(|(_, window)| window)
    }
}

/// Timestamped updates without a capability: they produce no output of their own, they only
/// change state that later windows read.
pub struct Updates<D> {
    pending: BTreeMap<Time, Vec<D>>,
}

impl<D> Default for Updates<D> {
    fn default() -> Self {
        Updates { pending: BTreeMap::new() }
    }
}

impl<D> Updates<D> {
    pub fn stash(&mut self, time: Time, data: impl IntoIterator<Item = D>) {
        self.pending.entry(time).or_default().extend(data);
    }

    /// Takes every update at or before `time`, oldest first.
    pub fn drain_through(&mut self, time: Time) -> impl Iterator<Item = D> {
        let later = self.pending.split_off(&(time + 1));
        std::mem::replace(&mut self.pending, later).into_values().flatten()
    }
}
