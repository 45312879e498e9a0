//! Leases when the leader stalls (SIGSTOP): what a follower forwards has a deadline and
//! follows the leader the cluster elects meanwhile.

use oxcd_api::etcdserverpb::lease_client::LeaseClient;
use oxcd_api::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseTimeToLiveRequest, WatchCreateRequest,
};
use oxcd_api::mvccpb::event::EventType;
use oxcd_tests::cluster::{Cluster, Spec};
use oxcd_tests::kv::put;
use oxcd_tests::wait::eventually;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// No forward may go unanswered longer than this (the server's request timeout is 7 s here).
const ANSWER_WITHIN: Duration = Duration::from_secs(12);

async fn keep_alive_once(lease: &mut LeaseClient<Channel>, id: i64) -> Result<i64, String> {
    let mut stream = lease
        .lease_keep_alive(futures::stream::iter([LeaseKeepAliveRequest { id }]))
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    match stream.message().await {
        Ok(Some(r)) => Ok(r.ttl),
        Ok(None) => Err("stream ended".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Calls `attempt` until it yields `Ok(true)`; every attempt must answer within
/// `ANSWER_WITHIN`, and one must succeed within 40 s.
async fn answered_then_succeeds<F, Fut>(what: &str, mut attempt: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, String>>,
{
    let started = Instant::now();
    let mut seen = Vec::new();
    loop {
        let t = Instant::now();
        match tokio::time::timeout(ANSWER_WITHIN, attempt()).await {
            Err(_) => panic!(
                "{what} through a follower got no answer within {ANSWER_WITHIN:?} (after {seen:?})"
            ),
            Ok(Ok(true)) => return,
            Ok(outcome) => seen.push(format!("{outcome:?} after {:?}", t.elapsed())),
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "{what} never succeeded under the new leader: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_lease_calls_through_a_follower_follow_a_new_leader_when_the_old_one_stalls() {
    let cluster = Cluster::start(Spec::new(3)).await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let follower = (leader + 1) % 3;
    let mut lease = LeaseClient::new(cluster.patient_channel(follower).await);
    let id = lease
        .lease_grant(LeaseGrantRequest { ttl: 60, id: 0 })
        .await
        .expect("grant")
        .into_inner()
        .id;
    assert!(keep_alive_once(&mut lease, id).await.expect("keep-alive") > 0);

    cluster.members[leader].server.pause();
    answered_then_succeeds("a keep-alive", || {
        let mut lease = lease.clone();
        async move { keep_alive_once(&mut lease, id).await.map(|ttl| ttl > 0) }
    })
    .await;
    answered_then_succeeds("a time-to-live", || {
        let mut lease = lease.clone();
        async move {
            let r = lease
                .lease_time_to_live(LeaseTimeToLiveRequest { id, keys: false })
                .await
                .map_err(|e| e.to_string())?;
            Ok(r.into_inner().ttl > 0)
        }
    })
    .await;
    cluster.members[leader].server.resume();
}

/// What a keep-alive loop was promised: for each renewal answered with a TTL, the lease
/// lives at least until the request was sent plus that TTL.
/// Keys whose delete a watch delivered, and when.
type Deletions = Vec<(Vec<u8>, Instant)>;

#[derive(Default)]
struct Promises {
    until: Option<Instant>,
    attempts: u64,
}

fn keep_alive_loop(
    mut lease: LeaseClient<Channel>,
    id: i64,
    stop: Arc<AtomicBool>,
) -> (Arc<Mutex<Promises>>, tokio::task::JoinHandle<()>) {
    let promises = Arc::new(Mutex::new(Promises::default()));
    let record = promises.clone();
    let task = tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let sent = Instant::now();
            let answer = tokio::time::timeout(ANSWER_WITHIN, keep_alive_once(&mut lease, id)).await;
            {
                let mut p = record.lock().expect("lock");
                p.attempts += 1;
                if let Ok(Ok(ttl)) = answer {
                    if ttl > 0 {
                        let until = sent + Duration::from_secs(ttl as u64);
                        p.until = Some(p.until.map_or(until, |u| u.max(until)));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    (promises, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_stalled_leader_neither_renews_nor_revokes_leases_it_no_longer_holds() {
    let cluster = Cluster::start(Spec::new(3)).await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let follower = (leader + 1) % 3;
    let mut via_follower = LeaseClient::new(cluster.patient_channel(follower).await);
    let mut via_leader = LeaseClient::new(cluster.patient_channel(leader).await);
    let grant = |id| LeaseGrantRequest { ttl: 4, id };
    let a = via_follower
        .lease_grant(grant(0))
        .await
        .expect("grant a")
        .into_inner()
        .id;
    let b = via_leader
        .lease_grant(grant(0))
        .await
        .expect("grant b")
        .into_inner()
        .id;
    let mut kv = cluster.patient_kv(follower).await;
    for (key, lease) in [("a", a), ("b", b)] {
        let mut req = put(key, "held");
        req.lease = lease;
        kv.put(req).await.expect("put with lease");
    }
    let mut watch = cluster
        .watch(
            follower,
            vec![WatchCreateRequest {
                key: b"a".to_vec(),
                range_end: b"c".to_vec(),
                ..Default::default()
            }],
            false,
        )
        .await;
    let deleted: Arc<Mutex<Deletions>> = Arc::default();
    let seen = deleted.clone();
    let watcher = tokio::spawn(async move {
        while let Ok(Some(resp)) = watch.message().await {
            for ev in resp.events {
                if ev.r#type == EventType::Delete as i32 {
                    let key = ev.kv.map(|kv| kv.key).unwrap_or_default();
                    seen.lock().expect("lock").push((key, Instant::now()));
                }
            }
        }
    });

    let stop = Arc::new(AtomicBool::new(false));
    let (promised_a, task_a) = keep_alive_loop(via_follower.clone(), a, stop.clone());
    let (promised_b, task_b) = keep_alive_loop(via_leader.clone(), b, stop.clone());
    // The leader's raft thread stalls (a long fsync) while its runtime answers on.
    cluster.members[leader]
        .server
        .failpoint("raftBeforeSave", "1*sleep(8000)");
    let old_leader_id = cluster.member_id(leader).await;
    eventually("another member leads", Duration::from_secs(30), || async {
        let s = cluster.status(leader).await;
        s.is_some_and(|s| s.leader != 0 && s.leader != old_leader_id)
    })
    .await;
    // Keep-alives go on under the new leader for a few TTLs.
    let tried = promised_a.lock().expect("lock").attempts;
    eventually(
        "keep-alives go on after the stall",
        Duration::from_secs(30),
        || async { promised_a.lock().expect("lock").attempts >= tried + 15 },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::join!(task_a, task_b);
    watcher.abort();

    for (key, promised) in [(&b"a"[..], &promised_a), (&b"b"[..], &promised_b)] {
        let until = promised.lock().expect("lock").until;
        let deleted_at = deleted
            .lock()
            .expect("lock")
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, at)| *at);
        if let (Some(until), Some(at)) = (until, deleted_at) {
            assert!(
                at >= until,
                "{}'s lease was revoked {:?} before a renewal it answered said it would live",
                String::from_utf8_lossy(key),
                until - at
            );
        }
    }
}
