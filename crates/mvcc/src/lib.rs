//! etcd's MVCC model: every write transaction gets one cluster-wide revision, keys keep their
//! history until compaction, and reads can be served at any retained revision.

mod backend;
mod backup;
mod compaction;
mod db_size;
mod defrag;
mod error;
mod export;
mod hash;
mod index;
mod key_index;
mod key_range;
mod kvstore;
mod lease;
mod page_counts;
mod range;
mod revision;
mod revision_totals;
mod snapshot;
mod txn;
pub mod validate;
mod watch;
mod watch_hub;
mod watcher_group;

pub use backend::{META_APPLIED_INDEX, META_APPLIED_TERM, META_MEMBER_ID};
pub use backup::{check_backup, has_checksum, open_backup, BackupStatus, BackupWriter, SHA256_LEN};
pub use defrag::Defragmented;
pub use error::{corrupt_record, BackendError, BackupError, SnapshotError, StoreError};
pub use export::{ExportView, Loader, RevisionRecord};
pub use key_range::KeyRange;
pub use kvstore::{KvHash, LeaseTtl, Store, StoreHash, WriteBatch};
pub use lease::LeaseInfo;
pub use range::DEFAULT_MAX_RESPONSE_BYTES;
pub use revision_totals::RevisionTotals;
pub use snapshot::is_record_stream;

pub use snapshot::SnapshotPoint;
pub use txn::is_read_only;
pub use watch::{
    EventRun, Events, Progress, WatchBatch, WatchEvent, WatchKey, WatchSink, WatchSpec,
};

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod test_support;
