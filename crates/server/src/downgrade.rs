//! A downgrade job (Maintenance.Downgrade, services/downgrade.rs) as it is recorded: etcd's
//! JSON under the cluster bucket's "downgrade" key, so backups carry it; and versions parsed
//! as etcd parses a downgrade's target.

use oxcd_api::oxcdpb::DowngradeInfoSet;
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
