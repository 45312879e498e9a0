//! The robustness suite, after etcd's tests/robustness: a 3-member cluster under traffic (puts,
//! transactions, linearizable gets, leases, compaction, watches from the first revision) gets
//! one fault per run, picked from a seed: a failpoint (a crash or a stall at one of oxcd's
//! named points), kill -9, SIGSTOP or a partition. Then it heals and every history is
//! checked: the clients' is linearizable, every watch stream is in order with no gap and no
//! duplicate and agrees with the acknowledged writes, and every member's HashKV agrees.
//!
//! CI runs a few seeds. More runs, or one seed again, once the binaries have failpoints
//! (`cargo build --workspace --bins --features oxcd-server/failpoints`):
//!   OXCD_ROBUSTNESS_RUNS=200 cargo test -p oxcd-tests --test it robustness -- --nocapture
//!   OXCD_ROBUSTNESS_SEED=1234 cargo test -p oxcd-tests --test it robustness -- --nocapture
//! OXCD_ROBUSTNESS_SECONDS sets each run's traffic (6 s by default).

use oxcd_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use oxcd_api::etcdserverpb::kv_client::KvClient;
use oxcd_api::etcdserverpb::lease_client::LeaseClient;
use oxcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use oxcd_api::etcdserverpb::watch_client::WatchClient;
use oxcd_api::etcdserverpb::watch_request::RequestUnion;
use oxcd_api::etcdserverpb::*;
use oxcd_api::mvccpb::event::EventType;
use oxcd_tests::cluster::{Cluster, Spec};
use oxcd_tests::kv::put;
use oxcd_tests::linearizability::{self, History, Kind as OpKind, Op};
use oxcd_tests::wait::retry;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

const KEYS: usize = 8;
const CLIENTS: usize = 6;

/// One fault, as a seed picks it.
#[derive(Debug, Clone)]
enum Fault {
    Failpoint {
        member: usize,
        name: String,
        actions: String,
        /// Cut the member off for a while too, so it needs a snapshot when it returns (the
        /// snapshot points are passed only then).
        isolate_millis: Option<u64>,
    },
    Kill {
        member: usize,
    },
    Pause {
        member: usize,
        millis: u64,
    },
    Partition {
        member: usize,
        millis: u64,
    },
}

fn pick_fault(rng: &mut StdRng, failpoints: &[String], leader: usize) -> Fault {
    let member = rng.gen_range(0..3);
    match rng.gen_range(0..100) {
        0..=54 => {
            // Half of them on the leader: some points only it passes (revokes, snapshots sent).
            let member = if rng.gen_bool(0.5) { leader } else { member };
            let name = failpoints[rng.gen_range(0..failpoints.len())].clone();
            let actions = if rng.gen_bool(0.6) {
                "panic".to_string()
            } else {
                format!("3*sleep({})", rng.gen_range(200..2500))
            };
            let isolate_millis = rng.gen_bool(0.4).then(|| rng.gen_range(1500..3500));
            Fault::Failpoint {
                member,
                name,
                actions,
                isolate_millis,
            }
        }
        55..=69 => Fault::Kill { member },
        70..=84 => Fault::Pause {
            member,
            millis: rng.gen_range(1000..4000),
        },
        _ => Fault::Partition {
            member,
            millis: rng.gen_range(1000..4000),
        },
    }
}

/// An acknowledged write, as its response told it.
#[derive(Debug, Clone, PartialEq)]
struct Acked {
    key: String,
    value: String,
}

/// What one watch stream delivered: (revision, key, value; empty for a delete).
#[derive(Default, Debug)]
struct Watched {
    events: Vec<(i64, String, String)>,
    /// The stream was compacted away and stopped there.
    compacted: bool,
}

fn lazy_channel(url: &str) -> Channel {
    Channel::from_shared(url.to_string())
        .expect("url")
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(3))
        .connect_lazy()
}

fn key(n: usize) -> String {
    format!("k{n}")
}

/// One client's traffic until `stop`: puts and transactions (writes of unique values), and
/// linearizable gets, on a few keys; leases on keys of its own.
async fn client(
    c: usize,
    url: String,
    seed: u64,
    stop: Arc<AtomicBool>,
    history: Arc<History>,
    acked: Arc<Mutex<BTreeMap<i64, Acked>>>,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ (c as u64 + 1).wrapping_mul(0x9e37_79b9));
    let ch = lazy_channel(&url);
    let mut kv = KvClient::new(ch.clone());
    let mut leases = LeaseClient::new(ch);
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let k = key(rng.gen_range(0..KEYS));
        let value = format!("c{c}-{n}");
        let roll = rng.gen_range(0..100);
        let call = Instant::now();
        if roll < 40 {
            let out = kv.put(put(&k, &value)).await;
            let rev = out
                .as_ref()
                .ok()
                .and_then(|r| r.get_ref().header.as_ref())
                .map(|h| h.revision);
            record_write(&history, &acked, &k, value, call, rev);
        } else if roll < 55 {
            let txn = TxnRequest {
                compare: vec![Compare {
                    result: CompareResult::Greater as i32,
                    target: CompareTarget::Version as i32,
                    key: k.clone().into_bytes(),
                    target_union: Some(TargetUnion::Version(-1)),
                    ..Default::default()
                }],
                success: vec![RequestOp {
                    request: Some(request_op::Request::RequestPut(put(&k, &value))),
                }],
                ..Default::default()
            };
            let out = kv.txn(txn).await;
            let rev = out
                .as_ref()
                .ok()
                .filter(|r| r.get_ref().succeeded)
                .and_then(|r| r.get_ref().header.as_ref())
                .map(|h| h.revision);
            record_write(&history, &acked, &k, value, call, rev);
        } else if roll < 92 {
            let out = kv
                .range(RangeRequest {
                    key: k.clone().into_bytes(),
                    ..Default::default()
                })
                .await;
            if let Ok(r) = out {
                let seen = r
                    .into_inner()
                    .kvs
                    .first()
                    .map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
                history.record(Op {
                    key: k,
                    kind: OpKind::Read(seen),
                    call,
                    ret: Some(Instant::now()),
                });
            }
        } else {
            // A lease with a key of this client's own, kept alive once, then revoked.
            let Ok(grant) = leases
                .lease_grant(LeaseGrantRequest { ttl: 3, id: 0 })
                .await
            else {
                continue;
            };
            let id = grant.into_inner().id;
            let mut p = put(format!("lease/{c}"), &value);
            p.lease = id;
            let _ = kv.put(p).await;
            let _ = leases
                .lease_keep_alive(futures::stream::iter([LeaseKeepAliveRequest { id }]))
                .await;
            if rng.gen_bool(0.5) {
                let _ = leases.lease_revoke(LeaseRevokeRequest { id }).await;
            }
        }
    }
}

fn record_write(
    history: &History,
    acked: &Mutex<BTreeMap<i64, Acked>>,
    k: &str,
    value: String,
    call: Instant,
    rev: Option<i64>,
) {
    let ret = rev.map(|_| Instant::now());
    if let Some(rev) = rev {
        acked.lock().expect("acked").insert(
            rev,
            Acked {
                key: k.to_string(),
                value: value.clone(),
            },
        );
    }
    history.record(Op {
        key: k.to_string(),
        kind: OpKind::Write(value),
        call,
        ret,
    });
}

/// Compacts 1,000 revisions (a few seconds) behind the head every second or so, through any
/// member, and defragments one member now and then.
async fn compactor(urls: Vec<String>, stop: Arc<AtomicBool>) {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        n += 1;
        if n % 3 == 0 {
            let mut m = MaintenanceClient::new(lazy_channel(&urls[n % urls.len()]));
            let _ = m.defragment(DefragmentRequest {}).await;
        }
        let mut kv = KvClient::new(lazy_channel(&urls[n % urls.len()]));
        let Ok(head) = kv
            .range(RangeRequest {
                key: b"k".to_vec(),
                serializable: true,
                count_only: true,
                ..Default::default()
            })
            .await
        else {
            continue;
        };
        let rev = head.into_inner().header.map_or(0, |h| h.revision);
        if rev > 1000 {
            let _ = kv
                .compact(CompactionRequest {
                    revision: rev - 1000,
                    physical: false,
                })
                .await;
        }
    }
}

/// A watch on every `k` key from revision 1, kept open across faults: it resumes after the
/// last revision it saw, on the next member if its own is gone, until `until` tells it the
/// revision to reach (or it is compacted away).
async fn watcher(urls: Vec<String>, first: usize, until: Arc<Mutex<Option<i64>>>) -> Watched {
    let mut out = Watched::default();
    let mut next = 1;
    let mut member = first;
    let deadline_after_stop = Duration::from_secs(30);
    let mut stopped_at: Option<Instant> = None;
    loop {
        let goal = *until.lock().expect("until");
        if let Some(goal) = goal {
            let since = *stopped_at.get_or_insert_with(Instant::now);
            if next > goal || since.elapsed() > deadline_after_stop {
                return out;
            }
        }
        let ch = lazy_channel(&urls[member % urls.len()]);
        let create = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: b"k".to_vec(),
                range_end: b"l".to_vec(),
                start_revision: next,
                ..Default::default()
            })),
        };
        let request =
            futures::StreamExt::chain(futures::stream::iter([create]), futures::stream::pending());
        match WatchClient::new(ch).watch(request).await {
            Ok(resp) => {
                let mut stream = resp.into_inner();
                loop {
                    let goal = *until.lock().expect("until");
                    if goal.is_some_and(|g| next > g) {
                        return out;
                    }
                    let msg = tokio::time::timeout(Duration::from_secs(2), stream.message()).await;
                    let msg = match msg {
                        Ok(Ok(Some(m))) => m,
                        // Ended, or quiet for a while (its member may be stalled): go on
                        // from the next member.
                        Ok(_) | Err(_) => break,
                    };
                    if msg.compact_revision > 0 {
                        out.compacted = true;
                        return out;
                    }
                    for ev in msg.events {
                        let kv = ev.kv.unwrap_or_default();
                        let value = if ev.r#type == EventType::Delete as i32 {
                            String::new()
                        } else {
                            String::from_utf8_lossy(&kv.value).into_owned()
                        };
                        next = kv.mod_revision + 1;
                        out.events.push((
                            kv.mod_revision,
                            String::from_utf8_lossy(&kv.key).into_owned(),
                            value,
                        ));
                    }
                }
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
        member += 1;
    }
}

/// Checks one watch stream: revisions strictly increase, and every acknowledged write in
/// the range it covered is there, as acknowledged.
fn check_watch(name: &str, w: &Watched, acked: &BTreeMap<i64, Acked>) -> Result<(), String> {
    for pair in w.events.windows(2) {
        if pair[1].0 <= pair[0].0 {
            return Err(format!(
                "{name}: event at revision {} after one at {} (out of order or duplicated)",
                pair[1].0, pair[0].0
            ));
        }
    }
    let last = w.events.last().map_or(0, |e| e.0);
    let seen: BTreeMap<i64, (&str, &str)> = w
        .events
        .iter()
        .map(|(r, k, v)| (*r, (k.as_str(), v.as_str())))
        .collect();
    for (rev, a) in acked.range(..=last) {
        match seen.get(rev) {
            Some((k, v)) if *k == a.key && *v == a.value => {}
            other => {
                return Err(format!(
                    "{name}: acknowledged write {a:?} at revision {rev}, watch delivered {other:?}"
                ))
            }
        }
    }
    Ok(())
}

/// One seeded run; Err says what was violated.
async fn run(seed: u64, traffic: Duration) -> Result<String, String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut cluster = Cluster::start(Spec {
        proxies: true,
        flags: vec![
            "--snapshot-count=300".into(),
            "--experimental-snapshot-catchup-entries=50".into(),
        ],
        ..Spec::new(3)
    })
    .await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let failpoints = cluster.members[0].server.failpoint_names();
    let fault = pick_fault(&mut rng, &failpoints, leader);
    let urls: Vec<String> = (0..3).map(|i| cluster.url(i)).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let history = Arc::new(History::default());
    let acked: Arc<Mutex<BTreeMap<i64, Acked>>> = Arc::default();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        tasks.push(tokio::spawn(client(
            c,
            urls[c % 3].clone(),
            seed,
            stop.clone(),
            history.clone(),
            acked.clone(),
        )));
    }
    tasks.push(tokio::spawn(compactor(urls.clone(), stop.clone())));
    let until = Arc::new(Mutex::new(None));
    let watchers: Vec<_> = (0..2)
        .map(|w| tokio::spawn(watcher(urls.clone(), w, until.clone())))
        .collect();

    let started = Instant::now();
    tokio::time::sleep(traffic / 3).await;
    let mut crashed = false;
    match &fault {
        Fault::Failpoint {
            member,
            name,
            actions,
            isolate_millis,
        } => {
            cluster.members[*member].server.failpoint(name, actions);
            let heal_at = isolate_millis.map(|ms| {
                cluster.isolate(*member);
                Instant::now() + Duration::from_millis(ms)
            });
            let mut healed = heal_at.is_none();
            // A crash is a restart: without failpoints, as after a real one.
            while started.elapsed() < traffic {
                if !healed && heal_at.is_some_and(|at| Instant::now() >= at) {
                    cluster.heal();
                    healed = true;
                }
                if cluster.members[*member].server.exited() {
                    crashed = true;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    cluster.members[*member].server.spawn();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            cluster.heal();
            cluster.members[*member].server.clear_failpoint(name);
        }
        Fault::Kill { member } => {
            cluster.members[*member].server.kill9();
            tokio::time::sleep(Duration::from_millis(1500)).await;
            cluster.members[*member].server.spawn();
        }
        Fault::Pause { member, millis } => {
            cluster.members[*member].server.pause();
            tokio::time::sleep(Duration::from_millis(*millis)).await;
            cluster.members[*member].server.resume();
        }
        Fault::Partition { member, millis } => {
            cluster.isolate(*member);
            tokio::time::sleep(Duration::from_millis(*millis)).await;
            cluster.heal();
        }
    }
    let left = traffic.saturating_sub(started.elapsed());
    tokio::time::sleep(left).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }

    // Heal: every member up and agreeing on a leader.
    for i in 0..3 {
        if cluster.members[i].server.child.is_none() {
            cluster.members[i].server.spawn();
        }
    }
    cluster.wait_leader(Duration::from_secs(30)).await;
    let mut kv = KvClient::new(lazy_channel(&urls[0]));
    for n in 0..KEYS {
        let k = key(n);
        let call = Instant::now();
        let read = retry(Duration::from_secs(20), Duration::from_millis(100), || {
            let mut kv = kv.clone();
            let k = k.clone();
            async move {
                kv.range(RangeRequest {
                    key: k.into_bytes(),
                    ..Default::default()
                })
                .await
            }
        })
        .await
        .map_err(|e| format!("final read of {k}: {e}"))?;
        let seen = read
            .into_inner()
            .kvs
            .first()
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
        history.record(Op {
            key: k,
            kind: OpKind::Read(seen),
            call,
            ret: Some(Instant::now()),
        });
    }
    let head = kv
        .range(RangeRequest {
            key: b"k".to_vec(),
            count_only: true,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("head: {e}"))?
        .into_inner()
        .header
        .map_or(0, |h| h.revision);
    let last_acked = acked
        .lock()
        .expect("acked")
        .keys()
        .last()
        .copied()
        .unwrap_or(0);
    *until.lock().expect("until") = Some(last_acked.min(head));

    let ops = history.ops();
    linearizability::check(&ops)?;
    let acked = acked.lock().expect("acked").clone();
    let mut watched = Vec::new();
    for (w, task) in watchers.into_iter().enumerate() {
        let got = task.await.map_err(|e| format!("watcher {w}: {e}"))?;
        check_watch(&format!("watcher {w}"), &got, &acked)?;
        watched.push(got);
    }
    // Members agree on the history they hold.
    let hashes = retry(
        Duration::from_secs(20),
        Duration::from_millis(200),
        || async {
            let mut hashes = Vec::new();
            for i in 0..3 {
                let mut m = cluster.maintenance(i).await;
                let h = m
                    .hash_kv(HashKvRequest { revision: head })
                    .await
                    .map_err(|e| format!("member {i} hashkv: {e}"))?
                    .into_inner();
                hashes.push((h.compact_revision, h.hash));
            }
            if hashes.iter().all(|h| *h == hashes[0]) {
                Ok(hashes)
            } else {
                Err(format!("HashKV at {head} differs: {hashes:?}"))
            }
        },
    )
    .await?;
    let _ = hashes;
    Ok(format!(
        "{fault:?}{}: {} ops, {} acknowledged writes, watches {}/{} events{}",
        if crashed { " (hit)" } else { "" },
        ops.len(),
        acked.len(),
        watched[0].events.len(),
        watched[1].events.len(),
        if watched.iter().any(|w| w.compacted) {
            " (a watch compacted)"
        } else {
            ""
        }
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_histories_stay_linearizable_and_watches_whole_under_injected_faults() {
    let seeds: Vec<u64> = match std::env::var("OXCD_ROBUSTNESS_SEED") {
        Ok(s) => vec![s.parse().expect("OXCD_ROBUSTNESS_SEED is a number")],
        Err(_) => {
            let runs: u64 = std::env::var("OXCD_ROBUSTNESS_RUNS")
                .ok()
                .and_then(|r| r.parse().ok())
                .unwrap_or(3);
            let base: u64 = rand::thread_rng().gen();
            (0..runs).map(|i| base.wrapping_add(i)).collect()
        }
    };
    let traffic = Duration::from_secs(
        std::env::var("OXCD_ROBUSTNESS_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(6),
    );
    for seed in seeds {
        match run(seed, traffic).await {
            Ok(summary) => println!("seed {seed}: ok: {summary}"),
            Err(violation) => panic!(
                "seed {seed}: {violation}\nreplay: OXCD_ROBUSTNESS_SEED={seed} cargo test -p oxcd-tests --test it robustness -- --nocapture"
            ),
        }
    }
}
