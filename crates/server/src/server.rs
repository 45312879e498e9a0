//! The node as the gRPC services see it: propose a write and wait for its result, wait for a
//! linearizable read point, fill response headers.

use crate::msg::{Applied, NodeMsg, RaftStatus, Waiters};
use crate::transport::Transport;
use oxcd_api::etcdserverpb::{Member, ResponseHeader};
use oxcd_api::oxcdpb::{
    internal_request::Request, ClusterRecord, ConfChangeContext, InternalRequest,
};
use oxcd_api::EtcdError;
use oxcd_api::{ClusterId, MemberId, Revision};
use oxcd_mvcc::Store;
use prost::Message;
use raft::eraftpb::{ConfChange, ConfChangeType};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};

pub const DEFAULT_QUOTA_BYTES: u64 = 2 << 30;
pub const MAX_QUOTA_BYTES: u64 = 8 << 30;

/// --quota-backend-bytes as etcd reads it: 0 the 2 GiB default, negative no quota.
pub fn quota_bytes(flag: i64) -> Option<u64> {
    match flag {
        0 => Some(DEFAULT_QUOTA_BYTES),
        n if n < 0 => None,
        n => Some(n as u64),
    }
}

pub struct EtcdServer {
    pub member_id: MemberId,
    pub cluster_id: ClusterId,
    pub store: Arc<Store>,
    pub raft: Arc<RaftStatus>,
    pub applied: watch::Receiver<u64>,
    pub max_request_bytes: u64,
    pub max_txn_ops: u64,
    pub request_timeout: Duration,
    pub election_timeout: Duration,
    pub cluster_token: String,
    pub strict_reconfig_check: bool,
    pub max_learners: usize,
    pub members: watch::Receiver<ClusterRecord>,
    pub transport: Arc<Transport>,
    pub alarms: Arc<crate::alarms::Alarms>,
    pub auth: Arc<crate::auth::AuthStore>,
    /// `--client-cert-auth`: a client certificate's CN names the user when no token is given.
    pub client_cert_auth: bool,
    /// The backend size beyond which writes raise NOSPACE; `None` when disabled.
    pub quota_bytes: Option<u64>,
    pub(crate) node: Sender<NodeMsg>,
    pub(crate) waiters: Arc<Waiters>,
    next_id: AtomicU64,
}

impl EtcdServer {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        member_id: MemberId,
        cluster_id: ClusterId,
        store: Arc<Store>,
        raft: Arc<RaftStatus>,
        applied: watch::Receiver<u64>,
        node: Sender<NodeMsg>,
        waiters: Arc<Waiters>,
        members: watch::Receiver<ClusterRecord>,
        transport: Arc<Transport>,
        alarms: Arc<crate::alarms::Alarms>,
        auth: Arc<crate::auth::AuthStore>,
        config: &crate::config::Config,
    ) -> Self {
        // Every member wakes waiters by request ID, so IDs must differ across members and
        // restarts: the member's low 16 bits, then the clock in ms, as etcd's generator.
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let start = ((member_id.0 & 0xffff) << 48) | ((now_ms & 0xff_ffff_ffff) << 8);
        EtcdServer {
            member_id,
            cluster_id,
            store,
            raft,
            applied,
            max_request_bytes: config.max_request_bytes,
            max_txn_ops: config.max_txn_ops,
            request_timeout: Duration::from_secs(5)
                + Duration::from_millis(2 * config.election_timeout_ms),
            election_timeout: Duration::from_millis(config.election_timeout_ms),
            cluster_token: config.initial_cluster_token.clone(),
            strict_reconfig_check: config.strict_reconfig_check,
            max_learners: config.max_learners,
            members,
            transport,
            alarms,
            auth,
            client_cert_auth: config
                .client_tls
                .as_ref()
                .is_some_and(|t| t.client_cert_auth),
            quota_bytes: quota_bytes(config.quota_backend_bytes),
            node,
            waiters,
            next_id: AtomicU64::new(start),
        }
    }

    fn send(&self, msg: NodeMsg) -> Result<(), EtcdError> {
        self.node.send(msg).map_err(|_| EtcdError::Stopped)
    }

    pub fn header(&self, revision: Revision) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: self.cluster_id.0,
            member_id: self.member_id.0,
            revision: revision.0,
            raft_term: self.raft.term.load(Ordering::Acquire),
        })
    }

    /// Completes a header the store made (revision only) with this member's identity.
    pub fn fill_header(&self, header: &mut Option<ResponseHeader>) {
        *header = self.header(Revision(header.map_or(0, |h| h.revision)));
    }

    /// A new lease ID: positive, unique across members (etcd's request ID generator).
    pub fn new_lease_id(&self) -> i64 {
        loop {
            let id = (self.next_id.fetch_add(1, Ordering::Relaxed) & (i64::MAX as u64)) as i64;
            if id != 0 {
                return id;
            }
        }
    }

    pub fn is_learner(&self) -> bool {
        self.members
            .borrow()
            .members
            .iter()
            .any(|m| m.id == self.member_id.0 && m.is_learner)
    }

    /// Learners serve only what they can answer alone (etcd's rule).
    pub fn refuse_learner(&self) -> Result<(), EtcdError> {
        if self.is_learner() {
            return Err(EtcdError::NotSupportedForLearner);
        }
        Ok(())
    }

    /// etcd's quota check before a write that adds data: when the data would grow past the
    /// quota, NOSPACE is raised through raft and the write refused. etcd weighs bbolt's file
    /// size, close to its data; redb's file runs well ahead of its data (a fresh one is
    /// 140 kB, and it grows in steps), so the bytes in use are weighed, counted afresh
    /// before a refusal when that is cheap, and tiny quotas behave as in etcd.
    pub async fn check_quota(&self, cost: u64) -> Result<(), EtcdError> {
        let Some(quota) = self.quota_bytes else {
            return Ok(());
        };
        if cost == 0 || self.store.db_size_in_use() + cost < quota {
            return Ok(());
        }
        let store = self.store.clone();
        let counted =
            tokio::task::spawn_blocking(move || store.db_size_in_use_counted_if_cheap()).await;
        if let Ok(Ok(in_use)) = counted {
            if in_use + cost < quota {
                return Ok(());
            }
        }
        let raise = oxcd_api::etcdserverpb::AlarmRequest {
            action: oxcd_api::etcdserverpb::alarm_request::AlarmAction::Activate as i32,
            member_id: self.member_id.0,
            alarm: oxcd_api::etcdserverpb::AlarmType::Nospace as i32,
        };
        if !self
            .alarms
            .list(oxcd_api::etcdserverpb::AlarmType::Nospace)
            .iter()
            .any(|a| a.member_id == self.member_id.0)
        {
            if let Err(e) = self.propose(Request::Alarm(raise)).await {
                tracing::warn!(error = %e, "failed to raise the NOSPACE alarm");
            }
        }
        Err(EtcdError::NoSpace)
    }

    /// Replicates a request of the server's own (no client behind it) through raft and waits
    /// for the result of applying it.
    pub async fn propose(&self, request: Request) -> Result<Applied, EtcdError> {
        self.propose_internal(InternalRequest {
            id: 0,
            request: Some(request),
            from_client: false,
            username: String::new(),
            leader_term: 0,
        })
        .await
    }

    /// Replicates what only the leader of `term` may decide: dropped if this member no
    /// longer leads in that term when raft takes it, or when it is applied.
    pub async fn propose_as_leader(
        &self,
        request: Request,
        term: u64,
    ) -> Result<Applied, EtcdError> {
        self.propose_internal(InternalRequest {
            id: 0,
            request: Some(request),
            from_client: false,
            username: String::new(),
            leader_term: term,
        })
        .await
    }

    /// Replicates a client's request; with auth enabled it is checked again when applied.
    pub async fn propose_for(
        &self,
        who: Option<&crate::auth::AuthInfo>,
        request: Request,
    ) -> Result<Applied, EtcdError> {
        self.propose_internal(InternalRequest {
            id: 0,
            request: Some(request),
            from_client: true,
            username: who.map(|w| w.user.clone()).unwrap_or_default(),
            leader_term: 0,
        })
        .await
    }

    /// A fresh request ID (also what makes simple tokens unique).
    pub fn next_request_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    async fn propose_internal(&self, mut req: InternalRequest) -> Result<Applied, EtcdError> {
        let id = self.next_request_id();
        req.id = id;
        let data = req.encode_to_vec();
        if data.len() as u64 > self.max_request_bytes {
            return Err(EtcdError::RequestTooLarge);
        }
        self.raft.admit_proposal(*self.applied.borrow())?;
        let leader_term = req.leader_term;
        self.submit(
            id,
            NodeMsg::Propose {
                id,
                data,
                leader_term,
            },
        )
        .await
    }

    /// Replicates a membership change and waits for it to be applied.
    pub async fn propose_conf_change(
        &self,
        change_type: ConfChangeType,
        node_id: u64,
        member: Option<Member>,
    ) -> Result<Applied, EtcdError> {
        let id = self.next_request_id();
        let mut change = ConfChange::default();
        change.set_change_type(change_type);
        change.node_id = node_id;
        change.context = ConfChangeContext {
            request_id: id,
            member,
        }
        .encode_to_vec()
        .into();
        self.submit(id, NodeMsg::ProposeConfChange { id, change })
            .await
    }

    /// Asks the raft thread something and waits for the answer.
    pub async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> NodeMsg,
    ) -> Result<T, EtcdError> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx))?;
        rx.await.map_err(|_| EtcdError::Stopped)
    }

    /// Who a client request comes from: its token's user, else (with --client-cert-auth) its
    /// certificate's CN; `None` when auth is disabled or nobody is named.
    pub fn auth_info<T>(
        &self,
        req: &tonic::Request<T>,
    ) -> Result<Option<crate::auth::AuthInfo>, EtcdError> {
        if !self.auth.is_enabled() {
            return Ok(None);
        }
        if let Some(token) = crate::auth::request_token(req.metadata()) {
            let token = token.to_str().map_err(|_| EtcdError::InvalidAuthToken)?;
            return self.auth.info_from_token(token).map(Some);
        }
        if self.client_cert_auth {
            if let Some(cn) = req
                .extensions()
                .get::<crate::tls::ConnInfo>()
                .and_then(|c| c.common_name.clone())
            {
                return Ok(Some(crate::auth::AuthInfo { user: cn }));
            }
        }
        Ok(None)
    }

    /// The caller, who must hold the root role when auth is enabled (etcd's IsAdminPermitted).
    pub fn require_admin<T>(
        &self,
        req: &tonic::Request<T>,
    ) -> Result<Option<crate::auth::AuthInfo>, EtcdError> {
        let who = self.auth_info(req)?;
        self.auth.check_admin(who.as_ref())?;
        Ok(who)
    }

    /// The caller, who must be a known user when auth is enabled (for calls etcd lets any
    /// authenticated user make).
    pub fn require_user<T>(
        &self,
        req: &tonic::Request<T>,
    ) -> Result<Option<crate::auth::AuthInfo>, EtcdError> {
        let who = self.auth_info(req)?;
        self.auth.check_user(who.as_ref())?;
        Ok(who)
    }

    pub fn transfer_leader(&self, to: u64) -> Result<(), EtcdError> {
        self.send(NodeMsg::TransferLeader { to })
    }

    async fn submit(&self, id: u64, msg: NodeMsg) -> Result<Applied, EtcdError> {
        let rx = self.waiters.register(id);
        if let Err(e) = self.send(msg) {
            self.waiters.forget(id);
            return Err(e);
        }
        match tokio::time::timeout(self.request_timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(EtcdError::Stopped),
            Err(_) => {
                self.waiters.forget(id);
                crate::metrics::inc(|m| &m.proposals_failed);
                Err(EtcdError::Timeout)
            }
        }
    }

    /// Waits until this member has applied everything committed when the read arrived
    /// (raft ReadIndex), so a read after it sees every write acknowledged before it.
    /// etcd's ensureLeadership: a ReadIndex round proves this member still leads (a leader
    /// stuck in fsync, or cut off, cannot complete one); the term it leads in.
    pub async fn confirm_leadership(&self) -> Result<u64, EtcdError> {
        let term = self.raft.term.load(Ordering::Acquire);
        if !self.raft.is_leader.load(Ordering::Acquire) {
            return Err(EtcdError::LeaderChanged);
        }
        self.linearizable_read_barrier().await?;
        let still = self.raft.is_leader.load(Ordering::Acquire)
            && self.raft.term.load(Ordering::Acquire) == term;
        still.then_some(term).ok_or(EtcdError::LeaderChanged)
    }

    pub async fn linearizable_read_barrier(&self) -> Result<(), EtcdError> {
        self.refuse_learner()?;
        let (tx, rx) = oneshot::channel();
        self.send(NodeMsg::ReadIndex { reply: tx })?;
        let wait = async {
            let index = rx.await.map_err(|_| EtcdError::NoLeader)?;
            let mut applied = self.applied.clone();
            applied
                .wait_for(|a| *a >= index)
                .await
                .map_err(|_| EtcdError::Stopped)?;
            Ok(())
        };
        tokio::time::timeout(self.request_timeout, wait)
            .await
            .map_err(|_| EtcdError::Timeout)?
    }
}
