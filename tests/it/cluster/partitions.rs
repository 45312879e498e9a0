//! Network cuts through proxies in front of peer URLs: the minority refuses, the majority
//! serves, and the clients' history stays linearizable.

use oxcd_tests::cluster::{Cluster, Spec, ELECTION_MS};
use oxcd_tests::kv::put;
use oxcd_tests::linearizability::{self, History, Kind, Op};
use oxcd_tests::wait::{eventually, retry, POLL};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A watch stream on member `i` carrying etcd's require-leader header.
async fn require_leader_watch(
    c: &Cluster,
    i: usize,
) -> tonic::Streaming<oxcd_api::etcdserverpb::WatchResponse> {
    let create = oxcd_api::etcdserverpb::WatchCreateRequest {
        key: b"anything".to_vec(),
        ..Default::default()
    };
    let mut stream = c.watch(i, vec![create], true).await;
    let created = stream.message().await.expect("answer").expect("created");
    assert!(created.created);
    stream
}

/// A member without a quorum answers a write or linearizable read with etcd's error.
async fn assert_refused(c: &Cluster, i: usize) {
    let mut kv = c.patient_kv(i).await;
    let write = kv
        .put(put("minority", "x"))
        .await
        .expect_err("a write without quorum");
    let read = kv
        .range(oxcd_api::etcdserverpb::RangeRequest {
            key: b"minority".to_vec(),
            ..Default::default()
        })
        .await
        .expect_err("a linearizable read without quorum");
    for e in [write, read] {
        assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
        assert!(
            matches!(
                e.message(),
                "etcdserver: request timed out" | "etcdserver: no leader"
            ),
            "{e:?}"
        );
    }
}

/// Clients bound to each member record a history while the network is cut in several ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_refuse_the_minority_keep_the_majority_and_stay_linearizable() {
    let c = Arc::new(
        Cluster::start(Spec {
            size: 3,
            proxies: true,
            flags: vec![],
            tls: None,
        })
        .await,
    );
    let history = Arc::new(History::default());
    let stop = Arc::new(AtomicBool::new(false));
    let done_ops = Arc::new(AtomicUsize::new(0));
    let phase = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for member in 0..3 {
        let (c, history, stop, done_ops, phase) = (
            c.clone(),
            history.clone(),
            stop.clone(),
            done_ops.clone(),
            phase.clone(),
        );
        clients.push(tokio::spawn(async move {
            use rand::Rng;
            let mut seq = 0;
            while !stop.load(Ordering::Acquire) {
                seq += 1;
                let (key, write) = {
                    let mut rng = rand::thread_rng();
                    // Each phase has its own keys, which keeps every key's history short.
                    let phase = phase.load(Ordering::Relaxed);
                    (
                        format!("r{phase}-{}", rng.gen_range(0..10)),
                        rng.gen_bool(0.5),
                    )
                };
                let call = Instant::now();
                if write {
                    let value = format!("{member}-{seq}");
                    let result = c.put(member, &key, &value).await;
                    history.record(Op {
                        key,
                        kind: Kind::Write(value),
                        call,
                        ret: result.ok().map(|_| Instant::now()),
                    });
                } else if let Ok(seen) = c.get(member, &key).await {
                    history.record(Op {
                        key,
                        kind: Kind::Read(seen),
                        call,
                        ret: Some(Instant::now()),
                    });
                }
                done_ops.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }
    let progress = |n: usize| {
        let done_ops = done_ops.clone();
        phase.fetch_add(1, Ordering::Relaxed);
        async move {
            let start = done_ops.load(Ordering::Relaxed);
            eventually("clients make progress", Duration::from_secs(30), || {
                let d = done_ops.load(Ordering::Relaxed);
                async move { d >= start + n }
            })
            .await;
        }
    };
    progress(15).await;

    // A follower cut off: it refuses, the majority serves, healing brings it back.
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let f = (leader + 1) % 3;
    let mut leader_required = require_leader_watch(&c, f).await;
    c.isolate(f);
    assert_refused(&c, f).await;
    // A watch that requires a leader (as etcdctl's do) is cut off with etcd's error.
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match leader_required.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the leader-requiring watch ends");
    let status = ended.expect_err("ends with an error");
    assert_eq!(
        (status.code(), status.message()),
        (tonic::Code::Unavailable, "etcdserver: no leader")
    );
    c.put(leader, "majority", "1")
        .await
        .expect("majority write");
    progress(10).await;
    c.heal();
    let healed = retry(Duration::from_secs(60), POLL, || {
        let c = c.clone();
        async move {
            let seen = c.get(f, "majority").await.ok().flatten();
            (seen.as_deref() == Some("1")).then_some(()).ok_or(())
        }
    })
    .await;
    if healed.is_err() {
        let mut states = Vec::new();
        for i in 0..3 {
            states.push(c.status(i).await);
        }
        let transport: Vec<String> = c.members[f]
            .server
            .log()
            .lines()
            .filter(|l| !l.contains("logging.rs"))
            .map(str::to_string)
            .collect();
        let tail = transport[transport.len().saturating_sub(40)..].join("\n");
        panic!("isolated follower {f} does not serve again after healing: {states:?}\n{tail}");
    }

    // The leader cut off: the other two elect a new one and go on.
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    c.isolate(leader);
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    eventually(
        "majority elects a new leader",
        Duration::from_millis(6 * ELECTION_MS),
        || {
            let c = c.clone();
            let others = others.clone();
            async move {
                let a = c.status(others[0]).await.map(|s| s.leader);
                let b = c.status(others[1]).await.map(|s| s.leader);
                let old = c
                    .status(leader)
                    .await
                    .and_then(|s| s.header)
                    .map(|h| h.member_id);
                a.is_some() && a == b && a != Some(0) && a != old
            }
        },
    )
    .await;
    c.put(others[0], "majority", "2")
        .await
        .expect("majority write");
    assert_refused(&c, leader).await;
    progress(10).await;
    c.heal();

    // One way only: the leader cannot reach one follower, which can still reach it. The
    // follower hears no heartbeat and loses its leader; the majority goes on writing.
    let leader = c.wait_leader(Duration::from_secs(20)).await;
    let f = (leader + 1) % 3;
    c.cut_one_way(leader, f);
    eventually(
        "the cut-off follower loses its leader",
        Duration::from_millis(6 * ELECTION_MS),
        || {
            let c = c.clone();
            async move { c.status(f).await.is_some_and(|s| s.leader == 0) }
        },
    )
    .await;
    c.put(leader, "majority", "3")
        .await
        .expect("write with a one-way cut");
    progress(10).await;
    c.heal();
    eventually(
        "the cut-off follower catches up",
        Duration::from_secs(20),
        || {
            let c = c.clone();
            async move { c.get(f, "majority").await.ok().flatten().as_deref() == Some("3") }
        },
    )
    .await;

    // Slow links: everything still works. A write may time out while the links settle (its
    // outcome is then unknown), so the check is that one succeeds within a deadline.
    c.wait_leader(Duration::from_secs(20)).await;
    for i in 0..3 {
        c.proxy(i).set_delay(Duration::from_millis(20));
    }
    retry(Duration::from_secs(20), POLL, || c.put(0, "majority", "4"))
        .await
        .unwrap_or_else(|e| panic!("no write over slow links: {e}"));
    progress(10).await;
    c.heal();

    stop.store(true, Ordering::Release);
    for t in clients {
        t.await.expect("client");
    }
    let ops = history.ops();
    assert!(ops.len() > 60, "too few operations recorded: {}", ops.len());
    if let Err(e) = linearizability::check(&ops) {
        panic!("{e}");
    }
    let leader = c.wait_leader(Duration::from_secs(20)).await;
    let rev = c.put(leader, "end", "x").await.expect("final write");
    let hashes = c.hashes(rev).await;
    assert!(hashes.iter().all(|h| *h == hashes[0]), "{hashes:?}");
}
