//! kill -9 at any moment loses no acknowledged write; a torn log tail is cut off; corruption
//! elsewhere stops the member with a message naming the file.

use oxcd_api::etcdserverpb::kv_client::KvClient;
use oxcd_api::etcdserverpb::RangeResponse;
use oxcd_tests::kv::{self, put};
use oxcd_tests::wait::eventually;
use oxcd_tests::{Kind, Server};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::transport::Channel;

/// Every key under `prefix`, read linearizably.
async fn read_prefix(kv: &mut KvClient<Channel>, prefix: &str) -> RangeResponse {
    let req = kv::prefix(prefix);
    kv.range(req).await.expect("range").into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_under_concurrent_writes_keeps_every_acknowledged_write() {
    let mut server = Server::start(Kind::Oxcd, &[]);
    let kv = server.ready().await;
    let acked: Arc<Mutex<BTreeMap<String, i64>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..16 {
        let mut kv = kv.clone();
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            for n in 0..10_000 {
                let key = format!("w/{w:02}/{n:05}");
                match kv.put(put(key.clone(), key.clone())).await {
                    Ok(r) => {
                        let rev = r.into_inner().header.map_or(0, |h| h.revision);
                        acked.lock().expect("lock").insert(key, rev);
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    eventually(
        "writers made too little progress",
        Duration::from_secs(30),
        || {
            let n = acked.lock().expect("lock").len();
            async move { n >= 1500 }
        },
    )
    .await;
    server.kill9();
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().expect("lock").clone();

    server.spawn();
    let mut kv = server.ready().await;
    let resp = read_prefix(&mut kv, "w/").await;
    let current = resp.header.map_or(0, |h| h.revision);
    let found: BTreeMap<String, (i64, Vec<u8>)> = resp
        .kvs
        .into_iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(&kv.key).into_owned(),
                (kv.mod_revision, kv.value),
            )
        })
        .collect();
    for (key, rev) in &acked {
        let (got_rev, value) = found
            .get(key)
            .unwrap_or_else(|| panic!("acknowledged {key} at revision {rev} is lost"));
        assert_eq!(got_rev, rev, "{key}");
        assert_eq!(value, key.as_bytes());
    }
    // Every revision after the first is exactly one of these puts: no gap, no duplicate.
    let mut revs: Vec<i64> = found.values().map(|(r, _)| *r).collect();
    revs.sort_unstable();
    let expected: Vec<i64> = (2..=current).collect();
    assert_eq!(revs, expected, "revision sequence has a gap");
    assert!(found.len() >= acked.len());
}

async fn write_keys(server: &Server, n: usize) {
    let mut kv = server.ready().await;
    for i in 0..n {
        kv.put(put(format!("k{i:03}"), "v")).await.expect("put");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_last_record_is_truncated_and_the_member_starts() {
    let mut server = Server::start(Kind::Oxcd, &[]);
    write_keys(&server, 20).await;
    server.kill9();
    let wal = server.wal_files().pop().expect("a wal file");
    // The last record's final bytes never reached the disk (the file's reserved space
    // after the records reads as zeros).
    let mut data = std::fs::read(&wal).expect("read");
    let len = records_len(&data);
    data[len - 3..len].fill(0);
    std::fs::write(&wal, &data).expect("write");
    server.spawn();
    let mut kv = server.ready().await;
    assert!(
        server.log().contains("truncating torn record"),
        "{}",
        server.log()
    );
    let resp = read_prefix(&mut kv, "k").await;
    // The cut record may have been the last put; everything before it is there.
    assert!(resp.count >= 19, "count {}", resp.count);
    for i in 0..19 {
        assert_eq!(resp.kvs[i].key, format!("k{i:03}").into_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corruption_inside_the_log_refuses_to_start_naming_the_file() {
    let mut server = Server::start(Kind::Oxcd, &[]);
    write_keys(&server, 20).await;
    server.kill9();
    let wal = server.wal_files().pop().expect("a wal file");
    let mut data = std::fs::read(&wal).expect("read");
    let mid = records_len(&data) / 2;
    data[mid] ^= 0x5a;
    std::fs::write(&wal, &data).expect("write");
    server.spawn();
    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("must exit instead of starting");
    assert!(!status.success());
    let log = server.log();
    assert!(
        log.contains(&wal.display().to_string()) && log.contains("corrupt record"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_count_compacts_the_log_and_restart_keeps_everything() {
    // Compaction keeps etcd's 5000-entry catch-up tail, so write past it.
    let mut server = Server::start(Kind::Oxcd, &["--snapshot-count=1000"]);
    let kv = server.ready().await;
    let mut writers = Vec::new();
    for w in 0..32 {
        let mut kv = kv.clone();
        writers.push(tokio::spawn(async move {
            for n in 0..250 {
                let key = format!("s/{w:02}/{n:03}");
                kv.put(put(key.clone(), key)).await.expect("put");
            }
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
    assert!(
        server
            .wait_for_log("compacted raft log", Duration::from_secs(20))
            .await,
        "{}",
        server.log()
    );
    let wal = server.wal_files();
    assert_eq!(wal.len(), 1, "{wal:?}");
    assert_ne!(
        wal[0].file_name().and_then(|n| n.to_str()),
        Some("0000000000000000.wal"),
        "log never rewritten"
    );
    server.kill9();
    server.spawn();
    let mut kv = server.ready().await;
    let resp = read_prefix(&mut kv, "s/").await;
    assert_eq!(resp.count, 32 * 250);
    assert!(resp.kvs.iter().all(|kv| kv.key == kv.value));
}

/// Where a raft log file's records end; space reserved after them reads as zeros.
fn records_len(data: &[u8]) -> usize {
    data.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1)
}

/// Offset of the last entry record in a raft log file (records: len u32 | crc u32 | kind u8
/// | payload; kind 1 is an entry).
fn last_entry_offset(data: &[u8]) -> Option<usize> {
    let (mut off, mut last) = (0, None);
    while off + 9 <= data.len() && data[off + 8] != 0 {
        let len =
            u32::from_le_bytes([data[off], data[off + 1], data[off + 2], data[off + 3]]) as usize;
        if data[off + 8] == 1 {
            last = Some(off);
        }
        off += 9 + len;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_ahead_of_a_cut_log_restarts_from_the_backend() {
    let mut server = Server::start(Kind::Oxcd, &[]);
    write_keys(&server, 20).await;
    // A clean stop leaves the backend durable at the last applied entry; then the log loses
    // that entry.
    server.stop();
    let wal = server.wal_files().pop().expect("a wal file");
    let data = std::fs::read(&wal).expect("read");
    let cut = last_entry_offset(&data).expect("an entry record") + 3;
    std::fs::write(&wal, &data[..cut]).expect("write");
    server.spawn();
    let mut kv = server.ready().await;
    assert!(
        server
            .log()
            .contains("continuing from the backend as a snapshot"),
        "{}",
        server.log()
    );
    let resp = read_prefix(&mut kv, "k").await;
    assert_eq!(resp.count, 20, "the backend had applied every put");
    kv.put(put("after", "ok")).await.expect("writes go on");
}

/// Durable backend commits so far (etcd's `backend_commit_duration` histogram counts them).
fn durable_commits(server: &Server) -> u64 {
    oxcd_tests::metric(
        &server.endpoint(),
        "etcd_disk_backend_commit_duration_seconds_count",
    )
    .expect("no backend commit count in /metrics") as u64
}

/// `--backend-batch-limit` makes the backend durable every N applied entries even when
/// `--backend-batch-interval` is far off, and without a limit that interval holds, as
/// etcd's pair of flags do. (A pause of 100 ms makes everything durable outside the count.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_batch_flags_decide_when_the_backend_is_made_durable() {
    let durable_commits_for_100_puts = |flags: &'static [&'static str]| async move {
        let server = Server::start(Kind::Oxcd, flags);
        let mut kv = server.ready().await;
        let before = durable_commits(&server);
        for i in 0..100 {
            kv.put(put(format!("b/{i:03}"), "v")).await.expect("put");
        }
        durable_commits(&server) - before
    };
    let limited =
        durable_commits_for_100_puts(&["--backend-batch-interval=1h", "--backend-batch-limit=5"])
            .await;
    assert!(
        limited >= 1,
        "{limited} durable commits with a limit of 5 entries"
    );
    let unlimited = durable_commits_for_100_puts(&["--backend-batch-interval=1h"]).await;
    assert_eq!(
        unlimited, 0,
        "durable commits within an interval of an hour"
    );
}
