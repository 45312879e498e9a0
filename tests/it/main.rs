//! The one integration-test binary: oxcd and real etcd as processes on loopback.

mod architecture;
mod backups;
mod bad_input;
mod cluster;
mod coordination;
mod crash;
mod ctl_snapshot;
mod differential;
mod etcd_backup;
mod etcdctl;
mod faults;
mod gateway;
mod k8s;
mod lease;
mod metrics;
mod ops;
mod overload;
mod robustness;
mod security;
mod service;
mod startup;
mod ui;
mod utl;
mod watch;
mod watch_progress;
