//! Who this member is: read from its data dir, or made now, by bootstrapping a new cluster
//! from the flags or by joining a running one (`--initial-cluster-state existing`).

use crate::config::{ClusterState, Config};
use crate::error::{io_error, StartError};
use oxcd_api::oxcdpb::ClusterRecord;
use oxcd_api::{ClusterId, MemberId};
use oxcd_storage::bootstrap::normalized;
use oxcd_storage::{membership, DataDir, InitialCluster, RaftLog, Store, META_MEMBER_ID};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A member's opened storage: the backend and the raft log.
pub struct Storage {
    pub dir: DataDir,
    pub store: Arc<Store>,
    pub log: RaftLog,
}

pub fn open_storage(dir: DataDir) -> Result<Storage, StartError> {
    dir.create().map_err(StartError::DataDir)?;
    let db_path = dir.backend_path();
    let store = Arc::new(Store::open(&db_path)?);
    tracing::info!(path = %db_path.display(), "opened backend db");
    let log = RaftLog::open(&dir.wal_dir())?;
    recover_snapshot_file(&store, &dir.snap_dir())?;
    Ok(Storage { dir, store, log })
}

pub fn initial_cluster(config: &Config) -> InitialCluster {
    InitialCluster {
        name: config.name.clone(),
        members: config.initial_cluster.clone(),
        token: config.initial_cluster_token.clone(),
        advertise_peer_urls: config
            .initial_advertise_peer_urls
            .iter()
            .map(|u| u.to_string())
            .collect(),
    }
}

/// This member's and its cluster's IDs.
pub async fn identify(
    config: &Config,
    storage: &mut Storage,
    peer_tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<(MemberId, ClusterId), StartError> {
    let Storage { dir, store, log } = storage;
    match membership::load(store)? {
        None if log.is_fresh() && config.initial_cluster_state == ClusterState::Existing => {
            join(config, store, peer_tls).await
        }
        None if log.is_fresh() => Ok(oxcd_storage::bootstrap(
            &initial_cluster(config),
            store,
            log,
        )?),
        None => Err(StartError::Config(format!(
            "{} has a raft log but {} has no cluster record: the data dir is damaged",
            dir.wal_dir().display(),
            dir.backend_path().display()
        ))),
        Some(record) => {
            let member = store.meta(META_MEMBER_ID)?.unwrap_or_default();
            Ok((MemberId(member), ClusterId(record.cluster_id)))
        }
    }
}

/// A member joining a running cluster: learns the cluster from a peer, finds itself there
/// (added by `member add`), and waits for the leader's snapshot.
async fn join(
    config: &Config,
    store: &Store,
    peer_tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<(MemberId, ClusterId), StartError> {
    let cluster = initial_cluster(config);
    let (_, initial) = cluster.members()?;
    let own = normalized(&cluster.advertise_peer_urls);
    let peers: Vec<String> = initial
        .iter()
        .filter(|m| m.peer_ur_ls != own)
        .flat_map(|m| m.peer_ur_ls.clone())
        .collect();
    let my_id = |r: &ClusterRecord| {
        r.members
            .iter()
            .find(|m| normalized(&m.peer_ur_ls) == own)
            .map(|m| m.id)
    };
    // A peer may not list us yet (behind on the log, or just removed itself): ask the others
    // before giving up. When every peer answers without us, nobody added us.
    let mut last_error = String::from("no other member in --initial-cluster");
    let mut found = None;
    let mut without_me = None;
    'attempts: for _ in 0..10 {
        let mut answered_without_me = 0;
        for url in &peers {
            match fetch_members(url, peer_tls.clone()).await {
                Ok(r) => match my_id(&r) {
                    Some(id) => {
                        found = Some((r, id));
                        break 'attempts;
                    }
                    None => {
                        answered_without_me += 1;
                        without_me = Some(r);
                    }
                },
                Err(e) => last_error = format!("{url}: {e}"),
            }
        }
        if answered_without_me == peers.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (record, member_id) = match (found, without_me) {
        (Some((r, id)), _) => (r, MemberId(id)),
        (None, Some(r)) => {
            return Err(StartError::Config(format!(
                "member with peer URLs {} is not in the running cluster {:x}: add it first with 'member add'",
                own.join(","),
                r.cluster_id
            )))
        }
        (None, None) => {
            return Err(StartError::Config(format!(
                "cannot fetch cluster info from peer urls: {last_error}"
            )))
        }
    };
    let cluster_id = ClusterId(record.cluster_id);
    let mut wb = store.begin_write()?;
    membership::save(&mut wb, &record)?;
    wb.set_meta(META_MEMBER_ID, member_id.0)?;
    wb.commit(true)?;
    tracing::info!(local_member_id = %member_id, cluster_id = %cluster_id, "joining a running cluster");
    Ok((member_id, cluster_id))
}

async fn fetch_members(
    url: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<ClusterRecord, String> {
    let channel = oxcd_client::dial::channel(url, tls, None, |e| {
        e.connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(2))
    })
    .await?;
    let mut client = oxcd_api::oxcdpb::raft_client::RaftClient::new(channel);
    client
        .members(oxcd_api::oxcdpb::PeerAck {})
        .await
        .map(|r| r.into_inner())
        .map_err(|e| e.message().to_string())
}

/// A snapshot file received but not yet loaded when the node stopped: load it now, before
/// the log (which already starts after it) is replayed.
fn recover_snapshot_file(store: &Store, snap_dir: &Path) -> Result<(), StartError> {
    let applied = store.meta(oxcd_storage::META_APPLIED_INDEX)?.unwrap_or(0);
    let mut newest: Option<(u64, PathBuf)> = None;
    let entries = std::fs::read_dir(snap_dir).map_err(io_error(snap_dir))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".snap.part") {
            let _ = std::fs::remove_file(&path);
        } else if let Some(index) = name
            .strip_suffix(".snap")
            .and_then(|h| u64::from_str_radix(h, 16).ok())
        {
            if index > applied && newest.as_ref().is_none_or(|(i, _)| index > *i) {
                newest = Some((index, path));
            } else {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    if let Some((_, path)) = newest {
        crate::apply::restore_snapshot_file(store, &path).map_err(StartError::Config)?;
    }
    Ok(())
}
