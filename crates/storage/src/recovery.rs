//! Bringing the raft log level with the backend at start. A member may stop after a leader's
//! snapshot was loaded into the backend but before the log recorded it, or its log may have
//! lost a tail the backend applied: the log then restarts at the backend's applied index, with
//! the membership the backend holds, not the log's older (for a new member, empty) one.

use crate::records::load_conf_state;
use oxcd_mvcc::{BackendError, Store, StoreError, META_APPLIED_INDEX, META_APPLIED_TERM};
use oxcd_raftlog::{RaftLog, RaftLogError};
use raft::Storage;

#[derive(Debug, thiserror::Error)]
pub enum AlignError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Log(#[from] RaftLogError),
}

/// Restarts `log` at the backend's applied index when it does not hold that entry as the
/// backend applied it; why, if it did.
pub fn align_log_with_backend(
    store: &Store,
    log: &mut RaftLog,
) -> Result<Option<&'static str>, AlignError> {
    let applied = store.meta(META_APPLIED_INDEX)?.unwrap_or(0);
    let term = store.meta(META_APPLIED_TERM)?.unwrap_or(0);
    let why = if applied > log.last_index() {
        "the raft log ends before the backend's applied index"
    } else if applied >= log.first_index().saturating_sub(1)
        && term != 0
        && log.storage().term(applied).is_ok_and(|t| t != term)
    {
        "the raft log holds another entry at the backend's applied index"
    } else {
        return Ok(None);
    };
    let conf_state = load_conf_state(store)?;
    log.restart_from(applied, term, conf_state.as_ref())?;
    Ok(Some(why))
}

#[cfg(test)]
mod tests {
    use super::align_log_with_backend;
    use crate::records::save_conf_state;
    use oxcd_mvcc::{Store, META_APPLIED_INDEX, META_APPLIED_TERM};
    use oxcd_raftlog::RaftLog;
    use raft::eraftpb::ConfState;

    #[test]
    fn a_log_behind_a_loaded_snapshot_restarts_with_the_snapshots_membership() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("db")).expect("open");
        // A new member's backend after a leader's snapshot: index 120 of term 4, three voters.
        let cluster = ConfState {
            voters: vec![1, 2, 3],
            learners: vec![4],
            ..Default::default()
        };
        let mut wb = store.begin_write().expect("write");
        wb.set_meta(META_APPLIED_INDEX, 120).expect("meta");
        wb.set_meta(META_APPLIED_TERM, 4).expect("meta");
        save_conf_state(&mut wb, &cluster).expect("conf state");
        wb.commit(true).expect("commit");
        let wal = dir.path().join("wal");
        std::fs::create_dir_all(&wal).expect("wal dir");
        let mut log = RaftLog::open(&wal).expect("fresh log");

        let why = align_log_with_backend(&store, &mut log).expect("align");
        assert!(why.is_some());
        drop(log);
        let log = RaftLog::open(&wal).expect("reopen");
        assert_eq!((log.first_index(), log.last_index()), (121, 120));
        assert_eq!(raft::Storage::term(&log.storage(), 120).ok(), Some(4));
        assert_eq!(
            log.conf_state(),
            cluster,
            "the log keeps the membership it had"
        );

        let mut log = log;
        assert_eq!(
            align_log_with_backend(&store, &mut log).expect("again"),
            None
        );
    }
}
