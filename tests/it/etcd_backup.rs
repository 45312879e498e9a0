//! Backups across products: a real etcd cluster's backup restored into oxcd, and oxcd's
//! backup restored into real etcd, compared key by key (every revision field), lease by lease
//! and permission by permission through the real etcdctl; `snapshot status` of the same file
//! must read the same from both tools; and bad files are refused with a clear error, writing
//! nothing; real etcd also writes through the many-page leaves of an oxcd backup. The files
//! are bbolt databases in etcd's schema with the SHA-256 trailer (docs/etcd-backup-format.md).
//!
//! The cluster tests start clusters of both products: they belong in nextest's `heavy` group
//! (`test(/^etcd_backup::cluster_/)`).

use oxcd_tests::cluster::{Cluster, Spec};
use oxcd_tests::k8s::start_cluster;
use oxcd_tests::wait::eventually;
use oxcd_tests::{bin, ctl, run_tool, system_bin, Kind, Server};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const ROOT: &str = "--user=root:rootpw";
const ALICE: &str = "--user=alice:alicepw";

fn text(p: &Path) -> String {
    p.display().to_string()
}

/// The real etcdctl against one endpoint: (stdout, the last stderr line, exit code). The
/// client's retry warnings come first on stderr, the error last.
fn etcdctl(ep: &str, args: &[&str]) -> (String, String, i32) {
    let mut a = vec!["--dial-timeout=2s", "--command-timeout=10s"];
    a.extend(args);
    let (out, err, rc) = ctl(&system_bin("etcdctl"), ep, &a);
    (out, err.lines().last().unwrap_or_default().to_string(), rc)
}

/// etcdctl ARGS, which must succeed: its stdout.
fn ok(ep: &str, args: &[&str]) -> String {
    let (out, err, rc) = etcdctl(ep, args);
    assert_eq!(rc, 0, "etcdctl {args:?} against {ep}: {err}");
    out
}

/// etcdctl ARGS -w json, which must succeed: the parsed JSON.
fn json(ep: &str, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-w", "json"]);
    let out = ok(ep, &a);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

/// The same data set on any product, through etcdctl: keys overwritten several times, deleted
/// (one by one and two in one revision), a 5000-byte value, two leases with keys, a
/// compaction in the middle, users root and alice, role r1 (readwrite on the prefix pub/,
/// read on the key b/k), and auth enabled last. Returns the compaction revision.
fn write_data(ep: &str) -> i64 {
    let put = |k: &str, v: &str| {
        ok(ep, &["put", k, v]);
    };
    for i in 1..=5 {
        put("a/1", &format!("v{i}"));
    }
    put("a/2", "gone");
    ok(ep, &["del", "a/2"]);
    put("big", &"x".repeat(5000));
    for (k, v) in [
        ("pub/1", "p1"),
        ("pub/2", "p2"),
        ("b/k", "bk"),
        ("d/1", "d"),
    ] {
        put(k, v);
    }
    put("d/2", "d");
    let leases = [600, 1200].map(|ttl| {
        let v = json(ep, &["lease", "grant", &ttl.to_string()]);
        assert_eq!(v["TTL"], ttl, "{v}");
        format!("{:x}", v["ID"].as_i64().unwrap_or_else(|| panic!("{v}")))
    });
    for (lease, key) in [
        (&leases[0], "l/1"),
        (&leases[1], "l/2"),
        (&leases[1], "l/3"),
    ] {
        ok(ep, &["put", "--lease", lease, key, "leased"]);
    }
    let compact = json(ep, &["put", "mid", "m"])["header"]["revision"]
        .as_i64()
        .expect("put revision");
    put("a/1", "v6");
    put("a/1", "v7");
    ok(ep, &["del", "pub/2"]);
    put("tomb", "t");
    ok(ep, &["del", "tomb"]);
    ok(ep, &["del", "d/", "--prefix"]);
    put("last", "z");
    ok(ep, &["compact", &compact.to_string(), "--physical"]);
    for args in [
        &["user", "add", "root", "--new-user-password=rootpw"][..],
        &["user", "add", "alice", "--new-user-password=alicepw"],
        &["role", "add", "r1"],
        &[
            "role",
            "grant-permission",
            "r1",
            "readwrite",
            "pub/",
            "--prefix=true",
        ],
        &["role", "grant-permission", "r1", "read", "b/k"],
        &["user", "grant-role", "alice", "r1"],
        &["user", "grant-role", "root", "root"],
        &["auth", "enable"],
    ] {
        ok(ep, args);
    }
    compact
}

/// What a member serves of the data set, read through etcdctl.
#[derive(Debug)]
struct Recorded {
    /// The store's revision.
    revision: i64,
    /// Every key: key, value, create_revision, mod_revision, version, lease.
    kvs: Value,
    /// Every lease: ID, granted TTL, its keys (sorted).
    leases: Vec<Value>,
    /// Commands about users, roles, permissions and compaction, and their answers
    /// (stdout, last stderr line, exit code).
    answers: Vec<(String, (String, String, i32))>,
}

fn record(ep: &str, compact: i64) -> Recorded {
    let all = json(ep, &[ROOT, "get", "", "--from-key"]);
    let mut leases = Vec::new();
    let list = json(ep, &[ROOT, "lease", "list"]);
    for l in list["leases"]
        .as_array()
        .unwrap_or_else(|| panic!("{list}"))
    {
        let id = format!("{:x}", l["id"].as_i64().expect("lease id"));
        let ttl = json(ep, &[ROOT, "lease", "timetolive", &id, "--keys"]);
        let (left, granted) = (ttl["ttl"].as_i64(), ttl["granted-ttl"].as_i64());
        assert!(
            left > Some(0) && left <= granted,
            "lease {id} is alive: {ttl}"
        );
        let mut keys = ttl["keys"].as_array().cloned().unwrap_or_default();
        keys.sort_by_key(|k| k.to_string());
        leases.push(serde_json::json!({"id": ttl["id"], "granted-ttl": granted, "keys": keys}));
    }
    leases.sort_by_key(|l| l["id"].as_i64());
    let (before, at) = ((compact - 1).to_string(), compact.to_string());
    let commands: Vec<Vec<&str>> = vec![
        vec![ROOT, "user", "list"],
        vec![ROOT, "role", "list"],
        vec![ROOT, "user", "get", "root"],
        vec![ROOT, "user", "get", "alice"],
        vec![ROOT, "role", "get", "r1"],
        vec![ROOT, "role", "get", "root"],
        vec!["get", "a/1"],
        vec![ALICE, "get", "pub/", "--prefix"],
        vec![ALICE, "get", "b/k"],
        vec![ALICE, "get", "a/1"],
        vec![ALICE, "put", "b/k", "no"],
        vec![ROOT, "get", "a/", "--prefix", "--rev", &before],
        vec![ROOT, "get", "", "--from-key", "--rev", &at],
    ];
    let answers = commands
        .iter()
        .map(|c| (c.join(" "), etcdctl(ep, c)))
        .collect();
    Recorded {
        revision: all["header"]["revision"].as_i64().expect("revision"),
        kvs: all["kvs"].clone(),
        leases,
        answers,
    }
}

/// What real etcd served, checked against what the data set means, so that the comparison
/// with the other product is not between two wrong answers.
fn check_expected(r: &Recorded) {
    use base64::Engine;
    let keys: Vec<String> = r
        .kvs
        .as_array()
        .expect("kvs")
        .iter()
        .map(|kv| {
            let key = base64::engine::general_purpose::STANDARD
                .decode(kv["key"].as_str().unwrap_or_default())
                .expect("base64 key");
            String::from_utf8_lossy(&key).into_owned()
        })
        .collect();
    let live = [
        "a/1", "b/k", "big", "l/1", "l/2", "l/3", "last", "mid", "pub/1",
    ];
    assert_eq!(keys, live, "{}", r.kvs);
    assert_eq!(r.leases.len(), 2, "{:?}", r.leases);
    let answer = |cmd: &str| {
        &r.answers
            .iter()
            .find(|(c, _)| c.contains(cmd))
            .expect(cmd)
            .1
    };
    assert_eq!(answer("user list").0, "alice\nroot\n");
    assert_eq!(answer("role get r1").0, "Role r1\nKV Read:\n\tb/k\n\t[pub/, pub0) (prefix pub/)\nKV Write:\n\t[pub/, pub0) (prefix pub/)\n");
    assert_eq!(
        r.answers[6].1,
        (
            String::new(),
            "Error: etcdserver: user name is empty".into(),
            1
        )
    );
    assert_eq!(answer("alicepw get pub/").0, "pub/1\np1\n");
    assert_eq!(
        answer("alicepw get a/1").1,
        "Error: etcdserver: permission denied"
    );
    assert_eq!(
        answer("alicepw put b/k").1,
        "Error: etcdserver: permission denied"
    );
    assert_eq!(
        r.answers[11].1 .1,
        "Error: etcdserver: mvcc: required revision has been compacted"
    );
    assert_eq!(
        r.answers[12].1 .2, 0,
        "the compaction revision itself is readable"
    );
}

/// `after` (the restored product) serves exactly what `before` did.
fn assert_same(before: &Recorded, after: &Recorded, who: &str) {
    assert_eq!(after.revision, before.revision, "{who}: revision");
    assert_eq!(
        after.kvs, before.kvs,
        "{who}: keys and their revision fields"
    );
    assert_eq!(
        after.leases, before.leases,
        "{who}: leases (ID, granted TTL, keys)"
    );
    for ((cmd, want), (_, got)) in before.answers.iter().zip(&after.answers) {
        assert_eq!(got, want, "{who}: etcdctl {cmd}");
    }
}

/// A restored member with auth on serves root's reads (the helpers' readiness probe is
/// unauthenticated, which auth refuses).
async fn serves_root(ep: &str) {
    eventually(
        &format!("{ep} serves root's reads"),
        Duration::from_secs(30),
        || async { etcdctl(ep, &[ROOT, "get", "mid"]).2 == 0 },
    )
    .await;
}

/// The next write gets the backup's revision + 1.
fn assert_continues(ep: &str, revision: i64) {
    let v = json(ep, &[ROOT, "put", "after/restore", "ok"]);
    assert_eq!(v["header"]["revision"], revision + 1, "{ep}: {v}");
}

/// `TOOL snapshot status FILE [-w json]` (offline): (stdout, stderr, exit code).
fn status(tool: &Path, file: &Path, json: bool) -> (String, String, i32) {
    let mut args = vec!["snapshot".to_string(), "status".into(), text(file)];
    if json {
        args.extend(["-w".into(), "json".into()]);
    }
    run_tool(tool, &args, None)
}

/// Both tools read the same status of `file`; its revision is `revision`.
fn assert_same_status(file: &Path, revision: i64) {
    let (theirs, err, rc) = status(&system_bin("etcdctl"), file, true);
    assert_eq!(rc, 0, "etcdctl snapshot status {file:?}: {err}");
    let (ours, err, rc) = status(&bin("oxcdctl"), file, true);
    assert_eq!(rc, 0, "oxcdctl snapshot status {file:?}: {err}");
    assert_eq!(ours, theirs, "snapshot status -w json of {file:?}");
    let (utl, err, rc) = status(&bin("oxcdutl"), file, true);
    assert_eq!(
        (rc, utl),
        (0, ours),
        "oxcdutl snapshot status {file:?}: {err}"
    );
    let v: Value = serde_json::from_str(theirs.trim()).unwrap_or_else(|e| panic!("{e}: {theirs}"));
    assert_eq!(v["revision"], revision, "{theirs}");
}

/// `snapshot restore` flags for member `i` of `c`.
fn restore_args(file: &Path, c: &Cluster, i: usize) -> Vec<String> {
    let m = &c.members[i];
    [
        "snapshot",
        "restore",
        &text(file),
        "--name",
        &m.name,
        "--initial-cluster",
        &c.initial_cluster(),
        "--initial-cluster-token",
        &c.token,
        "--initial-advertise-peer-urls",
        &m.advertised_peer,
        "--data-dir",
        &text(&m.server.data_dir),
    ]
    .map(String::from)
    .to_vec()
}

/// Stops every member of `c`, restores member i from `file` with `tools[i % tools.len()]`,
/// starts them again and waits until each serves root's linearizable reads.
async fn restore_into(c: &mut Cluster, tools: &[&Path], file: &Path) {
    restore_and_start(c, tools, file);
    // A linearizable read through each member: each knows the leader. (Cluster::wait_leader
    // asks Maintenance.Status without credentials, which oxcd refuses once auth is on.)
    for i in 0..c.members.len() {
        serves_root(&c.url(i)).await;
    }
}

/// Stops every member of `c`, restores member i from `file` with `tools[i % tools.len()]`
/// and starts them again.
fn restore_and_start(c: &mut Cluster, tools: &[&Path], file: &Path) {
    for m in &mut c.members {
        m.server.stop();
        std::fs::remove_dir_all(&m.server.data_dir).expect("remove old data dir");
    }
    for i in 0..c.members.len() {
        let tool = tools[i % tools.len()];
        let (_, err, rc) = run_tool(tool, &restore_args(file, c, i), None);
        assert_eq!(rc, 0, "{tool:?} snapshot restore, member {i}: {err}");
    }
    for m in &mut c.members {
        m.server.spawn();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_etcd_backup_restores_into_oxcd_with_every_key_lease_and_permission() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backup = dir.path().join("etcd.db");
    let mut etcd = start_cluster(Kind::Etcd, 3).await;
    let ep = etcd.url(0);
    let compact = write_data(&ep);
    let before = record(&ep, compact);
    check_expected(&before);
    let out = ok(&ep, &[ROOT, "snapshot", "save", &text(&backup)]);
    assert_eq!(out, format!("Snapshot saved at {}\n", text(&backup)));
    for m in &mut etcd.members {
        m.server.stop();
    }
    assert_same_status(&backup, before.revision);

    // A fresh oxcd cluster's layout (names, peer URLs, ports), its data dirs replaced: two
    // members restored by oxcdctl, one by oxcdutl.
    let mut oxcd = Cluster::start(Spec::new(3)).await;
    restore_into(
        &mut oxcd,
        &[&bin("oxcdctl"), &bin("oxcdctl"), &bin("oxcdutl")],
        &backup,
    )
    .await;
    for i in 0..3 {
        assert_same(
            &before,
            &record(&oxcd.url(i), compact),
            &format!("oxcd member {i}"),
        );
    }
    assert_continues(&oxcd.url(1), before.revision);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_oxcd_backup_restores_into_real_etcd_and_etcdctl_reads_its_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ours, theirs) = (dir.path().join("oxcdctl.db"), dir.path().join("etcdctl.db"));
    let mut oxcd = Cluster::start(Spec::new(3)).await;
    let compact = write_data(&oxcd.url(0));
    let before = record(&oxcd.url(0), compact);
    let (out, err, rc) = ctl(
        &bin("oxcdctl"),
        &oxcd.url(0),
        &[ROOT, "snapshot", "save", &text(&ours)],
    );
    assert_eq!(
        (rc, out),
        (0, format!("Snapshot saved at {}\n", text(&ours))),
        "{err}"
    );
    // The real client saves from another member, once it has applied everything.
    ok(&oxcd.url(2), &[ROOT, "get", "last"]);
    let out = ok(&oxcd.url(2), &[ROOT, "snapshot", "save", &text(&theirs)]);
    assert_eq!(out, format!("Snapshot saved at {}\n", text(&theirs)));
    for m in &mut oxcd.members {
        m.server.stop();
    }
    for file in [&ours, &theirs] {
        assert_same_status(file, before.revision);
        // etcd's restore checks the trailer against the body.
        let target = dir.path().join("check-restore");
        let args = [
            "snapshot",
            "restore",
            &text(file),
            "--data-dir",
            &text(&target),
        ];
        let (_, err, rc) = run_tool(&system_bin("etcdctl"), &args.map(String::from), None);
        assert_eq!(rc, 0, "etcdctl snapshot restore {file:?}: {err}");
        std::fs::remove_dir_all(&target).expect("remove");
    }

    let mut etcd = start_cluster(Kind::Etcd, 1).await;
    restore_into(&mut etcd, &[&system_bin("etcdctl")], &ours).await;
    let after = record(&etcd.url(0), compact);
    assert_same(&before, &after, "real etcd");
    check_expected(&after);
    assert_continues(&etcd.url(0), before.revision);
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// A valid bbolt file that holds no bucket at all, as bbolt's init writes it: metas on pages
/// 0 and 1 (txid 0 and 1), an empty freelist on page 2, an empty leaf (the root) on page 3.
fn bbolt_without_buckets() -> Vec<u8> {
    const PAGE: usize = 4096;
    let mut f = vec![0u8; 4 * PAGE];
    for (id, flags) in [(0u64, 0x04u16), (1, 0x04), (2, 0x10), (3, 0x02)] {
        let p = id as usize * PAGE;
        f[p..p + 8].copy_from_slice(&id.to_le_bytes());
        f[p + 8..p + 10].copy_from_slice(&flags.to_le_bytes());
    }
    for txid in [0u64, 1] {
        let mut meta = Vec::new();
        for word in [0xED0C_DAEDu32, 2, PAGE as u32, 0] {
            meta.extend(word.to_le_bytes());
        }
        for word in [3u64, 0, 2, 4, txid] {
            meta.extend(word.to_le_bytes());
        }
        meta.extend(fnv1a64(&meta).to_le_bytes());
        let p = txid as usize * PAGE + 16;
        f[p..p + 64].copy_from_slice(&meta);
    }
    f
}

/// `bytes` followed by their SHA-256, as a backup ends (computed by coreutils' sha256sum).
fn with_trailer(dir: &Path, bytes: &[u8]) -> Vec<u8> {
    let p = dir.join("to-hash");
    std::fs::write(&p, bytes).expect("write");
    let out = std::process::Command::new("sha256sum")
        .arg(&p)
        .output()
        .expect("sha256sum");
    let hex = String::from_utf8_lossy(&out.stdout);
    let mut file = bytes.to_vec();
    for i in 0..32 {
        file.push(u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"));
    }
    std::fs::remove_file(&p).expect("remove");
    file
}

fn le(bytes: &[u8], at: usize, len: usize) -> usize {
    bytes[at..at + len]
        .iter()
        .rev()
        .fold(0, |n, b| n << 8 | usize::from(*b))
}

/// The page the `key` bucket's tree starts at (or the root bucket's page when it is inline),
/// found from the meta with the higher txid; and the page size.
fn key_bucket_page(body: &[u8]) -> (usize, usize) {
    let page = le(body, 24, 4);
    let meta = if le(body, page + 64, 8) > le(body, 64, 8) {
        page
    } else {
        0
    };
    let root = le(body, meta + 32, 8);
    let p = &body[root * page..];
    assert_eq!(le(p, 8, 2), 0x02, "the root bucket is one leaf page");
    for i in 0..le(p, 10, 2) {
        let e = 16 + 16 * i;
        let (pos, ksize) = (le(p, e + 4, 4), le(p, e + 8, 4));
        if &p[e + pos..e + pos + ksize] == b"key" {
            let bucket_root = le(p, e + pos + ksize, 8);
            return (if bucket_root == 0 { root } else { bucket_root }, page);
        }
    }
    panic!("no key bucket in the backup")
}

#[tokio::test]
async fn a_bad_backup_file_is_refused_with_a_clear_error_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(Kind::Oxcd, &[]);
    let mut kv = server.ready().await;
    for i in 0..300 {
        kv.put(oxcd_tests::kv::put(format!("k/{i:04}"), vec![b'v'; 100]))
            .await
            .expect("put");
    }
    kv.put(oxcd_tests::kv::put("big", vec![b'x'; 5000]))
        .await
        .expect("put");
    let good = dir.path().join("good.db");
    let (_, err, rc) = ctl(
        &bin("oxcdctl"),
        &server.url(),
        &["snapshot", "save", &text(&good)],
    );
    assert_eq!(rc, 0, "{err}");
    server.stop();
    let bytes = std::fs::read(&good).expect("read backup");
    let body = &bytes[..bytes.len() - 32];
    assert_eq!(
        bytes.len() % 512,
        32,
        "a backup ends in the SHA-256 trailer"
    );

    // Cut mid-page, the trailer gone with the cut.
    let cut = body.len() / 2 + 100;
    assert_ne!(cut % 512, 32);
    let truncated = body[..cut].to_vec();
    // One byte of a page changed: the key bucket's first page gets an unknown page type.
    let (page_no, page) = key_bucket_page(body);
    let mut damaged = body.to_vec();
    damaged[page_no * page + 8] = 0x20;
    // Both metas' checksums changed (bbolt falls back to the other meta if only one is bad).
    let mut checksums = body.to_vec();
    checksums[72] ^= 1;
    checksums[page + 72] ^= 1;
    let mut wrong_trailer = bytes.clone();
    *wrong_trailer.last_mut().expect("byte") ^= 1;
    let no_buckets = with_trailer(dir.path(), &bbolt_without_buckets());
    // The hand-made file is a valid bbolt file: etcd reads its (empty) status.
    let file = dir.path().join("probe.db");
    std::fs::write(&file, &no_buckets).expect("write");
    let (out, err, rc) = status(&system_bin("etcdctl"), &file, true);
    assert_eq!(
        (rc, out.as_str()),
        (
            0,
            "{\"hash\":0,\"revision\":0,\"totalKey\":0,\"totalSize\":16384}\n"
        ),
        "{err}"
    );

    let missing_hash = "snapshot missing hash but --skip-hash-check=false";
    // Go prints a byte slice as [b0 b1 ...] in decimal.
    let go = |b: &[u8]| format!("{:?}", b).replace(',', "");
    let n = bytes.len() - 32;
    let sha_mismatch = format!(
        "expected sha256 {}, got {}",
        go(&wrong_trailer[n..]),
        go(&bytes[n..])
    );
    let cases: Vec<(&str, Vec<u8>, bool, &str)> = vec![
        ("truncated", truncated.clone(), false, missing_hash),
        ("truncated", truncated, true, "file is cut short"),
        (
            "damaged-page",
            with_trailer(dir.path(), &damaged),
            false,
            "invalid type",
        ),
        ("damaged-page-no-trailer", damaged, true, "invalid type"),
        (
            "meta-checksums",
            with_trailer(dir.path(), &checksums),
            false,
            "checksum error",
        ),
        ("wrong-trailer", wrong_trailer, false, &sha_mismatch),
        ("no-buckets", no_buckets, false, "not an etcd backend"),
        ("empty", vec![], false, missing_hash),
        ("empty", vec![], true, "file size too small 0"),
    ];
    let targets = dir.path().join("targets");
    std::fs::create_dir(&targets).expect("mkdir");
    for (name, content, skip, want) in cases {
        let file = dir.path().join(format!("{name}.db"));
        std::fs::write(&file, &content).expect("write");
        let target = targets.join(name);
        let mut args = vec![
            "snapshot".to_string(),
            "restore".into(),
            text(&file),
            "--data-dir".into(),
            text(&target),
        ];
        if skip {
            args.push("--skip-hash-check".into());
        }
        for tool in ["oxcdctl", "oxcdutl"] {
            let (out, err, rc) = run_tool(&bin(tool), &args, None);
            println!(
                "{tool} snapshot restore {name} (skip-hash-check {skip}): rc {rc}\n{out}{err}"
            );
            assert_eq!(rc, 1, "{tool} {name}, skip {skip}: {err}");
            let last = err.lines().last().unwrap_or_default();
            assert!(
                last.starts_with("Error: ") && last.contains(want),
                "{tool} {name}, skip {skip}: {err}\nwant {want:?}"
            );
            assert!(!target.exists(), "{tool} {name}: {target:?} written");
            let left = std::fs::read_dir(&targets).expect("ls").count();
            assert_eq!(left, 0, "{tool} {name}: files left");
        }

        // `snapshot status` of the same file: what etcdctl reads, oxcdctl reads the same;
        // what etcdctl refuses (or dies of: etcdctl 3.4 crashes on some damaged files),
        // oxcdctl refuses with etcdctl's exit code, and bbolt's meta errors in its words.
        let (their_out, theirs, their_rc) = status(&system_bin("etcdctl"), &file, false);
        let (our_out, ours, our_rc) = status(&bin("oxcdctl"), &file, false);
        println!("status {name}: etcdctl rc {their_rc}: {their_out}{}\noxcdctl rc {our_rc}: {our_out}{ours}", theirs.lines().next().unwrap_or_default());
        if their_rc == 0 {
            assert_eq!((our_rc, our_out), (0, their_out), "status {name}: {ours}");
            continue;
        }
        assert_eq!(our_rc, 1, "status {name}: {ours}");
        assert!(ours.starts_with("Error: "), "status {name}: {ours}");
        for words in ["invalid database", "version mismatch", "checksum error"] {
            if theirs.starts_with("Error: ") && theirs.contains(words) {
                assert!(ours.contains(words), "status {name}: {ours}, want {words}");
            }
        }
    }
}

/// Leaves that span several pages, each holding many pairs: how oxcd packs a big key bucket.
fn many_page_leaves(file: &[u8]) -> usize {
    const PAGE: usize = 4096;
    let body = file.len().saturating_sub(32);
    let (mut page, mut found) = (2, 0);
    while (page + 1) * PAGE <= body {
        let h = &file[page * PAGE..page * PAGE + 16];
        let flags = u16::from_le_bytes([h[8], h[9]]);
        let count = u16::from_le_bytes([h[10], h[11]]);
        let overflow = u32::from_le_bytes([h[12], h[13], h[14], h[15]]) as usize;
        if flags == 0x02 && overflow > 0 && count > 1 {
            found += 1;
        }
        page += overflow + 1;
    }
    found
}

/// An oxcd backup of thousands of keys restored into real etcd, which then deletes,
/// overwrites, compacts and defragments through its leaves of many pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_real_etcd_rewrites_the_many_page_leaves_of_an_oxcd_backup() {
    use oxcd_api::etcdserverpb::{request_op, RequestOp, TxnRequest};
    const KEYS: usize = 3000;
    let key = |i: usize| format!("k/{i:05}");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("many.db");
    let mut oxcd = Cluster::start(Spec::new(1)).await;
    let mut kv = oxcd.kv(0).await;
    let value = "v".repeat(300);
    // 100 puts a txn, then the first 500 keys again: history under the live keys.
    for first in (0..KEYS).step_by(100).chain((0..500).step_by(100)) {
        let success = (first..first + 100)
            .map(|i| RequestOp {
                request: Some(request_op::Request::RequestPut(oxcd_tests::kv::put(
                    key(i),
                    &value,
                ))),
            })
            .collect();
        let txn = TxnRequest {
            success,
            ..Default::default()
        };
        kv.txn(txn).await.expect("txn");
    }
    let saved = ctl(
        &bin("oxcdctl"),
        &oxcd.url(0),
        &["snapshot", "save", &text(&file)],
    );
    assert_eq!(saved.2, 0, "oxcdctl snapshot save: {}", saved.1);
    oxcd.members[0].server.stop();
    let bytes = std::fs::read(&file).expect("read backup");
    assert!(
        many_page_leaves(&bytes) >= 4,
        "the backup has few leaves of many pages"
    );

    let mut etcd = start_cluster(Kind::Etcd, 1).await;
    restore_and_start(&mut etcd, &[&system_bin("etcdctl")], &file);
    let ep = etcd.url(0);
    eventually(
        &format!("{ep} serves reads"),
        Duration::from_secs(30),
        || async { etcdctl(&ep, &["get", "k/00000"]).2 == 0 },
    )
    .await;
    let deleted = json(&ep, &["del", &key(1000), &key(2000)]);
    assert_eq!(deleted["deleted"], 1000, "{deleted}");
    for i in (0..KEYS).step_by(7) {
        ok(&ep, &["put", &key(i), "new"]);
    }
    let revision = json(&ep, &["put", &key(KEYS), "end"])["header"]["revision"]
        .as_i64()
        .expect("revision");
    ok(&ep, &["compact", &revision.to_string(), "--physical"]);
    ok(&ep, &["defrag"]);
    let live: Vec<usize> = (0..=KEYS)
        .filter(|i| !(1000..2000).contains(i) || i % 7 == 0)
        .collect();
    let listed = ok(&ep, &["get", "k/", "--prefix"]);
    let want: String = live
        .iter()
        .map(|&i| {
            let v = match i {
                KEYS => "end",
                i if i % 7 == 0 => "new",
                _ => &value,
            };
            format!("{}\n{v}\n", key(i))
        })
        .collect();
    assert!(
        listed == want,
        "etcd's keys after the rewrite differ from the expected"
    );
    let (_, err, rc) = etcdctl(&ep, &["get", "k/00001", &format!("--rev={}", revision - 1)]);
    assert_ne!(rc, 0, "a compacted revision is still readable");
    assert!(err.contains("compacted"), "{err}");
}
