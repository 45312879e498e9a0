//! What the Kubernetes load is (its flags), what it runs against, and what it measured.

use std::time::Duration;

/// The load, each figure a flag of `oxcd-bench k8s` and `oxcd-bench k8s-compare`.
#[derive(Clone, Debug, clap::Args)]
pub struct Spec {
    /// Writes in the write phase: pod creates, updates and deletes, node status updates and
    /// leased event creates, each a conditional txn as kube-apiserver sends it.
    #[arg(long, default_value_t = 20_000)]
    pub writes: usize,
    /// Concurrent writers (kube-apiserver's storage requests in flight).
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// gRPC connections the writers share, spread over the endpoints.
    #[arg(long, default_value_t = 8)]
    pub conns: usize,
    /// Node objects every writer may update (their conflicts are retried from Else-Get).
    #[arg(long, default_value_t = 100)]
    pub nodes: usize,
    #[arg(long, default_value_t = 20)]
    pub namespaces: usize,
    /// Smallest object, bytes.
    #[arg(long, default_value_t = 1024)]
    pub min_object: usize,
    /// Largest object, bytes (sizes are uniform between the two).
    #[arg(long, default_value_t = 10 * 1024)]
    pub max_object: usize,
    /// Events attached to one lease (TTL 3660 s) before a new one is granted.
    #[arg(long, default_value_t = 1000)]
    pub keys_per_lease: usize,
    /// Object counts the paginated list is measured at, comma separated, ascending
    /// (the full sizes: 10000,100000).
    #[arg(long, default_value = "10000", value_delimiter = ',')]
    pub list_objects: Vec<usize>,
    /// Objects a list page holds (kube-apiserver's default limit).
    #[arg(long, default_value_t = 500)]
    pub page: i64,
    /// Where the resources live (kube-apiserver's --etcd-prefix); the load expects
    /// nothing under it yet.
    #[arg(long, default_value = "/registry/")]
    pub prefix: String,
    /// Full paginated lists at each object count.
    #[arg(long, default_value_t = 3)]
    pub list_passes: usize,
}

/// What the load runs against: endpoints, and the server processes whose CPU and memory
/// are read from /proc (none: those figures are not reported).
pub struct Target {
    pub endpoints: Vec<String>,
    pub pids: Vec<u32>,
}

pub struct WriteFigures {
    pub writes: usize,
    pub errors: usize,
    /// Txns that failed their compare and were retried from the Else-Get result.
    pub conflicts: usize,
    pub elapsed: Duration,
    /// Sorted, one per write (its retries included).
    pub latencies: Vec<Duration>,
    /// Server CPU seconds (all members) over the write phase.
    pub cpu_seconds: Option<f64>,
    /// Write ack to watch event, sorted; only writes acked by a member other than the
    /// watcher's when there are several.
    pub lags: Vec<Duration>,
    pub lag_remote: bool,
    /// Acked writes whose event the watcher never saw.
    pub lag_missing: usize,
}

pub struct ListFigures {
    pub objects: usize,
    pub pages: usize,
    pub elapsed: Duration,
    /// Sorted page latencies.
    pub page_latencies: Vec<Duration>,
    /// Server CPU seconds (all members) per full paginated list.
    pub cpu_per_list: Option<f64>,
    /// The largest rise of one member's resident memory during the lists, MiB.
    pub rss_delta_mib: Option<f64>,
    /// Sorted count-only range latencies over the whole resource.
    pub count_latencies: Vec<Duration>,
}

pub struct Figures {
    pub writes: WriteFigures,
    pub lists: Vec<ListFigures>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p / 100.0).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

impl WriteFigures {
    pub fn per_second(&self) -> f64 {
        self.writes as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn p(&self, p: f64) -> f64 {
        ms(percentile(&self.latencies, p))
    }

    pub fn lag_p(&self, p: f64) -> f64 {
        ms(percentile(&self.lags, p))
    }

    /// Server CPU microseconds per write.
    pub fn cpu_per_write_us(&self) -> Option<f64> {
        self.cpu_seconds
            .map(|s| s * 1e6 / self.writes.max(1) as f64)
    }
}

impl ListFigures {
    pub fn pages_per_second(&self) -> f64 {
        self.pages as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn or_na(v: Option<f64>, unit: &str) -> String {
    v.map(|v| format!("{v:.1} {unit}"))
        .unwrap_or_else(|| "n/a (no --pids)".into())
}

impl Figures {
    /// One product's figures, one a line.
    pub fn render(&self) -> String {
        let w = &self.writes;
        let mut out = format!(
            "writes: {} in {:.2} s = {:.1}/s ({} errors, {} conflicts retried)\n\
             write latency: p50 {:.2} ms, p99 {:.2} ms\n\
             watch lag ({}): p50 {:.2} ms, p99 {:.2} ms over {} events ({} missing)\n\
             server CPU per write: {}\n",
            w.writes,
            w.elapsed.as_secs_f64(),
            w.per_second(),
            w.errors,
            w.conflicts,
            w.p(50.0),
            w.p(99.0),
            lag_where(w.lag_remote),
            w.lag_p(50.0),
            w.lag_p(99.0),
            w.lags.len(),
            w.lag_missing,
            or_na(w.cpu_per_write_us(), "CPU-us"),
        );
        for l in &self.lists {
            out += &format!(
                "list {} objects: {:.1} pages/s, page p99 {:.1} ms, count-only p50 {:.2} ms, \
                 server CPU {} per list, peak RSS delta {}\n",
                l.objects,
                l.pages_per_second(),
                ms(percentile(&l.page_latencies, 99.0)),
                ms(percentile(&l.count_latencies, 50.0)),
                or_na(l.cpu_per_list.map(|s| s * 1000.0), "ms"),
                or_na(l.rss_delta_mib, "MiB"),
            );
        }
        out
    }
}

fn lag_where(remote: bool) -> &'static str {
    if remote {
        "watcher on another member than the write's"
    } else {
        "watcher on the write's member"
    }
}

/// The comparison rows (see `table`), oxcd first.
pub fn rows(oxcd: &Figures, etcd: &Figures) -> Vec<crate::table::Row> {
    use crate::table::Row;
    let row = |name: String, unit: &'static str, o: f64, e: f64, higher: bool| Row {
        name,
        unit,
        oxcd: o,
        etcd: e,
        higher_is_better: higher,
    };
    let (a, b) = (&oxcd.writes, &etcd.writes);
    let mut rows = vec![
        row(
            "k8s writes".into(),
            "writes/s",
            a.per_second(),
            b.per_second(),
            true,
        ),
        row("k8s write p50".into(), "ms", a.p(50.0), b.p(50.0), false),
        row("k8s write p99".into(), "ms", a.p(99.0), b.p(99.0), false),
        row(
            format!(
                "k8s watch lag p99 ({})",
                if a.lag_remote {
                    "other member"
                } else {
                    "same member"
                }
            ),
            "ms",
            a.lag_p(99.0),
            b.lag_p(99.0),
            false,
        ),
    ];
    if let (Some(x), Some(y)) = (a.cpu_per_write_us(), b.cpu_per_write_us()) {
        rows.push(row(
            "k8s server CPU per write".into(),
            "CPU-us",
            x,
            y,
            false,
        ));
    }
    for (x, y) in oxcd.lists.iter().zip(&etcd.lists) {
        let n = x.objects;
        rows.push(row(
            format!("k8s list {n}: pages"),
            "pages/s",
            x.pages_per_second(),
            y.pages_per_second(),
            true,
        ));
        rows.push(row(
            format!("k8s list {n}: count-only p50"),
            "ms",
            ms(percentile(&x.count_latencies, 50.0)),
            ms(percentile(&y.count_latencies, 50.0)),
            false,
        ));
        if let (Some(c), Some(d)) = (x.cpu_per_list, y.cpu_per_list) {
            rows.push(row(
                format!("k8s list {n}: server CPU/list"),
                "CPU-ms",
                c * 1000.0,
                d * 1000.0,
                false,
            ));
        }
        if let (Some(c), Some(d)) = (x.rss_delta_mib, y.rss_delta_mib) {
            rows.push(row(
                format!("k8s list {n}: peak RSS delta"),
                "MiB",
                c,
                d,
                false,
            ));
        }
    }
    rows
}

/// The goals, each met or missed: oxcd's write throughput ≥ 1.5× etcd's at ≤ 0.5×
/// its CPU per write and p99 ≤ 0.5× etcd's; the largest paginated list at ≤ 0.5× etcd's
/// CPU and memory.
pub fn goals(oxcd: &Figures, etcd: &Figures) -> Vec<String> {
    let mut out = Vec::new();
    let mut goal = |what: &str, ratio: Option<f64>, ok: fn(f64) -> bool| {
        let verdict = match ratio {
            Some(r) if r.is_finite() && ok(r) => format!("met ({r:.2})"),
            Some(r) => format!("missed ({r:.2})"),
            None => "not measured".into(),
        };
        out.push(format!("goal {what}: {verdict}"));
    };
    let (a, b) = (&oxcd.writes, &etcd.writes);
    goal(
        "writes/s >= 1.5x etcd",
        Some(a.per_second() / b.per_second()),
        |r| r >= 1.5,
    );
    goal(
        "CPU per write <= 0.5x etcd",
        a.cpu_per_write_us()
            .zip(b.cpu_per_write_us())
            .map(|(x, y)| x / y),
        |r| r <= 0.5,
    );
    goal("write p99 <= 0.5x etcd", Some(a.p(99.0) / b.p(99.0)), |r| {
        r <= 0.5
    });
    if let (Some(x), Some(y)) = (oxcd.lists.last(), etcd.lists.last()) {
        let n = x.objects;
        goal(
            &format!("list {n} CPU <= 0.5x etcd"),
            x.cpu_per_list.zip(y.cpu_per_list).map(|(c, d)| c / d),
            |r| r <= 0.5,
        );
        goal(
            &format!("list {n} memory <= 0.5x etcd"),
            x.rss_delta_mib.zip(y.rss_delta_mib).map(|(c, d)| c / d),
            |r| r <= 0.5,
        );
    }
    out
}
