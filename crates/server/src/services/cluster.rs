//! etcd's Cluster service: the member list and membership changes through raft, with etcd's
//! strict-reconfig checks (refuse a change that would leave too few started or connected
//! members for a quorum).

use crate::msg::Applied;
use crate::msg::NodeMsg;
use crate::server::EtcdServer;
use oxcd_api::etcdserverpb::cluster_client::ClusterClient;
use oxcd_api::etcdserverpb::cluster_server::Cluster;
use oxcd_api::etcdserverpb::*;
use oxcd_api::oxcdpb::internal_request::Request as Internal;
use oxcd_api::EtcdError;
use oxcd_api::MemberId;
use oxcd_api::Revision;
use raft::eraftpb::ConfChangeType;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct ClusterService {
    pub server: Arc<EtcdServer>,
}

/// Peer URLs as etcd accepts them: http(s)://host:port, nothing more.
fn parse_peer_urls(urls: &[String]) -> Result<Vec<String>, EtcdError> {
    if urls.is_empty() {
        return Err(EtcdError::MemberBadUrls);
    }
    let mut out = Vec::with_capacity(urls.len());
    for u in urls {
        let parsed = url::Url::parse(u).map_err(|_| EtcdError::MemberBadUrls)?;
        let host_port = parsed.host_str().is_some() && parsed.port().is_some();
        if !matches!(parsed.scheme(), "http" | "https")
            || !host_port
            || !matches!(parsed.path(), "" | "/")
        {
            return Err(EtcdError::MemberBadUrls);
        }
        out.push(u.trim_end_matches('/').to_string());
    }
    out.sort();
    Ok(out)
}

fn quorum(n: usize) -> usize {
    n / 2 + 1
}

fn started(m: &Member) -> bool {
    !m.name.is_empty()
}

impl ClusterService {
    fn members(&self) -> Vec<Member> {
        self.server.members.borrow().members.clone()
    }

    fn voters(&self) -> Vec<Member> {
        self.members()
            .into_iter()
            .filter(|m| !m.is_learner)
            .collect()
    }

    fn strict(&self) -> bool {
        self.server.strict_reconfig_check
    }

    fn may_add(&self, learner: bool) -> Result<(), EtcdError> {
        if learner {
            let learners = self.members().iter().filter(|m| m.is_learner).count();
            if learners >= self.server.max_learners {
                return Err(EtcdError::TooManyLearners);
            }
        }
        if !self.strict() || learner {
            return Ok(());
        }
        let voters = self.voters();
        let n_started = voters.iter().filter(|m| started(m)).count();
        let n_after = voters.len() + 1;
        // Adding a second member to a one-member cluster is how a cluster is rebuilt.
        let rebuilding = n_started == 1 && n_after == 2;
        if !rebuilding && n_started < quorum(n_after) {
            return Err(EtcdError::MemberNotEnoughStarted);
        }
        if !voters.iter().all(|m| self.server.transport.is_active(m.id)) {
            return Err(EtcdError::Unhealthy);
        }
        Ok(())
    }

    fn may_remove(&self, id: u64) -> Result<(), EtcdError> {
        let members = self.members();
        let target = members
            .iter()
            .find(|m| m.id == id)
            .ok_or(EtcdError::MemberNotFound)?;
        if !self.strict() || target.is_learner {
            return Ok(());
        }
        let voters = self.voters();
        let rest: Vec<&Member> = voters.iter().filter(|m| m.id != id).collect();
        if rest.iter().filter(|m| started(m)).count() < quorum(rest.len()) {
            return Err(EtcdError::MemberNotEnoughStarted);
        }
        // A member that is down is not part of the active quorum: removing it is safe.
        if id != self.server.member_id.0 && !self.server.transport.is_active(id) {
            return Ok(());
        }
        let active = voters
            .iter()
            .filter(|m| self.server.transport.is_active(m.id))
            .count();
        if active.saturating_sub(1) < quorum(voters.len() - 1) {
            return Err(EtcdError::Unhealthy);
        }
        Ok(())
    }

    /// Promotion is decided by the leader, which alone knows how far the learner's log is.
    async fn promote_here(&self, id: u64) -> Result<Vec<Member>, EtcdError> {
        let members = self.members();
        let target = members
            .iter()
            .find(|m| m.id == id)
            .ok_or(EtcdError::MemberNotFound)?;
        if !target.is_learner {
            return Err(EtcdError::MemberNotLearner);
        }
        let progress = self.server.ask(|reply| NodeMsg::Progress { reply }).await?;
        let leader_match = progress
            .get(&self.server.member_id.0)
            .copied()
            .ok_or(EtcdError::NotLeader)?;
        let learner_match = progress.get(&id).copied().unwrap_or(0);
        if (learner_match as f64) < (leader_match as f64) * 0.9 {
            return Err(EtcdError::LearnerNotReady);
        }
        if self.strict() {
            let voters = self.voters();
            let n_started = 1 + voters.iter().filter(|m| started(m)).count();
            if n_started < quorum(voters.len() + 1) {
                return Err(EtcdError::MemberNotEnoughStarted);
            }
        }
        match self
            .server
            .propose_conf_change(ConfChangeType::AddNode, id, None)
            .await?
        {
            Applied::Members { members, .. } => Ok(members),
            _ => Err(EtcdError::Internal("unexpected promote result".into())),
        }
    }

    /// A follower hands a promotion to the leader's client URL.
    async fn promote_on_leader(&self, id: u64) -> Result<Vec<Member>, Status> {
        let leader = self.server.raft.leader.load(Ordering::Acquire);
        let url = self
            .members()
            .into_iter()
            .find(|m| m.id == leader)
            .and_then(|m| m.client_ur_ls.first().cloned())
            .ok_or(EtcdError::NoLeader)?;
        let mut client = ClusterClient::connect(url)
            .await
            .map_err(|_| EtcdError::NoLeader)?;
        let resp = client
            .member_promote(MemberPromoteRequest { id })
            .await?
            .into_inner();
        Ok(resp.members)
    }
}

fn members_of(applied: Applied) -> Result<(Option<Member>, Vec<Member>), EtcdError> {
    match applied {
        Applied::Members {
            member, members, ..
        } => Ok((member, members)),
        other => Err(EtcdError::Internal(format!(
            "oxcd: unexpected apply result {other:?}"
        ))),
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        r: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        self.server.require_admin(&r)?;
        let r = r.into_inner();
        let urls = parse_peer_urls(&r.peer_ur_ls)?;
        let members = self.members();
        if members
            .iter()
            .any(|m| m.peer_ur_ls.iter().any(|u| urls.contains(u)))
        {
            return Err(EtcdError::PeerUrlExist.into());
        }
        self.may_add(r.is_learner)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let id = MemberId::derive_at(&urls, &self.server.cluster_token, Some(now));
        let member = Member {
            id: id.0,
            name: String::new(),
            peer_ur_ls: urls,
            client_ur_ls: vec![],
            is_learner: r.is_learner,
        };
        let change = if r.is_learner {
            ConfChangeType::AddLearnerNode
        } else {
            ConfChangeType::AddNode
        };
        let applied = self
            .server
            .propose_conf_change(change, id.0, Some(member.clone()))
            .await?;
        let (added, members) = members_of(applied)?;
        Ok(Response::new(MemberAddResponse {
            header: self.server.header(Revision(0)),
            member: added.or(Some(member)),
            members,
        }))
    }

    async fn member_remove(
        &self,
        r: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        self.server.require_admin(&r)?;
        let id = r.into_inner().id;
        self.may_remove(id)?;
        let applied = self
            .server
            .propose_conf_change(ConfChangeType::RemoveNode, id, None)
            .await?;
        let (_, members) = members_of(applied)?;
        Ok(Response::new(MemberRemoveResponse {
            header: self.server.header(Revision(0)),
            members,
        }))
    }

    async fn member_update(
        &self,
        r: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let who = self.server.require_admin(&r)?;
        let r = r.into_inner();
        let urls = parse_peer_urls(&r.peer_ur_ls)?;
        let members = self.members();
        if !members.iter().any(|m| m.id == r.id) {
            return Err(EtcdError::MemberNotFound.into());
        }
        if members
            .iter()
            .any(|m| m.id != r.id && m.peer_ur_ls.iter().any(|u| urls.contains(u)))
        {
            return Err(EtcdError::PeerUrlExist.into());
        }
        let update = Member {
            id: r.id,
            peer_ur_ls: urls,
            ..Default::default()
        };
        let applied = self
            .server
            .propose_for(who.as_ref(), Internal::UpdateMember(update))
            .await?;
        let (_, members) = members_of(applied)?;
        Ok(Response::new(MemberUpdateResponse {
            header: self.server.header(Revision(0)),
            members,
        }))
    }

    async fn member_promote(
        &self,
        r: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        self.server.require_admin(&r)?;
        let id = r.into_inner().id;
        let members = if self.server.raft.is_leader.load(Ordering::Acquire) {
            self.promote_here(id).await?
        } else {
            self.promote_on_leader(id).await?
        };
        Ok(Response::new(MemberPromoteResponse {
            header: self.server.header(Revision(0)),
            members,
        }))
    }

    async fn member_list(
        &self,
        req: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        // As etcd, any client may list the members; a bad token is still refused.
        self.server.auth_info(&req)?;
        if req.into_inner().linearizable {
            self.server.linearizable_read_barrier().await?;
        }
        Ok(Response::new(MemberListResponse {
            // etcd's cluster responses carry no revision.
            header: self.server.header(Revision(0)),
            members: self.members(),
        }))
    }
}
