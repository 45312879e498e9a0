//! Watch against real etcd and under load: the same writes give the same event sequences
//! and the same create/cancel answers; stalled and numerous watchers.

use oxcd_api::etcdserverpb::watch_client::WatchClient;
use oxcd_api::etcdserverpb::watch_create_request::FilterType;
use oxcd_api::etcdserverpb::watch_request::RequestUnion;
use oxcd_api::etcdserverpb::*;
use oxcd_api::mvccpb::event::EventType;
use oxcd_api::mvccpb::Event;
use oxcd_tests::kv::put;
use oxcd_tests::{bin, free_port, system_bin, Kind, Server};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tonic::Streaming;

struct Stream {
    tx: mpsc::Sender<WatchRequest>,
    rx: Streaming<WatchResponse>,
}

/// A watch stream whose first request is `first`: Go gRPC answers a stream's headers only
/// with its first response, so the stream must carry a request before it is awaited.
async fn open(url: &str, first: WatchCreateRequest) -> Stream {
    let ch = Channel::from_shared(url.to_string())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let (tx, rx) = mpsc::channel(1024);
    tx.send(WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(first)),
    })
    .await
    .expect("send");
    // As etcd's Go client: no 4 MiB cap on what a response may hold.
    let rx = WatchClient::new(ch)
        .max_decoding_message_size(usize::MAX)
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("watch stream")
        .into_inner();
    Stream { tx, rx }
}

impl Stream {
    async fn create(&self, c: WatchCreateRequest) {
        self.tx
            .send(WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(c)),
            })
            .await
            .expect("send");
    }

    async fn cancel(&self, watch_id: i64) {
        self.tx
            .send(WatchRequest {
                request_union: Some(RequestUnion::CancelRequest(WatchCancelRequest { watch_id })),
            })
            .await
            .expect("send");
    }

    /// Reads until revision `last`: `count` events, one a revision, no gap, no repeat.
    async fn reads_every_revision_until(&mut self, last: i64, count: usize) {
        let mut revs = Vec::new();
        while revs.last().copied().unwrap_or(0) < last {
            let r = self.next().await;
            revs.extend(
                r.events
                    .iter()
                    .filter_map(|e| e.kv.as_ref().map(|kv| kv.mod_revision)),
            );
        }
        assert_eq!(revs.len(), count);
        assert!(
            revs.windows(2).all(|w| w[1] == w[0] + 1),
            "no gap, no repeat"
        );
    }

    async fn next(&mut self) -> WatchResponse {
        tokio::time::timeout(Duration::from_secs(20), self.rx.message())
            .await
            .expect("a watch response within 20s")
            .expect("stream")
            .expect("open stream")
    }
}

/// What one watch saw: its answers (created/canceled, reasons, compaction) and its events,
/// independent of how they were batched into responses.
#[derive(Debug, Default, PartialEq)]
struct Seen {
    answers: Vec<String>,
    events: Vec<Event>,
}

fn record(seen: &mut BTreeMap<i64, Seen>, r: WatchResponse) {
    let s = seen.entry(r.watch_id).or_default();
    if r.created || r.canceled || r.compact_revision != 0 {
        // etcd 3.4 sends no reason with a compaction; oxcd says which (see README).
        let reason = if r.compact_revision != 0 {
            String::new()
        } else {
            r.cancel_reason.clone()
        };
        s.answers.push(format!(
            "created={} canceled={} compact={} reason={reason:?} rev={}",
            r.created,
            r.canceled,
            r.compact_revision,
            r.header.map_or(0, |h| h.revision)
        ));
    }
    s.events.extend(r.events);
}

/// Reads and records the stream's responses until watch `id` has an event at `revision` or
/// later; fails at `deadline`.
async fn read_until(
    s: &mut Stream,
    seen: &mut BTreeMap<i64, Seen>,
    id: i64,
    revision: i64,
    deadline: Instant,
) {
    while seen
        .get(&id)
        .and_then(|s| s.events.last())
        .and_then(|e| e.kv.as_ref())
        .map_or(0, |kv| kv.mod_revision)
        < revision
    {
        let left = deadline.saturating_duration_since(Instant::now());
        let r = tokio::time::timeout(left, s.next())
            .await
            .unwrap_or_else(|_| panic!("watch {id}'s events stopped before revision {revision}"));
        record(seen, r);
    }
}

/// The same script against a server: writes, watches of every kind, more writes, a
/// compaction and a watch from before it, a cancel.
async fn script(server: &Server, seed: u64) -> BTreeMap<i64, Seen> {
    let mut kv = server.ready().await;
    for (k, v) in [("a", "1"), ("b", "2"), ("a", "3"), ("a/x", "4")] {
        kv.put(put(k, v)).await.expect("put");
    }
    kv.delete_range(DeleteRangeRequest {
        key: b"b".to_vec(),
        ..Default::default()
    })
    .await
    .expect("delete");
    // Revisions of many events, whose previous values are looked up off the runtime.
    let many = |value: &str| TxnRequest {
        success: (0..20)
            .map(|i| put(format!("a/t{i:02}"), value).into())
            .collect(),
        ..Default::default()
    };
    kv.txn(many("first")).await.expect("txn");
    let mut creates = vec![
        WatchCreateRequest {
            key: vec![0],
            range_end: vec![0],
            start_revision: 1,
            prev_kv: true,
            ..Default::default()
        },
        WatchCreateRequest {
            key: b"a".to_vec(),
            start_revision: 2,
            filters: vec![FilterType::Nodelete as i32],
            ..Default::default()
        },
        WatchCreateRequest {
            key: b"a".to_vec(),
            range_end: b"c".to_vec(),
            filters: vec![FilterType::Noput as i32],
            prev_kv: true,
            ..Default::default()
        },
        WatchCreateRequest {
            key: b"b".to_vec(),
            range_end: vec![0],
            ..Default::default()
        },
        WatchCreateRequest {
            key: b"d".to_vec(),
            watch_id: 100,
            ..Default::default()
        },
        WatchCreateRequest {
            key: b"e".to_vec(),
            watch_id: 100,
            ..Default::default()
        },
        WatchCreateRequest {
            key: b"z".to_vec(),
            range_end: b"a".to_vec(),
            ..Default::default()
        },
        WatchCreateRequest {
            key: b"c".to_vec(),
            start_revision: 1_000,
            ..Default::default()
        },
    ];
    let mut seen = BTreeMap::new();
    let first = creates.remove(0);
    let mut s = open(&server.url(), first).await;
    let r = s.next().await;
    record(&mut seen, r);
    for c in creates {
        s.create(c).await;
        let r = s.next().await;
        record(&mut seen, r);
    }
    kv.txn(many("second")).await.expect("txn");
    kv.delete_range(DeleteRangeRequest {
        key: b"a/t".to_vec(),
        range_end: oxcd_api::prefix_end(b"a/t"),
        prev_kv: false,
    })
    .await
    .expect("delete");
    let mut rng = StdRng::seed_from_u64(seed);
    let keys = ["a", "a/x", "a/y", "b", "c", "d", "e"];
    for _ in 0..40 {
        let k = keys[rng.gen_range(0..keys.len())];
        match rng.gen_range(0..4) {
            0 | 1 => {
                kv.put(put(k, rng.gen_range(0..100).to_string()))
                    .await
                    .expect("put");
            }
            2 => {
                let end = if rng.gen_bool(0.5) {
                    oxcd_api::prefix_end(k.as_bytes())
                } else {
                    vec![]
                };
                kv.delete_range(DeleteRangeRequest {
                    key: k.into(),
                    range_end: end,
                    prev_kv: false,
                })
                .await
                .expect("delete");
            }
            _ => {
                let ops = ["c", "d"].iter().map(|k| put(k, "t").into()).collect();
                kv.txn(TxnRequest {
                    compare: vec![],
                    success: ops,
                    failure: vec![],
                })
                .await
                .expect("txn");
            }
        }
    }
    let end = kv.put(put("zzz-end", "x")).await.expect("put").into_inner();
    let end_rev = end.header.expect("header").revision;
    // Wait for the all-keys watch to reach the last write.
    let deadline = Instant::now() + Duration::from_secs(20);
    read_until(&mut s, &mut seen, 0, end_rev, deadline).await;
    // Watch 1 (key "a" from revision 2, no deletes) catches up from history; it must have
    // done so before the compaction below, or the race between its catch-up and the
    // compaction decides whether it sees its events or a compaction (either server).
    let last_put_of_a = seen.get(&0).map_or(0, |s| {
        s.events
            .iter()
            .filter(|e| e.r#type == EventType::Put as i32)
            .filter_map(|e| e.kv.as_ref())
            .filter(|kv| kv.key == b"a")
            .map(|kv| kv.mod_revision)
            .max()
            .unwrap_or(0)
    });
    read_until(&mut s, &mut seen, 1, last_put_of_a, deadline).await;
    kv.compact(CompactionRequest {
        revision: end_rev - 5,
        physical: true,
    })
    .await
    .expect("compact");
    s.create(WatchCreateRequest {
        key: b"a".to_vec(),
        start_revision: 3,
        watch_id: 200,
        ..Default::default()
    })
    .await;
    s.cancel(1).await;
    s.cancel(12345).await;
    // created (200), compacted (200) and canceled (1), in any order; a cancel of an unknown
    // ID gets nothing.
    let done = |seen: &BTreeMap<i64, Seen>| {
        seen.get(&200).is_some_and(|s| s.answers.len() == 2)
            && seen.get(&1).is_some_and(|s| s.answers.len() == 2)
    };
    while !done(&seen) {
        let r = s.next().await;
        record(&mut seen, r);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_events_and_answers_match_etcd() {
    for seed in [7, 8] {
        let etcd = Server::start(Kind::Etcd, &[]);
        let oxcd = Server::start(Kind::Oxcd, &[]);
        let theirs = script(&etcd, seed).await;
        let ours = script(&oxcd, seed).await;
        assert_eq!(
            theirs.keys().collect::<Vec<_>>(),
            ours.keys().collect::<Vec<_>>()
        );
        for (id, t) in &theirs {
            assert_eq!(Some(t), ours.get(id), "watch {id} differs (seed {seed})");
        }
        assert!(
            theirs[&0].events.len() > 40,
            "the all-keys watch saw the writes"
        );
    }
}

/// Puts `n` values of 4 KiB under "s/"; returns the last revision.
async fn write_4k(server: &Server, n: usize) -> i64 {
    write_values(server, n, 4096).await
}

/// Puts `n` values of `size` bytes under "s/"; returns the last revision.
async fn write_values(server: &Server, n: usize, size: usize) -> i64 {
    let mut kv = server.ready().await;
    let value = "v".repeat(size);
    let mut last = 0;
    for i in 0..n {
        last = kv
            .put(put(format!("s/{i:05}"), &value))
            .await
            .expect("writes go on while a watcher is stalled")
            .into_inner()
            .header
            .expect("header")
            .revision;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_watcher_neither_holds_writes_nor_loses_events() {
    const WRITES: usize = 8000; // 32 MiB of events, which a watcher holding them would cost
                                // The memory the writes cost by themselves, on a server without watchers, written at the
                                // same time as the watched server's so that both see the same load (the backend's cache
                                // and the allocator's arenas vary by tens of MiB with the machine's load).
    let baseline = Server::start(Kind::Oxcd, &[]);
    baseline.ready().await;
    let server = Server::start(Kind::Oxcd, &[]);
    server.ready().await;
    let mut stalled = open(
        &server.url(),
        WatchCreateRequest {
            key: b"s/".to_vec(),
            range_end: b"s0".to_vec(),
            ..Default::default()
        },
    )
    .await;
    assert!(stalled.next().await.created);
    // Nobody reads `stalled` while the writes go in.
    let (baseline_before, before) = (rss(&baseline), rss(&server));
    let (_, last) = tokio::join!(write_4k(&baseline, WRITES), write_4k(&server, WRITES));
    let baseline_growth = rss(&baseline).saturating_sub(baseline_before);
    let growth = rss(&server).saturating_sub(before);
    assert!(
        growth < baseline_growth + (16 << 20),
        "a stalled watcher cost {} MiB beyond the writes' own {} MiB",
        (growth.saturating_sub(baseline_growth)) >> 20,
        baseline_growth >> 20
    );
    // Now it reads: every event, once, in order, caught up from history.
    stalled.reads_every_revision_until(last, WRITES).await;
}

/// Watchers that stopped reading hold a bounded number of bytes each, not 128 batches of
/// whatever size the values are (etcd's chanBufLen, which is how slow watchers take etcd's
/// memory to many GB); when they read again they get every event, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_watchers_of_big_values_hold_bounded_memory() {
    const WATCHERS: usize = 8;
    const WRITES: usize = 40; // 40 MiB of values, 320 MiB of events for the watchers
    const SIZE: usize = 1 << 20;
    let baseline = Server::start(Kind::Oxcd, &[]);
    baseline.ready().await;
    let before = rss(&baseline);
    write_values(&baseline, WRITES, SIZE).await;
    let baseline_growth = rss(&baseline).saturating_sub(before);
    drop(baseline);

    let server = Server::start(Kind::Oxcd, &[]);
    server.ready().await;
    let mut stalled = Vec::new();
    for _ in 0..WATCHERS {
        let mut w = open(
            &server.url(),
            WatchCreateRequest {
                key: b"s/".to_vec(),
                range_end: b"s0".to_vec(),
                ..Default::default()
            },
        )
        .await;
        assert!(w.next().await.created);
        stalled.push(w);
    }
    let before = rss(&server);
    let last = write_values(&server, WRITES, SIZE).await;
    let growth = rss(&server).saturating_sub(before);
    assert!(
        growth < baseline_growth + (160 << 20),
        "{WATCHERS} stalled watchers cost {} MiB beyond the writes' own {} MiB",
        (growth.saturating_sub(baseline_growth)) >> 20,
        baseline_growth >> 20
    );
    for w in &mut stalled {
        w.reads_every_revision_until(last, WRITES).await;
    }
}

/// Resident memory of the server process, in bytes.
fn rss(server: &Server) -> u64 {
    let pid = server.child.as_ref().expect("running").id();
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
            })
        })
        .map_or(0, |kb| kb * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_watchers_on_a_key_and_a_thousand_on_a_prefix_see_every_event() {
    let server = Server::start(Kind::Oxcd, &[]);
    let mut kv = server.ready().await;
    let mut streams = Vec::new();
    for s in 0..11 {
        let create = |s: usize| {
            if s < 10 {
                WatchCreateRequest {
                    key: b"hot".to_vec(),
                    ..Default::default()
                }
            } else {
                WatchCreateRequest {
                    key: b"p/".to_vec(),
                    range_end: b"p0".to_vec(),
                    ..Default::default()
                }
            }
        };
        let stream = open(&server.url(), create(s)).await;
        for _ in 1..1000 {
            stream.create(create(s)).await;
        }
        streams.push(stream);
    }
    let mut readers = Vec::new();
    // Writes start once every watch is created (a watch from "now" misses earlier writes).
    let all_created = Arc::new(tokio::sync::Barrier::new(streams.len() + 1));
    for (s, mut stream) in streams.into_iter().enumerate() {
        let all_created = all_created.clone();
        readers.push(tokio::spawn(async move {
            let mut created = 0;
            let mut events: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
            // 1000 creations, then 5 events for each of the 1000 watches.
            while created < 1000 || events.values().map(Vec::len).sum::<usize>() < 5000 {
                let r = stream.next().await;
                if r.created {
                    created += 1;
                    if created == 1000 {
                        all_created.wait().await;
                    }
                }
                events.entry(r.watch_id).or_default().extend(
                    r.events
                        .iter()
                        .filter_map(|e| e.kv.as_ref().map(|kv| kv.mod_revision)),
                );
            }
            (s, events)
        }));
    }
    all_created.wait().await;
    let mut hot = Vec::new();
    let mut pre = Vec::new();
    for i in 0..5 {
        hot.push(
            kv.put(put("hot", i.to_string()))
                .await
                .expect("put")
                .into_inner()
                .header
                .expect("h")
                .revision,
        );
        pre.push(
            kv.put(put(format!("p/{i}"), "x"))
                .await
                .expect("put")
                .into_inner()
                .header
                .expect("h")
                .revision,
        );
    }
    for r in readers {
        let (s, events) = tokio::time::timeout(Duration::from_secs(60), r)
            .await
            .expect("readers finish")
            .expect("reader");
        assert_eq!(events.len(), 1000, "stream {s}: every watch got events");
        let want = if s < 10 { &hot } else { &pre };
        for (id, revs) in events {
            assert_eq!(&revs, want, "stream {s} watch {id}");
        }
    }
}

/// The fields format's IDs differ between two servers; everything else must not.
fn mask_ids(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.starts_with("\"ClusterID\"") || l.starts_with("\"MemberID\"") {
                l.split(':').next().unwrap_or(l).to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn start_child(program: &std::path::Path, args: &[String]) -> std::process::Child {
    std::process::Command::new(program)
        .args(args)
        .env("ETCDCTL_API", "3")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn")
}

/// Runs a watch command until it has printed `lines` lines (or ended), then stops it by PID.
fn watch_output(
    program: &std::path::Path,
    args: &[String],
    lines: usize,
) -> (String, String, Option<i32>) {
    use std::io::Read;
    let mut child = start_child(program, args);
    let mut stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                return;
            }
        }
    });
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut code = None;
    while out.iter().filter(|b| **b == b'\n').count() < lines && Instant::now() < deadline {
        if let Ok(chunk) = rx.recv_timeout(Duration::from_millis(50)) {
            out.extend(chunk);
        }
        if let Ok(Some(status)) = child.try_wait() {
            code = status.code();
            while let Ok(chunk) = rx.recv_timeout(Duration::from_millis(50)) {
                out.extend(chunk);
            }
            break;
        }
    }
    if code.is_none() {
        let _ = child.kill();
    }
    // Reaped either way (a no-op when it has exited).
    let _ = child.wait();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    (String::from_utf8_lossy(&out).into_owned(), err, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_and_oxcdctl_watch_print_the_same() {
    let etcd = Server::start(Kind::Etcd, &[]);
    let oxcd = Server::start(Kind::Oxcd, &[]);
    for s in [&etcd, &oxcd] {
        let mut kv = s.ready().await;
        for (k, v) in [("a", "1"), ("b", "2"), ("a", "3")] {
            kv.put(put(k, v)).await.expect("put");
        }
        kv.delete_range(DeleteRangeRequest {
            key: b"a".to_vec(),
            ..Default::default()
        })
        .await
        .expect("delete");
    }
    let cases: Vec<(Vec<&str>, usize)> = vec![
        (vec!["watch", "--prefix", "", "--rev", "1"], 12),
        (vec!["watch", "a", "--rev", "2", "--prev-kv"], 13),
        (vec!["-w", "fields", "watch", "b", "--rev", "1"], 11),
        (vec!["watch", "a", "c", "--rev", "3"], 9),
        (vec!["watch", "--rev", "1", "b", "--", "sh", "-c", "echo $ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE $ETCD_WATCH_REVISION"], 4),
        (vec!["watch", "a", "--prefix", "c"], 1),
        (vec!["watch"], 1),
    ];
    for (args, lines) in cases {
        let run = |program: &std::path::Path, s: &Server| {
            let mut a = vec![format!("--endpoints={}", s.endpoint())];
            a.extend(args.iter().map(|x| x.to_string()));
            watch_output(program, &a, lines)
        };
        let reference = run(&system_bin("etcdctl"), &etcd);
        let theirs = run(&system_bin("etcdctl"), &oxcd);
        let ours = run(&bin("oxcdctl"), &oxcd);
        assert_eq!(
            mask_ids(&reference.0),
            mask_ids(&theirs.0),
            "etcdctl against etcd and oxcd differ for {args:?}"
        );
        assert_eq!(theirs, ours, "etcdctl and oxcdctl differ for {args:?}");
    }
    // A watch from before the compaction point is canceled, with etcdctl's words and code.
    for s in [&etcd, &oxcd] {
        let mut kv = s.ready().await;
        kv.compact(CompactionRequest {
            revision: 4,
            physical: true,
        })
        .await
        .expect("compact");
    }
    let args = |s: &Server| {
        vec![
            format!("--endpoints={}", s.endpoint()),
            "watch".into(),
            "a".into(),
            "--rev".into(),
            "2".into(),
        ]
    };
    let theirs = watch_output(&system_bin("etcdctl"), &args(&etcd), 1);
    let ours = watch_output(&bin("oxcdctl"), &args(&oxcd), 1);
    assert_eq!(theirs, ours);
    assert_eq!(ours.2, Some(5), "{ours:?}");
    let _ = free_port();
}
