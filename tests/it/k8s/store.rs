//! kube-apiserver's storage layer (staging/src/k8s.io/apiserver/pkg/storage/etcd3), as etcd
//! sees it: creates guarded by `mod_revision == 0`, updates and deletes guarded by the
//! revision read, retried with what the failed transaction's Else read back, paginated lists
//! pinned at the first page's revision, count-only ranges, and the compaction that every
//! apiserver runs, coordinated through `compact_rev_key`.

use oxcd_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use oxcd_api::etcdserverpb::kv_client::KvClient;
use oxcd_api::etcdserverpb::*;
use oxcd_api::mvccpb::KeyValue;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use tonic::transport::Channel;

/// What a page holds at most; kube-apiserver asks for 500, the test for fewer so that lists
/// of a few hundred objects page.
pub const PAGE: i64 = 50;
/// The key kube-apiserver's compactors agree through.
pub const COMPACT_REV_KEY: &str = "compact_rev_key";
/// How often a guarded update or delete is tried before it gives up (conflicts).
const TRIES: usize = 5;

/// An acknowledged write: the revision its transaction's header gave.
#[derive(Clone, Debug)]
pub struct Write {
    pub rev: i64,
    pub key: String,
    /// The object's uid for a put; None for a delete.
    pub uid: Option<String>,
}

/// What every apiserver's calls recorded.
#[derive(Default)]
pub struct Log {
    pub acked: Mutex<Vec<Write>>,
    /// Every uid written, acknowledged or not (a write whose answer was lost may be applied).
    pub attempted: Mutex<HashSet<String>>,
    /// Keys whose delete may have been applied though its answer was lost.
    pub unknown_deletes: Mutex<HashSet<String>>,
    pub violations: Mutex<Vec<String>>,
    pub creates: AtomicU64,
    pub updates: AtomicU64,
    pub deletes: AtomicU64,
    pub conflicts: AtomicU64,
    pub lists: AtomicU64,
    pub pagination_checks: AtomicU64,
    pub counts: AtomicU64,
    pub failed_calls: AtomicU64,
    pub compactions: AtomicU64,
    pub compactions_refused: AtomicU64,
    /// The highest revision a compaction was asked for (set before the call).
    pub compact_requested: std::sync::Arc<std::sync::atomic::AtomicI64>,
    /// Why compactions were refused (the first few).
    pub refusals: Mutex<Vec<String>>,
    /// Why calls failed (the first few), with when (since the traffic began).
    pub failures: Mutex<Vec<String>>,
    /// Calls made, and the slowest one.
    pub calls: AtomicU64,
    pub slowest_call: Mutex<std::time::Duration>,
}

impl Log {
    pub fn violation(&self, what: String) {
        self.violations.lock().expect("violations").push(what);
    }

    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn ack(&self, rev: i64, key: &str, uid: Option<&str>) {
        self.acked.lock().expect("acked").push(Write {
            rev,
            key: key.to_string(),
            uid: uid.map(str::to_string),
        });
    }
}

/// An object as kube-apiserver stores it (JSON here, protobuf there), `size` bytes long.
pub fn object(kind: &str, name: &str, uid: &str, size: usize) -> Vec<u8> {
    let head =
        format!(r#"{{"kind":"{kind}","metadata":{{"name":"{name}","uid":"{uid}"}},"spec":""#);
    let pad = size.saturating_sub(head.len() + 2);
    let mut v = head.into_bytes();
    v.extend(std::iter::repeat_n(b'x', pad));
    v.extend_from_slice(b"\"}");
    v
}

/// The uid `object` put into a value.
pub fn uid_of(value: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(value).ok()?;
    let start = s.find(r#""uid":""#)? + 7;
    let len = s[start..].find('"')?;
    Some(s[start..start + len].to_string())
}

fn mod_is(key: &str, rev: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Mod as i32,
        key: key.as_bytes().to_vec(),
        target_union: Some(TargetUnion::ModRevision(rev)),
        ..Default::default()
    }
}

fn get_op(key: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        })),
    }
}

/// kube-apiserver's guarded write: `If(ModRevision(key) == rev).Then(Put).Else(Get)`.
fn guarded_put(key: &str, rev: i64, value: Vec<u8>, lease: i64) -> TxnRequest {
    TxnRequest {
        compare: vec![mod_is(key, rev)],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: key.as_bytes().to_vec(),
                value,
                lease,
                ..Default::default()
            })),
        }],
        failure: vec![get_op(key)],
    }
}

fn header_rev(h: &Option<ResponseHeader>) -> i64 {
    h.as_ref().map_or(0, |h| h.revision)
}

/// What a failed guard's Else read back.
fn else_get(r: &TxnResponse) -> Result<Option<KeyValue>, String> {
    match r.responses.first().and_then(|op| op.response.as_ref()) {
        Some(response_op::Response::ResponseRange(range)) => Ok(range.kvs.first().cloned()),
        other => Err(format!("a failed guard's Else answered {other:?}")),
    }
}

/// One apiserver's etcd client.
#[derive(Clone)]
pub struct Store {
    pub kv: KvClient<Channel>,
}

pub enum Outcome {
    Written,
    /// AlreadyExists for a create, NotFound for an update or delete.
    Refused,
}

impl Store {
    pub fn new(ch: Channel) -> Store {
        Store {
            kv: KvClient::new(ch).max_decoding_message_size(usize::MAX),
        }
    }

    pub async fn get(&mut self, key: &str) -> Result<Option<KeyValue>, tonic::Status> {
        let r = self
            .kv
            .range(RangeRequest {
                key: key.as_bytes().to_vec(),
                ..Default::default()
            })
            .await?
            .into_inner();
        Ok(r.kvs.into_iter().next())
    }

    /// Create: `If(ModRevision(key) == 0).Then(Put).Else(Get)`.
    pub async fn create(
        &mut self,
        log: &Log,
        key: &str,
        value: Vec<u8>,
        lease: i64,
    ) -> Result<Outcome, tonic::Status> {
        let uid = uid_of(&value);
        if let Some(u) = &uid {
            log.attempted.lock().expect("attempted").insert(u.clone());
        }
        let r = self
            .kv
            .txn(guarded_put(key, 0, value, lease))
            .await?
            .into_inner();
        if r.succeeded {
            let rev = header_rev(&r.header);
            log.ack(rev, key, uid.as_deref());
            Log::add(&log.creates);
            return Ok(Outcome::Written);
        }
        match else_get(&r) {
            Ok(Some(_)) => {}
            Ok(None) => log.violation(format!(
                "create of {key}: ModRevision == 0 failed, yet the Else read found no object"
            )),
            Err(e) => log.violation(format!("create of {key}: {e}")),
        }
        Ok(Outcome::Refused)
    }

    /// GuaranteedUpdate: read, then `If(ModRevision(key) == read).Then(Put).Else(Get)`,
    /// again with the Else's object on a conflict. `value` makes the new object from a uid.
    pub async fn update(
        &mut self,
        log: &Log,
        key: &str,
        lease: i64,
        mut value: impl FnMut() -> Vec<u8>,
    ) -> Result<Outcome, tonic::Status> {
        let mut current = self.get(key).await?;
        for _ in 0..TRIES {
            let Some(obj) = current else {
                return Ok(Outcome::Refused);
            };
            let v = value();
            let uid = uid_of(&v);
            if let Some(u) = &uid {
                log.attempted.lock().expect("attempted").insert(u.clone());
            }
            let txn = guarded_put(key, obj.mod_revision, v, lease);
            let r = self.kv.txn(txn).await?.into_inner();
            if r.succeeded {
                let rev = header_rev(&r.header);
                if rev <= obj.mod_revision {
                    log.violation(format!(
                        "update of {key} read at {} acknowledged at {rev}",
                        obj.mod_revision
                    ));
                }
                log.ack(rev, key, uid.as_deref());
                Log::add(&log.updates);
                return Ok(Outcome::Written);
            }
            Log::add(&log.conflicts);
            current = match else_get(&r) {
                Ok(now) => {
                    if now.as_ref().map(|kv| kv.mod_revision) == Some(obj.mod_revision) {
                        log.violation(format!(
                            "update of {key}: ModRevision == {} failed, yet the Else read it at that revision",
                            obj.mod_revision
                        ));
                    }
                    now
                }
                Err(e) => {
                    log.violation(format!("update of {key}: {e}"));
                    return Ok(Outcome::Refused);
                }
            };
        }
        Ok(Outcome::Refused)
    }

    /// Delete: read, then `If(ModRevision(key) == read).Then(DeleteRange with prev_kv)
    /// .Else(Get)`, again on a conflict; the deleted object must be the one read.
    pub async fn delete(&mut self, log: &Log, key: &str) -> Result<Outcome, tonic::Status> {
        let mut current = self.get(key).await?;
        for _ in 0..TRIES {
            let Some(obj) = current else {
                return Ok(Outcome::Refused);
            };
            let txn = TxnRequest {
                compare: vec![mod_is(key, obj.mod_revision)],
                success: vec![RequestOp {
                    request: Some(request_op::Request::RequestDeleteRange(
                        DeleteRangeRequest {
                            key: key.as_bytes().to_vec(),
                            prev_kv: true,
                            ..Default::default()
                        },
                    )),
                }],
                failure: vec![get_op(key)],
            };
            let r = match self.kv.txn(txn).await {
                Ok(r) => r.into_inner(),
                Err(e) => {
                    let mut unknown = log.unknown_deletes.lock().expect("unknown deletes");
                    unknown.insert(key.to_string());
                    return Err(e);
                }
            };
            if r.succeeded {
                let rev = header_rev(&r.header);
                match r.responses.first().and_then(|op| op.response.as_ref()) {
                    Some(response_op::Response::ResponseDeleteRange(d))
                        if d.deleted == 1 && d.prev_kvs.first() == Some(&obj) => {}
                    other => log.violation(format!(
                        "delete of {key} guarded at {}: answered {other:?}, read {obj:?}",
                        obj.mod_revision
                    )),
                }
                log.ack(rev, key, None);
                Log::add(&log.deletes);
                return Ok(Outcome::Written);
            }
            Log::add(&log.conflicts);
            current = match else_get(&r) {
                Ok(now) => now,
                Err(e) => {
                    log.violation(format!("delete of {key}: {e}"));
                    return Ok(Outcome::Refused);
                }
            };
        }
        Ok(Outcome::Refused)
    }

    /// A paginated list: `limit` keys a page, the next page from the last key + "\0",
    /// pinned at the first page's revision, until `more` is false. With `at`, the first page
    /// is read at that revision too.
    pub async fn list(
        &mut self,
        prefix: &str,
        limit: i64,
        at: i64,
    ) -> Result<(i64, Vec<KeyValue>), tonic::Status> {
        let end = oxcd_api::prefix_end(prefix.as_bytes());
        let mut key = prefix.as_bytes().to_vec();
        let mut rev = at;
        let mut out = Vec::new();
        loop {
            let r = self
                .kv
                .range(RangeRequest {
                    key: key.clone(),
                    range_end: end.clone(),
                    limit,
                    revision: rev,
                    ..Default::default()
                })
                .await?
                .into_inner();
            if rev == 0 {
                rev = header_rev(&r.header);
            }
            let more = r.more;
            if let Some(last) = r.kvs.last() {
                key = last.key.clone();
                key.push(0);
            }
            let got = r.kvs.len();
            out.extend(r.kvs);
            if !more {
                return Ok((rev, out));
            }
            if got == 0 {
                return Err(tonic::Status::internal(format!(
                    "a page of {prefix} at {rev} said more but held nothing"
                )));
            }
        }
    }

    /// A count-only range over `prefix`, at `at` (0: now): (count, header revision).
    pub async fn count(&mut self, prefix: &str, at: i64) -> Result<(i64, i64), tonic::Status> {
        let r = self
            .kv
            .range(RangeRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: oxcd_api::prefix_end(prefix.as_bytes()),
                revision: at,
                count_only: true,
                ..Default::default()
            })
            .await?
            .into_inner();
        Ok((r.count, header_rev(&r.header)))
    }

    /// A paginated list, checked against one unpaginated range at the same revision (when
    /// that revision is not compacted away in between). Returns the list.
    pub async fn checked_list(
        &mut self,
        log: &Log,
        prefix: &str,
    ) -> Result<(i64, Vec<KeyValue>), tonic::Status> {
        let (rev, paged) = self.list(prefix, PAGE, 0).await?;
        Log::add(&log.lists);
        match self.list(prefix, 0, rev).await {
            Ok((_, whole)) => {
                Log::add(&log.pagination_checks);
                if whole != paged {
                    log.violation(format!(
                        "list of {prefix} at {rev}: {} keys in pages of {PAGE}, {} in one range",
                        paged.len(),
                        whole.len()
                    ));
                }
            }
            Err(e) if is_compacted(&e) => {}
            Err(e) => return Err(e),
        }
        Ok((rev, paged))
    }

    /// kube-apiserver's `compact`: `If(Version(compact_rev_key) == t).Then(Put
    /// compact_rev_key = rev).Else(Get compact_rev_key)`; the winner compacts `rev` (the
    /// revision the previous round saw). Returns the next round's (t, rev).
    pub async fn compact(&mut self, log: &Log, t: i64, rev: i64) -> (i64, i64) {
        let txn = TxnRequest {
            compare: vec![Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Version as i32,
                key: COMPACT_REV_KEY.as_bytes().to_vec(),
                target_union: Some(TargetUnion::Version(t)),
                ..Default::default()
            }],
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: COMPACT_REV_KEY.as_bytes().to_vec(),
                    value: rev.to_string().into_bytes(),
                    ..Default::default()
                })),
            }],
            failure: vec![get_op(COMPACT_REV_KEY)],
        };
        let r = match self.kv.txn(txn).await {
            Ok(r) => r.into_inner(),
            Err(_) => {
                Log::add(&log.failed_calls);
                return (t, rev);
            }
        };
        let now = header_rev(&r.header);
        if !r.succeeded {
            return match else_get(&r) {
                Ok(Some(kv)) => (kv.version, now),
                other => {
                    log.violation(format!(
                        "compaction guard Version == {t} failed, Else read {other:?}"
                    ));
                    (t, now)
                }
            };
        }
        if rev != 0 {
            log.compact_requested.fetch_max(rev, Ordering::SeqCst);
            match self
                .kv
                .compact(CompactionRequest {
                    revision: rev,
                    physical: false,
                })
                .await
            {
                Ok(_) => Log::add(&log.compactions),
                Err(e) => {
                    Log::add(&log.compactions_refused);
                    let mut why = log.refusals.lock().expect("refusals");
                    if why.len() < 3 {
                        why.push(format!("compact {rev}: {}", e.message()));
                    }
                }
            }
        }
        (t + 1, now)
    }
}

/// The error a read or watch at a compacted revision gets.
pub fn is_compacted(e: &tonic::Status) -> bool {
    e.message().contains("compacted")
}
