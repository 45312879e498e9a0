//! Property test: the store against a model that keeps a full copy of the keyspace at every
//! revision. Random puts, deletes, txns and compactions; reads at any revision; reopening
//! the store (index rebuilt from disk) along the way.

use crate::Store;
use oxcd_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use oxcd_api::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use oxcd_api::mvccpb::KeyValue;
use oxcd_api::EtcdError;
use proptest::prelude::*;
use std::collections::BTreeMap;

type Snapshot = BTreeMap<Vec<u8>, KeyValue>;

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8),
    Delete(u8, Option<u8>),
    /// If key's version equals v, put (key2, value), else delete key2.
    Txn(u8, i64, u8, u8),
    Compact(u8),
    Reopen,
    Read(u8, Option<u8>, u8),
}

fn k(i: u8) -> Vec<u8> {
    vec![b'a' + i % 6]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..6, 0u8..4).prop_map(|(a, b)| Op::Put(a, b)),
        2 => (0u8..6, proptest::option::of(0u8..7)).prop_map(|(a, b)| Op::Delete(a, b)),
        2 => (0u8..6, 0i64..3, 0u8..6, 0u8..4).prop_map(|(a, v, b, c)| Op::Txn(a, v, b, c)),
        1 => (0u8..255).prop_map(Op::Compact),
        1 => Just(Op::Reopen),
        4 => (0u8..6, proptest::option::of(0u8..7), 0u8..255).prop_map(|(a, b, r)| Op::Read(a, b, r)),
    ]
}

struct Model {
    history: Vec<Snapshot>, // history[rev] = keyspace after revision rev
    compacted: i64,
}

impl Model {
    fn rev(&self) -> i64 {
        self.history.len() as i64 - 1
    }

    fn apply(&mut self, puts: &[(Vec<u8>, Vec<u8>)], deletes: &[(Vec<u8>, Option<Vec<u8>>)]) {
        let rev = self.rev() + 1;
        let mut next = self.history.last().cloned().unwrap_or_default();
        let mut changed = false;
        for (start, end) in deletes {
            let doomed: Vec<Vec<u8>> = next
                .keys()
                .filter(|key| match end {
                    None => *key == start,
                    Some(e) => *key >= start && *key < e,
                })
                .cloned()
                .collect();
            for key in doomed {
                next.remove(&key);
                changed = true;
            }
        }
        for (key, value) in puts {
            let (create, version) = next
                .get(key)
                .map_or((rev, 1), |kv| (kv.create_revision, kv.version + 1));
            next.insert(
                key.clone(),
                KeyValue {
                    key: key.clone(),
                    create_revision: create,
                    mod_revision: rev,
                    version,
                    value: value.clone(),
                    lease: 0,
                },
            );
            changed = true;
        }
        if changed {
            self.history.push(next);
        }
    }
}

fn range_req(a: u8, b: Option<u8>, rev: i64) -> RangeRequest {
    RangeRequest {
        key: k(a),
        range_end: b.map(k).unwrap_or_default(),
        revision: rev,
        ..Default::default()
    }
}

fn check_read(store: &Store, model: &Model, a: u8, b: Option<u8>, rev: i64) {
    let got = store.range(&range_req(a, b, rev));
    let at = if rev == 0 { model.rev() } else { rev };
    if rev > model.rev() {
        assert!(
            matches!(got, Err(crate::StoreError::Request(EtcdError::FutureRev))),
            "{got:?}"
        );
        return;
    }
    if at < model.compacted {
        assert!(
            matches!(got, Err(crate::StoreError::Request(EtcdError::Compacted))),
            "{got:?}"
        );
        return;
    }
    let want: Vec<KeyValue> = model.history[at as usize]
        .values()
        .filter(|kv| match b {
            None => kv.key == k(a),
            Some(e) => kv.key >= k(a) && kv.key < k(e),
        })
        .cloned()
        .collect();
    let got = got.expect("read");
    assert_eq!(got.kvs, want, "range {a} {b:?} at {rev}");
    assert_eq!(got.count, want.len() as i64);
    assert_eq!(got.header.map(|h| h.revision), Some(model.rev()));
    // A page counts the whole range past its keys.
    let page = store
        .range(&RangeRequest {
            limit: 1,
            ..range_req(a, b, rev)
        })
        .expect("a page");
    assert_eq!(
        page.kvs,
        want[..want.len().min(1)],
        "page {a} {b:?} at {rev}"
    );
    assert_eq!((page.count, page.more), (want.len() as i64, want.len() > 1));
    // The rest a page at a time, as kube-apiserver lists: each page counts what is left.
    let (Some(end), Some(first)) = (b, page.kvs.first()) else {
        return;
    };
    let at = page.header.map_or(0, |h| h.revision);
    let mut next = first.key.clone();
    for left in (1..want.len()).rev() {
        next.push(0);
        let page = store
            .range(&RangeRequest {
                key: next.clone(),
                range_end: k(end),
                limit: 1,
                revision: if rev == 0 { at } else { rev },
                ..Default::default()
            })
            .expect("a later page");
        assert_eq!(page.count, left as i64, "page from {next:?} at {at}");
        assert_eq!(page.kvs[0], want[want.len() - left]);
        next = page.kvs[0].key.clone();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op(), 1..120)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        let mut store = Store::open(&path).expect("open");
        let mut model = Model { history: vec![Snapshot::new(), Snapshot::new()], compacted: 0 };
        for op in ops {
            match op {
                Op::Put(a, v) => {
                    let mut wb = store.begin_write().expect("write");
                    wb.put(&PutRequest { key: k(a), value: vec![v], ..Default::default() }).expect("put");
                    wb.commit(false).expect("commit");
                    model.apply(&[(k(a), vec![v])], &[]);
                }
                Op::Delete(a, b) => {
                    let mut wb = store.begin_write().expect("write");
                    let req = DeleteRangeRequest { key: k(a), range_end: b.map(k).unwrap_or_default(), prev_kv: false };
                    wb.delete_range(&req).expect("delete");
                    wb.commit(false).expect("commit");
                    model.apply(&[], &[(k(a), b.map(k))]);
                }
                Op::Txn(a, ver, b, v) => {
                    let cmp = Compare {
                        result: CompareResult::Equal as i32,
                        target: CompareTarget::Version as i32,
                        key: k(a),
                        target_union: Some(TargetUnion::Version(ver)),
                        range_end: vec![],
                    };
                    let put = RequestOp::from(PutRequest { key: k(b), value: vec![v], ..Default::default() });
                    let del = RequestOp::from(DeleteRangeRequest { key: k(b), ..Default::default() });
                    let mut wb = store.begin_write().expect("write");
                    let resp = wb.txn(&TxnRequest { compare: vec![cmp], success: vec![put], failure: vec![del] }).expect("txn");
                    wb.commit(false).expect("commit");
                    let version = model.history.last().and_then(|s| s.get(&k(a))).map_or(0, |kv| kv.version);
                    prop_assert_eq!(resp.succeeded, version == ver);
                    if version == ver {
                        model.apply(&[(k(b), vec![v])], &[]);
                    } else {
                        model.apply(&[], &[(k(b), None)]);
                    }
                }
                Op::Compact(r) => {
                    let at = (r as i64) % (model.rev() + 2);
                    let mut wb = store.begin_write().expect("write");
                    let res = wb.compact(&CompactionRequest { revision: at, physical: true });
                    if at <= model.compacted {
                        prop_assert!(matches!(res, Err(crate::StoreError::Request(EtcdError::Compacted))));
                    } else if at > model.rev() {
                        prop_assert!(matches!(res, Err(crate::StoreError::Request(EtcdError::FutureRev))));
                    } else {
                        res.expect("compact");
                        model.compacted = at;
                    }
                    wb.commit(false).expect("commit");
                }
                Op::Reopen => {
                    drop(store);
                    store = Store::open(&path).expect("reopen");
                    prop_assert_eq!(store.current_revision().0, model.rev());
                }
                Op::Read(a, b, r) => {
                    let rev = (r as i64) % (model.rev() + 2);
                    check_read(&store, &model, a, b, rev);
                }
            }
        }
        for rev in 0..=model.rev() {
            for a in 0..6 {
                check_read(&store, &model, a, Some(6), rev);
            }
        }
    }
}
