//! Every error the store returns, in one leaf module.

use crate::revision::KeyRevision;
use oxcd_api::EtcdError;

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
    Corrupt(KeyRevision),
    /// A record beside the keyspace (members, auth, alarms) that does not decode.
    #[error("backend: corrupt {0}")]
    CorruptRecord(String),
    /// A thread panicked holding a lock on the store's in-memory state.
    #[error("backend: {0} lock poisoned")]
    Poisoned(&'static str),
}

impl BackendError {
    /// Another process (a running member) has the backend file open.
    pub fn is_held_elsewhere(&self) -> bool {
        matches!(
            self,
            BackendError::Database {
                source: redb::DatabaseError::DatabaseAlreadyOpen,
                ..
            }
        )
    }
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

/// Not a refusal: the in-memory state may be half-changed, so the member must stop.
pub(crate) fn poisoned() -> StoreError {
    StoreError::Backend(BackendError::Poisoned("mvcc index"))
}

/// A record beside the keyspace that does not decode: the member must stop, not refuse.
pub fn corrupt_record(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(BackendError::CorruptRecord(format!("{what} record: {e}")))
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot stream: {0}")]
    Io(#[from] std::io::Error),
    #[error("snapshot stream is not an oxcd snapshot or is damaged: {0}")]
    Corrupt(&'static str),
    /// A backup in another format that cannot be loaded, and why.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<BackendError> for SnapshotError {
    fn from(e: BackendError) -> Self {
        SnapshotError::Store(StoreError::Backend(e))
    }
}

pub(crate) fn snapshot_backend_err<E: Into<BackendError>>(e: E) -> SnapshotError {
    SnapshotError::from(e.into())
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("snapshot missing hash but --skip-hash-check=false")]
    MissingHash,
    #[error("expected sha256 {expected}, got {got}")]
    HashMismatch { expected: String, got: String },
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}
