//! Where a member keeps its files, as etcd lays them out: `member/snap/db` (the backend),
//! `member/snap/*.snap` (snapshots received from a leader), `member/wal` (the raft log, or
//! `--wal-dir`), `fixtures/{client,peer}` (certificates made by `--auto-tls`).

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
    wal: Option<PathBuf>,
}

impl DataDir {
    /// etcd's default data dir for a member named `name`.
    pub fn default_path(name: &str) -> String {
        format!("{name}.etcd")
    }

    /// Where oxcd before 0.2 kept a member's data without `--data-dir`.
    pub fn legacy_default_path(name: &str) -> String {
        format!("{name}.oxcd")
    }

    /// The data dir a member named `name` uses without `--data-dir`: etcd's `NAME.etcd`, or the
    /// `NAME.oxcd` an older oxcd left when there is no `NAME.etcd`, so an upgraded member
    /// finds its data instead of bootstrapping an empty one.
    pub fn default_path_found(name: &str, exists: impl Fn(&Path) -> bool) -> String {
        let etcd = Self::default_path(name);
        let legacy = Self::legacy_default_path(name);
        if !exists(Path::new(&etcd)) && exists(Path::new(&legacy)) {
            legacy
        } else {
            etcd
        }
    }

    pub fn new(root: impl Into<PathBuf>, wal: Option<PathBuf>) -> DataDir {
        DataDir {
            root: root.into(),
            wal,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn member_dir(&self) -> PathBuf {
        self.root.join("member")
    }
    pub fn snap_dir(&self) -> PathBuf {
        self.member_dir().join("snap")
    }
    pub fn backend_path(&self) -> PathBuf {
        self.snap_dir().join("db")
    }
    pub fn wal_dir(&self) -> PathBuf {
        self.wal
            .clone()
            .unwrap_or_else(|| self.member_dir().join("wal"))
    }
    /// The self-signed certificates of one side (`client` or `peer`).
    pub fn fixtures(&self, side: &str) -> PathBuf {
        self.root.join("fixtures").join(side)
    }

    /// Makes the snap and wal dirs (owner only, as etcd).
    pub fn create(&self) -> std::io::Result<()> {
        mkdir(&self.snap_dir())?;
        mkdir(&self.wal_dir())
    }
}

/// `mkdir -p` with mode 0700.
pub fn mkdir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcds_layout() {
        let d = DataDir::new("m1.etcd", None);
        assert_eq!(d.backend_path(), Path::new("m1.etcd/member/snap/db"));
        assert_eq!(d.wal_dir(), Path::new("m1.etcd/member/wal"));
        let d = DataDir::new("m1.etcd", Some("/wal".into()));
        assert_eq!(d.wal_dir(), Path::new("/wal"));
        assert_eq!(DataDir::default_path("default"), "default.etcd");
    }

    #[test]
    fn an_older_oxcds_default_data_dir_is_found_again() {
        let only = |present: &'static str| move |p: &Path| p == Path::new(present);
        assert_eq!(
            DataDir::default_path_found("m1", only("m1.oxcd")),
            "m1.oxcd"
        );
        assert_eq!(
            DataDir::default_path_found("m1", only("m1.etcd")),
            "m1.etcd"
        );
        assert_eq!(DataDir::default_path_found("m1", |_| false), "m1.etcd");
        assert_eq!(DataDir::default_path_found("m1", |_| true), "m1.etcd");
    }
}
