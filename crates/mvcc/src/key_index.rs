//! The history of one key: generations of revisions, each generation running from a creation
//! to a deletion (tombstone), as etcd's keyIndex.

use crate::revision::KeyRevision;
use std::collections::HashSet;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Generation {
    version: i64,
    created: KeyRevision,
    revs: Vec<KeyRevision>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyIndex {
    modified: KeyRevision,
    generations: Vec<Generation>,
}

/// What a read at some revision sees of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyAt {
    pub modified: KeyRevision,
    pub created: KeyRevision,
    pub version: i64,
}

/// Most keys have one generation of one revision: a first push allocates room for one, not
/// the four `Vec` would (measured: the index of 100k keys shrinks by about half).
fn push_compact<T>(v: &mut Vec<T>, item: T) {
    if v.capacity() == 0 {
        v.reserve_exact(1);
    }
    v.push(item);
}

impl KeyIndex {
    fn open_generation(&mut self) {
        push_compact(&mut self.generations, Generation::default());
    }

    pub fn put(&mut self, rev: KeyRevision) {
        if self.generations.is_empty() {
            self.open_generation();
        }
        let g = self.generations.last_mut().expect("a generation exists");
        if g.revs.is_empty() {
            g.created = rev;
        }
        push_compact(&mut g.revs, rev);
        g.version += 1;
        self.modified = rev;
    }

    /// Records the restore of an existing revision (startup), keeping the creation revision
    /// and version the stored key-value carries.
    pub fn restore(&mut self, created: KeyRevision, modified: KeyRevision, version: i64) {
        if self.generations.is_empty() {
            self.open_generation();
        }
        let g = self.generations.last_mut().expect("a generation exists");
        if g.revs.is_empty() {
            g.created = created;
        }
        push_compact(&mut g.revs, modified);
        g.version = version;
        self.modified = modified;
    }

    /// Ends the current generation at `rev`. Returns false when the key is not live.
    pub fn tombstone(&mut self, rev: KeyRevision) -> bool {
        match self.generations.last() {
            Some(g) if !g.revs.is_empty() => {}
            _ => return false,
        }
        self.put(rev);
        self.open_generation();
        true
    }

    /// Whether `rev` is one of the revisions the key still has.
    pub fn holds(&self, rev: KeyRevision) -> bool {
        self.generations
            .iter()
            .any(|g| g.revs.binary_search(&rev).is_ok())
    }

    /// Adds the key's revisions at or before `at` to `into`.
    pub fn revisions_upto(&self, at: i64, into: &mut HashSet<KeyRevision>) {
        for g in &self.generations {
            into.extend(g.revs.iter().take_while(|r| r.main <= at));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.generations.iter().all(|g| g.revs.is_empty())
    }

    /// Whether a read at `at` sees the key (as `get(at).is_some()`), without working out its
    /// revision: at or after its last change only its last generation need be looked at.
    pub fn is_live_at(&self, at: i64) -> bool {
        if at >= self.modified.main {
            return self.generations.last().is_some_and(|g| !g.revs.is_empty());
        }
        self.generation_at(at).is_some()
    }

    fn generation_at(&self, at: i64) -> Option<&Generation> {
        let last = self.generations.len().checked_sub(1)?;
        for (i, g) in self.generations.iter().enumerate().rev() {
            let (Some(first), Some(final_rev)) = (g.revs.first(), g.revs.last()) else {
                continue;
            };
            if i != last && final_rev.main <= at {
                // The generation ended with a tombstone at or before `at`.
                return None;
            }
            if first.main <= at {
                return Some(g);
            }
        }
        None
    }

    /// The key as a read at revision `at` sees it, if it is live there.
    pub fn get(&self, at: i64) -> Option<KeyAt> {
        let g = self.generation_at(at)?;
        let n = g.revs.iter().rposition(|r| r.main <= at)?;
        Some(KeyAt {
            modified: g.revs[n],
            created: g.created,
            version: g.version - (g.revs.len() - n - 1) as i64,
        })
    }

    /// Drops history a read at `at` or later can no longer see; what stays reachable at
    /// `at` is what `revisions_upto(at)` reports afterwards.
    pub fn compact(&mut self, at: i64) {
        if self.generations.is_empty() {
            return;
        }
        let mut gi = 0;
        while gi + 1 < self.generations.len() {
            let ended = self.generations[gi].revs.last().map_or(0, |r| r.main);
            if ended > at {
                break;
            }
            gi += 1;
        }
        let last = self.generations.len() - 1;
        let g = &mut self.generations[gi];
        if !g.revs.is_empty() {
            if let Some(n) = g.revs.iter().rposition(|r| r.main <= at) {
                g.revs.drain(..n);
            }
            if g.revs.len() == 1 && gi != last {
                // Only the tombstone is left: the whole generation is gone.
                gi += 1;
            }
        }
        self.generations.drain(..gi);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(m: i64) -> KeyRevision {
        KeyRevision::new(m, 0)
    }

    #[test]
    fn get_sees_generations_and_tombstones() {
        let mut ki = KeyIndex::default();
        ki.put(r(2));
        ki.put(r(4));
        assert!(ki.tombstone(r(6)));
        ki.put(r(8));
        assert_eq!(ki.get(1), None);
        assert_eq!(
            ki.get(3)
                .map(|k| (k.modified.main, k.created.main, k.version)),
            Some((2, 2, 1))
        );
        assert_eq!(
            ki.get(5).map(|k| (k.modified.main, k.version)),
            Some((4, 2))
        );
        assert_eq!(ki.get(6), None);
        assert_eq!(ki.get(7), None);
        assert_eq!(
            ki.get(9)
                .map(|k| (k.modified.main, k.created.main, k.version)),
            Some((8, 8, 1))
        );
        assert!(!KeyIndex::default().tombstone(r(1)));
    }

    /// What a compaction at `at` left reachable (the records physical compaction keeps).
    fn kept(ki: &KeyIndex, at: i64) -> HashSet<KeyRevision> {
        let mut held = HashSet::new();
        ki.revisions_upto(at, &mut held);
        held
    }

    #[test]
    fn compact_keeps_what_reads_can_reach() {
        let mut ki = KeyIndex::default();
        ki.put(r(2));
        ki.put(r(4));
        ki.tombstone(r(6));
        ki.put(r(8));
        ki.compact(5);
        assert!(kept(&ki, 5).contains(&r(4)));
        assert_eq!(ki.get(5).map(|k| k.modified.main), Some(4));
        ki.compact(7);
        assert!(kept(&ki, 7).is_empty());
        assert_eq!(ki.get(9).map(|k| k.modified.main), Some(8));
        ki.compact(9);
        assert!(kept(&ki, 9).contains(&r(8)));
    }

    #[test]
    fn compacting_a_deleted_key_empties_it() {
        let mut ki = KeyIndex::default();
        ki.put(r(2));
        ki.tombstone(r(3));
        ki.compact(3);
        assert!(ki.is_empty());
        assert!(kept(&ki, 3).is_empty());
    }
}
