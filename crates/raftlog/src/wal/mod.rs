//! The write-ahead log file. A record is `len u32 | crc32 u32 | kind u8 | payload` (little
//! endian; the CRC covers the length, kind and payload). Each write starts with a batch record
//! giving the length of the records it carries and whether it was fsynced, so replay can tell
//! a write torn by a crash (never fsynced, never acknowledged) from damage to synced data.
//! Compaction writes a new generation file that starts from a snapshot record, then removes
//! the older ones.

use crate::storage::{Core, LogStorage};
use protobuf::Message;
use raft::eraftpb::{ConfState, Entry, HardState, SnapshotMetadata};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const ENTRY: u8 = 1;
const HARD_STATE: u8 = 2;
const SNAPSHOT: u8 = 3;
const CONF_STATE: u8 = 4;
const BATCH: u8 = 5;
const HEADER: usize = 9;
/// A batch record: the header, the records' length (u64) and the fsync flag (u8).
const BATCH_RECORD: usize = HEADER + 9;
/// A record claiming more than this is not a record.
const MAX_RECORD: usize = 256 << 20;
/// Disk space is reserved ahead of the writes in steps of this size (etcd preallocates 64 MiB
/// segments); the reserved tail is zeros, which replay takes as the end of the log.
const PREALLOCATE: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RaftLogError {
    #[error("wal {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("wal {path}: corrupt record at offset {offset} ({reason}); refusing to start: restore this member from a snapshot or remove and re-add it")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("raft log: {0}")]
    Raft(#[from] raft::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RaftLogError + '_ {
    move |source| RaftLogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub struct RaftLog {
    dir: PathBuf,
    generation: u64,
    file: File,
    /// Where the next record goes: the end of the valid records.
    write_at: u64,
    /// The file's size, reserved space included.
    allocated: u64,
    pending: Vec<u8>,
    storage: LogStorage,
    fresh: bool,
    /// Where the current file starts: entries up to here are only in the state machine.
    file_snap_index: u64,
}

fn generation_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("{generation:016x}.wal"))
}

fn generations(dir: &Path) -> Result<Vec<u64>, RaftLogError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let name = entry.map_err(io(dir))?.file_name();
        let name = name.to_string_lossy();
        if let Some(hex) = name.strip_suffix(".wal") {
            if let Ok(g) = u64::from_str_radix(hex, 16) {
                out.push(g);
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn sync_dir(dir: &Path) -> Result<(), RaftLogError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

fn checksum(len: u32, body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(body);
    h.finalize()
}

fn encode(buf: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    let len = payload.len() as u32;
    let mut body = Vec::with_capacity(1 + payload.len());
    body.push(kind);
    body.extend_from_slice(payload);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&checksum(len, &body).to_le_bytes());
    buf.extend_from_slice(&body);
}

/// A record header at `at` whose length fits and whose checksum holds.
fn valid_record_at(data: &[u8], at: usize) -> Option<usize> {
    let header = data.get(at..at + HEADER)?;
    if header[8] == 0 {
        return None; // no record kind is 0: reserved space or damage
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let end = at.checked_add(8 + 1 + len as usize)?;
    let body = data.get(at + 8..end)?;
    (checksum(len, body) == crc).then_some(end)
}

/// A damaged record is a torn tail only if nothing valid follows it.
fn valid_record_after(data: &[u8], from: usize) -> bool {
    (from..data.len().saturating_sub(HEADER - 1)).any(|p| valid_record_at(data, p).is_some())
}

/// A batch record at `at`: where its records end, and whether the write was fsynced.
fn batch_at(data: &[u8], at: usize) -> Option<(usize, bool)> {
    let end = valid_record_at(data, at)?;
    if data[at + 8] != BATCH || end - at != BATCH_RECORD {
        return None;
    }
    let len = u64::from_le_bytes(data[at + HEADER..at + HEADER + 8].try_into().ok()?);
    Some((
        end.checked_add(usize::try_from(len).ok()?)?,
        data[at + HEADER + 8] != 0,
    ))
}

/// Whether valid records run from `from` exactly to `to`.
fn whole(data: &[u8], from: usize, to: usize) -> bool {
    let mut p = from;
    while p < to {
        match valid_record_at(data, p) {
            Some(end) => p = end,
            None => return false,
        }
    }
    p == to
}

/// Whether damage before `from` was fsynced: some later fsynced batch is whole and something
/// was written after it, which the writer does only once that fsync returned; and an fsync
/// covers everything written before it. Otherwise the damage is a write torn by a crash.
fn synced_after(data: &[u8], from: usize) -> bool {
    (from..data.len()).any(|p| match batch_at(data, p) {
        Some((end, true)) => {
            end <= data.len() && whole(data, p + BATCH_RECORD, end) && valid_record_after(data, end)
        }
        _ => false,
    })
}

/// The batch record starting a write of `records` bytes.
fn batch_record(records: usize, durable: bool) -> Vec<u8> {
    let mut payload = (records as u64).to_le_bytes().to_vec();
    payload.push(u8::from(durable));
    let mut out = Vec::with_capacity(BATCH_RECORD);
    encode(&mut out, BATCH, &payload);
    out
}

fn pb<M: Message>(m: &M) -> Vec<u8> {
    // Encoding a valid message into memory does not fail.
    m.write_to_bytes().unwrap_or_default()
}

impl RaftLog {
    /// Opens (or creates) the log in `dir` and replays it. A torn final record, the trace of a
    /// crash mid-write, is cut off; damage anywhere else is refused.
    pub fn open(dir: &Path) -> Result<RaftLog, RaftLogError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let mut gens = generations(dir)?;
        let generation = gens.pop().unwrap_or(0);
        let path = generation_path(dir, generation);
        for old in gens {
            let p = generation_path(dir, old);
            fs::remove_file(&p).map_err(io(&p))?;
        }
        let _ = fs::remove_file(dir.join("next.tmp"));
        let storage = LogStorage::default();
        let fresh = !path.exists();
        let mut write_at = 0;
        if !fresh {
            let replayed = replay(&path, &mut storage.wl())?;
            let valid_len = replayed.valid_len;
            write_at = valid_len;
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io(&path))?;
            if !replayed.reserved_tail && f.metadata().map_err(io(&path))?.len() != valid_len {
                tracing::warn!(path = %path.display(), valid_len, "truncating torn record at the end of the raft log");
                f.set_len(valid_len).map_err(io(&path))?;
                f.sync_all().map_err(io(&path))?;
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        if fresh {
            sync_dir(dir)?;
        }
        let allocated = file.metadata().map_err(io(&path))?.len();
        let file_snap_index = storage.rl().snap_index;
        Ok(RaftLog {
            dir: dir.to_path_buf(),
            generation,
            file,
            write_at,
            allocated,
            pending: Vec::new(),
            storage,
            fresh,
            file_snap_index,
        })
    }

    /// True when the log held nothing when opened: a brand new member.
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }

    pub fn storage(&self) -> LogStorage {
        self.storage.clone()
    }

    pub fn path(&self) -> PathBuf {
        generation_path(&self.dir, self.generation)
    }

    pub fn append(&mut self, entries: &[Entry]) -> Result<(), RaftLogError> {
        if !self.storage.wl().append(entries) {
            return Err(raft::Error::Store(raft::StorageError::Unavailable).into());
        }
        for e in entries {
            self.push(ENTRY, &pb(e));
        }
        Ok(())
    }

    pub fn set_hard_state(&mut self, hs: &HardState) {
        self.storage.wl().hard_state = hs.clone();
        self.push(HARD_STATE, &pb(hs));
    }

    pub fn set_conf_state(&mut self, cs: &ConfState) {
        self.storage.wl().conf_state = cs.clone();
        self.push(CONF_STATE, &pb(cs));
    }

    /// Adds a record to the next write, which starts with room for its batch record.
    fn push(&mut self, kind: u8, payload: &[u8]) {
        if self.pending.is_empty() {
            self.pending.resize(BATCH_RECORD, 0);
        }
        encode(&mut self.pending, kind, payload);
    }

    /// Writes what was appended since the last sync and makes it durable (one fsync for all
    /// the proposals in a raft Ready).
    pub fn sync(&mut self) -> Result<(), RaftLogError> {
        self.write(true)
    }

    /// Writes what was appended, fsyncing only when `durable`: a hard state that only moved
    /// the commit index need not wait for the disk (raft re-learns it), as in etcd.
    pub fn write(&mut self, durable: bool) -> Result<(), RaftLogError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        use std::os::unix::fs::FileExt;
        let path = self.path();
        let batch = batch_record(self.pending.len() - BATCH_RECORD, durable);
        self.pending[..BATCH_RECORD].copy_from_slice(&batch);
        self.reserve(self.pending.len() as u64)?;
        self.file
            .write_all_at(&self.pending, self.write_at)
            .map_err(io(&path))?;
        self.write_at += self.pending.len() as u64;
        fail::fail_point!("walBeforeSync");
        if durable {
            self.file.sync_data().map_err(io(&path))?;
        }
        self.pending.clear();
        Ok(())
    }

    /// Makes sure the file has room for `more` bytes after the records, reserving space a
    /// step at a time. The space is written with zeros rather than fallocate'd: ext4 marks
    /// fallocate'd blocks unwritten and converts them as records land, so every fdatasync
    /// also wrote the inode and extent blocks, waiting for each (44 % of its samples under a
    /// put load). Where the disk is full, writes simply grow the file as far as they can.
    fn reserve(&mut self, more: u64) -> Result<(), RaftLogError> {
        let need = self.write_at + more;
        if need <= self.allocated {
            return Ok(());
        }
        let target = need.div_ceil(PREALLOCATE) * PREALLOCATE;
        match self.write_zeros(self.allocated.max(self.write_at), target) {
            Ok(()) => {
                // The new size must be durable before writes inside it count on it.
                let path = self.path();
                self.file.sync_all().map_err(io(&path))?;
                self.allocated = target;
            }
            Err(e) => {
                tracing::warn!(error = %e, path = %self.path().display(), "cannot reserve raft log space ahead; writing without");
            }
        }
        Ok(())
    }

    fn write_zeros(&self, from: u64, to: u64) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        const STEP: u64 = 1 << 20;
        let zeros = vec![0u8; STEP as usize];
        let mut at = from;
        while at < to {
            let n = STEP.min(to - at);
            self.file.write_all_at(&zeros[..n as usize], at)?;
            at += n;
        }
        Ok(())
    }

    /// Drops entries up to `index` (already applied and persisted in the state machine) and
    /// rewrites the log as a new generation holding only what is left.
    /// Returns whether the file was rewritten (nothing to drop below its start otherwise).
    pub fn compact(&mut self, index: u64) -> Result<bool, RaftLogError> {
        if index <= self.file_snap_index {
            return Ok(false);
        }
        self.sync()?;
        self.storage.wl().compact(index)?;
        self.rewrite()?;
        Ok(true)
    }

    /// The state machine holds everything up to `index` (of `term`) but the log ends before
    /// it, e.g. after its fsynced tail was lost: continue from the state machine as from a
    /// snapshot, as a restored member does.
    pub fn restart_from(
        &mut self,
        index: u64,
        term: u64,
        conf_state: Option<&ConfState>,
    ) -> Result<(), RaftLogError> {
        self.sync()?;
        {
            let mut core = self.storage.wl();
            core.entries.clear();
            core.snap_index = index;
            core.snap_term = term;
            if let Some(cs) = conf_state {
                core.conf_state = cs.clone();
            }
            core.hard_state.commit = core.hard_state.commit.max(index);
            core.hard_state.term = core.hard_state.term.max(term);
        }
        self.rewrite()
    }

    /// Drops the entries after `index` (uncommitted ones, when forcing a new cluster) and
    /// rewrites the log without them. Returns how many were dropped.
    pub fn discard_after(&mut self, index: u64) -> Result<u64, RaftLogError> {
        let last = self.last_index();
        if index >= last {
            return Ok(0);
        }
        self.sync()?;
        {
            let mut core = self.storage.wl();
            if index < core.snap_index {
                return Err(raft::Error::Store(raft::StorageError::Compacted).into());
            }
            let keep = (index - core.snap_index) as usize;
            core.entries.truncate(keep);
            core.hard_state.commit = core.hard_state.commit.min(index);
        }
        self.rewrite()?;
        Ok(last - index)
    }

    /// Installs a snapshot from the leader, whose state the state machine already holds: the
    /// log restarts right after it, with its membership.
    pub fn apply_snapshot(&mut self, meta: &SnapshotMetadata) -> Result<(), RaftLogError> {
        self.sync()?;
        {
            let mut core = self.storage.wl();
            core.entries.clear();
            core.snap_index = meta.index;
            core.snap_term = meta.term;
            core.conf_state = meta.get_conf_state().clone();
            core.hard_state.commit = core.hard_state.commit.max(meta.index);
            core.hard_state.term = core.hard_state.term.max(meta.term);
        }
        self.rewrite()
    }

    pub fn conf_state(&self) -> ConfState {
        self.storage.rl().conf_state.clone()
    }

    /// Writes the in-memory log as a new generation file (snapshot record, hard state,
    /// entries), then removes the old one.
    fn rewrite(&mut self) -> Result<(), RaftLogError> {
        let mut records = Vec::new();
        {
            let core = self.storage.rl();
            let mut meta = SnapshotMetadata {
                index: core.snap_index,
                term: core.snap_term,
                ..Default::default()
            };
            meta.set_conf_state(core.conf_state.clone());
            encode(&mut records, SNAPSHOT, &pb(&meta));
            encode(&mut records, HARD_STATE, &pb(&core.hard_state));
            for e in &core.entries {
                encode(&mut records, ENTRY, &pb(e));
            }
        }
        let mut buf = batch_record(records.len(), true);
        buf.extend_from_slice(&records);
        let tmp = self.dir.join("next.tmp");
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&buf).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        let next = generation_path(&self.dir, self.generation + 1);
        fs::rename(&tmp, &next).map_err(io(&next))?;
        sync_dir(&self.dir)?;
        let old = self.path();
        self.file = OpenOptions::new()
            .write(true)
            .open(&next)
            .map_err(io(&next))?;
        self.write_at = buf.len() as u64;
        self.allocated = self.write_at;
        self.generation += 1;
        self.file_snap_index = self.storage.rl().snap_index;
        fs::remove_file(&old).map_err(io(&old))?;
        Ok(())
    }

    /// Entries up to `applied` were applied, hence committed, even if the hard state written
    /// before a crash says less (commit is written lazily).
    pub fn raise_commit_to(&mut self, applied: u64) {
        let mut core = self.storage.wl();
        let target = applied.min(core.last_index());
        if core.hard_state.commit < target {
            core.hard_state.commit = target;
        }
    }

    /// Drops in-memory entries up to `index` (applied already) without touching the file:
    /// the file keeps them until `compact`, for replay after a crash.
    pub fn release_memory(&mut self, index: u64) -> Result<(), RaftLogError> {
        let mut core = self.storage.wl();
        let upto = index.min(core.last_index());
        core.compact(upto)?;
        Ok(())
    }

    pub fn first_index(&self) -> u64 {
        self.storage.rl().first_index()
    }

    pub fn last_index(&self) -> u64 {
        self.storage.rl().last_index()
    }
}

struct Replayed {
    /// The length of the valid records.
    valid_len: u64,
    /// What follows them is reserved space (zeros), not a torn record.
    reserved_tail: bool,
}

/// Reads every record of `path` into `core`.
fn replay(path: &Path, core: &mut Core) -> Result<Replayed, RaftLogError> {
    let mut data = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(io(path))?;
    let replayed = replay_data(path, &data, core)?;
    let valid_len = replayed.valid_len as usize;
    if !replayed.reserved_tail && valid_len < data.len() {
        // A torn write is cut off whole: what replay took of it goes too.
        *core = Core::default();
        replay_data(path, &data[..valid_len], core)?;
    }
    Ok(replayed)
}

fn replay_data(path: &Path, data: &[u8], core: &mut Core) -> Result<Replayed, RaftLogError> {
    let corrupt = |offset: usize, reason: &str| RaftLogError::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason: reason.to_string(),
    };
    let torn = |off: usize| Replayed {
        valid_len: off as u64,
        reserved_tail: false,
    };
    // The write being replayed (where it starts and its records end), once the file has any.
    let mut batch: Option<(usize, usize)> = None;
    // A damaged record at `off`: in a file written in batches, a torn write (cut off from
    // its start) unless a later fsynced write proves it was synced; in an older file, a torn
    // tail only if nothing valid follows.
    let damaged = |off: usize, batch: Option<(usize, usize)>, reason: &str| match batch {
        Some((start, end)) => {
            let (start, after) = if off < end {
                (start, end)
            } else {
                (off, off + 1)
            };
            if synced_after(data, after) {
                Err(corrupt(off, reason))
            } else {
                Ok(torn(start))
            }
        }
        None if valid_record_after(data, off + 1) => Err(corrupt(off, reason)),
        None => Ok(torn(off)),
    };
    let mut off = 0usize;
    while off < data.len() {
        let rest = data.len() - off;
        if rest < HEADER {
            return damaged(off, batch, "torn header");
        }
        if data[off + 8] == 0 && data[off..].iter().all(|b| *b == 0) {
            if let Some((start, _)) = batch.filter(|(_, end)| off < *end) {
                return Ok(torn(start)); // the write's last records never reached the disk
            }
            return Ok(Replayed {
                valid_len: off as u64,
                reserved_tail: true,
            });
        }
        let len =
            u32::from_le_bytes([data[off], data[off + 1], data[off + 2], data[off + 3]]) as usize;
        let crc = u32::from_le_bytes([data[off + 4], data[off + 5], data[off + 6], data[off + 7]]);
        let end = off + HEADER + len;
        if len > MAX_RECORD || end > data.len() {
            return damaged(off, batch, "record length runs past valid records");
        }
        let body = &data[off + 8..end];
        if checksum(len as u32, body) != crc {
            return damaged(off, batch, "checksum mismatch");
        }
        let (kind, payload) = (body[0], &body[1..]);
        let bad = |_| corrupt(off, "undecodable record");
        match kind {
            BATCH => match batch_at(data, off) {
                Some((records_end, _)) => batch = Some((off, records_end)),
                None => return Err(corrupt(off, "malformed batch record")),
            },
            ENTRY => {
                let e = Entry::parse_from_bytes(payload).map_err(bad)?;
                if !core.append(std::slice::from_ref(&e)) {
                    return Err(corrupt(off, "entry index out of sequence"));
                }
            }
            HARD_STATE => core.hard_state = HardState::parse_from_bytes(payload).map_err(bad)?,
            CONF_STATE => core.conf_state = ConfState::parse_from_bytes(payload).map_err(bad)?,
            SNAPSHOT => {
                let mut meta = SnapshotMetadata::parse_from_bytes(payload).map_err(bad)?;
                core.entries.clear();
                core.snap_index = meta.index;
                core.snap_term = meta.term;
                core.conf_state = meta.take_conf_state();
            }
            _ => return Err(corrupt(off, "unknown record kind")),
        }
        off = end;
    }
    if let Some((start, _)) = batch.filter(|(_, end)| off < *end) {
        return Ok(torn(start)); // the file ends inside the last write
    }
    Ok(Replayed {
        valid_len: off as u64,
        reserved_tail: false,
    })
}

#[cfg(test)]
mod tests;
