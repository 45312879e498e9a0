//! `snapshot restore`: a new member's data dir from a backup file, for a new cluster whose
//! keyspace is the backup's. Nothing is left behind when it fails.

use crate::error::{path_error, UtlError};
use crate::progress::{Progress, Unit};
use oxcd_storage::DataDir;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// `snapshot restore`'s flags, with etcdutl's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreOptions {
    pub snapshot: PathBuf,
    pub name: String,
    /// Empty: `<name>.etcd`.
    pub data_dir: String,
    /// Empty: `<data-dir>/member/wal`.
    pub wal_dir: String,
    pub initial_cluster: String,
    pub initial_cluster_token: String,
    pub initial_advertise_peer_urls: String,
    pub skip_hash_check: bool,
    /// etcdutl's `--bump-revision` and `--mark-compacted`: accepted together or not at all,
    /// and refused for now (oxcd's store has no way to raise a restored revision).
    pub bump_revision: u64,
    pub mark_compacted: bool,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            snapshot: PathBuf::new(),
            name: "default".into(),
            data_dir: String::new(),
            wal_dir: String::new(),
            initial_cluster: "default=http://localhost:2380".into(),
            initial_cluster_token: "etcd-cluster".into(),
            initial_advertise_peer_urls: "http://localhost:2380".into(),
            skip_hash_check: false,
            bump_revision: 0,
            mark_compacted: false,
        }
    }
}

/// Where a restore puts the member's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestorePaths {
    pub data_dir: PathBuf,
    pub wal_dir: PathBuf,
    pub snap_dir: PathBuf,
}

impl RestoreOptions {
    /// `--data-dir` as given, or `<name>.etcd`.
    pub fn data_dir_text(&self) -> String {
        if self.data_dir.is_empty() {
            DataDir::default_path(&self.name)
        } else {
            self.data_dir.clone()
        }
    }

    pub fn paths(&self) -> RestorePaths {
        let data_dir = PathBuf::from(self.data_dir_text());
        let layout = DataDir::new(
            &data_dir,
            Some(&self.wal_dir)
                .filter(|w| !w.is_empty())
                .map(PathBuf::from),
        );
        RestorePaths {
            wal_dir: layout.wal_dir(),
            snap_dir: layout.snap_dir(),
            data_dir,
        }
    }
}

/// Whether `dir` is a directory with nothing in it (etcd's `fileutil.DirEmpty`).
fn dir_is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none())
}

fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

/// The path without a trailing slash ("d/" and "d" name the same dir; a staging dir named
/// after "d/" would land inside it).
fn clean(p: &Path) -> PathBuf {
    p.components().collect()
}

/// Runs `work` (a restore of `backup`) while a progress display follows `loaded`, the bytes
/// of its records loaded so far, against the backup's size.
fn with_progress<T>(backup: &Path, loaded: &AtomicU64, work: impl FnOnce() -> T) -> T {
    let total = std::fs::metadata(backup).map_or(0, |m| m.len());
    let progress = Progress::new("snapshot restore", Some(total), Unit::Bytes);
    let done = AtomicBool::new(false);
    let result = std::thread::scope(|s| {
        let poller = s.spawn(|| {
            while !done.load(Ordering::Acquire) {
                progress.set(loaded.load(Ordering::Relaxed).min(total));
                std::thread::park_timeout(Duration::from_millis(200));
            }
        });
        // Stops the poller however `work` ends, a panic included.
        struct Done<'a>(&'a AtomicBool, std::thread::Thread);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Release);
                self.1.unpark();
            }
        }
        let _done = Done(&done, poller.thread().clone());
        work()
    });
    progress.finish();
    result
}

/// Checks the flags, the target dirs and the backup, calls `started` with the paths it is
/// about to fill, and builds the member's data dir.
pub fn restore(
    opts: &RestoreOptions,
    started: &mut dyn FnMut(&RestorePaths),
) -> Result<RestorePaths, UtlError> {
    if (opts.bump_revision == 0) == opts.mark_compacted {
        return Err(UtlError::bad_args(
            "--mark-compacted required if --revision-bump > 0",
        ));
    }
    if opts.bump_revision > 0 {
        return Err(UtlError::bad_feature(
            "--bump-revision and --mark-compacted are not supported by oxcdutl yet \
             (oxcd's store cannot raise the revision of a restored keyspace); \
             restore without them",
        ));
    }
    let paths = opts.paths();
    let data_dir_text = opts.data_dir_text();
    let data_dir_existed = exists(&paths.data_dir);
    if data_dir_existed && !dir_is_empty(&paths.data_dir) {
        return Err(UtlError::error(format!(
            "data-dir {data_dir_text:?} not empty or could not be read"
        )));
    }
    if !opts.wal_dir.is_empty() && exists(&paths.wal_dir) {
        return Err(UtlError::error(format!(
            "wal-dir {:?} exists",
            opts.wal_dir
        )));
    }
    std::fs::File::open(&opts.snapshot)
        .map_err(|e| UtlError::error(path_error("open", &opts.snapshot, &e)))?;
    started(&paths);

    let data_dir = clean(&paths.data_dir);
    // An empty data dir (a mount point's, say) is filled by building beside it and renaming
    // the result over it, so that a failure leaves it as it was.
    let target = if data_dir_existed {
        let mut t = data_dir.clone().into_os_string();
        t.push(".oxcdutl-restore");
        PathBuf::from(t)
    } else {
        data_dir.clone()
    };
    if data_dir_existed && exists(&target) {
        return Err(UtlError::error(format!(
            "{} exists: remove what an interrupted restore left there",
            target.display()
        )));
    }
    let wal_dir = Some(&opts.wal_dir)
        .filter(|w| !w.is_empty())
        .map(|w| clean(Path::new(w)).display().to_string());
    let loaded = Arc::new(AtomicU64::new(0));
    let storage_opts = oxcd_storage::RestoreOptions {
        snapshot: opts.snapshot.clone(),
        name: opts.name.clone(),
        data_dir: Some(target.display().to_string()),
        wal_dir: wal_dir.clone(),
        initial_cluster: opts.initial_cluster.clone(),
        initial_cluster_token: opts.initial_cluster_token.clone(),
        initial_advertise_peer_urls: opts.initial_advertise_peer_urls.clone(),
        skip_hash_check: opts.skip_hash_check,
        loaded_bytes: Some(loaded.clone()),
    };
    let restored = with_progress(&opts.snapshot, &loaded, || {
        oxcd_storage::restore(&storage_opts)
    });
    restored.map_err(UtlError::error)?;
    if target != data_dir {
        if let Err(e) = std::fs::rename(&target, &data_dir) {
            let _ = std::fs::remove_dir_all(&target);
            if let Some(w) = &wal_dir {
                let _ = std::fs::remove_dir_all(w);
            }
            return Err(UtlError::error(path_error("rename", &data_dir, &e)));
        }
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_paths_are_etcdutls() {
        let o = RestoreOptions::default();
        assert_eq!(o.data_dir_text(), "default.etcd");
        let p = o.paths();
        assert_eq!(p.wal_dir, Path::new("default.etcd/member/wal"));
        assert_eq!(p.snap_dir, Path::new("default.etcd/member/snap"));
        let o = RestoreOptions {
            data_dir: "/d/".into(),
            wal_dir: "/w".into(),
            ..Default::default()
        };
        assert_eq!(o.paths().wal_dir, Path::new("/w"));
        assert_eq!(clean(Path::new("/d/")), Path::new("/d"));
    }

    #[test]
    fn flags_and_targets_are_checked_before_anything_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let backup = dir.path().join("backup.db");
        std::fs::write(&backup, b"x").expect("write");
        let mut never = |_: &RestorePaths| panic!("nothing may start");
        let opts = RestoreOptions {
            snapshot: backup.clone(),
            data_dir: dir.path().join("out").display().to_string(),
            mark_compacted: true,
            ..Default::default()
        };
        assert_eq!(
            restore(&opts, &mut never).map_err(|e| e.exit),
            Err(crate::Exit::BadArgs)
        );
        let opts = RestoreOptions {
            bump_revision: 1000,
            ..opts
        };
        assert_eq!(
            restore(&opts, &mut never).map_err(|e| e.exit),
            Err(crate::Exit::BadFeature)
        );

        let full = dir.path().join("full");
        std::fs::create_dir(&full).expect("mkdir");
        std::fs::write(full.join("keep"), b"mine").expect("write");
        let opts = RestoreOptions {
            snapshot: backup,
            data_dir: full.display().to_string(),
            ..Default::default()
        };
        let err = restore(&opts, &mut never).expect_err("refused");
        assert_eq!(
            err.msg,
            format!(
                "data-dir {:?} not empty or could not be read",
                opts.data_dir
            )
        );
        assert!(full.join("keep").exists());

        let opts = RestoreOptions {
            snapshot: dir.path().join("missing.db"),
            data_dir: dir.path().join("out").display().to_string(),
            ..Default::default()
        };
        let err = restore(&opts, &mut never).expect_err("refused");
        assert!(err.msg.ends_with("missing.db: no such file or directory"));
        assert!(!dir.path().join("out").exists());
    }
}
