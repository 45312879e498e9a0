//! The one integration-test binary: oxcd and real etcd as processes on loopback.

mod bad_input;
mod cluster;
mod coordination;
mod crash;
mod differential;
mod etcdctl;
mod gateway;
mod lease;
mod ops;
mod security;
mod startup;
mod watch;
