//! `oxcd`'s flags: etcd's names, defaults and `ETCD_*` variables, and etcd's YAML config file.

mod auto_compaction;
mod flags;
mod parse;
mod types;

pub use auto_compaction::AutoCompaction;
pub use parse::parse;
pub use types::{BackupSchedule, ClusterState, Config, ConfigError, Parsed};

#[cfg(test)]
mod tests;
