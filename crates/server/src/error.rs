//! The node's errors: what stops it from starting or going on, and how a store error reaches
//! a client (etcd's gRPC status, by oxcd-api's table).

use crate::msg::Fatal;
use oxcd_mvcc::StoreError;
use std::path::PathBuf;
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Backend(#[from] oxcd_mvcc::BackendError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    RaftLog(#[from] oxcd_raftlog::RaftLogError),
    #[error(transparent)]
    Bootstrap(#[from] oxcd_storage::BootstrapError),
    #[error(transparent)]
    Align(#[from] oxcd_storage::recovery::AlignError),
    #[error(transparent)]
    Force(#[from] oxcd_storage::force::ForceError),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// The data dir's directories could not be made (the error names the path).
    #[error(transparent)]
    DataDir(std::io::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {url}: {source}")]
    Listen { url: String, source: std::io::Error },
    /// The node stopped while running.
    #[error("{0}")]
    Fatal(Fatal),
}

impl StartError {
    /// The process's exit code, as etcd's: 0 for a member removed from its cluster.
    pub fn exit_code(&self) -> i32 {
        match self {
            StartError::Fatal(Fatal::Removed) => 0,
            _ => 1,
        }
    }
}

pub(crate) fn io_error(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StartError {
    let path = path.into();
    move |source| StartError::Io { path, source }
}

/// A store error as a client sees it.
pub fn store_status(e: StoreError) -> Status {
    match e {
        StoreError::Request(e) => e.into(),
        StoreError::Backend(e) => Status::internal(e.to_string()),
    }
}
