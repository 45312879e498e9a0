//! etcd's Election service (v3electionpb): candidates for NAME are keys NAME/<lease hex>;
//! the one created first leads and its value is the leader's proclamation. Observers see
//! every change of leader and of its value, in order.

use super::local::{
    created_at, delete_op, first_created, get_op, put_op, txn_range, Caller, GiveUpOnDrop, Local,
    SessionKey,
};
use oxcd_api::etcdserverpb::{ResponseHeader, TxnRequest};
use oxcd_api::mvccpb::event::EventType;
use oxcd_api::v3electionpb::election_server::Election;
use oxcd_api::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use std::pin::Pin;
use tokio::sync::mpsc;
use tonic::service::Routes;
use tonic::{Request, Response, Status};

pub struct ElectionService {
    pub routes: Routes,
}

fn not_leader() -> Status {
    Status::unknown("election: not leader")
}

fn missing_leader() -> Status {
    Status::unknown(r#""leader" field must be provided"#)
}

/// Puts `value` on the leader's key if it is still the same key (created at `leader.rev`).
async fn proclaim(
    local: &Local,
    leader: &LeaderKey,
    value: &[u8],
) -> Result<Option<ResponseHeader>, Status> {
    let resp = local
        .txn(TxnRequest {
            compare: vec![created_at(&leader.key, leader.rev)],
            success: vec![put_op(&leader.key, value, leader.lease)],
            failure: vec![],
        })
        .await?;
    if !resp.succeeded {
        return Err(not_leader());
    }
    Ok(resp.header)
}

async fn resign(local: &Local, leader: &LeaderKey) -> Result<Option<ResponseHeader>, Status> {
    let resp = local
        .txn(TxnRequest {
            compare: vec![created_at(&leader.key, leader.rev)],
            success: vec![delete_op(&leader.key)],
            failure: vec![],
        })
        .await?;
    Ok(resp.header)
}

type ObserveStream = Pin<Box<dyn futures::Stream<Item = Result<LeaderResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(
        &self,
        req: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        let local = Local::new(&self.routes, Caller::of(&req));
        let CampaignRequest { name, lease, value } = req.into_inner();
        let SessionKey { lease, prefix, key } = local.session_key(&name, lease).await?;
        let resp = local
            .txn(TxnRequest {
                compare: vec![created_at(&key, 0)],
                success: vec![put_op(&key, &value, lease)],
                failure: vec![get_op(&key)],
            })
            .await?;
        let mut leader = LeaderKey {
            name,
            key,
            rev: resp.header.as_ref().map_or(0, |h| h.revision),
            lease,
        };
        if !resp.succeeded {
            let existing = txn_range(&resp, 0).first().cloned().unwrap_or_default();
            leader.rev = existing.create_revision;
            if existing.value != value {
                if let Err(e) = proclaim(&local, &leader, &value).await {
                    resign(&local, &leader).await?;
                    return Err(e);
                }
            }
        }
        let give_up = GiveUpOnDrop::new(&local, &leader.key, leader.rev);
        local.wait_deletes(&prefix, leader.rev - 1).await?;
        give_up.disarm();
        Ok(Response::new(CampaignResponse {
            header: resp.header,
            leader: Some(leader),
        }))
    }

    async fn proclaim(
        &self,
        req: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        let local = Local::new(&self.routes, Caller::of(&req));
        let req = req.into_inner();
        let leader = req.leader.ok_or_else(missing_leader)?;
        let header = proclaim(&local, &leader, &req.value).await?;
        Ok(Response::new(ProclaimResponse { header }))
    }

    async fn leader(
        &self,
        req: Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        let local = Local::new(&self.routes, Caller::of(&req));
        let prefix = [req.into_inner().name.as_slice(), b"/"].concat();
        let resp = local.range(first_created(&prefix)).await?;
        let Some(kv) = resp.kvs.into_iter().next() else {
            return Err(Status::unknown("election: no leader"));
        };
        Ok(Response::new(LeaderResponse {
            header: resp.header,
            kv: Some(kv),
        }))
    }

    type ObserveStream = ObserveStream;

    async fn observe(
        &self,
        req: Request<LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let local = Local::new(&self.routes, Caller::of(&req));
        let prefix = [req.into_inner().name.as_slice(), b"/"].concat();
        // The first look is made here so that a refused caller gets its error at once.
        let first = local.range(first_created(&prefix)).await?;
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            tokio::select! {
                result = observe(&local, &prefix, first, &tx) => {
                    if let Err(e) = result {
                        let _ = tx.send(Err(e)).await;
                    }
                }
                _ = tx.closed() => {}
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn resign(
        &self,
        req: Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        let local = Local::new(&self.routes, Caller::of(&req));
        let leader = req.into_inner().leader.ok_or_else(missing_leader)?;
        let header = resign(&local, &leader).await?;
        Ok(Response::new(ResignResponse { header }))
    }
}

/// Sends the leader, then each new value it proclaims; when it goes, waits for the next one.
/// Returns when the observer is gone.
async fn observe(
    local: &Local,
    prefix: &[u8],
    mut look: oxcd_api::etcdserverpb::RangeResponse,
    out: &mpsc::Sender<Result<LeaderResponse, Status>>,
) -> Result<(), Status> {
    loop {
        let (mut header, leader) = match look.kvs.into_iter().next() {
            Some(kv) => (look.header.unwrap_or_default(), kv),
            None => {
                let from = look.header.as_ref().map_or(0, |h| h.revision);
                let mut watch = local
                    .watch(prefix.to_vec(), oxcd_api::prefix_end(prefix), from)
                    .await?;
                loop {
                    let Some(resp) = watch.next().await? else {
                        return Ok(());
                    };
                    let put = resp
                        .events
                        .into_iter()
                        .find(|e| e.r#type == EventType::Put as i32)
                        .and_then(|e| e.kv);
                    if let Some(kv) = put {
                        let mut header = resp.header.unwrap_or_default();
                        header.revision = kv.mod_revision;
                        break (header, kv);
                    }
                }
            }
        };
        let key = leader.key.clone();
        if out
            .send(Ok(LeaderResponse {
                header: Some(header),
                kv: Some(leader),
            }))
            .await
            .is_err()
        {
            return Ok(());
        }
        let mut watch = local.watch(key, Vec::new(), header.revision + 1).await?;
        'leader: loop {
            let Some(resp) = watch.next().await? else {
                return Ok(());
            };
            header = resp.header.unwrap_or_default();
            for event in resp.events {
                if event.r#type == EventType::Delete as i32 {
                    break 'leader;
                }
                let update = LeaderResponse {
                    header: Some(header),
                    kv: event.kv,
                };
                if out.send(Ok(update)).await.is_err() {
                    return Ok(());
                }
            }
        }
        look = local.range(first_created(prefix)).await?;
    }
}
