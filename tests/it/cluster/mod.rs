//! Clusters of separate oxcd processes on loopback: every op through any member, failover,
//! partitions (through proxies in front of peer URLs) with a linearizability check, member
//! replacement, learners, restarts. One scenario a module; all run in nextest's `heavy`
//! group (`test(/^cluster::/)`).

mod any_member;
mod checker;
mod failover;
mod force_new_cluster;
mod leases;
mod membership;
mod partitions;
mod restarts;
mod slow_links;
