//! All keys' histories, ordered by key: answers which keys (and which of their revisions) a
//! read at some revision sees.

use crate::key_index::{KeyAt, KeyIndex};
use crate::key_range::KeyRange;
use crate::revision::KeyRevision;
use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;

#[derive(Debug, Default)]
pub struct TreeIndex {
    keys: BTreeMap<Box<[u8]>, KeyIndex>,
}

impl TreeIndex {
    pub fn put(&mut self, key: &[u8], rev: KeyRevision) {
        self.change(key, |h| h.put(rev));
    }

    pub fn restore(
        &mut self,
        key: &[u8],
        created: KeyRevision,
        modified: KeyRevision,
        version: i64,
    ) {
        self.change(key, |h| h.restore(created, modified, version));
    }

    /// Changes `key`'s history, adding it if it has none (the key is copied only then).
    fn change(&mut self, key: &[u8], f: impl FnOnce(&mut KeyIndex)) {
        match self.keys.get_mut(key) {
            Some(history) => f(history),
            None => {
                let mut history = KeyIndex::default();
                f(&mut history);
                self.keys.insert(key.into(), history);
            }
        }
    }

    pub fn tombstone(&mut self, key: &[u8], rev: KeyRevision) -> bool {
        self.keys.get_mut(key).is_some_and(|ki| ki.tombstone(rev))
    }

    pub fn get(&self, key: &[u8], at: i64) -> Option<KeyAt> {
        self.keys.get(key)?.get(at)
    }

    /// Live keys of `range` at revision `at`, in key order.
    pub fn range<'a>(
        &'a self,
        range: &'a KeyRange,
        at: i64,
    ) -> impl Iterator<Item = (&'a [u8], KeyAt)> + 'a {
        self.histories(range)
            .filter_map(move |(k, ki)| ki.get(at).map(|at| (&k[..], at)))
    }

    /// The first `fetch` live keys of `range` at revision `at` (their revisions), and how
    /// many keys are live there in all: past the first `fetch` keys only their liveness is
    /// looked at (a page of a big list counts the rest of the range).
    pub fn revisions_and_count(
        &self,
        range: &KeyRange,
        at: i64,
        fetch: usize,
    ) -> (Vec<KeyRevision>, i64) {
        let mut revisions = Vec::new();
        let mut count = 0i64;
        for (_, ki) in self.histories(range) {
            if revisions.len() < fetch {
                if let Some(found) = ki.get(at) {
                    revisions.push(found.modified);
                    count += 1;
                }
            } else if ki.is_live_at(at) {
                count += 1;
            }
        }
        (revisions, count)
    }

    /// The first `fetch` live keys of `range` at revision `at` (their revisions).
    pub fn first_revisions(&self, range: &KeyRange, at: i64, fetch: usize) -> Vec<KeyRevision> {
        self.range(range, at)
            .take(fetch)
            .map(|(_, found)| found.modified)
            .collect()
    }

    /// How many keys of `range` are live at revision `at`.
    pub fn count_live(&self, range: &KeyRange, at: i64) -> i64 {
        self.histories(range)
            .filter(|(_, ki)| ki.is_live_at(at))
            .count() as i64
    }

    /// Every key's history in `range`, in key order.
    fn histories<'a>(
        &'a self,
        range: &'a KeyRange,
    ) -> Box<dyn Iterator<Item = (&'a Box<[u8]>, &'a KeyIndex)> + 'a> {
        match range {
            KeyRange::Single(k) => Box::new(self.keys.get_key_value(&k[..]).into_iter()),
            KeyRange::FromKey(k) => Box::new(
                self.keys
                    .range::<[u8], _>((Bound::Included(&k[..]), Bound::Unbounded)),
            ),
            KeyRange::Between(k, end) => {
                if k >= end {
                    Box::new(std::iter::empty())
                } else {
                    Box::new(
                        self.keys
                            .range::<[u8], _>((Bound::Included(&k[..]), Bound::Excluded(&end[..]))),
                    )
                }
            }
        }
    }

    /// Whether `key` still has revision `rev` (compaction has not dropped it).
    pub fn holds(&self, key: &[u8], rev: KeyRevision) -> bool {
        self.keys.get(key).is_some_and(|ki| ki.holds(rev))
    }

    /// Every revision at or before `at` that some key still has.
    pub fn revisions_upto(&self, at: i64) -> HashSet<KeyRevision> {
        let mut held = HashSet::new();
        for ki in self.keys.values() {
            ki.revisions_upto(at, &mut held);
        }
        held
    }

    /// Compacts every key's history at `at`; `revisions_upto(at)` then tells what stays
    /// reachable.
    pub fn compact(&mut self, at: i64) {
        self.keys.retain(|_, ki| {
            ki.compact(at);
            !ki.is_empty()
        });
    }
}
