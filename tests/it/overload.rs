//! Overload: a few clients misbehave, the rest are served. Each test loads the machine, so
//! they run in nextest's `heavy` group.

use oxcd_api::etcdserverpb::kv_client::KvClient;
use oxcd_api::etcdserverpb::{RangeRequest, RequestOp, TxnRequest};
use oxcd_tests::kv::put;
use oxcd_tests::wait::eventually;
use oxcd_tests::{http_get, Kind, Server};
use std::time::{Duration, Instant};

/// How many Range calls the server has taken in, from its /metrics.
fn ranges_started(server: &Server) -> f64 {
    let (_, text) = http_get(&server.endpoint(), "/metrics");
    text.lines()
        .filter(|l| {
            l.starts_with("grpc_server_started_total") && l.contains("grpc_method=\"Range\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Full-keyspace ranges, more of them than the server has runtime threads, leave the
/// runtime free: a small write made while they are being served is answered before any of
/// them (they once ran on the async runtime's few threads, and everything else waited).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn big_ranges_do_not_hold_up_small_requests() {
    const KEYS: usize = 10_000;
    const BIG: usize = 8;
    let server = Server::start(Kind::Oxcd, &[]);
    let mut kv = server.ready().await;
    let value = vec![b'v'; 4096];
    for chunk in 0..KEYS / 100 {
        let success: Vec<RequestOp> = (0..100)
            .map(|i| put(format!("big/{:06}", chunk * 100 + i), value.clone()).into())
            .collect();
        kv.txn(TxnRequest {
            success,
            ..Default::default()
        })
        .await
        .expect("load");
    }
    let before = ranges_started(&server);
    let channel = server.channel().await.expect("channel");
    let big: Vec<_> = (0..BIG)
        .map(|_| {
            let mut kv = KvClient::new(channel.clone()).max_decoding_message_size(usize::MAX);
            tokio::spawn(async move {
                let resp = kv
                    .range(RangeRequest {
                        key: b"big/".to_vec(),
                        range_end: oxcd_api::prefix_end(b"big/"),
                        ..Default::default()
                    })
                    .await
                    .expect("a big range");
                assert_eq!(resp.into_inner().kvs.len(), KEYS);
                Instant::now()
            })
        })
        .collect();
    eventually(
        "the server takes every big range in",
        Duration::from_secs(60),
        || {
            let server = &server;
            async move { ranges_started(server) >= before + BIG as f64 }
        },
    )
    .await;
    kv.put(put("small", "write")).await.expect("a small write");
    let small_done = Instant::now();
    let mut first_big = None::<Instant>;
    for b in big {
        let done = b.await.expect("big range task");
        first_big = Some(first_big.map_or(done, |f| f.min(done)));
    }
    let first_big = first_big.expect("big ranges ran");
    assert!(
        small_done < first_big,
        "the small write waited for a big range ({:?} after it)",
        small_done - first_big
    );
}
