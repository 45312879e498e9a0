//! Membership changes: a member replaced by hex ID, one added right after the leader is
//! removed, a learner caught up by snapshot and promoted, a member of another cluster refused.

use oxcd_api::etcdserverpb::{MemberListRequest, MemberPromoteRequest, StatusRequest};
use oxcd_tests::cluster::{Cluster, Spec};
use oxcd_tests::wait::eventually;
use oxcd_tests::{bin, ctl, system_bin};
use std::time::Duration;

/// Writes `key` through member `via`, then checks that the `members` running members hash
/// alike at that revision.
async fn write_and_agree(c: &Cluster, via: usize, key: &str, members: usize) {
    let rev = c.put(via, key, "x").await.expect("write");
    let hashes = c.hashes(rev).await;
    assert_eq!(hashes.len(), members);
    assert!(hashes.iter().all(|h| *h == hashes[0]), "{hashes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_a_member_by_hex_id() {
    let mut c = Cluster::start(Spec::new(3)).await;
    for n in 0..20 {
        c.put(0, &format!("d{n}"), "v").await.expect("put");
    }
    let eps = c.url(0);
    let (_, err, code) = ctl(&bin("oxcdctl"), &eps, &["member", "remove", "m1"]);
    assert_eq!(code, 128);
    assert_eq!(
        err.trim_end(),
        "Error: bad member ID arg (strconv.ParseUint: parsing \"m1\": invalid syntax), expecting ID in Hex"
    );
    let mut cc = c.cluster_client(0).await;
    let members = cc
        .member_list(MemberListRequest { linearizable: true })
        .await
        .expect("list")
        .into_inner();
    let m1 = members
        .members
        .iter()
        .find(|m| m.name == "m1")
        .expect("m1 listed");
    let cluster_id = members.header.expect("header").cluster_id;
    let (out, err, code) = ctl(
        &bin("oxcdctl"),
        &eps,
        &["member", "remove", &format!("{:x}", m1.id)],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!(
            "Member {:16x} removed from cluster {:16x}\n",
            m1.id, cluster_id
        )
    );
    assert!(
        c.members[1]
            .server
            .wait_exit(Duration::from_secs(20))
            .is_some(),
        "a removed member stops"
    );
    let log = c.members[1].server.log();
    assert!(
        log.contains("the member has been permanently removed from the cluster"),
        "a removed member says why it stops:\n{log}"
    );
    let (_, err, code) = ctl(
        &bin("oxcdctl"),
        &eps,
        &["member", "remove", &format!("{:x}", m1.id)],
    );
    assert_eq!(
        (code, err.trim_end()),
        (1, "Error: etcdserver: member not found")
    );

    let i = c.add_member(2, false).await;
    c.members[i].server.ready().await;
    let eps = c.endpoints();
    let (out, err, code) = ctl(
        &system_bin("etcdctl"),
        &eps,
        &["endpoint", "health", "--cluster"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(err.matches("is healthy").count(), 3, "{err}");
    let (out, _, _) = ctl(&bin("oxcdctl"), &eps, &["member", "list"]);
    assert!(
        out.contains(", started, m3, ") && !out.contains(", m1, "),
        "{out}"
    );
    write_and_agree(&c, i, "after", 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_catches_up_by_snapshot_and_is_promoted() {
    let mut c = Cluster::start(Spec {
        size: 3,
        proxies: false,
        flags: vec![
            "--snapshot-count=50".into(),
            "--experimental-snapshot-catchup-entries=10".into(),
        ],
        tls: None,
    })
    .await;
    for n in 0..120 {
        c.put(n % 3, &format!("d{n:03}"), "v").await.expect("put");
    }
    let l = c.add_member(1, true).await;
    c.members[l].server.ready().await;
    assert!(
        c.members[l]
            .server
            .wait_for_log("received database snapshot", Duration::from_secs(10))
            .await
    );
    let err = c.put(l, "k", "v").await.expect_err("learner write");
    assert_eq!(err.message(), "etcdserver: rpc not supported for learner");
    let mut m = c.maintenance(l).await;
    let st = m
        .status(StatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert!(st.is_learner);
    let learner_id = st.header.expect("header").member_id;

    let eps = c.url(0);
    let (_, err, code) = ctl(
        &bin("oxcdctl"),
        &eps,
        &[
            "member",
            "add",
            "m9",
            "--learner",
            "--peer-urls=http://127.0.0.1:1",
        ],
    );
    assert_eq!(
        (code, err.trim_end()),
        (1, "Error: etcdserver: too many learner members in cluster")
    );
    let voter = c.member_id(0).await;
    let (_, err, code) = ctl(
        &bin("oxcdctl"),
        &eps,
        &["member", "promote", &format!("{voter:x}")],
    );
    assert_eq!(
        (code, err.trim_end()),
        (1, "Error: etcdserver: can only promote a learner member")
    );

    // Through a follower, which hands the promotion to the leader.
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let follower = (0..3).find(|&i| i != leader).expect("a follower");
    eventually("learner promoted", Duration::from_secs(20), || {
        let c = &c;
        async move {
            let mut cc = c.cluster_client(follower).await;
            cc.member_promote(MemberPromoteRequest { id: learner_id })
                .await
                .is_ok()
        }
    })
    .await;
    eventually(
        "promoted member is a voter",
        Duration::from_secs(10),
        || {
            let c = &c;
            async move { c.status(l).await.is_some_and(|s| !s.is_learner) }
        },
    )
    .await;
    c.put(l, "k", "v")
        .await
        .expect("write through the promoted member");

    // A follower that fell behind the compacted log catches up by snapshot too.
    c.members[2].server.stop();
    for n in 0..120 {
        c.put(n % 2, &format!("e{n:03}"), "v").await.expect("put");
    }
    c.members[2].server.spawn();
    c.members[2].server.ready().await;
    assert!(
        c.members[2]
            .server
            .wait_for_log("received database snapshot", Duration::from_secs(20))
            .await
    );
    write_and_agree(&c, 0, "end", 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_of_another_cluster_is_refused() {
    let c = Cluster::start(Spec::new(1)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (cp, pp) = (oxcd_tests::free_port(), oxcd_tests::free_port());
    let own_peer = format!("http://127.0.0.21:{pp}");
    let client = format!("http://127.0.0.21:{cp}");
    let args: Vec<String> = [
        "--name",
        "stranger",
        "--data-dir",
        &dir.path().join("data").display().to_string(),
        "--listen-client-urls",
        &client,
        "--advertise-client-urls",
        &client,
        "--listen-peer-urls",
        &own_peer,
        "--initial-advertise-peer-urls",
        &own_peer,
        "--initial-cluster",
        &format!("stranger={own_peer},m0={}", c.members[0].advertised_peer),
        "--initial-cluster-token",
        "another-token",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut stranger =
        oxcd_tests::Server::member("127.0.0.21", cp, pp, dir.path().join("data"), args);
    stranger.spawn();
    assert!(
        stranger
            .wait_for_log(
                "request sent was ignored due to cluster ID mismatch",
                Duration::from_secs(20)
            )
            .await,
        "{}",
        stranger.log()
    );
    assert!(
        c.members[0]
            .server
            .wait_for_log("request cluster ID mismatch", Duration::from_secs(10))
            .await
    );
    c.put(0, "still", "serving")
        .await
        .expect("the cluster is untouched");
    let st = c.status(0).await.expect("status");
    assert_eq!(st.leader, st.header.expect("header").member_id);
}

/// Followers of a removed leader forward to it until they elect another, and raft drops a
/// membership change sent then without a word. oxcd proposes it again to the new leader;
/// etcd 3.4's `member add` right after `member remove <leader>` times out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_added_right_after_the_leaders_removal_joins() {
    let mut c = Cluster::start(Spec::new(3)).await;
    let leader = c.wait_leader(Duration::from_secs(20)).await;
    let leader_id = c.member_id(leader).await;
    let via = (leader + 1) % 3;
    let (_, err, code) = ctl(
        &bin("oxcdctl"),
        &c.url(via),
        &["member", "remove", &format!("{leader_id:x}")],
    );
    assert_eq!(code, 0, "{err}");
    let i = c.add_member(via, false).await;
    c.members[i].server.ready().await;
    assert!(
        c.members[leader]
            .server
            .wait_exit(Duration::from_secs(20))
            .is_some(),
        "the removed leader stops"
    );
    write_and_agree(&c, i, "after", 3).await;
}
