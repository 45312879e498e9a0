//! Prometheus metrics under etcd's names. Counters and histograms are fed where things
//! happen; gauges are read from the node when /metrics is scraped.

use prometheus::{
    exponential_buckets, Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts,
    Registry, TextEncoder,
};
use std::sync::OnceLock;

pub struct Metrics {
    registry: Registry,
    pub wal_fsync: Histogram,
    pub backend_commit: Histogram,
    pub apply_duration: Histogram,
    pub leader_changes: IntCounter,
    pub proposals_failed: IntCounter,
    pub slow_apply: IntCounter,
    pub grpc_started: IntCounterVec,
    pub grpc_handled: IntCounterVec,
    pub lease_granted: IntCounter,
    pub lease_revoked: IntCounter,
    pub lease_renewed: IntCounter,
}

fn build() -> Result<Metrics, prometheus::Error> {
    let registry = Registry::new();
    // etcd's disk histograms: 1 ms doubling to about 8 s.
    let disk = || exponential_buckets(0.001, 2.0, 14);
    let histogram = |name: &str, help: &str| -> Result<Histogram, prometheus::Error> {
        let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(disk()?))?;
        registry.register(Box::new(h.clone()))?;
        Ok(h)
    };
    let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
        let c = IntCounter::new(name, help)?;
        registry.register(Box::new(c.clone()))?;
        Ok(c)
    };
    let grpc_started = IntCounterVec::new(
        Opts::new(
            "grpc_server_started_total",
            "Total number of RPCs started on the server.",
        ),
        &["grpc_type", "grpc_service", "grpc_method"],
    )?;
    registry.register(Box::new(grpc_started.clone()))?;
    let grpc_handled = IntCounterVec::new(
        Opts::new(
            "grpc_server_handled_total",
            "Total number of RPCs completed on the server, regardless of success or failure.",
        ),
        &["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
    )?;
    registry.register(Box::new(grpc_handled.clone()))?;
    Ok(Metrics {
        wal_fsync: histogram(
            "etcd_disk_wal_fsync_duration_seconds",
            "The latency distributions of fsync called by WAL.",
        )?,
        backend_commit: histogram(
            "etcd_disk_backend_commit_duration_seconds",
            "The latency distributions of commit called by backend.",
        )?,
        apply_duration: {
            let h = Histogram::with_opts(
                HistogramOpts::new(
                    "etcd_server_apply_duration_seconds",
                    "The latency distributions of v2 apply called by backend.",
                )
                .buckets(exponential_buckets(0.0001, 2.0, 20)?),
            )?;
            registry.register(Box::new(h.clone()))?;
            h
        },
        leader_changes: counter(
            "etcd_server_leader_changes_seen_total",
            "The number of leader changes seen.",
        )?,
        proposals_failed: counter(
            "etcd_server_proposals_failed_total",
            "The total number of failed proposals seen.",
        )?,
        slow_apply: counter(
            "etcd_server_slow_apply_total",
            "The total number of slow apply requests (likely overloaded from slow disk).",
        )?,
        grpc_started,
        grpc_handled,
        lease_granted: counter(
            "etcd_debugging_lease_granted_total",
            "The total number of granted leases.",
        )?,
        lease_revoked: counter(
            "etcd_debugging_lease_revoked_total",
            "The total number of revoked leases.",
        )?,
        lease_renewed: counter(
            "etcd_debugging_lease_renewed_total",
            "The number of renewed leases seen by the leader.",
        )?,
        registry,
    })
}

static METRICS: OnceLock<Option<Metrics>> = OnceLock::new();

/// The process's metrics; `None` only if the registry refused them (a bug, logged once).
pub fn get() -> Option<&'static Metrics> {
    METRICS
        .get_or_init(|| match build() {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::error!(error = %e, "metrics unavailable");
                None
            }
        })
        .as_ref()
}

pub fn observe(pick: impl FnOnce(&Metrics) -> &Histogram, seconds: f64) {
    if let Some(m) = get() {
        pick(m).observe(seconds);
    }
}

pub fn inc(pick: impl FnOnce(&Metrics) -> &IntCounter) {
    if let Some(m) = get() {
        pick(m).inc();
    }
}

/// A gauge line in the text format.
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

/// The whole exposition: registered metrics, then gauges read from the node now.
pub fn render(server: &crate::server::EtcdServer) -> String {
    use std::sync::atomic::Ordering;
    let mut out = String::new();
    if let Some(m) = get() {
        let mut buf = Vec::new();
        if TextEncoder::new()
            .encode(&m.registry.gather(), &mut buf)
            .is_ok()
        {
            out.push_str(&String::from_utf8_lossy(&buf));
        }
    }
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
        &format!(
            "{{server_version=\"{}\"}}",
            crate::services::maintenance::SERVER_VERSION
        ),
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
        server.store.current_revision() as f64,
    );
    gauge(
        &mut out,
        "etcd_debugging_mvcc_compact_revision",
        "The revision of the last compaction in store.",
        "",
        server.store.compacted_revision() as f64,
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
