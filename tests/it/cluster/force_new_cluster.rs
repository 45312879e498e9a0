//! Quorum lost for good (two of three members' disks gone): the survivor restarts with
//! `--force-new-cluster` as a one-member cluster with its data and IDs, stays one after a
//! restart without the flag, and grows back with `member add`.

use oxcd_api::etcdserverpb::{MemberListRequest, MemberRemoveRequest};
use oxcd_tests::cluster::{Cluster, Spec};
use std::time::{Duration, Instant};

async fn member_ids(c: &Cluster, i: usize) -> Vec<u64> {
    let mut ids: Vec<u64> = c
        .cluster_client(i)
        .await
        .member_list(MemberListRequest { linearizable: true })
        .await
        .expect("member list")
        .into_inner()
        .members
        .iter()
        .map(|m| m.id)
        .collect();
    ids.sort_unstable();
    ids
}

/// (cluster ID, member ID) as member `i` reports itself.
async fn header_ids(c: &Cluster, i: usize) -> (u64, u64) {
    let h = c.status(i).await.expect("status").header.expect("header");
    (h.cluster_id, h.member_id)
}

/// Restarts member `i` (stopped) with its command line plus or minus `--force-new-cluster`.
fn restart(c: &mut Cluster, i: usize, force: bool) {
    let mut args = c.members[i].server.custom_args.clone().expect("args");
    args.retain(|a| a != "--force-new-cluster");
    if force {
        args.push("--force-new-cluster".into());
    }
    c.members[i].server.custom_args = Some(args);
    c.members[i].server.spawn();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_new_cluster_rebuilds_from_one_survivor() {
    let mut c = Cluster::start(Spec::new(3)).await;
    for n in 0..20 {
        c.put(n % 3, &format!("d{n:02}"), &n.to_string())
            .await
            .expect("put");
    }
    // The leader survives, so the write below leaves an uncommitted entry to discard.
    let s = c.wait_leader(Duration::from_secs(10)).await;
    let (cluster_id, member_id) = header_ids(&c, s).await;
    let before = member_ids(&c, s).await;
    assert_eq!(before.len(), 3);
    let dead: Vec<u64> = before
        .iter()
        .copied()
        .filter(|&id| id != member_id)
        .collect();
    for i in (0..3).filter(|&i| i != s) {
        c.members[i].server.kill9();
        std::fs::remove_dir_all(c.data_dir(i)).expect("rm data dir");
    }
    assert!(c.put(s, "lost", "x").await.is_err(), "no quorum");
    c.members[s].server.stop();

    let started = Instant::now();
    restart(&mut c, s, true);
    // Bounded: a member with no leader holds its client calls until it has published.
    assert_eq!(c.wait_leader(Duration::from_secs(30)).await, s);
    let to_leader = started.elapsed();
    let log = c.members[s].server.log();
    assert!(log.contains("forcing restart member"), "{log}");
    assert!(log.contains("discarding uncommitted WAL entries"), "{log}");
    assert!(log.contains("the only voter; campaigning at once"), "{log}");
    eprintln!("forced start to leader and serving: {to_leader:?}");
    assert_eq!(header_ids(&c, s).await, (cluster_id, member_id));
    assert_eq!(member_ids(&c, s).await, vec![member_id]);
    for n in 0..20 {
        assert_eq!(
            c.get(s, &format!("d{n:02}")).await.expect("get"),
            Some(n.to_string())
        );
    }
    assert_eq!(c.get(s, "lost").await.expect("get"), None, "discarded");
    c.put(s, "after-force", "y").await.expect("writes work");
    let gone = c
        .cluster_client(s)
        .await
        .member_remove(MemberRemoveRequest { id: dead[0] })
        .await
        .expect_err("removed already");
    assert!(gone.message().contains("member not found"), "{gone:?}");

    // A restart without the flag: still one member, same IDs.
    c.members[s].server.stop();
    restart(&mut c, s, false);
    assert_eq!(c.wait_leader(Duration::from_secs(30)).await, s);
    assert_eq!(header_ids(&c, s).await, (cluster_id, member_id));
    assert_eq!(member_ids(&c, s).await, vec![member_id]);
    assert_eq!(
        c.get(s, "after-force").await.expect("get"),
        Some("y".into())
    );

    // Grows back with member add, one at a time.
    let a = c.add_member(s, false).await;
    c.members[a].server.ready().await;
    let b = c.add_member(s, false).await;
    c.members[b].server.ready().await;
    c.wait_leader(Duration::from_secs(20)).await;
    let ids = member_ids(&c, s).await;
    assert_eq!(ids.len(), 3, "{ids:x?}");
    assert!(ids.contains(&member_id));
    assert!(dead.iter().all(|d| !ids.contains(d)), "{ids:x?}");
    for i in [a, b] {
        assert_eq!(header_ids(&c, i).await.0, cluster_id);
        assert_eq!(c.get(i, "d07").await.expect("get"), Some("7".into()));
    }
    let rev = c.put(a, "end", "z").await.expect("put");
    let hashes = c.hashes(rev).await;
    assert_eq!(hashes.len(), 3);
    assert!(hashes.iter().all(|h| *h == hashes[0]), "{hashes:?}");
}
