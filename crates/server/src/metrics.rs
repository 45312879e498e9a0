//! Prometheus metrics under etcd's names. Counters and histograms are fed where things
//! happen; gauges are read from the node when /metrics is scraped.

use prometheus::{
    exponential_buckets, Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, Opts, Registry, TextEncoder,
};
use std::collections::HashMap;
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
    pub peer_sent_bytes: IntCounterVec,
    pub peer_received_bytes: IntCounterVec,
    pub peer_sent_failures: IntCounterVec,
    pub peer_round_trip: HistogramVec,
    pub heartbeat_send_failures: IntCounter,
    pub client_received_bytes: IntCounter,
    pub client_sent_bytes: IntCounter,
    pub backups_taken: IntCounter,
    pub backups_failed: IntCounter,
    pub backup_last_success: Gauge,
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
    let counter_vec = |name: &str, help: &str, label: &str| {
        let c = IntCounterVec::new(Opts::new(name, help), &[label])?;
        registry.register(Box::new(c.clone()))?;
        Ok::<_, prometheus::Error>(c)
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
        peer_sent_bytes: counter_vec(
            "etcd_network_peer_sent_bytes_total",
            "The total number of bytes sent to peers.",
            "To",
        )?,
        peer_received_bytes: counter_vec(
            "etcd_network_peer_received_bytes_total",
            "The total number of bytes received from peers.",
            "From",
        )?,
        peer_sent_failures: counter_vec(
            "etcd_network_peer_sent_failures_total",
            "The total number of send failures from peers.",
            "To",
        )?,
        peer_round_trip: {
            let h = HistogramVec::new(
                HistogramOpts::new(
                    "etcd_network_peer_round_trip_time_seconds",
                    "Round-Trip-Time histogram between peers",
                )
                .buckets(exponential_buckets(0.0001, 2.0, 16)?),
                &["To"],
            )?;
            registry.register(Box::new(h.clone()))?;
            h
        },
        heartbeat_send_failures: counter(
            "etcd_server_heartbeat_send_failures_total",
            "The total number of leader heartbeat send failures (likely overloaded from slow disk).",
        )?,
        client_received_bytes: counter(
            "etcd_network_client_grpc_received_bytes_total",
            "The total number of bytes received from grpc clients.",
        )?,
        client_sent_bytes: counter(
            "etcd_network_client_grpc_sent_bytes_total",
            "The total number of bytes sent to grpc clients.",
        )?,
        backups_taken: counter(
            "oxcd_backup_success_total",
            "The number of scheduled backups taken (--backup-dir).",
        )?,
        backups_failed: counter(
            "oxcd_backup_failures_total",
            "The number of scheduled backups that failed.",
        )?,
        backup_last_success: {
            let g = Gauge::new(
                "oxcd_backup_last_success_timestamp_seconds",
                "When the last scheduled backup was taken, in seconds since the Unix epoch.",
            )?;
            registry.register(Box::new(g.clone()))?;
            g
        },
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

/// gRPC's status codes as go-grpc-prometheus labels them.
const CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// One client RPC's gRPC series, made at start (at 0, as etcd pre-creates them, so a rate
/// sees the first of each): a request then pays a path lookup and an atomic add instead of
/// label hashing and strings.
pub struct RpcCounters {
    pub kind: &'static str,
    pub service: &'static str,
    pub method: &'static str,
    pub started: IntCounter,
    handled: Vec<IntCounter>,
    /// With `--metrics=extensive`.
    handling: Option<Histogram>,
}

impl RpcCounters {
    /// Counts a finished call under its code.
    pub fn handled(&self, code: &'static str, started: std::time::Instant) {
        if let Some(i) = CODES.iter().position(|c| *c == code) {
            self.handled[i].inc();
        }
        if let Some(h) = &self.handling {
            h.observe(started.elapsed().as_secs_f64());
        }
    }
}

/// The gRPC type label of a method, as go-grpc-prometheus names it.
fn rpc_type(method: &str) -> &'static str {
    match method {
        "Watch" | "LeaseKeepAlive" => "bidi_stream",
        "Snapshot" | "Observe" => "server_stream",
        _ => "unary",
    }
}

static HANDLING: OnceLock<Option<HistogramVec>> = OnceLock::new();

/// `--metrics=extensive`: gRPC handling times (grpc_server_handling_seconds), before any
/// RPC's series are made.
pub fn enable_handling_histogram() {
    HANDLING.get_or_init(|| {
        let m = get()?;
        let h = HistogramVec::new(
            HistogramOpts::new(
                "grpc_server_handling_seconds",
                "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
            )
            .buckets(prometheus::DEFAULT_BUCKETS.to_vec()),
            &["grpc_type", "grpc_service", "grpc_method"],
        )
        .ok()?;
        m.registry.register(Box::new(h.clone())).ok()?;
        Some(h)
    });
}

/// Makes every client RPC's series (at 0).
pub fn init_rpc_series() {
    for (service, method) in oxcd_api::CLIENT_RPCS {
        rpc_counters(&format!("/{service}/{method}"));
    }
}

/// The counters of the client RPC at `path` (`/package.Service/Method`); None for any other
/// path, so that a client choosing paths cannot grow the metrics.
pub fn rpc_counters(path: &str) -> Option<&'static RpcCounters> {
    type Table = HashMap<String, (usize, OnceLock<Option<RpcCounters>>)>;
    static TABLE: OnceLock<Table> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        oxcd_api::CLIENT_RPCS
            .iter()
            .enumerate()
            .map(|(i, (s, m))| (format!("/{s}/{m}"), (i, OnceLock::new())))
            .collect()
    });
    let (i, counters) = table.get(path)?;
    counters
        .get_or_init(|| {
            let m = get()?;
            let (service, method) = oxcd_api::CLIENT_RPCS[*i];
            let kind = rpc_type(method);
            Some(RpcCounters {
                kind,
                service,
                method,
                started: m.grpc_started.with_label_values(&[kind, service, method]),
                handled: CODES
                    .iter()
                    .map(|code| {
                        m.grpc_handled
                            .with_label_values(&[kind, service, method, code])
                    })
                    .collect(),
                handling: HANDLING
                    .get()
                    .and_then(|h| h.as_ref())
                    .map(|h| h.with_label_values(&[kind, service, method])),
            })
        })
        .as_ref()
}

pub fn observe(pick: impl FnOnce(&Metrics) -> &Histogram, seconds: f64) {
    if let Some(m) = get() {
        pick(m).observe(seconds);
    }
}

/// Makes a new peer's series (at 0, so a rate sees its first failure).
pub fn add_peer(peer: u64) {
    if let Some(m) = get() {
        let id = format!("{peer:x}");
        m.peer_sent_bytes.with_label_values(&[&id]);
        m.peer_received_bytes.with_label_values(&[&id]);
        m.peer_sent_failures.with_label_values(&[&id]);
    }
}

/// A peer's series of a per-peer counter (label: the member ID in hex, as etcd's).
pub fn peer_counter(
    pick: impl FnOnce(&Metrics) -> &IntCounterVec,
    peer: u64,
) -> Option<IntCounter> {
    get().map(|m| pick(m).with_label_values(&[&format!("{peer:x}")]))
}

pub fn inc_peer(pick: impl FnOnce(&Metrics) -> &IntCounterVec, peer: u64, by: u64) {
    if let Some(c) = peer_counter(pick, peer) {
        c.inc_by(by);
    }
}

pub fn inc(pick: impl FnOnce(&Metrics) -> &IntCounter) {
    if let Some(m) = get() {
        pick(m).inc();
    }
}

/// The registered metrics in Prometheus' text format (empty before `init`).
pub fn registered_text() -> String {
    let Some(m) = get() else {
        return String::new();
    };
    let mut buf = Vec::new();
    if TextEncoder::new()
        .encode(&m.registry.gather(), &mut buf)
        .is_err()
    {
        return String::new();
    }
    String::from_utf8_lossy(&buf).into_owned()
}
