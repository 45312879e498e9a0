//! The /metrics page: the registered metrics, then gauges read from the node as it is asked.

use crate::server::EtcdServer;

/// The whole exposition: registered metrics, then gauges read from the node now.
pub fn render(server: &EtcdServer) -> String {
    use std::sync::atomic::Ordering;
    let mut out = crate::metrics::registered_text();
    let leader = server.raft.leader.load(Ordering::Acquire);
    let b = |v: bool| if v { 1.0 } else { 0.0 };
    gauge(
        &mut out,
        "etcd_server_has_leader",
        "Whether or not a leader exists. 1 is existence, 0 is not.",
        "",
        b(leader != 0),
    );
    gauge(
        &mut out,
        "etcd_server_is_leader",
        "Whether or not this member is a leader. 1 if is, 0 otherwise.",
        "",
        b(server.raft.is_leader.load(Ordering::Acquire)),
    );
    gauge(
        &mut out,
        "etcd_server_is_learner",
        "Whether or not this member is a learner. 1 if is, 0 otherwise.",
        "",
        b(server.is_learner()),
    );
    gauge(
        &mut out,
        "etcd_server_proposals_committed_total",
        "The total number of consensus proposals committed.",
        "",
        server.raft.commit.load(Ordering::Acquire) as f64,
    );
    gauge(
        &mut out,
        "etcd_server_proposals_applied_total",
        "The total number of consensus proposals applied.",
        "",
        *server.applied.borrow() as f64,
    );
    gauge(
        &mut out,
        "etcd_server_proposals_pending",
        "The current number of pending proposals to commit.",
        "",
        server.waiters.pending() as f64,
    );
    gauge(
        &mut out,
        "etcd_server_id",
        "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
        &format!("{{server_id=\"{}\"}}", server.member_id),
        1.0,
    );
    gauge(
        &mut out,
        "etcd_server_version",
        "Which version is running. 1 for 'server_version' label with current version.",
        &format!("{{server_version=\"{}\"}}", crate::version::SERVER_VERSION),
        1.0,
    );
    gauge(
        &mut out,
        "etcd_server_quota_backend_bytes",
        "Current backend storage quota size in bytes.",
        "",
        server.quota_bytes.map_or(-1.0, |q| q as f64),
    );
    gauge(
        &mut out,
        "etcd_mvcc_db_total_size_in_bytes",
        "Total size of the underlying database physically allocated in bytes.",
        "",
        server.store.db_size() as f64,
    );
    gauge(
        &mut out,
        "etcd_mvcc_db_total_size_in_use_in_bytes",
        "Total size of the underlying database logically in use in bytes.",
        "",
        server.store.db_size_in_use() as f64,
    );
    gauge(
        &mut out,
        "etcd_debugging_mvcc_current_revision",
        "The current revision of store.",
        "",
        server.store.current_revision().0 as f64,
    );
    gauge(
        &mut out,
        "etcd_debugging_mvcc_compact_revision",
        "The revision of the last compaction in store.",
        "",
        server.store.compacted_revision().0 as f64,
    );
    gauge(
        &mut out,
        "etcd_debugging_mvcc_watcher_total",
        "Total number of watchers.",
        "",
        server.store.watcher_count() as f64,
    );
    gauge(
        &mut out,
        "etcd_debugging_lease_total",
        "The number of leases in the store.",
        "",
        server.store.lease_count() as f64,
    );
    if let Some(rss) = resident_bytes() {
        gauge(
            &mut out,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            "",
            rss,
        );
    }
    out
}

fn gauge(out: &mut String, name: &str, help: &str, labels: &str, value: f64) {
    out.push_str(&format!(
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{labels} {value}\n"
    ));
}

/// Resident set size from /proc (what etcdctl check datascale reads).
fn resident_bytes() -> Option<f64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096.0)
}
