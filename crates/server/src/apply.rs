//! The apply thread: committed raft entries, in order, become MVCC writes. A run of entries
//! shares one backend transaction, which also records the applied index, and only after it
//! commits are proposers woken, so that what they were told is what readers see.

use crate::membership;
use crate::node::NodeMsg;
use crate::server::{Applied, Waiters};
use oxcd_api::oxcdpb::{internal_request::Request, InternalRequest};
use oxcd_api::EtcdError;
use oxcd_mvcc::{Store, StoreError, WriteBatch, META_APPLIED_INDEX, META_APPLIED_TERM};
use prost::Message;
use raft::eraftpb::{Entry, EntryType};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Entries kept in the raft log behind a snapshot, as etcd's catch-up tail.
pub const CATCH_UP_ENTRIES: u64 = 5000;
/// How often (in applied entries) the in-memory raft log drops what is applied.
const RELEASE_EVERY: u64 = 10_000;
/// The longest a run of applied writes stays out of a durable backend commit (etcd's batch
/// interval). The raft log covers them meanwhile, and redb reuses freed pages only after one.
const DURABLE_EVERY: Duration = Duration::from_millis(100);

pub struct Applier {
    pub store: Arc<Store>,
    pub inbox: Receiver<Vec<Entry>>,
    pub node: Sender<NodeMsg>,
    pub waiters: Arc<Waiters>,
    pub applied: watch::Sender<u64>,
    pub snapshot_count: u64,
}

/// Where applying stands, and when the periodic follow-ups last ran.
struct Progress {
    applied: u64,
    last_snapshot: u64,
    last_release: u64,
    last_durable: Instant,
}

impl Applier {
    pub fn run(self) {
        let applied = *self.applied.borrow();
        let mut progress = Progress {
            applied,
            last_snapshot: applied,
            last_release: applied,
            last_durable: Instant::now(),
        };
        while let Ok(first) = self.inbox.recv() {
            let mut entries = first;
            while let Ok(more) = self.inbox.try_recv() {
                entries.extend(more);
            }
            if let Err(e) = self.apply_batch(&entries, &mut progress) {
                tracing::error!(error = %e, "failed to apply committed entries; stopping");
                std::process::exit(1);
            }
        }
    }

    fn apply_batch(&self, entries: &[Entry], p: &mut Progress) -> Result<(), StoreError> {
        let mut wb = self.store.begin_write()?;
        let mut replies = Vec::new();
        let mut term = 0;
        for e in entries {
            if e.index <= p.applied {
                continue;
            }
            if e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty() {
                match InternalRequest::decode(&e.data[..]) {
                    Ok(req) => replies.push((req.id, apply_one(&mut wb, req.request)?)),
                    Err(err) => {
                        tracing::error!(index = e.index, error = %err, "skipping undecodable raft entry")
                    }
                }
            }
            p.applied = e.index;
            term = e.term;
        }
        if term == 0 {
            return Ok(());
        }
        wb.set_meta(META_APPLIED_INDEX, p.applied)?;
        wb.set_meta(META_APPLIED_TERM, term)?;
        let snapshot_due = p.applied - p.last_snapshot >= self.snapshot_count.max(1);
        let durable = snapshot_due || p.last_durable.elapsed() >= DURABLE_EVERY;
        wb.commit(durable)?;
        if durable {
            p.last_durable = Instant::now();
        }
        self.applied.send_replace(p.applied);
        for (id, result) in replies {
            self.waiters.finish(id, result);
        }
        let keep_from = p.applied.saturating_sub(CATCH_UP_ENTRIES);
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

/// One request's effect. Refusals (`Err(EtcdError)`) go back to the proposer; disk failures
/// stop the node.
fn apply_one(
    wb: &mut WriteBatch<'_>,
    req: Option<Request>,
) -> Result<Result<Applied, EtcdError>, StoreError> {
    let out = match req {
        Some(Request::Put(r)) => wb.put(&r).map(Applied::Put),
        Some(Request::DeleteRange(r)) => wb.delete_range(&r).map(Applied::DeleteRange),
        Some(Request::Txn(r)) => wb.txn(&r).map(Applied::Txn),
        Some(Request::Compaction(r)) => wb.compact(&r).map(Applied::Compacted),
        Some(Request::Publish(attrs)) => publish(wb, attrs).map(|_| Applied::Published),
        None => Ok(Applied::Published),
    };
    match out {
        Ok(a) => Ok(Ok(a)),
        Err(StoreError::Request(e)) => Ok(Err(e)),
        Err(e) => Err(e),
    }
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
