pub mod cluster;
pub mod kv;
pub mod later;
pub mod lease;
pub mod maintenance;
pub mod watch;
