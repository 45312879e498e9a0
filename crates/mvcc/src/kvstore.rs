//! The store: reads at the published revision from any thread, writes in batches from the
//! single apply thread, each batch one backend transaction carrying the applied raft index.

use crate::backend::{self, BackendError, CLUSTER, KV, META, META_COMPACTED};
use crate::index::TreeIndex;
use crate::txn::TxnWriter;
use crate::Revision;
use oxcd_api::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use oxcd_api::EtcdError;
use redb::{
    Database, Durability, ReadOnlyTable, ReadableDatabase, ReadableTable, WriteTransaction,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The request is refused; nothing was changed.
    #[error(transparent)]
    Request(#[from] EtcdError),
    /// The disk failed us; the node must not go on applying.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

pub(crate) fn backend_err<E: Into<BackendError>>(e: E) -> StoreError {
    StoreError::Backend(e.into())
}

/// redb's own page cache. The file also sits in the OS page cache (all bbolt relies on), so
/// redb's 1 GiB default mostly caches twice; measured: peak RSS 157 → 128 MiB at 100k keys.
const BACKEND_CACHE_BYTES: usize = 32 << 20;

pub struct Store {
    /// Swapped whole by defragmentation; readers clone the handle and never wait on it.
    db: RwLock<Arc<Database>>,
    /// Held by the one write batch open at a time, and by defragmentation.
    writer: Mutex<()>,
    size_in_use: std::sync::atomic::AtomicU64,
    /// The backend file's size, taken after every commit rather than on every request.
    file_size: std::sync::atomic::AtomicU64,
    size_counted_at: Mutex<std::time::Instant>,
    path: PathBuf,
    pub(crate) index: RwLock<TreeIndex>,
    /// The newest revision whose batch is committed, hence visible to readers.
    current: AtomicI64,
    pub(crate) compacted: AtomicI64,
    pub(crate) hub: std::sync::Mutex<crate::watch::Hub>,
    pub(crate) leases: RwLock<crate::lease::Leases>,
    /// Whether any watch exists; writes collect events only then.
    pub(crate) watching: std::sync::atomic::AtomicBool,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, BackendError> {
        // A defragmentation cut short left its copy behind; the original is whole.
        let _ = std::fs::remove_file(defrag_path(path));
        let db = create_db(path)?;
        let tx = db.begin_write()?;
        tx.open_table(KV)?;
        tx.open_table(META)?;
        tx.open_table(CLUSTER)?;
        tx.commit()?;

        let tx = db.begin_write()?;
        tx.open_table(crate::backend::LEASE)?;
        tx.commit()?;
        let loaded = load_index(&db)?;
        let leases = crate::lease::load(&db, loaded.key_lease)?;
        let store = Store {
            db: RwLock::new(Arc::new(db)),
            writer: Mutex::new(()),
            size_in_use: Default::default(),
            file_size: Default::default(),
            path: path.to_path_buf(),
            index: RwLock::new(loaded.index),
            current: AtomicI64::new(loaded.current),
            compacted: AtomicI64::new(loaded.compacted),
            hub: Default::default(),
            watching: Default::default(),
            leases: RwLock::new(leases),
            size_counted_at: Mutex::new(std::time::Instant::now()),
        };
        store.refresh_size_in_use()?;
        store.refresh_file_size();
        Ok(store)
    }

    /// The backend as it is now (a later defragmentation does not disturb a handle taken).
    pub(crate) fn db(&self) -> Arc<Database> {
        self.db.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn swap_db(&self, db: Arc<Database>) {
        *self.db.write().unwrap_or_else(|p| p.into_inner()) = db;
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of the backend file holding live pages (etcd's db size in use), as of the last
    /// count: counted on open, after compaction and defragmentation, and every few seconds of
    /// writes.
    pub fn db_size_in_use(&self) -> u64 {
        self.size_in_use.load(Ordering::Relaxed).min(self.db_size())
    }

    /// The next durable commit recounts the pages in use (compaction freed some).
    fn count_size_soon(&self) {
        let mut at = self
            .size_counted_at
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(past) = at.checked_sub(std::time::Duration::from_secs(60)) {
            *at = past;
        }
    }

    pub(crate) fn refresh_size_in_use(&self) -> Result<(), BackendError> {
        let tx = self.db().begin_write()?;
        let used = pages_in_use_bytes(&tx)?;
        tx.abort()?;
        self.size_in_use.store(used, Ordering::Relaxed);
        Ok(())
    }

    /// The one writer's turn: write batches, snapshot restores and defragmentation take it.
    pub(crate) fn writer_turn(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes a state loaded from the backend (after a snapshot replaced it).
    pub(crate) fn publish_loaded(&self, current: i64, compacted: i64) {
        self.compacted.store(compacted, Ordering::Release);
        self.current.store(current, Ordering::Release);
    }

    pub fn current_revision(&self) -> i64 {
        self.current.load(Ordering::Acquire)
    }

    pub fn compacted_revision(&self) -> i64 {
        self.compacted.load(Ordering::Acquire)
    }

    pub fn meta(&self, name: &str) -> Result<Option<u64>, BackendError> {
        let rx = self.db().begin_read()?;
        let meta = rx.open_table(META)?;
        Ok(meta.get(name)?.map(|g| g.value()))
    }

    pub fn cluster_record(&self, name: &str) -> Result<Option<Vec<u8>>, BackendError> {
        let rx = self.db().begin_read()?;
        let t = rx.open_table(CLUSTER)?;
        Ok(t.get(name)?.map(|g| g.value().to_vec()))
    }

    /// Size of the backend file in bytes, as of the last commit.
    pub fn db_size(&self) -> u64 {
        self.file_size.load(Ordering::Relaxed)
    }

    pub(crate) fn refresh_file_size(&self) {
        let len = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        self.file_size.store(len, Ordering::Relaxed);
    }

    /// Runs `read` against the published state: the committed backend and the key index,
    /// with the revision readers may see and the compaction point.
    fn read_view<T>(
        &self,
        read: impl FnOnce(
            &ReadOnlyTable<u128, &'static [u8]>,
            &TreeIndex,
            i64,
            i64,
        ) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let current = self.current_revision();
        let rx = self.db().begin_read().map_err(backend_err)?;
        let table = rx.open_table(KV).map_err(backend_err)?;
        let index = self.index.read().map_err(|_| poisoned())?;
        read(&table, &index, current, self.compacted_revision())
    }

    /// A read at `req.revision` (0: the newest), served from the published state.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, StoreError> {
        self.read_view(|table, index, current, compacted| {
            crate::txn::range(table, index, req, current, compacted)
        })
    }

    /// A txn whose every op is a range (see `is_read_only`), served from the published state.
    pub fn read_only_txn(&self, req: &TxnRequest) -> Result<TxnResponse, StoreError> {
        self.read_view(|table, index, current, compacted| {
            crate::txn::read_only_txn(table, index, req, current, compacted)
        })
    }

    pub fn begin_write(&self) -> Result<WriteBatch<'_>, StoreError> {
        let turn = self.writer_turn();
        let tx = self.db().begin_write().map_err(backend_err)?;
        Ok(WriteBatch {
            rev: self.current_revision(),
            store: self,
            _turn: turn,
            tx,
            events: Vec::new(),
        })
    }
}

pub(crate) fn create_db(path: &Path) -> Result<Database, BackendError> {
    Database::builder()
        .set_cache_size(BACKEND_CACHE_BYTES)
        .create(path)
        .map_err(|source| BackendError::Database {
            path: path.display().to_string(),
            source,
        })
}

/// Bytes of the file in allocated pages, as `tx` sees them.
fn pages_in_use_bytes(tx: &WriteTransaction) -> Result<u64, BackendError> {
    let stats = tx.stats()?;
    Ok(stats.allocated_pages() * stats.page_size() as u64)
}

pub(crate) fn defrag_path(path: &Path) -> PathBuf {
    path.with_extension("defrag")
}

pub(crate) struct Loaded {
    pub index: TreeIndex,
    pub current: i64,
    pub compacted: i64,
    /// The lease each live key's latest version names.
    pub key_lease: std::collections::HashMap<Vec<u8>, i64>,
}

/// The key index and revisions, rebuilt from every record in the backend.
pub(crate) fn load_index(db: &Database) -> Result<Loaded, BackendError> {
    let mut index = TreeIndex::default();
    let mut current = 0;
    let mut key_lease = std::collections::HashMap::new();
    let rx = db.begin_read()?;
    let kv = rx.open_table(KV)?;
    for item in kv.iter()? {
        let (k, v) = item?;
        let rev = Revision::from_backend_key(k.value());
        let rec = backend::decode_record(rev, v.value())?;
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
                Revision::new(rec.kv.create_revision, 0),
                rev,
                rec.kv.version,
            );
        }
        current = rev.main;
    }
    let meta = rx.open_table(META)?;
    let compacted = meta.get(META_COMPACTED)?.map_or(0, |g| g.value() as i64);
    Ok(Loaded {
        index,
        current: current.max(compacted).max(1),
        compacted,
        key_lease,
    })
}

pub(crate) fn poisoned() -> StoreError {
    StoreError::Request(EtcdError::Internal("mvcc index lock poisoned".into()))
}

/// Changes applied together, published to readers and persisted on `commit`.
pub struct WriteBatch<'s> {
    store: &'s Store,
    _turn: MutexGuard<'s, ()>,
    tx: WriteTransaction,
    rev: i64,
    /// What the batch changed, for watchers (collected only while there are any).
    events: Vec<oxcd_api::mvccpb::Event>,
}

impl WriteBatch<'_> {
    fn with_writer<T>(
        &mut self,
        f: impl FnOnce(&mut TxnWriter<'_, '_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut table = self.tx.open_table(KV).map_err(backend_err)?;
        let mut index = self.store.index.write().map_err(|_| poisoned())?;
        let mut leases = self.store.leases.write().map_err(|_| poisoned())?;
        let mut w = TxnWriter::new(
            &mut table,
            &mut index,
            &mut leases,
            self.rev,
            self.store.compacted_revision(),
            self.store.watching.load(Ordering::Acquire),
        );
        let out = f(&mut w)?;
        self.rev = w.rev();
        self.events.append(&mut w.events);
        Ok(out)
    }

    pub(crate) fn store(&self) -> &Store {
        self.store
    }

    pub(crate) fn tx(&self) -> &WriteTransaction {
        &self.tx
    }

    /// Deletes every key in `ranges` in one revision; returns the store's revision after.
    pub(crate) fn delete_keys(&mut self, ranges: Vec<crate::KeyRange>) -> Result<i64, StoreError> {
        self.with_writer(|w| {
            for r in &ranges {
                w.delete_keys(r)?;
            }
            Ok(())
        })?;
        Ok(self.rev)
    }

    pub fn put(&mut self, req: &PutRequest) -> Result<PutResponse, StoreError> {
        self.with_writer(|w| w.put_request(req))
    }

    pub fn delete_range(
        &mut self,
        req: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, StoreError> {
        self.with_writer(|w| w.delete_request(req))
    }

    pub fn txn(&mut self, req: &TxnRequest) -> Result<TxnResponse, StoreError> {
        self.with_writer(|w| w.txn_request(req))
    }

    /// Physically drops history no read at or after `req.revision` can reach.
    pub fn compact(&mut self, req: &CompactionRequest) -> Result<i64, StoreError> {
        let at = req.revision;
        if at <= self.store.compacted_revision() {
            return Err(EtcdError::Compacted.into());
        }
        if at > self.rev {
            return Err(EtcdError::FutureRev.into());
        }
        let keep = {
            let mut index = self.store.index.write().map_err(|_| poisoned())?;
            self.store.compacted.store(at, Ordering::Release);
            index.compact(at)
        };
        let mut table = self.tx.open_table(KV).map_err(backend_err)?;
        let upto = Revision::new(at, i64::MAX).to_backend_key();
        let mut doomed = Vec::new();
        for item in table.range(..=upto).map_err(backend_err)? {
            let (k, _) = item.map_err(backend_err)?;
            let key = k.value();
            if !keep.contains(&Revision::from_backend_key(key)) {
                doomed.push(key);
            }
        }
        for k in doomed {
            table.remove(k).map_err(backend_err)?;
        }
        let mut meta = self.tx.open_table(META).map_err(backend_err)?;
        meta.insert(META_COMPACTED, at as u64)
            .map_err(backend_err)?;
        self.store.count_size_soon();
        Ok(self.rev)
    }

    pub fn set_meta(&mut self, name: &str, value: u64) -> Result<(), StoreError> {
        let mut meta = self.tx.open_table(META).map_err(backend_err)?;
        meta.insert(name, value).map_err(backend_err)?;
        Ok(())
    }

    pub fn cluster_record(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let t = self.tx.open_table(CLUSTER).map_err(backend_err)?;
        let v = t
            .get(name)
            .map_err(backend_err)?
            .map(|g| g.value().to_vec());
        Ok(v)
    }

    pub fn set_cluster_record(&mut self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        let mut t = self.tx.open_table(CLUSTER).map_err(backend_err)?;
        t.insert(name, value).map_err(backend_err)?;
        Ok(())
    }

    /// Recounts the backend's pages in use now and then, on a durable commit.
    fn count_size_if_due(&self, durable: bool) {
        const EVERY: std::time::Duration = std::time::Duration::from_secs(5);
        if !durable {
            return;
        }
        let mut at = self
            .store
            .size_counted_at
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if at.elapsed() < EVERY {
            return;
        }
        *at = std::time::Instant::now();
        if let Ok(used) = pages_in_use_bytes(&self.tx) {
            self.store.size_in_use.store(used, Ordering::Relaxed);
        }
    }

    /// Makes the batch visible to readers. With `durable` false the commit is not fsynced:
    /// a crash may lose it, and restart replays it from the raft log.
    pub fn commit(mut self, durable: bool) -> Result<(), StoreError> {
        self.tx
            .set_durability(if durable {
                Durability::Immediate
            } else {
                Durability::None
            })
            .map_err(backend_err)?;
        self.count_size_if_due(durable);
        self.tx.commit().map_err(backend_err)?;
        self.store.refresh_file_size();
        self.store.current.store(self.rev, Ordering::Release);
        self.store.notify(std::mem::take(&mut self.events));
        Ok(())
    }
}
