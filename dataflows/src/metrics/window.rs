//! Per-window stashes: hold what arrives for a window until every input frontier has passed it,
//! then release windows oldest first, so an operator only ever sees complete windows.

use std::collections::BTreeMap;

use timely::dataflow::operators::Capability;
use timely::progress::frontier::MutableAntichain;

use crate::model::Time;

/// One value per pending window (its records, its capability, its per-window state).
pub struct Held<V> {
    pending: BTreeMap<Time, V>,
}

impl<V> Default for Held<V> {
    fn default() -> Self {
        Held { pending: BTreeMap::new() }
    }
}

impl<V> Held<V> {
    /// The value of window `time`, made by `new` if the window was not pending yet.
    pub fn entry(&mut self, time: Time, new: impl FnOnce() -> V) -> &mut V {
        self.pending.entry(time).or_insert_with(new)
    }

    /// The oldest pending window.
    pub fn first(&self) -> Option<Time> {
        self.pending.first_key_value().map(|(t, _)| *t)
    }

    /// Whether a window before `time` is pending.
    pub fn has_before(&self, time: Time) -> bool {
        self.first().is_some_and(|t| t < time)
    }

    /// Takes the oldest window if `passed` says nothing more can arrive for it.
    pub fn next_if(&mut self, passed: impl FnOnce(Time) -> bool) -> Option<(Time, V)> {
        let time = self.first()?;
        if !passed(time) {
            return None;
        }
        self.pending.pop_first()
    }

    /// Takes the oldest window that every frontier has passed.
    pub fn next_passed(&mut self, frontiers: &[&MutableAntichain<Time>]) -> Option<(Time, V)> {
        self.next_if(|time| frontiers.iter().all(|f| !f.less_equal(&time)))
    }
}

/// The records of each pending window, with the capability to emit that window's output.
pub type Windows<D> = Held<(Capability<Time>, Vec<D>)>;

impl<D> Held<(Capability<Time>, Vec<D>)> {
    /// Stashes `data` for the window of `cap`.
    pub fn stash(&mut self, cap: Capability<Time>, data: &mut Vec<D>) {
        let time = *cap.time();
        self.entry(time, || (cap, Vec::new())).1.append(data);
    }

    /// Takes the oldest window that no frontier can still add to.
    pub fn next_complete(
        &mut self,
        frontiers: &[&MutableAntichain<Time>],
    ) -> Option<(Capability<Time>, Vec<D>)> {
        self.next_passed(frontiers).map(|(_, window)| window)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_passed_windows_oldest_first() {
        let mut held: Held<Vec<u32>> = Held::default();
        held.entry(20, Vec::new).push(2);
        held.entry(10, Vec::new).push(1);
        held.entry(20, Vec::new).push(3);
        assert!(held.has_before(11) && !held.has_before(10));
        assert_eq!(held.next_if(|t| t < 10), None, "window 10 not passed yet");
        let mut frontier = MutableAntichain::new();
        frontier.update_iter([(15, 1)]);
        assert_eq!(held.next_passed(&[&frontier]), Some((10, vec![1])));
        assert_eq!(held.next_passed(&[&frontier]), None, "window 20 is still open");
        frontier.update_iter([(15, -1), (21, 1)]);
        let mut open = MutableAntichain::new();
        open.update_iter([(20, 1)]);
        assert_eq!(held.next_passed(&[&frontier, &open]), None, "every frontier must pass");
        assert_eq!(held.next_passed(&[&frontier]), Some((20, vec![2, 3])));
        assert_eq!(held.first(), None);
    }
}
