//! Stopping cleanly: on SIGINT or SIGTERM a leader hands leadership over first.

use crate::msg::NodeMsg;
use crate::server::EtcdServer;
use oxcd_api::MemberId;
use std::time::Duration;

/// As etcd on a clean stop: a leader hands over to the most caught-up voter first, so the
/// cluster does not wait out an election timeout.
pub async fn hand_over_leadership(server: &EtcdServer) {
    use std::sync::atomic::Ordering;
    if !server.raft.is_leader.load(Ordering::Acquire) {
        return;
    }
    let voters: Vec<u64> = server
        .members
        .borrow()
        .members
        .iter()
        .filter(|m| !m.is_learner && m.id != server.member_id.0)
        .map(|m| m.id)
        .collect();
    let Ok(progress) = server.ask(|reply| NodeMsg::Progress { reply }).await else {
        return;
    };
    let Some(target) = voters
        .into_iter()
        .filter(|id| server.transport.is_active(*id))
        .max_by_key(|id| progress.get(id).copied().unwrap_or(0))
    else {
        return;
    };
    if server.transfer_leader(target).is_err() {
        return;
    }
    let deadline = tokio::time::Instant::now() + server.election_timeout;
    while server.raft.leader.load(Ordering::Acquire) == server.member_id.0 {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!("leadership transfer did not complete before stopping");
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tracing::info!(transferee = %MemberId(target), "leadership transferred before stopping");
}

pub async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
