pub mod cluster;
pub mod kv;
pub mod later;
pub mod maintenance;
pub mod watch;
