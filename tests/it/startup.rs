//! What operators and scripts see: etcd's startup milestones in JSON logs, flag errors in
//! etcd's words, ETCD_* variables, identity stable across restarts.

use oxcd_api::etcdserverpb::{RangeRequest, TxnRequest};
use oxcd_tests::kv::put;
use oxcd_tests::{bin, run_tool, Kind, Server};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_name_etcds_milestones_as_json() {
    let server = Server::start(
        Kind::Oxcd,
        &["--enable-pprof", "--auto-compaction-retention=1"],
    );
    server.ready().await;
    for milestone in [
        "published local member to cluster through raft",
        "enabled capabilities for version 3.5",
        "ready to serve client requests",
    ] {
        assert!(
            server
                .wait_for_log(milestone, Duration::from_secs(10))
                .await,
            "no {milestone:?} in:\n{}",
            server.log()
        );
    }
    for line in server.log().lines() {
        assert!(
            line.starts_with("{\"level\":\"")
                && line.contains("\"ts\":\"")
                && line.contains("\"msg\":"),
            "not zap-like JSON: {line}"
        );
    }
    assert!(server.log().contains(
        "flag --enable-pprof is accepted for etcd compatibility but oxcd does not act on it yet"
    ));
}

#[test]
fn bad_flag_values_get_etcds_messages_and_exit_codes() {
    let oxcd = bin("oxcd");
    let (_, err, code) = run_tool(&oxcd, &["--heartbeat-interval=abc".into()], None);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("invalid value \"abc\" for flag -heartbeat-interval: parse error\n"),
        "{err}"
    );
    let (_, err, code) = run_tool(
        &oxcd,
        &[
            "--election-timeout=100".into(),
            "--heartbeat-interval=100".into(),
        ],
        None,
    );
    assert_eq!(code, 1);
    assert!(err.contains("--election-timeout[100ms] should be at least as 5 times as --heartbeat-interval[100ms]"), "{err}");
    let (_, err, code) = run_tool(&oxcd, &["--no-such-flag".into()], None);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("flag provided but not defined: -no-such-flag"),
        "{err}"
    );
    let (out, err, code) = run_tool(&oxcd, &["--help".into()], None);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("--initial-cluster-token") && err.is_empty(),
        "{out}{err}"
    );
    let (out, _, code) = run_tool(&oxcd, &["--version".into()], None);
    assert_eq!(code, 0);
    assert!(out.starts_with("oxcd Version: "), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_environment_variables_configure_the_server() {
    let server = Server::start_with_env(Kind::Oxcd, &[], &[("ETCD_MAX_TXN_OPS", "2")]);
    let mut kv = server.ready().await;
    let txn = TxnRequest {
        compare: vec![],
        success: vec![
            put("a", "").into(),
            put("b", "").into(),
            put("c", "").into(),
        ],
        failure: vec![],
    };
    let err = kv.txn(txn).await.expect_err("3 ops over a limit of 2");
    assert_eq!(
        err.message(),
        "etcdserver: too many operations in txn request"
    );
    assert!(server
        .log()
        .contains("recognized and used environment variable ETCD_MAX_TXN_OPS=2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_and_data_survive_a_restart() {
    let mut server = Server::start(Kind::Oxcd, &[]);
    let mut kv = server.ready().await;
    let put = kv.put(put("k", "v")).await.expect("put").into_inner();
    let before = put.header.expect("header");
    server.stop();
    server.spawn();
    let mut kv = server.ready().await;
    let got = kv
        .range(RangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    let after = got.header.expect("header");
    assert_eq!(
        (after.cluster_id, after.member_id, after.revision),
        (before.cluster_id, before.member_id, before.revision)
    );
    assert!(after.raft_term >= before.raft_term);
    assert_eq!(got.kvs[0].value, b"v");
    assert!(
        server
            .log()
            .matches("ready to serve client requests")
            .count()
            >= 2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_level_filters_what_is_logged() {
    let server = Server::start(Kind::Oxcd, &["--log-level=warn"]);
    server.ready().await;
    assert!(
        server
            .wait_for_log("serving client traffic insecurely", Duration::from_secs(10))
            .await
    );
    let log = server.log();
    assert!(
        !log.contains("\"level\":\"info\""),
        "info lines under --log-level=warn:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oxcd_bench_runs_put_and_range_loads() {
    let server = Server::start(Kind::Oxcd, &[]);
    server.ready().await;
    let bench = bin("oxcd-bench");
    let ep = server.endpoint();
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        a.extend([
            "--endpoints".to_string(),
            ep.clone(),
            "--clients".into(),
            "4".into(),
            "--total".into(),
            "200".into(),
        ]);
        a
    };
    let (out, err, code) = run_tool(&bench, &args(&["put", "--val-size", "16"]), None);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Requests:\t200 (0 errors)") && out.contains("p99:"),
        "{out}"
    );
    let (out, err, code) = run_tool(
        &bench,
        &args(&["range", "00000000", "--consistency", "s"]),
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Requests:\t200 (0 errors)"), "{out}");
    let mut kv = server.ready().await;
    let written = kv
        .range(RangeRequest {
            key: vec![0],
            range_end: vec![0],
            count_only: true,
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    assert!(
        written.count >= 200,
        "the put load wrote {} keys",
        written.count
    );
}
