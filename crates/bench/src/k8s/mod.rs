//! `k8s`: Kubernetes' storage traffic (kube-apiserver's etcd3 store) against any endpoints,
//! and `k8s-compare`, the same traffic against oxcd and etcd clusters side by side (also a
//! section of `compare`). Writes are conditional txns (create, update and delete retried
//! from the Else-Get on conflict, events under shared leases) with a reflector watching;
//! lists are paginated relists and count-only ranges of 1–10 KiB objects.
//!
//! The figures: writes/s and write p50/p99, watch event lag (write ack to event, on a
//! watcher connected to another member than the write's), server CPU per write (members'
//! utime + stime over the write phase), list pages/s at each object count, and for each
//! list the servers' CPU per full list and the largest rise of a member's resident memory.

mod compare;
mod lists;
pub mod measure;
pub mod spec;
pub(crate) mod storage;
mod writes;

pub use compare::compare;
pub use measure::run;
pub use spec::Spec;
