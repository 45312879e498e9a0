//! Physical compaction, after the fact: a compaction drops history from the key index when
//! it is applied; the records it made unreachable are deleted later, in batches that each
//! take the writer's turn briefly, as etcd's scheduled compaction does.

use crate::backend::{self, KV, META, META_COMPACT_FINISHED};
use crate::error::{backend_err, poisoned, StoreError};
use crate::index::TreeIndex;
use crate::revision::KeyRevision;
use crate::revision_totals::RevisionTotals;
use redb::{Database, Durability, ReadableTable};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, RwLock};

/// Records scanned per batch for each one it may delete: kept records cost a read each.
const SCAN_PER_DELETE: usize = 10;

pub(crate) struct Physical {
    /// The compaction point whose unreachable records are all deleted.
    done: AtomicI64,
    /// Where the running batch sequence stopped, and for which compaction point.
    cursor: Mutex<(i64, u128)>,
}

impl Physical {
    pub(crate) fn new(done: i64) -> Physical {
        Physical {
            done: AtomicI64::new(done),
            cursor: Mutex::new((done, 0)),
        }
    }

    pub(crate) fn done(&self) -> i64 {
        self.done.load(Ordering::Acquire)
    }

    /// After a restore or defragmentation the backend is a new file: whatever it still
    /// holds below `target` is found again from the start.
    pub(crate) fn reset(&self, done: i64) {
        self.done.store(done, Ordering::Release);
        *self.cursor.lock().unwrap_or_else(|p| p.into_inner()) = (done, 0);
    }

    /// Deletes up to `limit` records at or below `target` that the index no longer has.
    /// The caller holds the writer's turn. Returns whether more remain.
    pub(crate) fn step(
        &self,
        db: &Database,
        index: &RwLock<TreeIndex>,
        target: i64,
        limit: usize,
        totals: &Mutex<Option<RevisionTotals>>,
    ) -> Result<bool, StoreError> {
        if self.done() >= target {
            return Ok(false);
        }
        let limit = limit.max(1);
        let mut cursor = self.cursor.lock().unwrap_or_else(|p| p.into_inner());
        if cursor.0 != target {
            // A later compaction point makes records already passed unreachable too.
            *cursor = (target, 0);
        }
        let upto = KeyRevision::new(target, i64::MAX).to_backend_key();
        let mut tx = db.begin_write().map_err(backend_err)?;
        tx.set_durability(Durability::None).map_err(backend_err)?;
        let mut finished = true;
        let mut gone = RevisionTotals::default();
        {
            let mut table = tx.open_table(KV).map_err(backend_err)?;
            let mut doomed = Vec::new();
            let mut next = cursor.1;
            {
                let index = index.read().map_err(|_| poisoned())?;
                for (scanned, item) in table
                    .range(cursor.1..=upto)
                    .map_err(backend_err)?
                    .enumerate()
                {
                    if doomed.len() >= limit || scanned >= limit.saturating_mul(SCAN_PER_DELETE) {
                        finished = false;
                        break;
                    }
                    let (k, v) = item.map_err(backend_err)?;
                    let at = k.value();
                    let rev = KeyRevision::from_backend_key(at);
                    if !index.holds(&backend::record_key(rev, v.value())?, rev) {
                        doomed.push(at);
                        gone.add(v.value(), v.value().first() == Some(&backend::TOMBSTONE));
                    }
                    next = at + 1;
                }
            }
            for k in doomed {
                table.remove(k).map_err(backend_err)?;
            }
            cursor.1 = next;
        }
        if finished {
            fail::fail_point!("compactBeforeSetFinishedCompact");
            tx.open_table(META)
                .map_err(backend_err)?
                .insert(META_COMPACT_FINISHED, target as u64)
                .map_err(backend_err)?;
        }
        fail::fail_point!("compactBeforeCommitBatch");
        tx.commit().map_err(backend_err)?;
        // The caller holds the writer's turn, which a backup's view takes with its totals.
        if let Some(t) = totals.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            t.remove(&gone);
        }
        fail::fail_point!("compactAfterCommitBatch");
        if finished {
            self.done.store(target, Ordering::Release);
        }
        Ok(!finished)
    }
}

#[cfg(test)]
mod tests {
    use crate::backend::KV;
    use crate::kvstore::Store;
    use crate::test_support::put;
    use oxcd_api::etcdserverpb::{CompactionRequest, RangeRequest};
    use oxcd_api::Revision;
    use redb::{ReadableDatabase, ReadableTableMetadata};

    fn records(store: &Store) -> u64 {
        let db = store.db();
        let rx = db.begin_read().expect("read");
        rx.open_table(KV).expect("kv").len().expect("len")
    }

    fn compact(store: &Store, at: i64) {
        let mut wb = store.begin_write().expect("write");
        wb.compact(&CompactionRequest {
            revision: at,
            physical: false,
        })
        .expect("compact");
        wb.commit(false).expect("commit");
    }

    #[test]
    fn compacted_history_is_deleted_in_batches_with_writes_between_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("db")).expect("open");
        for i in 0..100 {
            put(&store, "k", format!("v{i}"));
        }
        let hash = store.hash_kv(Revision(0)).expect("hash before");
        compact(&store, 91);
        assert_eq!(
            records(&store),
            100,
            "applying the compaction deletes nothing"
        );
        assert!(store.compaction_pending());
        let pending_hash = store.hash_kv(Revision(101)).expect("hash pending");
        assert_eq!(pending_hash.revision, hash.revision);

        assert!(store.compact_step(30).expect("step"), "more remains");
        assert_eq!(records(&store), 70);
        put(&store, "between", "batches");
        let mut steps = 1;
        loop {
            steps += 1;
            if !store.compact_step(30).expect("step") {
                break;
            }
        }
        assert_eq!(steps, 3, "89 records, 30 a batch");
        assert!(!store.compaction_pending());
        assert_eq!(records(&store), 12, "k at 91..=101 and the put between");
        assert_eq!(store.physically_compacted(), Revision(91));
        assert_eq!(
            store.hash_kv(Revision(101)).expect("hash after"),
            pending_hash,
            "HashKV does not depend on how far deletion got"
        );
        let read = store
            .range(&RangeRequest {
                key: b"k".to_vec(),
                revision: 91,
                ..Default::default()
            })
            .expect("read at the compaction point");
        assert_eq!(read.kvs[0].value, b"v89");
    }

    #[test]
    fn a_restart_mid_compaction_resumes_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        let store = Store::open(&path).expect("open");
        for i in 0..50 {
            put(&store, &format!("k{}", i % 5), format!("v{i}"));
        }
        compact(&store, 40);
        assert!(store.compact_step(10).expect("step"));
        let hash = store.hash_kv(Revision(0)).expect("hash");
        store
            .begin_write()
            .expect("write")
            .commit(true)
            .expect("sync");
        drop(store);

        let store = Store::open(&path).expect("reopen");
        assert!(store.compaction_pending());
        assert_eq!(store.hash_kv(Revision(0)).expect("hash reopened"), hash);
        store.finish_compaction().expect("finish");
        assert_eq!(
            records(&store),
            16,
            "k0..k4 at 36..=40 and the eleven after"
        );
        assert_eq!(store.hash_kv(Revision(0)).expect("hash finished"), hash);
    }

    #[test]
    fn writes_go_on_while_a_whole_compaction_is_finished_at_once() {
        use std::sync::{mpsc, Arc};
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(&dir.path().join("db")).expect("open"));
        for batch in 0..10 {
            let mut wb = store.begin_write().expect("write");
            for i in 0..5000 {
                wb.put(&oxcd_api::etcdserverpb::PutRequest {
                    key: format!("k{}", i % 10).into_bytes(),
                    value: format!("v{batch}-{i}").into_bytes(),
                    ..Default::default()
                })
                .expect("put");
            }
            wb.commit(false).expect("commit");
        }
        compact(&store, store.current_revision().0);
        assert!(store.compaction_pending());
        let (started, finished) = mpsc::channel();
        let finishing = std::thread::spawn({
            let store = store.clone();
            move || {
                let _ = started.send(());
                store.finish_compaction()
            }
        });
        finished.recv().expect("started");
        // Some 50,000 records to delete: each write gets its turn between two batches.
        let mut written_while_pending = 0;
        for i in 0..5 {
            put(&store, "w", format!("{i}"));
            if store.compaction_pending() {
                written_while_pending += 1;
            }
        }
        finishing.join().expect("thread").expect("finish");
        assert!(!store.compaction_pending());
        assert!(
            written_while_pending >= 4,
            "{written_while_pending} of 5 writes went ahead of the compaction"
        );
    }

    #[test]
    fn hash_kv_never_reports_a_compaction_point_over_records_it_did_not_leave_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = std::sync::Arc::new(Store::open(&dir.path().join("db")).expect("open"));
        let twin = Store::open(&dir.path().join("twin")).expect("open twin");
        for i in 0..20 {
            put(&store, &format!("k{}", i % 3), format!("v{i}"));
            put(&twin, &format!("k{}", i % 3), format!("v{i}"));
        }
        // A whole compaction runs, deletions and all, while a HashKV is under way.
        let compacting = store.clone();
        crate::test_support::set(&crate::kvstore::HASH_AFTER_READ, move || {
            let store = compacting.clone();
            let (done, finished) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                compact(&store, 10);
                store.finish_compaction().expect("finish");
                let _ = done.send(());
            });
            let _ = finished.recv_timeout(std::time::Duration::from_millis(300));
        });
        let during = store.hash_kv(Revision(20)).expect("hash during");
        crate::test_support::set(&crate::kvstore::HASH_AFTER_READ, || {});
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while store.compaction_pending() || store.compacted_revision() != Revision(10) {
            assert!(
                std::time::Instant::now() < deadline,
                "compaction never ended"
            );
            std::thread::yield_now();
        }
        let after = store.hash_kv(Revision(20)).expect("hash after");
        let uncompacted = twin.hash_kv(Revision(20)).expect("twin hash");
        // A hash stands for the history as compacted at the point it reports.
        let expected = if during.compact_revision == after.compact_revision {
            after.hash
        } else {
            assert_eq!(during.compact_revision, Revision(0));
            uncompacted.hash
        };
        assert_eq!(
            during.hash, expected,
            "HashKV reported compaction point {:?}",
            during.compact_revision
        );
    }
}
