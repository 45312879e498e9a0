//! The store's tables as plain records, for formats kept outside the store (etcd's bbolt
//! backup): read from one transaction, or loaded into an empty store in one transaction.

use crate::backend::{self, CLUSTER, KV, LEASE, META, META_COMPACTED, META_COMPACT_FINISHED};
use crate::error::{snapshot_backend_err as redb_err, SnapshotError};
use crate::revision::KeyRevision;
use oxcd_api::mvccpb::KeyValue;
use prost::Message;
use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata, Table, WriteTransaction};

/// One revision's record: a put's KeyValue, or a tombstone naming the key deleted.
pub struct RevisionRecord<'a> {
    pub main: i64,
    pub sub: i64,
    pub tombstone: bool,
    /// The stored `mvccpb.KeyValue` encoding.
    pub key_value: &'a [u8],
}

/// Every table of the store as one read transaction sees it.
pub struct ExportView {
    pub(crate) rx: ReadTransaction,
    pub(crate) totals: Option<crate::RevisionTotals>,
}

impl ExportView {
    /// Every revision, oldest first.
    pub fn for_each_revision(
        &self,
        each: impl FnMut(RevisionRecord<'_>) -> Result<(), SnapshotError>,
    ) -> Result<(), SnapshotError> {
        self.for_each_revision_within(
            (
                std::ops::Bound::<u128>::Unbounded,
                std::ops::Bound::Unbounded,
            ),
            each,
        )
    }

    /// The revision records this view sees, counted without reading them; None when the
    /// store does not know (after a defragmentation) or the count disagrees with the table's.
    pub fn revision_totals(&self) -> Result<Option<crate::RevisionTotals>, SnapshotError> {
        let Some(totals) = self.totals else {
            return Ok(None);
        };
        Ok((totals.records == self.revision_count()?).then_some(totals))
    }

    /// The totals the store kept for this view, checked or not.
    pub fn kept_totals(&self) -> Option<crate::RevisionTotals> {
        self.totals
    }

    /// How many revisions are stored.
    pub fn revision_count(&self) -> Result<u64, SnapshotError> {
        let kv = self.rx.open_table(KV).map_err(redb_err)?;
        kv.len().map_err(redb_err)
    }

    /// Every revision in the older (`newer: false`) or the newer half of the stored span,
    /// oldest first; the halves together hold every revision once. Callable from several
    /// threads at once: all see this view's one transaction.
    pub fn for_each_revision_in_half(
        &self,
        newer: bool,
        each: impl FnMut(RevisionRecord<'_>) -> Result<(), SnapshotError>,
    ) -> Result<(), SnapshotError> {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let kv = self.rx.open_table(KV).map_err(redb_err)?;
        let first = kv.first().map_err(redb_err)?.map(|(k, _)| k.value());
        let last = kv.last().map_err(redb_err)?.map(|(k, _)| k.value());
        drop(kv);
        let Some((first, last)) = first.zip(last) else {
            return Ok(());
        };
        // Backend keys are unsigned: no overflow, and every revision falls on one side.
        let middle = first + (last - first) / 2 + 1;
        if newer {
            self.for_each_revision_within((Included(middle), Unbounded), each)
        } else {
            self.for_each_revision_within((Unbounded, Excluded(middle)), each)
        }
    }

    fn for_each_revision_within(
        &self,
        keys: impl std::ops::RangeBounds<u128>,
        mut each: impl FnMut(RevisionRecord<'_>) -> Result<(), SnapshotError>,
    ) -> Result<(), SnapshotError> {
        let kv = self.rx.open_table(KV).map_err(redb_err)?;
        for item in kv.range(keys).map_err(redb_err)? {
            let (k, v) = item.map_err(redb_err)?;
            let rev = KeyRevision::from_backend_key(k.value());
            let (flag, body) = v
                .value()
                .split_first()
                .ok_or(SnapshotError::Corrupt("empty revision record"))?;
            each(RevisionRecord {
                main: rev.main,
                sub: rev.sub,
                tombstone: *flag == backend::TOMBSTONE,
                key_value: body,
            })?;
        }
        Ok(())
    }

    pub fn meta(&self, name: &str) -> Result<Option<u64>, SnapshotError> {
        let meta = self.rx.open_table(META).map_err(redb_err)?;
        Ok(meta.get(name).map_err(redb_err)?.map(|g| g.value()))
    }

    /// The compaction point (scheduled) and how far its deletion finished.
    pub fn compaction(&self) -> Result<(i64, i64), SnapshotError> {
        let scheduled = self.meta(META_COMPACTED)?.unwrap_or(0) as i64;
        let finished = self
            .meta(META_COMPACT_FINISHED)?
            .map_or(scheduled, |v| v as i64);
        Ok((scheduled, finished))
    }

    pub fn cluster_record(&self, name: &str) -> Result<Option<Vec<u8>>, SnapshotError> {
        let table = self.rx.open_table(CLUSTER).map_err(redb_err)?;
        Ok(table
            .get(name)
            .map_err(redb_err)?
            .map(|g| g.value().to_vec()))
    }

    /// Every lease as (ID, granted TTL, checkpointed remaining TTL), in the byte order of
    /// the IDs' big-endian encoding (non-negative IDs first).
    pub fn for_each_lease(
        &self,
        mut each: impl FnMut(i64, i64, i64) -> Result<(), SnapshotError>,
    ) -> Result<(), SnapshotError> {
        let table = self.rx.open_table(LEASE).map_err(redb_err)?;
        for range in [table.range(0i64..), table.range(..0i64)] {
            for item in range.map_err(redb_err)? {
                let (k, v) = item.map_err(redb_err)?;
                let (ttl, remaining) = crate::lease::decode(v.value());
                each(k.value(), ttl, remaining)?;
            }
        }
        Ok(())
    }
}

/// Writes records into the empty tables of a store being loaded.
pub struct Loader<'t> {
    kv: Table<'t, u128, &'static [u8]>,
    meta: Table<'t, &'static str, u64>,
    cluster: Table<'t, &'static str, &'static [u8]>,
    lease: Table<'t, i64, &'static [u8]>,
    buf: Vec<u8>,
}

impl<'t> Loader<'t> {
    pub(crate) fn new(tx: &'t WriteTransaction) -> Result<Self, SnapshotError> {
        Ok(Loader {
            kv: tx.open_table(KV).map_err(redb_err)?,
            meta: tx.open_table(META).map_err(redb_err)?,
            cluster: tx.open_table(CLUSTER).map_err(redb_err)?,
            lease: tx.open_table(LEASE).map_err(redb_err)?,
            buf: Vec::new(),
        })
    }

    /// A revision's record; `key_value` must decode as an `mvccpb.KeyValue`.
    pub fn put_revision(&mut self, record: RevisionRecord<'_>) -> Result<(), SnapshotError> {
        KeyValue::decode(record.key_value)
            .map_err(|_| SnapshotError::Corrupt("a revision's KeyValue does not decode"))?;
        self.buf.clear();
        self.buf.push(if record.tombstone {
            backend::TOMBSTONE
        } else {
            backend::PUT
        });
        self.buf.extend_from_slice(record.key_value);
        let rev = KeyRevision {
            main: record.main,
            sub: record.sub,
        };
        self.kv
            .insert(rev.to_backend_key(), self.buf.as_slice())
            .map_err(redb_err)?;
        Ok(())
    }

    /// The compaction point and how far its deletion finished.
    pub fn set_compaction(&mut self, scheduled: i64, finished: i64) -> Result<(), SnapshotError> {
        self.set_meta(META_COMPACTED, scheduled.max(0) as u64)?;
        self.set_meta(META_COMPACT_FINISHED, finished.max(0) as u64)
    }

    pub fn set_meta(&mut self, name: &str, value: u64) -> Result<(), SnapshotError> {
        self.meta.insert(name, value).map_err(redb_err)?;
        Ok(())
    }

    pub fn set_cluster_record(&mut self, name: &str, value: &[u8]) -> Result<(), SnapshotError> {
        self.cluster.insert(name, value).map_err(redb_err)?;
        Ok(())
    }

    /// A record this load already wrote.
    pub fn cluster_record(&self, name: &str) -> Result<Option<Vec<u8>>, SnapshotError> {
        Ok(self
            .cluster
            .get(name)
            .map_err(redb_err)?
            .map(|g| g.value().to_vec()))
    }

    pub fn put_lease(&mut self, id: i64, ttl: i64, remaining: i64) -> Result<(), SnapshotError> {
        self.lease
            .insert(id, crate::lease::encode(ttl, remaining).as_slice())
            .map_err(redb_err)?;
        Ok(())
    }
}
