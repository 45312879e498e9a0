//! The backend file's size, refreshed after every commit, and the bytes of it in use, counted
//! from a read snapshot off the writer's path: counting walks every page of every table, which
//! takes seconds on a big file and must never hold up a commit.

use crate::error::BackendError;
use redb::{Database, ReadableDatabase, ReadableTableMetadata};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long writes may go on before the bytes in use are counted again, at the least.
const RECOUNT_EVERY: Duration = Duration::from_secs(30);
/// A count waits this many times as long as the last one took, so that walking a big file
/// (and churning the page cache) takes at most about 0.1 % of a core. Between counts the
/// file's growth is taken as in use (pages are reused before the file grows); compaction and
/// defragmentation, which free pages, ask for a count at once.
const RECOUNT_PACE: u32 = 1000;

/// When the next count is due after one that took `took`.
fn recount_wait(took: Duration) -> Duration {
    RECOUNT_EVERY.max(took.saturating_mul(RECOUNT_PACE))
}

pub(crate) struct DbSize {
    in_use: AtomicU64,
    /// The file's size when `in_use` was counted.
    file_at_count: AtomicU64,
    file: AtomicU64,
    /// A count is wanted at once (opened, compacted, defragmented).
    soon: AtomicBool,
    /// A count is under way (one at a time for those asked on demand).
    counting: AtomicBool,
    /// Something was committed since the last count.
    wrote: AtomicBool,
    /// When the last count began, how long to wait after it, and how long it took.
    counted: Mutex<(Instant, Duration, Duration)>,
}

impl Default for DbSize {
    fn default() -> Self {
        DbSize {
            in_use: AtomicU64::new(u64::MAX),
            file_at_count: Default::default(),
            file: Default::default(),
            soon: AtomicBool::new(true),
            counting: AtomicBool::new(false),
            wrote: Default::default(),
            counted: Mutex::new((Instant::now(), RECOUNT_EVERY, Duration::ZERO)),
        }
    }
}

impl DbSize {
    /// Size of the backend file in bytes, as of the last commit.
    pub fn file(&self) -> u64 {
        self.file.load(Ordering::Relaxed)
    }

    /// Bytes of the file holding live pages: the last count plus what the file grew by since
    /// (the file's size until the first count).
    pub fn in_use(&self) -> u64 {
        let file = self.file();
        let grown = file.saturating_sub(self.file_at_count.load(Ordering::Relaxed));
        self.in_use
            .load(Ordering::Relaxed)
            .saturating_add(grown)
            .min(file)
    }

    pub fn refresh_file(&self, path: &Path) {
        let len = std::fs::metadata(path).map_or(0, |m| m.len());
        self.file.store(len, Ordering::Relaxed);
    }

    /// A commit happened: the next count is due within `RECOUNT_EVERY`.
    pub fn wrote(&self) {
        self.wrote.store(true, Ordering::Relaxed);
    }

    /// Pages were freed or the file replaced: count at the next chance.
    pub fn count_soon(&self) {
        self.soon.store(true, Ordering::Relaxed);
    }

    pub fn count_due(&self) -> bool {
        self.count_due_at(Instant::now())
    }

    fn count_due_at(&self, now: Instant) -> bool {
        self.soon.load(Ordering::Relaxed)
            || (self.wrote.load(Ordering::Relaxed) && {
                let (at, wait, _) = *self.counted.lock().unwrap_or_else(|p| p.into_inner());
                now.saturating_duration_since(at) >= wait
            })
    }

    fn counted(&self, at: Instant, took: Duration) {
        *self.counted.lock().unwrap_or_else(|p| p.into_inner()) = (at, recount_wait(took), took);
    }

    /// Whether a count now keeps to the pace (`RECOUNT_PACE` times the last count's length
    /// since it began), without the periodic count's floor: a small file is counted at once.
    pub fn recount_is_cheap(&self) -> bool {
        let (at, _, took) = *self.counted.lock().unwrap_or_else(|p| p.into_inner());
        !self.counting.load(Ordering::Acquire) && at.elapsed() >= took.saturating_mul(RECOUNT_PACE)
    }

    /// Counts the bytes of every table's pages in a read snapshot of `db`: writers go on
    /// meanwhile. Kept only if `db` is still `current()` (a defragmentation may have swapped
    /// the file); otherwise, or on an error, another count is wanted at once.
    pub fn count(
        &self,
        db: &Arc<Database>,
        current: impl Fn() -> Arc<Database>,
    ) -> Result<u64, BackendError> {
        self.soon.store(false, Ordering::Relaxed);
        self.wrote.store(false, Ordering::Relaxed);
        let started = Instant::now();
        self.counting.store(true, Ordering::Release);
        self.counted(started, Duration::ZERO);
        let file_before = self.file();
        let counted = table_bytes(db);
        self.counted(started, started.elapsed());
        self.counting.store(false, Ordering::Release);
        let bytes = match counted {
            Ok(bytes) => bytes,
            Err(e) => {
                self.count_soon();
                return Err(e);
            }
        };
        if Arc::ptr_eq(db, &current()) {
            self.file_at_count.store(file_before, Ordering::Relaxed);
            self.in_use.store(bytes, Ordering::Relaxed);
        } else {
            self.count_soon();
        }
        Ok(bytes)
    }
}

fn table_bytes(db: &Database) -> Result<u64, BackendError> {
    let tx = db.begin_read()?;
    let mut bytes = 0;
    for handle in tx.list_tables()? {
        let stats = tx.open_untyped_table(handle)?.stats()?;
        bytes += stats.stored_bytes() + stats.metadata_bytes() + stats.fragmented_bytes();
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::{DbSize, RECOUNT_EVERY};
    use crate::kvstore::Store;
    use crate::test_support::put;
    use oxcd_api::etcdserverpb::PutRequest;
    use std::time::Duration;
    use std::time::Instant;

    #[test]
    fn bytes_in_use_are_counted_beside_a_writer_and_never_by_a_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("db")).expect("open");
        assert!(store.db_size_in_use_due(), "counted once opened");
        for i in 0..200 {
            put(&store, &format!("k{i:04}"), vec![b'v'; 4096]);
        }
        let size_at_count = store.db_size();
        let counted = store.count_db_size_in_use().expect("count");
        assert!(
            counted >= 200 * 4096 && counted <= store.db_size(),
            "{counted} of {}",
            store.db_size()
        );
        assert!(!store.db_size_in_use_due());

        // A commit leaves the count alone; a writer holding its turn does not hold it up.
        let mut wb = store.begin_write().expect("write");
        wb.put(&PutRequest {
            key: b"big".to_vec(),
            value: vec![b'b'; 1 << 20],
            ..Default::default()
        })
        .expect("put");
        std::thread::scope(|s| {
            let (done, counted_beside) = std::sync::mpsc::channel();
            let store = &store;
            s.spawn(move || done.send(store.count_db_size_in_use().map_err(|e| e.to_string())));
            let beside = counted_beside
                .recv_timeout(Duration::from_secs(10))
                .expect("counted while the writer held its turn");
            assert_eq!(beside, Ok(counted), "the snapshot before the write");
        });
        wb.commit(true).expect("commit");
        let grown = store.db_size() - size_at_count;
        assert_eq!(
            store.db_size_in_use(),
            counted + grown,
            "a commit does not count; the file's growth is taken as in use"
        );
        assert!(store.count_db_size_in_use().expect("count") > counted + (1 << 20) - 1);
    }

    #[test]
    fn a_slow_count_is_not_repeated_until_a_thousand_times_its_length_has_passed() {
        let size = DbSize::default();
        let start = Instant::now();
        size.soon.store(false, std::sync::atomic::Ordering::Relaxed);
        size.wrote();
        size.counted(start, Duration::from_millis(10));
        assert!(!size.count_due_at(start + RECOUNT_EVERY - Duration::from_millis(1)));
        assert!(
            size.count_due_at(start + RECOUNT_EVERY),
            "a quick count: every 30 s"
        );

        size.counted(start, Duration::from_secs(2));
        assert!(
            !size.count_due_at(start + RECOUNT_EVERY * 60),
            "a count of 2 s waits 2000 s"
        );
        assert!(size.count_due_at(start + Duration::from_secs(2000)));

        size.count_soon();
        assert!(
            size.count_due_at(start),
            "compaction or defrag asks at once"
        );
    }
}
