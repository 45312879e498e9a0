//! etcd's Lease service. Grant and revoke go through raft; keep-alive and time-to-live are
//! answered by the leader, which alone keeps deadlines, so a follower checks the client and
//! hands them to the leader over its peer URL, as etcd does.

use crate::lessor::{Lessor, Remaining, MAX_TTL};
use crate::msg::Applied;
use crate::server::EtcdServer;
use oxcd_api::etcdserverpb::lease_server::Lease;
use oxcd_api::etcdserverpb::*;
use oxcd_api::oxcdpb::internal_request::Request as Internal;
use oxcd_api::oxcdpb::raft_client::RaftClient;
use oxcd_api::EtcdError;
use oxcd_api::LeaseId;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

#[derive(Clone)]
pub struct LeaseService {
    pub server: Arc<EtcdServer>,
    pub lessor: Arc<Lessor>,
    /// The connection to the leader's peer URL, kept while it leads.
    pub leader_channel: Arc<std::sync::Mutex<Option<(u64, Channel)>>>,
}

/// The shortest deadline one forwarded attempt gets, and the pause before the next.
const FORWARD_ATTEMPT_MIN: std::time::Duration = std::time::Duration::from_secs(1);
const FORWARD_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

type KeepAliveStream =
    Pin<Box<dyn futures::Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

impl LeaseService {
    fn is_leader(&self) -> bool {
        self.server.raft.is_leader.load(Ordering::Acquire)
    }

    /// The longest one attempt at the leader may take.
    fn attempt_limit(&self) -> std::time::Duration {
        (2 * self.server.election_timeout).max(FORWARD_ATTEMPT_MIN)
    }

    /// A client for the leader's peer URL (one connection, reused while it leads).
    async fn leader(&self) -> Result<RaftClient<Channel>, Status> {
        let leader = self.server.raft.leader.load(Ordering::Acquire);
        let cached = self.leader_channel.lock().ok().and_then(|c| {
            c.as_ref()
                .filter(|(id, _)| *id == leader)
                .map(|(_, ch)| ch.clone())
        });
        if let Some(ch) = cached {
            return Ok(RaftClient::new(ch));
        }
        let url = self
            .server
            .members
            .borrow()
            .members
            .iter()
            .find(|m| m.id == leader)
            .and_then(|m| m.peer_ur_ls.first().cloned())
            .ok_or(EtcdError::NoLeader)?;
        let timeout = self.server.election_timeout;
        let channel = oxcd_client::dial::channel(&url, self.server.transport.tls(), None, |e| {
            e.connect_timeout(timeout)
        })
        .await
        .map_err(|_| EtcdError::NoLeader)?;
        if let Ok(mut c) = self.leader_channel.lock() {
            *c = Some((leader, channel.clone()));
        }
        Ok(RaftClient::new(channel))
    }

    /// Confirms this member leads (a ReadIndex round: a leader stuck in fsync must not answer
    /// from its memory, etcd #15247), within one attempt's time. Refusals are Unavailable, so
    /// the asking member tries again, at whoever leads then.
    async fn confirm_leading(&self, within: std::time::Duration) -> Result<(), Status> {
        if !self.is_leader() {
            return Err(EtcdError::LeaderChanged.into());
        }
        match tokio::time::timeout(within, self.server.confirm_leadership()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(EtcdError::Timeout.into()),
        }
    }

    /// Answers with `local` on the leader, once it has confirmed that it leads, or with `call`
    /// made to the leader over its peer URL (this member checked the client already). Each
    /// attempt has a deadline (a stalled leader holds its connections open and answers
    /// nothing); a failed one is made again, by or to whoever leads by then, until the
    /// request timeout.
    async fn at_leader<T, L, LFut, F, Fut>(&self, local: L, mut call: F) -> Result<T, Status>
    where
        L: FnOnce() -> LFut,
        LFut: std::future::Future<Output = Result<T, Status>>,
        F: FnMut(RaftClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let deadline = tokio::time::Instant::now() + self.server.request_timeout;
        loop {
            let tried = self.server.raft.leader.load(Ordering::Acquire);
            let left = self
                .attempt_limit()
                .min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            let outcome = if self.is_leader() {
                match self.confirm_leading(left).await {
                    Ok(()) => return local().await,
                    Err(e) => Err(e),
                }
            } else {
                match self.leader().await {
                    Ok(client) => tokio::time::timeout(left, call(client))
                        .await
                        .unwrap_or_else(|_| Err(EtcdError::Timeout.into())),
                    Err(e) => Err(e),
                }
            };
            let error = match outcome {
                Ok(v) => return Ok(v),
                Err(e) if e.code() != tonic::Code::Unavailable => return Err(e),
                Err(e) => e,
            };
            if tokio::time::Instant::now() + FORWARD_RETRY >= deadline {
                tracing::warn!(error = %error.message(), "gave up forwarding a lease request to the leader");
                return Err(EtcdError::Timeout.into());
            }
            // A connection to a deposed or stalled leader is not reused.
            if let Ok(mut c) = self.leader_channel.lock() {
                if c.as_ref().is_some_and(|(id, _)| *id == tried) {
                    *c = None;
                }
            }
            tokio::time::sleep(FORWARD_RETRY).await;
        }
    }

    fn renew_here(&self, id: i64) -> LeaseKeepAliveResponse {
        let renewed = self.lessor.renew(&self.server, LeaseId(id));
        if renewed.is_some() {
            crate::metrics::inc(|m| &m.lease_renewed);
        }
        let ttl = renewed.unwrap_or(0);
        LeaseKeepAliveResponse {
            header: self.server.header(self.server.store.current_revision()),
            id,
            ttl,
        }
    }

    fn time_to_live_here(&self, r: &LeaseTimeToLiveRequest) -> LeaseTimeToLiveResponse {
        let header = self.server.header(self.server.store.current_revision());
        let lease = self.server.store.lease(LeaseId(r.id));
        let remaining = self.lessor.remaining(LeaseId(r.id));
        // As etcd: an unknown or revoked lease has TTL -1, not an error. One past its
        // deadline whose revoke is still on the way reads the same (etcd says 0 left).
        let (Some(lease), Some(Remaining::Seconds(_)) | None) = (lease, remaining) else {
            return LeaseTimeToLiveResponse {
                header,
                id: r.id,
                ttl: -1,
                granted_ttl: 0,
                keys: vec![],
            };
        };
        let ttl = match remaining {
            Some(Remaining::Seconds(left)) => left,
            _ => lease.ttl,
        };
        LeaseTimeToLiveResponse {
            header,
            id: r.id,
            ttl,
            granted_ttl: lease.ttl,
            keys: if r.keys {
                lease.keys.into_iter().collect()
            } else {
                vec![]
            },
        }
    }

    async fn keep_alive_once(&self, id: i64) -> Result<LeaseKeepAliveResponse, Status> {
        let local = || async move { Ok(self.renew_here(id)) };
        self.at_leader(local, |mut leader| async move {
            Ok(leader
                .lease_renew(LeaseKeepAliveRequest { id })
                .await?
                .into_inner())
        })
        .await
    }
}

#[tonic::async_trait]
impl crate::transport::PeerLeases for LeaseService {
    /// A keep-alive another member forwards: answered only by a leader that confirms it.
    async fn renew_for_peer(&self, id: i64) -> Result<LeaseKeepAliveResponse, Status> {
        self.confirm_leading(self.attempt_limit()).await?;
        Ok(self.renew_here(id))
    }

    /// A time-to-live another member forwards (it checked the client's permissions).
    async fn time_to_live_for_peer(
        &self,
        r: LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse, Status> {
        self.confirm_leading(self.attempt_limit()).await?;
        Ok(self.time_to_live_here(&r))
    }
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        r: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let who = self.server.require_user(&r)?;
        let mut r = r.into_inner();
        self.server.refuse_learner()?;
        if r.ttl > MAX_TTL {
            return Err(EtcdError::LeaseTtlTooLarge.into());
        }
        self.server
            .check_quota(crate::alarms::LEASE_OVERHEAD)
            .await?;
        if r.id == 0 {
            r.id = self.server.new_lease_id();
        }
        r.ttl = r.ttl.max(self.lessor.min_ttl);
        match self
            .server
            .propose_for(who.as_ref(), Internal::LeaseGrant(r))
            .await?
        {
            // The leader's deadline for it started when it was applied (`Lessor::granted`).
            Applied::LeaseGranted { id, ttl } => Ok(Response::new(LeaseGrantResponse {
                header: self.server.header(self.server.store.current_revision()),
                id: id.0,
                ttl,
                error: String::new(),
            })),
            other => Err(Status::internal(format!(
                "oxcd: unexpected apply result {other:?}"
            ))),
        }
    }

    async fn lease_revoke(
        &self,
        r: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let who = self.server.require_user(&r)?;
        let r = r.into_inner();
        // As etcd: revoking deletes the lease's keys, so it needs write permission on each.
        if let Some(lease) = self.server.store.lease(LeaseId(r.id)) {
            for key in &lease.keys {
                self.server.auth.check_put(who.as_ref(), key, false)?;
            }
        }
        self.server.refuse_learner()?;
        match self
            .server
            .propose_for(who.as_ref(), Internal::LeaseRevoke(r))
            .await?
        {
            Applied::LeaseRevoked(rev) => Ok(Response::new(LeaseRevokeResponse {
                header: self.server.header(rev),
            })),
            other => Err(Status::internal(format!(
                "oxcd: unexpected apply result {other:?}"
            ))),
        }
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        r: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        self.server.require_user(&r)?;
        let mut incoming = r.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let this = self.clone();
        tokio::spawn(async move {
            while let Ok(Some(req)) = incoming.message().await {
                let answer = this.keep_alive_once(req.id).await;
                let failed = answer.is_err();
                if tx.send(answer).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn lease_time_to_live(
        &self,
        r: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let who = self.server.require_user(&r)?;
        let r = r.into_inner();
        let local = || async move { Ok(self.time_to_live_here(&r)) };
        let forwarded = |mut leader: RaftClient<Channel>| async move {
            let mut resp = leader.lease_time_to_live(r).await?.into_inner();
            // Answered for this member: its identity in the header.
            self.server.fill_header(&mut resp.header);
            Ok(resp)
        };
        let resp = self.at_leader(local, forwarded).await?;
        // A key's name is the user's to see only where the user may read it; this member,
        // which the client called, checks.
        for key in &resp.keys {
            self.server.auth.check_read(who.as_ref(), key, &[])?;
        }
        Ok(Response::new(resp))
    }

    async fn lease_leases(
        &self,
        r: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        self.server.require_user(&r)?;
        let mut ids: Vec<i64> = self
            .server
            .store
            .lease_list()
            .into_iter()
            .map(|lease| lease.id.0)
            .collect();
        ids.sort_unstable();
        Ok(Response::new(LeaseLeasesResponse {
            header: self.server.header(self.server.store.current_revision()),
            leases: ids.into_iter().map(|id| LeaseStatus { id }).collect(),
        }))
    }
}
