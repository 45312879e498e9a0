//! bbolt's page format, as far as etcd's backups use it: a file of fixed-size pages, two meta
//! pages, a B+tree per top-level bucket. Written and read here (the `bbolt-rs` crate cannot
//! open etcd's files: they carry no freelist page). Facts: docs/etcd-backup-format.md §1.

mod format;
mod read;
mod write;

pub use format::{BboltError, PAGE_SIZE};
pub use read::{Bolt, Bucket, PairFn};
pub use write::{write_db, BucketSource, PairBound, PairLengths, PairSink};
