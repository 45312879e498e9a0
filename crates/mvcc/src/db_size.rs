//! The backend file's size and the bytes of it in use, counted after commits and now and
//! then rather than on every request.

use crate::error::BackendError;
use redb::{Database, WriteTransaction};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a durable commit recounts the pages in use.
const COUNT_EVERY: Duration = Duration::from_secs(5);

pub(crate) struct DbSize {
    in_use: AtomicU64,
    file: AtomicU64,
    counted_at: Mutex<Instant>,
}

impl Default for DbSize {
    fn default() -> Self {
        DbSize {
            in_use: Default::default(),
            file: Default::default(),
            counted_at: Mutex::new(Instant::now()),
        }
    }
}

/// Bytes of the file in allocated pages, as `tx` sees them.
fn pages_in_use_bytes(tx: &WriteTransaction) -> Result<u64, BackendError> {
    let stats = tx.stats()?;
    Ok(stats.allocated_pages() * stats.page_size() as u64)
}

impl DbSize {
    /// Size of the backend file in bytes, as of the last commit.
    pub fn file(&self) -> u64 {
        self.file.load(Ordering::Relaxed)
    }

    /// Bytes of the file holding live pages, as of the last count.
    pub fn in_use(&self) -> u64 {
        self.in_use.load(Ordering::Relaxed).min(self.file())
    }

    pub fn refresh_file(&self, path: &Path) {
        let len = std::fs::metadata(path).map_or(0, |m| m.len());
        self.file.store(len, Ordering::Relaxed);
    }

    pub fn refresh_in_use(&self, db: &Database) -> Result<(), BackendError> {
        let tx = db.begin_write()?;
        let used = pages_in_use_bytes(&tx)?;
        tx.abort()?;
        self.in_use.store(used, Ordering::Relaxed);
        Ok(())
    }

    /// The next durable commit recounts the pages in use (compaction freed some).
    pub fn count_soon(&self) {
        let mut at = self.counted_at.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(past) = at.checked_sub(Duration::from_secs(60)) {
            *at = past;
        }
    }

    /// Recounts the pages in use now and then, on a durable commit.
    pub fn count_if_due(&self, tx: &WriteTransaction, durable: bool) {
        if !durable {
            return;
        }
        let mut at = self.counted_at.lock().unwrap_or_else(|p| p.into_inner());
        if at.elapsed() < COUNT_EVERY {
            return;
        }
        *at = Instant::now();
        if let Ok(used) = pages_in_use_bytes(tx) {
            self.in_use.store(used, Ordering::Relaxed);
        }
    }
}
