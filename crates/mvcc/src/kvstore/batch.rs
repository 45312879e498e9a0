//! A write batch: the changes one apply round makes, in one redb transaction with the
//! key-value table held open, published to readers and watchers on commit.

use super::Store;
use crate::backend::{self, CLUSTER, KV, META, META_COMPACTED, META_COMPACT_FINISHED};
use crate::error::{backend_err, poisoned, StoreError};
use crate::key_range::KeyRange;
use crate::revision_totals::RevisionTotals;
use crate::txn::TxnWriter;
use oxcd_api::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    TxnRequest, TxnResponse,
};
use oxcd_api::mvccpb::Event;
use oxcd_api::{EtcdError, LeaseId, Revision};
use redb::{Durability, ReadableTable, Table, WriteTransaction};
use std::sync::atomic::Ordering;
use std::sync::MutexGuard;

type KvTable<'tx> = Table<'tx, u128, &'static [u8]>;

self_cell::self_cell!(
    /// A write transaction with the key-value table open for all of its requests.
    struct OpenWrite {
        owner: WriteTransaction,
        #[covariant]
        dependent: KvTable,
    }
);

/// Changes applied together, published to readers and persisted on `commit`.
pub struct WriteBatch<'s> {
    store: &'s Store,
    /// Declared before the turn: a batch dropped without commit is aborted while the turn
    /// is still held.
    tx: OpenWrite,
    _turn: MutexGuard<'s, ()>,
    rev: i64,
    /// What the batch changed, for watchers (collected only while there are any).
    events: Vec<Event>,
    /// Whether every change of the batch was collected into `events` (there were watchers
    /// whenever one was prepared).
    events_complete: bool,
    /// The records the batch added, for the store's totals once committed.
    added: RevisionTotals,
}

impl<'s> WriteBatch<'s> {
    pub(super) fn new(
        store: &'s Store,
        turn: MutexGuard<'s, ()>,
        tx: WriteTransaction,
    ) -> Result<Self, StoreError> {
        let tx = OpenWrite::try_new(tx, |tx| tx.open_table(KV)).map_err(backend_err)?;
        Ok(WriteBatch {
            rev: store.current_revision().0,
            store,
            _turn: turn,
            tx,
            events: Vec::new(),
            events_complete: true,
            added: RevisionTotals::default(),
        })
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

    /// Drops history no read at or after `req.revision` can reach: at once from the index
    /// and from reads, from the backend later by `compact_step`.
    pub fn compact(&mut self, req: &CompactionRequest) -> Result<Revision, StoreError> {
        let at = req.revision;
        if at <= self.store.compacted_revision().0 {
            return Err(EtcdError::Compacted.into());
        }
        if at > self.rev {
            return Err(EtcdError::FutureRev.into());
        }
        {
            let mut index = self.store.index.write().map_err(|_| poisoned())?;
            self.store.compacted.store(at, Ordering::Release);
            index.compact(at);
        }
        // The finished mark is written with every compaction: a backend without it finished
        // compacting long ago.
        let finished = self.store.physical.done() as u64;
        self.set_metas(&[
            (META_COMPACTED, at as u64),
            (META_COMPACT_FINISHED, finished),
        ])?;
        Ok(Revision(self.rev))
    }

    pub fn set_meta(&mut self, name: &str, value: u64) -> Result<(), StoreError> {
        self.set_metas(&[(name, value)])
    }

    /// Several meta records, with one opening of their table.
    pub fn set_metas(&mut self, records: &[(&str, u64)]) -> Result<(), StoreError> {
        let mut meta = self.owner().open_table(META).map_err(backend_err)?;
        for &(name, value) in records {
            meta.insert(name, value).map_err(backend_err)?;
        }
        Ok(())
    }

    pub fn cluster_record(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let t = self.owner().open_table(CLUSTER).map_err(backend_err)?;
        let v = t
            .get(name)
            .map_err(backend_err)?
            .map(|g| g.value().to_vec());
        Ok(v)
    }

    pub fn set_cluster_record(&mut self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        let mut t = self.owner().open_table(CLUSTER).map_err(backend_err)?;
        t.insert(name, value).map_err(backend_err)?;
        Ok(())
    }

    pub fn lease_grant(&mut self, id: LeaseId, ttl: i64) -> Result<(), StoreError> {
        let mut leases = self.store.leases.write().map_err(|_| poisoned())?;
        leases.grant(self.owner(), id.0, ttl)
    }

    pub fn lease_checkpoint(&mut self, id: LeaseId, remaining_ttl: i64) -> Result<(), StoreError> {
        let mut leases = self.store.leases.write().map_err(|_| poisoned())?;
        leases.checkpoint(self.owner(), id.0, remaining_ttl)
    }

    /// The keys lease `id` holds now (none if there is no such lease).
    pub fn lease_keys(&self, id: LeaseId) -> Result<Vec<Vec<u8>>, StoreError> {
        let leases = self.store.leases.read().map_err(|_| poisoned())?;
        Ok(leases.keys_held(id.0))
    }

    /// Ends a lease and deletes every key it holds, all in one revision. Returns the store's
    /// revision after it.
    pub fn lease_revoke(&mut self, id: LeaseId) -> Result<Revision, StoreError> {
        let keys = self
            .store
            .leases
            .read()
            .map_err(|_| poisoned())?
            .keys_of(id.0)?;
        let rev = self.delete_keys(&keys)?;
        let mut leases = self.store.leases.write().map_err(|_| poisoned())?;
        leases.remove(self.owner(), id.0)?;
        Ok(Revision(rev))
    }

    /// Makes the batch visible to readers. With `durable` false the commit is not fsynced:
    /// a crash may lose it, and restart replays it from the raft log.
    pub fn commit(mut self, durable: bool) -> Result<(), StoreError> {
        let mut tx = self.tx.into_owner();
        if durable {
            backend::make_durable(&mut tx).map_err(backend_err)?;
        } else {
            tx.set_durability(Durability::None).map_err(backend_err)?;
        }
        tx.commit().map_err(backend_err)?;
        // Under the writer's turn still: a backup's view takes its totals under it too.
        self.store.totals_added(&self.added);
        self.store.size.refresh_file(&self.store.path);
        self.store.size.wrote();
        let (store, rev) = (self.store, self.rev);
        store.hub.publish(
            rev,
            std::mem::take(&mut self.events),
            self.events_complete,
            || store.current.store(rev, Ordering::Release),
        );
        Ok(())
    }

    /// The transaction, for the tables other than the key-value one.
    fn owner(&self) -> &WriteTransaction {
        self.tx.borrow_owner()
    }

    fn with_writer<T>(
        &mut self,
        f: impl FnOnce(&mut TxnWriter<'_, '_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let store = self.store;
        let watching = store.hub.is_watching();
        self.events_complete &= watching;
        let (rev, events, added) = (&mut self.rev, &mut self.events, &mut self.added);
        self.tx.with_dependent_mut(|_, table| {
            let mut w = TxnWriter::new(
                table,
                &store.index,
                &store.leases,
                *rev,
                store.compacted_revision().0,
                watching,
            );
            let out = f(&mut w);
            // Counted even when the request failed part way: what it wrote commits with
            // the batch, if the batch commits.
            added.merge(&w.added);
            let out = out?;
            *rev = w.rev();
            events.append(&mut w.events);
            Ok(out)
        })
    }

    /// Deletes every key in `ranges` in one revision; returns the store's revision after.
    fn delete_keys(&mut self, ranges: &[KeyRange]) -> Result<i64, StoreError> {
        self.with_writer(|w| {
            for r in ranges {
                w.delete_keys(r)?;
            }
            Ok(())
        })?;
        Ok(self.rev)
    }
}
