//! `-w fields`: `"Name" : value` lines, for coreutils.

use crate::hashkv::HashKv;
use crate::snapshot::SnapshotStatus;

fn lines(fields: &[(&str, String)]) -> String {
    fields
        .iter()
        .map(|(name, value)| format!("\"{name}\" : {value}\n"))
        .collect()
}

pub fn snapshot_status(st: &SnapshotStatus) -> String {
    lines(&[
        ("Hash", st.hash.to_string()),
        ("Revision", st.revision.get().to_string()),
        ("Keys", st.total_key.to_string()),
        ("Size", st.total_size.to_string()),
    ])
}

pub fn hashkv(h: &HashKv) -> String {
    lines(&[
        ("Hash", h.hash.to_string()),
        ("Hash revision", h.hash_revision.get().to_string()),
        ("Compact revision", h.compact_revision.get().to_string()),
    ])
}
