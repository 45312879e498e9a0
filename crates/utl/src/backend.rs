//! A member's backend opened offline: the file must exist (opening never makes a new one), and
//! while a running member holds it, the tools wait for it to let go, as etcdutl waits for
//! bbolt's file lock.

use crate::error::path_error;
pub use oxcd_storage::is_backend_file;
use oxcd_storage::{DataDir, Store};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long to wait for the lock before telling the user why nothing happens.
pub const LOCK_NOTICE_AFTER: Duration = Duration::from_secs(1);
const LOCK_RETRY: Duration = Duration::from_millis(100);

/// The backend file of the data dir `data_dir` (`member/snap/db`).
pub fn backend_path(data_dir: &Path) -> PathBuf {
    DataDir::new(data_dir, None).backend_path()
}

/// Opens the existing backend file `path`. While another process holds it, retries for as long
/// as that lasts (etcdutl blocks the same way), calling `waiting` once after
/// `LOCK_NOTICE_AFTER`.
pub fn open_existing(path: &Path, waiting: &mut dyn FnMut(&Path)) -> Result<Store, String> {
    let meta = std::fs::metadata(path).map_err(|e| path_error("open", path, &e))?;
    if meta.is_dir() {
        return Err(format!("open {}: is a directory", path.display()));
    }
    let started = Instant::now();
    let mut told = false;
    loop {
        match Store::open(path) {
            Ok(store) => return Ok(store),
            Err(e) if e.is_held_elsewhere() => {}
            Err(e) => return Err(e.to_string()),
        }
        if !told && started.elapsed() >= LOCK_NOTICE_AFTER {
            waiting(path);
            told = true;
        }
        std::thread::sleep(LOCK_RETRY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_backend_is_not_created() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = backend_path(dir.path());
        let err = open_existing(&db, &mut |_| {})
            .err()
            .expect("a missing file is refused");
        assert!(err.ends_with(": no such file or directory"), "{err}");
        assert!(!db.exists());
        assert!(open_existing(dir.path(), &mut |_| {}).is_err());
    }

    #[test]
    fn backend_files_are_told_from_backups() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("db");
        drop(Store::open(&db).expect("create"));
        assert!(is_backend_file(&db));
        let other = dir.path().join("backup");
        std::fs::write(&other, b"not a backend").expect("write");
        assert!(!is_backend_file(&other));
        assert!(open_existing(&db, &mut |_| {}).is_ok());
    }
}
