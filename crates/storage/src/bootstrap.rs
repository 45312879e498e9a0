//! A new cluster's first state, from `--initial-cluster` and friends: the members and their
//! IDs (derived as etcd derives them), written to the backend before the first raft entry.

use crate::{membership, records};
use oxcd_api::etcdserverpb::Member;
use oxcd_api::oxcdpb::ClusterRecord;
use oxcd_api::{ClusterId, MemberId};
use oxcd_mvcc::{Store, META_APPLIED_INDEX, META_APPLIED_TERM, META_MEMBER_ID};
use oxcd_raftlog::RaftLog;
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Backend(#[from] oxcd_mvcc::BackendError),
    #[error(transparent)]
    Store(#[from] oxcd_mvcc::StoreError),
    #[error(transparent)]
    RaftLog(#[from] oxcd_raftlog::RaftLogError),
}

/// The flags that name a new cluster's members.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InitialCluster {
    /// This member's `--name`.
    pub name: String,
    /// `--initial-cluster`: each name's peer URLs.
    pub members: BTreeMap<String, Vec<String>>,
    pub token: String,
    /// `--initial-advertise-peer-urls`.
    pub advertise_peer_urls: Vec<String>,
}

/// A flag's comma-separated URLs as etcd takes them: http or https, with a port; the
/// error worded as etcd's flag parsing words it.
pub fn parse_urls(flag: &str, text: &str) -> Result<Vec<url::Url>, String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let bad = |why: &str| format!("invalid value {s:?} for flag -{flag}: {why}");
            let u = url::Url::parse(s).map_err(|e| bad(&e.to_string()))?;
            if u.scheme() != "http" && u.scheme() != "https" {
                return Err(bad(&format!(
                    "URL scheme must be http, https, unix, or unixs: {s}"
                )));
            }
            if u.port().is_none() {
                return Err(bad("missing port in address"));
            }
            Ok(u)
        })
        .collect()
}

/// URLs without a trailing slash, sorted: the form IDs are derived from.
pub fn normalized(urls: &[String]) -> Vec<String> {
    let mut v: Vec<String> = urls
        .iter()
        .map(|u| u.trim_end_matches('/').to_string())
        .collect();
    v.sort();
    v
}

impl InitialCluster {
    /// `--initial-cluster`'s `name=url,name=url` text.
    pub fn parse_members(text: &str) -> Result<BTreeMap<String, Vec<String>>, String> {
        let mut members: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for part in text.split(',').filter(|s| !s.is_empty()) {
            let (n, u) = part
                .split_once('=')
                .ok_or_else(|| format!("--initial-cluster has an entry without '=': {part:?}"))?;
            members
                .entry(n.to_string())
                .or_default()
                .push(u.to_string());
        }
        Ok(members)
    }

    /// The initial members with their IDs, and this member's ID.
    pub fn members(&self) -> Result<(MemberId, Vec<Member>), BootstrapError> {
        let own_urls = self.members.get(&self.name).ok_or_else(|| {
            BootstrapError::Config(format!(
                "couldn't find local name {:?} in the initial cluster configuration",
                self.name
            ))
        })?;
        if normalized(own_urls) != normalized(&self.advertise_peer_urls) {
            return Err(BootstrapError::Config(format!(
                "--initial-cluster has {}={} but missing from --initial-advertise-peer-urls={}",
                self.name,
                own_urls.join(","),
                self.advertise_peer_urls
                    .join(",")
                    .replace("/,", ",")
                    .trim_end_matches('/')
            )));
        }
        let members = self
            .members
            .iter()
            .map(|(name, urls)| Member {
                id: MemberId::derive(&normalized(urls), &self.token).0,
                name: if name == &self.name {
                    name.clone()
                } else {
                    String::new()
                },
                peer_ur_ls: normalized(urls),
                client_ur_ls: vec![],
                is_learner: false,
            })
            .collect();
        Ok((
            MemberId::derive(&normalized(own_urls), &self.token),
            members,
        ))
    }
}

/// Writes a new cluster's identity and membership before its first raft entry exists. The
/// log starts after a snapshot at index 1 holding the initial members, so a member joining
/// later always starts from a leader's snapshot, membership included.
pub fn bootstrap(
    cluster: &InitialCluster,
    store: &Store,
    log: &mut RaftLog,
) -> Result<(MemberId, ClusterId), BootstrapError> {
    let (member_id, members) = cluster.members()?;
    let ids: Vec<MemberId> = members.iter().map(|m| MemberId(m.id)).collect();
    let cluster_id = ClusterId::derive(&ids);
    let record = ClusterRecord {
        cluster_id: cluster_id.0,
        members,
        removed: vec![],
    };
    let cs = raft::eraftpb::ConfState {
        voters: ids.iter().map(|m| m.0).collect(),
        ..Default::default()
    };
    let mut wb = store.begin_write()?;
    membership::save(&mut wb, &record)?;
    wb.set_meta(META_MEMBER_ID, member_id.0)?;
    wb.set_meta(META_APPLIED_INDEX, 1)?;
    wb.set_meta(META_APPLIED_TERM, 1)?;
    records::save_conf_state(&mut wb, &cs)?;
    wb.commit(true)?;
    log.set_conf_state(&cs);
    log.restart_from(1, 1, None)?;
    for id in &ids {
        tracing::info!(local_member_id = %member_id, added_peer_id = %id, cluster_id = %cluster_id, "added member");
    }
    Ok((member_id, cluster_id))
}
