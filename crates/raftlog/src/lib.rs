//! The raft log: an append-only, CRC-checked write-ahead log on disk, mirrored in memory for
//! raft-rs's `Storage` trait (etcd's WAL + MemoryStorage design).

mod storage;
mod wal;

pub use storage::LogStorage;
pub use wal::{RaftLog, RaftLogError};
