//! The client services as one in-process gRPC endpoint. The Lock and Election services are
//! clients of KV, Watch and Lease, as etcd's are (it dials itself); calls made for a caller
//! carry the caller's token or certificate, so they are checked exactly as the caller's own.

use crate::tls::ConnInfo;
use oxcd_api::etcdserverpb::kv_client::KvClient;
use oxcd_api::etcdserverpb::lease_client::LeaseClient;
use oxcd_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use oxcd_api::etcdserverpb::watch_client::WatchClient;
use oxcd_api::etcdserverpb::watch_request::RequestUnion;
use oxcd_api::etcdserverpb::{
    compare, Compare, DeleteRangeRequest, LeaseGrantRequest, PutRequest, RangeRequest,
    RangeResponse, RequestOp, ResponseHeader, TxnRequest, TxnResponse, WatchCreateRequest,
    WatchRequest, WatchResponse,
};
use oxcd_api::mvccpb::event::EventType;
use oxcd_api::mvccpb::KeyValue;
use tokio::sync::mpsc;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Routes;
use tonic::{Status, Streaming};

/// The TTL etcd's concurrency sessions grant when a request names no lease.
const DEFAULT_SESSION_TTL: i64 = 60;

/// Who a request is made for: its token and connection.
#[derive(Clone, Default)]
pub struct Caller {
    token: Option<MetadataValue<Ascii>>,
    conn: Option<ConnInfo>,
}

impl Caller {
    pub fn of<T>(req: &tonic::Request<T>) -> Self {
        Caller {
            token: crate::auth::request_token(req.metadata()).cloned(),
            conn: req.extensions().get::<ConnInfo>().cloned(),
        }
    }

    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        if let Some(token) = &self.token {
            req.metadata_mut().insert("token", token.clone());
        }
        if let Some(conn) = &self.conn {
            req.extensions_mut().insert(conn.clone());
        }
        req
    }
}

/// KV, Watch and Lease calls made in process for one caller.
#[derive(Clone)]
pub struct Local {
    routes: Routes,
    caller: Caller,
}

impl Local {
    pub fn new(routes: &Routes, caller: Caller) -> Self {
        Local {
            routes: routes.clone(),
            caller,
        }
    }

    pub async fn range(&self, req: RangeRequest) -> Result<RangeResponse, Status> {
        let mut kv = KvClient::new(self.routes.clone());
        Ok(kv.range(self.caller.request(req)).await?.into_inner())
    }

    pub async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, Status> {
        let mut kv = KvClient::new(self.routes.clone());
        Ok(kv.txn(self.caller.request(req)).await?.into_inner())
    }

    pub async fn delete(&self, key: Vec<u8>) -> Result<Option<ResponseHeader>, Status> {
        let mut kv = KvClient::new(self.routes.clone());
        let req = DeleteRangeRequest {
            key,
            ..Default::default()
        };
        Ok(kv
            .delete_range(self.caller.request(req))
            .await?
            .into_inner()
            .header)
    }

    /// The session key NAME/<lease hex> a lock or campaign owns, with its prefix and lease.
    pub async fn session_key(&self, name: &[u8], lease: i64) -> Result<SessionKey, Status> {
        let lease = self.session_lease(lease).await?;
        let prefix = [name, b"/"].concat();
        let key = lease_key(&prefix, lease);
        Ok(SessionKey { lease, prefix, key })
    }

    /// The lease a session uses: the one given, or (for 0) a new one, as etcd's sessions do.
    async fn session_lease(&self, lease: i64) -> Result<i64, Status> {
        if lease != 0 {
            return Ok(lease);
        }
        let mut leases = LeaseClient::new(self.routes.clone());
        let req = LeaseGrantRequest {
            ttl: DEFAULT_SESSION_TTL,
            id: 0,
        };
        let resp = leases.lease_grant(self.caller.request(req)).await?;
        Ok(resp.into_inner().id)
    }

    /// A watch on `key` (and `range_end`) from `start_revision`. The watch lives as long as
    /// the returned stream.
    pub async fn watch(
        &self,
        key: Vec<u8>,
        range_end: Vec<u8>,
        start_revision: i64,
    ) -> Result<WatchStream, Status> {
        let (tx, rx) = mpsc::channel(1);
        let create = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key,
                range_end,
                start_revision,
                ..Default::default()
            })),
        };
        tx.send(create)
            .await
            .map_err(|_| Status::internal("oxcd: local watch closed"))?;
        let mut watch = WatchClient::new(self.routes.clone());
        let responses = watch
            .watch(
                self.caller
                    .request(tokio_stream::wrappers::ReceiverStream::new(rx)),
            )
            .await?
            .into_inner();
        Ok(WatchStream {
            responses,
            _requests: tx,
        })
    }

    /// Waits until `key` is deleted, watching from `revision`.
    async fn wait_delete(&self, key: Vec<u8>, revision: i64) -> Result<(), Status> {
        let mut watch = self.watch(key, Vec::new(), revision).await?;
        while let Some(resp) = watch.next().await? {
            if resp
                .events
                .iter()
                .any(|e| e.r#type == EventType::Delete as i32)
            {
                return Ok(());
            }
        }
        Err(Status::unknown("lost watcher waiting for delete"))
    }

    /// Waits until no key under `prefix` created at or before `max_create_revision` is left
    /// (etcd's waitDeletes); the header of the last look.
    pub async fn wait_deletes(
        &self,
        prefix: &[u8],
        max_create_revision: i64,
    ) -> Result<Option<ResponseHeader>, Status> {
        loop {
            let mut req = last_created(prefix);
            req.max_create_revision = max_create_revision;
            let resp = self.range(req).await?;
            let Some(last) = resp.kvs.into_iter().next() else {
                return Ok(resp.header);
            };
            let revision = resp.header.map_or(0, |h| h.revision);
            self.wait_delete(last.key, revision).await?;
        }
    }
}

pub struct SessionKey {
    pub lease: i64,
    pub prefix: Vec<u8>,
    pub key: Vec<u8>,
}

/// A watch's responses; the watch ends when this is dropped.
pub struct WatchStream {
    responses: Streaming<WatchResponse>,
    _requests: mpsc::Sender<WatchRequest>,
}

impl WatchStream {
    /// The next response with events; None when the watch ends.
    pub async fn next(&mut self) -> Result<Option<WatchResponse>, Status> {
        while let Some(resp) = self.responses.message().await? {
            if resp.canceled {
                let reason = if resp.compact_revision != 0 {
                    oxcd_api::EtcdError::Compacted.to_string()
                } else {
                    resp.cancel_reason
                };
                return Err(Status::unknown(reason));
            }
            if !resp.events.is_empty() {
                return Ok(Some(resp));
            }
        }
        Ok(None)
    }
}

/// The key a session's lease owns under `prefix`: prefix + the lease ID in hex.
fn lease_key(prefix: &[u8], lease: i64) -> Vec<u8> {
    let hex = if lease < 0 {
        format!("-{:x}", lease.unsigned_abs())
    } else {
        format!("{lease:x}")
    };
    [prefix, hex.as_bytes()].concat()
}

fn sorted_by_create(prefix: &[u8], order: SortOrder) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: oxcd_api::prefix_end(prefix),
        limit: 1,
        sort_order: order as i32,
        sort_target: SortTarget::Create as i32,
        ..Default::default()
    }
}

/// The key under `prefix` created first (the lock holder, the leader).
pub fn first_created(prefix: &[u8]) -> RangeRequest {
    sorted_by_create(prefix, SortOrder::Ascend)
}

fn last_created(prefix: &[u8]) -> RangeRequest {
    sorted_by_create(prefix, SortOrder::Descend)
}

pub fn created_at(key: &[u8], revision: i64) -> Compare {
    Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Create as i32,
        key: key.to_vec(),
        target_union: Some(compare::TargetUnion::CreateRevision(revision)),
        ..Default::default()
    }
}

pub fn put_op(key: &[u8], value: &[u8], lease: i64) -> RequestOp {
    PutRequest {
        key: key.to_vec(),
        value: value.to_vec(),
        lease,
        ..Default::default()
    }
    .into()
}

pub fn get_op(key: &[u8]) -> RequestOp {
    RangeRequest {
        key: key.to_vec(),
        ..Default::default()
    }
    .into()
}

pub fn delete_op(key: &[u8]) -> RequestOp {
    DeleteRangeRequest {
        key: key.to_vec(),
        ..Default::default()
    }
    .into()
}

/// The keys the `index`th operation of a transaction read.
pub fn txn_range(resp: &TxnResponse, index: usize) -> &[KeyValue] {
    use oxcd_api::etcdserverpb::response_op::Response;
    match resp.responses.get(index).and_then(|r| r.response.as_ref()) {
        Some(Response::ResponseRange(r)) => &r.kvs,
        _ => &[],
    }
}

/// Deletes `key` if it was still created at `revision` when this guard is dropped armed: a
/// lock or campaign whose caller went away gives its key up, as etcd's do.
pub struct GiveUpOnDrop {
    local: Option<Local>,
    key: Vec<u8>,
    revision: i64,
}

impl GiveUpOnDrop {
    pub fn new(local: &Local, key: &[u8], revision: i64) -> Self {
        GiveUpOnDrop {
            local: Some(local.clone()),
            key: key.to_vec(),
            revision,
        }
    }

    pub fn disarm(mut self) {
        self.local = None;
    }
}

impl Drop for GiveUpOnDrop {
    fn drop(&mut self) {
        let Some(local) = self.local.take() else {
            return;
        };
        let txn = TxnRequest {
            compare: vec![created_at(&self.key, self.revision)],
            success: vec![delete_op(&self.key)],
            failure: vec![],
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = local.txn(txn).await {
                    tracing::warn!(error = %e, "failed to give up an abandoned lock or campaign key");
                }
            });
        }
    }
}
