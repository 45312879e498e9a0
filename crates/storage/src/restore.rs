//! `snapshot restore`: a new member's data dir from a backup file, for a new cluster (new
//! cluster ID, members from the flags) whose keyspace is the backup's, as etcdctl builds one.

use crate::bootstrap::parse_urls;
use crate::{bootstrap, mkdir, DataDir, InitialCluster};
use oxcd_mvcc::Store;
use oxcd_raftlog::RaftLog;
use std::path::{Path, PathBuf};

pub struct RestoreOptions {
    pub snapshot: PathBuf,
    pub name: String,
    pub data_dir: Option<String>,
    pub wal_dir: Option<String>,
    pub initial_cluster: String,
    pub initial_cluster_token: String,
    pub initial_advertise_peer_urls: String,
    pub skip_hash_check: bool,
    /// Counts the bytes of the backup's records loaded so far (for a progress display).
    pub loaded_bytes: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
}

/// Where the restored member's files went.
pub struct Restored {
    pub data_dir: PathBuf,
    pub wal_dir: PathBuf,
    pub snap_dir: PathBuf,
}

/// redb's file header: a backend copied out of a data dir rather than a backup.
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

/// Whether `path` is a backend file (copied out of a data dir) rather than a backup.
pub fn is_backend_file(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 9];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && head == REDB_MAGIC
}

fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

pub fn restore(opts: &RestoreOptions) -> Result<Restored, String> {
    let data_dir = opts
        .data_dir
        .clone()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| DataDir::default_path(&opts.name));
    let advertise_peer_urls: Vec<String> = parse_urls(
        "initial-advertise-peer-urls",
        &opts.initial_advertise_peer_urls,
    )?
    .iter()
    .map(|u| u.to_string())
    .collect();
    let members = if opts.initial_cluster.is_empty() {
        advertise_peer_urls
            .iter()
            .map(|u| format!("{}={}", opts.name, u.trim_end_matches('/')))
            .collect::<Vec<_>>()
            .join(",")
    } else {
        opts.initial_cluster.clone()
    };
    let cluster = InitialCluster {
        name: opts.name.clone(),
        members: InitialCluster::parse_members(&members)?,
        token: opts.initial_cluster_token.clone(),
        advertise_peer_urls,
    };
    for urls in cluster.members.values() {
        parse_urls("initial-cluster", &urls.join(","))?;
    }
    cluster.members().map_err(|e| e.to_string())?;
    let data_dir = PathBuf::from(&data_dir);
    if exists(&data_dir) {
        return Err(format!(
            "data-dir {:?} exists",
            data_dir.display().to_string()
        ));
    }
    let wal_dir = match opts.wal_dir.as_deref().filter(|w| !w.is_empty()) {
        Some(w) if exists(Path::new(w)) => return Err(format!("wal-dir {w:?} exists")),
        Some(w) => PathBuf::from(w),
        None => data_dir.join("member").join("wal"),
    };
    let backend_copy = is_backend_file(&opts.snapshot);
    if backend_copy && !opts.skip_hash_check {
        return Err("snapshot missing hash but --skip-hash-check=false".into());
    }
    // Built beside the target and renamed into place, so a failure (a damaged backup too:
    // restore_backup checks it before loading) leaves nothing behind.
    let staging = PathBuf::from(format!("{}.restoring", data_dir.display()));
    let _ = std::fs::remove_dir_all(&staging);
    let staged_wal = if opts.wal_dir.as_deref().is_some_and(|w| !w.is_empty()) {
        PathBuf::from(format!("{}.restoring", wal_dir.display()))
    } else {
        staging.join("member").join("wal")
    };
    let result = build(opts, &cluster, &staging, &staged_wal, backend_copy);
    let result = result.and_then(|_| {
        if staged_wal != staging.join("member").join("wal") {
            std::fs::rename(&staged_wal, &wal_dir)
                .map_err(|e| format!("{}: {e}", wal_dir.display()))?;
        }
        std::fs::rename(&staging, &data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))
    });
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&staging);
        let _ = std::fs::remove_dir_all(&staged_wal);
        return Err(e);
    }
    Ok(Restored {
        snap_dir: data_dir.join("member").join("snap"),
        data_dir,
        wal_dir,
    })
}

fn build(
    opts: &RestoreOptions,
    cluster: &InitialCluster,
    data_dir: &Path,
    wal_dir: &Path,
    backend_copy: bool,
) -> Result<(), String> {
    let snap_dir = data_dir.join("member").join("snap");
    mkdir(&snap_dir).map_err(|e| e.to_string())?;
    mkdir(wal_dir).map_err(|e| e.to_string())?;
    let db = snap_dir.join("db");
    if backend_copy {
        std::fs::copy(&opts.snapshot, &db).map_err(|e| format!("{}: {e}", db.display()))?;
    }
    let store = Store::open(&db).map_err(|e| e.to_string())?;
    if !backend_copy {
        let unwatched = std::sync::atomic::AtomicU64::new(0);
        let loaded = opts.loaded_bytes.as_deref().unwrap_or(&unwatched);
        load_backup(&store, &opts.snapshot, opts.skip_hash_check, loaded)?;
    }
    let mut log = RaftLog::open(wal_dir).map_err(|e| e.to_string())?;
    bootstrap(cluster, &store, &mut log).map_err(|e| e.to_string())?;
    Ok(())
}

/// Loads a backup file into `store`: etcd's bbolt backup (from etcd or oxcd), or a record
/// stream from an oxcd before it wrote etcd's format.
fn load_backup(
    store: &Store,
    path: &Path,
    skip_hash_check: bool,
    loaded_bytes: &std::sync::atomic::AtomicU64,
) -> Result<(), String> {
    if oxcd_mvcc::is_record_stream(path) {
        store
            .restore_backup(path, skip_hash_check)
            .map_err(|e| e.to_string())?;
        return Ok(());
    }
    let (file, body_len) =
        oxcd_mvcc::open_backup(path, skip_hash_check).map_err(|e| e.to_string())?;
    let loaded = crate::etcd_backup::load_counted(store, file, body_len, loaded_bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    tracing::info!(
        revisions = loaded.revisions,
        leases = loaded.leases,
        users = loaded.users,
        roles = loaded.roles,
        "loaded etcd backup"
    );
    for (what, keys) in &loaded.unused {
        tracing::warn!(
            what = what.as_str(),
            keys,
            "backup holds data oxcd does not use; left out"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn restore_with(initial_cluster: &str, advertise: &str) -> Result<Restored, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        restore(&RestoreOptions {
            snapshot: dir.path().join("missing.db"),
            name: "m1".into(),
            data_dir: Some(dir.path().join("m1.etcd").display().to_string()),
            wal_dir: None,
            initial_cluster: initial_cluster.into(),
            initial_cluster_token: "t".into(),
            initial_advertise_peer_urls: advertise.into(),
            skip_hash_check: false,
            loaded_bytes: None,
        })
    }

    /// Peer URLs a member could never dial are refused before anything is written, as
    /// etcd's flag parsing refuses them.
    #[test]
    fn peer_urls_without_a_scheme_or_a_port_are_refused() {
        let err = restore_with("m1=10.0.0.1:2380", "10.0.0.1:2380")
            .err()
            .expect("no scheme");
        assert!(
            err.starts_with(
                "invalid value \"10.0.0.1:2380\" for flag -initial-advertise-peer-urls: "
            ),
            "{err}"
        );
        let err = restore_with("m1=http://10.0.0.1", "http://10.0.0.1:2380")
            .err()
            .expect("no port");
        assert_eq!(
            err,
            "invalid value \"http://10.0.0.1\" for flag -initial-cluster: missing port in address"
        );
    }
}
