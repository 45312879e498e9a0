//! The write phase: writers send kube-apiserver's conditional txns (pods created, updated
//! and deleted, node status updated by everyone at once, events created under shared
//! leases) while a reflector that listed first watches every resource from the list's
//! revision + 1 with prev_kv; the figures are throughput, latency, the lag from each write's
//! ack to its watch event, and the servers' CPU per write.

use super::spec::{Spec, Target, WriteFigures};
use super::storage::{self, Commit, Rng};
use crate::{load, procfs};
use oxcd_api::etcdserverpb::kv_client::KvClient;
use oxcd_api::etcdserverpb::lease_client::LeaseClient;
use oxcd_api::etcdserverpb::watch_request::RequestUnion;
use oxcd_api::etcdserverpb::{LeaseGrantRequest, WatchCreateRequest, WatchRequest};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tonic::transport::Channel;

/// The resources the writers touch (under the prefix), each watched by the reflector.
const PODS: &str = "pods/";
const NODES: &str = "minions/";
const EVENTS: &str = "events/";

/// Lease TTL kube-apiserver gives events (--event-ttl 1h, plus its minute of slack).
const EVENT_LEASE_TTL: i64 = 3660;

/// A write's ack: its revision, when it arrived and which member answered.
struct Ack {
    revision: i64,
    at: Instant,
    member: usize,
}

/// What the writers share: the request budget, the node revisions every writer's cache
/// holds (possibly stale, as kube-apiserver's watch cache is), the current event lease.
struct Shared {
    spec: Spec,
    next: AtomicUsize,
    errors: AtomicUsize,
    conflicts: AtomicUsize,
    nodes: Mutex<Vec<i64>>,
    lease: tokio::sync::Mutex<(i64, usize)>,
    first_error: Mutex<Option<String>>,
}

fn node_key(spec: &Spec, i: usize) -> Vec<u8> {
    format!("{}{NODES}node-{i:05}", spec.prefix).into_bytes()
}

/// The event lease to attach: the current one until it holds `keys_per_lease` keys.
async fn event_lease(shared: &Shared, leases: &mut LeaseClient<Channel>) -> Result<i64, String> {
    let mut lease = shared.lease.lock().await;
    if lease.0 == 0 || lease.1 >= shared.spec.keys_per_lease {
        let grant = tokio::time::timeout(
            storage::REQUEST_TIMEOUT,
            leases.lease_grant(LeaseGrantRequest {
                ttl: EVENT_LEASE_TTL,
                id: 0,
            }),
        )
        .await
        .map_err(|_| "lease grant timed out".to_string())?
        .map_err(|e| format!("lease grant: {}", e.message()))?;
        *lease = (grant.into_inner().id, 0);
    }
    lease.1 += 1;
    Ok(lease.0)
}

/// One writer: its own pods (created, updated, deleted), shared nodes, events.
async fn writer(
    id: usize,
    member: usize,
    channel: Channel,
    shared: Arc<Shared>,
) -> (Vec<Duration>, Vec<Ack>) {
    let spec = &shared.spec;
    let mut kv = KvClient::new(channel.clone());
    let mut leases = LeaseClient::new(channel);
    let mut rng = Rng::new(1000 + id as u64);
    let mut pods: VecDeque<(Vec<u8>, i64)> = VecDeque::new();
    let (mut latencies, mut acks) = (Vec::new(), Vec::new());
    let mut seq = 0usize;
    loop {
        if shared.next.fetch_add(1, Ordering::Relaxed) >= spec.writes {
            break;
        }
        let size = rng.between(spec.min_object, spec.max_object);
        let roll = rng.next() % 100;
        seq += 1;
        let ns = rng.between(0, spec.namespaces.max(1) - 1);
        let t = Instant::now();
        let result: Result<Commit, String> = if roll < 15 || (roll < 60 && pods.is_empty()) {
            let key = format!("{}{PODS}ns-{ns:03}/pod-{id:03}-{seq:07}", spec.prefix).into_bytes();
            let value = storage::object(&mut rng, &key, size);
            let r = storage::create(&mut kv, &key, value, 0).await;
            if let Ok(c) = &r {
                pods.push_back((key, c.revision));
            }
            r
        } else if roll < 50 {
            let i = rng.between(0, pods.len() - 1);
            let key = pods[i].0.clone();
            let value = storage::object(&mut rng, &key, size);
            let r = storage::update(&mut kv, &key, pods[i].1, Some(value)).await;
            if let Ok(c) = &r {
                pods[i].1 = c.revision;
            }
            r
        } else if roll < 60 {
            match pods.pop_front() {
                Some((key, rev)) => storage::update(&mut kv, &key, rev, None).await,
                None => Err("no pod to delete".into()),
            }
        } else if roll < 75 && spec.nodes > 0 {
            let i = rng.between(0, spec.nodes - 1);
            let key = node_key(spec, i);
            let cached = shared.nodes.lock().map(|n| n[i]).unwrap_or(0);
            let value = storage::object(&mut rng, &key, size);
            let r = storage::update(&mut kv, &key, cached, Some(value)).await;
            if let (Ok(c), Ok(mut nodes)) = (&r, shared.nodes.lock()) {
                nodes[i] = nodes[i].max(c.revision);
            }
            r
        } else {
            let key = format!(
                "{}{EVENTS}ns-{ns:03}/pod-{id:03}-{seq:07}.{:016x}",
                spec.prefix,
                rng.next()
            )
            .into_bytes();
            let value = storage::object(&mut rng, &key, size);
            match event_lease(&shared, &mut leases).await {
                Ok(lease) => storage::create(&mut kv, &key, value, lease).await,
                Err(e) => Err(e),
            }
        };
        match result {
            Ok(c) => {
                latencies.push(t.elapsed());
                shared.conflicts.fetch_add(c.conflicts, Ordering::Relaxed);
                acks.push(Ack {
                    revision: c.revision,
                    at: c.at,
                    member,
                });
            }
            Err(e) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = shared.first_error.lock() {
                    first.get_or_insert(e);
                }
            }
        }
    }
    (latencies, acks)
}

type WatchStream = tonic::Streaming<oxcd_api::etcdserverpb::WatchResponse>;

/// The reflector's watch: every resource from `start`, with prev_kv and progress notifies,
/// on one stream. The sender keeps the stream open.
async fn open_watch(
    channel: Channel,
    prefix: &str,
    start: i64,
) -> Result<(mpsc::Sender<WatchRequest>, WatchStream), String> {
    let prefixes = [PODS, NODES, EVENTS].map(|r| format!("{prefix}{r}"));
    let (tx, rx) = mpsc::channel(prefixes.len() + 1);
    // Go gRPC sends a stream's headers with its first answer: ask before awaiting.
    for p in &prefixes {
        let req = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: p.as_bytes().to_vec(),
                range_end: oxcd_api::prefix_end(p.as_bytes()),
                start_revision: start,
                prev_kv: true,
                progress_notify: true,
                ..Default::default()
            })),
        };
        tx.send(req).await.map_err(|e| e.to_string())?;
    }
    let mut stream = oxcd_api::etcdserverpb::watch_client::WatchClient::new(channel)
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|e| format!("watch: {}", e.message()))?
        .into_inner();
    let mut created = 0;
    while created < prefixes.len() {
        let r = stream
            .message()
            .await
            .map_err(|e| format!("watch: {}", e.message()))?
            .ok_or("watch stream ended")?;
        created += usize::from(r.created);
    }
    Ok((tx, stream))
}

/// Reads events until it has seen revision `until` (set once the writers are done) or is
/// told to stop; returns when each revision first arrived.
async fn read_events(
    tx: mpsc::Sender<WatchRequest>,
    mut stream: WatchStream,
    until: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
) -> Result<Vec<(i64, Instant)>, String> {
    let _open = tx;
    let mut seen = Vec::new();
    let mut highest = 0;
    loop {
        match tokio::time::timeout(Duration::from_millis(100), stream.message()).await {
            Ok(Ok(Some(r))) => {
                let at = Instant::now();
                if r.canceled {
                    return Err(format!("watch canceled: {}", r.cancel_reason));
                }
                for ev in r.events {
                    if let Some(kv) = ev.kv {
                        seen.push((kv.mod_revision, at));
                        highest = highest.max(kv.mod_revision);
                    }
                }
            }
            Ok(Ok(None)) => return Err("watch stream ended".into()),
            Ok(Err(e)) => return Err(format!("watch: {}", e.message())),
            Err(_) => {}
        }
        if highest >= until.load(Ordering::Relaxed) || stop.load(Ordering::Relaxed) {
            return Ok(seen);
        }
    }
}

/// Creates the nodes every writer updates; returns their revisions.
async fn create_nodes(channel: &Channel, spec: &Spec) -> Result<Vec<i64>, String> {
    let mut kv = KvClient::new(channel.clone());
    let mut rng = Rng::new(7);
    let mut revs = Vec::new();
    for i in 0..spec.nodes {
        let key = node_key(spec, i);
        let size = rng.between(spec.min_object, spec.max_object);
        let value = storage::object(&mut rng, &key, size);
        revs.push(storage::create(&mut kv, &key, value, 0).await?.revision);
    }
    Ok(revs)
}

pub async fn run(target: &Target, spec: &Spec) -> Result<WriteFigures, String> {
    let eps = &target.endpoints;
    if eps.is_empty() {
        return Err("no endpoints".into());
    }
    let first = load::connect(&eps[0]).await?;
    let nodes = create_nodes(&first, spec).await?;
    // The reflector: list each resource, then watch from the last list's revision + 1,
    // through the last member (another member than most writers').
    let watch_member = eps.len() - 1;
    let watch_channel = load::connect(&eps[watch_member]).await?;
    let mut start = 0;
    for resource in [PODS, NODES, EVENTS] {
        let prefix = format!("{}{resource}", spec.prefix);
        let (_, _, revision) = storage::list(&watch_channel, prefix.as_bytes(), spec.page).await?;
        start = start.max(revision);
    }
    let (tx, stream) = open_watch(watch_channel, &spec.prefix, start + 1).await?;
    let until = Arc::new(AtomicI64::new(i64::MAX));
    let stop = Arc::new(AtomicBool::new(false));
    let mut watcher = tokio::spawn(read_events(tx, stream, until.clone(), stop.clone()));

    let mut channels = Vec::new();
    for i in 0..spec.conns.max(1).max(eps.len()) {
        channels.push((i % eps.len(), load::connect(&eps[i % eps.len()]).await?));
    }
    let shared = Arc::new(Shared {
        spec: spec.clone(),
        next: AtomicUsize::new(0),
        errors: AtomicUsize::new(0),
        conflicts: AtomicUsize::new(0),
        nodes: Mutex::new(nodes),
        lease: tokio::sync::Mutex::new((0, 0)),
        first_error: Mutex::new(None),
    });
    let cpu_before = procfs::total_cpu_seconds(&target.pids);
    let began = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..spec.clients.max(1) {
        let (member, channel) = channels[c % channels.len()].clone();
        tasks.push(tokio::spawn(writer(c, member, channel, shared.clone())));
    }
    let mut latencies = Vec::with_capacity(spec.writes);
    let mut acks = Vec::with_capacity(spec.writes);
    for t in tasks {
        let (l, a) = t.await.map_err(|e| e.to_string())?;
        latencies.extend(l);
        acks.extend(a);
    }
    let elapsed = began.elapsed();
    let cpu_after = procfs::total_cpu_seconds(&target.pids);
    latencies.sort_unstable();
    let errors = shared.errors.load(Ordering::Relaxed);
    if latencies.is_empty() {
        let first = shared.first_error.lock().ok().and_then(|e| e.clone());
        return Err(format!("every write failed: {}", first.unwrap_or_default()));
    }

    until.store(
        acks.iter().map(|a| a.revision).max().unwrap_or(0),
        Ordering::Relaxed,
    );
    let seen = match tokio::time::timeout(Duration::from_secs(30), &mut watcher).await {
        Ok(r) => r.map_err(|e| e.to_string())??,
        Err(_) => {
            stop.store(true, Ordering::Relaxed);
            watcher.await.map_err(|e| e.to_string())??
        }
    };
    let mut arrived: HashMap<i64, Instant> = HashMap::with_capacity(seen.len());
    for (rev, at) in seen {
        arrived.entry(rev).or_insert(at);
    }
    let lag_remote = eps.len() > 1;
    let mut lags = Vec::new();
    let mut lag_missing = 0;
    for a in acks
        .iter()
        .filter(|a| !lag_remote || a.member != watch_member)
    {
        match arrived.get(&a.revision) {
            Some(at) => lags.push(at.saturating_duration_since(a.at)),
            None => lag_missing += 1,
        }
    }
    lags.sort_unstable();
    if errors > 0 {
        if let Ok(Some(e)) = shared.first_error.lock().as_deref() {
            eprintln!("k8s: {errors} writes failed, the first: {e}");
        }
    }
    Ok(WriteFigures {
        writes: latencies.len(),
        errors,
        conflicts: shared.conflicts.load(Ordering::Relaxed),
        elapsed,
        latencies,
        cpu_seconds: cpu_before.zip(cpu_after).map(|(b, a)| a - b),
        lags,
        lag_remote,
        lag_missing,
    })
}
