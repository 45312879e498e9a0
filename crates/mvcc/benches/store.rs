//! MVCC hot paths, repeatable without a server: a batch of puts committed as the apply
//! thread commits them, the same updates as kube-apiserver writes them (a txn comparing the
//! mod revision), reads of one key and of a 100-key prefix, a paginated list and a count, and
//! a commit's events fanned out to 100 watchers of the key.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use oxcd_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use oxcd_api::etcdserverpb::request_op::Request;
use oxcd_api::etcdserverpb::{Compare, PutRequest, RangeRequest, RequestOp, TxnRequest};
use oxcd_mvcc::{KeyRange, Store, WatchBatch, WatchSink, WatchSpec};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Objects of 4 KiB, as Kubernetes' mid-sized ones.
const OBJECT: usize = 4096;

/// kube-apiserver's update: put if the object is still at `rev`, else read it.
fn k8s_update(key: &[u8], rev: i64) -> TxnRequest {
    TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Mod as i32,
            key: key.to_vec(),
            target_union: Some(TargetUnion::ModRevision(rev)),
            ..Default::default()
        }],
        success: vec![RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key: key.to_vec(),
                value: vec![b'o'; OBJECT],
                ..Default::default()
            })),
        }],
        failure: vec![RequestOp {
            request: Some(Request::RequestRange(RangeRequest {
                key: key.to_vec(),
                ..Default::default()
            })),
        }],
    }
}

/// 64 objects updated a batch at a time, as plain puts or as kube-apiserver's txns.
fn updates(c: &mut Criterion) {
    let (_dir, store) = store_with(0);
    let keys: Vec<Vec<u8>> = (0..64)
        .map(|i| format!("/registry/pods/default/pod-{i:02}").into_bytes())
        .collect();
    let mut revs = vec![0i64; keys.len()];
    let mut wb = store.begin_write().expect("write");
    for (k, rev) in keys.iter().zip(&mut revs) {
        *rev = wb
            .txn(&k8s_update(k, 0))
            .expect("create")
            .header
            .expect("header")
            .revision;
    }
    wb.commit(false).expect("commit");
    c.bench_function("update 64 objects of 4 KiB by put + commit", |b| {
        b.iter(|| {
            let mut wb = store.begin_write().expect("write");
            for (k, rev) in keys.iter().zip(&mut revs) {
                let put = PutRequest {
                    key: k.clone(),
                    value: vec![b'o'; OBJECT],
                    ..Default::default()
                };
                *rev = wb.put(&put).expect("put").header.expect("header").revision;
            }
            wb.commit(false).expect("commit");
        })
    });
    c.bench_function("update 64 objects of 4 KiB by k8s txn + commit", |b| {
        b.iter(|| {
            let mut wb = store.begin_write().expect("write");
            for (k, rev) in keys.iter().zip(&mut revs) {
                let r = wb.txn(&k8s_update(k, *rev)).expect("txn");
                assert!(r.succeeded, "the object was at {rev}");
                *rev = r.header.expect("header").revision;
            }
            wb.commit(false).expect("commit");
        })
    });
}

fn put(key: String) -> PutRequest {
    PutRequest {
        key: key.into_bytes(),
        value: vec![b'v'; 256],
        ..Default::default()
    }
}

fn store_with(keys: usize) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("db")).expect("open");
    let mut wb = store.begin_write().expect("write");
    for i in 0..keys {
        wb.put(&put(format!("key/{i:06}"))).expect("put");
    }
    wb.commit(false).expect("commit");
    (dir, store)
}

fn bench(c: &mut Criterion) {
    let (_dir, store) = store_with(10_000);
    let mut n = 0u64;
    c.bench_function("put batch of 64 + commit", |b| {
        b.iter_batched(
            || {
                n += 1;
                (0..64)
                    .map(|i| put(format!("new/{n:08}/{i:02}")))
                    .collect::<Vec<_>>()
            },
            |puts| {
                let mut wb = store.begin_write().expect("write");
                for p in &puts {
                    wb.put(p).expect("put");
                }
                wb.commit(false).expect("commit");
            },
            BatchSize::SmallInput,
        )
    });
    let one = RangeRequest {
        key: b"key/005000".to_vec(),
        ..Default::default()
    };
    c.bench_function("range one key", |b| {
        b.iter(|| store.range(&one).expect("range"))
    });
    let hundred = RangeRequest {
        key: b"key/0050".to_vec(),
        range_end: b"key/0051".to_vec(),
        ..Default::default()
    };
    c.bench_function("range 100-key prefix", |b| {
        b.iter(|| store.range(&hundred).expect("range"))
    });
}

/// kube-apiserver's list of a 100k-key prefix: pages of 500 keys, each from the last key of
/// the one before, at the first page's revision, each counting the rest of the prefix; and
/// a count-only range of the prefix.
fn list_pages(c: &mut Criterion) {
    let (_dir, store) = store_with(100_000);
    let first = RangeRequest {
        key: b"key/".to_vec(),
        range_end: b"key0".to_vec(),
        limit: 500,
        ..Default::default()
    };
    c.bench_function("list a 100k-key prefix in pages of 500", |b| {
        b.iter(|| {
            let mut page = store.range(&first).expect("first page");
            let rev = page.header.as_ref().map_or(0, |h| h.revision);
            while page.more {
                let mut from = page.kvs.last().map(|kv| kv.key.clone()).unwrap_or_default();
                from.push(0);
                page = store
                    .range(&RangeRequest {
                        key: from,
                        revision: rev,
                        ..first.clone()
                    })
                    .expect("page");
            }
        })
    });
    let count = RangeRequest {
        count_only: true,
        limit: 0,
        ..first.clone()
    };
    c.bench_function("count a 100k-key prefix", |b| {
        b.iter(|| store.range(&count).expect("range"))
    });
}

/// Takes every batch, as a stream with room does, and counts its events' bytes as the
/// server's stream queue does.
#[derive(Default)]
struct CountingSink {
    events: AtomicUsize,
    bytes: AtomicUsize,
}

impl WatchSink for CountingSink {
    fn try_send(&self, batch: WatchBatch) -> bool {
        let bytes = batch.events.wire_len();
        self.events.fetch_add(batch.events.len(), Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        true
    }
}

/// A commit of 64 puts of one key (256 B) with 100 synced watchers of that key: the hub's
/// fan-out, as the apply thread pays it.
fn watch_fan_out(c: &mut Criterion) {
    let (_dir, store) = store_with(0);
    let sinks: Vec<Arc<CountingSink>> = (0..100).map(|_| Arc::default()).collect();
    for (i, sink) in sinks.iter().enumerate() {
        let spec = WatchSpec {
            range: KeyRange::new(b"watched", b""),
            start_revision: store.current_revision().0 + 1,
            no_put: false,
            no_delete: false,
        };
        store.watch((i as u64, 0), spec, sink.clone());
    }
    let watched = PutRequest {
        key: b"watched".to_vec(),
        value: vec![b'v'; 256],
        ..Default::default()
    };
    c.bench_function("commit 64 puts of a key 100 watchers watch", |b| {
        b.iter(|| {
            let mut wb = store.begin_write().expect("write");
            for _ in 0..64 {
                wb.put(&watched).expect("put");
            }
            wb.commit(false).expect("commit");
        })
    });
    let delivered: usize = sinks.iter().map(|s| s.events.load(Ordering::Relaxed)).sum();
    assert!(
        delivered > 0 && delivered.is_multiple_of(6400),
        "{delivered} events"
    );
}

criterion_group!(benches, bench, updates, list_pages, watch_fan_out);
criterion_main!(benches);
