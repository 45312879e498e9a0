//! Leases kept alive through followers outlive a leader kill; an expired one goes at one
//! revision on every member.

use oxcd_api::etcdserverpb::PutRequest;
use oxcd_tests::cluster::{Cluster, Spec, ELECTION_MS};
use oxcd_tests::kv::put;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Keeps `ids` alive through member `url` every second until `stop`, reopening the stream
/// when it breaks (a follower hands keep-alives to the leader, which may be gone). Returns
/// the leases ever reported expired.
async fn keep_alive_loop(url: String, ids: Vec<i64>, stop: Arc<AtomicBool>) -> Vec<i64> {
    use oxcd_api::etcdserverpb::lease_client::LeaseClient;
    use oxcd_api::etcdserverpb::LeaseKeepAliveRequest;
    let mut expired = Vec::new();
    while !stop.load(Ordering::Acquire) {
        let Ok(ch) = tonic::transport::Channel::from_shared(url.clone())
            .expect("url")
            .connect()
            .await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let (tx, rx) = tokio::sync::mpsc::channel(ids.len() + 1);
        let Ok(resp) = LeaseClient::new(ch)
            .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut answers = resp.into_inner();
        'stream: while !stop.load(Ordering::Acquire) {
            for id in &ids {
                if tx.send(LeaseKeepAliveRequest { id: *id }).await.is_err() {
                    break 'stream;
                }
            }
            for _ in &ids {
                match tokio::time::timeout(Duration::from_secs(3), answers.message()).await {
                    Ok(Ok(Some(r))) if r.ttl <= 0 => expired.push(r.id),
                    Ok(Ok(Some(_))) => {}
                    _ => break 'stream,
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    expired
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_outlive_a_leader_kill_and_an_expired_one_goes_at_one_revision_everywhere() {
    use oxcd_api::etcdserverpb::lease_client::LeaseClient;
    use oxcd_api::etcdserverpb::{
        LeaseGrantRequest, LeaseTimeToLiveRequest, RangeRequest, WatchCreateRequest,
    };
    let mut c = Cluster::start(Spec::new(3)).await;
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let ch = tonic::transport::Channel::from_shared(c.url(followers[0]))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut leases = LeaseClient::new(ch);
    let mut kv = c.kv(followers[0]).await;
    for id in 1..=100 {
        leases
            .lease_grant(LeaseGrantRequest { id, ttl: 5 })
            .await
            .expect("grant");
        kv.put(PutRequest {
            lease: id,
            ..put(format!("l/{id:03}"), "v")
        })
        .await
        .expect("put");
    }
    leases
        .lease_grant(LeaseGrantRequest { id: 1000, ttl: 3 })
        .await
        .expect("grant");
    for k in 0..3 {
        kv.put(PutRequest {
            lease: 1000,
            ..put(format!("d/{k}"), "v")
        })
        .await
        .expect("put");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let keepers: Vec<_> = followers
        .iter()
        .enumerate()
        .map(|(n, &f)| {
            let ids: Vec<i64> = (1..=100).filter(|id| id % 2 == n as i64).collect();
            tokio::spawn(keep_alive_loop(c.url(f), ids, stop.clone()))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.members[leader].server.kill9();
    c.wait_leader(Duration::from_millis(3 * ELECTION_MS)).await;
    // Longer than a TTL plus an election timeout after the failover.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let ttl = leases
        .lease_time_to_live(LeaseTimeToLiveRequest { id: 7, keys: true })
        .await
        .expect("ttl through a follower")
        .into_inner();
    assert!(
        ttl.ttl > 0 && ttl.keys == vec![b"l/007".to_vec()],
        "{ttl:?}"
    );
    stop.store(true, Ordering::Release);
    for k in keepers {
        let expired = k.await.expect("keeper");
        assert!(
            expired.is_empty(),
            "leases expired while kept alive: {expired:?}"
        );
    }
    let mut deleted_at = Vec::new();
    for &f in &followers {
        let mut kv = c.kv(f).await;
        let held = kv
            .range(RangeRequest {
                key: b"l/".to_vec(),
                range_end: b"l0".to_vec(),
                count_only: true,
                ..Default::default()
            })
            .await
            .expect("range")
            .into_inner();
        assert_eq!(held.count, 100, "member {f}: no kept-alive lease expired");
        // The expired lease's keys went in one revision.
        let create = WatchCreateRequest {
            key: b"d/".to_vec(),
            range_end: b"d0".to_vec(),
            start_revision: 1,
            ..Default::default()
        };
        let mut stream = c.watch(f, vec![create], false).await;
        let mut deletes = Vec::new();
        while deletes.len() < 3 {
            let r = tokio::time::timeout(Duration::from_secs(10), stream.message())
                .await
                .expect("events")
                .expect("stream")
                .expect("open");
            deletes.extend(
                r.events
                    .iter()
                    .filter(|e| e.r#type == 1)
                    .filter_map(|e| e.kv.as_ref().map(|kv| kv.mod_revision)),
            );
        }
        assert!(deletes.iter().all(|r| *r == deletes[0]), "{deletes:?}");
        deleted_at.push(deletes[0]);
    }
    assert_eq!(
        deleted_at[0], deleted_at[1],
        "the same revision on every member"
    );
}

/// A lease granted through a follower counts down from its grant on the leader's clock, not
/// from the leader's lessor's next look (held up here): a lessor that had not yet seen its
/// member lead would have given it an election timeout more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_granted_through_a_follower_counts_down_from_its_grant() {
    use oxcd_api::etcdserverpb::lease_client::LeaseClient;
    use oxcd_api::etcdserverpb::{LeaseGrantRequest, LeaseTimeToLiveRequest};
    let c = Cluster::start(Spec::new(3)).await;
    let leader = c.wait_leader(Duration::from_secs(20)).await;
    let mut leases = LeaseClient::new(c.patient_channel((leader + 1) % 3).await);
    c.members[leader]
        .server
        .failpoint("lessorBeforeTick", "sleep(2000)");
    let asked = std::time::Instant::now();
    let id = leases
        .lease_grant(LeaseGrantRequest { id: 0, ttl: 3 })
        .await
        .expect("grant")
        .into_inner()
        .id;
    let mut seen = Vec::new();
    while asked.elapsed() < Duration::from_millis(1500) {
        let left = leases
            .lease_time_to_live(LeaseTimeToLiveRequest { id, keys: false })
            .await
            .expect("time to live")
            .into_inner()
            .ttl;
        let bound = 3 - asked.elapsed().as_secs() as i64;
        assert!(
            left <= bound,
            "{left} s left {:?} after the grant",
            asked.elapsed()
        );
        seen.push(left);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.contains(&1), "never counted down: {seen:?}");
    c.members[leader].server.clear_failpoint("lessorBeforeTick");
}
