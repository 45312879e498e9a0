//! Maintenance.Downgrade as etcd 3.5 answers it: a target one minor below the cluster
//! version is validated, a downgrade job is recorded through raft, and cancelled. oxcd
//! records and reports the job; there is no older oxcd for members to move to, so the
//! cluster version stays where it is until the job is cancelled.

use crate::downgrade::{major_minor, DowngradeInfo, RECORD};
use crate::server::EtcdServer;
use oxcd_api::etcdserverpb::downgrade_request::DowngradeAction;
use oxcd_api::oxcdpb::internal_request::Request as Internal;
use oxcd_api::oxcdpb::DowngradeInfoSet;
use oxcd_api::EtcdError;

fn cluster_version() -> (u64, u64) {
    major_minor(oxcd_api::CLUSTER_VERSION).unwrap_or((3, 5))
}

fn current(server: &EtcdServer) -> Result<DowngradeInfo, EtcdError> {
    let record = server
        .store
        .cluster_record(RECORD)
        .map_err(|e| EtcdError::Internal(e.to_string()))?;
    Ok(record
        .and_then(|r| serde_json::from_slice(&r).ok())
        .unwrap_or_default())
}

/// The target, if a downgrade to it may start now.
async fn validate(server: &EtcdServer, target: &str) -> Result<(u64, u64), EtcdError> {
    let target = major_minor(target).ok_or(EtcdError::WrongDowngradeVersionFormat)?;
    server.linearizable_read_barrier().await?;
    let (major, minor) = cluster_version();
    if minor == 0 || target != (major, minor - 1) {
        return Err(EtcdError::InvalidDowngradeTargetVersion);
    }
    if current(server)?.enabled {
        return Err(EtcdError::DowngradeInProcess);
    }
    Ok(target)
}

/// Carries out one Downgrade request; the cluster version the response reports.
pub async fn downgrade(
    server: &EtcdServer,
    action: DowngradeAction,
    target: &str,
) -> Result<String, EtcdError> {
    let set = match action {
        DowngradeAction::Validate => {
            validate(server, target).await?;
            None
        }
        DowngradeAction::Enable => {
            let (major, minor) = validate(server, target).await?;
            Some(DowngradeInfoSet {
                enabled: true,
                ver: format!("{major}.{minor}.0"),
            })
        }
        DowngradeAction::Cancel => {
            server.linearizable_read_barrier().await?;
            if !current(server)?.enabled {
                return Err(EtcdError::NoInflightDowngrade);
            }
            Some(DowngradeInfoSet {
                enabled: false,
                ver: String::new(),
            })
        }
    };
    if let Some(set) = set {
        server.propose(Internal::DowngradeInfoSet(set)).await?;
    }
    Ok(oxcd_api::CLUSTER_VERSION.to_string())
}
