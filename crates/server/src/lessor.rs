//! Lease expiry, decided by the leader alone: it keeps each lease's deadline in memory,
//! renews it on keep-alive, and revokes expired leases through raft, so every member deletes
//! the same keys at the same revision. A new leader gives every lease its remaining TTL (the
//! last checkpoint, or the whole TTL) plus an election timeout, as etcd does.

use crate::msg::Applied;
use crate::server::EtcdServer;
use oxcd_api::etcdserverpb::LeaseRevokeRequest;
use oxcd_api::oxcdpb::internal_request::Request as Internal;
use oxcd_api::oxcdpb::LeaseCheckpoint;
use oxcd_api::LeaseId;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the leader looks for expired leases.
const TICK: Duration = Duration::from_millis(100);
/// How long a revoke proposal may take before it is proposed again.
const REVOKE_RETRY: Duration = Duration::from_secs(3);
/// etcd's lease checkpoint interval.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(300);
/// etcd's lease.MaxLeaseTTL.
pub const MAX_TTL: i64 = 9_000_000_000;

#[derive(Default)]
struct State {
    primary: bool,
    expiry: HashMap<LeaseId, Instant>,
    revoking: HashMap<LeaseId, Instant>,
}

pub struct Lessor {
    state: Mutex<State>,
    /// Shorter TTLs are raised to this (etcd: 1.5 election timeouts, in whole seconds).
    pub min_ttl: i64,
    /// What a new leader adds to every lease (an election timeout).
    extend: Duration,
}

impl Lessor {
    pub fn new(heartbeat_ms: u64, election_ms: u64) -> Lessor {
        let ticks = (election_ms / heartbeat_ms.max(1)).max(1);
        let min_ms = (3 * ticks / 2) * heartbeat_ms;
        Lessor {
            state: Mutex::default(),
            min_ttl: min_ms.div_ceil(1000) as i64,
            extend: Duration::from_millis(election_ms),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Renews a lease on the leader; its TTL, or None when it does not exist.
    pub fn renew(&self, server: &EtcdServer, id: LeaseId) -> Option<i64> {
        let lease = server.store.lease(id)?;
        self.state().expiry.insert(
            id,
            Instant::now() + Duration::from_secs(lease.ttl.max(0) as u64),
        );
        Some(lease.ttl)
    }

    /// Seconds left on the leader's clock (truncated, as etcd reports it).
    pub fn remaining(&self, id: LeaseId) -> Option<i64> {
        let expiry = *self.state().expiry.get(&id)?;
        Some(expiry.saturating_duration_since(Instant::now()).as_secs() as i64)
    }

    /// The leader's loop: follow leadership, learn new leases, revoke expired ones,
    /// checkpoint remaining TTLs.
    pub async fn run(self: Arc<Self>, server: Arc<EtcdServer>) {
        let mut last_checkpoint = Instant::now();
        loop {
            tokio::time::sleep(TICK).await;
            let leader = server.raft.is_leader.load(Ordering::Acquire);
            let leases = server.store.lease_list();
            let now = Instant::now();
            let (expired, checkpoints) = {
                let mut st = self.state();
                if leader != st.primary {
                    st.primary = leader;
                    st.expiry.clear();
                    st.revoking.clear();
                    if leader {
                        // Promotion: remaining TTL plus an election timeout for every lease.
                        for lease in &leases {
                            let left = if lease.remaining_ttl > 0 {
                                lease.remaining_ttl
                            } else {
                                lease.ttl
                            };
                            st.expiry.insert(
                                lease.id,
                                now + Duration::from_secs(left.max(0) as u64) + self.extend,
                            );
                        }
                    }
                }
                if !leader {
                    continue;
                }
                let live: std::collections::HashSet<LeaseId> =
                    leases.iter().map(|lease| lease.id).collect();
                st.expiry.retain(|id, _| live.contains(id));
                st.revoking.retain(|id, _| live.contains(id));
                for lease in &leases {
                    st.expiry
                        .entry(lease.id)
                        .or_insert(now + Duration::from_secs(lease.ttl.max(0) as u64));
                }
                let expired: Vec<LeaseId> = st
                    .expiry
                    .iter()
                    .filter(|(id, at)| {
                        **at <= now
                            && st
                                .revoking
                                .get(id)
                                .is_none_or(|since| now.duration_since(*since) > REVOKE_RETRY)
                    })
                    .map(|(id, _)| *id)
                    .collect();
                for id in &expired {
                    st.revoking.insert(*id, now);
                }
                let mut checkpoints = Vec::new();
                if last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
                    last_checkpoint = Instant::now();
                    for lease in &leases {
                        if let Some(at) = st.expiry.get(&lease.id) {
                            let left = at.saturating_duration_since(now).as_secs() as i64;
                            if left < lease.ttl {
                                checkpoints.push((lease.id, left.max(1)));
                            }
                        }
                    }
                }
                (expired, checkpoints)
            };
            for id in expired {
                let server = server.clone();
                tokio::spawn(async move {
                    let revoke = Internal::LeaseRevoke(LeaseRevokeRequest { id: id.0 });
                    match server.propose(revoke).await {
                        Ok(Applied::LeaseRevoked(rev)) => {
                            tracing::info!(
                                lease_id = id.0,
                                revision = rev.0,
                                "revoked expired lease"
                            )
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(lease_id = id.0, error = %e, "failed to revoke expired lease")
                        }
                    }
                });
            }
            for (id, remaining_ttl) in checkpoints {
                let server = server.clone();
                tokio::spawn(async move {
                    let cp = Internal::LeaseCheckpoint(LeaseCheckpoint {
                        id: id.0,
                        remaining_ttl,
                    });
                    let _ = server.propose(cp).await;
                });
            }
        }
    }
}
