//! Scheduled backups (`--backup-dir`, `--backup-interval`, `--backup-retention`; off unless a
//! directory is given). The leader takes each one: etcd's snapshot format written under a
//! temporary name in the directory, checked (its digest and every page), fsynced and renamed
//! to `oxcd-backup-<UTC time>-<member ID>.db`; then the oldest beyond the retention go. A
//! member that becomes leader backs up at once when the directory's newest backup is older
//! than the interval. Failures are logged and counted; while leading, /health says so once
//! the last good backup is older than twice the interval.

use crate::config::BackupSchedule as Schedule;
use crate::server::EtcdServer;
use oxcd_mvcc::Store;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

const PREFIX: &str = "oxcd-backup-";
const SUFFIX: &str = ".db";
/// How often the scheduler looks (at most; less with a shorter interval).
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// The schedule, and when the last good backup was taken (or the scheduler started).
pub struct Tracker {
    schedule: Option<Schedule>,
    last_good: Mutex<Instant>,
}

impl Tracker {
    pub fn new(schedule: Option<Schedule>) -> Arc<Tracker> {
        Arc::new(Tracker {
            schedule,
            last_good: Mutex::new(Instant::now()),
        })
    }

    /// /health's reason, if this member leads and its last good backup (or its start) is
    /// older than twice the interval.
    pub fn overdue(&self, leading: bool) -> Option<String> {
        let s = self.schedule.as_ref()?;
        let since = self.last_good.lock().map(|t| t.elapsed()).ok()?;
        (leading && since > s.interval.saturating_mul(2)).then(|| "BACKUP OVERDUE".to_string())
    }

    /// A good backup is `age` old (0: just taken). A member that has just become leader
    /// starts the clock too: it had nothing to take before.
    fn good_as_of(&self, age: Duration) {
        if let Ok(mut t) = self.last_good.lock() {
            *t = Instant::now().checked_sub(age).unwrap_or(*t);
        }
    }
}

/// The backups in `dir`, oldest first (their names sort by time).
pub fn list(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

fn age(path: &Path) -> Option<Duration> {
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
    SystemTime::now().duration_since(modified).ok()
}

fn stamp(now: SystemTime) -> String {
    let t = time::OffsetDateTime::from(now);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Writes one backup into `dir`; its path.
pub fn take(store: &Store, dir: &Path, member: oxcd_api::MemberId) -> Result<PathBuf, String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let shown = |e: &dyn std::fmt::Display| format!("{}: {e}", dir.display());
    oxcd_storage::mkdir(dir).map_err(|e| shown(&e))?;
    let name = format!("{PREFIX}{}-{member}{SUFFIX}", stamp(SystemTime::now()));
    let path = dir.join(&name);
    let part = dir.join(format!(".{name}.part"));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&part)
            .map_err(|e| shown(&e))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, &mut file);
        oxcd_storage::etcd_backup::write_backup(store, &mut out).map_err(|e| shown(&e))?;
        out.flush().map_err(|e| shown(&e))?;
        drop(out);
        file.sync_all().map_err(|e| shown(&e))?;
        let (file, body_len) = oxcd_storage::open_backup(&part, false).map_err(|e| shown(&e))?;
        oxcd_storage::etcd_backup::status(file, body_len).map_err(|e| shown(&e))?;
        std::fs::rename(&part, &path).map_err(|e| shown(&e))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| shown(&e))
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&part);
        return Err(e);
    }
    Ok(path)
}

/// Removes the oldest backups beyond `keep` (0 keeps all); what it removed.
pub fn prune(dir: &Path, keep: usize) -> Vec<PathBuf> {
    let all = list(dir);
    if keep == 0 || all.len() <= keep {
        return Vec::new();
    }
    let old = &all[..all.len() - keep];
    old.iter()
        .filter(|p| std::fs::remove_file(p).is_ok())
        .cloned()
        .collect()
}

/// The scheduler: runs for the life of the member.
pub async fn run(server: Arc<EtcdServer>, tracker: Arc<Tracker>) {
    let Some(s) = tracker.schedule.clone() else {
        return;
    };
    let newest_age = || list(&s.dir).last().and_then(|p| age(p));
    if let Some(age) = newest_age() {
        tracker.good_as_of(age);
    }
    let mut last_attempt: Option<Instant> = None;
    let mut leading = false;
    loop {
        tokio::time::sleep(LOOK_EVERY.min(s.interval)).await;
        let was_leading =
            std::mem::replace(&mut leading, server.raft.is_leader.load(Ordering::Acquire));
        if !leading {
            continue;
        }
        if !was_leading {
            tracker.good_as_of(Duration::ZERO);
        }
        let recent = |age: Duration| age < s.interval;
        if last_attempt.is_some_and(|t| recent(t.elapsed())) {
            continue;
        }
        // Another member's (a shared directory) or an earlier run's backup counts too.
        if let Some(age) = newest_age().filter(|a| recent(*a)) {
            tracker.good_as_of(age);
            continue;
        }
        last_attempt = Some(Instant::now());
        let (store, dir, member) = (server.store.clone(), s.dir.clone(), server.member_id);
        let started = Instant::now();
        let taken = tokio::task::spawn_blocking(move || take(&store, &dir, member))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
        match taken {
            Ok(path) => {
                tracker.good_as_of(Duration::ZERO);
                crate::metrics::inc(|m| &m.backups_taken);
                if let Some(m) = crate::metrics::get() {
                    m.backup_last_success.set(
                        SystemTime::now()
                            .duration_since(SystemTime::UNIX_EPOCH)
                            .map_or(0.0, |d| d.as_secs_f64()),
                    );
                }
                let removed = prune(&s.dir, s.retention);
                tracing::info!(
                    path = %path.display(),
                    took = ?started.elapsed(),
                    removed = removed.len(),
                    "took a scheduled backup"
                );
            }
            Err(e) => {
                crate::metrics::inc(|m| &m.backups_failed);
                tracing::warn!(error = %e, "scheduled backup failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_time_and_pruning_keeps_the_newest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        for i in [3u64, 1, 2, 0] {
            let name = format!(
                "{PREFIX}{}-8e9e05c52164694d{SUFFIX}",
                stamp(t0 + Duration::from_millis(1500 * i))
            );
            std::fs::write(dir.path().join(name), b"x").expect("write");
        }
        std::fs::write(dir.path().join("someone-elses.db"), b"x").expect("write");
        let names = |v: Vec<PathBuf>| -> Vec<String> {
            v.iter()
                .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
                .collect()
        };
        assert_eq!(
            names(list(dir.path()))[0],
            "oxcd-backup-20270115T080000.000Z-8e9e05c52164694d.db"
        );
        assert_eq!(names(prune(dir.path(), 2)).len(), 2);
        assert_eq!(
            names(list(dir.path())),
            [
                "oxcd-backup-20270115T080003.000Z-8e9e05c52164694d.db",
                "oxcd-backup-20270115T080004.500Z-8e9e05c52164694d.db"
            ]
        );
        assert!(dir.path().join("someone-elses.db").exists());
        assert!(prune(dir.path(), 0).is_empty(), "0 keeps all");
    }
}
