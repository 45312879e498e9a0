//! The member's listeners: TLS for each side, the peer URLs' raft service, and the client
//! URLs' gRPC services, JSON gateway and HTTP endpoints on one port.

use crate::config::Config;
use crate::error::StartError;
use crate::server::EtcdServer;
use crate::write_coalesce::WriteCoalesce;
use crate::{gateway, h2_authority, http, services, tls, transport};
use oxcd_api::etcdserverpb::{
    auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer,
    lease_server::LeaseServer, maintenance_server::MaintenanceServer,
};
use oxcd_api::v3electionpb::election_server::ElectionServer;
use oxcd_api::v3lockpb::lock_server::LockServer;
use oxcd_storage::DataDir;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// The host a URL names, brackets off; as etcd, "localhost" (or none) means the IPv4
/// loopback, whatever order the resolver prefers.
pub fn host_of(url: &url::Url) -> &str {
    match url
        .host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
    {
        None | Some("localhost") => "127.0.0.1",
        Some(host) => host,
    }
}

pub async fn bind(url: &url::Url) -> Result<tokio::net::TcpListener, StartError> {
    let err = |source| StartError::Listen {
        url: url.to_string(),
        source,
    };
    let host = host_of(url);
    let port = url.port().unwrap_or(2379);
    tokio::net::TcpListener::bind((host, port))
        .await
        .map_err(err)
}

/// The listeners' TLS, and what this member dials with.
pub struct Tls {
    pub client_acceptor: Option<Arc<tls::Acceptor>>,
    pub peer_acceptor: Option<Arc<tls::Acceptor>>,
    /// To peers.
    pub peer_dial: Option<Arc<rustls::ClientConfig>>,
}

/// As etcd: an https URL without a certificate (or --auto-tls) is an error; --auto-tls makes
/// self-signed certificates under the data dir's fixtures.
pub fn tls_setup(config: &Config, data_dir: &DataDir) -> Result<Tls, StartError> {
    let hosts = |urls: &[&url::Url]| -> Vec<String> {
        let mut v: Vec<String> = urls
            .iter()
            .filter_map(|u| u.host_str())
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
            .collect();
        v.push("localhost".into());
        v
    };
    let no_cert = |flags: &str, u: &url::Url| {
        StartError::Config(format!(
            "TLS key/cert ({flags}) must be provided for {} with HTTPS scheme",
            u.as_str().trim_end_matches('/')
        ))
    };
    let prepare = |side: &Option<tls::TlsConfig>,
                   urls: Vec<&url::Url>,
                   fixtures: &str,
                   flags: &str|
     -> Result<Option<tls::TlsConfig>, StartError> {
        let https: Vec<&&url::Url> = urls.iter().filter(|u| u.scheme() == "https").collect();
        let Some(mut t) = side.clone() else {
            return match https.first() {
                Some(u) => Err(no_cert(flags, u)),
                None => Ok(None),
            };
        };
        if t.auto_tls {
            let (cert, key) = tls::self_signed(
                &data_dir.fixtures(fixtures),
                &hosts(&urls),
                config.self_signed_cert_validity_years,
            )
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
    // Metrics URLs serve with the client URLs' certificate, as etcd's.
    if let Some(u) = config
        .listen_metrics_urls
        .iter()
        .find(|u| u.scheme() == "https" && client.is_none())
    {
        return Err(no_cert("--cert-file, --key-file", u));
    }
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
    Ok(Tls {
        client_acceptor: acceptor(&client)?,
        peer_acceptor: acceptor(&peer)?,
        peer_dial: dial(&peer)?,
    })
}

/// Serves raft's peer service on every --listen-peer-urls.
pub async fn serve_peers(
    config: &Config,
    service: transport::PeerService,
    acceptor: Option<Arc<tls::Acceptor>>,
) -> Result<Vec<JoinHandle<()>>, StartError> {
    let mut tasks = Vec::new();
    for url in &config.listen_peer_urls {
        let listener = bind(url).await?;
        let service = oxcd_api::oxcdpb::raft_server::RaftServer::new(service.clone())
            .max_decoding_message_size(transport::MAX_PEER_MESSAGE)
            .max_encoding_message_size(transport::MAX_PEER_MESSAGE);
        tracing::info!(address = %url.as_str().trim_end_matches('/'), "serving peer traffic");
        let acceptor = if url.scheme() == "https" {
            acceptor.clone()
        } else {
            None
        };
        let incoming = tls::incoming(listener, acceptor);
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await
            {
                tracing::error!(error = %e, address = %url, "peer listener failed");
            }
        }));
    }
    Ok(tasks)
}

/// Every client-facing route: etcd's gRPC services, Lock and Election (clients of the
/// others, as in etcd), the JSON gateway, and /health, /version, /metrics.
pub fn client_routes(
    config: &Config,
    server: Arc<EtcdServer>,
    leases: services::lease::LeaseService,
    backups: Arc<crate::backups::Tracker>,
) -> tonic::service::Routes {
    let limit = config.max_request_bytes as usize + 512 * 1024;
    // Stream IDs are shared by every client listener: watches are keyed by them.
    let watch_streams = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let s = server;
    let core = tonic::service::Routes::new(
        KvServer::new(services::kv::KvService {
            server: s.clone(),
            big_reads: Arc::new(tokio::sync::Semaphore::new(
                2 * std::thread::available_parallelism().map_or(1, |n| n.get()),
            )),
        })
        .max_decoding_message_size(limit),
    )
    .add_service(services::watch_route::WatchRoute::new(
        services::watch::WatchService {
            server: s.clone(),
            next_stream: watch_streams,
            progress_interval: config.watch_progress_notify_interval,
        },
        limit,
    ))
    .add_service(LeaseServer::new(leases).max_decoding_message_size(limit))
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
    let http_routes = http::routes(s.clone(), backups)
        .merge(gateway::routes(grpc.clone(), s))
        .merge(crate::ui::routes(config.ui))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(config.host_whitelist.clone()),
            http::host_check,
        ));
    tonic::service::Routes::from(grpc.into_axum_router().merge(http_routes)).prepare()
}

/// Serves `routes` on every --listen-client-urls listener until `stop` turns true.
pub fn serve_clients(
    listeners: Vec<(url::Url, tokio::net::TcpListener)>,
    routes: tonic::service::Routes,
    acceptor: Option<Arc<tls::Acceptor>>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for (url, listener) in listeners {
        let mut stop = stop.clone();
        let router = tonic::transport::Server::builder()
            .accept_http1(true)
            .layer(crate::grpc_metrics::GrpcMetricsLayer)
            .add_routes(routes.clone());
        tracing::info!(address = %url.as_str().trim_end_matches('/'), "ready to serve client requests");
        let acceptor = if url.scheme() == "https" {
            tracing::info!(address = %url.as_str().trim_end_matches('/'), "serving client traffic securely");
            acceptor.clone()
        } else {
            tracing::warn!(address = %url.as_str().trim_end_matches('/'), "serving client traffic insecurely; this is strongly discouraged!");
            None
        };
        tasks.push(tokio::spawn(async move {
            let incoming =
                tokio_stream::StreamExt::map(tls::incoming(listener, acceptor), |conn| {
                    conn.map(|c| WriteCoalesce::new(h2_authority::AuthorityFix::new(c)))
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
    tasks
}

/// Serves /metrics and the health checks on every --listen-metrics-urls listener (https ones
/// with the client URLs' TLS, which `tls_setup` made sure of) until `stop` turns true.
pub async fn serve_metrics(
    config: &Config,
    routes: axum::Router,
    acceptor: Option<Arc<tls::Acceptor>>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<()>>, StartError> {
    let mut listeners = Vec::new();
    for url in &config.listen_metrics_urls {
        listeners.push((url.clone(), bind(url).await?));
    }
    let routes = tonic::service::Routes::from(routes);
    Ok(listeners
        .into_iter()
        .map(|(url, listener)| {
            let mut stop = stop.clone();
            let router = tonic::transport::Server::builder()
                .accept_http1(true)
                .add_routes(routes.clone());
            let acceptor = (url.scheme() == "https")
                .then(|| acceptor.clone())
                .flatten();
            tracing::info!(address = %url.as_str().trim_end_matches('/'), "serving metrics");
            tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                if let Err(e) = router
                    .serve_with_incoming_shutdown(tls::incoming(listener, acceptor), shutdown)
                    .await
                {
                    tracing::error!(error = %e, address = %url, "metrics listener failed");
                }
            })
        })
        .collect())
}

/// Waits up to `limit` for each task.
pub async fn join_all(tasks: Vec<JoinHandle<()>>, limit: Duration) {
    for t in tasks {
        let _ = tokio::time::timeout(limit, t).await;
    }
}
