//! The read path shared by plain reads and reads inside a transaction: the key index picks
//! the revisions (under its lock, briefly), then the values are loaded from a backend
//! snapshot with the lock released, so a big read never holds up the writer.

use crate::backend;
use crate::error::{poisoned, StoreError};
use crate::index::TreeIndex;
use crate::key_range::KeyRange;
use crate::page_counts::PageCounts;
use oxcd_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use oxcd_api::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
use oxcd_api::mvccpb::KeyValue;
use oxcd_api::EtcdError;
use prost::Message;
use redb::ReadableTable;
use std::cmp::Ordering;
use std::sync::atomic::{self, AtomicI64};
use std::sync::{Mutex, RwLock};

/// What a read may gather before it needs the big-read gate.
pub const DEFAULT_READ_SHARE: usize = 64 << 20;

/// etcd's gRPC send limit (math.MaxInt32): a response larger than this is refused.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = i32::MAX as usize;

/// What bounds one read's memory: the most bytes it may gather, and the gate a read must
/// hold to gather more than `share` (one such read at a time, so many big reads at once
/// take one big response's memory, not many).
pub(crate) struct ReadLimits<'a> {
    pub max_bytes: usize,
    pub share: usize,
    pub gate: Option<&'a Mutex<()>>,
    /// Counts of recent pages (none inside a write, whose revision is still changing).
    pub counts: Option<&'a PageCounts>,
}

impl ReadLimits<'_> {
    /// A read inside a write transaction: the writer never waits for readers, and refusing
    /// the read halfway would split the transaction (etcd does not bound it either).
    pub(crate) const UNBOUNDED: ReadLimits<'static> = ReadLimits {
        max_bytes: usize::MAX,
        share: usize::MAX,
        gate: None,
        counts: None,
    };
}

/// Where a read finds the key index and the compaction point that goes with it.
pub(crate) trait IndexView {
    fn with<R>(&self, read: impl FnOnce(&TreeIndex, i64) -> R) -> Result<R, StoreError>;
}

/// The index the writer holds: no lock to take.
pub(crate) struct HeldIndex<'a> {
    pub index: &'a TreeIndex,
    pub compacted: i64,
}

impl IndexView for HeldIndex<'_> {
    fn with<R>(&self, read: impl FnOnce(&TreeIndex, i64) -> R) -> Result<R, StoreError> {
        Ok(read(self.index, self.compacted))
    }
}

/// The published index: locked only while a read picks its revisions. The compaction point
/// is read under the lock, as compaction moves it under the write lock.
pub(crate) struct PublishedIndex<'a> {
    pub index: &'a RwLock<TreeIndex>,
    pub compacted: &'a AtomicI64,
}

impl IndexView for PublishedIndex<'_> {
    fn with<R>(&self, read: impl FnOnce(&TreeIndex, i64) -> R) -> Result<R, StoreError> {
        let index = self.index.read().map_err(|_| poisoned())?;
        Ok(read(&index, self.compacted.load(atomic::Ordering::Acquire)))
    }
}

pub(crate) fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

/// Bytes `kv` adds to an encoded RangeResponse (field tag, length, message).
fn encoded_kv_len(kv: &KeyValue) -> usize {
    let len = kv.encoded_len();
    1 + prost::length_delimiter_len(len) + len
}

/// Serves `req` at its revision against `current`, the newest revision the caller sees,
/// holding at most `max_bytes` of key-values in memory.
pub(crate) fn range<T: ReadableTable<u128, &'static [u8]>>(
    table: &T,
    index: &impl IndexView,
    req: &RangeRequest,
    current: i64,
    limits: &ReadLimits<'_>,
) -> Result<RangeResponse, StoreError> {
    if req.revision > current {
        return Err(EtcdError::FutureRev.into());
    }
    let rev = if req.revision <= 0 {
        current
    } else {
        req.revision
    };
    let filtered = req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;
    let mut order = req.sort_order();
    let target = req.sort_target();
    if target != SortTarget::Key && order == SortOrder::None {
        order = SortOrder::Ascend;
    }
    // As etcd, whether to fetch everything depends on the order asked for, not the default:
    // a sort target with no order sorts only the first `limit + 1` keys.
    let fetch = if req.count_only {
        0
    } else if req.sort_order() != SortOrder::None || filtered || req.limit <= 0 {
        usize::MAX
    } else {
        req.limit as usize + 1
    };
    let keys = KeyRange::new(&req.key, &req.range_end);
    let (revisions, count) = index.with(|index, compacted| {
        if rev < compacted {
            return Err(StoreError::from(EtcdError::Compacted));
        }
        let Some(counts) = limits.counts.filter(|_| fetch != usize::MAX) else {
            return Ok(index.revisions_and_count(&keys, rev, fetch));
        };
        if let Some(count) = counts.count(index, &keys, rev) {
            return Ok((index.first_revisions(&keys, rev, fetch), count));
        }
        let (revisions, count) = index.revisions_and_count(&keys, rev, fetch);
        counts.remember(&keys, rev, count);
        Ok((revisions, count))
    })??;

    // A keys-only read never copies out a value, unless the order needs it.
    let drop_values = req.keys_only && target != SortTarget::Value;
    // Sized once: a big list's vector otherwise doubles, copying itself and holding up to
    // twice what it needs while the response is encoded. (A filter may keep few.)
    let mut kvs = Vec::with_capacity(if filtered { 0 } else { revisions.len() });
    let mut held = 0usize;
    let mut gate = None;
    for at in revisions {
        #[cfg(test)]
        crate::test_support::fire(&BEFORE_LOAD);
        let kv = if drop_values {
            backend::load_key(table, at)?
        } else {
            backend::load(table, at)?
        };
        let wanted = (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
            && (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
            && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
            && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision);
        if !wanted {
            continue;
        }
        held += encoded_kv_len(&kv);
        if held > limits.max_bytes {
            return Err(EtcdError::ResponseTooLarge {
                size: held,
                max: limits.max_bytes,
            }
            .into());
        }
        if held > limits.share && gate.is_none() {
            if let Some(g) = limits.gate {
                #[cfg(test)]
                crate::test_support::fire(&BEFORE_GATE);
                gate = Some(g.lock().unwrap_or_else(|p| p.into_inner()));
            }
        }
        kvs.push(kv);
    }
    if order != SortOrder::None {
        let cmp = |a: &KeyValue, b: &KeyValue| -> Ordering {
            match target {
                SortTarget::Key => a.key.cmp(&b.key),
                SortTarget::Version => a.version.cmp(&b.version),
                SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                SortTarget::Value => a.value.cmp(&b.value),
            }
        };
        if order == SortOrder::Descend {
            kvs.sort_by(|a, b| cmp(b, a));
        } else {
            kvs.sort_by(cmp);
        }
    }
    let mut more = false;
    if req.limit > 0 && kvs.len() > req.limit as usize {
        kvs.truncate(req.limit as usize);
        more = true;
    }
    if req.keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    Ok(RangeResponse {
        // etcd answers with the store's revision, not the one read at.
        header: header(current),
        kvs,
        more,
        count,
    })
}

#[cfg(test)]
thread_local! {
    /// Called before each value a read on this thread loads.
    pub(crate) static BEFORE_LOAD: crate::test_support::Hook = const { std::cell::RefCell::new(None) };
    /// Called before a read on this thread waits for the big-read gate.
    pub(crate) static BEFORE_GATE: crate::test_support::Hook = const { std::cell::RefCell::new(None) };
}

#[cfg(test)]
mod tests {
    use super::{BEFORE_GATE, BEFORE_LOAD};
    use crate::kvstore::Store;
    use crate::test_support::{peak_bytes_during, put};
    use oxcd_api::etcdserverpb::RangeRequest;
    use oxcd_api::EtcdError;
    use std::sync::{mpsc, Arc};
    use std::time::Duration;

    fn all(keys_only: bool) -> RangeRequest {
        RangeRequest {
            key: vec![0],
            range_end: vec![0],
            keys_only,
            ..Default::default()
        }
    }

    #[test]
    fn a_write_goes_ahead_while_a_range_loads_its_values() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(&dir.path().join("db")).expect("open"));
        for i in 0..10 {
            put(&store, &format!("k{i}"), "v");
        }
        let (loading_tx, loading) = mpsc::channel();
        let (go, go_rx) = mpsc::channel::<()>();
        let reader = std::thread::spawn({
            let store = store.clone();
            move || {
                let mut first = true;
                crate::test_support::set(&BEFORE_LOAD, move || {
                    if std::mem::take(&mut first) {
                        let _ = loading_tx.send(());
                        let _ = go_rx.recv_timeout(Duration::from_secs(10));
                    }
                });
                store.range(&all(false))
            }
        });
        loading
            .recv_timeout(Duration::from_secs(10))
            .expect("the range starts loading");
        let (wrote_tx, wrote) = mpsc::channel();
        std::thread::spawn({
            let store = store.clone();
            move || {
                put(&store, "during", "the read");
                let _ = wrote_tx.send(());
            }
        });
        let went_ahead = wrote.recv_timeout(Duration::from_secs(5)).is_ok();
        let _ = go.send(());
        let read = reader.join().expect("reader").expect("range");
        assert!(
            went_ahead,
            "the write waited for the read to load its values"
        );
        assert_eq!(
            read.kvs.len(),
            10,
            "the read sees the revision it started at"
        );
        assert_eq!(read.header.map(|h| h.revision), Some(11));
    }

    #[test]
    fn a_big_lists_vector_holds_no_slack_while_it_is_encoded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("db")).expect("open");
        for i in 0..100 {
            put(&store, &format!("k{i:03}"), "v");
        }
        let read = store.range(&all(true)).expect("range");
        assert_eq!(read.kvs.len(), 100);
        assert_eq!(read.kvs.capacity(), 100, "sized once, not doubled to 128");
    }

    #[test]
    fn a_keys_only_range_does_not_hold_the_values() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("db")).expect("open");
        for i in 0..16 {
            put(&store, &format!("k{i:02}"), vec![b'v'; 1 << 20]);
        }
        // The first read fills the backend's page cache (32 MiB); the second is measured.
        store.range(&all(true)).expect("warm-up range");
        let (resp, peak) = peak_bytes_during(|| store.range(&all(true)).expect("range"));
        assert_eq!(resp.kvs.len(), 16);
        assert!(resp.kvs.iter().all(|kv| kv.value.is_empty()));
        // The backend hands each 1 MiB value out in pages of its own; 16 of them is the bug.
        assert!(
            peak < 6 << 20,
            "a keys-only read of 16 MiB of values held {peak} bytes at once"
        );
    }

    #[test]
    fn a_range_over_the_response_limit_is_refused_and_smaller_reads_still_served() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("db")).expect("open");
        for i in 0..10 {
            put(&store, &format!("k{i}"), vec![b'v'; 200]);
        }
        store.set_max_response_bytes(1000);
        let err = store.range(&all(false)).expect_err("over the limit");
        let crate::StoreError::Request(err) = err else {
            panic!("not a request error: {err}");
        };
        assert!(
            matches!(err, EtcdError::ResponseTooLarge { max: 1000, size } if size > 1000),
            "{err}"
        );
        let limited = store
            .range(&RangeRequest {
                limit: 3,
                ..all(false)
            })
            .expect("a limited read fits");
        assert_eq!(
            (limited.kvs.len(), limited.count, limited.more),
            (3, 10, true)
        );
        let counted = store
            .range(&RangeRequest {
                count_only: true,
                ..all(false)
            })
            .expect("a count fits");
        assert_eq!(counted.count, 10);
        assert_eq!(store.range(&all(true)).expect("keys fit").kvs.len(), 10);
    }

    #[test]
    fn past_its_share_a_read_waits_for_the_other_big_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(&dir.path().join("db")).expect("open"));
        for i in 0..20 {
            put(&store, &format!("k{i:02}"), vec![b'v'; 1000]);
        }
        store.set_read_share(5000);
        // The first read pauses once past its share, holding the gate.
        let (past_share_tx, past_share) = mpsc::channel();
        let (go, go_rx) = mpsc::channel::<()>();
        let first = std::thread::spawn({
            let store = store.clone();
            move || {
                let mut loaded = 0;
                crate::test_support::set(&BEFORE_LOAD, move || {
                    loaded += 1;
                    if loaded == 8 {
                        let _ = past_share_tx.send(());
                        let _ = go_rx.recv_timeout(Duration::from_secs(10));
                    }
                });
                store.range(&all(false))
            }
        });
        past_share
            .recv_timeout(Duration::from_secs(10))
            .expect("the first read passes its share");
        let (waiting_tx, waiting) = mpsc::channel();
        let (second_done_tx, second_done) = mpsc::channel();
        let second = std::thread::spawn({
            let store = store.clone();
            move || {
                crate::test_support::set(&BEFORE_GATE, move || {
                    let _ = waiting_tx.send(());
                });
                let read = store.range(&all(false));
                let _ = second_done_tx.send(());
                read
            }
        });
        let waited = waiting.recv_timeout(Duration::from_secs(10)).is_ok();
        let finished_early = second_done.try_recv().is_ok();
        let _ = go.send(());
        let a = first.join().expect("first").expect("first range");
        let b = second.join().expect("second").expect("second range");
        assert!(
            waited,
            "the second read went past its share without the gate"
        );
        assert!(
            !finished_early,
            "the second read finished while the first held the gate"
        );
        assert_eq!((a.kvs.len(), b.kvs.len()), (20, 20));
    }
}
