//! `snapshot status` and `snapshot restore`: what a backup file holds, and a new member's data
//! dir made from one.

mod restore;
mod status;

pub use oxcd_storage::has_checksum;
pub use restore::{restore, RestoreOptions, RestorePaths};
pub use status::{status, verify, SnapshotStatus};
