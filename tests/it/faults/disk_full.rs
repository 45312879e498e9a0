//! A full disk: the member loses nothing it acknowledged, stops with a line naming what it
//! could not write, and once there is room again it comes back with every acknowledged write.
//! The data dir is a small tmpfs mounted for the test (the suite runs as root).

use oxcd_tests::kv::put;
use oxcd_tests::{Kind, Server};
use std::process::Command;
use std::time::Duration;

struct Mount(std::path::PathBuf);

impl Mount {
    fn tmpfs(dir: &std::path::Path, size: &str) -> Mount {
        std::fs::create_dir_all(dir).expect("mount point");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "mounting a tmpfs needs root (the test fills a disk of its own)"
        );
        Mount(dir.to_path_buf())
    }

    fn grow(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount");
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_loses_nothing_acknowledged_and_the_member_comes_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = Mount::tmpfs(&dir.path().join("disk"), "40m");
    let mut server = Server::start(Kind::Oxcd, &["--quota-backend-bytes=8589934592"]);
    server.kill9();
    server.data_dir = dir.path().join("disk").join("data");
    server.spawn();
    let mut kv = server.ready().await;

    let value = vec![b'x'; 64 * 1024];
    let mut acked = Vec::new();
    let mut refusal = None;
    for n in 0..2000 {
        let key = format!("k{n:05}");
        match tokio::time::timeout(Duration::from_secs(10), kv.put(put(&key, &value))).await {
            Ok(Ok(_)) => acked.push(key),
            Ok(Err(e)) => {
                refusal = Some(e.to_string());
                break;
            }
            Err(_) => {
                refusal = Some("no answer within 10 s".into());
                break;
            }
        }
    }
    assert!(refusal.is_some(), "40 MiB never filled");
    assert!(
        acked.len() > 50,
        "too few writes before the disk filled: {}",
        acked.len()
    );
    // The member stops, or refuses writes and serves reads; either way the log says why.
    let stopped = server.wait_exit(Duration::from_secs(20)).is_some();
    let log = server.log();
    assert!(
        log.contains("No space left on device"),
        "no line names the full disk (stopped: {stopped}); refusal {refusal:?}; log:\n{log}"
    );
    if !stopped {
        let read = kv
            .range(oxcd_api::etcdserverpb::RangeRequest {
                key: acked[0].clone().into_bytes(),
                serializable: true,
                ..Default::default()
            })
            .await;
        assert!(
            read.is_ok(),
            "a member that goes on must serve reads: {read:?}"
        );
        server.kill9();
    }

    disk.grow("400m");
    server.spawn();
    let mut kv = server.ready().await;
    let all = kv
        .range(oxcd_api::etcdserverpb::RangeRequest {
            key: b"k".to_vec(),
            range_end: b"l".to_vec(),
            keys_only: true,
            ..Default::default()
        })
        .await
        .expect("range after restart")
        .into_inner();
    let present: std::collections::HashSet<Vec<u8>> =
        all.kvs.into_iter().map(|kv| kv.key).collect();
    let lost: Vec<&String> = acked
        .iter()
        .filter(|k| !present.contains(k.as_bytes()))
        .collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    kv.put(put("after", "room again"))
        .await
        .expect("writes go on");
    server.kill9();
}
