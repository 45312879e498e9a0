//! Requests the tests build again and again.

use oxcd_api::etcdserverpb::{PutRequest, RangeRequest};

/// A put of `value` at `key`, nothing else set (`PutRequest { lease, ..put(k, v) }` for more).
pub fn put(key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> PutRequest {
    PutRequest {
        key: key.as_ref().to_vec(),
        value: value.as_ref().to_vec(),
        ..Default::default()
    }
}

/// A linearizable range over every key under `prefix`.
pub fn prefix(prefix: &str) -> RangeRequest {
    RangeRequest {
        key: prefix.as_bytes().to_vec(),
        range_end: oxcd_api::prefix_end(prefix.as_bytes()),
        ..Default::default()
    }
}
