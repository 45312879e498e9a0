//! The raft driver: one thread that ticks, steps, takes each Ready, persists it (one fsync
//! for every proposal in it), and hands committed entries to the apply thread in order.

use crate::server::Waiters;
use oxcd_api::EtcdError;
use oxcd_raftlog::RaftLog;
use raft::eraftpb::Entry;
use raft::{RawNode, StateRole};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

pub enum NodeMsg {
    Propose {
        id: u64,
        data: Vec<u8>,
    },
    ReadIndex {
        reply: oneshot::Sender<u64>,
    },
    /// The state machine durably holds everything up to `index`; drop older log entries.
    CompactLog {
        index: u64,
    },
    /// Entries up to `index` are applied; the in-memory copy of older ones can go.
    ReleaseApplied {
        index: u64,
    },
}

/// What the rest of the server may know of raft without asking the raft thread.
#[derive(Default)]
pub struct RaftStatus {
    pub term: AtomicU64,
    pub leader: AtomicU64,
    pub commit: AtomicU64,
}

pub struct Node {
    pub raw: RawNode<oxcd_raftlog::LogStorage>,
    pub log: RaftLog,
    pub inbox: Receiver<NodeMsg>,
    pub apply: Sender<Vec<Entry>>,
    pub waiters: Arc<Waiters>,
    pub status: Arc<RaftStatus>,
    pub tick: Duration,
}

impl Node {
    pub fn run(mut self) {
        let mut last_tick = Instant::now();
        let mut reads: Vec<oneshot::Sender<u64>> = Vec::new();
        let mut pending_reads: HashMap<u64, Vec<oneshot::Sender<u64>>> = HashMap::new();
        let mut next_read: u64 = 0;
        loop {
            let wait = self.tick.saturating_sub(last_tick.elapsed());
            match self.inbox.recv_timeout(wait) {
                Ok(msg) => self.handle(msg, &mut reads),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            // Everything already queued joins this Ready: one fsync for all of it.
            while let Ok(msg) = self.inbox.try_recv() {
                self.handle(msg, &mut reads);
            }
            if last_tick.elapsed() >= self.tick {
                self.raw.tick();
                last_tick = Instant::now();
            }
            if !reads.is_empty() {
                if self.raw.raft.state == StateRole::Leader || self.raw.raft.leader_id != 0 {
                    next_read += 1;
                    self.raw.read_index(next_read.to_be_bytes().to_vec());
                    pending_reads.insert(next_read, std::mem::take(&mut reads));
                } else {
                    // No leader: dropping the senders tells the readers at once.
                    reads.clear();
                }
            }
            if let Err(e) = self.on_ready(&mut pending_reads) {
                tracing::error!(error = %e, "failed to persist the raft log; stopping");
                std::process::exit(1);
            }
        }
    }

    fn handle(&mut self, msg: NodeMsg, reads: &mut Vec<oneshot::Sender<u64>>) {
        match msg {
            NodeMsg::Propose { id, data } => {
                if self.raw.propose(vec![], data).is_err() {
                    self.waiters.finish(id, Err(EtcdError::NoLeader));
                }
            }
            NodeMsg::ReadIndex { reply } => reads.push(reply),
            NodeMsg::ReleaseApplied { index } => {
                let index = index.min(self.raw.raft.raft_log.applied);
                if let Err(e) = self.log.release_memory(index) {
                    tracing::warn!(error = %e, "failed to release applied raft entries");
                }
            }
            NodeMsg::CompactLog { index } => {
                let index = index.min(self.raw.raft.raft_log.applied);
                match self.log.compact(index) {
                    Ok(true) => tracing::info!(index, "compacted raft log"),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "failed to compact raft log"),
                }
            }
        }
    }

    fn on_ready(
        &mut self,
        pending_reads: &mut HashMap<u64, Vec<oneshot::Sender<u64>>>,
    ) -> Result<(), oxcd_raftlog::RaftLogError> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let mut rd = self.raw.ready();
        // One member: there is nobody to send rd.messages() to yet.
        self.hand_off(rd.take_committed_entries());
        if !rd.entries().is_empty() {
            self.log.append(rd.entries())?;
        }
        if let Some(hs) = rd.hs() {
            self.log.set_hard_state(hs);
        }
        // New entries, term or vote must be on disk before anyone hears of them.
        self.log.write(rd.must_sync())?;
        for rs in rd.take_read_states() {
            let mut ctx = [0u8; 8];
            if rs.request_ctx.len() == 8 {
                ctx.copy_from_slice(&rs.request_ctx);
            }
            for reply in pending_reads
                .remove(&u64::from_be_bytes(ctx))
                .unwrap_or_default()
            {
                let _ = reply.send(rs.index);
            }
        }
        let mut light = self.raw.advance(rd);
        if let Some(commit) = light.commit_index() {
            let mut hs = self.raw.raft.hard_state();
            hs.commit = commit;
            // Written with the next sync; a restart raises commit to the applied index anyway.
            self.log.set_hard_state(&hs);
        }
        self.hand_off(light.take_committed_entries());
        self.raw.advance_apply();
        self.status
            .term
            .store(self.raw.raft.term, Ordering::Release);
        self.status
            .leader
            .store(self.raw.raft.leader_id, Ordering::Release);
        self.status
            .commit
            .store(self.raw.raft.raft_log.committed, Ordering::Release);
        Ok(())
    }

    fn hand_off(&self, entries: Vec<Entry>) {
        if !entries.is_empty() && self.apply.send(entries).is_err() {
            tracing::error!("apply thread is gone; stopping");
            std::process::exit(1);
        }
    }
}
