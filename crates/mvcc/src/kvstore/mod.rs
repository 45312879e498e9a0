//! The store: reads at the published revision from any thread, writes in batches from the
//! single apply thread, each batch one backend transaction carrying the applied raft index.
//! Every public operation is declared here and handed to the module of its concept.

use crate::backend::{self, CLUSTER, KV, META, META_COMPACTED, META_COMPACT_FINISHED};
use crate::backup::{check_backup, BackupWriter};
use crate::compaction::Physical;
use crate::db_size::DbSize;
use crate::defrag::{self, Defragmented};
use crate::error::{
    backend_err, poisoned, snapshot_backend_err, BackendError, BackupError, SnapshotError,
    StoreError,
};
use crate::export::{ExportView, Loader};
use crate::hash;
use crate::index::TreeIndex;
use crate::lease::{LeaseInfo, Leases};
use crate::page_counts::PageCounts;
use crate::range::{
    self, PublishedIndex, ReadLimits, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_READ_SHARE,
};
use crate::revision::KeyRevision;
use crate::revision_totals::RevisionTotals;
use crate::snapshot::{self, SnapshotPoint};
use crate::txn;
use crate::watch::{Progress, WatchKey, WatchSink, WatchSpec};
use crate::watch_hub::{History, Hub};
use oxcd_api::etcdserverpb::{RangeRequest, RangeResponse, TxnRequest, TxnResponse};
use oxcd_api::mvccpb::Event;
use oxcd_api::{EtcdError, LeaseId, Revision};
use redb::{Database, Durability, ReadOnlyTable, ReadableDatabase, ReadableTable};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// Records deleted per batch when compaction is finished at once (defragmentation, tests),
/// and the pause after each that lets the writers waiting for their turn take it (the turn
/// is not fair: a thread that lets it go and asks again at once can keep it for seconds).
const FINISH_COMPACT_BATCH: usize = 1000;
const FINISH_COMPACT_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);
/// A compaction batch that keeps writers out for longer is logged.
const SLOW_COMPACTION_BATCH: std::time::Duration = std::time::Duration::from_millis(100);
/// Rounds of catching up with writes before a defragmentation holds writers out, and how
/// few records left to copy end them early.
const DEFRAG_CATCH_UP_ROUNDS: usize = 4;
const DEFRAG_FINAL_RECORDS: u64 = 1000;

pub struct Store {
    /// Swapped whole by defragmentation; readers clone the handle and never wait on it.
    db: RwLock<Arc<Database>>,
    /// Held by the one write batch open at a time, by snapshot restores and defragmentation.
    writer: Mutex<()>,
    size: DbSize,
    path: PathBuf,
    index: RwLock<TreeIndex>,
    /// The newest revision whose batch is committed, hence visible to readers.
    current: AtomicI64,
    compacted: AtomicI64,
    hub: Hub,
    leases: RwLock<Leases>,
    physical: Physical,
    /// The most key-value bytes one read may hold (see `set_max_response_bytes`).
    max_response_bytes: AtomicUsize,
    /// What one read may gather before it must hold `big_read_gate`.
    read_share: AtomicUsize,
    big_read_gate: Mutex<()>,
    page_counts: PageCounts,
    defrag: Mutex<()>,
    /// The backend's revision records, changed under the writer's turn with every commit
    /// that adds or deletes some (unknown after a defragmentation, until the next load).
    totals: Mutex<Option<RevisionTotals>>,
}

/// A lease as `lease_list` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTtl {
    pub id: LeaseId,
    /// The TTL granted, in seconds.
    pub ttl: i64,
    /// The remaining TTL last checkpointed through raft (0: none).
    pub remaining_ttl: i64,
}

/// etcd's Hash: a CRC of every record but the meta ones, at the store's revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreHash {
    pub hash: u32,
    pub revision: Revision,
}

/// etcd's HashKV: a CRC of the keyspace's history up to `revision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvHash {
    pub hash: u32,
    pub revision: Revision,
    pub compact_revision: Revision,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, BackendError> {
        // A defragmentation cut short left its copy behind; the original is whole.
        let _ = std::fs::remove_file(defrag::temp_path(path));
        let db = backend::open(path)?;
        let loaded = load(&db)?;
        let leases = Leases::load(&db, loaded.key_lease)?;
        let store = Store {
            db: RwLock::new(Arc::new(db)),
            writer: Mutex::new(()),
            size: DbSize::default(),
            path: path.to_path_buf(),
            index: RwLock::new(loaded.index),
            current: AtomicI64::new(loaded.current),
            compacted: AtomicI64::new(loaded.compacted),
            hub: Hub::default(),
            physical: Physical::new(loaded.compact_finished),
            leases: RwLock::new(leases),
            max_response_bytes: AtomicUsize::new(DEFAULT_MAX_RESPONSE_BYTES),
            read_share: AtomicUsize::new(DEFAULT_READ_SHARE),
            big_read_gate: Mutex::new(()),
            page_counts: PageCounts::default(),
            defrag: Mutex::new(()),
            totals: Mutex::new(Some(loaded.totals)),
        };
        store.size.refresh_file(path);
        Ok(store)
    }

    /// Bounds the key-values one read may gather: a read that would hold more is refused
    /// with ResourceExhausted, as gRPC refuses a message over its send limit, instead of
    /// being built. Reads inside a write transaction are not bounded.
    pub fn set_max_response_bytes(&self, max: usize) {
        self.max_response_bytes.store(max, Ordering::Relaxed);
    }

    /// Whether compacted history is still waiting to be deleted from the backend.
    pub fn compaction_pending(&self) -> bool {
        self.physical.done() < self.compacted_revision().0
    }

    /// The compaction point whose unreachable history is all deleted from the backend.
    pub fn physically_compacted(&self) -> Revision {
        Revision(self.physical.done())
    }

    /// Deletes up to `limit` records that compaction made unreachable, in one short write
    /// transaction; returns whether more remain. Call it again after a pause until then.
    pub fn compact_step(&self, limit: usize) -> Result<bool, StoreError> {
        let target = self.compacted_revision().0;
        let waited = std::time::Instant::now();
        let _turn = self.writer_turn();
        let held = std::time::Instant::now();
        let more = self
            .physical
            .step(&self.db(), &self.index, target, limit, &self.totals)?;
        if held.elapsed() > SLOW_COMPACTION_BATCH {
            tracing::warn!(
                took = ?held.elapsed(),
                waited_for_writer = ?held - waited,
                limit,
                "compaction batch held writes for long"
            );
        }
        if !more {
            self.size.count_soon();
        }
        Ok(more)
    }

    /// Runs `compact_step` until nothing compacted is left in the backend, pausing between
    /// batches so writes go on.
    pub fn finish_compaction(&self) -> Result<(), StoreError> {
        while self.compact_step(FINISH_COMPACT_BATCH)? {
            std::thread::sleep(FINISH_COMPACT_PAUSE);
        }
        Ok(())
    }

    /// Sets how much a read may gather before it waits for the other big reads: past it,
    /// one read at a time goes on, so many big reads at once take about one's memory.
    pub fn set_read_share(&self, bytes: usize) {
        self.read_share.store(bytes, Ordering::Relaxed);
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn current_revision(&self) -> Revision {
        Revision(self.current.load(Ordering::Acquire))
    }

    pub fn compacted_revision(&self) -> Revision {
        Revision(self.compacted.load(Ordering::Acquire))
    }

    pub fn meta(&self, name: &str) -> Result<Option<u64>, BackendError> {
        let db = self.db();
        let rx = db.begin_read()?;
        let meta = rx.open_table(META)?;
        Ok(meta.get(name)?.map(|g| g.value()))
    }

    pub fn cluster_record(&self, name: &str) -> Result<Option<Vec<u8>>, BackendError> {
        let db = self.db();
        let rx = db.begin_read()?;
        let t = rx.open_table(CLUSTER)?;
        Ok(t.get(name)?.map(|g| g.value().to_vec()))
    }

    /// A read at `req.revision` (0: the newest), served from the published state.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, StoreError> {
        self.read_view(|table, index, current, limits| {
            range::range(table, index, req, current, limits)
        })
    }

    /// A txn whose every op is a range (see `is_read_only`), served from the published state.
    pub fn read_only_txn(&self, req: &TxnRequest) -> Result<TxnResponse, StoreError> {
        self.read_view(|table, index, current, limits| {
            txn::read_only_txn(table, index, req, current, limits)
        })
    }

    pub fn begin_write(&self) -> Result<WriteBatch<'_>, StoreError> {
        let turn = self.writer_turn();
        let tx = self.db().begin_write().map_err(backend_err)?;
        WriteBatch::new(self, turn, tx)
    }

    /// Writes out what non-durable commits left buffered (`backend::settle`): for when writes
    /// pause, and before a long read.
    pub fn settle(&self) -> Result<(), StoreError> {
        let _turn = self.writer_turn();
        backend::settle(&self.db()).map_err(backend_err)
    }

    pub fn lease(&self, id: LeaseId) -> Option<LeaseInfo> {
        self.leases.read().ok()?.get(id.0).cloned()
    }

    pub fn lease_count(&self) -> usize {
        self.leases.read().map_or(0, |l| l.len())
    }

    /// Every lease with its granted TTL and checkpointed remaining TTL.
    pub fn lease_list(&self) -> Vec<LeaseTtl> {
        self.leases
            .read()
            .map(|l| {
                l.list()
                    .into_iter()
                    .map(|(id, ttl, remaining_ttl)| LeaseTtl {
                        id: LeaseId(id),
                        ttl,
                        remaining_ttl,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Starts a watch. It is synced (fed by commits) when it starts after the current
    /// revision, and catches up from history (`sync_watchers`) otherwise.
    pub fn watch(&self, key: WatchKey, spec: WatchSpec, sink: Arc<dyn WatchSink>) {
        self.hub.watch(key, spec, sink, self)
    }

    /// Ends a watch; false if there was none.
    pub fn cancel_watch(&self, key: WatchKey) -> bool {
        self.hub.cancel(key)
    }

    /// Ends every watch of a stream.
    pub fn cancel_stream(&self, stream: u64) {
        self.hub.cancel_stream(stream)
    }

    /// Whether a watch gets each commit as it happens (the hub's tests look).
    #[cfg(test)]
    pub fn is_synced(&self, key: WatchKey) -> bool {
        self.hub.is_synced(key)
    }

    /// A progress notification for one watch of `stream` (or all of them), queued in their
    /// sink behind every event they were sent; see `Progress`.
    pub fn request_progress(&self, stream: u64, watch: Option<i64>, response_id: i64) -> Progress {
        self.hub.progress(stream, watch, response_id, self)
    }

    pub fn watcher_count(&self) -> usize {
        self.hub.len()
    }

    /// One catch-up round for unsynced watchers: at most `max_revisions` revisions of
    /// history read from the store and sent; those that reach the present become synced.
    /// Returns how many are still unsynced.
    pub fn sync_watchers(&self, max_revisions: i64) -> Result<usize, StoreError> {
        self.hub.sync(self, max_revisions)
    }

    /// Writes every record to `out` from one consistent read; returns the meta and cluster
    /// records written, so the caller knows which raft index the stream stands for.
    pub fn write_snapshot<W: Write>(&self, out: W) -> Result<SnapshotPoint, SnapshotError> {
        let db = self.db();
        let rx = db.begin_read().map_err(snapshot_backend_err)?;
        snapshot::write(&rx, out)
    }

    /// Replaces the whole store with a stream `write_snapshot` made, durably, in one
    /// transaction; nothing changes unless the stream is whole.
    pub fn restore_snapshot<R: Read>(&self, input: R) -> Result<SnapshotPoint, SnapshotError> {
        self.replace_with(|tx| snapshot::restore(tx, input))
    }

    /// Every table as one read transaction sees it, for writing in another format.
    pub fn export_view(&self) -> Result<ExportView, SnapshotError> {
        // The totals and the read see the same commits: writers change both under the turn.
        let _turn = self.writer_turn();
        let rx = self.db().begin_read().map_err(snapshot_backend_err)?;
        let totals = *self.lock_totals();
        Ok(ExportView { rx, totals })
    }

    /// Replaces every table but this member's own ID with what `fill` loads, durably, in one
    /// transaction; nothing changes unless `fill` succeeds.
    pub fn load_with<T>(
        &self,
        fill: impl FnOnce(&mut Loader<'_>) -> Result<T, SnapshotError>,
    ) -> Result<T, SnapshotError> {
        self.replace_with(|tx| {
            snapshot::clear_but_member_id(tx)?;
            fill(&mut Loader::new(tx)?)
        })
    }

    fn replace_with<T>(
        &self,
        write: impl FnOnce(&mut redb::WriteTransaction) -> Result<T, SnapshotError>,
    ) -> Result<T, SnapshotError> {
        let _no_defrag = self.defrag_turn();
        let turn = self.writer_turn();
        let db = self.db();
        let mut tx = db.begin_write().map_err(snapshot_backend_err)?;
        let point = write(&mut tx)?;
        tx.set_durability(Durability::Immediate)
            .map_err(snapshot_backend_err)?;
        // Readers see the new records only with the new index.
        let mut index = self.index.write().map_err(|_| poisoned())?;
        tx.commit().map_err(snapshot_backend_err)?;
        let loaded = load(&db)?;
        *self.lock_totals() = Some(loaded.totals);
        *index = loaded.index;
        *self.leases.write().map_err(|_| poisoned())? = Leases::load(&db, loaded.key_lease)?;
        self.compacted.store(loaded.compacted, Ordering::Release);
        self.physical.reset(loaded.compact_finished);
        self.page_counts.clear();
        self.hub
            .unsync_all(|| self.current.store(loaded.current, Ordering::Release));
        self.size.refresh_file(&self.path);
        self.size.count_soon();
        drop(index);
        drop(turn);
        Ok(point)
    }

    /// A backup of the whole store from one consistent read, as Maintenance.Snapshot sends it.
    pub fn write_backup<W: Write>(&self, out: W) -> Result<W, SnapshotError> {
        let mut w = BackupWriter::new(out);
        self.write_snapshot(&mut w)?;
        Ok(w.finish()?)
    }

    /// Replaces the store with a backup file's contents, after `check_backup` passed on it.
    pub fn restore_backup(
        &self,
        path: &Path,
        skip_hash_check: bool,
    ) -> Result<SnapshotPoint, BackupError> {
        check_backup(path, skip_hash_check)?;
        let file = std::fs::File::open(path)?;
        Ok(self.restore_snapshot(file)?)
    }

    /// A CRC of every record but the meta ones (applied index and such differ by member):
    /// etcd's Hash, equal on members that applied the same entries.
    pub fn hash_all(&self) -> Result<StoreHash, StoreError> {
        let revision = self.current_revision();
        let db = self.db();
        let rx = db.begin_read().map_err(backend_err)?;
        Ok(StoreHash {
            hash: hash::hash_all(&rx)?,
            revision,
        })
    }

    /// A CRC of every record up to revision `rev` (0: the newest), equal on members that
    /// applied the same history.
    pub fn hash_kv(&self, rev: Revision) -> Result<KvHash, StoreError> {
        let current = self.current_revision();
        let db = self.db();
        // While compacted history is still being deleted, members differ in how much of it
        // is left: what the index no longer has is left out, as etcd's HashKV does. The
        // compaction point, the index and the read must agree: under the index lock no new
        // point is published, and deletions are seen as finished only if they committed
        // before the read began.
        let (rx, compacted, held) = {
            let index = self.index.read().map_err(|_| poisoned())?;
            let compacted = self.compacted_revision();
            let deleted_upto = self.physical.done();
            let rx = db.begin_read().map_err(backend_err)?;
            #[cfg(test)]
            crate::test_support::fire(&HASH_AFTER_READ);
            let held = (deleted_upto < compacted.0)
                .then(|| (compacted.0, index.revisions_upto(compacted.0)));
            (rx, compacted, held)
        };
        let rev = if rev.0 == 0 { current } else { rev };
        if rev > current {
            return Err(EtcdError::FutureRev.into());
        }
        if rev < compacted {
            return Err(EtcdError::Compacted.into());
        }
        Ok(KvHash {
            hash: hash::hash_kv(&rx, rev.0, held.as_ref())?,
            compact_revision: compacted,
            revision: rev,
        })
    }

    pub fn defragment(&self) -> Result<Defragmented, BackendError> {
        let _one = self.defrag_turn();
        // What compaction left for later goes first (in its batches), or the copy keeps it.
        self.finish_compaction().map_err(|e| match e {
            StoreError::Backend(e) => e,
            StoreError::Request(e) => BackendError::Io {
                path: self.path.display().to_string(),
                source: std::io::Error::other(e.to_string()),
            },
        })?;
        let compact_finished = self.physical.done();
        let size_before = self.db_size();
        let copied = (|| {
            let mut copy = defrag::start_copy(&self.db(), &self.path)?;
            // Writes went on during the bulk copy: catch up with them while they go on, so
            // the part done with writers held out is short.
            for _ in 0..DEFRAG_CATCH_UP_ROUNDS {
                if defrag::catch_up(&self.db(), &mut copy)? < DEFRAG_FINAL_RECORDS {
                    break;
                }
            }
            let turn = self.writer_turn();
            defrag::finish_copy(&self.db(), copy, compact_finished, &self.path)
                .map(|done| (done, turn))
        })();
        let ((fresh, held_records), _turn) = match copied {
            Ok(done) => done,
            Err(e) => {
                // The copy may be what filled the disk: it goes, the original stays.
                let _ = std::fs::remove_file(defrag::temp_path(&self.path));
                return Err(e);
            }
        };
        *self.db.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        // History a compaction deleted from the old file during the copy is back, to be
        // deleted again: the totals are unknown until the store is next loaded.
        *self.lock_totals() = None;
        // History a compaction deleted from the old file during the copy is in the new one.
        self.physical.reset(compact_finished);
        self.size.refresh_file(&self.path);
        self.size.count_soon();
        Ok(Defragmented {
            size_before,
            size_after: self.db_size(),
            held_records,
        })
    }

    /// The backend as it is now. A read holds the handle until it ends: a defragmentation
    /// may swap it meanwhile, and a dropped handle ends its reads.
    pub(crate) fn db(&self) -> Arc<Database> {
        self.db.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Defragmentation's turn (restores take it too, as they replace what a copy reads).
    fn defrag_turn(&self) -> MutexGuard<'_, ()> {
        self.defrag.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The one writer's turn: write batches, snapshot restores and defragmentation take it.
    fn writer_turn(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_totals(&self) -> MutexGuard<'_, Option<RevisionTotals>> {
        self.totals.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A batch holding the writer's turn committed these records.
    fn totals_added(&self, added: &RevisionTotals) {
        if let Some(t) = self.lock_totals().as_mut() {
            t.merge(added);
        }
    }

    /// Runs `read` against the published state: a backend snapshot holding every revision
    /// up to the one readers may see, the key index, and the bounds on the read's memory.
    fn read_view<T>(
        &self,
        read: impl FnOnce(
            &ReadOnlyTable<u128, &'static [u8]>,
            &PublishedIndex<'_>,
            i64,
            &ReadLimits<'_>,
        ) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let current = self.current_revision();
        let db = self.db();
        let rx = db.begin_read().map_err(backend_err)?;
        let table = rx.open_table(KV).map_err(backend_err)?;
        let index = PublishedIndex {
            index: &self.index,
            compacted: &self.compacted,
        };
        let limits = ReadLimits {
            max_bytes: self.max_response_bytes.load(Ordering::Relaxed),
            share: self.read_share.load(Ordering::Relaxed),
            gate: Some(&self.big_read_gate),
            counts: Some(&self.page_counts),
        };
        read(&table, &index, current.0, &limits)
    }
}

impl History for Store {
    fn current(&self) -> i64 {
        self.current_revision().0
    }

    fn compacted(&self) -> i64 {
        self.compacted_revision().0
    }

    fn events(
        &self,
        from: i64,
        upto: i64,
        max_bytes: usize,
    ) -> Result<Option<(Vec<Event>, i64)>, StoreError> {
        let db = self.db();
        let rx = db.begin_read().map_err(backend_err)?;
        // Read once the snapshot is open: a compaction raises it before it commits, so a
        // snapshot it emptied is never read as whole history.
        if from < self.compacted_revision().0 {
            return Ok(None);
        }
        Ok(Some(backend::events(&rx, from, upto, max_bytes)?))
    }
}

/// The state rebuilt from every record in the backend.
struct Loaded {
    index: TreeIndex,
    current: i64,
    compacted: i64,
    /// The lease each live key's latest version names.
    key_lease: HashMap<Vec<u8>, i64>,
    compact_finished: i64,
    totals: RevisionTotals,
}

fn load(db: &Database) -> Result<Loaded, BackendError> {
    let mut index = TreeIndex::default();
    let mut current = 0;
    let mut key_lease = HashMap::new();
    let mut totals = RevisionTotals::default();
    let rx = db.begin_read()?;
    let kv = rx.open_table(KV)?;
    for item in kv.iter()? {
        let (k, v) = item?;
        let rev = KeyRevision::from_backend_key(k.value());
        let rec = backend::decode_record(rev, v.value())?;
        totals.add(v.value(), rec.tombstone);
        if rec.tombstone || rec.kv.lease == 0 {
            key_lease.remove(&rec.kv.key);
        } else {
            key_lease.insert(rec.kv.key.clone(), rec.kv.lease);
        }
        if rec.tombstone {
            index.tombstone(&rec.kv.key, rev);
        } else {
            index.restore(
                &rec.kv.key,
                KeyRevision::new(rec.kv.create_revision, 0),
                rev,
                rec.kv.version,
            );
        }
        current = rev.main;
    }
    let meta = rx.open_table(META)?;
    let compacted = meta.get(META_COMPACTED)?.map_or(0, |g| g.value() as i64);
    // Backends written before compaction ran in the background finished it at once.
    let compact_finished = meta
        .get(META_COMPACT_FINISHED)?
        .map_or(compacted, |g| g.value() as i64);
    if compact_finished < compacted {
        // What the background deletion had not reached is still in the file.
        index.compact(compacted);
    }
    Ok(Loaded {
        index,
        current: current.max(compacted).max(1),
        compacted,
        key_lease,
        compact_finished,
        totals,
    })
}

#[cfg(test)]
thread_local! {
    /// Called once HashKV on this thread has opened its read.
    pub(crate) static HASH_AFTER_READ: crate::test_support::Hook = const { std::cell::RefCell::new(None) };
}

mod batch;
#[cfg(test)]
mod poison_tests;
#[cfg(test)]
mod settle_tests;
mod size;

pub use batch::WriteBatch;
