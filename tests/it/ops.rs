//! Operations: backups and restore, the NOSPACE quota and alarms, defragmentation under load,
//! HTTP health and metrics; with the real etcdctl where it drives them.

use oxcd_api::etcdserverpb::{
    compare, CompactionRequest, Compare, DeleteRangeRequest, LeaseGrantRequest, PutRequest,
    RangeRequest, RequestOp, TxnRequest,
};
use oxcd_tests::cluster::{Cluster, Spec};
use oxcd_tests::kv::put;
use oxcd_tests::wait::{eventually, retry, POLL};
use oxcd_tests::{bin, ctl, http_get, run_tool, system_bin, Kind, Server};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn big_put(key: &str) -> PutRequest {
    put(key, vec![b'x'; 100_000])
}

#[tokio::test]
async fn quota_raises_nospace_refuses_growth_and_recovers_after_defrag_and_disarm() {
    let mut server = Server::start(Kind::Oxcd, &["--quota-backend-bytes=4000000"]);
    let mut kv = server.ready().await;
    let ep = server.endpoint();
    let etcdctl = system_bin("etcdctl");

    let mut refused = None;
    for i in 0..200 {
        if let Err(status) = kv.put(big_put(&format!("big/{i:03}"))).await {
            refused = Some(status);
            break;
        }
    }
    let refused = refused.expect("a 4 MB quota refuses before 20 MB of puts");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert_eq!(
        refused.message(),
        "etcdserver: mvcc: database space exceeded"
    );

    let (list, _, rc) = ctl(&etcdctl, &ep, &["alarm", "list"]);
    assert_eq!(rc, 0);
    assert!(
        regex::Regex::new(r"^memberID:\d+ alarm:NOSPACE \n$")
            .expect("regex")
            .is_match(&list),
        "{list:?}"
    );
    let (status, _, _) = ctl(&etcdctl, &ep, &["endpoint", "status"]);
    assert!(status.contains("alarm:NOSPACE"), "{status}");
    let (code, body) = http_get(&ep, "/health");
    assert_eq!(
        (code, body.as_str()),
        (503, r#"{"health":"false","reason":"ALARM NOSPACE"}"#)
    );
    let (code, _) = http_get(&ep, "/health?exclude=NOSPACE");
    assert_eq!(code, 200);

    // Even a small put, a txn that puts, and a lease grant are refused; reads and deletes work.
    let small = put("small", "v");
    let e = kv.put(small.clone()).await.expect_err("capped");
    assert_eq!(e.message(), "etcdserver: mvcc: database space exceeded");
    let put_op = RequestOp::from(small.clone());
    let e = kv
        .txn(TxnRequest {
            success: vec![put_op],
            ..Default::default()
        })
        .await
        .expect_err("txn with a put is capped");
    assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    let mut lease = oxcd_api::etcdserverpb::lease_client::LeaseClient::new(
        tonic::transport::Channel::from_shared(server.url())
            .expect("uri")
            .connect()
            .await
            .expect("connect"),
    );
    let e = lease
        .lease_grant(LeaseGrantRequest { ttl: 60, id: 0 })
        .await
        .expect_err("lease grant is capped");
    assert_eq!(e.message(), "etcdserver: mvcc: database space exceeded");
    let all = RangeRequest {
        key: b"big/".to_vec(),
        range_end: b"big0".to_vec(),
        count_only: true,
        ..Default::default()
    };
    let stored = kv
        .range(all.clone())
        .await
        .expect("reads work")
        .into_inner();
    assert!(stored.count > 10, "{stored:?}");
    let txn_delete = RequestOp::from(DeleteRangeRequest {
        key: b"big/".to_vec(),
        range_end: b"big0".to_vec(),
        ..Default::default()
    });
    let cmp = Compare {
        key: b"big/000".to_vec(),
        target: compare::CompareTarget::Version as i32,
        result: compare::CompareResult::Greater as i32,
        target_union: Some(compare::TargetUnion::Version(0)),
        ..Default::default()
    };
    let deleted = kv
        .txn(TxnRequest {
            compare: vec![cmp],
            success: vec![txn_delete],
            ..Default::default()
        })
        .await
        .expect("a txn that only deletes is allowed")
        .into_inner();
    assert!(deleted.succeeded);

    // The alarm is in the backend: a restart keeps it.
    server.stop();
    server.spawn();
    let mut kv = server.ready().await;
    let (list, _, _) = ctl(&etcdctl, &ep, &["alarm", "list"]);
    assert!(list.contains("alarm:NOSPACE"), "{list:?}");
    assert_eq!(
        kv.put(small.clone())
            .await
            .expect_err("still capped")
            .code(),
        tonic::Code::ResourceExhausted
    );

    // etcd's recovery: compact, defragment, disarm.
    let rev = kv
        .range(all)
        .await
        .expect("range")
        .into_inner()
        .header
        .expect("header")
        .revision;
    kv.compact(CompactionRequest {
        revision: rev,
        physical: true,
    })
    .await
    .expect("compaction works under NOSPACE");
    let (out, err, rc) = ctl(&etcdctl, &ep, &["defrag"]);
    assert_eq!(rc, 0, "{err}");
    assert_eq!(out, format!("Finished defragmenting etcd member[{ep}]\n"));
    let (out, _, rc) = ctl(&etcdctl, &ep, &["alarm", "disarm"]);
    assert_eq!(rc, 0);
    assert!(
        out.contains("alarm:NOSPACE"),
        "disarm prints what it disarmed: {out:?}"
    );
    let (list, _, _) = ctl(&bin("oxcdctl"), &ep, &["alarm", "list"]);
    assert_eq!(list, "");
    kv.put(small).await.expect("writes resume");
    assert_eq!(http_get(&ep, "/health").0, 200);
}

/// etcd answers Defragment, and MoveLeader (to itself here), with no response header.
#[tokio::test]
async fn defragment_and_move_leader_answer_without_a_header_as_etcd_does() {
    use oxcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
    use oxcd_api::etcdserverpb::{DefragmentRequest, MoveLeaderRequest, StatusRequest};
    for kind in [Kind::Oxcd, Kind::Etcd] {
        let server = Server::start(kind, &[]);
        server.ready().await;
        let mut m = MaintenanceClient::new(server.channel().await.expect("channel"));
        let defrag = m
            .defragment(DefragmentRequest {})
            .await
            .expect("defragment")
            .into_inner();
        assert_eq!(defrag.header, None, "{kind:?}");
        let me = m
            .status(StatusRequest {})
            .await
            .expect("status")
            .into_inner()
            .leader;
        let moved = m
            .move_leader(MoveLeaderRequest { target_id: me })
            .await
            .expect("move leader to itself")
            .into_inner();
        assert_eq!(moved.header, None, "{kind:?}");
        let (out, err, code) = ctl(
            &bin("oxcdctl"),
            &server.endpoint(),
            &["move-leader", &format!("{me:x}"), "-w", "json"],
        );
        assert_eq!((out.as_str(), code), ("{}\n", 0), "{kind:?}: {err}");
    }
}

/// etcd's own e2e alarm test uses a quota of 13 pages: a fresh backend takes the first small
/// put (etcd's and ours alike), and puts of 4 KiB raise NOSPACE before the data passes the
/// quota. (etcd weighs its file size as of its last batch commit, so a fast enough writer
/// gets past its quota; oxcd weighs the data as it is.)
#[tokio::test]
async fn a_tiny_quota_takes_a_small_put_and_refuses_growth_before_the_data_passes_it() {
    const QUOTA: usize = 53248;
    for kind in [Kind::Oxcd, Kind::Etcd] {
        let server = Server::start(kind, &[&format!("--quota-backend-bytes={QUOTA}")]);
        let mut kv = server.ready().await;
        kv.put(put("1st_test", vec![b'a'; 64]))
            .await
            .unwrap_or_else(|e| panic!("{kind:?} refused the first small put: {e}"));
        if kind == Kind::Etcd {
            continue;
        }
        let mut stored = 64;
        let refused = loop {
            match kv.put(put(format!("big/{stored}"), vec![b'x'; 4096])).await {
                Ok(_) => stored += 4096,
                Err(e) => break e,
            }
            assert!(
                stored <= QUOTA,
                "{stored} bytes stored under a {QUOTA} byte quota"
            );
        };
        assert_eq!(
            (refused.code(), refused.message()),
            (
                tonic::Code::ResourceExhausted,
                "etcdserver: mvcc: database space exceeded"
            )
        );
        let (list, _, _) = ctl(&bin("oxcdctl"), &server.endpoint(), &["alarm", "list"]);
        assert!(list.contains("alarm:NOSPACE"), "{list:?}");
    }
}

#[tokio::test]
async fn metrics_version_and_health_are_served_on_the_client_port() {
    let server = Server::start(Kind::Oxcd, &["--backend-batch-interval=100ms"]);
    let mut kv = server.ready().await;
    for i in 0..20 {
        kv.put(put(format!("m/{i}"), "v")).await.expect("put");
    }
    let refused = kv.put(put("", "v")).await.expect_err("an empty key");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let ep = server.endpoint();
    let (code, body) = http_get(&ep, "/version");
    assert_eq!(code, 200);
    let v: serde_json_like::Value = serde_json_like::parse(&body);
    assert!(v.has("etcdserver") && v.has("etcdcluster"), "{body}");
    assert_eq!(
        http_get(&ep, "/health"),
        (200, r#"{"health":"true","reason":""}"#.into())
    );
    assert_eq!(http_get(&ep, "/health?serializable=true").0, 200);
    assert_eq!(http_get(&ep, "/livez"), (200, "ok".into()));
    assert_eq!(http_get(&ep, "/readyz"), (200, "ok".into()));

    // A durable backend commit follows within the batch interval (etcd's 100 ms here) of writes.
    let deadline = Instant::now() + Duration::from_secs(10);
    let scrape = loop {
        let (code, text) = http_get(&ep, "/metrics");
        assert_eq!(code, 200);
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .expect("Prometheus text format");
        if text.contains("etcd_disk_backend_commit_duration_seconds_count 0") {
            assert!(Instant::now() < deadline, "no durable backend commit");
            tokio::time::sleep(Duration::from_millis(20)).await;
            kv.put(put("m/extra", "")).await.expect("put");
            continue;
        }
        break scrape;
    };
    let value = |name: &str, label: Option<(&str, &str)>| -> Option<f64> {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| match &s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => *v,
                prometheus_parse::Value::Histogram(b) => b.last().map_or(0.0, |c| c.count),
                prometheus_parse::Value::Summary(_) => 0.0,
            })
            .reduce(|a, b| a + b)
    };
    assert_eq!(value("etcd_server_has_leader", None), Some(1.0));
    assert_eq!(value("etcd_server_is_leader", None), Some(1.0));
    assert!(value("etcd_disk_wal_fsync_duration_seconds", None).unwrap_or(0.0) >= 20.0);
    assert!(value("etcd_disk_backend_commit_duration_seconds", None).unwrap_or(0.0) >= 1.0);
    assert!(value("etcd_mvcc_db_total_size_in_bytes", None).unwrap_or(0.0) > 0.0);
    assert!(value("etcd_mvcc_db_total_size_in_use_in_bytes", None).unwrap_or(0.0) > 0.0);
    assert!(value("etcd_server_proposals_applied_total", None).unwrap_or(0.0) >= 21.0);
    assert_eq!(
        value("grpc_server_handled_total", Some(("grpc_code", "OK"))).map(|_| ()),
        Some(())
    );
    let puts = value("grpc_server_started_total", Some(("grpc_method", "Put")));
    assert!(puts.unwrap_or(0.0) >= 20.0, "{puts:?}");
    assert_eq!(
        value("grpc_server_handled_total", Some(("grpc_method", "Put"))),
        puts
    );
    let refused_puts: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "grpc_server_handled_total")
        .filter(|s| s.labels.get("grpc_method") == Some("Put"))
        .filter(|s| s.labels.get("grpc_code") == Some("InvalidArgument"))
        .filter_map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        })
        .collect();
    assert_eq!(refused_puts, vec![1.0], "the refused put, by its code");
    assert_eq!(value("etcd_debugging_mvcc_watcher_total", None), Some(0.0));
    assert_eq!(value("etcd_debugging_lease_total", None), Some(0.0));
    assert!(value("process_resident_memory_bytes", None).unwrap_or(0.0) > 1e6);
}

/// Minimal JSON key check without pulling serde into the test crate twice.
mod serde_json_like {
    pub struct Value(String);
    pub fn parse(s: &str) -> Value {
        assert!(
            s.starts_with('{') && s.ends_with('}'),
            "not a JSON object: {s}"
        );
        Value(s.to_string())
    }
    impl Value {
        pub fn has(&self, key: &str) -> bool {
            self.0.contains(&format!("\"{key}\":"))
        }
    }
}

/// The seed's disaster recovery: a backup taken from a 3-member cluster under load, every
/// member stopped, each restored from that one file, started again.
#[tokio::test]
async fn cluster_backup_under_load_restores_every_member() {
    let mut c = Cluster::start(Spec::new(3)).await;
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop) = (acked.clone(), stop.clone());
        let mut kv = c.patient_kv(1).await;
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Acquire) && n < 100_000 {
                let key = format!("load/{n:06}");
                if kv.put(put(key.clone(), vec![b'v'; 256])).await.is_ok() {
                    acked.lock().expect("acked").push(key);
                }
                n += 1;
            }
        })
    };
    eventually("writes do not get through", Duration::from_secs(30), || {
        let n = acked.lock().expect("acked").len();
        async move { n >= 300 }
    })
    .await;
    let before_save: Vec<String> = acked.lock().expect("acked").clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let backup = dir.path().join("backup.db");
    let backup_s = backup.display().to_string();
    let (out, err, rc) = ctl(
        &system_bin("etcdctl"),
        &c.url(0),
        &["snapshot", "save", &backup_s],
    );
    assert_eq!(rc, 0, "etcdctl snapshot save: {err}");
    assert_eq!(out, format!("Snapshot saved at {backup_s}\n"));
    let ours = dir.path().join("ours.db").display().to_string();
    let (out, err, rc) = ctl(&bin("oxcdctl"), &c.url(2), &["snapshot", "save", &ours]);
    assert_eq!(
        (rc, out),
        (0, format!("Snapshot saved at {ours}\n")),
        "{err}"
    );
    stop.store(true, Ordering::Release);
    writer.await.expect("writer");

    let (status, err, rc) = run_tool(
        &bin("oxcdctl"),
        &[
            "snapshot".into(),
            "status".into(),
            backup_s.clone(),
            "-w".into(),
            "json".into(),
        ],
        None,
    );
    assert_eq!(rc, 0, "{err}");
    assert!(status.contains("\"revision\":"), "{status}");

    // A damaged or truncated backup is refused and writes nothing.
    let bytes = std::fs::read(&backup).expect("read backup");
    let truncated = dir.path().join("truncated.db");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 3] ^= 0x40;
    let damaged = dir.path().join("damaged.db");
    std::fs::write(&damaged, &flipped).expect("write");
    for (file, want) in [
        (&truncated, "snapshot missing hash"),
        (&damaged, "expected sha256"),
    ] {
        let target = dir.path().join("never");
        let (_, err, rc) = run_tool(
            &bin("oxcdctl"),
            &[
                "snapshot".into(),
                "restore".into(),
                file.display().to_string(),
                "--data-dir".into(),
                target.display().to_string(),
            ],
            None,
        );
        assert_eq!(rc, 1, "{err}");
        assert!(err.contains(want), "{err}");
        assert!(!target.exists(), "nothing written for {file:?}");
    }

    for i in 0..3 {
        c.members[i].server.stop();
    }
    let initial = c.initial_cluster();
    for i in 0..3 {
        let data_dir = c.members[i].server.data_dir.clone();
        std::fs::remove_dir_all(&data_dir).expect("remove old data dir");
        let (_, err, rc) = run_tool(
            &bin("oxcdctl"),
            &[
                "snapshot".into(),
                "restore".into(),
                backup_s.clone(),
                "--name".into(),
                c.members[i].name.clone(),
                "--data-dir".into(),
                data_dir.display().to_string(),
                "--initial-cluster".into(),
                initial.clone(),
                "--initial-cluster-token".into(),
                "restored-cluster".into(),
                "--initial-advertise-peer-urls".into(),
                c.members[i].advertised_peer.clone(),
            ],
            None,
        );
        assert_eq!(rc, 0, "restore member {i}: {err}");
        assert!(err.contains("restored snapshot"), "{err}");
    }
    for i in 0..3 {
        c.members[i].server.spawn();
    }
    for i in 0..3 {
        c.members[i].server.ready().await;
    }
    c.wait_leader(Duration::from_secs(30)).await;

    let mut cluster_ids = Vec::new();
    for i in 0..3 {
        let mut kv = c.patient_kv(i).await;
        let resp = kv
            .range(RangeRequest {
                key: b"load/".to_vec(),
                range_end: b"load0".to_vec(),
                keys_only: true,
                ..Default::default()
            })
            .await
            .expect("range after restore")
            .into_inner();
        cluster_ids.push(resp.header.map_or(0, |h| h.cluster_id));
        let present: std::collections::HashSet<Vec<u8>> =
            resp.kvs.into_iter().map(|kv| kv.key).collect();
        let missing: Vec<&String> = before_save
            .iter()
            .filter(|k| !present.contains(k.as_bytes()))
            .collect();
        assert!(
            missing.is_empty(),
            "member {i} lost {} keys: {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        kv.put(put(format!("after-restore/{i}"), "ok"))
            .await
            .expect("clients carry on");
    }
    assert!(cluster_ids
        .iter()
        .all(|id| *id == cluster_ids[0] && *id != 0));
    let hashes = c.settled_hashes().await;
    assert!(
        hashes.windows(2).all(|w| w[0] == w[1]),
        "hashkv differs: {hashes:?}"
    );
    let (out, err, rc) = ctl(
        &system_bin("etcdctl"),
        &c.endpoints(),
        &["endpoint", "hashkv"],
    );
    assert_eq!(rc, 0, "{err}");
    assert_eq!(out.lines().count(), 3, "{out}");
}

/// Defragmenting one member while clients read and write through all three: nobody sees
/// an error, and the file shrinks once most keys are gone.
#[tokio::test]
async fn cluster_defrag_under_load_shrinks_the_file_without_client_errors() {
    let c = Cluster::start(Spec::new(3)).await;
    let mut kv = c.patient_kv(0).await;
    for i in 0..3000 {
        kv.put(put(format!("fill/{i:05}"), vec![b'f'; 1024]))
            .await
            .expect("fill");
    }
    let resp = kv
        .delete_range(DeleteRangeRequest {
            key: b"fill/".to_vec(),
            range_end: b"fill/02700".to_vec(),
            ..Default::default()
        })
        .await
        .expect("delete most")
        .into_inner();
    let rev = resp.header.expect("header").revision;
    kv.compact(CompactionRequest {
        revision: rev,
        physical: true,
    })
    .await
    .expect("compact");
    // Let the compaction's commit reach disk before measuring.
    let before = retry(Duration::from_secs(10), POLL, || async {
        let s = c.status(0).await.expect("status");
        if s.raft_applied_index >= s.raft_index {
            Ok(s.db_size)
        } else {
            Err(s.db_size)
        }
    })
    .await
    .unwrap_or_else(|db_size| db_size);

    let stop = Arc::new(AtomicBool::new(false));
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let ops = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut load = Vec::new();
    for i in 0..3 {
        let mut kv = c.patient_kv(i).await;
        let (stop, errors, ops) = (stop.clone(), errors.clone(), ops.clone());
        load.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Acquire) {
                let key = format!("during/{i}/{}", n % 100).into_bytes();
                if let Err(e) = kv.put(put(key.clone(), "v")).await {
                    errors
                        .lock()
                        .expect("errors")
                        .push(format!("put via {i}: {e}"));
                }
                let get = kv.range(RangeRequest {
                    key,
                    ..Default::default()
                });
                if let Err(e) = get.await {
                    errors
                        .lock()
                        .expect("errors")
                        .push(format!("get via {i}: {e}"));
                }
                ops.fetch_add(2, Ordering::Relaxed);
                n += 1;
            }
        }));
    }
    eventually("load does not run", Duration::from_secs(10), || {
        let n = ops.load(Ordering::Relaxed);
        async move { n >= 100 }
    })
    .await;
    let started_ops = ops.load(Ordering::Relaxed);
    let (out, err, rc) = ctl(&bin("oxcdctl"), &c.url(0), &["defrag"]);
    assert_eq!(rc, 0, "{err}");
    assert_eq!(
        out,
        format!("Finished defragmenting etcd member[{}]\n", c.url(0))
    );
    eventually("load stalls after defrag", Duration::from_secs(10), || {
        let n = ops.load(Ordering::Relaxed);
        async move { n >= started_ops + 100 }
    })
    .await;
    stop.store(true, Ordering::Release);
    for t in load {
        t.await.expect("load task");
    }
    let errors = errors.lock().expect("errors").clone();
    assert!(errors.is_empty(), "clients saw errors: {errors:?}");
    let after = c.status(0).await.expect("status").db_size;
    assert!(after * 2 < before, "db size {before} -> {after}");

    let (out, err, rc) = ctl(&system_bin("etcdctl"), &c.url(1), &["defrag", "--cluster"]);
    assert_eq!(rc, 0, "{err}");
    assert_eq!(
        out.matches("Finished defragmenting etcd member[").count(),
        3,
        "{out}"
    );
    let hashes = c.settled_hashes().await;
    assert!(
        hashes.windows(2).all(|w| w[0] == w[1]),
        "hashkv differs: {hashes:?}"
    );
}

/// kube-apiserver serves consistent reads from its watch cache only when the server's
/// version is at least 3.5.13 (its progress notifications follow their events); a lower or
/// unparsable one turns that off. Every place the version shows says the same.
#[tokio::test]
async fn the_reported_version_is_one_kube_apiserver_trusts_everywhere() {
    let server = Server::start(Kind::Oxcd, &[]);
    server.ready().await;
    let channel = server.channel().await.expect("channel");
    let status = oxcd_api::etcdserverpb::maintenance_client::MaintenanceClient::new(channel)
        .status(oxcd_api::etcdserverpb::StatusRequest {})
        .await
        .expect("status")
        .into_inner();
    let parts: Vec<u64> = status
        .version
        .split('.')
        .map(|p| p.parse().expect("a numeric version"))
        .collect();
    assert_eq!(parts.len(), 3, "{}", status.version);
    assert!(
        parts[..2] == [3, 5] && parts[2] >= 13,
        "version {} turns off kube-apiserver's consistent reads from cache",
        status.version
    );
    let v = &status.version;
    let ep = server.endpoint();
    let (code, body) = http_get(&ep, "/version");
    assert_eq!(code, 200);
    assert!(
        body.contains(&format!(r#""etcdserver":"{v}""#))
            && body.contains(r#""etcdcluster":"3.5.0""#),
        "{body}"
    );
    let (_, metrics) = http_get(&ep, "/metrics");
    assert!(
        metrics.contains(&format!("etcd_server_version{{server_version=\"{v}\"}} 1")),
        "{metrics}"
    );
    let (out, _, code) = run_tool(&bin("oxcdctl"), &["version".to_string()], None);
    assert_eq!(code, 0);
    assert!(out.starts_with(&format!("etcdctl version: {v} ")), "{out}");
    let (out, _, code) = run_tool(&bin("oxcdutl"), &["version".to_string()], None);
    assert_eq!(code, 0);
    assert!(out.starts_with(&format!("etcdutl version: {v} ")), "{out}");
}

/// Maintenance.Downgrade as etcd 3.5 answers it, through oxcdctl's `downgrade` (etcdctl
/// 3.6's): a target one minor below the cluster version validates, a job is recorded and
/// survives a restart, a second one and a cancel without one are refused.
#[tokio::test]
async fn downgrade_validates_records_and_cancels_a_job_as_etcd_does() {
    let mut server = Server::start(Kind::Oxcd, &[]);
    server.ready().await;
    let ep = server.endpoint();
    let oxcdctl = bin("oxcdctl");
    let run = |args: &[&str]| {
        let mut a = vec!["downgrade"];
        a.extend(args);
        let (out, err, code) = ctl(&oxcdctl, &ep, &a);
        (out + &err, code)
    };
    let ok = |action: &str| {
        (
            format!("Downgrade {action} success, cluster version 3.5.0\n"),
            0,
        )
    };
    let refused = |message: &str| (format!("Error: etcdserver: {message}\n"), 1);
    assert_eq!(run(&["validate", "3.4"]), ok("validate"));
    assert_eq!(run(&["validate", "3.4.9"]), ok("validate"));
    assert_eq!(
        run(&["validate", "3.3"]),
        refused("invalid downgrade target version")
    );
    assert_eq!(
        run(&["validate", "v3.4"]),
        refused("wrong downgrade target version format")
    );
    assert_eq!(run(&["cancel"]), refused("no inflight downgrade job"));
    assert_eq!(
        run(&["validate"]),
        ("Error: TARGET_VERSION not provided\n".to_string(), 128)
    );
    assert_eq!(run(&["enable", "3.4"]), ok("enable"));
    let in_progress = refused("cluster has a downgrade job in progress");
    assert_eq!(run(&["validate", "3.4"]), in_progress);
    server.stop();
    server.spawn();
    server.ready().await;
    assert_eq!(run(&["enable", "3.4"]), in_progress, "the job is durable");
    assert_eq!(run(&["cancel"]), ok("cancel"));
    assert_eq!(run(&["validate", "3.4"]), ok("validate"));
}
