//! Clusters of separate oxcd processes on loopback: every op through any member, failover,
//! partitions (through proxies in front of peer URLs) with a linearizability check, member
//! replacement, learners, restarts.

use oxcd_api::etcdserverpb::{
    compare, Compare, DeleteRangeRequest, MemberListRequest, MemberPromoteRequest, PutRequest,
    StatusRequest, TxnRequest,
};
use oxcd_tests::cluster::{Cluster, Spec, ELECTION_MS};
use oxcd_tests::linearizability::{self, History, Kind, Op};
use oxcd_tests::{bin, run_tool, system_bin};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn ctl(tool: &std::path::Path, endpoints: &str, args: &[&str]) -> (String, String, i32) {
    let mut a = vec![format!("--endpoints={endpoints}")];
    a.extend(args.iter().map(|s| s.to_string()));
    run_tool(tool, &a, None)
}

/// Waits (bounded) until `f` holds.
async fn eventually<F, Fut>(what: &str, within: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !f().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

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
        .put(PutRequest {
            key: b"minority".to_vec(),
            value: b"x".to_vec(),
            ..Default::default()
        })
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_op_works_through_any_member_of_1_3_and_5() {
    for size in [1, 3, 5] {
        let c = Cluster::start(Spec::new(size)).await;
        let mut cluster_ids = HashSet::new();
        let mut member_ids = HashSet::new();
        for i in 0..size {
            let key = format!("k{i}");
            c.put(i, &key, "v").await.expect("put");
            for j in 0..size {
                assert_eq!(c.get(j, &key).await.expect("get"), Some("v".into()));
            }
            let mut kv = c.kv(i).await;
            let txn = kv
                .txn(TxnRequest {
                    compare: vec![Compare {
                        key: key.clone().into(),
                        result: compare::CompareResult::Equal as i32,
                        target: compare::CompareTarget::Value as i32,
                        target_union: Some(compare::TargetUnion::Value(b"v".to_vec())),
                        ..Default::default()
                    }],
                    success: vec![PutRequest {
                        key: key.clone().into(),
                        value: b"w".to_vec(),
                        ..Default::default()
                    }
                    .into()],
                    failure: vec![],
                })
                .await
                .expect("txn")
                .into_inner();
            assert!(txn.succeeded);
            let del = kv
                .delete_range(DeleteRangeRequest {
                    key: key.clone().into(),
                    prev_kv: true,
                    ..Default::default()
                })
                .await
                .expect("delete")
                .into_inner();
            assert_eq!(del.deleted, 1);
            assert_eq!(del.prev_kvs[0].value, b"w");
            let h = del.header.expect("header");
            cluster_ids.insert(h.cluster_id);
            member_ids.insert(h.member_id);
        }
        assert_eq!(cluster_ids.len(), 1, "one cluster ID in every header");
        assert_eq!(member_ids.len(), size, "each member answers as itself");

        let mut last = 0;
        for n in 0..60 {
            last = c
                .put(n % size, &format!("load{n}"), &n.to_string())
                .await
                .expect("load put");
        }
        let hashes = c.hashes(last).await;
        assert!(
            hashes.iter().all(|h| *h == hashes[0]),
            "hashkv differs across members: {hashes:?}"
        );

        let eps = c.endpoints();
        let (out, err, code) = ctl(&bin("oxcdctl"), &eps, &["endpoint", "health", "--cluster"]);
        assert_eq!(code, 0, "{out}{err}");
        assert_eq!(err.matches("is healthy").count(), size, "{err}");
        if size == 3 {
            // The same output from oxcdctl and the real etcdctl against the same cluster.
            for args in [
                &["member", "list"][..],
                &["member", "list", "-w", "table"],
                &["member", "list", "-w", "json"],
                &["member", "list", "-w", "fields"],
                &["endpoint", "status", "--cluster", "-w", "table"],
                &["endpoint", "hashkv", "--cluster"],
                &["endpoint", "hashkv", "--cluster", "-w", "table"],
            ] {
                // One endpoint: etcdctl's balancer may pick any of several for the header.
                let one = c.url(1);
                let ours = ctl(&bin("oxcdctl"), &one, args);
                let theirs = ctl(&system_bin("etcdctl"), &one, args);
                assert_eq!(ours, theirs, "oxcdctl and etcdctl differ for {args:?}");
            }
            let (out, _, code) = ctl(
                &bin("oxcdctl"),
                &eps,
                &["endpoint", "status", "--cluster", "-w", "table"],
            );
            assert_eq!(code, 0);
            let leaders = out
                .lines()
                .filter(|l| l.starts_with("| http"))
                .filter(|l| l.split('|').nth(5).map(str::trim) == Some("true"))
                .count();
            assert_eq!(leaders, 1, "exactly one leader: {out}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_under_write_load_loses_nothing_and_rejoins() {
    let mut c = Cluster::start(Spec::new(3)).await;
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let followers: Vec<String> = (0..3).filter(|&i| i != leader).map(|i| c.url(i)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let writer = {
        let (stop, acked) = (stop.clone(), acked.clone());
        tokio::spawn(async move {
            let mut clients = Vec::new();
            for u in &followers {
                let ch = tonic::transport::Channel::from_shared(u.clone())
                    .expect("url")
                    .timeout(Duration::from_secs(10))
                    .connect_lazy();
                clients.push(oxcd_api::etcdserverpb::kv_client::KvClient::new(ch));
            }
            let mut n = 0usize;
            while !stop.load(Ordering::Acquire) {
                let key = format!("w{n:05}");
                let req = PutRequest {
                    key: key.clone().into(),
                    value: b"x".to_vec(),
                    ..Default::default()
                };
                let which = n % clients.len();
                if clients[which].put(req).await.is_ok() {
                    acked.lock().expect("acked").push(key);
                }
                n += 1;
            }
        })
    };
    let count = || acked.lock().expect("acked").len();
    eventually("20 writes before the kill", Duration::from_secs(20), || {
        let n = count();
        async move { n >= 20 }
    })
    .await;
    // Connections made before the kill, so the measurement is the election alone.
    let mut survivors = Vec::new();
    for i in (0..3).filter(|&i| i != leader) {
        survivors.push(c.maintenance(i).await);
    }
    let old_id = c
        .status(leader)
        .await
        .and_then(|s| s.header)
        .map_or(0, |h| h.member_id);
    let killed_at = Instant::now();
    c.members[leader].server.kill9();
    let failover = loop {
        let mut seen = Vec::new();
        for m in &mut survivors {
            let st =
                tokio::time::timeout(Duration::from_millis(500), m.status(StatusRequest {})).await;
            seen.push(
                st.ok()
                    .and_then(|r| r.ok())
                    .map_or(0, |r| r.into_inner().leader),
            );
        }
        if seen[0] != 0 && seen[0] != old_id && seen.iter().all(|l| *l == seen[0]) {
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "no new leader 30 s after the kill: {seen:x?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // Randomized timeouts are 1-2 election timeouts; a split vote costs one more round.
    // Seen on 2 busy cores: 1-2 s as a rule, 5 s once.
    assert!(
        failover < Duration::from_millis(6 * ELECTION_MS),
        "a new leader took {failover:?}, more than 6 election timeouts"
    );
    let new_leader = c.wait_leader(Duration::from_secs(10)).await;
    assert_ne!(new_leader, leader);
    let before = count();
    eventually(
        "writes continue after failover",
        Duration::from_secs(20),
        || {
            let n = count();
            async move { n >= before + 20 }
        },
    )
    .await;
    stop.store(true, Ordering::Release);
    writer.await.expect("writer");
    let acked = acked.lock().expect("acked").clone();
    let mut kv = c.kv(new_leader).await;
    let all = kv
        .range(oxcd_api::etcdserverpb::RangeRequest {
            key: b"w".to_vec(),
            range_end: b"x".to_vec(),
            keys_only: true,
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    let present: HashSet<Vec<u8>> = all.kvs.into_iter().map(|kv| kv.key).collect();
    for k in &acked {
        assert!(
            present.contains(k.as_bytes()),
            "acknowledged write {k} lost"
        );
    }
    let rev = all.header.expect("header").revision;

    c.members[leader].server.spawn();
    c.members[leader].server.ready().await;
    let hashes = c.hashes(rev).await;
    assert!(hashes.iter().all(|h| *h == hashes[0]), "{hashes:?}");
    let status = c.status(leader).await.expect("status");
    assert_ne!(
        status.leader,
        status.header.expect("header").member_id,
        "old leader rejoins as follower"
    );
    eprintln!("failover took {failover:?} ({} acked writes)", acked.len());
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
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.get(f, "majority").await.ok().flatten().as_deref() != Some("1") {
        if Instant::now() > deadline {
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
        tokio::time::sleep(Duration::from_millis(50)).await;
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
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Err(e) = c.put(0, "majority", "4").await {
        assert!(Instant::now() < deadline, "no write over slow links: {e}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_a_member_by_hex_id() {
    let mut c = Cluster::start(Spec::new(3)).await;
    for n in 0..20 {
        c.put(0, &format!("d{n}"), "v").await.expect("put");
    }
    let eps = c.url(0);
    let (_, err, code) = ctl(&bin("oxcdctl"), &eps, &["member", "remove", "m1"]);
    assert_eq!(code, 128);
    assert_eq!(
        err.trim_end(),
        "Error: bad member ID arg (strconv.ParseUint: parsing \"m1\": invalid syntax), expecting ID in Hex"
    );
    let mut cc = c.cluster_client(0).await;
    let members = cc
        .member_list(MemberListRequest { linearizable: true })
        .await
        .expect("list")
        .into_inner();
    let m1 = members
        .members
        .iter()
        .find(|m| m.name == "m1")
        .expect("m1 listed");
    let cluster_id = members.header.expect("header").cluster_id;
    let (out, err, code) = ctl(
        &bin("oxcdctl"),
        &eps,
        &["member", "remove", &format!("{:x}", m1.id)],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!(
            "Member {:16x} removed from cluster {:16x}\n",
            m1.id, cluster_id
        )
    );
    assert!(
        c.members[1]
            .server
            .wait_exit(Duration::from_secs(20))
            .is_some(),
        "a removed member stops"
    );
    let (_, err, code) = ctl(
        &bin("oxcdctl"),
        &eps,
        &["member", "remove", &format!("{:x}", m1.id)],
    );
    assert_eq!(
        (code, err.trim_end()),
        (1, "Error: etcdserver: member not found")
    );

    let i = c.add_member(2, false).await;
    c.members[i].server.ready().await;
    let eps = c.endpoints();
    let (out, err, code) = ctl(
        &system_bin("etcdctl"),
        &eps,
        &["endpoint", "health", "--cluster"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(err.matches("is healthy").count(), 3, "{err}");
    let (out, _, _) = ctl(&bin("oxcdctl"), &eps, &["member", "list"]);
    assert!(
        out.contains(", started, m3, ") && !out.contains(", m1, "),
        "{out}"
    );
    let rev = c
        .put(i, "after", "x")
        .await
        .expect("write through the new member");
    let hashes = c.hashes(rev).await;
    assert_eq!(hashes.len(), 3);
    assert!(hashes.iter().all(|h| *h == hashes[0]), "{hashes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_catches_up_by_snapshot_and_is_promoted() {
    let mut c = Cluster::start(Spec {
        size: 3,
        proxies: false,
        flags: vec![
            "--snapshot-count=50".into(),
            "--experimental-snapshot-catchup-entries=10".into(),
        ],
        tls: None,
    })
    .await;
    for n in 0..120 {
        c.put(n % 3, &format!("d{n:03}"), "v").await.expect("put");
    }
    let l = c.add_member(1, true).await;
    c.members[l].server.ready().await;
    assert!(
        c.members[l]
            .server
            .wait_for_log("received database snapshot", Duration::from_secs(10))
            .await
    );
    let err = c.put(l, "k", "v").await.expect_err("learner write");
    assert_eq!(err.message(), "etcdserver: rpc not supported for learner");
    let mut m = c.maintenance(l).await;
    let st = m
        .status(StatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert!(st.is_learner);
    let learner_id = st.header.expect("header").member_id;

    let eps = c.url(0);
    let (_, err, code) = ctl(
        &bin("oxcdctl"),
        &eps,
        &[
            "member",
            "add",
            "m9",
            "--learner",
            "--peer-urls=http://127.0.0.1:1",
        ],
    );
    assert_eq!(
        (code, err.trim_end()),
        (1, "Error: etcdserver: too many learner members in cluster")
    );
    let voter = c
        .status(0)
        .await
        .expect("status")
        .header
        .expect("header")
        .member_id;
    let (_, err, code) = ctl(
        &bin("oxcdctl"),
        &eps,
        &["member", "promote", &format!("{voter:x}")],
    );
    assert_eq!(
        (code, err.trim_end()),
        (1, "Error: etcdserver: can only promote a learner member")
    );

    // Through a follower, which hands the promotion to the leader.
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let follower = (0..3).find(|&i| i != leader).expect("a follower");
    eventually("learner promoted", Duration::from_secs(20), || {
        let c = &c;
        async move {
            let mut cc = c.cluster_client(follower).await;
            cc.member_promote(MemberPromoteRequest { id: learner_id })
                .await
                .is_ok()
        }
    })
    .await;
    eventually(
        "promoted member is a voter",
        Duration::from_secs(10),
        || {
            let c = &c;
            async move { c.status(l).await.is_some_and(|s| !s.is_learner) }
        },
    )
    .await;
    c.put(l, "k", "v")
        .await
        .expect("write through the promoted member");

    // A follower that fell behind the compacted log catches up by snapshot too.
    c.members[2].server.stop();
    for n in 0..120 {
        c.put(n % 2, &format!("e{n:03}"), "v").await.expect("put");
    }
    c.members[2].server.spawn();
    c.members[2].server.ready().await;
    assert!(
        c.members[2]
            .server
            .wait_for_log("received database snapshot", Duration::from_secs(20))
            .await
    );
    let rev = c.put(0, "end", "x").await.expect("put");
    let hashes = c.hashes(rev).await;
    assert_eq!(hashes.len(), 4);
    assert!(hashes.iter().all(|h| *h == hashes[0]), "{hashes:?}");
}

/// (cluster ID, member ID) as each member reports itself.
async fn ids(c: &Cluster) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for i in 0..c.members.len() {
        let h = c.status(i).await.expect("status").header.expect("header");
        out.push((h.cluster_id, h.member_id));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_and_full_restarts_keep_data_and_ids() {
    let mut c = Cluster::start(Spec::new(3)).await;
    for n in 0..30 {
        c.put(n % 3, &format!("d{n:02}"), &n.to_string())
            .await
            .expect("put");
    }
    let before = ids(&c).await;

    // move-leader, found among --endpoints as etcdctl does; then the real etcdctl moves it back.
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let target = (leader + 1) % 3;
    let (lid, tid) = (before[leader].1, before[target].1);
    let eps = c.endpoints();
    let (out, err, code) = ctl(&bin("oxcdctl"), &eps, &["move-leader", &format!("{tid:x}")]);
    assert_eq!(
        (code, out),
        (
            0,
            format!("Leadership transferred from {lid:x} to {tid:x}\n")
        ),
        "{err}"
    );
    assert_eq!(c.wait_leader(Duration::from_secs(10)).await, target);
    let (out, err, code) = ctl(
        &system_bin("etcdctl"),
        &eps,
        &["move-leader", &format!("{lid:x}")],
    );
    assert_eq!(
        (code, out),
        (
            0,
            format!("Leadership transferred from {tid:x} to {lid:x}\n")
        ),
        "{err}"
    );
    let (_, err, code) = ctl(
        &bin("oxcdctl"),
        &c.url(target),
        &["move-leader", &format!("{lid:x}")],
    );
    assert_eq!(code, 128);
    assert!(
        err.starts_with("Error: no leader endpoint given at"),
        "{err}"
    );

    // member update with the member's own URLs is accepted and changes nothing.
    let peer = c.members[2].advertised_peer.clone();
    let (out, err, code) = ctl(
        &bin("oxcdctl"),
        &eps,
        &[
            "member",
            "update",
            &format!("{:x}", before[2].1),
            &format!("--peer-urls={peer}"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("Member {:16x} updated in cluster", before[2].1)),
        "{out}"
    );

    for i in 0..3 {
        c.members[i].server.stop();
        c.put((i + 1) % 3, &format!("roll{i}"), "x")
            .await
            .expect("write while one is down");
        c.members[i].server.spawn();
        c.members[i].server.ready().await;
    }
    for i in 0..3 {
        c.members[i].server.stop();
    }
    for i in 0..3 {
        c.members[i].server.spawn();
    }
    for i in 0..3 {
        c.members[i].server.ready().await;
    }
    c.wait_leader(Duration::from_secs(20)).await;
    assert_eq!(
        ids(&c).await,
        before,
        "same cluster and member IDs after restarts"
    );
    for n in 0..30 {
        assert_eq!(
            c.get(n % 3, &format!("d{n:02}")).await.expect("get"),
            Some(n.to_string())
        );
    }
    for i in 0..3 {
        assert_eq!(
            c.get(i, &format!("roll{i}")).await.expect("get"),
            Some("x".into())
        );
    }
    let rev = c.put(0, "end", "x").await.expect("put");
    let hashes = c.hashes(rev).await;
    assert!(hashes.iter().all(|h| *h == hashes[0]), "{hashes:?}");
}

mod checker {
    use oxcd_tests::linearizability::*;
    use std::time::Duration;
    use std::time::Instant;

    fn op(kind: Kind, call_ms: u64, ret_ms: Option<u64>, base: Instant) -> Op {
        Op {
            key: "k".into(),
            kind,
            call: base + Duration::from_millis(call_ms),
            ret: ret_ms.map(|r| base + Duration::from_millis(r)),
        }
    }

    #[test]
    fn accepts_overlapping_and_refuses_stale_reads() {
        let t = Instant::now();
        let w = |v: &str| Kind::Write(v.into());
        let r = |v: Option<&str>| Kind::Read(v.map(str::to_string));
        // A read overlapping a write may see either value.
        let ok = vec![
            op(w("1"), 0, Some(10), t),
            op(w("2"), 20, Some(40), t),
            op(r(Some("1")), 25, Some(30), t),
            op(r(Some("2")), 50, Some(60), t),
        ];
        assert!(check(&ok).is_ok());
        // Once "2" was read, a later read may not go back to "1".
        let stale = vec![
            op(w("1"), 0, Some(10), t),
            op(w("2"), 20, Some(40), t),
            op(r(Some("2")), 45, Some(50), t),
            op(r(Some("1")), 55, Some(60), t),
        ];
        assert!(check(&stale).is_err());
        // A write with an unknown outcome may have happened late, or never.
        let unknown = vec![
            op(w("1"), 0, Some(10), t),
            op(w("2"), 20, None, t),
            op(r(Some("1")), 30, Some(35), t),
            op(r(Some("2")), 40, Some(45), t),
        ];
        assert!(check(&unknown).is_ok());
        // A read of a value nobody wrote is never linearizable.
        let invented = vec![op(r(Some("9")), 0, Some(1), t)];
        assert!(check(&invented).is_err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_of_another_cluster_is_refused() {
    let c = Cluster::start(Spec::new(1)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (cp, pp) = (oxcd_tests::free_port(), oxcd_tests::free_port());
    let own_peer = format!("http://127.0.0.21:{pp}");
    let client = format!("http://127.0.0.21:{cp}");
    let args: Vec<String> = [
        "--name",
        "stranger",
        "--data-dir",
        &dir.path().join("data").display().to_string(),
        "--listen-client-urls",
        &client,
        "--advertise-client-urls",
        &client,
        "--listen-peer-urls",
        &own_peer,
        "--initial-advertise-peer-urls",
        &own_peer,
        "--initial-cluster",
        &format!("stranger={own_peer},m0={}", c.members[0].advertised_peer),
        "--initial-cluster-token",
        "another-token",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut stranger =
        oxcd_tests::Server::member("127.0.0.21", cp, pp, dir.path().join("data"), args);
    stranger.spawn();
    assert!(
        stranger
            .wait_for_log(
                "request sent was ignored due to cluster ID mismatch",
                Duration::from_secs(20)
            )
            .await,
        "{}",
        stranger.log()
    );
    assert!(
        c.members[0]
            .server
            .wait_for_log("request cluster ID mismatch", Duration::from_secs(10))
            .await
    );
    c.put(0, "still", "serving")
        .await
        .expect("the cluster is untouched");
    let st = c.status(0).await.expect("status");
    assert_eq!(st.leader, st.header.expect("header").member_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_on_followers_see_every_event_once_across_a_leader_kill() {
    use oxcd_api::etcdserverpb::WatchCreateRequest;
    let mut c = Cluster::start(Spec::new(3)).await;
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    // 100 watchers: 5 streams of 10 watches on each follower.
    let mut readers = Vec::new();
    for &f in &followers {
        for _ in 0..5 {
            let create = WatchCreateRequest {
                key: b"w".to_vec(),
                range_end: b"x".to_vec(),
                ..Default::default()
            };
            let mut stream = c.watch(f, vec![create; 10], false).await;
            readers.push(tokio::spawn(async move {
                let mut revs: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
                let mut created = 0;
                loop {
                    match tokio::time::timeout(Duration::from_secs(8), stream.message()).await {
                        Ok(Ok(Some(r))) => {
                            created += usize::from(r.created);
                            revs.entry(r.watch_id).or_default().extend(
                                r.events
                                    .iter()
                                    .filter_map(|e| e.kv.as_ref().map(|kv| kv.mod_revision)),
                            );
                        }
                        // Quiet for 8 s after the writes: done.
                        _ => return (created, revs),
                    }
                }
            }));
        }
    }
    let mut n = 0;
    let write = |c: &Cluster, n: usize| {
        let url = c.url(followers[n % 2]);
        async move {
            let ch = tonic::transport::Channel::from_shared(url)
                .expect("url")
                .timeout(Duration::from_secs(10))
                .connect_lazy();
            oxcd_api::etcdserverpb::kv_client::KvClient::new(ch)
                .put(PutRequest {
                    key: format!("w{n:04}").into_bytes(),
                    value: b"x".to_vec(),
                    ..Default::default()
                })
                .await
                .is_ok()
        }
    };
    for _ in 0..30 {
        write(&c, n).await;
        n += 1;
    }
    c.members[leader].server.kill9();
    for _ in 0..30 {
        write(&c, n).await;
        n += 1;
    }
    let new_leader = c.wait_leader(Duration::from_secs(10)).await;
    let mut kv = c.kv(new_leader).await;
    let all = kv
        .range(oxcd_api::etcdserverpb::RangeRequest {
            key: b"w".to_vec(),
            range_end: b"x".to_vec(),
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    let mut want: Vec<i64> = all.kvs.iter().map(|kv| kv.mod_revision).collect();
    want.sort_unstable();
    assert!(want.len() >= 50, "most writes landed: {}", want.len());
    let mut watches = 0;
    for r in readers {
        let (created, revs) = r.await.expect("reader");
        assert_eq!(created, 10);
        for (id, got) in revs {
            assert_eq!(got, want, "watch {id}: every event once, in order");
            watches += 1;
        }
    }
    assert_eq!(watches, 100);
}

/// Keeps `ids` alive through member `url` every second until `stop`, reopening the stream
/// when it breaks (a follower hands keep-alives to the leader, which may be gone). Returns
/// the leases ever reported expired.
async fn keep_alive_loop(url: String, ids: Vec<i64>, stop: Arc<AtomicBool>) -> Vec<i64> {
    use oxcd_api::etcdserverpb::lease_client::LeaseClient;
    use oxcd_api::etcdserverpb::LeaseKeepAliveRequest;
    let mut expired = Vec::new();
    while !stop.load(Ordering::Acquire) {
        let Ok(ch) = tonic::transport::Channel::from_shared(url.clone())
            .expect("url")
            .connect()
            .await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let (tx, rx) = tokio::sync::mpsc::channel(ids.len() + 1);
        let Ok(resp) = LeaseClient::new(ch)
            .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut answers = resp.into_inner();
        'stream: while !stop.load(Ordering::Acquire) {
            for id in &ids {
                if tx.send(LeaseKeepAliveRequest { id: *id }).await.is_err() {
                    break 'stream;
                }
            }
            for _ in &ids {
                match tokio::time::timeout(Duration::from_secs(3), answers.message()).await {
                    Ok(Ok(Some(r))) if r.ttl <= 0 => expired.push(r.id),
                    Ok(Ok(Some(_))) => {}
                    _ => break 'stream,
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    expired
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_outlive_a_leader_kill_and_an_expired_one_goes_at_one_revision_everywhere() {
    use oxcd_api::etcdserverpb::lease_client::LeaseClient;
    use oxcd_api::etcdserverpb::{
        LeaseGrantRequest, LeaseTimeToLiveRequest, RangeRequest, WatchCreateRequest,
    };
    let mut c = Cluster::start(Spec::new(3)).await;
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let ch = tonic::transport::Channel::from_shared(c.url(followers[0]))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut leases = LeaseClient::new(ch);
    let mut kv = c.kv(followers[0]).await;
    for id in 1..=100 {
        leases
            .lease_grant(LeaseGrantRequest { id, ttl: 5 })
            .await
            .expect("grant");
        kv.put(PutRequest {
            key: format!("l/{id:03}").into_bytes(),
            value: b"v".to_vec(),
            lease: id,
            ..Default::default()
        })
        .await
        .expect("put");
    }
    leases
        .lease_grant(LeaseGrantRequest { id: 1000, ttl: 3 })
        .await
        .expect("grant");
    for k in 0..3 {
        kv.put(PutRequest {
            key: format!("d/{k}").into_bytes(),
            value: b"v".to_vec(),
            lease: 1000,
            ..Default::default()
        })
        .await
        .expect("put");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let keepers: Vec<_> = followers
        .iter()
        .enumerate()
        .map(|(n, &f)| {
            let ids: Vec<i64> = (1..=100).filter(|id| id % 2 == n as i64).collect();
            tokio::spawn(keep_alive_loop(c.url(f), ids, stop.clone()))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.members[leader].server.kill9();
    c.wait_leader(Duration::from_millis(3 * ELECTION_MS)).await;
    // Longer than a TTL plus an election timeout after the failover.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let ttl = leases
        .lease_time_to_live(LeaseTimeToLiveRequest { id: 7, keys: true })
        .await
        .expect("ttl through a follower")
        .into_inner();
    assert!(
        ttl.ttl > 0 && ttl.keys == vec![b"l/007".to_vec()],
        "{ttl:?}"
    );
    stop.store(true, Ordering::Release);
    for k in keepers {
        let expired = k.await.expect("keeper");
        assert!(
            expired.is_empty(),
            "leases expired while kept alive: {expired:?}"
        );
    }
    let mut deleted_at = Vec::new();
    for &f in &followers {
        let mut kv = c.kv(f).await;
        let held = kv
            .range(RangeRequest {
                key: b"l/".to_vec(),
                range_end: b"l0".to_vec(),
                count_only: true,
                ..Default::default()
            })
            .await
            .expect("range")
            .into_inner();
        assert_eq!(held.count, 100, "member {f}: no kept-alive lease expired");
        // The expired lease's keys went in one revision.
        let create = WatchCreateRequest {
            key: b"d/".to_vec(),
            range_end: b"d0".to_vec(),
            start_revision: 1,
            ..Default::default()
        };
        let mut stream = c.watch(f, vec![create], false).await;
        let mut deletes = Vec::new();
        while deletes.len() < 3 {
            let r = tokio::time::timeout(Duration::from_secs(10), stream.message())
                .await
                .expect("events")
                .expect("stream")
                .expect("open");
            deletes.extend(
                r.events
                    .iter()
                    .filter(|e| e.r#type == 1)
                    .filter_map(|e| e.kv.as_ref().map(|kv| kv.mod_revision)),
            );
        }
        assert!(deletes.iter().all(|r| *r == deletes[0]), "{deletes:?}");
        deleted_at.push(deletes[0]);
    }
    assert_eq!(
        deleted_at[0], deleted_at[1],
        "the same revision on every member"
    );
}
