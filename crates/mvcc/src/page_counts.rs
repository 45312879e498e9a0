//! A list's pages each count the whole rest of its range (etcd's `count`, which
//! kube-apiserver turns into `remainingItemCount`). The pages after the first are read at the
//! first one's revision, where which keys live can no longer change, so a page's count is
//! the previous page's less the keys between the two: each page walks one page of keys, not
//! the rest of the range.

use crate::index::TreeIndex;
use crate::key_range::KeyRange;
use std::sync::Mutex;

/// The recent lists remembered (a few run at once, one per resource).
const REMEMBERED: usize = 16;

struct Counted {
    from: Vec<u8>,
    /// None: to the end of the keyspace.
    end: Option<Vec<u8>>,
    rev: i64,
    count: i64,
}

#[derive(Default)]
pub(crate) struct PageCounts(Mutex<Vec<Counted>>);

/// Where a range starts and ends, for ranges that can be paged (an empty one cannot: the
/// keys between an earlier start and its start are not all inside it).
fn bounds(keys: &KeyRange) -> Option<(&[u8], Option<&[u8]>)> {
    match keys {
        KeyRange::Between(from, end) if from < end => Some((from, Some(end))),
        KeyRange::Between(..) => None,
        KeyRange::FromKey(from) => Some((from, None)),
        KeyRange::Single(_) => None,
    }
}

impl PageCounts {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Counted>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live keys of `keys` at `rev` (which must be a revision already written), from a
    /// count remembered for a range with the same end at the same revision starting at or
    /// before it.
    pub fn count(&self, index: &TreeIndex, keys: &KeyRange, rev: i64) -> Option<i64> {
        let (from, end) = bounds(keys)?;
        let mut counted = self.lock();
        let hit = counted
            .iter_mut()
            .find(|c| c.rev == rev && c.end.as_deref() == end && c.from.as_slice() <= from)?;
        if hit.from.as_slice() < from {
            let between = KeyRange::Between(std::mem::take(&mut hit.from), from.to_vec());
            hit.count -= index.count_live(&between, rev);
            hit.from = from.to_vec();
        }
        Some(hit.count)
    }

    pub fn remember(&self, keys: &KeyRange, rev: i64, count: i64) {
        let Some((from, end)) = bounds(keys) else {
            return;
        };
        let mut counted = self.lock();
        if counted.len() >= REMEMBERED {
            counted.remove(0);
        }
        counted.push(Counted {
            from: from.to_vec(),
            end: end.map(<[u8]>::to_vec),
            rev,
            count,
        });
    }

    /// After the store was replaced wholesale.
    pub fn clear(&self) {
        self.lock().clear();
    }
}
