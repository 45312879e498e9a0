use crate::kvstore::Store;
use crate::test_support::put;
use oxcd_api::etcdserverpb::RangeRequest;
use std::path::Path;

/// The values of key `k` in a copy of the backend file taken now, as a crash would leave it.
fn in_a_copy_of(path: &Path, k: &str) -> Vec<Vec<u8>> {
    let copy = path.with_extension(format!("copy-{k}"));
    std::fs::copy(path, &copy).expect("copy");
    let store = Store::open(&copy).expect("open the copy");
    let got = store
        .range(&RangeRequest {
            key: k.into(),
            ..Default::default()
        })
        .expect("range");
    got.kvs.into_iter().map(|kv| kv.value).collect()
}

#[test]
fn settling_writes_non_durable_commits_into_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    let store = Store::open(&path).expect("open");
    put(&store, "a", "1");
    assert!(
        in_a_copy_of(&path, "a").is_empty(),
        "a non-durable put is buffered"
    );
    store.settle().expect("settle");
    assert_eq!(in_a_copy_of(&path, "a"), vec![b"1".to_vec()]);
}
