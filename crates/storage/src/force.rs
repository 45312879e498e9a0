//! `--force-new-cluster`: a member whose cluster lost quorum for good restarts as the only
//! member, as etcd's `restartAsStandaloneNode` does. Uncommitted entries are dropped, and
//! conf changes removing every other member are appended as committed, so the membership is
//! rewritten through the log and stays so after a restart without the flag.

use crate::membership;
use oxcd_api::oxcdpb::ConfChangeContext;
use oxcd_api::{ClusterId, MemberId};
use oxcd_mvcc::{BackendError, Store, StoreError, META_APPLIED_INDEX};
use oxcd_raftlog::{RaftLog, RaftLogError};
use prost::Message;
use raft::eraftpb::{ConfChange, ConfChangeType, Entry, EntryType};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum ForceError {
    #[error("--force-new-cluster: {0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Log(#[from] RaftLogError),
    #[error("raft log: {0}")]
    Raft(#[from] raft::Error),
}

/// What forcing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forced {
    /// Uncommitted entries dropped.
    pub discarded: u64,
    /// Members removed (by the appended entries).
    pub removed: Vec<u64>,
    /// The commit index, the last appended entry.
    pub commit: u64,
}

/// The members (ID → learner) once the committed entries are applied: the log's conf state
/// and the backend record, with the committed conf changes after `applied` folded in
/// (etcd's getIDs).
fn members_at_commit(
    store: &Store,
    log: &RaftLog,
    applied: u64,
    commit: u64,
) -> Result<BTreeMap<u64, bool>, ForceError> {
    let cs = log.conf_state();
    let mut ids = BTreeMap::new();
    for &id in cs.voters.iter().chain(&cs.voters_outgoing) {
        ids.insert(id, false);
    }
    for &id in cs.learners.iter().chain(&cs.learners_next) {
        ids.entry(id).or_insert(true);
    }
    if let Some(record) = membership::load(store)? {
        for m in &record.members {
            ids.entry(m.id).or_insert(m.is_learner);
        }
    }
    let lo = (applied + 1).max(log.first_index());
    if lo > commit {
        return Ok(ids);
    }
    let ents = raft::Storage::entries(
        &log.storage(),
        lo,
        commit + 1,
        None,
        raft::GetEntriesContext::empty(false),
    )?;
    for e in ents {
        match e.get_entry_type() {
            EntryType::EntryConfChange => {
                let cc: ConfChange = protobuf::Message::parse_from_bytes(&e.data)
                    .map_err(|x| ForceError::Refused(format!("conf change at {}: {x}", e.index)))?;
                match cc.get_change_type() {
                    ConfChangeType::AddNode => {
                        ids.insert(cc.node_id, false);
                    }
                    ConfChangeType::AddLearnerNode => {
                        ids.insert(cc.node_id, true);
                    }
                    ConfChangeType::RemoveNode => {
                        ids.remove(&cc.node_id);
                    }
                }
            }
            EntryType::EntryConfChangeV2 => {
                return Err(ForceError::Refused(format!(
                    "unexpected ConfChangeV2 at {}",
                    e.index
                )))
            }
            EntryType::EntryNormal => {}
        }
    }
    Ok(ids)
}

/// Makes `me` the only member: drops the log's uncommitted tail, then appends (committed, at
/// the hard state's term) a promotion of `me` if it is a learner and a removal of every other
/// member. Call it after the commit index was raised to the backend's applied index and
/// before raft starts; the log must still hold every entry after the applied index.
pub fn force_new_cluster(
    store: &Store,
    log: &mut RaftLog,
    me: MemberId,
    cluster: ClusterId,
) -> Result<Forced, ForceError> {
    let applied = store.meta(META_APPLIED_INDEX)?.unwrap_or(0);
    let mut hs = raft::Storage::initial_state(&log.storage())?.hard_state;
    let commit = hs.commit;
    if !log.conf_state().voters_outgoing.is_empty() {
        return Err(ForceError::Refused(
            "the membership is in a joint configuration".into(),
        ));
    }
    let members = members_at_commit(store, log, applied, commit)?;
    let Some(&learner) = members.get(&me.0) else {
        return Err(ForceError::Refused(format!(
            "member {me} is not in its cluster's membership"
        )));
    };
    let discarded = log.discard_after(commit)?;
    if discarded > 0 {
        tracing::info!(
            entry_index = commit + 1,
            commit_index_from_wal = commit,
            number_of_discarded_entries = discarded,
            "discarding uncommitted WAL entries"
        );
    }
    // Promote first: the voters must never be empty.
    let mut changes = Vec::new();
    if learner {
        changes.push((ConfChangeType::AddNode, me.0));
    }
    let removed: Vec<u64> = members.keys().copied().filter(|&id| id != me.0).collect();
    changes.extend(removed.iter().map(|&id| (ConfChangeType::RemoveNode, id)));
    let mut ents = Vec::with_capacity(changes.len());
    for (i, (kind, id)) in changes.into_iter().enumerate() {
        let mut cc = ConfChange::default();
        cc.set_change_type(kind);
        cc.node_id = id;
        cc.context = ConfChangeContext::default().encode_to_vec().into();
        let mut e = Entry::default();
        e.set_entry_type(EntryType::EntryConfChange);
        e.term = hs.term;
        e.index = commit + 1 + i as u64;
        e.data = protobuf::Message::write_to_bytes(&cc)
            .map_err(|x| ForceError::Refused(format!("encoding a conf change: {x}")))?
            .into();
        ents.push(e);
    }
    if let Some(last) = ents.last() {
        hs.commit = last.index;
        log.append(&ents)?;
        // Persisted (etcd keeps it in memory): a crash before apply must not undo it.
        log.set_hard_state(&hs);
        log.sync()?;
    }
    tracing::info!(
        cluster_id = %cluster,
        local_member_id = %me,
        commit_index = hs.commit,
        removed_members = ?removed.iter().map(|&id| MemberId(id).to_string()).collect::<Vec<_>>(),
        "forcing restart member"
    );
    Ok(Forced {
        discarded,
        removed,
        commit: hs.commit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::save_conf_state;
    use oxcd_api::etcdserverpb::Member;
    use oxcd_api::oxcdpb::ClusterRecord;
    use oxcd_mvcc::META_APPLIED_TERM;
    use raft::eraftpb::{ConfState, HardState};

    fn normal(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: b"x".to_vec().into(),
            ..Default::default()
        }
    }

    fn conf_change(index: u64, term: u64, kind: ConfChangeType, id: u64) -> Entry {
        let mut cc = ConfChange::default();
        cc.set_change_type(kind);
        cc.node_id = id;
        let mut e = Entry {
            index,
            term,
            data: protobuf::Message::write_to_bytes(&cc)
                .expect("encode")
                .into(),
            ..Default::default()
        };
        e.set_entry_type(EntryType::EntryConfChange);
        e
    }

    /// A member of {1,2,3} (self 1, applied 3): entries 2..=3 applied, 4 (adding learner 4)
    /// and 5 committed, 6..=7 not.
    fn member_of_three(dir: &std::path::Path, me: u64) -> (Store, RaftLog) {
        let store = Store::open(&dir.join("db")).expect("open");
        let cs = ConfState {
            voters: vec![1, 2, 3],
            ..Default::default()
        };
        let record = ClusterRecord {
            cluster_id: 9,
            members: [1, 2, 3]
                .map(|id| Member {
                    id,
                    ..Default::default()
                })
                .to_vec(),
            removed: vec![],
        };
        let mut wb = store.begin_write().expect("write");
        membership::save(&mut wb, &record).expect("record");
        save_conf_state(&mut wb, &cs).expect("conf state");
        wb.set_meta(META_APPLIED_INDEX, 3).expect("meta");
        wb.set_meta(META_APPLIED_TERM, 2).expect("meta");
        wb.commit(true).expect("commit");
        let wal = dir.join("wal");
        let mut log = RaftLog::open(&wal).expect("log");
        log.set_conf_state(&cs);
        log.restart_from(1, 1, None).expect("restart");
        log.append(&[
            normal(2, 2),
            normal(3, 2),
            conf_change(4, 2, ConfChangeType::AddLearnerNode, 4),
            normal(5, 2),
            normal(6, 3),
            normal(7, 3),
        ])
        .expect("append");
        log.set_hard_state(&HardState {
            term: 3,
            vote: me,
            commit: 5,
            ..Default::default()
        });
        log.sync().expect("sync");
        (store, log)
    }

    #[test]
    fn force_drops_the_uncommitted_tail_and_removes_the_others() {
        let d = tempfile::tempdir().expect("tempdir");
        let (store, mut log) = member_of_three(d.path(), 1);
        let forced = force_new_cluster(&store, &mut log, MemberId(1), ClusterId(9)).expect("force");
        assert_eq!(
            forced,
            Forced {
                discarded: 2,
                removed: vec![2, 3, 4],
                commit: 8,
            }
        );
        drop(log);
        let mut log = RaftLog::open(&d.path().join("wal")).expect("reopen");
        assert_eq!(log.last_index(), 8);
        let st = log.storage();
        let rs = raft::Storage::initial_state(&st).expect("state");
        assert_eq!((rs.hard_state.commit, rs.hard_state.term), (8, 3));
        let ents = raft::Storage::entries(&st, 5, 9, None, raft::GetEntriesContext::empty(false))
            .expect("entries");
        assert_eq!(ents[0].data, b"x".to_vec(), "committed entry 5 kept");
        let changes: Vec<(u64, u64, ConfChangeType, u64)> = ents[1..]
            .iter()
            .map(|e| {
                assert_eq!(e.get_entry_type(), EntryType::EntryConfChange);
                let cc: ConfChange =
                    protobuf::Message::parse_from_bytes(&e.data).expect("conf change");
                let ctx = ConfChangeContext::decode(cc.get_context()).expect("context");
                assert_eq!(ctx, ConfChangeContext::default());
                (e.index, e.term, cc.get_change_type(), cc.node_id)
            })
            .collect();
        assert_eq!(
            changes,
            vec![
                (6, 3, ConfChangeType::RemoveNode, 2),
                (7, 3, ConfChangeType::RemoveNode, 3),
                (8, 3, ConfChangeType::RemoveNode, 4),
            ]
        );
        // Forcing again adds nothing (raft applied the removals meanwhile).
        log.set_conf_state(&ConfState {
            voters: vec![1],
            ..Default::default()
        });
        let mut wb = store.begin_write().expect("write");
        membership::save(
            &mut wb,
            &ClusterRecord {
                cluster_id: 9,
                members: vec![Member {
                    id: 1,
                    ..Default::default()
                }],
                removed: vec![2, 3, 4],
            },
        )
        .expect("record");
        wb.set_meta(META_APPLIED_INDEX, 8).expect("meta");
        wb.commit(true).expect("commit");
        let again = force_new_cluster(&store, &mut log, MemberId(1), ClusterId(9)).expect("again");
        assert_eq!(
            again,
            Forced {
                discarded: 0,
                removed: vec![],
                commit: 8,
            }
        );
        assert_eq!(log.last_index(), 8);
    }

    #[test]
    fn a_learner_is_promoted_before_the_others_go() {
        let d = tempfile::tempdir().expect("tempdir");
        // Self is 4, the learner entry 4 (committed, not applied) adds.
        let (store, mut log) = member_of_three(d.path(), 0);
        let forced = force_new_cluster(&store, &mut log, MemberId(4), ClusterId(9)).expect("force");
        assert_eq!(forced.removed, vec![1, 2, 3]);
        let ents = raft::Storage::entries(
            &log.storage(),
            6,
            10,
            None,
            raft::GetEntriesContext::empty(false),
        )
        .expect("entries");
        let first: ConfChange = protobuf::Message::parse_from_bytes(&ents[0].data).expect("cc");
        assert_eq!(
            (first.get_change_type(), first.node_id),
            (ConfChangeType::AddNode, 4)
        );
        assert_eq!(forced.commit, 9);
    }

    #[test]
    fn a_stranger_is_refused() {
        let d = tempfile::tempdir().expect("tempdir");
        let (store, mut log) = member_of_three(d.path(), 0);
        let err = force_new_cluster(&store, &mut log, MemberId(7), ClusterId(9))
            .expect_err("not a member");
        assert!(
            err.to_string().contains("not in its cluster's membership"),
            "{err}"
        );
        assert_eq!(log.last_index(), 7, "nothing dropped when refused");
    }
}
