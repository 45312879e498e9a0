//! A slow peer link (a busy machine, a congested network): the member behind it keeps its
//! peer connection and its leader, because raft's heartbeats decide liveness, not a ping that
//! comes back late.

use oxcd_tests::cluster::{Cluster, Spec, ELECTION_MS};
use oxcd_tests::wait::eventually;
use std::time::{Duration, Instant};

const LOST: &str = "lost TCP streaming connection with remote peer";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_peer_link_keeps_its_connection_and_its_leader() {
    let c = Cluster::start(Spec {
        size: 3,
        proxies: true,
        flags: vec![],
        tls: None,
    })
    .await;
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let follower = (0..3).find(|&i| i != leader).expect("a follower");
    let term = c.status(leader).await.expect("leader status").raft_term;
    let leader_id = c.member_id(leader).await;
    let lost_before = c.members[leader].server.log().matches(LOST).count();

    // Everything the leader sends the follower, and the follower's answers on that
    // connection (pings included), now take 350 ms each way: 7 heartbeats, well within an
    // election timeout, but past any ping deadline tied to the heartbeat.
    c.proxy(follower).set_delay(Duration::from_millis(350));
    c.put(leader, "slow", "link")
        .await
        .expect("put through the leader");
    eventually(
        "the follower behind the slow link sees the write",
        Duration::from_millis(10 * ELECTION_MS),
        || async { c.get(follower, "slow").await.ok().flatten().as_deref() == Some("link") },
    )
    .await;
    let until = Instant::now() + Duration::from_millis(5 * ELECTION_MS);
    while Instant::now() < until {
        let status = c.status(follower).await.expect("follower status");
        assert_eq!(
            status.leader, leader_id,
            "the follower behind the slow link keeps its leader"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.proxy(follower).set_delay(Duration::ZERO);

    let log = c.members[leader].server.log();
    let lost = log.matches(LOST).count() - lost_before;
    assert_eq!(
        lost, 0,
        "the leader dropped its connection to the slow follower:\n{log}"
    );
    let after = c.status(leader).await.expect("leader status");
    assert_eq!(after.raft_term, term, "no election happened");
}
