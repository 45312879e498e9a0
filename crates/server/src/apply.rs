//! The apply thread: committed raft entries, in order, become MVCC writes. A run of entries
//! shares one backend transaction, which also records the applied index, and only after it
//! commits are proposers woken, so that what they were told is what readers see.

use crate::node::NodeMsg;
use crate::server::{Applied, Waiters};
use oxcd_api::oxcdpb::{internal_request::Request, ClusterRecord, InternalRequest};
use oxcd_api::EtcdError;
use oxcd_mvcc::{Store, StoreError, WriteBatch, META_APPLIED_INDEX, META_APPLIED_TERM};
use prost::Message;
use raft::eraftpb::{Entry, EntryType};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub const CLUSTER_RECORD: &str = "cluster";
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

impl Applier {
    pub fn run(self) {
        let mut applied = *self.applied.borrow();
        let mut last_snapshot = applied;
        let mut last_release = applied;
        let mut last_durable = Instant::now();
        while let Ok(first) = self.inbox.recv() {
            let mut entries = first;
            while let Ok(more) = self.inbox.try_recv() {
                entries.extend(more);
            }
            match self.apply_batch(
                &entries,
                &mut applied,
                &mut last_snapshot,
                &mut last_durable,
            ) {
                Ok(()) if applied - last_release >= RELEASE_EVERY => {
                    last_release = applied;
                    let _ = self.node.send(NodeMsg::ReleaseApplied {
                        index: applied.saturating_sub(CATCH_UP_ENTRIES),
                    });
                }
                Ok(()) => {}
                Err(e) => {
                    tracing::error!(error = %e, "failed to apply committed entries; stopping");
                    std::process::exit(1);
                }
            }
        }
        // Shutting down: leave the backend durable so restart replays nothing.
        if let Ok(wb) = self.store.begin_write() {
            let _ = wb.commit(true);
        }
    }

    fn apply_batch(
        &self,
        entries: &[Entry],
        applied: &mut u64,
        last_snapshot: &mut u64,
        last_durable: &mut Instant,
    ) -> Result<(), StoreError> {
        let mut wb = self.store.begin_write()?;
        let mut replies = Vec::new();
        let mut term = 0;
        for e in entries {
            if e.index <= *applied {
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
            *applied = e.index;
            term = e.term;
        }
        if term == 0 {
            return Ok(());
        }
        wb.set_meta(META_APPLIED_INDEX, *applied)?;
        wb.set_meta(META_APPLIED_TERM, term)?;
        let snapshot_due = *applied - *last_snapshot >= self.snapshot_count.max(1);
        let durable = snapshot_due || last_durable.elapsed() >= DURABLE_EVERY;
        wb.commit(durable)?;
        if durable {
            *last_durable = Instant::now();
        }
        self.applied.send_replace(*applied);
        for (id, result) in replies {
            self.waiters.finish(id, result);
        }
        if snapshot_due {
            *last_snapshot = *applied;
            tracing::info!(applied_index = *applied, "triggering snapshot");
            let _ = self.node.send(NodeMsg::CompactLog {
                index: applied.saturating_sub(CATCH_UP_ENTRIES),
            });
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
    let mut record = wb_cluster(wb)?;
    if let Some(m) = record.members.iter_mut().find(|m| m.id == attrs.id) {
        m.name = attrs.name;
        m.client_ur_ls = attrs.client_urls;
    }
    wb.set_cluster_record(CLUSTER_RECORD, &record.encode_to_vec())
}

fn wb_cluster(wb: &WriteBatch<'_>) -> Result<ClusterRecord, StoreError> {
    let bytes = wb.cluster_record(CLUSTER_RECORD)?.unwrap_or_default();
    ClusterRecord::decode(&bytes[..])
        .map_err(|e| StoreError::Request(EtcdError::Internal(format!("cluster record: {e}"))))
}
