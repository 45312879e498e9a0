//! etcd's KV service: checks a request as etcd does, then reads locally (after a ReadIndex
//! barrier unless serializable) or proposes it through raft.

use crate::error::store_status;
use crate::msg::Applied;
use crate::server::EtcdServer;
use oxcd_api::etcdserverpb::kv_server::Kv;
use oxcd_api::etcdserverpb::{
    request_op, CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    PutRequest, PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use oxcd_api::oxcdpb::internal_request::Request as Internal;
use oxcd_mvcc::validate;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct KvService {
    pub server: Arc<EtcdServer>,
    /// Slots for reads that may touch many keys (two per core).
    pub big_reads: Arc<tokio::sync::Semaphore>,
}

/// The most keys a range may ask for and still be served on the async runtime.
const SMALL_RANGE: i64 = 1000;

/// Whether a range may read many keys: a key range without a small limit, or one that
/// sorts or filters (those read the whole range whatever the limit).
fn may_be_large(r: &RangeRequest) -> bool {
    let reads_all = r.sort_order != 0
        || r.min_mod_revision != 0
        || r.max_mod_revision != 0
        || r.min_create_revision != 0
        || r.max_create_revision != 0;
    !r.range_end.is_empty() && (r.limit == 0 || r.limit > SMALL_RANGE || reads_all)
}

/// Whether a read-only txn may read many keys: any of its ranges may, or it nests txns.
fn txn_may_be_large(t: &TxnRequest) -> bool {
    t.success
        .iter()
        .chain(&t.failure)
        .any(|op| match &op.request {
            Some(request_op::Request::RequestRange(r)) => may_be_large(r),
            Some(request_op::Request::RequestTxn(_)) => true,
            _ => false,
        })
}

/// Runs a read that may touch many keys on the blocking pool, at most `big_reads` of them
/// at once, so their responses do not pile up in memory together.
async fn off_runtime<T: Send + 'static>(
    service: &KvService,
    read: impl FnOnce(&oxcd_mvcc::Store) -> Result<T, oxcd_mvcc::StoreError> + Send + 'static,
) -> Result<T, Status> {
    let store = service.server.store.clone();
    crate::blocking::run(Some(&service.big_reads), move || read(&store))
        .await
        .map_err(Status::internal)?
        .map_err(store_status)
}

fn unexpected(what: &Applied) -> Status {
    Status::internal(format!("oxcd: unexpected apply result {what:?}"))
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let who = self.server.auth_info(&req)?;
        let req = req.into_inner();
        validate::check_range(&req)?;
        self.server
            .auth
            .check_read(who.as_ref(), &req.key, &req.range_end)?;
        if !req.serializable {
            self.server.linearizable_read_barrier().await?;
        }
        let mut resp = if may_be_large(&req) {
            off_runtime(self, move |store| store.range(&req)).await?
        } else {
            self.server.store.range(&req).map_err(store_status)?
        };
        self.server.fill_header(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let who = self.server.auth_info(&req)?;
        let req = req.into_inner();
        validate::check_put(&req)?;
        self.server
            .auth
            .check_put(who.as_ref(), &req.key, req.prev_kv)?;
        self.server.refuse_learner()?;
        self.server
            .check_quota(crate::alarms::put_request_cost(&req.key, &req.value))
            .await?;
        match self
            .server
            .propose_for(who.as_ref(), Internal::Put(req))
            .await?
        {
            Applied::Put(mut resp) => {
                self.server.fill_header(&mut resp.header);
                Ok(Response::new(resp))
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn delete_range(
        &self,
        req: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let who = self.server.auth_info(&req)?;
        let req = req.into_inner();
        validate::check_delete(&req)?;
        self.server
            .auth
            .check_delete(who.as_ref(), &req.key, &req.range_end, req.prev_kv)?;
        self.server.refuse_learner()?;
        match self
            .server
            .propose_for(who.as_ref(), Internal::DeleteRange(req))
            .await?
        {
            Applied::DeleteRange(mut resp) => {
                self.server.fill_header(&mut resp.header);
                Ok(Response::new(resp))
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let who = self.server.auth_info(&req)?;
        let req = req.into_inner();
        validate::check_txn(&req, self.server.max_txn_ops as usize)?;
        self.server.auth.check_txn(who.as_ref(), &req)?;
        if oxcd_mvcc::is_read_only(&req) {
            // As etcd: served locally, after a ReadIndex barrier unless every range is
            // serializable.
            let serializable = req.success.iter().chain(&req.failure).all(|op| {
                matches!(&op.request, Some(request_op::Request::RequestRange(r)) if r.serializable)
            });
            if !serializable {
                self.server.linearizable_read_barrier().await?;
            }
            let mut resp = if txn_may_be_large(&req) {
                off_runtime(self, move |store| store.read_only_txn(&req)).await?
            } else {
                self.server
                    .store
                    .read_only_txn(&req)
                    .map_err(store_status)?
            };
            self.server.fill_header(&mut resp.header);
            return Ok(Response::new(resp));
        }
        self.server.refuse_learner()?;
        self.server
            .check_quota(crate::alarms::txn_cost(&req))
            .await?;
        match self
            .server
            .propose_for(who.as_ref(), Internal::Txn(req))
            .await?
        {
            Applied::Txn(mut resp) => {
                self.server.fill_header(&mut resp.header);
                Ok(Response::new(resp))
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn compact(
        &self,
        req: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let who = self.server.require_user(&req)?;
        let req = req.into_inner();
        self.server.refuse_learner()?;
        let (at, physical) = (oxcd_api::Revision(req.revision), req.physical);
        match self
            .server
            .propose_for(who.as_ref(), Internal::Compaction(req))
            .await?
        {
            Applied::Compacted(rev) => {
                if physical {
                    crate::compactor::wait_physical(&self.server.store, at).await;
                }
                Ok(Response::new(CompactionResponse {
                    header: self.server.header(rev),
                }))
            }
            other => Err(unexpected(&other)),
        }
    }
}
