//! `hashkv`: the hash of a backend's keyspace history up to a revision, the one the
//! Maintenance.HashKV RPC answers with, computed offline.

use crate::backend::{backend_path, open_existing};
use crate::error::UtlError;
use oxcd_api::Revision;
use std::path::{Path, PathBuf};

/// etcdutl's `HashKV`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashKv {
    pub hash: u32,
    /// The revision hashed up to.
    pub hash_revision: Revision,
    /// The store's compacted revision.
    pub compact_revision: Revision,
}

/// The backend file `path` names: the file itself, or a data dir's `member/snap/db`.
pub fn backend_of(path: &Path) -> PathBuf {
    if path.is_dir() {
        backend_path(path)
    } else {
        path.to_path_buf()
    }
}

/// The hash of the backend file `db` up to revision `rev` (0: the newest), waiting (and
/// calling `waiting` once) while another process holds the file.
pub fn hashkv(
    db: &Path,
    rev: Revision,
    waiting: &mut dyn FnMut(&Path),
) -> Result<HashKv, UtlError> {
    let store = open_existing(db, waiting).map_err(UtlError::error)?;
    let h = store.hash_kv(rev).map_err(|e| {
        // The store speaks as the server does ("etcdserver: mvcc: ..."); offline, etcdutl
        // reports mvcc's own error.
        let text = e.to_string();
        UtlError::error(
            text.strip_prefix("etcdserver: ")
                .map_or(text.clone(), str::to_string),
        )
    })?;
    Ok(HashKv {
        hash: h.hash,
        hash_revision: h.revision,
        compact_revision: h.compact_revision,
    })
}
