//! `defrag --data-dir`: compacts the backend file of a member that is not running.

use crate::backend::{backend_path, open_existing};
use crate::error::UtlError;
use std::path::Path;

/// The backend file's size around the defragmentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defragmented {
    pub size_before: u64,
    pub size_after: u64,
}

/// What etcdutl prints to stderr while a running member holds the backend.
pub fn waiting_notice(db: &Path) -> String {
    format!(
        "waiting for etcd to close and release its lock on {:?}. \
         To defrag a running etcd instance, use `etcdctl defrag` instead.",
        db.display().to_string()
    )
}

/// Defragments the backend of the data dir `data_dir`, waiting (and calling `waiting` once)
/// while another process holds it. The error reads as etcd's:
/// `Failed to defragment etcd data[DIR] (REASON)`.
pub fn defrag(data_dir: &Path, waiting: &mut dyn FnMut(&Path)) -> Result<Defragmented, UtlError> {
    let failed = |reason: String| {
        UtlError::error(format!(
            "Failed to defragment etcd data[{}] ({reason})",
            data_dir.display()
        ))
    };
    let store = open_existing(&backend_path(data_dir), waiting).map_err(failed)?;
    let sizes = store.defragment().map_err(|e| failed(e.to_string()))?;
    Ok(Defragmented {
        size_before: sizes.size_before,
        size_after: sizes.size_after,
    })
}
