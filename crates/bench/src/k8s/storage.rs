//! kube-apiserver's storage requests (k8s.io/apiserver/pkg/storage/etcd3/store.go), as it
//! sends them: create is `If ModRevision(key) == 0 Then Put Else Get`, update and delete
//! `If ModRevision(key) == rev Then Put/DeleteRange Else Get`, retried on conflict from the
//! Else-Get result; lists are pages of `limit` from the last key + "\0", pinned at the first
//! page's revision.

use oxcd_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use oxcd_api::etcdserverpb::kv_client::KvClient;
use oxcd_api::etcdserverpb::{
    request_op, response_op, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest, TxnResponse,
};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Conflicts one update or delete retries before it gives up.
const MAX_ATTEMPTS: usize = 32;

/// A write the server acknowledged: its revision, when the ack arrived, how many
/// conflicts it went through.
pub struct Commit {
    pub revision: i64,
    pub at: Instant,
    pub conflicts: usize,
}

/// A tiny deterministic generator (splitmix64): the same load for every product.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi].
    pub fn between(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi.saturating_sub(lo) as u64 + 1)) as usize
    }
}

/// An object of `size` bytes: a serialized-looking header naming it, then filler that does
/// not compress to nothing (kube's protobuf objects are not all zeros either).
pub fn object(rng: &mut Rng, key: &[u8], size: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(size);
    v.extend_from_slice(b"k8s\0");
    v.extend_from_slice(key);
    let mut word = rng.next();
    while v.len() < size {
        if word == 0 {
            word = rng.next() | 1;
        }
        v.push(b'a' + (word % 26) as u8);
        word /= 26;
    }
    v.truncate(size);
    v
}

fn guarded(key: &[u8], mod_revision: i64, then: request_op::Request) -> TxnRequest {
    TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Mod as i32,
            key: key.to_vec(),
            target_union: Some(TargetUnion::ModRevision(mod_revision)),
            range_end: vec![],
        }],
        success: vec![RequestOp {
            request: Some(then),
        }],
        failure: vec![RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest {
                key: key.to_vec(),
                ..Default::default()
            })),
        }],
    }
}

async fn txn(kv: &mut KvClient<Channel>, req: TxnRequest) -> Result<TxnResponse, String> {
    tokio::time::timeout(REQUEST_TIMEOUT, kv.txn(req))
        .await
        .map_err(|_| "txn timed out".to_string())?
        .map(|r| r.into_inner())
        .map_err(|e| format!("txn: {}", e.message()))
}

/// The key's current mod revision from a failed txn's Else-Get (None: the key is gone).
fn current_revision(resp: &TxnResponse) -> Option<i64> {
    match resp.responses.first()?.response.as_ref()? {
        response_op::Response::ResponseRange(r) => r.kvs.first().map(|kv| kv.mod_revision),
        _ => None,
    }
}

fn committed(resp: &TxnResponse, conflicts: usize) -> Commit {
    Commit {
        revision: resp.header.as_ref().map_or(0, |h| h.revision),
        at: Instant::now(),
        conflicts,
    }
}

/// Creates `key` (with `lease`, 0 for none); an existing key is an error.
pub async fn create(
    kv: &mut KvClient<Channel>,
    key: &[u8],
    value: Vec<u8>,
    lease: i64,
) -> Result<Commit, String> {
    let put = request_op::Request::RequestPut(PutRequest {
        key: key.to_vec(),
        value,
        lease,
        ..Default::default()
    });
    let resp = txn(kv, guarded(key, 0, put)).await?;
    if resp.succeeded {
        Ok(committed(&resp, 0))
    } else {
        Err(format!(
            "create {}: already exists",
            String::from_utf8_lossy(key)
        ))
    }
}

/// Updates `key` expected at `revision`, or deletes it (`value` None); on a conflict takes
/// the current revision from the Else-Get and tries again.
pub async fn update(
    kv: &mut KvClient<Channel>,
    key: &[u8],
    mut revision: i64,
    value: Option<Vec<u8>>,
) -> Result<Commit, String> {
    for conflicts in 0..MAX_ATTEMPTS {
        let then = match &value {
            Some(v) => request_op::Request::RequestPut(PutRequest {
                key: key.to_vec(),
                value: v.clone(),
                ..Default::default()
            }),
            None => request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                key: key.to_vec(),
                ..Default::default()
            }),
        };
        let resp = txn(kv, guarded(key, revision, then)).await?;
        if resp.succeeded {
            return Ok(committed(&resp, conflicts));
        }
        revision = current_revision(&resp)
            .ok_or_else(|| format!("update {}: not found", String::from_utf8_lossy(key)))?;
    }
    Err(format!(
        "update {}: {MAX_ATTEMPTS} conflicts in a row",
        String::from_utf8_lossy(key)
    ))
}

/// A RangeResponse read for what a lister needs (keys, more, count, revision); values are
/// skipped while decoding, so the bench's own CPU stays out of the way of the servers'.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Page {
    #[prost(message, optional, tag = "1")]
    pub header: Option<PageHeader>,
    #[prost(message, repeated, tag = "2")]
    pub kvs: Vec<PageKey>,
    #[prost(bool, tag = "3")]
    pub more: bool,
    #[prost(int64, tag = "4")]
    pub count: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PageHeader {
    #[prost(int64, tag = "3")]
    pub revision: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PageKey {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
}

/// One Range call decoded as a `Page`.
pub async fn range_page(channel: &Channel, req: RangeRequest) -> Result<Page, String> {
    range_as(channel, req, REQUEST_TIMEOUT).await
}

/// One Range call, its response decoded as `M` (a slimmer message than RangeResponse), with
/// no limit on the response's size.
pub async fn range_as<M: prost::Message + Default + Send + 'static>(
    channel: &Channel,
    req: RangeRequest,
    timeout: Duration,
) -> Result<M, String> {
    let mut grpc = tonic::client::Grpc::new(channel.clone()).max_decoding_message_size(usize::MAX);
    grpc.ready().await.map_err(|e| e.to_string())?;
    let codec = tonic_prost::ProstCodec::<RangeRequest, M>::default();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/etcdserverpb.KV/Range");
    tokio::time::timeout(timeout, grpc.unary(tonic::Request::new(req), path, codec))
        .await
        .map_err(|_| format!("range timed out after {timeout:?}"))?
        .map(|r| r.into_inner())
        .map_err(|e| format!("range: {}", e.message()))
}

/// A whole paginated list of `prefix` as the reflector's list does it; returns the pages'
/// latencies, the objects seen and the revision the list was pinned at.
pub async fn list(
    channel: &Channel,
    prefix: &[u8],
    limit: i64,
) -> Result<(Vec<Duration>, usize, i64), String> {
    let end = oxcd_api::prefix_end(prefix);
    let mut key = prefix.to_vec();
    let mut revision = 0;
    let mut latencies = Vec::new();
    let mut objects = 0;
    loop {
        let t = Instant::now();
        let page = range_page(
            channel,
            RangeRequest {
                key: key.clone(),
                range_end: end.clone(),
                limit,
                revision,
                ..Default::default()
            },
        )
        .await?;
        latencies.push(t.elapsed());
        if revision == 0 {
            revision = page.header.as_ref().map_or(0, |h| h.revision);
        }
        objects += page.kvs.len();
        match page.kvs.last() {
            Some(last) if page.more => {
                key = last.key.clone();
                key.push(0);
            }
            _ => return Ok((latencies, objects, revision)),
        }
    }
}

/// A count-only range over `prefix` (kube-apiserver's object count).
pub async fn count(channel: &Channel, prefix: &[u8]) -> Result<i64, String> {
    let page = range_page(
        channel,
        RangeRequest {
            key: prefix.to_vec(),
            range_end: oxcd_api::prefix_end(prefix),
            count_only: true,
            ..Default::default()
        },
    )
    .await?;
    Ok(page.count)
}
