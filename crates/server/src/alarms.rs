//! Alarms (NOSPACE, CORRUPT) as etcd keeps them: raised and disarmed through raft, stored in
//! the backend beside the members (so they survive restarts and travel in snapshots), and
//! consulted by the apply thread, which refuses writes while one is active.

use oxcd_api::etcdserverpb::{
    alarm_request::AlarmAction, AlarmMember, AlarmRequest, AlarmType, RequestOp, TxnRequest,
};
use oxcd_mvcc::{Store, StoreError, WriteBatch};
use oxcd_storage::records;
use std::sync::RwLock;

#[derive(Default)]
pub struct Alarms {
    active: RwLock<Vec<AlarmMember>>,
}

impl Alarms {
    pub fn load(store: &Store) -> Result<Alarms, StoreError> {
        let alarms = Alarms::default();
        alarms.reload(store)?;
        Ok(alarms)
    }

    /// Takes on what the backend holds (at start, and after a snapshot replaced it).
    pub fn reload(&self, store: &Store) -> Result<(), StoreError> {
        let list = records::load_alarms(store)?;
        *self.active.write().unwrap_or_else(|p| p.into_inner()) = list;
        Ok(())
    }

    /// The active alarms of one type, or of every type for `AlarmType::None`.
    pub fn list(&self, of: AlarmType) -> Vec<AlarmMember> {
        let active = self.active.read().unwrap_or_else(|p| p.into_inner());
        active
            .iter()
            .filter(|a| of == AlarmType::None || a.alarm == of as i32)
            .cloned()
            .collect()
    }

    pub fn is_active(&self, of: AlarmType) -> bool {
        !self.list(of).is_empty()
    }

    /// Applies a committed alarm request; returns the alarms it changed (etcd's response).
    pub fn apply(
        &self,
        wb: &mut WriteBatch<'_>,
        req: &AlarmRequest,
    ) -> Result<Vec<AlarmMember>, StoreError> {
        let mut active = self.active.write().unwrap_or_else(|p| p.into_inner());
        let wanted = AlarmMember {
            member_id: req.member_id,
            alarm: req.alarm,
        };
        let kind = AlarmType::try_from(req.alarm).unwrap_or(AlarmType::None);
        let changed = match req.action() {
            AlarmAction::Get => {
                return Ok(active
                    .iter()
                    .filter(|a| kind == AlarmType::None || a.alarm == req.alarm)
                    .cloned()
                    .collect())
            }
            AlarmAction::Activate => {
                if kind == AlarmType::None {
                    return Ok(vec![]);
                }
                if !active.contains(&wanted) {
                    let first = !active.iter().any(|a| a.alarm == req.alarm);
                    active.push(wanted);
                    if first {
                        tracing::warn!(alarm = kind.as_str_name(), from = %oxcd_api::MemberId(req.member_id), "alarm raised");
                    }
                }
                vec![wanted]
            }
            AlarmAction::Deactivate => {
                let Some(i) = active.iter().position(|a| *a == wanted) else {
                    return Ok(vec![]);
                };
                active.remove(i);
                if !active.iter().any(|a| a.alarm == req.alarm) {
                    tracing::warn!(alarm = kind.as_str_name(), from = %oxcd_api::MemberId(req.member_id), "alarm disarmed");
                }
                vec![wanted]
            }
        };
        records::save_alarms(wb, &active)?;
        Ok(changed)
    }
}

pub use oxcd_api::{alarm_name, alarm_text};

fn put_cost(op: &RequestOp) -> u64 {
    match &op.request {
        Some(oxcd_api::etcdserverpb::request_op::Request::RequestPut(p)) => {
            KV_OVERHEAD + p.key.len() as u64 + p.value.len() as u64
        }
        _ => 0,
    }
}

/// etcd's estimate of the space a request adds: puts count their key, value and an overhead;
/// a txn counts its costlier branch; everything else costs nothing.
const KV_OVERHEAD: u64 = 256;
pub const LEASE_OVERHEAD: u64 = 64;

pub fn put_request_cost(key: &[u8], value: &[u8]) -> u64 {
    KV_OVERHEAD + key.len() as u64 + value.len() as u64
}

pub fn txn_cost(txn: &TxnRequest) -> u64 {
    let success: u64 = txn.success.iter().map(put_cost).sum();
    let failure: u64 = txn.failure.iter().map(put_cost).sum();
    success.max(failure)
}
