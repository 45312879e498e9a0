//! Kubernetes traffic against a 3-member cluster of each product: two "apiservers" behave
//! like kube-apiserver's etcd3 storage layer (guarded creates, updates and deletes retried
//! on conflict, paginated and count-only lists, events written with a 3660 s lease, and the
//! compaction they coordinate through `compact_rev_key`, every second or two), while two
//! reflectors build their state from list + watch alone (prefix, prev_kv, progress_notify,
//! `hasleader`, RequestProgress, a new list after a compacted watch). One reflector is a slow
//! consumer (it stops reading for 3 s at a time, over small HTTP/2 windows), so the server
//! must hold its events back and catch it up, and compaction passes it now and then: an
//! update or delete without prev_kv past a compaction ends its watch as kube-apiserver's
//! does ("PrevKv=nil"), and it lists again. The leader moves in the middle. Then the promises kube-apiserver relies on are checked: each reflector's state
//! equals a final list at the same revision; watch revisions increase; every acknowledged
//! write reached each reflector; paginated lists equal one range; prev_kv, version and
//! create_revision agree from event to event; the events' lease holds their keys; and no
//! event arrives after a progress notification that claimed its revision.
//!
//! Debian's etcd is 3.4.23, which breaks the last promise (etcd #15220, fixed in 3.4.24 and
//! 3.5.8): against it that count is printed, not asserted.
//!
//!   cargo build --workspace --bins --features oxcd-server/failpoints
//!   cargo nextest run -p oxcd-tests k8s::
//!   OXCD_K8S_SECONDS=60 cargo test -p oxcd-tests --test it k8s:: -- --nocapture
//!
//! (OXCD_K8S_SECONDS sets the traffic per product; 5 s by default.)

mod checks;
mod reflector;
mod store;

use oxcd_api::etcdserverpb::{LeaseGrantRequest, MoveLeaderRequest};
use oxcd_api::mvccpb::KeyValue;
use oxcd_tests::cluster::Cluster;
use oxcd_tests::k8s::{lazy_channel, start_cluster};
use oxcd_tests::wait::retry;
use oxcd_tests::Kind;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reflector::{Reflector, Shared};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::{Log, Outcome, Store};

const APISERVERS: usize = 2;
const WORKERS: usize = 3;
const NAMESPACES: [&str; 3] = ["default", "kube-system", "team-a"];
const PODS: usize = 40;
const CONFIGMAPS: usize = 15;
/// Calls give up after this, as kube-apiserver's requests to etcd do.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

fn traffic() -> Duration {
    Duration::from_secs(
        std::env::var("OXCD_K8S_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5),
    )
}

fn pod_key(rng: &mut StdRng) -> (String, String) {
    let ns = NAMESPACES[rng.gen_range(0..NAMESPACES.len())];
    let name = format!("pod-{}", rng.gen_range(0..PODS));
    (format!("/registry/pods/{ns}/{name}"), name)
}

fn configmap_key(rng: &mut StdRng) -> (String, String) {
    let ns = NAMESPACES[rng.gen_range(0..NAMESPACES.len())];
    let name = format!("cm-{}", rng.gen_range(0..CONFIGMAPS));
    (format!("/registry/configmaps/{ns}/{name}"), name)
}

fn size(rng: &mut StdRng) -> usize {
    rng.gen_range(1024..=10 * 1024)
}

/// One apiserver worker's requests until `stop`: creates, updates and deletes of pods and
/// configmaps, events under the apiserver's lease, lists and counts.
async fn worker(a: usize, w: usize, url: String, lease: i64, stop: Arc<AtomicBool>, log: Arc<Log>) {
    let mut rng = StdRng::seed_from_u64(rand::random());
    let mut etcd = Store::new(lazy_channel(&url, Some(CALL_TIMEOUT)));
    let mut n = 0;
    let mut events: Vec<String> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let uid = format!("a{a}w{w}n{n}");
        let roll = rng.gen_range(0..100);
        let (kind, (key, name)) = if rng.gen_bool(0.7) {
            ("Pod", pod_key(&mut rng))
        } else {
            ("ConfigMap", configmap_key(&mut rng))
        };
        let len = size(&mut rng);
        let call = Instant::now();
        let outcome = match roll {
            0..=24 => {
                let v = store::object(kind, &name, &uid, len);
                etcd.create(&log, &key, v, 0).await.map(|_| ())
            }
            25..=54 => {
                let mut tries = 0;
                let value = || {
                    tries += 1;
                    store::object(kind, &name, &format!("{uid}t{tries}"), len)
                };
                etcd.update(&log, &key, 0, value).await.map(|_| ())
            }
            55..=64 => etcd.delete(&log, &key).await.map(|_| ()),
            65..=79 => {
                // An event about an object, kept by the apiserver's lease.
                let ns = NAMESPACES[rng.gen_range(0..NAMESPACES.len())];
                let ekey = format!("/registry/events/{ns}/{name}.a{a}w{w}n{n}");
                let v = store::object("Event", &name, &uid, len.min(2048));
                let out = etcd.create(&log, &ekey, v, lease).await;
                if let Ok(Outcome::Written) = out {
                    events.push(ekey);
                }
                out.map(|_| ())
            }
            80..=87 if !events.is_empty() => {
                // The event happened again: its count goes up.
                let ekey = events[rng.gen_range(0..events.len())].clone();
                let mut tries = 0;
                let value = || {
                    tries += 1;
                    store::object("Event", &name, &format!("{uid}t{tries}"), 1024)
                };
                etcd.update(&log, &ekey, lease, value).await.map(|_| ())
            }
            88..=93 => {
                let prefix = if rng.gen_bool(0.5) {
                    "/registry/pods/"
                } else {
                    "/registry/"
                };
                etcd.checked_list(&log, prefix).await.map(|_| ())
            }
            _ => {
                Log::add(&log.counts);
                etcd.count("/registry/pods/", 0).await.map(|_| ())
            }
        };
        if let Err(e) = outcome {
            Log::add(&log.failed_calls);
            let mut why = log.failures.lock().expect("failures");
            if why.len() < 4 {
                why.push(format!(
                    "op {roll} ({key}) after {:?}: {:?} {}",
                    call.elapsed(),
                    e.code(),
                    e.message()
                ));
            }
        }
        Log::add(&log.calls);
        let mut slowest = log.slowest_call.lock().expect("slowest");
        *slowest = (*slowest).max(call.elapsed());
    }
}

/// One apiserver's compactor: kube-apiserver's loop, every 1–2 s here (5 min there).
async fn compactor(url: String, stop: Arc<AtomicBool>, log: Arc<Log>) {
    let mut etcd = Store::new(lazy_channel(&url, Some(CALL_TIMEOUT)));
    let (mut t, mut rev) = (0, 0);
    while !stop.load(Ordering::Relaxed) {
        let pause = rand::thread_rng().gen_range(1000..2000);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        (t, rev) = etcd.compact(&log, t, rev).await;
    }
}

/// Moves leadership from the leader to the next member; whether it moved.
async fn move_leader(cluster: &Cluster) -> bool {
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let target = (leader + 1) % cluster.members.len();
    let Some(status) = cluster.status(target).await else {
        return false;
    };
    let target_id = status.header.map_or(0, |h| h.member_id);
    let mut m = cluster.maintenance(leader).await;
    if m.move_leader(MoveLeaderRequest { target_id })
        .await
        .is_err()
    {
        return false;
    }
    cluster.wait_leader(Duration::from_secs(20)).await == target
}

fn by_key(kvs: &[KeyValue], prefix: &str) -> BTreeMap<Vec<u8>, KeyValue> {
    kvs.iter()
        .filter(|kv| kv.key.starts_with(prefix.as_bytes()))
        .map(|kv| (kv.key.clone(), kv.clone()))
        .collect()
}

/// Everything one run found: hard violations, and the progress promise counted apart.
struct Report {
    summary: String,
    violations: Vec<String>,
    progress_notifications: usize,
    progress_violations: usize,
    progress_examples: Vec<String>,
}

async fn run(kind: Kind) -> Report {
    let cluster = start_cluster(kind, 3).await;
    let urls: Vec<String> = (0..3).map(|i| cluster.url(i)).collect();
    let log = Arc::new(Log::default());
    let mut violations = Vec::new();

    // Objects that exist before the reflectors list, so that their first lists page.
    let mut seeders = Vec::new();
    for s in 0..4 {
        let (url, log) = (urls[s % 3].clone(), log.clone());
        seeders.push(tokio::spawn(async move {
            let etcd = Store::new(lazy_channel(&url, Some(CALL_TIMEOUT)));
            let mut rng = StdRng::seed_from_u64(s as u64);
            for n in 0..40 {
                let (key, name) = pod_key(&mut rng);
                let v = store::object("Pod", &name, &format!("seed{s}n{n}"), size(&mut rng));
                let created = retry(Duration::from_secs(10), Duration::from_millis(100), || {
                    let (mut etcd, log, key, v) =
                        (etcd.clone(), log.clone(), key.clone(), v.clone());
                    async move { etcd.create(&log, &key, v, 0).await }
                })
                .await;
                if let Err(e) = created {
                    panic!("seed create of {key}: {e}");
                }
            }
        }));
    }
    for s in seeders {
        s.await.expect("seeder");
    }

    // One events lease per apiserver, as its lease manager grants it.
    let mut leases = Vec::new();
    for url in urls.iter().take(APISERVERS) {
        let client = oxcd_api::etcdserverpb::lease_client::LeaseClient::new(lazy_channel(
            url,
            Some(CALL_TIMEOUT),
        ));
        let grant = retry(Duration::from_secs(10), Duration::from_millis(100), || {
            let mut client = client.clone();
            async move {
                client
                    .lease_grant(LeaseGrantRequest { ttl: 3660, id: 0 })
                    .await
            }
        })
        .await
        .expect("lease grant")
        .into_inner();
        assert_eq!(grant.ttl, 3660, "{kind:?}: granted TTL");
        leases.push(grant.id);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let stop_reflectors = Arc::new(AtomicBool::new(false));
    let mut reflectors = Vec::new();
    for (r, prefix) in ["/registry/pods/", "/registry/"].into_iter().enumerate() {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let reflector = Reflector {
            name: format!("reflector {r} ({prefix})"),
            prefix: prefix.to_string(),
            urls: urls.clone(),
            member: r + 1,
            shared: shared.clone(),
            stop: stop_reflectors.clone(),
            stall_until: (r == 1).then(|| stop.clone()),
            compacted: log.compact_requested.clone(),
        };
        reflectors.push((prefix, shared, tokio::spawn(reflector.run())));
    }

    let mut tasks = Vec::new();
    for (a, lease) in leases.iter().enumerate() {
        for w in 0..WORKERS {
            let url = urls[(a + w) % 3].clone();
            tasks.push(tokio::spawn(worker(
                a,
                w,
                url,
                *lease,
                stop.clone(),
                log.clone(),
            )));
        }
        tasks.push(tokio::spawn(compactor(
            urls[a].clone(),
            stop.clone(),
            log.clone(),
        )));
    }
    let traffic = traffic();
    let started = Instant::now();
    tokio::time::sleep(traffic / 2).await;
    let moving = Instant::now();
    let moved = move_leader(&cluster).await;
    let moved = format!(
        "{moved} at {:?}, in {:?}",
        moving - started,
        moving.elapsed()
    );
    tokio::time::sleep(traffic.saturating_sub(started.elapsed())).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("apiserver task");
    }

    // The final list, paginated, and the same range unpaginated at its revision.
    let mut etcd = Store::new(lazy_channel(&urls[0], Some(Duration::from_secs(20))));
    let (final_rev, final_list) =
        retry(Duration::from_secs(20), Duration::from_millis(200), || {
            let mut etcd = etcd.clone();
            async move { etcd.list("/registry/", store::PAGE, 0).await }
        })
        .await
        .expect("final list");
    let (_, whole) = etcd
        .list("/registry/", 0, final_rev)
        .await
        .expect("final unpaginated range");
    if whole != final_list {
        violations.push(format!(
            "the final list at {final_rev}: {} keys in pages, {} in one range",
            final_list.len(),
            whole.len()
        ));
    }
    for prefix in [
        "/registry/pods/",
        "/registry/configmaps/",
        "/registry/events/",
    ] {
        let (count, _) = etcd.count(prefix, final_rev).await.expect("count");
        let listed = final_list
            .iter()
            .filter(|kv| kv.key.starts_with(prefix.as_bytes()))
            .count();
        if count != listed as i64 {
            violations.push(format!(
                "{prefix} at {final_rev}: count-only says {count}, the list holds {listed}"
            ));
        }
    }

    // Each reflector catches up with the final revision, as its progress notifications tell,
    // and then holds exactly the final list.
    let mut lagged = 0;
    for (prefix, shared, _) in &reflectors {
        let expected = by_key(&final_list, prefix);
        let caught_up = retry(
            Duration::from_secs(30),
            Duration::from_millis(50),
            || async {
                let seen = shared.lock().expect("shared").seen_rev;
                (seen >= final_rev).then_some(()).ok_or(seen)
            },
        )
        .await;
        if let Err(seen) = caught_up {
            violations.push(format!(
                "the reflector on {prefix} reached only revision {seen} of {final_rev} within 30 s"
            ));
            continue;
        }
        let equal = || shared.lock().expect("shared").state == expected;
        if equal() {
            continue;
        }
        // Caught up by its progress notifications, but not by its events: the progress
        // promise was broken (counted below); the events must still come.
        lagged += 1;
        let later = retry(
            Duration::from_secs(10),
            Duration::from_millis(50),
            || async { equal().then_some(()).ok_or(()) },
        )
        .await;
        if later.is_err() {
            let state = shared.lock().expect("shared").state.clone();
            let differ: Vec<String> = expected
                .keys()
                .chain(state.keys())
                .filter(|k| expected.get(*k) != state.get(*k))
                .take(5)
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .collect();
            violations.push(format!(
                "the reflector on {prefix} at {final_rev} holds {} keys, the final list {}; they differ at {differ:?}",
                state.len(),
                expected.len()
            ));
        }
    }
    stop_reflectors.store(true, Ordering::Relaxed);

    let acked = log.acked.lock().expect("acked").clone();
    let attempted = log.attempted.lock().expect("attempted").clone();
    let unknown_deletes = log.unknown_deletes.lock().expect("unknown").clone();
    let mut checked_writes = 0;
    let mut progress_notifications = 0;
    let mut progress_violations = 0;
    let mut progress_examples = Vec::new();
    let mut events = 0;
    let mut sessions = Vec::new();
    for (prefix, _, task) in reflectors {
        let rec = task.await.expect("reflector");
        let name = format!("reflector on {prefix}");
        let (checked, bad) = checks::delivery(
            &name,
            prefix,
            &rec,
            &acked,
            &attempted,
            &unknown_deletes,
            final_rev,
        );
        checked_writes += checked;
        violations.extend(bad);
        if rec.violation_count > rec.violations.len() {
            violations.push(format!(
                "{name}: {} more violations",
                rec.violation_count - rec.violations.len()
            ));
        }
        violations.extend(rec.violations);
        events += rec.events;
        progress_notifications += rec.progress_notifications;
        progress_violations += rec.progress_violations;
        progress_examples.extend(rec.progress_examples);
        sessions.push(format!(
            "{} lists, {} compacted ({} by a missing prev_kv) and {} restarted watches",
            rec.lists, rec.compacted_watches, rec.prev_kv_compacted, rec.restarted_watches
        ));
    }
    violations.extend(checks::final_state(&final_list, &acked, &unknown_deletes));
    violations.extend(
        checks::leases(
            lazy_channel(&urls[2], Some(CALL_TIMEOUT)),
            &leases,
            &final_list,
        )
        .await,
    );
    violations.extend(log.violations.lock().expect("violations").iter().cloned());

    let c = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let summary = format!(
        "{kind:?}: {traffic:?} of traffic, final revision {final_rev}, {} keys; \
         {} operations (slowest {:?}), writes acknowledged {} (creates {}, updates {}, deletes {}; {} conflicts retried), \
         {} lists ({} checked against one range), {} counts, {} failed calls {:?}; \
         compactions {} (+{} refused: {:?}); leader moved: {moved}; \
         reflectors: {} events checked, {checked_writes} acknowledged writes traced, {}; \
         {lagged} reflectors caught up by progress before their events; \
         progress notifications {progress_notifications}, events breaking their promise {progress_violations}",
        final_list.len(),
        c(&log.calls),
        *log.slowest_call.lock().expect("slowest"),
        acked.len(),
        c(&log.creates),
        c(&log.updates),
        c(&log.deletes),
        c(&log.conflicts),
        c(&log.lists),
        c(&log.pagination_checks),
        c(&log.counts),
        c(&log.failed_calls),
        log.failures.lock().expect("failures"),
        c(&log.compactions),
        c(&log.compactions_refused),
        log.refusals.lock().expect("refusals"),
        events,
        sessions.join(" / "),
    );
    Report {
        summary,
        violations,
        progress_notifications,
        progress_violations,
        progress_examples,
    }
}

fn assert_kept(report: &Report, kind: Kind) {
    println!("{}", report.summary);
    for e in &report.progress_examples {
        println!("  {e}");
    }
    assert!(
        report.violations.is_empty(),
        "{kind:?} broke Kubernetes' promises:\n{}\n({})",
        report.violations.join("\n"),
        report.summary
    );
    assert!(
        report.progress_notifications > 0,
        "{kind:?}: no progress notification came ({})",
        report.summary
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_kubernetes_traffic_keeps_its_promises_on_oxcd() {
    let report = run(Kind::Oxcd).await;
    assert_kept(&report, Kind::Oxcd);
    assert_eq!(
        report.progress_violations,
        0,
        "events came after a progress notification at or above their revision:\n{}\n({})",
        report.progress_examples.join("\n"),
        report.summary
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_kubernetes_traffic_keeps_its_promises_on_etcd() {
    let report = run(Kind::Etcd).await;
    // etcd 3.4.23 answers RequestProgress with its current revision even while a watch is
    // still catching up (etcd #15220): counted and printed, not asserted.
    assert_kept(&report, Kind::Etcd);
}
