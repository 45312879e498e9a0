//! --auto-compaction-mode and --auto-compaction-retention, as etcd's compactor: on the leader
//! only, `periodic` compacts to the revision current one retention ago, `revision` keeps the
//! last N revisions (looking every 5 minutes).

use crate::config::AutoCompaction;
use crate::server::EtcdServer;
use oxcd_api::etcdserverpb::CompactionRequest;
use oxcd_api::oxcdpb::internal_request::Request as Internal;
use oxcd_api::{EtcdError, Revision};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How often `revision` mode looks.
const REVISION_INTERVAL: Duration = Duration::from_secs(300);

pub async fn run(server: Arc<EtcdServer>, policy: AutoCompaction) {
    let leader = || server.raft.is_leader.load(Ordering::Acquire);
    match policy {
        AutoCompaction::Off => {}
        AutoCompaction::Periodic(period) => {
            // etcd: compact at most hourly, sample the revision ten times per interval.
            let interval = period.min(Duration::from_secs(3600));
            let sample = interval / 10;
            let keep = (period.as_secs_f64() / sample.as_secs_f64()) as usize + 1;
            let mut revs: VecDeque<Revision> = VecDeque::new();
            let mut last = tokio::time::Instant::now();
            let mut wait = period;
            loop {
                revs.push_back(server.store.current_revision());
                if revs.len() > keep {
                    revs.pop_front();
                }
                tokio::time::sleep(sample).await;
                if !leader() || last.elapsed() < wait {
                    continue;
                }
                wait = interval;
                let Some(&rev) = revs.front() else { continue };
                tracing::info!(revision = rev.0, compact_period = ?period, "starting auto periodic compaction");
                match compact(&server, rev).await {
                    Ok(()) => {
                        tracing::info!(revision = rev.0, compact_period = ?period, "completed auto periodic compaction");
                        last = tokio::time::Instant::now();
                    }
                    Err(e) => {
                        tracing::warn!(revision = rev.0, error = %e, "failed auto periodic compaction")
                    }
                }
            }
        }
        AutoCompaction::Revision(retention) => {
            let mut previous = Revision(0);
            loop {
                tokio::time::sleep(REVISION_INTERVAL).await;
                if !leader() {
                    continue;
                }
                let rev = server.store.current_revision() - retention;
                if rev <= Revision(0) || rev == previous {
                    continue;
                }
                tracing::info!(
                    revision = rev.0,
                    revision_compaction_retention = retention,
                    "starting auto revision compaction"
                );
                match compact(&server, rev).await {
                    Ok(()) => {
                        previous = rev;
                        tracing::info!(
                            revision = rev.0,
                            revision_compaction_retention = retention,
                            "completed auto revision compaction"
                        );
                    }
                    Err(e) => {
                        tracing::warn!(revision = rev.0, error = %e, "failed auto revision compaction")
                    }
                }
            }
        }
    }
}

async fn compact(server: &EtcdServer, revision: Revision) -> Result<(), EtcdError> {
    let req = CompactionRequest {
        revision: revision.0,
        physical: false,
    };
    match server.propose(Internal::Compaction(req)).await {
        Ok(_) | Err(EtcdError::Compacted) => Ok(()),
        Err(e) => Err(e),
    }
}

/// How often a member looks for compacted history left to delete.
const DELETION_POLL: Duration = Duration::from_millis(100);

/// Deletes what compactions left in the backend, `batch_limit` records at a time with
/// `pause` between batches, so writes and reads go on in between (etcd's
/// --experimental-compaction-batch-limit and --experimental-compaction-sleep-interval).
pub async fn delete_compacted(store: Arc<oxcd_mvcc::Store>, batch_limit: usize, pause: Duration) {
    loop {
        if !store.compaction_pending() {
            tokio::time::sleep(DELETION_POLL).await;
            continue;
        }
        let started = std::time::Instant::now();
        loop {
            let batch = store.clone();
            match crate::blocking::run(None, move || batch.compact_step(batch_limit)).await {
                Ok(Ok(true)) => tokio::time::sleep(pause).await,
                Ok(Ok(false)) => break,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "failed to delete compacted history");
                    tokio::time::sleep(DELETION_POLL).await;
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "compaction batch did not finish");
                    break;
                }
            }
        }
        tracing::info!(
            compact_revision = store.physically_compacted().0,
            took = ?started.elapsed(),
            "finished scheduled compaction"
        );
    }
}

/// Waits until compacted history up to `rev` is deleted from the backend
/// (CompactionRequest.physical).
pub async fn wait_physical(store: &oxcd_mvcc::Store, rev: Revision) {
    while store.physically_compacted() < rev {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
