//! `-w json`: one line, etcdutl's field names.

use crate::hashkv::HashKv;
use crate::snapshot::SnapshotStatus;
use serde_json::json;

pub fn snapshot_status(st: &SnapshotStatus) -> String {
    let v = json!({
        "hash": st.hash,
        "revision": st.revision.get(),
        "totalKey": st.total_key,
        "totalSize": st.total_size,
    });
    format!("{v}\n")
}

pub fn hashkv(h: &HashKv) -> String {
    let v = json!({
        "hash": h.hash,
        "hashRevision": h.hash_revision.get(),
        "compactRevision": h.compact_revision.get(),
    });
    format!("{v}\n")
}
