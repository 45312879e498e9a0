//! The durable half of the store: a redb file with every revision's key-value and the meta
//! the node needs on restart (applied raft index, compaction progress, cluster identity).

use crate::Revision;
use oxcd_api::mvccpb::KeyValue;
use prost::Message;
use redb::{ReadableTable, TableDefinition};

/// revision → flag byte (0 put, 1 tombstone) + encoded KeyValue.
pub(crate) const KV: TableDefinition<u128, &[u8]> = TableDefinition::new("kv");
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Cluster-level records the server keeps beside the keyspace (members, identity).
pub(crate) const CLUSTER: TableDefinition<&str, &[u8]> = TableDefinition::new("cluster");
/// lease ID → granted TTL and last checkpointed remaining TTL (seconds, two i64 LE).
pub(crate) const LEASE: TableDefinition<i64, &[u8]> = TableDefinition::new("lease");

pub const META_APPLIED_INDEX: &str = "applied_index";
pub const META_APPLIED_TERM: &str = "applied_term";
pub(crate) const META_COMPACTED: &str = "compacted_revision";
/// This member's own ID: kept out of snapshots, and kept when one is restored.
pub const META_MEMBER_ID: &str = "member_id";

const PUT: u8 = 0;
const TOMBSTONE: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("backend {path}: {source}")]
    Database {
        path: String,
        source: redb::DatabaseError,
    },
    #[error("backend {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("backend: {0}")]
    Redb(#[from] redb::Error),
    #[error("backend: corrupt record at revision {0:?}")]
    Corrupt(Revision),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for BackendError {
            fn from(e: $t) -> Self {
                BackendError::Redb(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::CompactionError,
    redb::SetDurabilityError
);

pub(crate) fn encode_record(kv: &KeyValue, tombstone: bool) -> Vec<u8> {
    let mut buf = Vec::with_capacity(1 + kv.encoded_len());
    buf.push(if tombstone { TOMBSTONE } else { PUT });
    // Encoding into a Vec cannot fail.
    let _ = kv.encode(&mut buf);
    buf
}

pub(crate) struct Record {
    pub kv: KeyValue,
    pub tombstone: bool,
}

pub(crate) fn decode_record(rev: Revision, bytes: &[u8]) -> Result<Record, BackendError> {
    let (flag, body) = bytes.split_first().ok_or(BackendError::Corrupt(rev))?;
    let kv = KeyValue::decode(body).map_err(|_| BackendError::Corrupt(rev))?;
    Ok(Record {
        kv,
        tombstone: *flag == TOMBSTONE,
    })
}

pub(crate) fn load<T: ReadableTable<u128, &'static [u8]>>(
    table: &T,
    rev: Revision,
) -> Result<KeyValue, BackendError> {
    let guard = table
        .get(rev.to_backend_key())?
        .ok_or(BackendError::Corrupt(rev))?;
    Ok(decode_record(rev, guard.value())?.kv)
}
