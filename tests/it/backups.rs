//! Scheduled backups (--backup-dir, --backup-interval, --backup-retention): the leader takes
//! each one in etcd's format, the oldest beyond the retention go, every one restores, and a
//! failing schedule shows in /health and the metrics.

use oxcd_tests::cluster::{Cluster, Spec};
use oxcd_tests::wait::eventually;
use oxcd_tests::{bin, http_get, run_tool, system_bin, Kind, Server};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn backups(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    found.retain(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("oxcd-backup-") && n.ends_with(".db"))
    });
    found.sort();
    found
}

/// A counter or gauge from a member's /metrics (0 when absent).
fn metric(endpoint: &str, name: &str) -> f64 {
    oxcd_tests::metric(endpoint, name).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_backs_up_every_interval_keeps_the_newest_and_each_restores() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shared = dir.path().join("backups");
    let c = Cluster::start(Spec {
        flags: vec![
            format!("--backup-dir={}", shared.display()),
            "--backup-interval=1s".into(),
            "--backup-retention=3".into(),
        ],
        ..Spec::new(3)
    })
    .await;
    let leader = c.wait_leader(Duration::from_secs(20)).await;
    let rev = c.put(leader, "backed/up", "yes").await.expect("put");
    let ep = |i: usize| c.members[i].server.endpoint();
    eventually("five backups taken", Duration::from_secs(40), || async {
        metric(&ep(leader), "oxcd_backup_success_total") >= 5.0
    })
    .await;
    let kept = backups(&shared);
    assert_eq!(kept.len(), 3, "retention 3: {kept:?}");
    let leader_id = format!("{:x}", c.member_id(leader).await);
    for b in &kept {
        let name = b.file_name().and_then(|n| n.to_str()).unwrap_or("");
        assert!(
            name.ends_with(&format!("-{leader_id}.db")),
            "{name} not the leader's"
        );
    }
    for f in (0..3).filter(|i| *i != leader) {
        assert_eq!(
            metric(&ep(f), "oxcd_backup_success_total"),
            0.0,
            "member {f}"
        );
    }
    assert!(metric(&ep(leader), "oxcd_backup_last_success_timestamp_seconds") > 1.7e9);
    assert_eq!(metric(&ep(leader), "oxcd_backup_failures_total"), 0.0);
    let newest = kept.last().expect("a backup").display().to_string();
    let (status, err, code) = run_tool(
        &system_bin("etcdctl"),
        &[
            "snapshot".into(),
            "status".into(),
            newest.clone(),
            "-w".into(),
            "json".into(),
        ],
        None,
    );
    assert_eq!(code, 0, "etcdctl reads it: {err}");
    let status: serde_json::Value = serde_json::from_str(&status).expect("json");
    assert!(status["revision"].as_i64() >= Some(rev), "{status}");
    let restored = dir.path().join("restored");
    let (out, err, code) = run_tool(
        &bin("oxcdctl"),
        &[
            "snapshot".into(),
            "restore".into(),
            newest,
            format!("--data-dir={}", restored.display()),
        ],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    let mut server = Server::start(Kind::Oxcd, &[&format!("--data-dir={}", restored.display())]);
    // The harness gives each server its own data dir; this one serves the restored one.
    let mut kv = server.ready().await;
    let got = kv
        .range(oxcd_api::etcdserverpb::RangeRequest {
            key: b"backed/up".to_vec(),
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    assert_eq!(
        got.kvs.first().map(|kv| kv.value.as_slice()),
        Some(&b"yes"[..])
    );
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_schedule_is_counted_and_shown_by_health_until_it_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("not-a-dir");
    std::fs::write(&target, b"in the way").expect("write");
    let server = Server::start(
        Kind::Oxcd,
        &[
            &format!("--backup-dir={}", target.display()),
            "--backup-interval=1s",
        ],
    );
    server.ready().await;
    let ep = server.endpoint();
    eventually("failures counted", Duration::from_secs(20), || async {
        metric(&ep, "oxcd_backup_failures_total") >= 1.0
    })
    .await;
    eventually(
        "/health says the backup is overdue",
        Duration::from_secs(20),
        || async {
            http_get(&ep, "/health")
                == (
                    503,
                    r#"{"health":"false","reason":"BACKUP OVERDUE"}"#.to_string(),
                )
        },
    )
    .await;
    assert_eq!(http_get(&ep, "/health?exclude=BACKUP").0, 200);
    assert!(server.log().contains("scheduled backup failed"));
    std::fs::remove_file(&target).expect("clear the way");
    eventually(
        "backups resume and /health recovers",
        Duration::from_secs(20),
        || async { http_get(&ep, "/health").0 == 200 && !backups(&target).is_empty() },
    )
    .await;
}
