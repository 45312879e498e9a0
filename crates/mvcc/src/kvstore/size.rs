//! The backend file's size and the bytes of it in use (etcd's db size and size in use).

use super::Store;
use crate::error::StoreError;

impl Store {
    /// Size of the backend file in bytes, as of the last commit.
    pub fn db_size(&self) -> u64 {
        self.size.file()
    }

    /// Bytes of the backend file holding live pages (etcd's db size in use), as of the last
    /// `count_db_size_in_use` (the file's size before the first).
    pub fn db_size_in_use(&self) -> u64 {
        self.size.in_use()
    }

    /// Whether the bytes in use should be counted again: never counted since open, a
    /// compaction or defragmentation finished, or writes went on for a while.
    pub fn db_size_in_use_due(&self) -> bool {
        self.size.count_due()
    }

    /// Counts the bytes in use from a read snapshot: it reads every page (seconds for a big
    /// file), so run it on a thread of its own; writes are not held up.
    pub fn count_db_size_in_use(&self) -> Result<u64, StoreError> {
        Ok(self.size.count(&self.db(), || self.db())?)
    }

    /// The bytes in use, counted again first when a count is cheap beside how long ago the
    /// last one was (the estimate between counts takes all the file's growth as in use, too
    /// much for a decision such as refusing a write for the quota). Run it off the async
    /// threads: counting a big file takes seconds.
    pub fn db_size_in_use_counted_if_cheap(&self) -> Result<u64, StoreError> {
        if self.size.recount_is_cheap() {
            self.count_db_size_in_use()?;
        }
        Ok(self.db_size_in_use())
    }
}
