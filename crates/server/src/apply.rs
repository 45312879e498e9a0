//! The apply thread: committed raft entries, in order, become MVCC writes. A run of entries
//! shares one backend transaction, which also records the applied index, and only after it
//! commits are proposers woken, so that what they were told is what readers see.

use crate::msg::{Applied, Waiters};
use crate::msg::{ApplyMsg, Fatal, FatalTx, NodeMsg};
use oxcd_api::oxcdpb::{
    internal_request::Request, ClusterRecord, ConfChangeContext, InternalRequest,
};
use oxcd_api::EtcdError;
use oxcd_api::LeaseId;
use oxcd_api::MemberId;
use oxcd_mvcc::{Store, StoreError, WriteBatch, META_APPLIED_INDEX, META_APPLIED_TERM};
use oxcd_storage::membership;
use prost::Message;
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, Entry, EntryType, Snapshot};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The most entries one backend transaction applies.
const MAX_BATCH_ENTRIES: usize = 1000;

/// How often (in applied entries) the in-memory raft log drops what is applied.
const RELEASE_EVERY: u64 = 10_000;
/// How long applying may go idle before what non-durable commits left is made durable.
const SETTLE_AFTER_IDLE: Duration = Duration::from_millis(100);

/// When a batch's backend commit is made durable: once `every` has passed since the last
/// durable one, or `after_entries` entries have been applied since (0: no count). The raft
/// log holds every acknowledged write meanwhile; a durable commit only bounds what a restart
/// after a crash replays, and lets redb reuse the pages freed since the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durability {
    pub every: Duration,
    pub after_entries: u64,
}

impl Durability {
    /// oxcd's default interval. etcd commits its backend every 100 ms; its commit and ours
    /// (redb writes the buffered pages, then fsyncs) hold the apply loop for a few
    /// milliseconds, so under steady writes every client waits through a stall ten times a
    /// second, which was most of a 1-member put's p99. Once a second keeps that out of it.
    pub const DEFAULT_EVERY: Duration = Duration::from_secs(1);

    /// From etcd's flags, where zero means the default.
    pub fn new(interval: Duration, limit: u64) -> Durability {
        Durability {
            every: if interval.is_zero() {
                Durability::DEFAULT_EVERY
            } else {
                interval
            },
            after_entries: limit,
        }
    }

    fn due(&self, since_durable: Duration, entries_since_durable: u64) -> bool {
        since_durable >= self.every
            || (self.after_entries > 0 && entries_since_durable >= self.after_entries)
    }
}

/// etcd warns of an apply slower than this.
const SLOW_APPLY: Duration = Duration::from_millis(100);

pub struct Applier {
    pub me: MemberId,
    pub store: Arc<Store>,
    pub inbox: Receiver<ApplyMsg>,
    pub members: watch::Sender<ClusterRecord>,
    pub status: Arc<crate::msg::RaftStatus>,
    pub election_timeout: Duration,
    pub node: Sender<NodeMsg>,
    pub waiters: Arc<Waiters>,
    pub alarms: Arc<crate::alarms::Alarms>,
    pub auth: Arc<crate::auth::AuthStore>,
    pub applied: watch::Sender<u64>,
    pub snapshot_count: u64,
    pub durability: Durability,
    /// Entries kept in the raft log behind a snapshot for slow followers (etcd's catch-up tail).
    pub catch_up_entries: u64,
    pub fatal: FatalTx,
    /// Where received snapshots wait to be loaded.
    pub snap_dir: PathBuf,
    /// Told of each lease granted, so a leader's deadline starts at the grant.
    pub lessor: Arc<dyn crate::msg::LeaseGrants>,
}

/// What stops the apply loop.
enum Stop {
    Store(StoreError),
    Removed,
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Stop {
        Stop::Store(e)
    }
}

/// Where applying stands, and when the periodic follow-ups last ran.
struct Progress {
    applied: u64,
    last_snapshot: u64,
    last_release: u64,
    last_durable: Instant,
    applied_at_durable: u64,
    /// A commit since the backend was last settled (`Store::settle`).
    unsettled: bool,
}

impl Progress {
    /// Everything applied so far is durable in the backend.
    fn made_durable(&mut self) {
        self.last_durable = Instant::now();
        self.applied_at_durable = self.applied;
    }
}

impl Applier {
    /// Applies committed entries until raft's side closes or the node cannot go on (then
    /// `fatal` hears why).
    pub fn run(self) {
        if let Err(why) = self.drive() {
            let _ = self.fatal.send(why);
        }
    }

    fn drive(&self) -> Result<(), Fatal> {
        let applied = *self.applied.borrow();
        let mut progress = Progress {
            applied,
            last_snapshot: applied,
            last_release: applied,
            last_durable: Instant::now(),
            applied_at_durable: applied,
            unsettled: false,
        };
        loop {
            let first = match self.inbox.recv_timeout(SETTLE_AFTER_IDLE) {
                Ok(first) => first,
                Err(RecvTimeoutError::Timeout) => {
                    if progress.unsettled {
                        self.settle()?;
                        progress.unsettled = false;
                        progress.made_durable();
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut entries = Vec::new();
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    ApplyMsg::Entries(more) => entries.extend(more),
                    ApplyMsg::Snapshot(snap) => {
                        self.apply_all(&std::mem::take(&mut entries), &mut progress)?;
                        if let Err(e) = self.restore(&snap, &mut progress) {
                            tracing::error!(error = %e, "failed to load the leader's snapshot; stopping");
                            return Err(Fatal::Failed(format!(
                                "failed to load the leader's snapshot: {e}"
                            )));
                        }
                    }
                }
                next = self.inbox.try_recv().ok();
            }
            self.apply_all(&entries, &mut progress)?;
        }
        Ok(())
    }

    /// Once writes pause, what non-durable commits buffered is written out, so big reads
    /// (backups, listings) do not pay for it.
    fn settle(&self) -> Result<(), Fatal> {
        self.store.settle().map_err(|e| {
            tracing::error!(error = %e, "failed to write the backend out; stopping");
            Fatal::Failed(format!("failed to write the backend out: {e}"))
        })
    }

    fn apply_all(&self, entries: &[Entry], progress: &mut Progress) -> Result<(), Fatal> {
        // A backlog is applied in bounded batches, each published as it commits, so readers,
        // watchers and waiting clients see progress instead of one long transaction.
        for batch in entries.chunks(MAX_BATCH_ENTRIES) {
            match self.apply_batch(batch, progress) {
                Ok(()) => {}
                Err(Stop::Removed) => return Err(Fatal::Removed),
                Err(Stop::Store(e)) => {
                    tracing::error!(error = %e, "failed to apply committed entries; stopping");
                    return Err(Fatal::Failed(format!(
                        "failed to apply committed entries: {e}"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Replaces the state machine with the snapshot's, durably, then drops the file.
    fn restore(&self, snap: &Snapshot, p: &mut Progress) -> Result<(), String> {
        let path = received_snapshot_path(&self.snap_dir, snap.get_metadata().index);
        let applied = restore_snapshot_file(&self.store, &path)?;
        p.applied = applied;
        p.last_snapshot = applied;
        p.last_release = applied;
        p.made_durable(); // a restore is durable
        self.publish_applied(applied);
        self.alarms.reload(&self.store).map_err(|e| e.to_string())?;
        self.auth.reload(&self.store).map_err(|e| e.to_string())?;
        let record = membership::load(&self.store)
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        self.members.send_replace(record);
        Ok(())
    }

    fn apply_batch(&self, entries: &[Entry], p: &mut Progress) -> Result<(), Stop> {
        let batch_started = Instant::now();
        let mut wb = self.store.begin_write()?;
        let turn_taken = Instant::now();
        let mut replies = Vec::new();
        let mut term = 0;
        let mut members_changed = false;
        let mut removed_self = false;
        for e in entries {
            if e.index <= p.applied {
                continue;
            }
            fail::fail_point!("applyBeforeEntry");
            match e.get_entry_type() {
                EntryType::EntryNormal if !e.data.is_empty() => {
                    match InternalRequest::decode(&e.data[..]) {
                        Ok(req) if req.leader_term != 0 && req.leader_term != e.term => {
                            // A leader's own decision (an expiry) that a successor's log
                            // carries: the deposed leader forwarded it after losing office.
                            tracing::warn!(
                                index = e.index,
                                entry_term = e.term,
                                decided_in_term = req.leader_term,
                                "dropping a deposed leader's decision"
                            );
                            replies.push((req.id, Err(EtcdError::LeaderChanged)));
                        }
                        Ok(req) => {
                            let publish = matches!(
                                req.request,
                                Some(Request::Publish(_) | Request::UpdateMember(_))
                            );
                            let id = req.id;
                            replies.push((id, apply_one(&mut wb, &self.alarms, &self.auth, req)?));
                            members_changed |= publish;
                        }
                        // etcd panics here: skipping would leave this member's state behind.
                        Err(err) => {
                            return Err(Stop::Store(oxcd_mvcc::corrupt_record(
                                &format!("raft entry {}", e.index),
                                err,
                            )))
                        }
                    }
                }
                EntryType::EntryConfChange => {
                    fail::fail_point!("applyBeforeConfChange");
                    let (id, result) = self.apply_conf_change(&mut wb, e)?;
                    if let Ok(Applied::Members { removed, .. }) = &result {
                        removed_self |= *removed == Some(self.me.0);
                    }
                    members_changed = true;
                    replies.push((id, result));
                }
                _ => {}
            }
            p.applied = e.index;
            term = e.term;
        }
        if term == 0 {
            return Ok(());
        }
        wb.set_metas(&[(META_APPLIED_INDEX, p.applied), (META_APPLIED_TERM, term)])?;
        let snapshot_due = p.applied - p.last_snapshot >= self.snapshot_count.max(1);
        let durable = snapshot_due
            || self
                .durability
                .due(p.last_durable.elapsed(), p.applied - p.applied_at_durable);
        let commit_started = Instant::now();
        fail::fail_point!("beforeCommit");
        wb.commit(durable)?;
        p.unsettled = true;
        for reply in &replies {
            if let (_, Ok(Applied::LeaseGranted { id, ttl })) = reply {
                self.lessor.granted(&self.status, &self.store, *id, *ttl);
            }
        }
        fail::fail_point!("afterCommit");
        let committed = Instant::now();
        if durable {
            crate::metrics::observe(
                |m| &m.backend_commit,
                commit_started.elapsed().as_secs_f64(),
            );
        }
        let took = batch_started.elapsed();
        crate::metrics::observe(|m| &m.apply_duration, took.as_secs_f64());
        if took > SLOW_APPLY {
            crate::metrics::inc(|m| &m.slow_apply);
            tracing::warn!(
                took = ?took,
                expected_duration = ?SLOW_APPLY,
                entries = entries.len(),
                waiting_for_writer = ?turn_taken - batch_started,
                applying = ?commit_started - turn_taken,
                committing = ?committed - commit_started,
                durable,
                "apply request took too long"
            );
        }
        if durable {
            p.made_durable();
        }
        self.publish_applied(p.applied);
        if members_changed {
            let record = membership::load(&self.store)?.unwrap_or_default();
            self.members.send_replace(record);
        }
        if removed_self {
            // Durable before going: a restart must not find itself still a member.
            self.store.begin_write()?.commit(true)?;
            self.hand_over_if_leader();
            tracing::error!(local_member_id = %self.me, "the member has been permanently removed from the cluster; stopping");
            return Err(Stop::Removed);
        }
        self.waiters.finish_all(replies);
        let keep_from = p.applied.saturating_sub(self.catch_up_entries);
        if snapshot_due {
            p.last_snapshot = p.applied;
            tracing::info!(applied_index = p.applied, "triggering snapshot");
            let _ = self.node.send(NodeMsg::CompactLog { index: keep_from });
        }
        if p.applied - p.last_release >= RELEASE_EVERY {
            p.last_release = p.applied;
            let _ = self.node.send(NodeMsg::ReleaseApplied { index: keep_from });
        }
        Ok(())
    }
}

impl Applier {
    /// Readers wait on `applied`; raft learns it too, and only from here: its guards (one
    /// membership change at a time, no campaign over an unapplied one) count on it.
    fn publish_applied(&self, index: u64) {
        self.applied.send_replace(index);
        let _ = self.node.send(NodeMsg::Applied { index });
    }

    /// A leader that was removed hands leadership to the most caught-up voter before it
    /// stops, so the others need not wait out an election timeout.
    fn hand_over_if_leader(&self) {
        use std::sync::atomic::Ordering;
        if !self.status.is_leader.load(Ordering::Acquire) {
            return;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.node.send(NodeMsg::Progress { reply: tx }).is_err() {
            return;
        }
        let Ok(progress) = rx.blocking_recv() else {
            return;
        };
        let voters = membership::load(&self.store)
            .ok()
            .flatten()
            .map(|r| r.members)
            .unwrap_or_default();
        let target = voters
            .iter()
            .filter(|m| !m.is_learner && m.id != self.me.0)
            .max_by_key(|m| progress.get(&m.id).copied().unwrap_or(0));
        let Some(target) = target else {
            return;
        };
        let _ = self.node.send(NodeMsg::TransferLeader { to: target.id });
        let deadline = Instant::now() + self.election_timeout;
        while self.status.leader.load(Ordering::Acquire) == self.me.0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        tracing::info!(transferee = %MemberId(target.id), "removed leader handed leadership over");
    }

    /// A committed membership change: checked against the members as they are now (two
    /// changes proposed at once may conflict), taken on by raft, recorded with the new
    /// configuration in the same batch.
    fn apply_conf_change(
        &self,
        wb: &mut WriteBatch<'_>,
        e: &Entry,
    ) -> Result<(u64, Result<Applied, EtcdError>), StoreError> {
        let bad = |what: String| StoreError::Backend(oxcd_mvcc::BackendError::CorruptRecord(what));
        let cc = ConfChange::parse_from_bytes(&e.data)
            .map_err(|err| bad(format!("conf change at {}: {err}", e.index)))?;
        let ctx = ConfChangeContext::decode(cc.get_context())
            .map_err(|err| bad(format!("conf change context at {}: {err}", e.index)))?;
        let mut record = membership::load_in(wb)?;
        let id = cc.node_id;
        let existing = record.members.iter().position(|m| m.id == id);
        let check = match cc.get_change_type() {
            ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => match existing {
                Some(i)
                    if cc.get_change_type() == ConfChangeType::AddNode
                        && record.members[i].is_learner =>
                {
                    Ok(())
                }
                Some(_) => Err(EtcdError::MemberExist),
                None if record.removed.contains(&id) => Err(EtcdError::MemberExist),
                None => Ok(()),
            },
            ConfChangeType::RemoveNode => existing.map(|_| ()).ok_or(EtcdError::MemberNotFound),
        };
        if let Err(err) = check {
            return Ok((ctx.request_id, Err(err)));
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let _ = self.node.send(NodeMsg::ApplyConfChange {
            change: cc.clone(),
            reply: tx,
        });
        let cs = rx.recv().map_err(|_| bad("raft thread is gone".into()))?;
        let mut removed = None;
        match (cc.get_change_type(), existing) {
            (ConfChangeType::RemoveNode, Some(i)) => {
                record.members.remove(i);
                record.removed.push(id);
                removed = Some(id);
            }
            (ConfChangeType::AddNode, Some(i)) => record.members[i].is_learner = false,
            (_, _) => {
                let mut m = ctx.member.unwrap_or_default();
                m.id = id;
                m.is_learner = cc.get_change_type() == ConfChangeType::AddLearnerNode;
                record.members.push(m);
            }
        }
        oxcd_storage::records::save_conf_state(wb, &cs)?;
        membership::save(wb, &record)?;
        let member = record.members.iter().find(|m| m.id == id).cloned();
        tracing::info!(member_id = %MemberId(id), change = ?cc.get_change_type(), "applied a membership change");
        Ok((
            ctx.request_id,
            Ok(Applied::Members {
                member,
                members: record.members,
                removed,
            }),
        ))
    }
}

/// Where the peer service keeps a snapshot received for raft index `index`.
pub fn received_snapshot_path(snap_dir: &std::path::Path, index: u64) -> PathBuf {
    snap_dir.join(format!("{index:016x}.snap"))
}

/// Loads a snapshot file into the store durably, removes it, and returns the raft index the
/// state stands for.
pub fn restore_snapshot_file(store: &Store, path: &std::path::Path) -> Result<u64, String> {
    fail::fail_point!("applyBeforeOpenSnapshot");
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let point = store
        .restore_snapshot(file)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let applied = point.meta(META_APPLIED_INDEX).unwrap_or(0);
    tracing::info!(path = %path.display(), applied_index = applied, "restored the backend from a snapshot");
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(path = %path.display(), error = %e, "failed to remove applied snapshot file");
    }
    Ok(applied)
}

/// One request's effect. Refusals (`Err(EtcdError)`) go back to the proposer; disk failures
/// stop the node.
fn apply_one(
    wb: &mut WriteBatch<'_>,
    alarms: &crate::alarms::Alarms,
    auth: &crate::auth::AuthStore,
    internal: InternalRequest,
) -> Result<Result<Applied, EtcdError>, StoreError> {
    let req = internal.request;
    if let Some(refusal) = refused_by_alarm(alarms, req.as_ref()) {
        return Ok(Err(refusal));
    }
    if let (true, Some(r)) = (internal.from_client, &req) {
        if let Err(refusal) = auth.check_applied(&internal.username, r) {
            return Ok(Err(refusal));
        }
        let keys_of = |id| wb.lease_keys(LeaseId(id));
        if let Err(refusal) = auth.check_lease_puts(&internal.username, r, keys_of)? {
            return Ok(Err(refusal));
        }
    }
    if let Some(r) = req.as_ref().filter(|r| crate::auth::is_auth_request(r)) {
        fail::fail_point!("applyBeforeAuth");
        return auth.apply(wb, r);
    }
    match &req {
        Some(Request::Put(_)) => fail::fail_point!("applyBeforePut"),
        Some(Request::DeleteRange(_)) => fail::fail_point!("applyBeforeDeleteRange"),
        Some(Request::Txn(_)) => fail::fail_point!("applyBeforeTxn"),
        Some(Request::Compaction(_)) => fail::fail_point!("applyBeforeCompaction"),
        Some(Request::LeaseGrant(_)) => fail::fail_point!("applyBeforeLeaseGrant"),
        Some(Request::LeaseRevoke(_)) => fail::fail_point!("applyBeforeLeaseRevoke"),
        Some(Request::LeaseCheckpoint(_) | Request::LeaseCheckpoints(_)) => {
            fail::fail_point!("applyBeforeLeaseCheckpoint")
        }
        _ => {}
    }
    let out = match req {
        Some(Request::Put(r)) => wb.put(&r).map(Applied::Put),
        Some(Request::DeleteRange(r)) => wb.delete_range(&r).map(Applied::DeleteRange),
        Some(Request::Txn(r)) => wb.txn(&r).map(Applied::Txn),
        Some(Request::Compaction(r)) => wb.compact(&r).map(Applied::Compacted),
        Some(Request::Publish(attrs)) => publish(wb, attrs).map(|_| Applied::Published),
        Some(Request::UpdateMember(m)) => update_member(wb, m),
        Some(Request::LeaseGrant(g)) => {
            wb.lease_grant(LeaseId(g.id), g.ttl)
                .map(|_| Applied::LeaseGranted {
                    id: LeaseId(g.id),
                    ttl: g.ttl,
                })
        }
        Some(Request::LeaseRevoke(r)) => wb.lease_revoke(LeaseId(r.id)).map(Applied::LeaseRevoked),
        Some(Request::LeaseCheckpoint(c)) => wb
            .lease_checkpoint(LeaseId(c.id), c.remaining_ttl)
            .map(|_| Applied::LeaseCheckpointed),
        Some(Request::LeaseCheckpoints(batch)) => batch
            .checkpoints
            .iter()
            .try_for_each(|c| wb.lease_checkpoint(LeaseId(c.id), c.remaining_ttl))
            .map(|_| Applied::LeaseCheckpointed),
        Some(Request::Alarm(a)) => alarms.apply(wb, &a).map(Applied::Alarms),
        Some(Request::DowngradeInfoSet(set)) => wb
            .set_cluster_record(
                crate::downgrade::RECORD,
                &crate::downgrade::DowngradeInfo::record(&set),
            )
            .map(|_| Applied::Published),
        // Taken by the auth store above.
        Some(_) | None => Ok(Applied::Published),
    };
    match out {
        Ok(a) => {
            match a {
                Applied::LeaseGranted { .. } => crate::metrics::inc(|m| &m.lease_granted),
                Applied::LeaseRevoked(_) => crate::metrics::inc(|m| &m.lease_revoked),
                _ => {}
            }
            Ok(Ok(a))
        }
        // An internal error is no deterministic refusal: stop rather than diverge.
        Err(StoreError::Request(EtcdError::Internal(e))) => Err(StoreError::Backend(
            oxcd_mvcc::BackendError::CorruptRecord(e),
        )),
        Err(StoreError::Request(e)) => Ok(Err(e)),
        Err(e) => Err(e),
    }
}

/// etcd's capped applier (NOSPACE: nothing that adds data) and corrupt applier (CORRUPT:
/// no change at all).
fn refused_by_alarm(alarms: &crate::alarms::Alarms, req: Option<&Request>) -> Option<EtcdError> {
    use oxcd_api::etcdserverpb::AlarmType;
    let req = req?;
    let writes = matches!(
        req,
        Request::Put(_)
            | Request::DeleteRange(_)
            | Request::Txn(_)
            | Request::Compaction(_)
            | Request::LeaseGrant(_)
            | Request::LeaseRevoke(_)
    );
    if writes && alarms.is_active(AlarmType::Corrupt) {
        return Some(EtcdError::Corrupt);
    }
    let adds = match req {
        Request::Put(_) | Request::LeaseGrant(_) => true,
        Request::Txn(t) => crate::alarms::txn_cost(t) > 0,
        _ => false,
    };
    (adds && alarms.is_active(AlarmType::Nospace)).then_some(EtcdError::NoSpace)
}

fn publish(
    wb: &mut WriteBatch<'_>,
    attrs: oxcd_api::oxcdpb::MemberAttributes,
) -> Result<(), StoreError> {
    let mut record = membership::load_in(wb)?;
    if let Some(m) = record.members.iter_mut().find(|m| m.id == attrs.id) {
        m.name = attrs.name;
        m.client_ur_ls = attrs.client_urls;
    }
    membership::save(wb, &record)
}

fn update_member(
    wb: &mut WriteBatch<'_>,
    update: oxcd_api::etcdserverpb::Member,
) -> Result<Applied, StoreError> {
    let mut record = membership::load_in(wb)?;
    let Some(m) = record.members.iter_mut().find(|m| m.id == update.id) else {
        return Err(EtcdError::MemberNotFound.into());
    };
    m.peer_ur_ls = update.peer_ur_ls;
    let member = Some(m.clone());
    membership::save(wb, &record)?;
    Ok(Applied::Members {
        member,
        members: record.members,
        removed: None,
    })
}

#[cfg(test)]
mod tests {
    use super::apply_one;
    use crate::alarms::Alarms;
    use crate::auth::AuthStore;
    use oxcd_api::oxcdpb::{internal_request::Request, InternalRequest, MemberAttributes};
    use oxcd_mvcc::{Store, StoreError};
    use std::time::Duration;

    #[test]
    fn a_corrupt_record_stops_the_apply_instead_of_refusing_one_request() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("db")).expect("open");
        let alarms = Alarms::load(&store).expect("alarms");
        let auth = AuthStore::load(&store, "simple", Duration::from_secs(300), 4).expect("auth");
        let mut wb = store.begin_write().expect("write");
        wb.set_cluster_record("cluster", b"\xff\xff\xff not a record")
            .expect("write the record");
        let publish = InternalRequest {
            request: Some(Request::Publish(MemberAttributes {
                id: 1,
                name: "m1".into(),
                client_urls: vec![],
            })),
            ..Default::default()
        };
        match apply_one(&mut wb, &alarms, &auth, publish) {
            Err(StoreError::Backend(_)) => {}
            other => panic!("a corrupt cluster record must stop the member, got {other:?}"),
        }
    }
}
