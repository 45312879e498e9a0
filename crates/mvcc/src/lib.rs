//! etcd's MVCC model: every write transaction gets one cluster-wide revision, keys keep their
//! history until compaction, and reads can be served at any retained revision.

mod backend;
mod backup;
mod defrag;
mod index;
mod key_index;
mod kvstore;
mod lease;
mod revision;
mod snapshot;
mod txn;
pub mod validate;
mod watch;

pub use backend::{BackendError, META_APPLIED_INDEX, META_APPLIED_TERM, META_MEMBER_ID};
pub use backup::{check_backup, has_checksum, BackupError, BackupStatus, BackupWriter};
pub use kvstore::{Store, StoreError, WriteBatch};
pub use lease::LeaseInfo;
pub use revision::Revision;
pub use snapshot::{SnapshotError, SnapshotPoint};
pub use txn::is_read_only;
pub use watch::{WatchBatch, WatchKey, WatchSink, WatchSpec};

/// The keys a request names, from its `key` and `range_end` as etcd reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRange {
    Single(Vec<u8>),
    /// `range_end` is "\0": every key from `key` on.
    FromKey(Vec<u8>),
    Between(Vec<u8>, Vec<u8>),
}

impl KeyRange {
    pub fn new(key: &[u8], range_end: &[u8]) -> Self {
        match range_end {
            [] => KeyRange::Single(key.to_vec()),
            [0] => KeyRange::FromKey(key.to_vec()),
            end => KeyRange::Between(key.to_vec(), end.to_vec()),
        }
    }
}

#[cfg(test)]
mod model_tests;
