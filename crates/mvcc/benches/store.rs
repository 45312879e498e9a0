//! MVCC hot paths, repeatable without a server: a batch of puts committed as the apply
//! thread commits them, and reads of one key and of a 100-key prefix.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use oxcd_api::etcdserverpb::{PutRequest, RangeRequest};
use oxcd_mvcc::Store;

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

criterion_group!(benches, bench);
criterion_main!(benches);
