//! Safety under faults: the windows a crash, a stall or a hostile peer can open, each driven
//! on purpose. Tests named `cluster_*` run in nextest's heavy group.

mod disk_full;
mod leases;
mod membership;
mod peer_port;
mod reads;
