//! The oxcd node: flags, bootstrap, the raft driver and apply threads, and the etcd v3 gRPC
//! services on the client URLs.

pub mod alarms;
pub mod apply;
pub mod auth;
pub mod compactor;
pub mod config;
pub mod corrupt;
pub mod gateway;
pub mod h2_authority;
pub mod http;
pub mod lessor;
pub mod logging;
pub mod membership;
pub mod metrics;
pub mod node;
pub mod restore;
pub mod server;
pub mod services;
pub mod tls;
pub mod transport;

use crate::apply::Applier;
use crate::config::{ClusterState, Config};
use crate::node::{Node, RaftStatus};
use crate::server::{EtcdServer, Waiters};
use oxcd_api::etcdserverpb::{
    auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer,
    lease_server::LeaseServer, maintenance_server::MaintenanceServer, watch_server::WatchServer,
    Member,
};
use oxcd_api::oxcdpb::{internal_request::Request as Internal, ClusterRecord, MemberAttributes};
use oxcd_api::v3electionpb::election_server::ElectionServer;
use oxcd_api::v3lockpb::lock_server::LockServer;
use oxcd_api::{ClusterId, MemberId};
use oxcd_mvcc::{Store, META_APPLIED_INDEX, META_APPLIED_TERM, META_MEMBER_ID};
use oxcd_raftlog::RaftLog;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Backend(#[from] oxcd_mvcc::BackendError),
    #[error(transparent)]
    Store(#[from] oxcd_mvcc::StoreError),
    #[error(transparent)]
    RaftLog(#[from] oxcd_raftlog::RaftLogError),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {url}: {source}")]
    Listen { url: String, source: std::io::Error },
}

pub(crate) fn mkdir(path: &Path) -> Result<(), StartError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| StartError::Io {
            path: path.to_path_buf(),
            source,
        })
}

fn normalized(urls: &[String]) -> Vec<String> {
    let mut v: Vec<String> = urls
        .iter()
        .map(|u| u.trim_end_matches('/').to_string())
        .collect();
    v.sort();
    v
}

/// The initial members named by --initial-cluster, with their IDs.
fn initial_members(config: &Config) -> Result<(MemberId, Vec<Member>), StartError> {
    let own_urls = config.initial_cluster.get(&config.name).ok_or_else(|| {
        StartError::Config(format!(
            "couldn't find local name {:?} in the initial cluster configuration",
            config.name
        ))
    })?;
    let advertised: Vec<String> = config
        .initial_advertise_peer_urls
        .iter()
        .map(|u| u.to_string())
        .collect();
    if normalized(own_urls) != normalized(&advertised) {
        return Err(StartError::Config(format!(
            "--initial-cluster has {}={} but missing from --initial-advertise-peer-urls={}",
            config.name,
            own_urls.join(","),
            advertised
                .join(",")
                .replace("/,", ",")
                .trim_end_matches('/')
        )));
    }
    let members: Vec<Member> = config
        .initial_cluster
        .iter()
        .map(|(name, urls)| Member {
            id: MemberId::derive(&normalized(urls), &config.initial_cluster_token).0,
            name: if name == &config.name {
                name.clone()
            } else {
                String::new()
            },
            peer_ur_ls: normalized(urls),
            client_ur_ls: vec![],
            is_learner: false,
        })
        .collect();
    let member_id = MemberId::derive(&normalized(own_urls), &config.initial_cluster_token);
    Ok((member_id, members))
}

/// Writes a new cluster's identity and membership before its first raft entry exists. The
/// log starts after a snapshot at index 1 holding the initial members, so a member joining
/// later always starts from a leader's snapshot, membership included.
pub(crate) fn bootstrap(
    config: &Config,
    store: &Store,
    log: &mut RaftLog,
) -> Result<(MemberId, ClusterId), StartError> {
    let (member_id, members) = initial_members(config)?;
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
    wb.set_cluster_record(
        transport::CONF_STATE_KEY,
        &protobuf::Message::write_to_bytes(&cs)
            .map_err(|e| StartError::Config(format!("conf state: {e}")))?,
    )?;
    wb.commit(true)?;
    log.set_conf_state(&cs);
    log.restart_from(1, 1)?;
    for id in &ids {
        tracing::info!(local_member_id = %member_id, added_peer_id = %id, cluster_id = %cluster_id, "added member");
    }
    Ok((member_id, cluster_id))
}

/// A member joining a running cluster (--initial-cluster-state existing): learns the cluster
/// from a peer, finds itself there (added by `member add`), and waits for the leader's
/// snapshot.
async fn join(
    config: &Config,
    store: &Store,
    peer_tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<(MemberId, ClusterId), StartError> {
    let (_, initial) = initial_members(config)?;
    let own: Vec<String> = normalized(
        &config
            .initial_advertise_peer_urls
            .iter()
            .map(|u| u.to_string())
            .collect::<Vec<_>>(),
    );
    let peers: Vec<String> = initial
        .iter()
        .filter(|m| m.peer_ur_ls != own)
        .flat_map(|m| m.peer_ur_ls.clone())
        .collect();
    let mut last_error = String::from("no other member in --initial-cluster");
    let mut record = None;
    'attempts: for _ in 0..10 {
        for url in &peers {
            match fetch_members(url, peer_tls.clone()).await {
                Ok(r) => {
                    record = Some(r);
                    break 'attempts;
                }
                Err(e) => last_error = format!("{url}: {e}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let record = record.ok_or_else(|| {
        StartError::Config(format!(
            "cannot fetch cluster info from peer urls: {last_error}"
        ))
    })?;
    let me = record
        .members
        .iter()
        .find(|m| normalized(&m.peer_ur_ls) == own)
        .ok_or_else(|| {
            StartError::Config(format!(
                "member with peer URLs {} is not in the running cluster {:x}: add it first with 'member add'",
                own.join(","),
                record.cluster_id
            ))
        })?;
    let member_id = MemberId(me.id);
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
    let channel = tls::channel(url, tls, None, |e| {
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
    let applied = store.meta(META_APPLIED_INDEX)?.unwrap_or(0);
    let mut newest: Option<(u64, PathBuf)> = None;
    let entries = std::fs::read_dir(snap_dir).map_err(|source| StartError::Io {
        path: snap_dir.to_path_buf(),
        source,
    })?;
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
        apply::restore_snapshot_file(store, &path).map_err(StartError::Config)?;
    }
    Ok(())
}

async fn bind(url: &url::Url) -> Result<tokio::net::TcpListener, StartError> {
    let err = |source| StartError::Listen {
        url: url.to_string(),
        source,
    };
    let host = url
        .host_str()
        .unwrap_or("localhost")
        .trim_start_matches('[')
        .trim_end_matches(']');
    // As etcd: "localhost" means the IPv4 loopback, whatever order the resolver prefers.
    let host = if host == "localhost" {
        "127.0.0.1"
    } else {
        host
    };
    let port = url.port().unwrap_or(2379);
    tokio::net::TcpListener::bind((host, port))
        .await
        .map_err(err)
}

type TlsSetup = (
    Option<Arc<tls::Acceptor>>,
    Option<Arc<tls::Acceptor>>,
    Option<Arc<rustls::ClientConfig>>,
    Option<Arc<rustls::ClientConfig>>,
);

/// The client and peer listeners' TLS, and what this member dials its peers with. As etcd:
/// an https URL without a certificate (or --auto-tls) is an error; --auto-tls makes
/// self-signed certificates under the data dir's fixtures.
fn tls_setup(config: &Config, data_dir: &Path) -> Result<TlsSetup, StartError> {
    let hosts = |urls: &[&url::Url]| -> Vec<String> {
        let mut v: Vec<String> = urls
            .iter()
            .filter_map(|u| u.host_str())
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
            .collect();
        v.push("localhost".into());
        v
    };
    let prepare = |side: &Option<tls::TlsConfig>,
                   urls: Vec<&url::Url>,
                   fixtures: &str,
                   flags: &str|
     -> Result<Option<tls::TlsConfig>, StartError> {
        let https: Vec<&&url::Url> = urls.iter().filter(|u| u.scheme() == "https").collect();
        let Some(mut t) = side.clone() else {
            return match https.first() {
                Some(u) => Err(StartError::Config(format!(
                    "TLS key/cert ({flags}) must be provided for {} with HTTPS scheme",
                    u.as_str().trim_end_matches('/')
                ))),
                None => Ok(None),
            };
        };
        if t.auto_tls {
            let dir = data_dir.join("fixtures").join(fixtures);
            let (cert, key) =
                tls::self_signed(&dir, &hosts(&urls), config.self_signed_cert_validity_years)
                    .map_err(StartError::Config)?;
            t.cert_file = cert;
            t.key_file = key;
        }
        Ok(Some(t))
    };
    let client = prepare(
        &config.client_tls,
        config
            .listen_client_urls
            .iter()
            .chain(&config.advertise_client_urls)
            .collect(),
        "client",
        "--cert-file, --key-file",
    )?;
    let peer = prepare(
        &config.peer_tls,
        config
            .listen_peer_urls
            .iter()
            .chain(&config.initial_advertise_peer_urls)
            .collect(),
        "peer",
        "--peer-cert-file, --peer-key-file",
    )?;
    let acceptor = |t: &Option<tls::TlsConfig>| {
        t.clone()
            .map(tls::Acceptor::new)
            .transpose()
            .map_err(StartError::Config)
    };
    let dial = |t: &Option<tls::TlsConfig>| {
        t.as_ref()
            .map(tls::dial_config)
            .transpose()
            .map_err(StartError::Config)
    };
    Ok((
        acceptor(&client)?,
        acceptor(&peer)?,
        dial(&peer)?,
        dial(&client)?,
    ))
}

/// Runs the node until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<(), StartError> {
    let data_dir = PathBuf::from(&config.data_dir);
    let snap_dir = data_dir.join("member").join("snap");
    let wal_dir = config
        .wal_dir
        .as_ref()
        .map_or_else(|| data_dir.join("member").join("wal"), PathBuf::from);
    mkdir(&snap_dir)?;
    mkdir(&wal_dir)?;
    tracing::info!(name = %config.name, data_dir = %config.data_dir, "starting an etcd server");
    let tls = tls_setup(&config, &data_dir)?;
    let (client_acceptor, peer_acceptor, peer_client_tls, client_dial_tls) = tls;
    let db_path = snap_dir.join("db");
    let store = Arc::new(Store::open(&db_path)?);
    tracing::info!(path = %db_path.display(), "opened backend db");
    let mut log = RaftLog::open(&wal_dir)?;
    recover_snapshot_file(&store, &snap_dir)?;

    let (member_id, cluster_id) = match membership::load(&store)? {
        None if log.is_fresh() && config.initial_cluster_state == ClusterState::Existing => {
            join(&config, &store, peer_client_tls.clone()).await?
        }
        None if log.is_fresh() => bootstrap(&config, &store, &mut log)?,
        None => {
            return Err(StartError::Config(format!(
                "{} has a raft log but {} has no cluster record: the data dir is damaged",
                wal_dir.display(),
                db_path.display()
            )))
        }
        Some(record) => {
            let member = store.meta(META_MEMBER_ID)?.unwrap_or_default();
            (MemberId(member), ClusterId(record.cluster_id))
        }
    };
    let applied = store.meta(META_APPLIED_INDEX)?.unwrap_or(0);
    if applied > log.last_index() {
        tracing::warn!(
            applied_index = applied,
            last_log_index = log.last_index(),
            "raft log ends before the backend's applied index; continuing from the backend as a snapshot"
        );
        log.restart_from(applied, store.meta(META_APPLIED_TERM)?.unwrap_or(0))?;
    }
    log.raise_commit_to(applied);
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
        ..Default::default()
    };
    raft_config.validate()?;
    let mut raw = raft::RawNode::new(&raft_config, log.storage(), &logging::raft_logger())?;
    let voters = raw.raft.prs().conf().voters().ids();
    if voters.len() == 1 && voters.contains(member_id.0) {
        tracing::info!("started as single-node; fast-forwarding election ticks");
        raw.campaign()?;
    }

    let record = membership::load(&store)?.unwrap_or_default();
    let (members_tx, members_rx) = tokio::sync::watch::channel(record);
    let (node_tx, node_rx) = std::sync::mpsc::channel();
    let source_ip = config.listen_peer_urls.first().and_then(|u| {
        let host = u.host_str()?.trim_start_matches('[').trim_end_matches(']');
        let host = if host == "localhost" {
            "127.0.0.1"
        } else {
            host
        };
        host.parse::<std::net::IpAddr>()
            .ok()
            .filter(|ip| !ip.is_unspecified())
    });
    let transport = transport::Transport::new(
        member_id,
        cluster_id,
        node_tx.clone(),
        store.clone(),
        source_ip,
        Duration::from_millis(config.heartbeat_interval_ms.max(100)),
        peer_client_tls,
    );
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
    let mut peer_tasks = Vec::new();
    for url in &config.listen_peer_urls {
        let listener = bind(url).await?;
        let service = oxcd_api::oxcdpb::raft_server::RaftServer::new(transport::PeerService {
            cluster_id,
            member_id,
            node: node_tx.clone(),
            store: store.clone(),
            snap_dir: snap_dir.clone(),
        })
        .max_decoding_message_size(transport::MAX_PEER_MESSAGE)
        .max_encoding_message_size(transport::MAX_PEER_MESSAGE);
        tracing::info!(address = %url.as_str().trim_end_matches('/'), "serving peer traffic");
        let acceptor = if url.scheme() == "https" {
            peer_acceptor.clone()
        } else {
            None
        };
        let incoming = tls::incoming(listener, acceptor);
        let url = url.clone();
        peer_tasks.push(tokio::spawn(async move {
            if let Err(e) = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await
            {
                tracing::error!(error = %e, address = %url, "peer listener failed");
            }
        }));
    }
    let (apply_tx, apply_rx) = std::sync::mpsc::channel();
    let (applied_tx, applied_rx) = tokio::sync::watch::channel(applied);
    let waiters = Arc::new(Waiters::default());
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
    };
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
    match server::quota_bytes(config.quota_backend_bytes) {
        None => tracing::info!(
            quota_size_bytes = config.quota_backend_bytes,
            "disabled backend quota"
        ),
        Some(q) if q > server::MAX_QUOTA_BYTES => tracing::warn!(
            quota_size_bytes = q,
            quota_maximum_size_bytes = server::MAX_QUOTA_BYTES,
            "quota exceeds the maximum value"
        ),
        Some(q) => tracing::info!(quota_size_bytes = q, "enabled backend quota"),
    }
    let applier = Applier {
        alarms: alarms.clone(),
        auth: auth.clone(),
        me: member_id,
        store: store.clone(),
        members: members_tx,
        status: status.clone(),
        election_timeout: Duration::from_millis(config.election_timeout_ms),
        inbox: apply_rx,
        node: node_tx.clone(),
        waiters: waiters.clone(),
        applied: applied_tx,
        snapshot_count: config.snapshot_count,
        catch_up_entries: config.snapshot_catchup_entries,
    };
    std::thread::Builder::new()
        .name("raft".into())
        .spawn(move || node.run())
        .map_err(|source| StartError::Io {
            path: wal_dir.clone(),
            source,
        })?;
    std::thread::Builder::new()
        .name("apply".into())
        .spawn(move || applier.run())
        .map_err(|source| StartError::Io {
            path: snap_dir.clone(),
            source,
        })?;

    let server = Arc::new(EtcdServer::new(
        member_id,
        cluster_id,
        store.clone(),
        status,
        applied_rx,
        node_tx,
        waiters,
        members_rx,
        transport,
        alarms,
        auth,
        client_dial_tls,
        &config,
    ));

    // Watchers behind the store's present catch up from history here (etcd's sync loop).
    {
        let store = store.clone();
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
            .map_err(|source| StartError::Io {
                path: snap_dir.clone(),
                source,
            })?;
    }

    let mut listeners = Vec::new();
    for url in &config.listen_client_urls {
        listeners.push((url.clone(), bind(url).await?));
    }

    // Like etcd, serve clients once this member is published through raft.
    let client_urls: Vec<String> = config
        .advertise_client_urls
        .iter()
        .map(|u| u.as_str().trim_end_matches('/').to_string())
        .collect();
    let attrs = MemberAttributes {
        id: member_id.0,
        name: config.name.clone(),
        client_urls: client_urls.clone(),
    };
    loop {
        match server.propose(Internal::Publish(attrs.clone())).await {
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(error = %e, "failed to publish local member to cluster through raft; retrying");
                tokio::time::sleep(Duration::from_millis(config.heartbeat_interval_ms)).await;
            }
        }
    }
    tracing::info!(
        local_member_id = %member_id,
        local_member_attributes = %format!("{{Name:{} ClientURLs:[{}]}}", config.name, client_urls.join(" ")),
        cluster_id = %cluster_id,
        "published local member to cluster through raft"
    );
    tracing::info!(
        cluster_version = "3.5",
        "enabled capabilities for version 3.5"
    );

    let lessor = Arc::new(lessor::Lessor::new(
        config.heartbeat_interval_ms,
        config.election_timeout_ms,
    ));
    tokio::spawn(lessor.clone().run(server.clone()));
    tokio::spawn(compactor::run(
        server.clone(),
        config.auto_compaction.clone(),
    ));
    if config.initial_corrupt_check {
        corrupt::initial_check(&server)
            .await
            .map_err(StartError::Config)?;
    }
    if !config.corrupt_check_time.is_zero() {
        tokio::spawn(corrupt::run_periodic(
            server.clone(),
            config.corrupt_check_time,
        ));
    }
    let limit = config.max_request_bytes as usize + 512 * 1024;
    // Stream IDs are shared by every client listener: watches are keyed by them.
    let watch_streams = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    let s = server.clone();
    let core = tonic::service::Routes::new(
        KvServer::new(services::kv::KvService { server: s.clone() })
            .max_decoding_message_size(limit),
    )
    .add_service(
        WatchServer::new(services::watch::WatchService {
            server: s.clone(),
            next_stream: watch_streams.clone(),
            progress_interval: config.watch_progress_notify_interval,
        })
        .max_decoding_message_size(limit),
    )
    .add_service(
        LeaseServer::new(services::lease::LeaseService {
            server: s.clone(),
            lessor: lessor.clone(),
            leader_channel: Arc::default(),
        })
        .max_decoding_message_size(limit),
    )
    .add_service(
        ClusterServer::new(services::cluster::ClusterService { server: s.clone() })
            .max_decoding_message_size(limit),
    )
    .add_service(
        MaintenanceServer::new(services::maintenance::MaintenanceService { server: s.clone() })
            .max_decoding_message_size(limit),
    )
    .add_service(
        AuthServer::new(services::auth::AuthService { server: s.clone() })
            .max_decoding_message_size(limit),
    );
    // Lock and Election are clients of the services above, as in etcd.
    let grpc = core
        .clone()
        .add_service(
            LockServer::new(services::lock::LockService {
                routes: core.clone(),
            })
            .max_decoding_message_size(limit),
        )
        .add_service(
            ElectionServer::new(services::election::ElectionService {
                routes: core.clone(),
            })
            .max_decoding_message_size(limit),
        );
    let http_routes = http::routes(s.clone()).merge(gateway::routes(grpc.clone(), s.clone()));
    let client_routes =
        tonic::service::Routes::from(grpc.into_axum_router().merge(http_routes)).prepare();
    for (url, listener) in listeners {
        let mut stop = stop_rx.clone();
        let router = tonic::transport::Server::builder()
            .accept_http1(true)
            .layer(http::GrpcMetricsLayer)
            .add_routes(client_routes.clone());
        tracing::info!(address = %url.as_str().trim_end_matches('/'), "ready to serve client requests");
        let acceptor = if url.scheme() == "https" {
            tracing::info!(address = %url.as_str().trim_end_matches('/'), "serving client traffic securely");
            client_acceptor.clone()
        } else {
            tracing::warn!(address = %url.as_str().trim_end_matches('/'), "serving client traffic insecurely; this is strongly discouraged!");
            None
        };
        tasks.push(tokio::spawn(async move {
            let incoming =
                tokio_stream::StreamExt::map(tls::incoming(listener, acceptor), |conn| {
                    conn.map(h2_authority::AuthorityFix::new)
                });
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
            {
                tracing::error!(error = %e, address = %url, "client listener failed");
            }
        }));
    }

    wait_for_signal().await;
    tracing::info!("received signal; shutting down");
    hand_over_leadership(&server).await;
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    for t in peer_tasks {
        t.abort();
    }
    // Leave the backend durable so a restart replays nothing.
    if let Ok(wb) = store.begin_write() {
        let _ = wb.commit(true);
    }
    Ok(())
}

/// As etcd on a clean stop: a leader hands over to the most caught-up voter first, so the
/// cluster does not wait out an election timeout.
async fn hand_over_leadership(server: &EtcdServer) {
    use std::sync::atomic::Ordering;
    if !server.raft.is_leader.load(Ordering::Acquire) {
        return;
    }
    let voters: Vec<u64> = server
        .members
        .borrow()
        .members
        .iter()
        .filter(|m| !m.is_learner && m.id != server.member_id.0)
        .map(|m| m.id)
        .collect();
    let Ok(progress) = server.ask(|reply| node::NodeMsg::Progress { reply }).await else {
        return;
    };
    let Some(target) = voters
        .into_iter()
        .filter(|id| server.transport.is_active(*id))
        .max_by_key(|id| progress.get(id).copied().unwrap_or(0))
    else {
        return;
    };
    if server.transfer_leader(target).is_err() {
        return;
    }
    let deadline = tokio::time::Instant::now() + server.election_timeout;
    while server.raft.leader.load(Ordering::Acquire) == server.member_id.0 {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!("leadership transfer did not complete before stopping");
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tracing::info!(transferee = %MemberId(target), "leadership transferred before stopping");
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
