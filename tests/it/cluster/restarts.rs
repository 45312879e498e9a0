//! Leadership moved, members updated, restarted one by one and all at once: data and IDs
//! stay.

use oxcd_tests::cluster::{Cluster, Spec};
use oxcd_tests::{bin, ctl, system_bin};
use std::time::Duration;

/// (cluster ID, member ID) as each member reports itself.
async fn ids(c: &Cluster) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for i in 0..c.members.len() {
        let h = c.status(i).await.expect("status").header.expect("header");
        out.push((h.cluster_id, h.member_id));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_and_full_restarts_keep_data_and_ids() {
    let mut c = Cluster::start(Spec::new(3)).await;
    for n in 0..30 {
        c.put(n % 3, &format!("d{n:02}"), &n.to_string())
            .await
            .expect("put");
    }
    let before = ids(&c).await;

    // move-leader, found among --endpoints as etcdctl does; then the real etcdctl moves it back.
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let target = (leader + 1) % 3;
    let (lid, tid) = (before[leader].1, before[target].1);
    let eps = c.endpoints();
    let (out, err, code) = ctl(&bin("oxcdctl"), &eps, &["move-leader", &format!("{tid:x}")]);
    assert_eq!(
        (code, out),
        (
            0,
            format!("Leadership transferred from {lid:x} to {tid:x}\n")
        ),
        "{err}"
    );
    assert_eq!(c.wait_leader(Duration::from_secs(10)).await, target);
    let (out, err, code) = ctl(
        &system_bin("etcdctl"),
        &eps,
        &["move-leader", &format!("{lid:x}")],
    );
    assert_eq!(
        (code, out),
        (
            0,
            format!("Leadership transferred from {tid:x} to {lid:x}\n")
        ),
        "{err}"
    );
    let (_, err, code) = ctl(
        &bin("oxcdctl"),
        &c.url(target),
        &["move-leader", &format!("{lid:x}")],
    );
    assert_eq!(code, 128);
    assert!(
        err.starts_with("Error: no leader endpoint given at"),
        "{err}"
    );

    // member update with the member's own URLs is accepted and changes nothing.
    let peer = c.members[2].advertised_peer.clone();
    let (out, err, code) = ctl(
        &bin("oxcdctl"),
        &eps,
        &[
            "member",
            "update",
            &format!("{:x}", before[2].1),
            &format!("--peer-urls={peer}"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("Member {:16x} updated in cluster", before[2].1)),
        "{out}"
    );

    for i in 0..3 {
        c.members[i].server.stop();
        c.put((i + 1) % 3, &format!("roll{i}"), "x")
            .await
            .expect("write while one is down");
        c.members[i].server.spawn();
        c.members[i].server.ready().await;
    }
    for i in 0..3 {
        c.members[i].server.stop();
    }
    for i in 0..3 {
        c.members[i].server.spawn();
    }
    for i in 0..3 {
        c.members[i].server.ready().await;
    }
    c.wait_leader(Duration::from_secs(20)).await;
    assert_eq!(
        ids(&c).await,
        before,
        "same cluster and member IDs after restarts"
    );
    for n in 0..30 {
        assert_eq!(
            c.get(n % 3, &format!("d{n:02}")).await.expect("get"),
            Some(n.to_string())
        );
    }
    for i in 0..3 {
        assert_eq!(
            c.get(i, &format!("roll{i}")).await.expect("get"),
            Some("x".into())
        );
    }
    let rev = c.put(0, "end", "x").await.expect("put");
    let hashes = c.hashes(rev).await;
    assert!(hashes.iter().all(|h| *h == hashes[0]), "{hashes:?}");
}
