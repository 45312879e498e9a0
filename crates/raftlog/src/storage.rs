//! The in-memory view of the log that raft-rs reads through its `Storage` trait.

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

#[derive(Debug, Default)]
pub(crate) struct Core {
    pub hard_state: HardState,
    pub conf_state: ConfState,
    /// Index and term of the last entry folded into the state machine snapshot.
    pub snap_index: u64,
    pub snap_term: u64,
    pub entries: Vec<Entry>,
}

impl Core {
    pub fn first_index(&self) -> u64 {
        self.snap_index + 1
    }

    pub fn last_index(&self) -> u64 {
        self.entries.last().map_or(self.snap_index, |e| e.index)
    }

    pub fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.snap_index {
            return Ok(self.snap_term);
        }
        if idx < self.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last_index() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.entries[(idx - self.first_index()) as usize].term)
    }

    /// Appends `ents`, replacing any conflicting tail. Returns false on a gap.
    pub fn append(&mut self, ents: &[Entry]) -> bool {
        let Some(first) = ents.first() else {
            return true;
        };
        if first.index > self.last_index() + 1 || first.index <= self.snap_index {
            return false;
        }
        let keep = (first.index - self.first_index()) as usize;
        self.entries.truncate(keep);
        self.entries.extend_from_slice(ents);
        true
    }

    pub fn compact(&mut self, index: u64) -> raft::Result<()> {
        if index <= self.snap_index {
            return Ok(());
        }
        let term = self.term(index)?;
        let drop = (index - self.snap_index) as usize;
        self.entries.drain(..drop.min(self.entries.len()));
        self.snap_index = index;
        self.snap_term = term;
        Ok(())
    }
}

/// A cheap handle raft-rs owns; the `RaftLog` writes through the same core.
#[derive(Clone, Default)]
pub struct LogStorage {
    pub(crate) core: Arc<RwLock<Core>>,
}

impl LogStorage {
    pub(crate) fn rl(&self) -> RwLockReadGuard<'_, Core> {
        self.core.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn wl(&self) -> RwLockWriteGuard<'_, Core> {
        self.core.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl raft::Storage for LogStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let c = self.rl();
        Ok(RaftState::new(c.hard_state.clone(), c.conf_state.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let c = self.rl();
        if low < c.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > c.last_index() + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let lo = (low - c.first_index()) as usize;
        let hi = (high - c.first_index()) as usize;
        let mut out = Vec::with_capacity(hi - lo);
        let limit = max_size.into().unwrap_or(u64::MAX);
        let mut size = 0u64;
        for e in &c.entries[lo..hi] {
            size += protobuf::Message::compute_size(e) as u64;
            if !out.is_empty() && size > limit {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.rl().term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.rl().first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.rl().last_index())
    }

    /// Only the metadata: the transport streams the state machine itself beside the message
    /// and sets the metadata to the point that stream stands for.
    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let c = self.rl();
        if c.snap_index == 0 {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let mut snap = Snapshot::default();
        let meta = snap.mut_metadata();
        meta.index = c.snap_index;
        meta.term = c.snap_term;
        meta.set_conf_state(c.conf_state.clone());
        Ok(snap)
    }
}
