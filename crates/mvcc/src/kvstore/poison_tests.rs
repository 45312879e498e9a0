use crate::error::{BackendError, StoreError};
use crate::kvstore::Store;
use oxcd_api::etcdserverpb::PutRequest;
use std::sync::Arc;

#[test]
fn a_poisoned_index_is_a_backend_failure_never_a_refusal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(&dir.path().join("db")).expect("open"));
    let holder = store.clone();
    let panicked = std::thread::spawn(move || {
        let _held = holder.index.write();
        panic!("a thread dies holding the index");
    })
    .join();
    assert!(panicked.is_err());
    let mut wb = store.begin_write().expect("write");
    let put = wb.put(&PutRequest {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    });
    assert!(
        matches!(put, Err(StoreError::Backend(BackendError::Poisoned(_)))),
        "{put:?}"
    );
}
