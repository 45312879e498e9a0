//! Lease expiry, decided by the leader alone: it keeps each lease's deadline in memory,
//! renews it on keep-alive, and revokes expired leases through raft, so every member deletes
//! the same keys at the same revision. A new leader gives every lease its remaining TTL (the
//! last checkpoint, or the whole TTL) plus an election timeout, as etcd does.

use crate::msg::{Applied, LeaseGrants, RaftStatus};
use crate::server::EtcdServer;
use oxcd_api::etcdserverpb::LeaseRevokeRequest;
use oxcd_api::oxcdpb::internal_request::Request as Internal;
use oxcd_api::oxcdpb::{LeaseCheckpoint, LeaseCheckpoints};
use oxcd_api::LeaseId;
use oxcd_mvcc::{LeaseTtl, Store};
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
/// etcd's leaseRevokeRate: at most 1,000 expired leases revoked a second, the ones that
/// expired first first, so a mass expiry does not flood raft.
const REVOKES_PER_TICK: usize = 100;
/// etcd's maxLeaseCheckpointBatchSize: remaining TTLs proposed together.
const CHECKPOINTS_PER_PROPOSAL: usize = 1000;
/// etcd's lease.MaxLeaseTTL.
pub const MAX_TTL: i64 = 9_000_000_000;

#[derive(Default)]
struct State {
    /// The term this member leads in, as the lessor last saw it.
    leading: Option<u64>,
    expiry: HashMap<LeaseId, Instant>,
    revoking: HashMap<LeaseId, Instant>,
}

impl State {
    /// Follows a change of leadership: a new leader (or a leader in a new term) gives every
    /// lease its remaining TTL (the last checkpoint, or the whole TTL) plus an election
    /// timeout; a follower keeps none.
    fn follow(
        &mut self,
        leading: Option<u64>,
        leases: &[LeaseTtl],
        now: Instant,
        extend: Duration,
    ) {
        if leading == self.leading {
            return;
        }
        self.leading = leading;
        self.expiry.clear();
        self.revoking.clear();
        if leading.is_some() {
            for lease in leases {
                let left = if lease.remaining_ttl > 0 {
                    lease.remaining_ttl
                } else {
                    lease.ttl
                };
                self.expiry.insert(
                    lease.id,
                    now + Duration::from_secs(left.max(0) as u64) + extend,
                );
            }
        }
    }

    /// A keep-alive on the leader. Raft may say "leader" before the loop has looked: promote
    /// here, or the loop's promotion would later overwrite this renewal. A lease past its
    /// deadline is not renewed (false): its revoke is on the way, and etcd's keep-alive does
    /// not revive it either.
    fn renew(
        &mut self,
        id: LeaseId,
        (ttl, term): (i64, u64),
        now: Instant,
        leases: impl FnOnce() -> Vec<LeaseTtl>,
        extend: Duration,
    ) -> bool {
        self.lead(term, now, leases, extend);
        if self.expiry.get(&id).is_some_and(|at| *at <= now) {
            return false;
        }
        self.start_clock(id, ttl, now);
        true
    }

    /// Promotes, if leading in `term` is news here.
    fn lead(
        &mut self,
        term: u64,
        now: Instant,
        leases: impl FnOnce() -> Vec<LeaseTtl>,
        extend: Duration,
    ) {
        if self.leading != Some(term) {
            self.follow(Some(term), &leases(), now, extend);
        }
    }

    fn start_clock(&mut self, id: LeaseId, ttl: i64, now: Instant) {
        self.expiry
            .insert(id, now + Duration::from_secs(ttl.max(0) as u64));
    }

    /// Up to `limit` expired leases not already being revoked (or whose revoke has had time
    /// to finish), the earliest expired first; they are marked as being revoked.
    fn due_for_revoke(&mut self, now: Instant, limit: usize) -> Vec<LeaseId> {
        let mut due: Vec<(Instant, LeaseId)> = self
            .expiry
            .iter()
            .filter(|(id, at)| {
                **at <= now
                    && self
                        .revoking
                        .get(id)
                        .is_none_or(|since| now.duration_since(*since) > REVOKE_RETRY)
            })
            .map(|(id, at)| (*at, *id))
            .collect();
        due.sort_unstable();
        due.truncate(limit);
        for (_, id) in &due {
            self.revoking.insert(*id, now);
        }
        due.into_iter().map(|(_, id)| id).collect()
    }
}

/// What is left of a lease on the leader's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remaining {
    Seconds(i64),
    Expired,
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

    /// Renews a lease on the leader; its TTL, or None when it does not exist or is past its
    /// deadline.
    pub fn renew(&self, server: &EtcdServer, id: LeaseId) -> Option<i64> {
        let lease = server.store.lease(id)?;
        let term = server.raft.term.load(Ordering::Acquire);
        self.state()
            .renew(
                id,
                (lease.ttl, term),
                Instant::now(),
                || server.store.lease_list(),
                self.extend,
            )
            .then_some(lease.ttl)
    }

    /// Whole seconds left on the leader's clock (truncated, as etcd reports them), or
    /// `Expired` once the deadline passed, before the revoke is applied.
    pub fn remaining(&self, id: LeaseId) -> Option<Remaining> {
        let expiry = *self.state().expiry.get(&id)?;
        let now = Instant::now();
        Some(if expiry <= now {
            Remaining::Expired
        } else {
            Remaining::Seconds(expiry.duration_since(now).as_secs() as i64)
        })
    }

    /// The leader's loop: follow leadership, learn new leases, revoke expired ones,
    /// checkpoint remaining TTLs.
    pub async fn run(self: Arc<Self>, server: Arc<EtcdServer>) {
        let mut last_checkpoint = Instant::now();
        loop {
            tokio::time::sleep(TICK).await;
            crate::failpoints::async_fail_point!("lessorBeforeTick");
            let leases = server.store.lease_list();
            let now = Instant::now();
            let (term, expired, checkpoints) = {
                let mut st = self.state();
                // Read under the lock: a keep-alive may have promoted the lessor meanwhile,
                // and a stale "follower" would wipe the deadline it set.
                let leading = server
                    .raft
                    .is_leader
                    .load(Ordering::Acquire)
                    .then(|| server.raft.term.load(Ordering::Acquire));
                st.follow(leading, &leases, now, self.extend);
                let Some(term) = leading else {
                    continue;
                };
                let live: std::collections::HashSet<LeaseId> =
                    leases.iter().map(|lease| lease.id).collect();
                st.expiry.retain(|id, _| live.contains(id));
                st.revoking.retain(|id, _| live.contains(id));
                for lease in &leases {
                    st.expiry
                        .entry(lease.id)
                        .or_insert(now + Duration::from_secs(lease.ttl.max(0) as u64));
                }
                let expired = st.due_for_revoke(now, REVOKES_PER_TICK);
                let mut checkpoints: Vec<LeaseCheckpoint> = Vec::new();
                if last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
                    last_checkpoint = Instant::now();
                    for lease in &leases {
                        if let Some(at) = st.expiry.get(&lease.id) {
                            let left = at.saturating_duration_since(now).as_secs() as i64;
                            if left < lease.ttl {
                                checkpoints.push(LeaseCheckpoint {
                                    id: lease.id.0,
                                    remaining_ttl: left.max(1),
                                });
                            }
                        }
                    }
                }
                (term, expired, checkpoints)
            };
            if !expired.is_empty() {
                tokio::spawn(revoke_if_still_leading(server.clone(), term, expired));
            }
            for batch in checkpoints.chunks(CHECKPOINTS_PER_PROPOSAL) {
                let server = server.clone();
                let batch = Internal::LeaseCheckpoints(LeaseCheckpoints {
                    checkpoints: batch.to_vec(),
                });
                tokio::spawn(async move {
                    crate::failpoints::async_fail_point!("lessorBeforeCheckpoint");
                    let _ = server.propose_as_leader(batch, term).await;
                });
            }
        }
    }
}

impl LeaseGrants for Lessor {
    /// A lease was granted (applied): on the leader its deadline starts now, as in etcd's
    /// Grant. The loop would only see it on its next tick, and a loop that had not yet seen
    /// this member lead would give it an election timeout more on promotion.
    fn granted(&self, status: &RaftStatus, store: &Store, id: LeaseId, ttl: i64) {
        if !status.is_leader.load(Ordering::Acquire) {
            return;
        }
        let term = status.term.load(Ordering::Acquire);
        let now = Instant::now();
        let mut st = self.state();
        st.lead(term, now, || store.lease_list(), self.extend);
        st.start_clock(id, ttl, now);
    }
}

/// etcd's ensureLeadership before revoking: a leader that stalled (in fsync, say) while the
/// cluster elected another must not revoke leases their holders kept alive meanwhile. The
/// proposals also carry the term, so one that reaches a successor's log is dropped.
async fn revoke_if_still_leading(server: Arc<EtcdServer>, term: u64, expired: Vec<LeaseId>) {
    match server.confirm_leadership().await {
        Ok(confirmed) if confirmed == term => {}
        outcome => {
            tracing::warn!(leases = expired.len(), outcome = ?outcome, "not revoking expired leases: leadership not confirmed");
            return;
        }
    }
    for id in expired {
        let server = server.clone();
        tokio::spawn(async move {
            crate::failpoints::async_fail_point!("lessorBeforeRevoke");
            let revoke = Internal::LeaseRevoke(LeaseRevokeRequest { id: id.0 });
            match server.propose_as_leader(revoke, term).await {
                Ok(Applied::LeaseRevoked(rev)) => {
                    tracing::debug!(lease_id = id.0, revision = rev.0, "revoked expired lease")
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(lease_id = id.0, error = %e, "failed to revoke expired lease")
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::{State, REVOKES_PER_TICK};
    use oxcd_api::LeaseId;
    use oxcd_mvcc::LeaseTtl;
    use std::time::{Duration, Instant};

    #[test]
    fn a_mass_expiry_is_revoked_a_thousand_a_second_earliest_first() {
        let now = Instant::now();
        let mut st = State::default();
        for i in 0..10_000i64 {
            st.expiry
                .insert(LeaseId(i), now - Duration::from_millis(10_000 - i as u64));
        }
        st.expiry.insert(LeaseId(-1), now + Duration::from_secs(60));
        let first = st.due_for_revoke(now, REVOKES_PER_TICK);
        assert_eq!(first, (0..100).map(LeaseId).collect::<Vec<_>>());
        let second = st.due_for_revoke(now, REVOKES_PER_TICK);
        assert_eq!(second, (100..200).map(LeaseId).collect::<Vec<_>>());
        let mut ticks = 2;
        while !st.due_for_revoke(now, REVOKES_PER_TICK).is_empty() {
            ticks += 1;
        }
        assert_eq!(
            ticks, 100,
            "10,000 leases at 100 a tick of 100 ms: ten seconds"
        );
        assert!(
            !st.revoking.contains_key(&LeaseId(-1)),
            "a live lease is left alone"
        );
    }

    #[test]
    fn a_renewal_made_before_the_loop_sees_leadership_is_not_extended_by_promotion() {
        let t0 = Instant::now();
        let extend = Duration::from_secs(1);
        let leases = [LeaseTtl {
            id: LeaseId(7),
            ttl: 100,
            remaining_ttl: 0,
        }];
        let mut st = State::default();
        st.renew(LeaseId(7), (100, 3), t0, || leases.to_vec(), extend);
        // The loop's next look at leadership changes nothing.
        st.follow(Some(3), &leases, t0 + Duration::from_millis(50), extend);
        assert_eq!(st.expiry[&LeaseId(7)], t0 + Duration::from_secs(100));
        // Losing leadership forgets every deadline; winning it again extends them.
        st.follow(None, &leases, t0, extend);
        assert!(st.expiry.is_empty());
        st.follow(Some(5), &leases, t0, extend);
        assert_eq!(st.expiry[&LeaseId(7)], t0 + Duration::from_secs(101));
        // Leading again in a later term, unseen in between, starts afresh too.
        st.renew(LeaseId(7), (100, 5), t0, || leases.to_vec(), extend);
        st.follow(Some(7), &leases, t0, extend);
        assert_eq!(st.expiry[&LeaseId(7)], t0 + Duration::from_secs(101));
    }
}
