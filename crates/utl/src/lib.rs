//! Offline tools on a member's data dir or a backup file, as etcd's `etcdutl` has them:
//! `snapshot status|restore`, `defrag --data-dir`, `hashkv`. Everything here works on files,
//! never on a running member; `oxcdutl` is a thin command line on top, and oxcdctl's offline
//! commands (`snapshot status|restore`, `defrag --data-dir`) call the same functions.

pub mod backend;
pub mod cli;
pub mod defrag;
pub mod error;
pub mod hashkv;
pub mod log;
pub mod printer;
pub mod progress;
pub mod snapshot;

pub use error::{Exit, UtlError};

/// The etcd release whose etcdutl this tool stands in for, and its API version.
pub use oxcd_api::{API_VERSION, ETCD_VERSION};

/// `version`'s two lines, as etcdutl prints them (with oxcdutl's own version beside).
pub fn version_text() -> String {
    format!(
        "etcdutl version: {ETCD_VERSION} (oxcdutl {})\nAPI version: {API_VERSION}\n",
        env!("CARGO_PKG_VERSION")
    )
}
