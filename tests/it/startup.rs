//! What operators and scripts see: etcd's startup milestones in JSON logs, flag errors in
//! etcd's words, ETCD_* variables, identity stable across restarts.

use oxcd_api::etcdserverpb::{request_op, PutRequest, RangeRequest, RequestOp, TxnRequest};
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
    let put = |k: &str| RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: k.into(),
            ..Default::default()
        })),
    };
    let txn = TxnRequest {
        compare: vec![],
        success: vec![put("a"), put("b"), put("c")],
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
    let put = kv
        .put(PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        })
        .await
        .expect("put")
        .into_inner();
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
