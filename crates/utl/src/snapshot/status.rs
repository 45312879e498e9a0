//! `snapshot status`: a backup's hash, newest revision, key count and size, after checking it.

use crate::backend::{is_backend_file, open_existing};
use crate::error::{path_error, UtlError};
use oxcd_api::Revision;
use oxcd_storage::{check_backup, has_checksum, BackupStatus, SHA256_LEN};
use std::path::Path;

/// What `snapshot status` reports (etcd's `snapshot.Status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotStatus {
    /// CRC-32 over every record.
    pub hash: u32,
    /// The newest revision in it.
    pub revision: Revision,
    /// Records of every table, as etcd counts the keys of every bucket.
    pub total_key: u64,
    /// The file's size in bytes.
    pub total_size: u64,
}

/// Checks the file and reports on it. A backup is checked against its SHA-256 trailer when it
/// has one, and record by record; a backend file copied out of a data dir is reported on as a
/// backup of it would be.
pub fn status(path: &Path) -> Result<SnapshotStatus, UtlError> {
    let meta =
        std::fs::metadata(path).map_err(|e| UtlError::error(path_error("stat", path, &e)))?;
    if meta.is_dir() {
        return Err(UtlError::error(format!(
            "read {}: is a directory",
            path.display()
        )));
    }
    if is_backend_file(path) {
        return backend_status(path, meta.len());
    }
    if oxcd_storage::is_record_stream(path) {
        let st = check_backup(path, !has_checksum(meta.len()))
            .map_err(|e| UtlError::error(e.to_string()))?;
        return Ok(from_backup(st));
    }
    etcd_status(path, meta.len())
}

/// A backup just saved: its digest, then every page (as `status` walks them).
pub fn verify(path: &Path) -> Result<SnapshotStatus, UtlError> {
    oxcd_storage::open_backup(path, false).map_err(|e| UtlError::error(e.to_string()))?;
    status(path)
}

fn from_backup(st: BackupStatus) -> SnapshotStatus {
    SnapshotStatus {
        hash: st.hash,
        revision: Revision(st.revision),
        total_key: st.total_keys,
        total_size: st.total_size,
    }
}

/// etcd's bbolt backup, with or without its trailer (status reads past a wrong one, as
/// etcd's does).
fn etcd_status(path: &Path, len: u64) -> Result<SnapshotStatus, UtlError> {
    let file =
        std::fs::File::open(path).map_err(|e| UtlError::error(path_error("open", path, &e)))?;
    let body_len = if has_checksum(len) {
        len - SHA256_LEN
    } else {
        len
    };
    oxcd_storage::etcd_backup::status(file, body_len)
        .map(from_backup)
        .map_err(|e| UtlError::error(e.to_string()))
}

/// A backend file: a backup of a private copy of it (the file itself is never written to),
/// reported with the file's own size.
fn backend_status(path: &Path, size: u64) -> Result<SnapshotStatus, UtlError> {
    let err = |e: String| UtlError::error(e);
    let tmp = tempfile::tempdir().map_err(|e| err(e.to_string()))?;
    let copy = tmp.path().join("db");
    std::fs::copy(path, &copy).map_err(|e| err(path_error("read", path, &e)))?;
    let backup = tmp.path().join("backup");
    {
        let store = open_existing(&copy, &mut |_| {}).map_err(err)?;
        let file = std::fs::File::create(&backup).map_err(|e| err(e.to_string()))?;
        oxcd_storage::etcd_backup::write_backup(&store, std::io::BufWriter::new(file))
            .map_err(|e| err(e.to_string()))?;
    }
    let st = etcd_status(
        &backup,
        std::fs::metadata(&backup)
            .map_err(|e| err(e.to_string()))?
            .len(),
    )?;
    Ok(SnapshotStatus {
        total_size: size,
        ..st
    })
}
