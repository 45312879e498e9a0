//! Starting the node's parts: raft (driver thread and peer transport), the apply thread, the
//! server the services share, and the background work (watch catch-up, lessor, compactor,
//! corruption checks).

use crate::apply::Applier;
use crate::config::Config;
use crate::error::{io_error, StartError};
use crate::identity::Storage;
use crate::msg::{Fatal, FatalTx, NodeMsg, RaftStatus, Waiters};
use crate::node::Node;
use crate::server::EtcdServer;
use crate::{alarms, auth, compactor, corrupt, lessor, logging, server, transport};
use oxcd_api::oxcdpb::{internal_request::Request as Internal, MemberAttributes};
use oxcd_api::{ClusterId, MemberId};
use oxcd_storage::{membership, Store, META_APPLIED_INDEX};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

/// Raft, started: the driver thread runs; the peer service is ready to be served.
pub struct Raft {
    pub node: Sender<NodeMsg>,
    pub status: Arc<RaftStatus>,
    pub waiters: Arc<Waiters>,
    pub transport: Arc<transport::Transport>,
    pub peer_service: transport::PeerService,
    pub applied: u64,
    members: (
        tokio::sync::watch::Sender<oxcd_api::oxcdpb::ClusterRecord>,
        tokio::sync::watch::Receiver<oxcd_api::oxcdpb::ClusterRecord>,
    ),
    apply_inbox: std::sync::mpsc::Receiver<crate::msg::ApplyMsg>,
}

/// Replays the log after the backend's applied index and starts the raft thread.
pub fn start_raft(
    config: &Config,
    storage: Storage,
    (member_id, cluster_id): (MemberId, ClusterId),
    peer_dial: Option<Arc<rustls::ClientConfig>>,
    fatal: FatalTx,
) -> Result<(Raft, Arc<Store>), StartError> {
    let Storage {
        dir,
        store,
        mut log,
    } = storage;
    let applied = store.meta(META_APPLIED_INDEX)?.unwrap_or(0);
    if let Some(why) = oxcd_storage::recovery::align_log_with_backend(&store, &mut log)? {
        tracing::warn!(
            applied_index = applied,
            reason = why,
            "the raft log does not hold the backend's applied index; continuing from the backend as a snapshot, with its membership"
        );
    }
    log.raise_commit_to(applied);
    if config.force_new_cluster {
        if log.is_fresh() {
            tracing::info!("--force-new-cluster has no effect on a new member");
        } else {
            oxcd_storage::force::force_new_cluster(&store, &mut log, member_id, cluster_id)?;
        }
    }
    // Replay brought the whole log file into memory; only a catch-up tail is worth keeping.
    log.release_memory(applied.saturating_sub(config.snapshot_catchup_entries))?;
    tracing::info!(local_member_id = %member_id, cluster_id = %cluster_id, applied_index = applied, "starting local member");

    let raft_config = raft::Config {
        id: member_id.0,
        election_tick: (config.election_timeout_ms / config.heartbeat_interval_ms) as usize,
        heartbeat_tick: 1,
        applied,
        pre_vote: config.pre_vote,
        check_quorum: true,
        max_size_per_msg: 1 << 20,
        max_inflight_msgs: 512,
        batch_append: true,
        ..Default::default()
    };
    raft_config.validate()?;
    let mut raw = raft::RawNode::new(&raft_config, log.storage(), &logging::raft_logger())?;
    let voters = raw.raft.prs().conf().voters().ids();
    if voters.len() == 1 && voters.contains(member_id.0) {
        tracing::info!("started as single-node; fast-forwarding election ticks");
        raw.campaign()?;
    }

    let (node_tx, node_rx) = std::sync::mpsc::channel();
    let source_ip = config.listen_peer_urls.first().and_then(|u| {
        crate::listen::host_of(u)
            .parse::<std::net::IpAddr>()
            .ok()
            .filter(|ip| !ip.is_unspecified())
    });
    let dialing = transport::PeerDialing {
        source_ip,
        keepalive: Duration::from_millis(config.heartbeat_interval_ms.max(100)),
        tls: peer_dial,
    };
    let transport = transport::Transport::new(
        (member_id, cluster_id),
        node_tx.clone(),
        store.clone(),
        dialing,
        fatal.clone(),
    );
    let record = membership::load(&store)?.unwrap_or_default();
    let (members_tx, members_rx) = tokio::sync::watch::channel(record);
    transport.set_members(&members_rx.borrow().members);
    {
        let transport = transport.clone();
        let mut members = members_rx.clone();
        tokio::spawn(async move {
            while members.changed().await.is_ok() {
                let current = members.borrow_and_update().members.clone();
                transport.set_members(&current);
            }
        });
    }
    let peer_service = transport::PeerService {
        cluster_id,
        member_id,
        node: node_tx.clone(),
        store: store.clone(),
        snap_dir: dir.snap_dir(),
        leases: Arc::default(),
    };
    let (apply_tx, apply_rx) = std::sync::mpsc::channel();
    let waiters = Arc::new(Waiters::relayed());
    let status = Arc::new(RaftStatus::default());
    let node = Node {
        raw,
        log,
        inbox: node_rx,
        apply: apply_tx,
        waiters: waiters.clone(),
        status: status.clone(),
        transport: transport.clone(),
        tick: Duration::from_millis(config.heartbeat_interval_ms),
        read_timeout: Duration::from_secs(5)
            + Duration::from_millis(2 * config.election_timeout_ms),
        fatal: fatal.clone(),
        held_conf_changes: Default::default(),
        conf_retry: Duration::from_millis(2 * config.election_timeout_ms),
        read_replies: crate::msg::Relay::spawn(),
        proposals: Default::default(),
    };
    std::thread::Builder::new()
        .name("raft".into())
        .spawn(reporting_panics(fatal.clone(), "raft", move || node.run()))
        .map_err(io_error(dir.wal_dir()))?;
    let raft = Raft {
        node: node_tx,
        status,
        waiters,
        transport,
        peer_service,
        applied,
        members: (members_tx, members_rx),
        apply_inbox: apply_rx,
    };
    Ok((raft, store))
}

/// A thread's body that reports a panic (raft-rs panics on an inconsistent log) as fatal, so
/// the node stops instead of serving on without that thread.
fn reporting_panics(
    fatal: FatalTx,
    thread: &'static str,
    body: impl FnOnce() + Send + 'static,
) -> impl FnOnce() + Send + 'static {
    move || {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).is_err() {
            let _ = fatal.send(Fatal::Failed(format!("the {thread} thread panicked")));
        }
    }
}

/// Starts the apply thread and makes the server the services share.
pub fn start_apply(
    config: &Config,
    store: Arc<Store>,
    (member_id, cluster_id): (MemberId, ClusterId),
    raft: Raft,
    lessor: Arc<lessor::Lessor>,
    fatal: FatalTx,
) -> Result<Arc<EtcdServer>, StartError> {
    let (members_tx, members_rx) = raft.members;
    let (applied_tx, applied_rx) = tokio::sync::watch::channel(raft.applied);
    let alarms = Arc::new(alarms::Alarms::load(&store)?);
    let auth = Arc::new(
        auth::AuthStore::load(
            &store,
            &config.auth_token,
            config.auth_token_ttl,
            config.bcrypt_cost,
        )
        .map_err(StartError::Config)?,
    );
    log_quota(config.quota_backend_bytes);
    let applier = Applier {
        alarms: alarms.clone(),
        auth: auth.clone(),
        me: member_id,
        store: store.clone(),
        members: members_tx,
        status: raft.status.clone(),
        election_timeout: Duration::from_millis(config.election_timeout_ms),
        inbox: raft.apply_inbox,
        node: raft.node.clone(),
        waiters: raft.waiters.clone(),
        applied: applied_tx,
        snapshot_count: config.snapshot_count,
        durability: crate::apply::Durability::new(
            config.backend_batch_interval,
            config.backend_batch_limit,
        ),
        catch_up_entries: config.snapshot_catchup_entries,
        fatal: fatal.clone(),
        snap_dir: raft.peer_service.snap_dir.clone(),
        lessor,
    };
    std::thread::Builder::new()
        .name("apply".into())
        .spawn(reporting_panics(fatal, "apply", move || applier.run()))
        .map_err(io_error(store.path()))?;
    Ok(Arc::new(EtcdServer::new(
        member_id,
        cluster_id,
        store,
        raft.status,
        applied_rx,
        raft.node,
        raft.waiters,
        members_rx,
        raft.transport,
        alarms,
        auth,
        config,
    )))
}

fn log_quota(flag: i64) {
    match server::quota_bytes(flag) {
        None => tracing::info!(quota_size_bytes = flag, "disabled backend quota"),
        Some(q) if q > server::MAX_QUOTA_BYTES => tracing::warn!(
            quota_size_bytes = q,
            quota_maximum_size_bytes = server::MAX_QUOTA_BYTES,
            "quota exceeds the maximum value"
        ),
        Some(q) => tracing::info!(quota_size_bytes = q, "enabled backend quota"),
    }
}

/// Watchers behind the store's present catch up from history here (etcd's sync loop).
pub fn start_watch_sync(store: Arc<Store>) -> Result<(), StartError> {
    let path = store.path().to_path_buf();
    std::thread::Builder::new()
        .name("watch-sync".into())
        .spawn(move || loop {
            let pending = match store.sync_watchers(1000) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "failed to catch watchers up");
                    1
                }
            };
            let pause = if pending > 0 { 10 } else { 100 };
            std::thread::sleep(Duration::from_millis(pause));
        })
        .map_err(io_error(path))?;
    Ok(())
}

/// Like etcd, clients are served once this member is published through raft.
pub async fn publish(config: &Config, server: &EtcdServer) {
    let client_urls: Vec<String> = config
        .advertise_client_urls
        .iter()
        .map(|u| u.as_str().trim_end_matches('/').to_string())
        .collect();
    let attrs = MemberAttributes {
        id: server.member_id.0,
        name: config.name.clone(),
        client_urls: client_urls.clone(),
    };
    while let Err(e) = server.propose(Internal::Publish(attrs.clone())).await {
        tracing::warn!(error = %e, "failed to publish local member to cluster through raft; retrying");
        tokio::time::sleep(Duration::from_millis(config.heartbeat_interval_ms)).await;
    }
    tracing::info!(
        local_member_id = %server.member_id,
        local_member_attributes = %format!("{{Name:{} ClientURLs:[{}]}}", config.name, client_urls.join(" ")),
        cluster_id = %server.cluster_id,
        "published local member to cluster through raft"
    );
    tracing::info!(
        cluster_version = "3.5",
        "enabled capabilities for version 3.5"
    );
}

/// The lessor, the auto-compactor and the corruption checks.
pub async fn start_background(
    config: &Config,
    server: &Arc<EtcdServer>,
    lessor: Arc<lessor::Lessor>,
) -> Result<(), StartError> {
    tokio::spawn(lessor.run(server.clone()));
    tokio::spawn(compactor::run(
        server.clone(),
        config.auto_compaction.clone(),
    ));
    tokio::spawn(crate::blocking::count_db_size_in_use(server.store.clone()));
    tokio::spawn(compactor::delete_compacted(
        server.store.clone(),
        config.compaction_batch_limit,
        config.compaction_sleep_interval,
    ));
    if config.initial_corrupt_check {
        corrupt::initial_check(server)
            .await
            .map_err(StartError::Config)?;
    }
    if !config.corrupt_check_time.is_zero() {
        tokio::spawn(corrupt::run_periodic(
            server.clone(),
            config.corrupt_check_time,
        ));
    }
    Ok(())
}
