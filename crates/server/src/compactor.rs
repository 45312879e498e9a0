//! --auto-compaction-mode and --auto-compaction-retention, as etcd's compactor: on the leader
//! only, `periodic` compacts to the revision current one retention ago, `revision` keeps the
//! last N revisions (looking every 5 minutes).

use crate::server::EtcdServer;
use oxcd_api::etcdserverpb::CompactionRequest;
use oxcd_api::oxcdpb::internal_request::Request as Internal;
use oxcd_api::EtcdError;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub enum AutoCompaction {
    Off,
    Periodic(Duration),
    Revision(i64),
}

/// The flags as etcd reads them: a bare number is hours in periodic mode.
pub fn parse(mode: &str, retention: &str) -> Result<AutoCompaction, String> {
    let bad = || format!("invalid auto compaction retention {retention:?} for mode {mode:?}");
    match mode {
        "periodic" => {
            let d = match retention.parse::<u64>() {
                Ok(hours) => Duration::from_secs(hours * 3600),
                Err(_) => crate::config::parse_go_duration(retention).ok_or_else(bad)?,
            };
            Ok(if d.is_zero() {
                AutoCompaction::Off
            } else {
                AutoCompaction::Periodic(d)
            })
        }
        "revision" => {
            let n: i64 = retention.parse().map_err(|_| bad())?;
            Ok(if n <= 0 {
                AutoCompaction::Off
            } else {
                AutoCompaction::Revision(n)
            })
        }
        other => Err(format!("unknown auto-compaction-mode {other:?}")),
    }
}

const REVISION_INTERVAL: Duration = Duration::from_secs(300);

async fn compact(server: &EtcdServer, revision: i64) -> Result<(), EtcdError> {
    let req = CompactionRequest {
        revision,
        physical: false,
    };
    match server.propose(Internal::Compaction(req)).await {
        Ok(_) | Err(EtcdError::Compacted) => Ok(()),
        Err(e) => Err(e),
    }
}

pub async fn run(server: Arc<EtcdServer>, policy: AutoCompaction) {
    let leader = || server.raft.is_leader.load(Ordering::Acquire);
    match policy {
        AutoCompaction::Off => {}
        AutoCompaction::Periodic(period) => {
            // etcd: compact at most hourly, sample the revision ten times per interval.
            let interval = period.min(Duration::from_secs(3600));
            let sample = interval / 10;
            let keep = (period.as_secs_f64() / sample.as_secs_f64()) as usize + 1;
            let mut revs: VecDeque<i64> = VecDeque::new();
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
                tracing::info!(revision = rev, compact_period = ?period, "starting auto periodic compaction");
                match compact(&server, rev).await {
                    Ok(()) => {
                        tracing::info!(revision = rev, compact_period = ?period, "completed auto periodic compaction");
                        last = tokio::time::Instant::now();
                    }
                    Err(e) => {
                        tracing::warn!(revision = rev, error = %e, "failed auto periodic compaction")
                    }
                }
            }
        }
        AutoCompaction::Revision(retention) => {
            let mut previous = 0;
            loop {
                tokio::time::sleep(REVISION_INTERVAL).await;
                if !leader() {
                    continue;
                }
                let rev = server.store.current_revision() - retention;
                if rev <= 0 || rev == previous {
                    continue;
                }
                tracing::info!(
                    revision = rev,
                    revision_compaction_retention = retention,
                    "starting auto revision compaction"
                );
                match compact(&server, rev).await {
                    Ok(()) => {
                        previous = rev;
                        tracing::info!(
                            revision = rev,
                            revision_compaction_retention = retention,
                            "completed auto revision compaction"
                        );
                    }
                    Err(e) => {
                        tracing::warn!(revision = rev, error = %e, "failed auto revision compaction")
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_reads_as_etcd_reads_it() {
        assert_eq!(parse("periodic", "0"), Ok(AutoCompaction::Off));
        assert_eq!(
            parse("periodic", "1"),
            Ok(AutoCompaction::Periodic(Duration::from_secs(3600)))
        );
        assert_eq!(
            parse("periodic", "30m"),
            Ok(AutoCompaction::Periodic(Duration::from_secs(1800)))
        );
        assert_eq!(
            parse("revision", "1000"),
            Ok(AutoCompaction::Revision(1000))
        );
        assert!(parse("revision", "1h").is_err());
        assert!(parse("weekly", "1").is_err());
    }
}
