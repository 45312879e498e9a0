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

/// The mixed overload at the scale CI affords, run by `oxcd-bench overload` (the
/// same tool runs the full 1 GB, 60 s version against oxcd and etcd side by side; see
/// README). All at once: small puts and linearizable gets (the victims), full-keyspace,
/// keys-only and count-only ranges, watchers that never read beside a writer of 256 KiB
/// values, watchers resuming 1,000 revisions back, 1,000 leases expiring together, a
/// wrong-password login flood, a compaction of most of the history and a follower's
/// defragmentation. The cluster must keep its leader, its memory bound and its small
/// requests answered; every resuming watcher must see the same events, in order, up to the
/// end; every expired lease's key must go; and the members' HashKV must agree.
#[test]
fn a_cluster_under_mixed_overload_keeps_its_leader_watchers_and_small_requests() {
    let oxcd = oxcd_tests::bin("oxcd");
    let args: Vec<String> = [
        "overload",
        "--run=oxcd",
        &format!("--oxcd={}", oxcd.display()),
        "--keys=20000",
        "--value-size=1024",
        "--seconds=20",
        "--victims=8",
        "--rangers=4",
        "--counters=2",
        "--stalled-watchers=20",
        "--big-value=262144",
        "--resumers=200",
        "--leases=1000",
        "--login-flooders=2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (out, err, code) = oxcd_tests::run_tool(&oxcd_tests::bin("oxcd-bench"), &args, None);
    assert_eq!(code, 0, "oxcd-bench overload failed:\n{out}\n{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line:\n{out}\n{err}"));
    let result: std::collections::HashMap<&str, &str> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let num = |k: &str| -> f64 {
        result
            .get(k)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{k} missing in {line}"))
    };
    let report = format!("{out}\n{err}");
    assert_eq!(num("elections"), 0.0, "the leader changed:\n{report}");
    assert_eq!(result.get("hashkv_agree"), Some(&"true"), "{report}");
    assert_eq!(num("resumers_caught_up"), num("resumers"), "{report}");
    assert_eq!(num("resumers_disagree"), 0.0, "{report}");
    assert_eq!(num("order_violations"), 0.0, "{report}");
    assert_eq!(num("lease_keys_left"), 0.0, "{report}");
    assert_eq!(
        num("failures"),
        0.0,
        "compaction and defrag succeed:\n{report}"
    );
    // Bounds for a debug build on a 2-core machine that also runs the clients and the other
    // two members (measured: p99 2-3.5 s, mostly while a follower defragments; before this
    // issue's fixes a stalled apply or a lost leader took it past the bench's 10 s timeout).
    // The release comparison with etcd is `oxcd-bench overload`, not a timed test.
    assert!(num("peak_rss_mb") < 1024.0, "memory bound:\n{report}");
    assert!(num("victim_p99_ms") < 6000.0, "victims' p99:\n{report}");
    assert!(num("victim_ops") > 500.0, "victims were served:\n{report}");
    assert!(num("ranges") > 0.0 && num("big_puts") > 0.0, "{report}");
}

/// The server runs without transparent huge pages: the first touch of one zeroes 2 MiB, and
/// under a put load such faults stalled the apply thread 10-25 ms at a time, every waiting
/// client with it (put p99 3x worse than with them off, `oxcd-bench compare --sections cost`).
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_runs_without_transparent_huge_pages() {
    let server = Server::start(Kind::Oxcd, &[]);
    server.ready().await;
    let pid = server.pid().expect("running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let thp = status
        .lines()
        .find(|l| l.starts_with("THP_enabled:"))
        .expect("the kernel reports THP_enabled");
    assert_eq!(
        thp.split_whitespace().nth(1),
        Some("0"),
        "huge pages are on for the server: {thp}"
    );
}
