//! Each set's escaped tag block, kept from one window to the next.
//!
//! An entity's set comes back every window with the same labels (interned names, so comparing
//! them is comparing pointers): its tags are then collected, sorted and escaped once, not once a
//! window. Windows come sorted by key, so the cache is the last window's blocks in that order,
//! walked alongside the new window: a block is taken from the front and put back at the end,
//! and an entity that is gone is passed over and dropped. It never holds more than the blocks
//! of the last window and of the one being encoded, and never more than [`MAX_KEPT`]: past
//! that, the last sets of a window are escaped every window.

use std::collections::VecDeque;

use heapster_dataflows::model::{EntityKey, Labels};
use heapster_dataflows::{MetricSet, Time};

use super::{Fit, TagBlock, prefetch};

/// Sets whose blocks are kept at most: about 45 MB, a whole window of 1,000 nodes x 30 pods
/// (94,000 sets), so that memory stays bounded on larger clusters.
pub(super) const MAX_KEPT: usize = 100_000;

/// One set's tags as the last window had them.
pub(super) struct CachedTags {
    key: EntityKey,
    /// What the block was made from (besides the key's `type` and the cluster name, fixed).
    labels: Labels,
    pub(super) fit: Fit,
    pub(super) block: TagBlock,
}

pub(super) struct TagCache {
    /// The last pass's blocks not reached yet (the first `old`), then this pass's, in order.
    entries: VecDeque<CachedTags>,
    old: usize,
    /// The window being encoded.
    time: Option<Time>,
    /// Where a missing block is made; it holds a block that is not kept.
    scratch: CachedTags,
    max_kept: usize,
}

impl Default for TagCache {
    fn default() -> Self {
        TagCache::with_max(MAX_KEPT)
    }
}

impl TagCache {
    pub(super) fn with_max(max_kept: usize) -> Self {
        TagCache {
            entries: VecDeque::new(),
            old: 0,
            time: None,
            scratch: CachedTags {
                key: EntityKey::Cluster,
                labels: Labels::default(),
                fit: Fit::Fits,
                block: TagBlock::default(),
            },
            max_kept,
        }
    }

    /// The set's tag block: the cached one while its labels are unchanged, otherwise made by
    /// `make` (into an empty block) and kept.
    pub(super) fn get_or_make(
        &mut self,
        time: Time,
        set: &MetricSet,
        make: impl FnOnce(&mut TagBlock) -> Fit,
    ) -> &CachedTags {
        if self.time != Some(time) {
            self.time = Some(time);
            self.next_pass();
        } else if self.entries.len() > self.old
            && let Some(last) = self.entries.back()
        {
            if last.key == set.key && last.labels == set.labels {
                // The same set again: a window resumed after a chunk, or encoded again whole.
                return self.last();
            }
            if set.key <= last.key {
                // Not after the last set: the window again (or unsorted sets).
                self.next_pass();
            }
        }
        while self.old > 0
            && let Some(front) = self.entries.pop_front()
        {
            self.old -= 1;
            match front.key.cmp(&set.key) {
                std::cmp::Ordering::Less => continue,
                std::cmp::Ordering::Greater => {
                    self.entries.push_front(front);
                    self.old += 1;
                    break;
                }
                std::cmp::Ordering::Equal => {
                    if front.labels == set.labels {
                        self.entries.push_back(front);
                        self.prefetch_next();
                        return self.last();
                    }
                    break;
                }
            }
        }
        let fit = make(&mut self.scratch.block);
        self.scratch.fit = fit;
        if self.entries.len() >= self.max_kept {
            return &self.scratch;
        }
        let block = self.scratch.block.clone();
        self.entries.push_back(CachedTags { key: set.key.clone(), labels: set.labels.clone(), fit, block });
        self.prefetch_next();
        self.last()
    }

    /// What the last pass did not reach is gone; what it made is the new pass's to reach.
    fn next_pass(&mut self) {
        self.entries.drain(..self.old);
        self.old = self.entries.len();
        // The first window grows the queue by doubling; later ones take from its front what they
        // add at its back. Room for an eighth more entities is kept, not up to twice as many.
        let room = self.old + self.old / 8;
        if self.entries.capacity() > room + room / 8 {
            self.entries.shrink_to(room);
        }
    }

    fn last(&self) -> &CachedTags {
        // Never empty here: every path pushes or finds an entry at the back first.
        &self.entries[self.entries.len() - 1]
    }

    /// The next set's block, most likely the front one: it lies elsewhere on the heap.
    fn prefetch_next(&self) {
        if self.old == 0 {
            return;
        }
        if let Some(next) = self.entries.front() {
            let bytes = &next.block.bytes;
            let mut at = 0;
            while at < bytes.len().min(512) {
                prefetch(bytes[at..].as_ptr());
                at += 64;
            }
        }
    }

    /// Blocks held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}
