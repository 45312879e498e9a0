//! The load itself: the keyspace, then every misbehaving client at once, then what held.

use super::{connect, hashes, Spec, PASSWORD, USER};
use crate::servers::{status_kb, Cluster};
use oxcd_api::etcdserverpb::watch_request::RequestUnion;
use oxcd_api::etcdserverpb::{
    request_op, AuthenticateRequest, CompactionRequest, DefragmentRequest, LeaseGrantRequest,
    PutRequest, RangeRequest, RequestOp, StatusRequest, TxnRequest, WatchCreateRequest,
    WatchRequest,
};
use oxcd_client::Client;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// A RangeResponse read for its header and count only: the bench does not keep the values
/// a full-keyspace range brings (field 2 is skipped while decoding).
#[derive(Clone, PartialEq, prost::Message)]
struct RangeCount {
    #[prost(int64, tag = "4")]
    count: i64,
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

fn prefix_end(prefix: &str) -> Vec<u8> {
    oxcd_api::prefix_end(prefix.as_bytes())
}

/// Puts `spec.keys` keys under /load/ in txns of 100 puts from 16 clients.
pub async fn load_keyspace(endpoints: &[String], spec: &Spec) -> Result<(), String> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for c in 0..16 {
        let client =
            oxcd_client::connect_one(&endpoints[c % endpoints.len()], &super::dialer()).await?;
        let next = next.clone();
        let (keys, size) = (spec.keys as u64, spec.value_size);
        tasks.spawn(async move {
            let mut kv = client.kv();
            loop {
                let from = next.fetch_add(100, Ordering::Relaxed);
                if from >= keys {
                    return Ok::<(), String>(());
                }
                let success = (from..(from + 100).min(keys))
                    .map(|i| RequestOp {
                        request: Some(request_op::Request::RequestPut(PutRequest {
                            key: format!("/load/{i:09}").into_bytes(),
                            value: vec![b'v'; size],
                            ..Default::default()
                        })),
                    })
                    .collect();
                kv.txn(TxnRequest {
                    success,
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("loading: {}", e.message()))?;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| e.to_string())??;
    }
    Ok(())
}

/// What one product did under the load.
#[derive(Debug, Default)]
pub struct Outcome {
    pub product: String,
    pub victim_ops: usize,
    pub victim_errors: usize,
    pub victim_error_sample: String,
    pub victim_p50_ms: f64,
    pub victim_p99_ms: f64,
    pub victim_max_ms: f64,
    /// Victims' requests over a second, and errors, by what the operator was doing.
    pub slow_by_phase: String,
    pub elections: u64,
    pub peak_rss_mb: Vec<f64>,
    pub ranges: u64,
    pub range_errors: u64,
    pub counts: u64,
    pub big_puts: u64,
    pub logins: u64,
    pub resumers: usize,
    pub resumers_caught_up: usize,
    pub resumers_disagree: usize,
    pub order_violations: u64,
    pub lease_keys_left: i64,
    pub leases_gone_after_s: f64,
    pub compaction_ms: f64,
    pub defrag_ms: f64,
    pub hashkv_agree: bool,
    /// What the product failed to do (the operator's compaction or defrag).
    pub failures: Vec<String>,
}

impl Outcome {
    pub fn render(&self) -> String {
        format!(
            "{}:\n  victims: {} requests, {} errors {}, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms\n  {}\n  elections during the run: {}\n  peak RSS per member (MiB): {:?}\n  full ranges: {} ({} errors), keys-only/count-only: {}\n  1 MiB puts beside stalled watchers: {}\n  wrong-password logins: {}\n  resuming watchers caught up: {}/{} ({} disagree, {} order violations)\n  lease keys left: {} (gone {:.1} s after expiry)\n  compaction: {:.0} ms, follower defrag: {:.0} ms\n  HashKV agrees: {}\n  failed: {:?}",
            self.product,
            self.victim_ops,
            self.victim_errors,
            self.victim_error_sample,
            self.victim_p50_ms,
            self.victim_p99_ms,
            self.victim_max_ms,
            self.slow_by_phase,
            self.elections,
            self.peak_rss_mb,
            self.ranges,
            self.range_errors,
            self.counts,
            self.big_puts,
            self.logins,
            self.resumers_caught_up,
            self.resumers,
            self.resumers_disagree,
            self.order_violations,
            self.lease_keys_left,
            self.leases_gone_after_s,
            self.compaction_ms,
            self.defrag_ms,
            self.hashkv_agree,
            self.failures,
        )
    }

    /// One line a test can parse: key=value pairs.
    pub fn result_line(&self) -> String {
        let peak = self.peak_rss_mb.iter().copied().fold(0.0, f64::max);
        format!(
            "RESULT product={} victim_ops={} victim_errors={} victim_p99_ms={:.1} elections={} peak_rss_mb={:.0} ranges={} range_errors={} counts={} big_puts={} logins={} resumers={} resumers_caught_up={} resumers_disagree={} order_violations={} lease_keys_left={} hashkv_agree={} failures={}",
            self.product,
            self.victim_ops,
            self.victim_errors,
            self.victim_p99_ms,
            self.elections,
            peak,
            self.ranges,
            self.range_errors,
            self.counts,
            self.big_puts,
            self.logins,
            self.resumers,
            self.resumers_caught_up,
            self.resumers_disagree,
            self.order_violations,
            self.lease_keys_left,
            self.hashkv_agree,
            self.failures.len(),
        )
    }
}

pub fn ratios(a: &Outcome, b: &Outcome) -> String {
    let peak = |o: &Outcome| o.peak_rss_mb.iter().copied().fold(0.0, f64::max);
    let ratio = |x: f64, y: f64| if y > 0.0 { x / y } else { f64::NAN };
    format!(
        "{a} / {b}:\n  victims' p99: {:.1} / {:.1} ms = {:.2}\n  victims' requests: {} / {} = {:.2}\n  peak RSS (largest member): {:.0} / {:.0} MiB = {:.2}\n  elections: {} / {}\n  1 MiB puts: {} / {} = {:.2}\n  full ranges: {} / {}\n  compaction: {:.0} / {:.0} ms",
        a.victim_p99_ms,
        b.victim_p99_ms,
        ratio(a.victim_p99_ms, b.victim_p99_ms),
        a.victim_ops,
        b.victim_ops,
        ratio(a.victim_ops as f64, b.victim_ops as f64),
        peak(a),
        peak(b),
        ratio(peak(a), peak(b)),
        a.elections,
        b.elections,
        a.big_puts,
        b.big_puts,
        ratio(a.big_puts as f64, b.big_puts as f64),
        a.ranges,
        b.ranges,
        a.compaction_ms,
        b.compaction_ms,
        a = a.product,
        b = b.product,
    )
}

async fn timed<T>(
    f: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<T, String> {
    match tokio::time::timeout(REQUEST_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.message().to_string()),
        Err(_) => Err("client timeout (10 s)".into()),
    }
}

async fn current_revision(client: &Client) -> Result<i64, String> {
    let r = timed(client.kv().range(RangeRequest {
        key: b"/victim/".to_vec(),
        count_only: true,
        ..Default::default()
    }))
    .await?;
    Ok(r.into_inner().header.map_or(0, |h| h.revision))
}

async fn put(client: &Client, key: String, value: Vec<u8>, lease: i64) -> Result<i64, String> {
    let r = timed(client.kv().put(PutRequest {
        key: key.into_bytes(),
        value,
        lease,
        ..Default::default()
    }))
    .await?;
    Ok(r.into_inner().header.map_or(0, |h| h.revision))
}

/// Tries `f` until it succeeds or a minute has passed: an overloaded product may time out.
async fn retry<T, F: std::future::Future<Output = Result<T, String>>>(
    mut f: impl FnMut() -> F,
) -> Result<T, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// One resuming watcher's view: the last revision it got, how many events, order breaks.
#[derive(Default)]
struct Seen {
    last: AtomicU64,
    events: AtomicU64,
    violations: AtomicU64,
}

/// Every client at once for `spec.seconds`, then the checks.
pub async fn mixed(cluster: &Cluster, spec: &Spec) -> Result<Outcome, String> {
    let endpoints = cluster.endpoint_list();
    let members = endpoints.len();
    let ep = |i: usize| endpoints[i % members].clone();
    let admin = connect(&ep(0)).await?;

    // History for the resuming watchers: 1,000 revisions under /victim/.
    for i in 0..1000 {
        put(&admin, format!("/victim/warm/{i}"), b"w".to_vec(), 0)
            .await
            .map_err(|e| format!("warm-up put: {e}"))?;
    }
    let start_rev = current_revision(&admin)
        .await
        .map_err(|e| format!("start revision: {e}"))?;

    // Leases that all expire a third of the way in, one key each.
    let lease_ttl = (spec.seconds / 3).max(5) as i64;
    let mut grants = JoinSet::new();
    for chunk in 0..16usize {
        let client = connect(&ep(chunk)).await?;
        let n = spec.leases;
        grants.spawn(async move {
            let mut lc =
                oxcd_api::etcdserverpb::lease_client::LeaseClient::new(client.channel.clone());
            for i in (chunk..n).step_by(16) {
                let id = timed(lc.lease_grant(LeaseGrantRequest {
                    ttl: lease_ttl,
                    id: 0,
                }))
                .await
                .map_err(|e| format!("lease grant: {e}"))?
                .into_inner()
                .id;
                put(&client, format!("/lease/{i}"), b"l".to_vec(), id)
                    .await
                    .map_err(|e| format!("lease key put: {e}"))?;
            }
            Ok::<(), String>(())
        });
    }
    while let Some(r) = grants.join_next().await {
        r.map_err(|e| e.to_string())??;
    }
    let leases_expire = Instant::now() + Duration::from_secs(lease_ttl as u64);
    // When the last lease key went, polled from here on.
    let leases_gone = Arc::new(Mutex::new(None::<Instant>));
    {
        let client = connect(&ep(2)).await?;
        let gone = leases_gone.clone();
        tokio::spawn(async move {
            loop {
                let left = timed(client.kv().range(RangeRequest {
                    key: b"/lease/".to_vec(),
                    range_end: prefix_end("/lease/"),
                    count_only: true,
                    ..Default::default()
                }))
                .await
                .map(|r| r.into_inner().count);
                if left == Ok(0) {
                    if let Ok(mut g) = gone.lock() {
                        *g = Some(Instant::now());
                    }
                    return;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
    }

    let terms_before = super::terms(&endpoints).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks: JoinSet<Result<(), String>> = JoinSet::new();
    // Every watcher is open before the load starts. Watchers that never read, ten to a
    // connection of their own (a writer of big values to what they watch starts below).
    let mut stalled = Vec::new();
    for c in 0..spec.stalled_watchers.div_ceil(10) {
        let client = connect(&ep(c)).await?;
        for _ in 0..10.min(spec.stalled_watchers - c * 10) {
            stalled.push(
                open_watch(&client, "/big/", 0)
                    .await
                    .map_err(|e| format!("stalled watch: {e}"))?,
            );
        }
    }
    // Watchers resuming from 1,000 revisions back, 50 to a connection.
    let mut seen = Vec::new();
    let mut resumer_clients = Vec::new();
    for c in 0..spec.resumers.div_ceil(50) {
        resumer_clients.push(connect(&ep(c)).await?);
    }
    for r in 0..spec.resumers {
        let client = &resumer_clients[r / 50];
        let (keep_open, mut events) = open_watch(client, "/victim/", start_rev - 999)
            .await
            .map_err(|e| format!("resuming watch: {e}"))?;
        let s = Arc::new(Seen::default());
        seen.push(s.clone());
        tasks.spawn(async move {
            let _keep_open = keep_open;
            while let Ok(Some(resp)) = events.message().await {
                if resp.canceled {
                    break;
                }
                for e in resp.events {
                    let rev = e.kv.map_or(0, |kv| kv.mod_revision) as u64;
                    if rev <= s.last.load(Ordering::Relaxed) {
                        s.violations.fetch_add(1, Ordering::Relaxed);
                    }
                    s.last.store(rev, Ordering::Relaxed);
                    s.events.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(())
        });
    }
    let victim_lat = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let victim_errors = Arc::new(Mutex::new(Vec::<(String, Sample)>::new()));
    let run_start = Instant::now();
    for c in 0..spec.victims {
        let client = connect(&ep(c)).await?;
        let (stop, lat, errors) = (stop.clone(), victim_lat.clone(), victim_errors.clone());
        tasks.spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let res = if n.is_multiple_of(2) {
                    put(
                        &client,
                        format!("/victim/{c}"),
                        n.to_string().into_bytes(),
                        0,
                    )
                    .await
                    .map(drop)
                } else {
                    timed(client.kv().range(RangeRequest {
                        key: format!("/victim/{c}").into_bytes(),
                        ..Default::default()
                    }))
                    .await
                    .map(drop)
                };
                let sample = Sample {
                    took: t.elapsed(),
                    at: t.duration_since(run_start),
                    member: c % members,
                };
                match res {
                    Ok(()) => lat.lock().map_err(|e| e.to_string())?.push(sample),
                    Err(e) => errors.lock().map_err(|e| e.to_string())?.push((e, sample)),
                }
                n += 1;
            }
            Ok(())
        });
    }
    let ranges = Arc::new(AtomicU64::new(0));
    let range_errors = Arc::new(AtomicU64::new(0));
    for c in 0..spec.rangers {
        let client = connect(&ep(c)).await?;
        let (stop, ranges, errors) = (stop.clone(), ranges.clone(), range_errors.clone());
        tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match count_full_range(&client).await {
                    Ok(_) => ranges.fetch_add(1, Ordering::Relaxed),
                    Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
            Ok(())
        });
    }
    let counts = Arc::new(AtomicU64::new(0));
    for c in 0..spec.counters {
        let client = connect(&ep(c + 1)).await?;
        let (stop, counts) = (stop.clone(), counts.clone());
        tasks.spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let req = RangeRequest {
                    key: b"/load/".to_vec(),
                    range_end: prefix_end("/load/"),
                    keys_only: n.is_multiple_of(2),
                    count_only: !n.is_multiple_of(2),
                    ..Default::default()
                };
                if timed(client.kv().range(req)).await.is_ok() {
                    counts.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
            }
            Ok(())
        });
    }
    let big_puts = Arc::new(AtomicU64::new(0));
    {
        let client = connect(&ep(0)).await?;
        let (stop, puts, size) = (stop.clone(), big_puts.clone(), spec.big_value);
        tasks.spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if put(&client, format!("/big/{}", n % 10), vec![b'b'; size], 0)
                    .await
                    .is_ok()
                {
                    puts.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
            }
            Ok(())
        });
    }
    let logins = Arc::new(AtomicU64::new(0));
    for c in 0..spec.login_flooders {
        let client = oxcd_client::connect_one(&ep(c), &super::dialer()).await?;
        let (stop, logins) = (stop.clone(), logins.clone());
        tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let _ = timed(client.auth().authenticate(AuthenticateRequest {
                    name: USER.into(),
                    password: format!("not-{PASSWORD}"),
                }))
                .await;
                logins.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        });
    }

    // The operator's part: a compaction of most of the history at half time, then a
    // follower's defragmentation.
    let started = Instant::now();
    let run = Duration::from_secs(spec.seconds);
    tokio::time::sleep(run / 2).await;
    // What an overloaded product failed to do is recorded; the run goes on.
    let mut failures = Vec::new();
    let t = Instant::now();
    let compaction_from = run_start.elapsed();
    let compacted = async {
        let rev = current_revision(&admin).await?;
        timed(admin.kv().compact(CompactionRequest {
            revision: rev - 100,
            physical: false,
        }))
        .await
    }
    .await;
    let compaction_ms = t.elapsed().as_secs_f64() * 1000.0;
    if let Err(e) = compacted {
        failures.push(format!("compaction: {e}"));
    }
    let t = Instant::now();
    let defrag_from = run_start.elapsed();
    let mut defragmented_member = None;
    let defragmented = async {
        let follower = follower_of(&endpoints).await?;
        defragmented_member = endpoints.iter().position(|e| *e == follower);
        let defrag = connect(&follower).await?;
        match tokio::time::timeout(
            Duration::from_secs(120),
            defrag.maintenance().defragment(DefragmentRequest {}),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.message().to_string()),
            Err(_) => Err("no answer in 120 s".to_string()),
        }
    }
    .await;
    let defrag_ms = t.elapsed().as_secs_f64() * 1000.0;
    let phases = Phases {
        compaction_from,
        defrag_from,
        defrag_to: run_start.elapsed(),
        defragmented_member,
    };
    if let Err(e) = defragmented {
        failures.push(format!("follower defrag: {e}"));
    }
    if let Some(left) = run.checked_sub(started.elapsed()) {
        tokio::time::sleep(left).await;
    }
    stop.store(true, Ordering::Relaxed);
    drop(stalled);

    // What held.
    let marker = retry(|| put(&admin, "/victim/marker".into(), b"m".to_vec(), 0)).await? as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && seen.iter().any(|s| s.last.load(Ordering::Relaxed) < marker)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let caught_up = seen
        .iter()
        .filter(|s| s.last.load(Ordering::Relaxed) >= marker)
        .count();
    let most = seen
        .iter()
        .map(|s| s.events.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    let disagree = seen
        .iter()
        .filter(|s| s.events.load(Ordering::Relaxed) != most)
        .count();
    let violations = seen
        .iter()
        .map(|s| s.violations.load(Ordering::Relaxed))
        .sum();
    let lease_deadline = Instant::now().max(leases_expire) + Duration::from_secs(60);
    let gone_at = || leases_gone.lock().ok().and_then(|g| *g);
    while gone_at().is_none() && Instant::now() < lease_deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let lease_keys_left = retry(|| async {
        let r = timed(admin.kv().range(RangeRequest {
            key: b"/lease/".to_vec(),
            range_end: prefix_end("/lease/"),
            count_only: true,
            ..Default::default()
        }))
        .await?;
        Ok(r.into_inner().count)
    })
    .await?;
    let leases_gone_after_s = gone_at().map_or(f64::NAN, |at| {
        at.saturating_duration_since(leases_expire).as_secs_f64()
    });
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}

    let terms_after = super::terms(&endpoints).await;
    let max = |t: &[u64]| t.iter().copied().max().unwrap_or(0);
    let hash_rev = retry(|| current_revision(&admin)).await?;
    // Every member has applied `hash_rev` once a linearizable read through it returns.
    for e in &endpoints {
        retry(|| async { current_revision(&connect(e).await?).await }).await?;
    }
    let hashes = retry(|| hashes(&endpoints, hash_rev)).await?;
    let samples = std::mem::take(&mut *victim_lat.lock().map_err(|e| e.to_string())?);
    let errors = victim_errors.lock().map_err(|e| e.to_string())?;
    let slow_by_phase = phases.render(&samples, &errors);
    let mut lat: Vec<Duration> = samples.iter().map(|s| s.took).collect();
    lat.sort_unstable();
    let pct = |p: f64| {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[i].as_secs_f64() * 1000.0
    };
    Ok(Outcome {
        product: cluster.name.to_string(),
        victim_ops: lat.len(),
        victim_errors: errors.len(),
        victim_error_sample: errors
            .first()
            .map(|(e, _)| format!("(first: {e})"))
            .unwrap_or_default(),
        victim_p50_ms: pct(0.50),
        victim_p99_ms: pct(0.99),
        victim_max_ms: pct(1.0),
        slow_by_phase,
        elections: max(&terms_after).saturating_sub(max(&terms_before)),
        peak_rss_mb: cluster
            .members
            .iter()
            .map(|m| status_kb(m.child.id(), "VmHWM:") as f64 / 1024.0)
            .collect(),
        ranges: ranges.load(Ordering::Relaxed),
        range_errors: range_errors.load(Ordering::Relaxed),
        counts: counts.load(Ordering::Relaxed),
        big_puts: big_puts.load(Ordering::Relaxed),
        logins: logins.load(Ordering::Relaxed),
        resumers: seen.len(),
        resumers_caught_up: caught_up,
        resumers_disagree: disagree,
        order_violations: violations,
        lease_keys_left,
        leases_gone_after_s,
        compaction_ms,
        defrag_ms,
        hashkv_agree: hashes.windows(2).all(|w| w[0] == w[1]),
        failures,
    })
}

/// A full-keyspace range whose values are skipped as the response is decoded.
async fn count_full_range(client: &Client) -> Result<i64, String> {
    let mut grpc =
        tonic::client::Grpc::new(client.channel.clone()).max_decoding_message_size(usize::MAX);
    grpc.ready().await.map_err(|e| e.to_string())?;
    let codec = tonic_prost::ProstCodec::<RangeRequest, RangeCount>::default();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/etcdserverpb.KV/Range");
    let req = RangeRequest {
        key: b"/load/".to_vec(),
        range_end: prefix_end("/load/"),
        ..Default::default()
    };
    let resp = tokio::time::timeout(
        Duration::from_secs(120),
        grpc.unary(tonic::Request::new(req), path, codec),
    )
    .await
    .map_err(|_| "timeout".to_string())?
    .map_err(|e| e.message().to_string())?;
    Ok(resp.into_inner().count)
}

type WatchStream = tonic::Streaming<oxcd_api::etcdserverpb::WatchResponse>;

/// A watch on `prefix` from `start` (0: now). The sender keeps the stream open.
async fn open_watch(
    client: &Client,
    prefix: &str,
    start: i64,
) -> Result<(tokio::sync::mpsc::Sender<WatchRequest>, WatchStream), String> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: prefix.as_bytes().to_vec(),
            range_end: prefix_end(prefix),
            start_revision: start,
            ..Default::default()
        })),
    })
    .await
    .map_err(|e| e.to_string())?;
    let stream = timed(
        client
            .watch()
            .watch(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
    .await?
    .into_inner();
    Ok((tx, stream))
}

/// A member that is not the leader.
/// One victim's request: how long it took, when it started, which member served it.
#[derive(Debug, Clone, Copy)]
struct Sample {
    took: Duration,
    at: Duration,
    member: usize,
}

/// When the operator compacted and defragmented, relative to the start of the load.
struct Phases {
    compaction_from: Duration,
    defrag_from: Duration,
    defrag_to: Duration,
    defragmented_member: Option<usize>,
}

impl Phases {
    fn phase(&self, s: &Sample) -> usize {
        if s.at < self.compaction_from {
            0
        } else if s.at < self.defrag_from {
            1
        } else if s.at < self.defrag_to {
            if Some(s.member) == self.defragmented_member {
                3
            } else {
                2
            }
        } else {
            4
        }
    }

    /// Victims' requests over a second and errors, by phase: where the tail comes from.
    fn render(&self, samples: &[Sample], errors: &[(String, Sample)]) -> String {
        let mut slow = [0usize; 5];
        let mut failed = [0usize; 5];
        for s in samples.iter().filter(|s| s.took > Duration::from_secs(1)) {
            slow[self.phase(s)] += 1;
        }
        for (_, s) in errors {
            failed[self.phase(s)] += 1;
        }
        let names = [
            "before compaction",
            "compaction",
            "defrag, other members",
            "defrag, defragmented member",
            "after",
        ];
        let parts: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{n} {}/{}", slow[i], failed[i]))
            .collect();
        format!(
            "victims over 1 s / errors by phase (compaction at {:.1} s, defrag {:.1}-{:.1} s): {}",
            self.compaction_from.as_secs_f64(),
            self.defrag_from.as_secs_f64(),
            self.defrag_to.as_secs_f64(),
            parts.join(", ")
        )
    }
}

async fn follower_of(endpoints: &[String]) -> Result<String, String> {
    for ep in endpoints {
        let st = timed(connect(ep).await?.maintenance().status(StatusRequest {}))
            .await?
            .into_inner();
        if st.header.map(|h| h.member_id) != Some(st.leader) {
            return Ok(ep.clone());
        }
    }
    Err("no follower found".into())
}
