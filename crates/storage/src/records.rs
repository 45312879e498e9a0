//! The records the backend keeps beside the keyspace, each under its own name: the active
//! alarms and raft's conf state (the members are membership.rs's). They travel in snapshots
//! and backups with the keyspace.

use oxcd_api::etcdserverpb::{AlarmMember, AlarmResponse};
use oxcd_mvcc::{SnapshotPoint, Store, StoreError, WriteBatch};
use prost::Message;
use raft::eraftpb::ConfState;

pub const ALARMS: &str = "alarms";
pub const CONF_STATE: &str = "conf_state";
/// Users, roles and whether auth is on (the node's auth module reads and writes it).
pub const AUTH: &str = "auth";

use oxcd_mvcc::corrupt_record as corrupt;

fn decode_alarms(bytes: &[u8]) -> Result<Vec<AlarmMember>, StoreError> {
    AlarmResponse::decode(bytes)
        .map(|r| r.alarms)
        .map_err(|e| corrupt("alarm", e))
}

pub fn load_alarms(store: &Store) -> Result<Vec<AlarmMember>, StoreError> {
    match store.cluster_record(ALARMS)? {
        Some(b) => decode_alarms(&b),
        None => Ok(Vec::new()),
    }
}

pub fn save_alarms(wb: &mut WriteBatch<'_>, alarms: &[AlarmMember]) -> Result<(), StoreError> {
    let record = AlarmResponse {
        header: None,
        alarms: alarms.to_vec(),
    };
    wb.set_cluster_record(ALARMS, &record.encode_to_vec())
}

fn decode_conf_state(bytes: &[u8]) -> Result<ConfState, StoreError> {
    protobuf::Message::parse_from_bytes(bytes).map_err(|e| corrupt("conf state", e))
}

pub fn save_conf_state(wb: &mut WriteBatch<'_>, cs: &ConfState) -> Result<(), StoreError> {
    let bytes = protobuf::Message::write_to_bytes(cs).map_err(|e| corrupt("conf state", e))?;
    wb.set_cluster_record(CONF_STATE, &bytes)
}

/// The conf state the backend holds, if any.
pub fn load_conf_state(store: &Store) -> Result<Option<ConfState>, StoreError> {
    store
        .cluster_record(CONF_STATE)?
        .map(|b| decode_conf_state(&b))
        .transpose()
}

/// The conf state a snapshot carries (empty for a backend that never had one).
pub fn snapshot_conf_state(point: &SnapshotPoint) -> Result<ConfState, StoreError> {
    point
        .cluster(CONF_STATE)
        .map(decode_conf_state)
        .transpose()
        .map(Option::unwrap_or_default)
}
