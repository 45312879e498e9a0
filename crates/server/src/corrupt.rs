//! Consistency checks between members, as etcd's corruption checker: every member's HashKV
//! at one revision must agree. At start (--experimental-initial-corrupt-check) a member that
//! disagrees with its peers refuses to serve; on the leader, every
//! --experimental-corrupt-check-time, a disagreeing member gets a CORRUPT alarm.

use crate::server::EtcdServer;
use oxcd_api::etcdserverpb::{alarm_request::AlarmAction, AlarmRequest, AlarmType, HashKvRequest};
use oxcd_api::oxcdpb::internal_request::Request as Internal;
use oxcd_api::Revision;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// A peer's HashKV at `revision`: (member ID, hash, compact revision), or why not.
async fn peer_hash(
    server: &EtcdServer,
    url: &str,
    revision: i64,
) -> Result<(u64, u32, i64), String> {
    let channel = oxcd_client::dial::channel(url, server.transport.tls(), None, |e| {
        e.connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(5))
    })
    .await?;
    let resp = oxcd_api::oxcdpb::raft_client::RaftClient::new(channel)
        .hash_kv(HashKvRequest { revision })
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    Ok((
        resp.header.map_or(0, |h| h.member_id),
        resp.hash,
        resp.compact_revision,
    ))
}

/// Members whose hash at this member's revision differs from its own (same compaction).
async fn mismatches(server: &EtcdServer) -> Result<Vec<u64>, String> {
    let ours = server
        .store
        .hash_kv(Revision(0))
        .map_err(|e| e.to_string())?;
    let (hash, compacted, revision) = (ours.hash, ours.compact_revision.0, ours.revision.0);
    let peers: Vec<(u64, Vec<String>)> = server
        .members
        .borrow()
        .members
        .iter()
        .filter(|m| m.id != server.member_id.0)
        .map(|m| (m.id, m.peer_ur_ls.clone()))
        .collect();
    let mut bad = Vec::new();
    for (id, urls) in peers {
        for url in urls {
            match peer_hash(server, &url, revision).await {
                Ok((_, theirs, their_compacted)) => {
                    if their_compacted == compacted && theirs != hash {
                        tracing::error!(
                            local_member_id = %server.member_id,
                            remote_peer_id = %oxcd_api::MemberId(id),
                            revision, local_hash = hash, remote_hash = theirs,
                            "found data inconsistency with peers"
                        );
                        bad.push(id);
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(remote_peer_id = %oxcd_api::MemberId(id), error = %e, "cannot fetch hash from remote peer");
                }
            }
        }
    }
    Ok(bad)
}

/// etcd's initial check: refuse to serve when this member's data disagrees with a peer's.
pub async fn initial_check(server: &EtcdServer) -> Result<(), String> {
    tracing::info!(local_member_id = %server.member_id, "starting initial corruption check");
    let bad = mismatches(server).await?;
    if !bad.is_empty() {
        return Err(format!(
            "{} found data inconsistency with peers",
            server.member_id
        ));
    }
    tracing::info!(local_member_id = %server.member_id, "initial corruption checking passed; no corruption");
    Ok(())
}

/// The leader's periodic check: a member whose hash differs is marked CORRUPT.
pub async fn run_periodic(server: Arc<EtcdServer>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        if !server.raft.is_leader.load(Ordering::Acquire) {
            continue;
        }
        let bad = match mismatches(&server).await {
            Ok(bad) => bad,
            Err(e) => {
                tracing::warn!(error = %e, "corruption check failed");
                continue;
            }
        };
        for id in bad {
            let raise = AlarmRequest {
                action: AlarmAction::Activate as i32,
                member_id: id,
                alarm: AlarmType::Corrupt as i32,
            };
            if let Err(e) = server.propose(Internal::Alarm(raise)).await {
                tracing::warn!(error = %e, "failed to raise the CORRUPT alarm");
            }
        }
    }
}
