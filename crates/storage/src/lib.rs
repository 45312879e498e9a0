//! A member's data dir and everything in it: the layout, the backend (oxcd-mvcc's store) with
//! the records the node keeps beside the keyspace (members, alarms, raft's conf state), the
//! raft log, and how a new member's dir is made: bootstrapped from flags or restored from a
//! backup. The node and the offline tools (oxcdutl, oxcdctl's snapshot commands) stand on it.

pub mod bbolt;
pub mod bootstrap;
pub mod data_dir;
pub mod etcd_backup;
pub mod force;
pub mod membership;
pub mod records;
pub mod recovery;
pub mod restore;

pub use bootstrap::{bootstrap, BootstrapError, InitialCluster};
pub use data_dir::{mkdir, DataDir};
pub use oxcd_mvcc::{
    check_backup, has_checksum, is_record_stream, open_backup, BackendError, BackupStatus, Store,
    META_APPLIED_INDEX, META_APPLIED_TERM, META_MEMBER_ID, SHA256_LEN,
};
pub use oxcd_raftlog::RaftLog;
pub use restore::{is_backend_file, restore, RestoreOptions, Restored};
