//! Membership changes and a lagging apply thread: raft's guards (one change at a time, no
//! campaign over an unapplied change) count what is really applied.

use oxcd_api::etcdserverpb::cluster_client::ClusterClient;
use oxcd_api::etcdserverpb::{MemberAddRequest, MemberListRequest};
use oxcd_tests::cluster::{Cluster, Spec};
use oxcd_tests::wait::eventually;
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
