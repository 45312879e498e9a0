//! Membership changes and a lagging apply thread: raft's guards (one change at a time, no
//! campaign over an unapplied change) count what is really applied.

use oxcd_api::etcdserverpb::cluster_client::ClusterClient;
use oxcd_api::etcdserverpb::{MemberAddRequest, MemberListRequest, MemberPromoteRequest};
use oxcd_tests::cluster::{Cluster, Spec};
use oxcd_tests::wait::{eventually, retry};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_member_does_not_campaign_over_a_membership_change_it_has_not_applied() {
    let mut cluster = Cluster::start(Spec::new(3)).await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    for &i in &followers {
        cluster.members[i]
            .server
            .failpoint("applyBeforeConfChange", "1*sleep(8000)");
    }
    let learner_url = "http://127.0.0.99:2380".to_string();
    cluster
        .cluster_client(leader)
        .await
        .member_add(MemberAddRequest {
            peer_ur_ls: vec![learner_url.clone()],
            is_learner: true,
        })
        .await
        .expect("member add");
    let added_at = cluster
        .status(leader)
        .await
        .expect("status")
        .raft_applied_index;
    eventually(
        "the followers hold the change committed but not applied",
        Duration::from_secs(10),
        || async {
            let mut all = true;
            for &i in &followers {
                let s = cluster.status(i).await;
                all &=
                    s.is_some_and(|s| s.raft_index >= added_at && s.raft_applied_index < added_at);
            }
            all
        },
    )
    .await;
    cluster.members[leader].server.kill9();

    let next = cluster.wait_leader(Duration::from_secs(30)).await;
    let members = cluster
        .cluster_client(next)
        .await
        .member_list(MemberListRequest {
            linearizable: false,
        })
        .await
        .expect("member list")
        .into_inner()
        .members;
    assert!(
        members.iter().any(|m| m.peer_ur_ls.contains(&learner_url)),
        "a member became leader before it applied a committed membership change: {members:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_second_membership_change_waits_for_the_first_to_be_applied() {
    let cluster = Cluster::start(Spec::new(3)).await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    cluster.members[leader]
        .server
        .failpoint("applyBeforeConfChange", "1*sleep(2000)");
    let client = ClusterClient::new(cluster.patient_channel(leader).await);
    let add = |n: u8| {
        let mut client = client.clone();
        async move {
            client
                .member_add(MemberAddRequest {
                    peer_ur_ls: vec![format!("http://127.0.0.{n}:2380")],
                    is_learner: true,
                })
                .await
        }
    };
    // Raft drops a change proposed while another is unapplied; the second must not be lost.
    let (first, second) = tokio::join!(add(98), add(99));
    assert!(first.is_ok(), "first: {first:?}");
    assert!(second.is_ok(), "second: {second:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_new_member_that_crashes_loading_its_first_snapshot_rejoins_as_the_cluster_knows_it(
) {
    let mut cluster = Cluster::start(Spec {
        flags: vec![
            "--snapshot-count=50".into(),
            "--experimental-snapshot-catchup-entries=10".into(),
        ],
        proxies: true,
        ..Spec::new(3)
    })
    .await;
    for n in 0..120 {
        cluster
            .put(n % 3, &format!("d{n:03}"), "v")
            .await
            .expect("put");
    }
    // The snapshot file is in place and fsynced; the crash comes before the log records it.
    let joiner = cluster
        .add_member_with_env(0, true, &[("FAILPOINTS", "raftBeforeApplySnap=panic")])
        .await;
    let exited = cluster.members[joiner]
        .server
        .wait_exit(Duration::from_secs(30));
    assert!(
        exited.is_some(),
        "the new member did not crash at the failpoint; log:\n{}",
        cluster.members[joiner].server.log()
    );
    cluster.members[joiner].server.env.clear();
    cluster.members[joiner].server.spawn();
    cluster.members[joiner].server.ready().await;

    let id = cluster.member_id(joiner).await;
    let mut client = ClusterClient::new(cluster.patient_channel(0).await);
    let promoted = retry(Duration::from_secs(30), Duration::from_millis(200), || {
        let mut client = client.clone();
        async move {
            client
                .member_promote(MemberPromoteRequest { id })
                .await
                .map_err(|e| e.to_string())
        }
    })
    .await;
    assert!(promoted.is_ok(), "promote: {promoted:?}");
    client = ClusterClient::new(cluster.patient_channel(joiner).await);
    let members = client
        .member_list(MemberListRequest { linearizable: true })
        .await
        .expect("the rejoined member serves a linearizable member list")
        .into_inner()
        .members;
    assert_eq!(members.len(), 4, "{members:?}");
    // Cut off from the others, it must find no quorum: a member that took itself for the
    // only voter would elect itself at once.
    let leader_id = cluster.status(joiner).await.expect("status").leader;
    cluster.isolate(joiner);
    let seen = retry(
        Duration::from_secs(20),
        Duration::from_millis(20),
        || async {
            match cluster.status(joiner).await {
                Some(s) if s.leader != leader_id => Ok(s.leader),
                _ => Err(()),
            }
        },
    )
    .await
    .expect("the cut-off member notices it lost its leader");
    assert_ne!(seen, id, "the rejoined member elected itself alone");
    cluster.heal();
    cluster.wait_leader(Duration::from_secs(30)).await;
    let rev = retry(Duration::from_secs(20), Duration::from_millis(200), || {
        cluster.put(joiner, "after", "1")
    })
    .await
    .expect("put through the new member");
    eventually(
        "every member holds the same history",
        Duration::from_secs(20),
        || async {
            let hashes = cluster.hashes(rev).await;
            hashes.len() == 4 && hashes.iter().all(|h| *h == hashes[0])
        },
    )
    .await;
}
