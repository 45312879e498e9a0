//! One write transaction inside a batch (put, delete, txn with compares and nested ops) and
//! the read path shared by plain reads and reads inside a transaction.

use crate::backend;
use crate::error::{backend_err, poisoned, StoreError};
use crate::index::TreeIndex;
use crate::key_index::KeyAt;
use crate::key_range::KeyRange;
use crate::lease::Leases;
use crate::range::{header, range, HeldIndex, IndexView, ReadLimits};
use crate::revision::KeyRevision;
use crate::revision_totals::RevisionTotals;
use oxcd_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use oxcd_api::etcdserverpb::{
    request_op, response_op, Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseHeader, ResponseOp, TxnRequest,
    TxnResponse,
};
use oxcd_api::mvccpb::{event::EventType, Event, KeyValue};
use oxcd_api::EtcdError;
use redb::{ReadableTable, Table};
use std::cmp::Ordering;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Keys a delete tombstones in the index per hold of its write lock: reads go on between
/// holds, however many keys one DeleteRange removes (revisions past the store's current one
/// are invisible to them, so a delete half done in the index changes no read).
const DELETES_PER_INDEX_HOLD: usize = 1000;

/// Writes of one transaction: all its changes share revision `begin + 1`.
pub(crate) struct TxnWriter<'t, 'i> {
    table: &'t mut Table<'i, u128, &'static [u8]>,
    index: &'t RwLock<TreeIndex>,
    leases: &'t RwLock<Leases>,
    begin: i64,
    compacted: i64,
    changes: i64,
    collect_events: bool,
    pub(crate) events: Vec<Event>,
    /// The records this writer added to the table.
    pub(crate) added: RevisionTotals,
}

impl<'t, 'i> TxnWriter<'t, 'i> {
    pub(crate) fn new(
        table: &'t mut Table<'i, u128, &'static [u8]>,
        index: &'t RwLock<TreeIndex>,
        leases: &'t RwLock<Leases>,
        begin: i64,
        compacted: i64,
        collect_events: bool,
    ) -> Self {
        TxnWriter {
            table,
            index,
            leases,
            begin,
            compacted,
            changes: 0,
            collect_events,
            events: Vec::new(),
            added: RevisionTotals::default(),
        }
    }

    /// The revision reads inside this transaction see, and the store's revision after it.
    pub(crate) fn rev(&self) -> i64 {
        if self.changes > 0 {
            self.begin + 1
        } else {
            self.begin
        }
    }

    fn index(&self) -> Result<RwLockReadGuard<'_, TreeIndex>, StoreError> {
        self.index.read().map_err(|_| poisoned())
    }

    fn index_mut(&self) -> Result<RwLockWriteGuard<'_, TreeIndex>, StoreError> {
        self.index.write().map_err(|_| poisoned())
    }

    fn leases(&self) -> Result<RwLockReadGuard<'_, Leases>, StoreError> {
        self.leases.read().map_err(|_| poisoned())
    }

    fn leases_mut(&self) -> Result<RwLockWriteGuard<'_, Leases>, StoreError> {
        self.leases.write().map_err(|_| poisoned())
    }

    fn range(&self, req: &RangeRequest) -> Result<RangeResponse, StoreError> {
        let held = self.index()?;
        let index = HeldIndex {
            index: &held,
            compacted: self.compacted,
        };
        range(
            &*self.table,
            &index,
            req,
            self.rev(),
            &ReadLimits::UNBOUNDED,
        )
    }

    fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, StoreError> {
        let at = self.index()?.get(key, self.rev());
        match at {
            Some(at) => Ok(Some(backend::load(&*self.table, at.modified)?)),
            None => Ok(None),
        }
    }

    fn write_put(&mut self, key: &[u8], value: Vec<u8>, lease: i64) -> Result<i64, StoreError> {
        let rev = self.begin + 1;
        let (create_revision, version) = match self.index()?.get(key, rev) {
            Some(at) => (at.created.main, at.version + 1),
            None => (rev, 1),
        };
        let idx_rev = KeyRevision::new(rev, self.changes);
        let kv = KeyValue {
            key: key.to_vec(),
            create_revision,
            mod_revision: rev,
            version,
            value,
            lease,
        };
        let record = backend::encode_record(&kv, false);
        self.table
            .insert(idx_rev.to_backend_key(), record.as_slice())
            .map_err(backend_err)?;
        self.added.add(&record, false);
        self.index_mut()?.put(key, idx_rev);
        self.leases_mut()?.attach(key, lease);
        self.changes += 1;
        if self.collect_events {
            self.events.push(Event {
                r#type: EventType::Put as i32,
                kv: Some(kv),
                prev_kv: None,
            });
        }
        Ok(rev)
    }

    pub(crate) fn delete_keys(&mut self, keys: &KeyRange) -> Result<i64, StoreError> {
        self.write_delete(keys)
    }

    fn write_delete(&mut self, keys: &KeyRange) -> Result<i64, StoreError> {
        let rev = self.begin + 1;
        let doomed: Vec<Vec<u8>> = self
            .index()?
            .range(keys, self.rev())
            .map(|(k, _)| k.to_vec())
            .collect();
        for chunk in doomed.chunks(DELETES_PER_INDEX_HOLD) {
            let first = self.changes;
            for key in chunk {
                let idx_rev = KeyRevision::new(rev, self.changes);
                let kv = KeyValue {
                    key: key.clone(),
                    ..Default::default()
                };
                let record = backend::encode_record(&kv, true);
                self.table
                    .insert(idx_rev.to_backend_key(), record.as_slice())
                    .map_err(backend_err)?;
                self.added.add(&record, true);
                self.changes += 1;
                if self.collect_events {
                    self.events.push(Event {
                        r#type: EventType::Delete as i32,
                        kv: Some(KeyValue {
                            key: key.clone(),
                            mod_revision: rev,
                            ..Default::default()
                        }),
                        prev_kv: None,
                    });
                }
            }
            {
                let mut index = self.index_mut()?;
                for (key, sub) in chunk.iter().zip(first..) {
                    index.tombstone(key, KeyRevision::new(rev, sub));
                }
            }
            #[cfg(test)]
            crate::test_support::fire(&BETWEEN_DELETE_CHUNKS);
        }
        // Leases keep no history: their keys go all at once, so no lookup sees half a delete.
        let mut leases = self.leases_mut()?;
        for key in &doomed {
            leases.detach(key);
        }
        Ok(doomed.len() as i64)
    }

    /// Refusals a put can meet; checked before anything is written.
    fn check_put(&self, req: &PutRequest) -> Result<(), StoreError> {
        if req.lease != 0 && !self.leases()?.exists(req.lease) {
            return Err(EtcdError::LeaseNotFound.into());
        }
        if (req.ignore_value || req.ignore_lease) && self.get(&req.key)?.is_none() {
            return Err(EtcdError::KeyNotFound.into());
        }
        Ok(())
    }

    pub(crate) fn put_request(&mut self, req: &PutRequest) -> Result<PutResponse, StoreError> {
        self.check_put(req)?;
        self.put_unchecked(req)
    }

    fn put_unchecked(&mut self, req: &PutRequest) -> Result<PutResponse, StoreError> {
        let prev = if req.ignore_value || req.ignore_lease || req.prev_kv {
            self.get(&req.key)?
        } else {
            None
        };
        let value = match (&prev, req.ignore_value) {
            (Some(p), true) => p.value.clone(),
            _ => req.value.clone(),
        };
        let lease = match (&prev, req.ignore_lease) {
            (Some(p), true) => p.lease,
            _ => req.lease,
        };
        let rev = self.write_put(&req.key, value, lease)?;
        Ok(PutResponse {
            header: header(rev),
            prev_kv: if req.prev_kv { prev } else { None },
        })
    }

    pub(crate) fn delete_request(
        &mut self,
        req: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, StoreError> {
        let keys = KeyRange::new(&req.key, &req.range_end);
        let prev_kvs = if req.prev_kv {
            self.range(&RangeRequest {
                key: req.key.clone(),
                range_end: req.range_end.clone(),
                ..Default::default()
            })?
            .kvs
        } else {
            Vec::new()
        };
        let deleted = self.write_delete(&keys)?;
        Ok(DeleteRangeResponse {
            header: header(self.rev()),
            deleted,
            prev_kvs,
        })
    }

    pub(crate) fn txn_request(&mut self, req: &TxnRequest) -> Result<TxnResponse, StoreError> {
        // Choose every branch first (compares read the state before the txn), then check the
        // chosen ops, so that a refused txn changes nothing.
        let mut path = Vec::new();
        self.choose_path(req, &mut path)?;
        // As etcd: every put on the chosen path is checked, then every range.
        self.check_chosen(req, &mut path.iter(), Check::Puts)?;
        self.check_chosen(req, &mut path.iter(), Check::Ranges)?;
        let mut cursor = path.iter();
        let mut resp = self.execute(req, &mut cursor)?;
        resp.header = header(self.rev());
        Ok(resp)
    }

    fn choose_path(&self, req: &TxnRequest, path: &mut Vec<bool>) -> Result<(), StoreError> {
        let ok = compares_hold(req, &|r| self.range(r), &|key| {
            Ok(self.index()?.get(key, self.rev()))
        })?;
        path.push(ok);
        for op in branch(req, ok) {
            if let Some(request_op::Request::RequestTxn(t)) = &op.request {
                self.choose_path(t, path)?;
            }
        }
        Ok(())
    }

    fn check_chosen<'p>(
        &self,
        req: &TxnRequest,
        path: &mut impl Iterator<Item = &'p bool>,
        check: Check,
    ) -> Result<(), StoreError> {
        let ok = *path.next().unwrap_or(&true);
        for op in branch(req, ok) {
            match &op.request {
                Some(request_op::Request::RequestPut(p)) if check == Check::Puts => {
                    self.check_put(p)?
                }
                Some(request_op::Request::RequestRange(r)) if check == Check::Ranges => {
                    check_range_revision(r, self.begin, self.compacted)?
                }
                Some(request_op::Request::RequestTxn(t)) => self.check_chosen(t, path, check)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn execute<'p>(
        &mut self,
        req: &TxnRequest,
        path: &mut impl Iterator<Item = &'p bool>,
    ) -> Result<TxnResponse, StoreError> {
        let ok = *path.next().unwrap_or(&true);
        let mut responses = Vec::new();
        for op in branch(req, ok) {
            let response = match &op.request {
                Some(request_op::Request::RequestRange(r)) => {
                    Some(response_op::Response::ResponseRange(self.range(r)?))
                }
                Some(request_op::Request::RequestPut(p)) => {
                    Some(response_op::Response::ResponsePut(self.put_unchecked(p)?))
                }
                Some(request_op::Request::RequestDeleteRange(d)) => Some(
                    response_op::Response::ResponseDeleteRange(self.delete_request(d)?),
                ),
                Some(request_op::Request::RequestTxn(t)) => {
                    let mut inner = self.execute(t, path)?;
                    // etcd leaves a nested txn's header empty.
                    inner.header = Some(ResponseHeader::default());
                    Some(response_op::Response::ResponseTxn(inner))
                }
                None => None,
            };
            responses.push(ResponseOp { response });
        }
        Ok(TxnResponse {
            header: None,
            succeeded: ok,
            responses,
        })
    }
}

type Read<'a> = dyn Fn(&RangeRequest) -> Result<RangeResponse, StoreError> + 'a;
/// What the index knows of one key at the txn's revision.
type Meta<'a> = dyn Fn(&[u8]) -> Result<Option<KeyAt>, StoreError> + 'a;

/// Whether every compare of `req` holds, read through `read`, or through `meta` when the
/// index alone answers.
fn compares_hold(req: &TxnRequest, read: &Read<'_>, meta: &Meta<'_>) -> Result<bool, StoreError> {
    for c in &req.compare {
        if !compare(c, read, meta)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// etcd's refusal of a range inside a txn at a revision it cannot serve.
fn check_range_revision(r: &RangeRequest, current: i64, compacted: i64) -> Result<(), StoreError> {
    if r.revision > current {
        return Err(EtcdError::FutureRev.into());
    }
    if r.revision > 0 && r.revision < compacted {
        return Err(EtcdError::Compacted.into());
    }
    Ok(())
}

/// Whether `c` holds for every key it names, read through `read`. A compare of one key's
/// version or revisions (kube-apiserver's guard on every write) is answered by the index,
/// without loading the value.
fn compare(c: &Compare, read: &Read<'_>, meta: &Meta<'_>) -> Result<bool, StoreError> {
    let by_index = matches!(
        c.target(),
        CompareTarget::Version | CompareTarget::Create | CompareTarget::Mod
    );
    if by_index && c.range_end.is_empty() {
        let seen = meta(&c.key)?.map_or_else(KeyValue::default, |at| KeyValue {
            create_revision: at.created.main,
            mod_revision: at.modified.main,
            version: at.version,
            ..Default::default()
        });
        return Ok(compare_kv(c, &seen));
    }
    let kvs = read(&RangeRequest {
        key: c.key.clone(),
        range_end: c.range_end.clone(),
        ..Default::default()
    })?
    .kvs;
    if kvs.is_empty() {
        if c.target() == CompareTarget::Value {
            // A missing key has no value to compare with.
            return Ok(false);
        }
        return Ok(compare_kv(c, &KeyValue::default()));
    }
    Ok(kvs.iter().all(|kv| compare_kv(c, kv)))
}

/// etcd's read-only txn: every op of both branches is a range (a nested txn is not).
pub fn is_read_only(req: &TxnRequest) -> bool {
    req.success
        .iter()
        .chain(&req.failure)
        .all(|op| matches!(op.request, Some(request_op::Request::RequestRange(_))))
}

/// A read-only txn served from a read view at `current`, without a write transaction.
pub(crate) fn read_only_txn<T: ReadableTable<u128, &'static [u8]>>(
    table: &T,
    index: &impl IndexView,
    req: &TxnRequest,
    current: i64,
    limits: &ReadLimits<'_>,
) -> Result<TxnResponse, StoreError> {
    let read = |r: &RangeRequest| range(table, index, r, current, limits);
    let compacted = index.with(|_, compacted| compacted)?;
    let ok = compares_hold(req, &read, &|key| {
        index.with(|index, _| index.get(key, current))
    })?;
    let ranges = branch(req, ok).iter().filter_map(|op| match &op.request {
        Some(request_op::Request::RequestRange(r)) => Some(r),
        _ => None,
    });
    // Refusals first, so that a refused txn answers nothing but the error.
    for r in ranges.clone() {
        check_range_revision(r, current, compacted)?;
    }
    let mut responses = Vec::new();
    for r in ranges {
        responses.push(ResponseOp {
            response: Some(response_op::Response::ResponseRange(read(r)?)),
        });
    }
    Ok(TxnResponse {
        header: header(current),
        succeeded: ok,
        responses,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Check {
    Puts,
    Ranges,
}

fn branch(req: &TxnRequest, ok: bool) -> &[RequestOp] {
    if ok {
        &req.success
    } else {
        &req.failure
    }
}

fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    let ord = match c.target() {
        CompareTarget::Value => {
            let want: &[u8] = match &c.target_union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_slice().cmp(want)
        }
        CompareTarget::Version => kv.version.cmp(&int_target(c, |t| match t {
            TargetUnion::Version(v) => Some(*v),
            _ => None,
        })),
        CompareTarget::Create => kv.create_revision.cmp(&int_target(c, |t| match t {
            TargetUnion::CreateRevision(v) => Some(*v),
            _ => None,
        })),
        CompareTarget::Mod => kv.mod_revision.cmp(&int_target(c, |t| match t {
            TargetUnion::ModRevision(v) => Some(*v),
            _ => None,
        })),
        CompareTarget::Lease => kv.lease.cmp(&int_target(c, |t| match t {
            TargetUnion::Lease(v) => Some(*v),
            _ => None,
        })),
    };
    match c.result() {
        CompareResult::Equal => ord == Ordering::Equal,
        CompareResult::NotEqual => ord != Ordering::Equal,
        CompareResult::Greater => ord == Ordering::Greater,
        CompareResult::Less => ord == Ordering::Less,
    }
}

fn int_target(c: &Compare, pick: impl Fn(&TargetUnion) -> Option<i64>) -> i64 {
    c.target_union.as_ref().and_then(pick).unwrap_or(0)
}

#[cfg(test)]
thread_local! {
    /// Called after each chunk of keys a delete on this thread tombstones.
    pub(crate) static BETWEEN_DELETE_CHUNKS: crate::test_support::Hook = const { std::cell::RefCell::new(None) };
}

#[cfg(test)]
mod tests {
    use crate::kvstore::Store;
    use oxcd_api::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest};
    use std::sync::{mpsc, Arc, Mutex};
    use std::time::Duration;

    #[test]
    fn reads_go_on_between_the_chunks_of_a_huge_delete_and_see_none_of_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(&dir.path().join("db")).expect("open"));
        let mut wb = store.begin_write().expect("write");
        for i in 0..5000 {
            wb.put(&PutRequest {
                key: format!("k{i:05}").into_bytes(),
                value: b"v".to_vec(),
                ..Default::default()
            })
            .expect("put");
        }
        wb.commit(false).expect("commit");
        let all = RangeRequest {
            key: b"k".to_vec(),
            range_end: b"l".to_vec(),
            count_only: true,
            ..Default::default()
        };
        let (go, read_now) = mpsc::channel::<()>();
        let (read, was_read) = mpsc::channel();
        let reader = std::thread::spawn({
            let store = store.clone();
            let all = all.clone();
            move || {
                if read_now.recv().is_ok() {
                    let _ = read.send(store.range(&all).map(|r| r.count));
                }
            }
        });
        let seen_mid_delete = Arc::new(Mutex::new(None));
        let seen = seen_mid_delete.clone();
        let mut first = true;
        crate::test_support::set(&super::BETWEEN_DELETE_CHUNKS, move || {
            if std::mem::take(&mut first) {
                let _ = go.send(());
                let got = was_read.recv_timeout(Duration::from_secs(10)).ok();
                *seen.lock().expect("seen") = got;
            }
        });
        let mut wb = store.begin_write().expect("write");
        let deleted = wb
            .delete_range(&DeleteRangeRequest {
                key: b"k".to_vec(),
                range_end: b"l".to_vec(),
                prev_kv: false,
            })
            .expect("delete")
            .deleted;
        wb.commit(false).expect("commit");
        crate::test_support::set(&super::BETWEEN_DELETE_CHUNKS, || {});
        reader.join().expect("reader");
        assert_eq!(deleted, 5000);
        let seen = seen_mid_delete.lock().expect("seen").take();
        assert!(
            matches!(seen, Some(Ok(5000))),
            "a read during the delete was served, at the revision before it: {seen:?}"
        );
        assert_eq!(store.range(&all).expect("range").count, 0);
    }
}
