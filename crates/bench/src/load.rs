//! Running one load: clients share connections and a request budget; every latency is kept.

use oxcd_api::etcdserverpb::kv_client::KvClient;
use oxcd_api::etcdserverpb::{PutRequest, RangeRequest};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};

#[derive(Clone)]
pub enum Op {
    Put {
        key_size: usize,
        val_size: usize,
        key_space_size: usize,
        prefix: String,
    },
    Range {
        key: Vec<u8>,
        end: Vec<u8>,
        serializable: bool,
    },
    /// Kubernetes' update: each client rewrites its own key `<prefix><client>` with a txn
    /// that compares the key's mod revision to the one it last wrote (Else-Get).
    Txn { val_size: usize, prefix: String },
}

#[derive(Clone)]
pub struct LoadSpec {
    /// One endpoint, or several separated by commas.
    pub endpoint: String,
    pub conns: usize,
    pub clients: usize,
    pub total: usize,
    pub op: Op,
}

pub struct Report {
    pub total: usize,
    pub errors: usize,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
}

impl Report {
    pub fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() as f64 * p / 100.0).ceil() as usize)
            .clamp(1, self.latencies.len())
            - 1;
        self.latencies[i]
    }

    pub fn render(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let avg = if self.latencies.is_empty() {
            0.0
        } else {
            self.latencies.iter().map(|d| ms(*d)).sum::<f64>() / self.latencies.len() as f64
        };
        format!(
            "Summary:\n  Total:\t{:.4} secs.\n  Requests:\t{} ({} errors)\n  Average:\t{avg:.4} ms\n  p50:\t{:.4} ms\n  p90:\t{:.4} ms\n  p99:\t{:.4} ms\n  Slowest:\t{:.4} ms\n  Requests/sec:\t{:.1}",
            self.elapsed.as_secs_f64(),
            self.total,
            self.errors,
            ms(self.percentile(50.0)),
            ms(self.percentile(90.0)),
            ms(self.percentile(99.0)),
            ms(self.latencies.last().copied().unwrap_or_default()),
            self.throughput()
        )
    }
}

/// What https endpoints are dialed with (set once: by the `tls` load, or from `put`'s,
/// `range`'s and `watch-delivery`'s `--cacert`, `--cert` and `--key`).
pub static CLIENT_TLS: std::sync::OnceLock<oxcd_client::ClientTls> = std::sync::OnceLock::new();

pub async fn connect(endpoint: &str) -> Result<Channel, String> {
    let uri = if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    };
    if uri.starts_with("https://") {
        let settings = CLIENT_TLS.get().cloned().unwrap_or_default();
        let config = oxcd_client::tls::client_config(&settings)?;
        return oxcd_client::dial::channel(&uri, Some(config), None, |e| {
            e.connect_timeout(Duration::from_secs(5))
        })
        .await
        .map_err(|e| format!("cannot connect to {endpoint}: {e}"));
    }
    Endpoint::from_shared(uri)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {endpoint}: {e}"))
}

fn key_for(n: usize, key_size: usize, space: usize, prefix: &str) -> Vec<u8> {
    let n = if space > 0 { n % space } else { n };
    let mut k = format!(
        "{prefix}{n:0width$}",
        width = key_size.saturating_sub(prefix.len()).max(1)
    )
    .into_bytes();
    k.truncate(key_size.max(prefix.len() + 1));
    k
}

pub async fn run(spec: &LoadSpec) -> Result<Report, String> {
    // Connections spread over the endpoints given (comma separated), as etcd's benchmark.
    let endpoints: Vec<&str> = spec.endpoint.split(',').collect();
    let mut channels = Vec::new();
    for i in 0..spec.conns.max(1).max(endpoints.len()) {
        channels.push(connect(endpoints[i % endpoints.len()]).await?);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..spec.clients.max(1) {
        let mut kv = KvClient::new(channels[c % channels.len()].clone());
        let next = next.clone();
        let errors = errors.clone();
        let op = spec.op.clone();
        let total = spec.total;
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let value = match &op {
                Op::Put { val_size, .. } | Op::Txn { val_size, .. } => vec![b'v'; *val_size],
                Op::Range { .. } => vec![],
            };
            // The mod revision this client's txn key was last written at (0: not yet).
            let mut last_write = 0;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    break;
                }
                let t = Instant::now();
                let ok = match &op {
                    Op::Put {
                        key_size,
                        key_space_size,
                        prefix,
                        ..
                    } => {
                        let req = PutRequest {
                            key: key_for(n, *key_size, *key_space_size, prefix),
                            value: value.clone(),
                            ..Default::default()
                        };
                        kv.put(req).await.is_ok()
                    }
                    Op::Range {
                        key,
                        end,
                        serializable,
                    } => {
                        let req = RangeRequest {
                            key: key.clone(),
                            range_end: end.clone(),
                            serializable: *serializable,
                            ..Default::default()
                        };
                        kv.range(req).await.is_ok()
                    }
                    Op::Txn { prefix, .. } => {
                        let key = format!("{prefix}{c}").into_bytes();
                        let put = Some(value.clone());
                        match crate::k8s::storage::update(&mut kv, &key, last_write, put).await {
                            Ok(commit) => {
                                last_write = commit.revision;
                                true
                            }
                            Err(_) => false,
                        }
                    }
                };
                if ok {
                    lat.push(t.elapsed());
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            lat
        }));
    }
    let mut latencies = Vec::with_capacity(spec.total);
    for t in tasks {
        latencies.extend(t.await.map_err(|e| e.to_string())?);
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    Ok(Report {
        total: spec.total,
        errors: errors.load(Ordering::Relaxed),
        elapsed,
        latencies,
    })
}
