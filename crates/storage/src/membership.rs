//! The cluster record (identity and members) as the backend keeps it, read and written here
//! only.

use oxcd_api::oxcdpb::ClusterRecord;
use oxcd_mvcc::{Store, StoreError, WriteBatch};
use prost::Message;

const KEY: &str = "cluster";

fn decode(bytes: &[u8]) -> Result<ClusterRecord, StoreError> {
    ClusterRecord::decode(bytes).map_err(|e| oxcd_mvcc::corrupt_record("cluster", e))
}

/// The committed record; `None` before bootstrap.
pub fn load(store: &Store) -> Result<Option<ClusterRecord>, StoreError> {
    store.cluster_record(KEY)?.map(|b| decode(&b)).transpose()
}

/// The record as `wb` sees it, with its own changes.
pub fn load_in(wb: &WriteBatch<'_>) -> Result<ClusterRecord, StoreError> {
    decode(&wb.cluster_record(KEY)?.unwrap_or_default())
}

pub fn save(wb: &mut WriteBatch<'_>, record: &ClusterRecord) -> Result<(), StoreError> {
    wb.set_cluster_record(KEY, &record.encode_to_vec())
}
