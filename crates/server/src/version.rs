//! The version this member reports (etcd's Status, /version and metrics).

/// The etcd server version oxcd answers as.
pub const SERVER_VERSION: &str = oxcd_api::ETCD_VERSION;
