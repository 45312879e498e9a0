//! etcd's Grafana dashboard and Prometheus alerts (etcd's contrib/mixin) work unchanged:
//! every metric they query is exported, with etcd's buckets; streams count as handled when
//! they end; --listen-metrics-urls serves /metrics and /health on a port of their own.

use oxcd_api::etcdserverpb::watch_client::WatchClient;
use oxcd_api::etcdserverpb::{watch_request, WatchCreateRequest, WatchRequest};
use oxcd_tests::cluster::{Cluster, Spec};
use oxcd_tests::wait::eventually;
use oxcd_tests::{free_port, http_get, Kind, Server};
use std::time::Duration;

/// Every metric etcd's mixin (main, as 3.6) queries, and the two the issue names besides.
const MIXIN: &[&str] = &[
    "etcd_server_has_leader",
    "etcd_server_leader_changes_seen_total",
    "grpc_server_started_total",
    "grpc_server_handled_total",
    "grpc_server_handling_seconds",
    "etcd_network_peer_round_trip_time_seconds",
    "etcd_network_peer_sent_failures_total",
    "etcd_network_peer_sent_bytes_total",
    "etcd_network_peer_received_bytes_total",
    "etcd_network_client_grpc_received_bytes_total",
    "etcd_network_client_grpc_sent_bytes_total",
    "etcd_server_proposals_failed_total",
    "etcd_server_proposals_pending",
    "etcd_server_proposals_committed_total",
    "etcd_server_proposals_applied_total",
    "etcd_disk_wal_fsync_duration_seconds",
    "etcd_disk_backend_commit_duration_seconds",
    "etcd_mvcc_db_total_size_in_bytes",
    "etcd_mvcc_db_total_size_in_use_in_bytes",
    "etcd_server_quota_backend_bytes",
    "process_resident_memory_bytes",
    "etcd_server_heartbeat_send_failures_total",
    "etcd_server_slow_apply_total",
];

/// The `le` bounds of a histogram's series matching `labels` (etcd's buckets, compared).
fn buckets(text: &str, name: &str) -> Vec<String> {
    let mut les: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}_bucket{{")))
        .filter_map(|l| {
            l.split("le=\"")
                .nth(1)?
                .split('"')
                .next()
                .map(str::to_string)
        })
        .collect();
    les.dedup();
    let mut seen = std::collections::BTreeSet::new();
    les.retain(|le| seen.insert(le.clone()));
    les
}

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_exports_every_metric_etcds_dashboards_and_alerts_query() {
    let c = Cluster::start(Spec {
        flags: vec!["--metrics=extensive".into()],
        ..Spec::new(3)
    })
    .await;
    let leader = c.wait_leader(Duration::from_secs(20)).await;
    c.put(leader, "m", "v").await.expect("put");
    // A watch stream the client ends: etcd counts it handled, Canceled.
    let mut watch = WatchClient::new(c.patient_channel(leader).await);
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let create = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: b"m".to_vec(),
                ..Default::default()
            },
        )),
    };
    tx.send(create).await.expect("send");
    let mut stream = watch
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("watch")
        .into_inner();
    stream.message().await.expect("created");
    // The client goes away: the server ends the stream and counts it handled (etcd 3.4 says
    // Canceled; a stream the server saw end first says OK).
    drop(stream);
    drop((tx, watch));
    let ep = c.members[leader].server.endpoint();
    let watches_handled = |text: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with("grpc_server_handled_total{"))
            .filter(|l| {
                l.contains("grpc_method=\"Watch\"") && l.contains("grpc_type=\"bidi_stream\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    eventually(
        "the ended watch counted as handled",
        Duration::from_secs(30),
        || {
            let ep = ep.clone();
            async move { watches_handled(&http_get(&ep, "/metrics").1) >= 1.0 }
        },
    )
    .await;
    eventually("peer round trips measured", Duration::from_secs(60), || {
        let ep = ep.clone();
        async move {
            http_get(&ep, "/metrics")
                .1
                .contains("etcd_network_peer_round_trip_time_seconds_count")
        }
    })
    .await;
    let (_, text) = http_get(&ep, "/metrics");
    let missing: Vec<&&str> = MIXIN
        .iter()
        .filter(|name| !text.contains(&format!("# TYPE {name} ")))
        .collect();
    assert!(missing.is_empty(), "not exported: {missing:?}");
    let disk: Vec<String> = (0..14)
        .map(|i| format!("{}", 0.001 * f64::powi(2.0, i)))
        .collect();
    let mut disk = disk;
    disk.push("+Inf".into());
    assert_eq!(buckets(&text, "etcd_disk_wal_fsync_duration_seconds"), disk);
    let rtt: Vec<String> = (0..16)
        .map(|i| format!("{}", 0.0001 * f64::powi(2.0, i)))
        .chain(["+Inf".to_string()])
        .collect();
    assert_eq!(
        buckets(&text, "etcd_network_peer_round_trip_time_seconds"),
        rtt
    );
    assert_eq!(
        buckets(&text, "grpc_server_handling_seconds"),
        ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"]
    );
    for follower in (0..3).filter(|i| *i != leader) {
        let to = format!("{:x}", c.member_id(follower).await);
        assert!(
            value(
                &text,
                &format!("etcd_network_peer_sent_bytes_total{{To=\"{to}\"}}")
            ) > 0.0
        );
        assert_eq!(
            value(
                &text,
                &format!("etcd_network_peer_sent_failures_total{{To=\"{to}\"}}")
            ),
            0.0
        );
    }
    assert!(value(&text, "etcd_network_client_grpc_received_bytes_total") > 0.0);
    assert!(value(&text, "etcd_network_client_grpc_sent_bytes_total") > 0.0);
    // Every RPC's series exist from the start, at 0 until used.
    assert_eq!(
        value(&text, "grpc_server_handled_total{grpc_code=\"DataLoss\",grpc_method=\"Compact\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"}"),
        0.0
    );
}

#[tokio::test]
async fn listen_metrics_urls_serve_metrics_and_health_and_nothing_else() {
    let port = free_port();
    let server = Server::start(
        Kind::Oxcd,
        &[&format!("--listen-metrics-urls=http://127.0.0.1:{port}")],
    );
    server.ready().await;
    let metrics = format!("127.0.0.1:{port}");
    let (code, text) = http_get(&metrics, "/metrics");
    assert_eq!(code, 200);
    assert!(
        text.contains("# TYPE etcd_server_has_leader gauge"),
        "{text}"
    );
    assert_eq!(
        http_get(&metrics, "/health"),
        (200, r#"{"health":"true","reason":""}"#.to_string())
    );
    assert_eq!(http_get(&metrics, "/version").0, 404);
    assert!(!server.log().contains("listen-metrics-urls is accepted"));
}
