//! Leases when the leader stalls (SIGSTOP): what a follower forwards has a deadline and
//! follows the leader the cluster elects meanwhile.

use oxcd_api::etcdserverpb::lease_client::LeaseClient;
use oxcd_api::etcdserverpb::{LeaseGrantRequest, LeaseKeepAliveRequest, LeaseTimeToLiveRequest};
use oxcd_tests::cluster::{Cluster, Spec};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// No forward may go unanswered longer than this (the server's request timeout is 7 s here).
const ANSWER_WITHIN: Duration = Duration::from_secs(12);

async fn keep_alive_once(lease: &mut LeaseClient<Channel>, id: i64) -> Result<i64, String> {
    let mut stream = lease
        .lease_keep_alive(futures::stream::iter([LeaseKeepAliveRequest { id }]))
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    match stream.message().await {
        Ok(Some(r)) => Ok(r.ttl),
        Ok(None) => Err("stream ended".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Calls `attempt` until it yields `Ok(true)`; every attempt must answer within
/// `ANSWER_WITHIN`, and one must succeed within 40 s.
async fn answered_then_succeeds<F, Fut>(what: &str, mut attempt: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, String>>,
{
    let started = Instant::now();
    let mut seen = Vec::new();
    loop {
        let t = Instant::now();
        match tokio::time::timeout(ANSWER_WITHIN, attempt()).await {
            Err(_) => panic!(
                "{what} through a follower got no answer within {ANSWER_WITHIN:?} (after {seen:?})"
            ),
            Ok(Ok(true)) => return,
            Ok(outcome) => seen.push(format!("{outcome:?} after {:?}", t.elapsed())),
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "{what} never succeeded under the new leader: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_lease_calls_through_a_follower_follow_a_new_leader_when_the_old_one_stalls() {
    let cluster = Cluster::start(Spec::new(3)).await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let follower = (leader + 1) % 3;
    let mut lease = LeaseClient::new(cluster.patient_channel(follower).await);
    let id = lease
        .lease_grant(LeaseGrantRequest { ttl: 60, id: 0 })
        .await
        .expect("grant")
        .into_inner()
        .id;
    assert!(keep_alive_once(&mut lease, id).await.expect("keep-alive") > 0);

    cluster.members[leader].server.pause();
    answered_then_succeeds("a keep-alive", || {
        let mut lease = lease.clone();
        async move { keep_alive_once(&mut lease, id).await.map(|ttl| ttl > 0) }
    })
    .await;
    answered_then_succeeds("a time-to-live", || {
        let mut lease = lease.clone();
        async move {
            let r = lease
                .lease_time_to_live(LeaseTimeToLiveRequest { id, keys: false })
                .await
                .map_err(|e| e.to_string())?;
            Ok(r.into_inner().ttl > 0)
        }
    })
    .await;
    cluster.members[leader].server.resume();
}
