//! oxcdutl, etcdutl's counterpart, on files made by oxcd processes: backups saved with
//! oxcdctl and the data dirs of stopped members. Its answers must be oxcdctl's and the
//! server's own; bad input gets etcdutl's words and exit codes and leaves nothing behind.

use oxcd_api::etcdserverpb::kv_client::KvClient;
use oxcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use oxcd_api::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, HashKvRequest, HashKvResponse,
};
use oxcd_tests::{bin, ctl, free_port, run_tool, Kind, Server};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use tonic::transport::Channel;

/// target/<profile>/oxcdutl, found where the helpers find oxcd and oxcdctl.
fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// `oxcdutl ARGS`: (stdout, stderr, exit code).
fn utl(args: &[&str]) -> (String, String, i32) {
    run_tool(&bin("oxcdutl"), &strings(args), None)
}

fn text(p: &Path) -> String {
    p.display().to_string()
}

/// Every name in `dir`, to show that a failed command left nothing there.
fn listing(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

async fn put(kv: &mut KvClient<Channel>, key: &str, value: &[u8]) -> i64 {
    kv.put(oxcd_tests::kv::put(key, value))
        .await
        .expect("put")
        .into_inner()
        .header
        .map_or(0, |h| h.revision)
}

/// Every key and value under "k/".
async fn all_keys(kv: &mut KvClient<Channel>) -> Vec<(Vec<u8>, Vec<u8>)> {
    kv.range(oxcd_tests::kv::prefix("k/"))
        .await
        .expect("range")
        .into_inner()
        .kvs
        .into_iter()
        .map(|kv| (kv.key, kv.value))
        .collect()
}

async fn hash_kv(server: &Server, revision: i64) -> HashKvResponse {
    let ch = server.channel().await.expect("channel");
    MaintenanceClient::new(ch)
        .hash_kv(HashKvRequest { revision })
        .await
        .expect("hashkv")
        .into_inner()
}

/// A server holding keys k/000..k/099 and a backup of it saved by oxcdctl, with the revision
/// it was taken at.
async fn backed_up(dir: &Path) -> (Server, KvClient<Channel>, PathBuf, i64) {
    let server = Server::start(Kind::Oxcd, &[]);
    let mut kv = server.ready().await;
    let mut rev = 0;
    for i in 0..100 {
        rev = put(
            &mut kv,
            &format!("k/{i:03}"),
            format!("value {i}").as_bytes(),
        )
        .await;
    }
    let backup = dir.join("backup.db");
    let (out, err, rc) = ctl(
        &bin("oxcdctl"),
        &server.url(),
        &["snapshot", "save", &text(&backup)],
    );
    assert_eq!(rc, 0, "snapshot save: {err}");
    assert_eq!(out, format!("Snapshot saved at {}\n", text(&backup)));
    (server, kv, backup, rev)
}

#[tokio::test]
async fn snapshot_status_reads_as_oxcdctls_in_every_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, _kv, backup, rev) = backed_up(dir.path()).await;
    let file = text(&backup);
    for format in ["simple", "json", "table"] {
        let (ours, err, rc) = utl(&["snapshot", "status", &file, "-w", format]);
        assert_eq!(rc, 0, "oxcdutl -w {format}: {err}");
        let (theirs, err, rc) = run_tool(
            &bin("oxcdctl"),
            &strings(&["-w", format, "snapshot", "status", &file]),
            None,
        );
        assert_eq!(rc, 0, "oxcdctl -w {format}: {err}");
        assert_eq!(ours, theirs, "-w {format}");
    }
    let (simple, _, _) = utl(&["snapshot", "status", &file]);
    let cells: Vec<&str> = simple.trim_end().split(", ").collect();
    assert_eq!(
        cells.len(),
        4,
        "hash, revision, total keys, total size: {simple}"
    );
    assert_eq!(cells[1], rev.to_string());

    let (json, err, rc) = utl(&["--write-out=json", "snapshot", "status", &file]);
    assert_eq!(rc, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).expect("one JSON object");
    // etcd's total size: the bbolt pages, without the SHA-256 trailer after them.
    let size = std::fs::metadata(&backup).expect("stat").len() - 32;
    assert_eq!(v["revision"], rev, "{json}");
    assert_eq!(v["totalSize"], size, "{json}");
    assert!(v["totalKey"].as_u64().is_some_and(|n| n >= 100), "{json}");
    assert_eq!(
        v["hash"].as_u64().map(|h| format!("{h:x}")),
        Some(cells[0].to_string())
    );

    let (fields, err, rc) = utl(&["snapshot", "status", &file, "-w", "fields"]);
    assert_eq!(rc, 0, "{err}");
    assert!(
        fields.contains(&format!("\"Revision\" : {rev}\n")),
        "{fields}"
    );
    assert!(fields.contains(&format!("\"Size\" : {size}\n")), "{fields}");

    let (version, _, rc) = utl(&["version"]);
    assert_eq!(rc, 0);
    assert!(version.starts_with("etcdutl version: 3.5."), "{version}");
    assert!(version.ends_with("\nAPI version: 3.5\n"), "{version}");
}

#[tokio::test]
async fn a_restored_data_dir_serves_the_backups_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (original, mut kv, backup, rev) = backed_up(dir.path()).await;
    let want = all_keys(&mut kv).await;
    assert_eq!(want.len(), 100);
    let original_hash = hash_kv(&original, rev).await;

    // An existing empty dir (a mount point, say) is filled, as etcdutl 3.5 does.
    let data = dir.path().join("restored");
    std::fs::create_dir(&data).expect("mkdir");
    let (client_port, peer_port) = (free_port(), free_port());
    let peer = format!("http://127.0.0.1:{peer_port}");
    let client = format!("http://127.0.0.1:{client_port}");
    let (out, err, rc) = utl(&[
        "snapshot",
        "restore",
        &text(&backup),
        "--name",
        "restored",
        "--data-dir",
        &text(&data),
        "--initial-cluster",
        &format!("restored={peer}"),
        "--initial-cluster-token",
        "utl-restore",
        "--initial-advertise-peer-urls",
        &peer,
    ]);
    assert_eq!(rc, 0, "restore: {err}");
    assert_eq!(out, "");
    assert!(err.contains("\trestoring snapshot\t"), "{err}");
    assert!(err.contains("\trestored snapshot\t"), "{err}");
    assert!(data.join("member/snap/db").is_file());
    assert!(data.join("member/wal").is_dir());
    assert_eq!(
        listing(dir.path()),
        BTreeSet::from(["backup.db".to_string(), "restored".to_string()]),
        "no staging dir is left beside it"
    );

    let args = strings(&[
        "--name",
        "restored",
        "--data-dir",
        &text(&data),
        "--listen-client-urls",
        &client,
        "--advertise-client-urls",
        &client,
        "--listen-peer-urls",
        &peer,
        "--initial-advertise-peer-urls",
        &peer,
        "--initial-cluster",
        &format!("restored={peer}"),
    ]);
    let mut restored = Server::member("127.0.0.1", client_port, peer_port, data.clone(), args);
    restored.spawn();
    let mut rkv = restored.ready().await;
    assert_eq!(all_keys(&mut rkv).await, want);
    let restored_hash = hash_kv(&restored, rev).await;
    assert_eq!(
        (restored_hash.hash, restored_hash.hash_revision),
        (original_hash.hash, original_hash.hash_revision),
        "the keyspace history is the backup's"
    );
    let ids = |h: &HashKvResponse| h.header.as_ref().map_or(0, |h| h.cluster_id);
    assert_ne!(ids(&restored_hash), ids(&original_hash), "a new cluster");
    assert!(put(&mut rkv, "k/after", b"restore").await > rev);
    restored.stop();

    // --wal-dir puts the raft log apart.
    let (data2, wal2) = (dir.path().join("data2"), dir.path().join("wal2"));
    let (_, err, rc) = utl(&[
        "snapshot",
        "restore",
        &text(&backup),
        "--data-dir",
        &text(&data2),
        "--wal-dir",
        &text(&wal2),
    ]);
    assert_eq!(rc, 0, "{err}");
    assert!(wal2.is_dir() && data2.join("member/snap/db").is_file());
    assert!(!data2.join("member/wal").exists());
}

#[tokio::test]
async fn hashkv_and_defrag_on_a_stopped_members_data_dir() {
    let mut server = Server::start(Kind::Oxcd, &[]);
    let mut kv = server.ready().await;
    let big = vec![b'x'; 4096];
    for i in 0..300 {
        put(&mut kv, &format!("k/{i:03}"), &big).await;
    }
    kv.delete_range(DeleteRangeRequest {
        key: b"k/000".to_vec(),
        range_end: b"k/250".to_vec(),
        ..Default::default()
    })
    .await
    .expect("delete");
    let compact_at = put(&mut kv, "k/marker", b"compact here").await;
    kv.compact(CompactionRequest {
        revision: compact_at,
        physical: true,
    })
    .await
    .expect("compact");
    let mut mid = 0;
    for i in 0..10 {
        let rev = put(&mut kv, &format!("k/late/{i}"), b"after compaction").await;
        if i == 4 {
            mid = rev;
        }
    }
    let want = all_keys(&mut kv).await;
    let latest = hash_kv(&server, 0).await;
    let at_mid = hash_kv(&server, mid).await;
    assert_eq!(latest.compact_revision, compact_at);
    server.stop();

    let data = text(&server.data_dir);
    let db = server.data_dir.join("member/snap/db");
    let line =
        |h: &HashKvResponse| format!("{}, {}, {}\n", h.hash, h.hash_revision, h.compact_revision);
    let (out, err, rc) = utl(&["hashkv", "--data-dir", &data]);
    assert_eq!((rc, out), (0, line(&latest)), "{err}");
    let (out, err, rc) = utl(&["hashkv", &text(&db), "--rev", &mid.to_string()]);
    assert_eq!((rc, out), (0, line(&at_mid)), "{err}");
    let (json, err, rc) = utl(&["hashkv", &text(&db), "-w", "json"]);
    assert_eq!(rc, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).expect("one JSON object");
    assert_eq!(v["hash"], latest.hash, "{json}");
    assert_eq!(v["hashRevision"], latest.hash_revision, "{json}");
    assert_eq!(v["compactRevision"], latest.compact_revision, "{json}");

    let size_before = std::fs::metadata(&db).expect("stat").len();
    let (out, err, rc) = utl(&["defrag", "--data-dir", &data]);
    assert_eq!((rc, out.as_str(), err.as_str()), (0, "", ""));
    let size_after = std::fs::metadata(&db).expect("stat").len();
    assert!(
        size_after < size_before,
        "defrag shrinks the backend: {size_before} -> {size_after}"
    );
    let (out, err, rc) = utl(&["hashkv", "--data-dir", &data]);
    assert_eq!((rc, out), (0, line(&latest)), "{err}");

    server.spawn();
    let mut kv = server.ready().await;
    assert_eq!(all_keys(&mut kv).await, want);
    let again = hash_kv(&server, 0).await;
    assert_eq!(
        line(&again),
        line(&latest),
        "the server hashes what it hashed before"
    );
    put(&mut kv, "k/after-defrag", b"ok").await;
    server.stop();
}

#[tokio::test]
async fn bad_input_gets_etcdutls_errors_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut server, _kv, backup, _) = backed_up(dir.path()).await;
    server.stop();
    let bytes = std::fs::read(&backup).expect("read backup");
    let damaged = dir.path().join("damaged.db");
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 3] ^= 0x40;
    std::fs::write(&damaged, &flipped).expect("write");
    let truncated = dir.path().join("truncated.db");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    let missing = dir.path().join("missing.db");
    let full = dir.path().join("full");
    std::fs::create_dir(&full).expect("mkdir");
    std::fs::write(full.join("mine"), b"keep me").expect("write");
    let target = text(&dir.path().join("never"));
    let before = listing(dir.path());

    let cases: Vec<(Vec<String>, i32, String)> = vec![
        (
            strings(&["snapshot", "status", &text(&missing)]),
            1,
            format!(
                "Error: stat {}: no such file or directory\n",
                text(&missing)
            ),
        ),
        (
            strings(&["snapshot", "status"]),
            128,
            "Error: snapshot status requires exactly one argument\n".into(),
        ),
        (
            strings(&["-w", "protobuf", "snapshot", "status", &text(&backup)]),
            4,
            "Error: protobuf not supported as output format\n".into(),
        ),
        (
            strings(&["-w", "yaml", "snapshot", "status", &text(&backup)]),
            4,
            "Error: unsupported output format\n".into(),
        ),
        (
            strings(&["snapshot", "status", &text(&truncated)]),
            1,
            "Error: file is cut short: its meta page says".into(),
        ),
        (
            strings(&[
                "snapshot",
                "restore",
                &text(&damaged),
                "--data-dir",
                &target,
            ]),
            1,
            "Error: expected sha256".into(),
        ),
        (
            strings(&[
                "snapshot",
                "restore",
                &text(&truncated),
                "--data-dir",
                &target,
            ]),
            1,
            "Error: snapshot missing hash but --skip-hash-check=false\n".into(),
        ),
        (
            strings(&[
                "snapshot",
                "restore",
                &text(&missing),
                "--data-dir",
                &target,
            ]),
            1,
            format!(
                "Error: open {}: no such file or directory\n",
                text(&missing)
            ),
        ),
        (
            strings(&[
                "snapshot",
                "restore",
                &text(&backup),
                "--data-dir",
                &text(&full),
            ]),
            1,
            format!(
                "Error: data-dir {:?} not empty or could not be read\n",
                text(&full)
            ),
        ),
        (
            strings(&[
                "snapshot",
                "restore",
                &text(&backup),
                "--data-dir",
                &target,
                "--wal-dir",
                &text(&full),
            ]),
            1,
            format!("Error: wal-dir {:?} exists\n", text(&full)),
        ),
        (
            strings(&[
                "snapshot",
                "restore",
                &text(&backup),
                "--data-dir",
                &target,
                "--bump-revision",
                "1000",
            ]),
            128,
            "Error: --mark-compacted required if --revision-bump > 0\n".into(),
        ),
        (
            strings(&[
                "snapshot",
                "restore",
                &text(&backup),
                "--data-dir",
                &target,
                "--bump-revision=1000",
                "--mark-compacted",
            ]),
            4,
            "Error: --bump-revision and --mark-compacted are not supported".into(),
        ),
        (
            strings(&["snapshot", "restore", "--data-dir", &target]),
            128,
            "Error: snapshot restore requires exactly one argument\n".into(),
        ),
        (
            strings(&["defrag", "--data-dir", &target]),
            1,
            format!(
                "Error: Failed to defragment etcd data[{target}] (open {target}/member/snap/db: \
                 no such file or directory)\n"
            ),
        ),
        (
            strings(&["defrag"]),
            1,
            "Error: required flag(s) \"data-dir\" not set\n".into(),
        ),
        (
            strings(&["hashkv", &text(&missing)]),
            1,
            format!(
                "Error: open {}: no such file or directory\n",
                text(&missing)
            ),
        ),
        (
            strings(&[
                "hashkv",
                "--data-dir",
                &text(&server.data_dir),
                "--rev",
                "100000",
            ]),
            1,
            "Error: mvcc: required revision is a future revision\n".into(),
        ),
        (
            strings(&["hashkv"]),
            1,
            "Error: accepts 1 arg(s), received 0\n".into(),
        ),
        (
            strings(&["snapshot", "save", &target]),
            128,
            "Error: In order to download snapshot use: `etcdctl snapshot save ...`\n".into(),
        ),
    ];
    for (args, code, want) in cases {
        let (_, err, rc) = run_tool(&bin("oxcdutl"), &args, None);
        assert_eq!(rc, code, "oxcdutl {args:?}: {err}");
        // Log lines (restore's "restoring snapshot") may come first; the error comes last.
        let last = err
            .lines()
            .last()
            .map(|l| format!("{l}\n"))
            .unwrap_or_default();
        assert!(
            last.starts_with(&want),
            "oxcdutl {args:?}:\n{err}\nwant {want}"
        );
        assert_eq!(
            listing(dir.path()),
            before,
            "oxcdutl {args:?} left files behind"
        );
    }
    assert_eq!(
        std::fs::read(full.join("mine")).expect("untouched"),
        b"keep me"
    );
    assert_eq!(listing(&full), BTreeSet::from(["mine".to_string()]));
    // The stopped member's dir is still whole: it starts and serves.
    server.spawn();
    let mut kv = server.ready().await;
    assert_eq!(all_keys(&mut kv).await.len(), 100);
    server.stop();
}
