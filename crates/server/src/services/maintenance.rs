//! etcd's Maintenance service: Status and alarm listing now; the rest with later issues.

use crate::server::EtcdServer;
use oxcd_api::etcdserverpb::alarm_request::AlarmAction;
use oxcd_api::etcdserverpb::maintenance_server::Maintenance;
use oxcd_api::etcdserverpb::*;
use oxcd_api::EtcdError;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub const SERVER_VERSION: &str = "3.5.0";

pub struct MaintenanceService {
    pub server: Arc<EtcdServer>,
}

pub(crate) fn not_yet(method: &str, issue: &str) -> Status {
    Status::unimplemented(format!("oxcd: {method} is not implemented yet ({issue})"))
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        match req.into_inner().action() {
            // No alarm can be raised yet (quota and corruption checks come with operations).
            AlarmAction::Get => Ok(Response::new(AlarmResponse {
                header: self.server.header(self.server.store.current_revision()),
                alarms: vec![],
            })),
            _ => Err(not_yet(
                "Maintenance.Alarm activate/deactivate",
                "operations issue",
            )),
        }
    }

    async fn status(
        &self,
        _req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let s = &self.server;
        let term = s.raft.term.load(Ordering::Acquire);
        let leader = s.raft.leader.load(Ordering::Acquire);
        let mut errors = Vec::new();
        if leader == 0 {
            errors.push(oxcd_api::EtcdError::NoLeader.to_string());
        }
        let db_size = s.store.db_size() as i64;
        Ok(Response::new(StatusResponse {
            header: s.header(s.store.current_revision()),
            version: SERVER_VERSION.to_string(),
            db_size,
            leader,
            raft_index: s.raft.commit.load(Ordering::Acquire),
            raft_term: term,
            raft_applied_index: *s.applied.borrow(),
            errors,
            db_size_in_use: db_size,
            is_learner: s.is_learner(),
        }))
    }

    async fn defragment(
        &self,
        _r: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        Err(not_yet("Maintenance.Defragment", "operations issue"))
    }

    async fn hash(&self, _r: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        Err(not_yet("Maintenance.Hash", "operations issue"))
    }

    async fn hash_kv(&self, r: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        let s = &self.server;
        let (hash, compact_revision, hash_revision) = s
            .store
            .hash_kv(r.into_inner().revision)
            .map_err(crate::services::kv::store_status)?;
        Ok(Response::new(HashKvResponse {
            header: s.header(s.store.current_revision()),
            hash,
            compact_revision,
            hash_revision,
        }))
    }

    type SnapshotStream = futures::stream::Empty<Result<SnapshotResponse, Status>>;

    async fn snapshot(
        &self,
        _r: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        Err(not_yet("Maintenance.Snapshot", "operations issue"))
    }

    async fn move_leader(
        &self,
        r: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        let s = &self.server;
        let target = r.into_inner().target_id;
        if !s.raft.is_leader.load(Ordering::Acquire) {
            return Err(EtcdError::NotLeader.into());
        }
        let is_voter = s
            .members
            .borrow()
            .members
            .iter()
            .any(|m| m.id == target && !m.is_learner);
        if !is_voter {
            return Err(EtcdError::BadLeaderTransferee.into());
        }
        if target != s.member_id.0 {
            tracing::info!(from = %s.member_id, to = %crate::ids::MemberId(target), "leadership transfer starting");
            s.transfer_leader(target)?;
            let deadline = tokio::time::Instant::now() + s.request_timeout;
            while s.raft.leader.load(Ordering::Acquire) != target {
                if tokio::time::Instant::now() >= deadline {
                    return Err(EtcdError::LeaderTransferTimeout.into());
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
        Ok(Response::new(MoveLeaderResponse {
            header: s.header(s.store.current_revision()),
        }))
    }

    async fn downgrade(
        &self,
        _r: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        Err(not_yet("Maintenance.Downgrade", "not planned yet"))
    }
}
