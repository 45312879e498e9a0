//! etcd's Lock service (v3lockpb): a lock NAME is held by the key NAME/<lease hex> created
//! first; waiters are ordered by create revision and the lock passes on when the holder's key
//! is deleted (Unlock) or its lease ends.

use super::local::{
    created_at, first_created, get_op, put_op, txn_range, Caller, GiveUpOnDrop, Local, SessionKey,
};
use oxcd_api::etcdserverpb::{RangeRequest, TxnRequest};
use oxcd_api::v3lockpb::lock_server::Lock;
use oxcd_api::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use tonic::service::Routes;
use tonic::{Request, Response, Status};

pub struct LockService {
    pub routes: Routes,
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, req: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let local = Local::new(&self.routes, Caller::of(&req));
        let LockRequest { name, lease } = req.into_inner();
        let SessionKey { lease, prefix, key } = local.session_key(&name, lease).await?;
        let resp = local
            .txn(TxnRequest {
                compare: vec![created_at(&key, 0)],
                success: vec![put_op(&key, b"", lease), first_created(&prefix).into()],
                failure: vec![get_op(&key), first_created(&prefix).into()],
            })
            .await?;
        let my_revision = if resp.succeeded {
            resp.header.as_ref().map_or(0, |h| h.revision)
        } else {
            txn_range(&resp, 0)
                .first()
                .map_or(0, |kv| kv.create_revision)
        };
        let holder = txn_range(&resp, 1).first().map(|kv| kv.create_revision);
        if holder.is_none_or(|created| created == my_revision) {
            return Ok(Response::new(LockResponse {
                header: resp.header,
                key,
            }));
        }
        let give_up = GiveUpOnDrop::new(&local, &key, my_revision);
        let header = local.wait_deletes(&prefix, my_revision - 1).await?;
        // The lease may have ended while this waited: then the key, and the lock, are gone.
        let mine = local
            .range(RangeRequest {
                key: key.clone(),
                ..Default::default()
            })
            .await?;
        if mine.kvs.is_empty() {
            return Err(Status::unknown("mutex: session is expired"));
        }
        give_up.disarm();
        Ok(Response::new(LockResponse { header, key }))
    }

    async fn unlock(
        &self,
        req: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        let local = Local::new(&self.routes, Caller::of(&req));
        let header = local.delete(req.into_inner().key).await?;
        Ok(Response::new(UnlockResponse { header }))
    }
}
