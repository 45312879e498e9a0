//! `oxcdctl snapshot save` with the seed runbook's three-endpoint `${ETCD_ENDPOINTS}` (which
//! etcdctl 3.4 refuses): the backup comes from the leader, else from the first member that
//! answers, and stderr (and `-w json`) says which.
//!
//! The cluster test runs in nextest's `heavy` group: `test(/^ctl_snapshot::cluster_/)`.

use oxcd_tests::certs::Pki;
use oxcd_tests::cluster::{Cluster, Spec};
use oxcd_tests::{bin, ctl, run_tool};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// The seed's backup command: `--endpoints=EPS --cacert --cert --key [extra] snapshot save FILE`.
fn save(eps: &str, tls: &[String], extra: &[&str], file: &Path) -> (String, String, i32) {
    let file = file.display().to_string();
    let mut args: Vec<&str> = vec!["--dial-timeout=2s", "--command-timeout=5s"];
    args.extend(tls.iter().map(String::as_str));
    args.extend(extra);
    args.extend(["snapshot", "save", &file]);
    ctl(&bin("oxcdctl"), eps, &args)
}

/// The stderr log lines (etcdctl's zap JSON lines) whose msg is `msg`.
fn logged(stderr: &str, msg: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["msg"] == msg)
        .collect()
}

/// The one "selected member for snapshot" line.
fn selected(stderr: &str) -> Value {
    let lines = logged(stderr, "selected member for snapshot");
    assert_eq!(lines.len(), 1, "{stderr}");
    lines[0].clone()
}

/// `oxcdctl snapshot status FILE -w json`'s revision.
fn backup_revision(file: &Path) -> i64 {
    let args = [
        "snapshot",
        "status",
        &file.display().to_string(),
        "-w",
        "json",
    ]
    .map(String::from)
    .to_vec();
    let (out, err, rc) = run_tool(&bin("oxcdctl"), &args, None);
    assert_eq!(rc, 0, "snapshot status: {err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    v["revision"].as_i64().unwrap_or_else(|| panic!("{out}"))
}

async fn member_id(c: &Cluster, i: usize) -> String {
    let status = c.status(i).await.expect("member answers status");
    format!("{:x}", status.header.map_or(0, |h| h.member_id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_save_with_an_endpoint_list_takes_the_leaders_backup_else_a_survivors() {
    let pki = Pki::new();
    let mut c = Cluster::start(Spec {
        size: 3,
        proxies: false,
        flags: pki.server_flags(true),
        tls: Some(pki.client(Some("root"))),
    })
    .await;
    let tls = pki.ctl_flags("root");
    let mut revision = 0;
    for i in 0..20 {
        revision = c
            .put(i % 3, &format!("/registry/k{i}"), "v")
            .await
            .expect("put");
    }
    // Every member has applied the last write, so any one's backup holds it.
    c.hashes(revision).await;
    let leader = c.wait_leader(Duration::from_secs(30)).await;
    let leader_id = member_id(&c, leader).await;
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("etcd-data-20180801.db");
    let file_s = file.display().to_string();

    // The leader last, then first, in ${ETCD_ENDPOINTS}.
    let last = [followers[0], followers[1], leader]
        .map(|i| c.url(i))
        .join(",");
    let first = [leader, followers[1], followers[0]]
        .map(|i| c.url(i))
        .join(",");
    for eps in [&last, &first] {
        let _ = std::fs::remove_file(&file);
        let (out, err, rc) = save(eps, &tls, &[], &file);
        assert_eq!(rc, 0, "{eps}: {out}{err}");
        assert_eq!(out, format!("Snapshot saved at {file_s}\n"));
        let line = selected(&err);
        assert_eq!(line["level"], "info", "{err}");
        assert_eq!(line["endpoint"], c.url(leader).as_str(), "{err}");
        assert_eq!(line["member-id"], leader_id.as_str(), "{err}");
        assert_eq!(line["reason"], "leader", "{err}");
        let fetched = logged(&err, "fetched snapshot");
        assert_eq!(fetched.len(), 1, "{err}");
        assert_eq!(fetched[0]["endpoint"], c.url(leader).as_str(), "{err}");
        assert_eq!(logged(&err, "saved").len(), 1, "{err}");
        assert!(!Path::new(&format!("{file_s}.part")).exists());
        assert_eq!(backup_revision(&file), revision);
    }

    // -w json: after etcdctl's line, one JSON object naming the member.
    let json_file = dir.path().join("json.db");
    let (out, err, rc) = save(&last, &tls, &["-w", "json"], &json_file);
    assert_eq!(rc, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(
        lines[0],
        format!("Snapshot saved at {}", json_file.display())
    );
    let v: Value = serde_json::from_str(lines[1]).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["member_id"], leader_id.as_str(), "{out}");
    assert_eq!(v["endpoint"], c.url(leader).as_str(), "{out}");
    assert_eq!(v["leader"], true, "{out}");
    assert_eq!(v["path"], json_file.display().to_string().as_str(), "{out}");

    // One endpoint stays etcdctl's command: no member picked, nothing added to -w json.
    let one_file = dir.path().join("one.db");
    let (out, err, rc) = save(&c.url(followers[0]), &tls, &["-w", "json"], &one_file);
    assert_eq!(rc, 0, "{out}{err}");
    assert_eq!(out, format!("Snapshot saved at {}\n", one_file.display()));
    assert!(
        logged(&err, "selected member for snapshot").is_empty(),
        "{err}"
    );
    assert_eq!(
        logged(&err, "fetched snapshot")[0]["endpoint"],
        c.url(followers[0]).as_str()
    );

    // The leader and one follower killed: the survivor has no quorum and no leader, and the
    // backup comes from it, the first member that answered.
    let survivor = followers[1];
    let survivor_id = member_id(&c, survivor).await;
    c.members[leader].server.kill9();
    c.members[followers[0]].server.kill9();
    let _ = std::fs::remove_file(&file);
    let (out, err, rc) = save(&first, &tls, &[], &file);
    assert_eq!(rc, 0, "{out}{err}");
    assert_eq!(out, format!("Snapshot saved at {file_s}\n"));
    let line = selected(&err);
    assert_eq!(line["endpoint"], c.url(survivor).as_str(), "{err}");
    assert_eq!(line["member-id"], survivor_id.as_str(), "{err}");
    assert_eq!(
        line["reason"], "no leader among the endpoints; first member that answered",
        "{err}"
    );
    let silent = logged(&err, "endpoint did not answer status");
    assert_eq!(silent.len(), 2, "{err}");
    assert!(silent.iter().all(|l| l["level"] == "warn"), "{err}");
    assert_eq!(silent[0]["endpoint"], c.url(leader).as_str(), "{err}");
    assert_eq!(backup_revision(&file), revision);
    let (out, err, rc) = save(&first, &tls, &["-w", "json"], &json_file);
    assert_eq!(rc, 0, "{out}{err}");
    let v: Value = serde_json::from_str(out.lines().nth(1).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["member_id"], survivor_id.as_str(), "{out}");
    assert_eq!(v["leader"], false, "{out}");

    // Nobody answering fails as etcdctl's dial does, with save's exit code, writing nothing.
    c.members[survivor].server.kill9();
    let none = dir.path().join("none.db");
    let (out, err, rc) = save(&first, &tls, &[], &none);
    assert_eq!((out.as_str(), rc), ("", 5), "{err}");
    assert!(err.ends_with("Error: context deadline exceeded\n"), "{err}");
    assert!(!none.exists() && !Path::new(&format!("{}.part", none.display())).exists());
}
