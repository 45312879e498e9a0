//! Maintenance.Downgrade as etcd 3.5 answers it: a target one minor below the cluster
//! version is validated, a downgrade job is recorded through raft (etcd's JSON under the
//! cluster bucket's "downgrade" key, so backups carry it), and cancelled. oxcd records and
//! reports the job; there is no older oxcd for members to move to, so the cluster version
//! stays where it is until the job is cancelled.

use crate::server::EtcdServer;
use oxcd_api::etcdserverpb::downgrade_request::DowngradeAction;
use oxcd_api::oxcdpb::internal_request::Request as Internal;
use oxcd_api::oxcdpb::DowngradeInfoSet;
use oxcd_api::EtcdError;
use serde::{Deserialize, Serialize};

/// The cluster record holding the job.
pub const RECORD: &str = "downgrade";

/// etcd's membership.DowngradeInfo, as it stores it.
#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DowngradeInfo {
    #[serde(rename = "target-version")]
    pub target_version: String,
    pub enabled: bool,
}

impl DowngradeInfo {
    pub fn record(set: &DowngradeInfoSet) -> Vec<u8> {
        let info = DowngradeInfo {
            target_version: if set.enabled {
                set.ver.clone()
            } else {
                String::new()
            },
            enabled: set.enabled,
        };
        serde_json::to_vec(&info).unwrap_or_default()
    }
}

/// A version as major and minor: "X.Y.Z" (pre-release and build metadata dropped) or "X.Y",
/// as etcd's convertToClusterVersion takes it.
pub fn major_minor(text: &str) -> Option<(u64, u64)> {
    let core = text.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    if !(2..=3).contains(&parts.len()) || text.starts_with(['-', '+']) {
        return None;
    }
    let numbers: Option<Vec<u64>> = parts
        .iter()
        .map(|p| {
            let leading_zero = p.len() > 1 && p.starts_with('0');
            (!p.is_empty() && !leading_zero && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse().ok())
                .flatten()
        })
        .collect();
    let numbers = numbers?;
    // "X.Y" with a pre-release is not a version to go-semver even with ".0" added.
    if parts.len() == 2 && core.len() != text.len() {
        return None;
    }
    Some((numbers[0], numbers[1]))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_as_etcds_convert_to_cluster_version() {
        for (text, want) in [
            ("3.4", Some((3, 4))),
            ("3.4.0", Some((3, 4))),
            ("3.4.7", Some((3, 4))),
            ("3.4.0-rc.1", Some((3, 4))),
            ("3.4.0+git", Some((3, 4))),
            ("v3.4", None),
            ("3", None),
            ("", None),
            ("3.4.x", None),
            ("3.4.0.1", None),
            ("03.4", None),
        ] {
            assert_eq!(major_minor(text), want, "{text:?}");
        }
    }

    #[test]
    fn the_record_is_etcds_json() {
        let on = DowngradeInfo::record(&DowngradeInfoSet {
            enabled: true,
            ver: "3.4.0".into(),
        });
        assert_eq!(on, br#"{"target-version":"3.4.0","enabled":true}"#);
        let off = DowngradeInfo::record(&DowngradeInfoSet {
            enabled: false,
            ver: "3.4.0".into(),
        });
        assert_eq!(off, br#"{"target-version":"","enabled":false}"#);
    }
}
