//! The raft driver: one thread that ticks, steps, takes each Ready, persists it (one fsync
//! for every proposal in it), sends messages to peers, and hands committed entries to the
//! apply thread in order.

use crate::msg::Waiters;
use crate::msg::{ApplyMsg, Fatal, FatalTx, NodeMsg, RaftStatus};
use crate::read_rounds::{Epoch, ReadRounds};
use crate::transport::Transport;
use oxcd_api::EtcdError;
use oxcd_raftlog::RaftLog;
use raft::eraftpb::{Entry, Message, MessageType, Snapshot};
use raft::{RawNode, SnapshotStatus, StateRole};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// etcd warns of an fsync slower than this (its disk advice: a dedicated, fast disk).
const SLOW_FSYNC: std::time::Duration = std::time::Duration::from_secs(1);

pub struct Node {
    pub raw: RawNode<oxcd_raftlog::LogStorage>,
    pub log: RaftLog,
    pub inbox: Receiver<NodeMsg>,
    pub apply: Sender<ApplyMsg>,
    pub waiters: Arc<Waiters>,
    pub status: Arc<RaftStatus>,
    pub transport: Arc<Transport>,
    pub tick: Duration,
    /// How long a read waits for its ReadIndex before it is given up.
    pub read_timeout: Duration,
    pub fatal: FatalTx,
    /// Membership changes not yet applied, oldest first; only the first is in raft.
    pub held_conf_changes: std::collections::VecDeque<HeldConfChange>,
    /// How long a proposed membership change waits to be applied before it is proposed again.
    pub conf_retry: Duration,
    /// Hands a ReadIndex's answer to the reads that asked for it.
    pub read_replies: crate::msg::Relay<u64>,
    /// Proposals taken from the inbox and not yet stepped into raft.
    pub proposals: Proposals,
}

/// Proposals gathered for one raft message: their waiters' IDs and their entries.
#[derive(Default)]
pub struct Proposals {
    ids: Vec<u64>,
    entries: Vec<Entry>,
    bytes: usize,
}

/// Gathered proposals are stepped once they hold this much (a forwarded batch is one peer
/// message).
const PROPOSAL_BATCH_BYTES: usize = 1 << 20;

pub struct HeldConfChange {
    id: u64,
    change: raft::eraftpb::ConfChange,
    /// When, and while whom led, it was last proposed.
    proposed: Option<(Instant, u64)>,
}

/// A ReadIndex not yet answered is asked again this often: a leader drops one until it has
/// committed an entry of its term, and a deposed or stalled leader never answers (etcd 3.5
/// asks again every 500 ms too).
const READ_RETRY: Duration = Duration::from_millis(300);

/// How long the raft thread polls its inbox before it sleeps on it.
const SPIN: Duration = Duration::from_micros(10);
/// How long after a Ready with entries the raft thread still spins.
const WRITE_WINDOW: Duration = Duration::from_millis(5);

impl Node {
    /// Drives raft until the inbox closes or the node cannot go on (then `fatal` hears why).
    pub fn run(mut self) {
        if let Err(why) = self.drive() {
            let _ = self.fatal.send(why);
        }
    }

    fn drive(&mut self) -> Result<(), Fatal> {
        let mut last_tick = Instant::now();
        let mut reads = ReadRounds::new(self.raw.raft.id);
        // When a Ready last carried entries: writes are under way until a while after.
        let mut last_write: Option<Instant> = None;
        loop {
            // Reads held back while a ReadIndex was out go as soon as it is answered.
            let wait = if reads.can_start() {
                Duration::ZERO
            } else {
                self.tick.saturating_sub(last_tick.elapsed())
            };
            let spun = if last_write.is_some_and(|t| t.elapsed() < WRITE_WINDOW) {
                self.spin_for_message(wait)
            } else {
                None
            };
            let next = match spun {
                Some(msg) => Ok(msg),
                None => self.inbox.recv_timeout(wait),
            };
            match next {
                Ok(msg) => self.handle(msg, &mut reads)?,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
            // Everything already queued joins this Ready: one fsync for all of it.
            while let Ok(msg) = self.inbox.try_recv() {
                self.handle(msg, &mut reads)?;
            }
            self.step_proposals();
            if last_tick.elapsed() >= self.tick {
                self.raw.tick();
                last_tick = Instant::now();
                self.propose_held_conf_change();
                // A read whose ReadIndex was lost (leader gone) fails instead of leaking.
                let again = reads.on_tick(Instant::now(), self.read_timeout, READ_RETRY);
                if let Some(ctx) = again.filter(|_| self.raw.raft.leader_id != 0) {
                    self.raw.read_index(ctx);
                }
            }
            if self.raw.raft.leader_id == 0 {
                // No leader: dropping the senders tells the readers at once.
                reads.fail_waiting();
            } else if !reads.is_idle() {
                if let Some(ctx) = reads.start(Instant::now(), self.read_epoch()) {
                    self.raw.read_index(ctx);
                }
            }
            if self.on_ready(&mut reads)? {
                last_write = Some(Instant::now());
            }
        }
    }

    fn read_epoch(&self) -> Epoch {
        let raft = &self.raw.raft;
        let log = &raft.raft_log;
        Epoch {
            term: raft.term,
            leader: raft.leader_id,
            committed_in_term: log.term(log.committed).is_ok_and(|t| t == raft.term),
        }
    }

    /// Polls the inbox for up to `SPIN` (never past `wait`) before the thread sleeps on it:
    /// while writes are under way the next message (an ack, a proposal, the applied index)
    /// is usually that close, and a sleep and a wake-up cost more. Reads alone do not spin:
    /// their rounds are a heartbeat apart, and the poll would only take CPU they need.
    fn spin_for_message(&self, wait: Duration) -> Option<NodeMsg> {
        if wait < SPIN {
            return None;
        }
        let until = Instant::now() + SPIN;
        loop {
            if let Ok(msg) = self.inbox.try_recv() {
                return Some(msg);
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::yield_now();
        }
    }

    /// Steps the proposals taken from the inbox into raft as one message: a follower forwards
    /// them to the leader together, and a leader appends them in one step and one append
    /// per follower, where a message each cost a message each way per proposal.
    fn step_proposals(&mut self) {
        if self.proposals.ids.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.proposals);
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgPropose);
        m.from = self.raw.raft.id;
        m.set_entries(batch.entries.into());
        if self.raw.raft.step(m).is_err() {
            for id in batch.ids {
                self.waiters.finish(id, Err(EtcdError::NoLeader));
            }
        }
    }

    /// The only voter left (a forced new cluster's removals applied) need not wait out an
    /// election timeout.
    fn campaign_if_alone(&mut self) {
        let raft = &self.raw.raft;
        if raft.state == StateRole::Leader || raft.raft_log.applied != raft.raft_log.committed {
            return;
        }
        let voters = raft.prs().conf().voters().ids();
        if voters.len() == 1 && voters.contains(raft.id) {
            tracing::info!("the only voter; campaigning at once");
            let _ = self.raw.campaign();
        }
    }

    fn handle(&mut self, msg: NodeMsg, reads: &mut ReadRounds) -> Result<(), Fatal> {
        if !matches!(msg, NodeMsg::Propose { .. }) {
            // Raft sees the proposals before what came after them, in the state they were
            // checked against.
            self.step_proposals();
        }
        match msg {
            NodeMsg::Propose {
                id,
                data,
                leader_term,
            } => {
                let deposed = leader_term != 0
                    && (self.raw.raft.state != StateRole::Leader
                        || self.raw.raft.term != leader_term);
                if deposed {
                    self.waiters.finish(id, Err(EtcdError::LeaderChanged));
                } else {
                    self.proposals.bytes += data.len();
                    self.proposals.ids.push(id);
                    self.proposals.entries.push(Entry {
                        data: data.into(),
                        ..Default::default()
                    });
                    if self.proposals.bytes >= PROPOSAL_BATCH_BYTES {
                        self.step_proposals();
                    }
                }
            }
            NodeMsg::Applied { index } => {
                let log = &self.raw.raft.raft_log;
                let index = index.min(log.committed).min(log.persisted);
                if index > log.applied {
                    self.raw.advance_apply_to(index);
                    self.campaign_if_alone();
                }
                self.propose_held_conf_change();
            }
            NodeMsg::ProposeConfChange { id, change } => {
                self.held_conf_changes.push_back(HeldConfChange {
                    id,
                    change,
                    proposed: None,
                });
                self.propose_held_conf_change();
            }
            NodeMsg::ReadIndex { reply } => reads.push(reply),
            NodeMsg::Step(m) => {
                // Messages from members raft does not know (yet, or any more) are dropped.
                let _ = self.raw.step(*m);
            }
            NodeMsg::Unreachable { id } => self.raw.report_unreachable(id),
            NodeMsg::SnapshotSent { id, ok } => {
                let status = if ok {
                    SnapshotStatus::Finish
                } else {
                    SnapshotStatus::Failure
                };
                self.raw.report_snapshot(id, status);
            }
            NodeMsg::ApplyConfChange { change, reply } => {
                match self.raw.apply_conf_change(&change) {
                    Ok(cs) => {
                        self.log.set_conf_state(&cs);
                        if let Err(e) = self.log.sync() {
                            tracing::error!(error = %e, "failed to persist membership; stopping");
                            return Err(Fatal::Failed(format!(
                                "failed to persist membership: {e}"
                            )));
                        }
                        let _ = reply.send(cs);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "raft refused a committed membership change");
                        let _ = reply.send(self.log.conf_state());
                    }
                }
            }
            NodeMsg::TransferLeader { to } => self.raw.transfer_leader(to),
            NodeMsg::Progress { reply } => {
                let mut out = HashMap::new();
                if self.raw.raft.state == StateRole::Leader {
                    for (id, pr) in self.raw.raft.prs().iter() {
                        out.insert(*id, pr.matched);
                    }
                }
                let _ = reply.send(out);
            }
            NodeMsg::ReleaseApplied { index } => {
                let index = index.min(self.raw.raft.raft_log.applied);
                if let Err(e) = self.log.release_memory(index) {
                    tracing::warn!(error = %e, "failed to release applied raft entries");
                }
            }
            NodeMsg::CompactLog { index } => {
                let index = index.min(self.raw.raft.raft_log.applied);
                fail::fail_point!("raftBeforeCompactLog");
                let compacted = self.log.compact(index);
                fail::fail_point!("raftAfterCompactLog");
                match compacted {
                    Ok(true) => tracing::info!(index, "compacted raft log"),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "failed to compact raft log"),
                }
            }
        }
        Ok(())
    }

    /// A leader takes one membership change at a time: raft would turn a second one proposed
    /// before the first is applied into an empty entry, and its proposer would time out
    /// (etcd's behaviour). It waits here instead until the first is applied. A change a
    /// follower forwarded can be lost (the leader was just removed, or had one pending), and
    /// raft says nothing: unless applied it is proposed again to a new leader, or after
    /// `conf_retry`. A copy applied twice is refused the second time (the member exists, or
    /// is gone), so the proposer hears the first outcome. etcd 3.4 lets such a change time
    /// out.
    fn propose_held_conf_change(&mut self) {
        let waiters = &self.waiters;
        self.held_conf_changes.retain(|c| waiters.is_waiting(c.id));
        let raft = &self.raw.raft;
        if raft.leader_id == raft::INVALID_ID
            || (raft.state == StateRole::Leader && raft.has_pending_conf())
        {
            return;
        }
        let (retry, leader) = (self.conf_retry, raft.leader_id);
        if let Some(held) = self.held_conf_changes.front_mut() {
            if let Some((at, to)) = held.proposed {
                if to == leader && at.elapsed() < retry {
                    return;
                }
                tracing::info!(change = ?held.change.get_change_type(), "a membership change is not applied yet; proposing it again");
            }
            held.proposed = Some((Instant::now(), leader));
            let _ = self.raw.propose_conf_change(vec![], held.change.clone());
        }
    }

    /// Returns whether the Ready carried entries to persist or to apply: writes are under
    /// way, and answers to them (acks, the applied index) are due shortly.
    fn on_ready(&mut self, reads: &mut ReadRounds) -> Result<bool, Fatal> {
        if !self.raw.has_ready() {
            return Ok(false);
        }
        let mut rd = self.raw.ready();
        let writing = !rd.entries().is_empty() || !rd.committed_entries().is_empty();
        // A leader may send while it persists (raft's thesis, 10.2.1); followers may not.
        fail::fail_point!("raftBeforeLeaderSend");
        self.transport.send(rd.take_messages());
        if !rd.snapshot().is_empty() {
            self.install_snapshot(rd.snapshot().clone())?;
        }
        self.hand_off(rd.take_committed_entries())?;
        if !rd.entries().is_empty() {
            self.log.append(rd.entries()).map_err(persist_failed)?;
        }
        if let Some(hs) = rd.hs() {
            self.log.set_hard_state(hs);
        }
        // New entries, term or vote must be on disk before anyone hears of them.
        let must_sync = rd.must_sync();
        let started = std::time::Instant::now();
        fail::fail_point!("raftBeforeSave");
        self.log.write(must_sync).map_err(persist_failed)?;
        fail::fail_point!("raftAfterSave");
        if must_sync {
            let took = started.elapsed();
            crate::metrics::observe(|m| &m.wal_fsync, took.as_secs_f64());
            if took > SLOW_FSYNC {
                tracing::warn!(took = ?took, expected_duration = ?SLOW_FSYNC, "slow fdatasync");
            }
        }
        fail::fail_point!("raftBeforeFollowerSend");
        self.transport.send(rd.take_persisted_messages());
        for rs in rd.take_read_states() {
            if let Some(replies) = reads.answered(&rs.request_ctx) {
                self.read_replies
                    .send_all(replies.into_iter().map(|r| (r, rs.index)).collect());
            }
        }
        fail::fail_point!("raftBeforeAdvance");
        // Applied moves only when the apply thread says so (NodeMsg::Applied).
        let mut light = self.raw.advance_append(rd);
        if let Some(commit) = light.commit_index() {
            let mut hs = self.raw.raft.hard_state();
            hs.commit = commit;
            // Written with the next sync; a restart raises commit to the applied index anyway.
            self.log.set_hard_state(&hs);
        }
        self.transport.send(light.take_messages());
        self.hand_off(light.take_committed_entries())?;
        let raft = &self.raw.raft;
        self.status.term.store(raft.term, Ordering::Release);
        let previous = self.status.leader.swap(raft.leader_id, Ordering::AcqRel);
        if previous != raft.leader_id && raft.leader_id != 0 {
            crate::metrics::inc(|m| &m.leader_changes);
        }
        self.status
            .commit
            .store(raft.raft_log.committed, Ordering::Release);
        let leads = raft.state == StateRole::Leader;
        if leads && !self.status.is_leader.swap(leads, Ordering::AcqRel) {
            // Heartbeats of an earlier term say nothing of this one's timeliness.
            self.transport.forget_heartbeats();
        }
        self.status.is_leader.store(leads, Ordering::Release);
        Ok(writing)
    }

    /// The log restarts after the leader's snapshot, then the apply thread loads the state
    /// it carries. The file stays until the state machine holds it durably, so a crash in
    /// between finds it again on restart.
    fn install_snapshot(&mut self, snap: Snapshot) -> Result<(), Fatal> {
        fail::fail_point!("raftBeforeApplySnap");
        self.log
            .apply_snapshot(snap.get_metadata())
            .map_err(persist_failed)?;
        tracing::info!(
            snapshot_index = snap.get_metadata().index,
            "applied incoming snapshot to the raft log"
        );
        fail::fail_point!("raftAfterApplySnap");
        if self.apply.send(ApplyMsg::Snapshot(snap)).is_err() {
            return Err(apply_gone());
        }
        Ok(())
    }

    fn hand_off(&self, entries: Vec<Entry>) -> Result<(), Fatal> {
        if !entries.is_empty() && self.apply.send(ApplyMsg::Entries(entries)).is_err() {
            return Err(apply_gone());
        }
        Ok(())
    }
}

fn apply_gone() -> Fatal {
    tracing::error!("apply thread is gone; stopping");
    Fatal::Failed("apply thread is gone".into())
}

fn persist_failed(e: oxcd_raftlog::RaftLogError) -> Fatal {
    tracing::error!(error = %e, "failed to persist the raft log; stopping");
    Fatal::Failed(format!("failed to persist the raft log: {e}"))
}
