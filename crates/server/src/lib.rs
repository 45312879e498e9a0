//! The oxcd node: flags, bootstrap, the raft driver and apply threads, and the etcd v3 gRPC
//! services on the client URLs.

pub mod alarms;
pub mod apply;
pub mod auth;
pub mod backups;
pub mod blocking;
pub mod compactor;
pub mod config;
pub mod corrupt;
pub mod downgrade;
pub mod duration;
pub mod error;
pub mod exposition;
pub mod failpoints;
pub mod gateway;
pub mod grpc_metrics;
pub mod h2_authority;
pub mod http;
pub mod identity;
pub mod lessor;
pub mod listen;
pub mod logging;
pub mod metrics;
pub mod msg;
pub mod node;
pub mod read_rounds;
pub mod server;
pub mod services;
pub mod shutdown;
pub mod start;
pub mod tls;
pub mod transport;
pub mod ui;
pub mod version;
pub mod write_coalesce;

pub use error::StartError;

use config::Config;
use oxcd_storage::DataDir;
use std::path::PathBuf;
use std::time::Duration;

/// The runtime the node runs on. A task woken by another goes to the waker's LIFO slot and
/// runs next: a connection's writer then ran after each stream's answer and sent it alone.
/// Without the slot the answers of one commit go out together (docs/perf-plan-issue-18.md
/// §12).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    runtime_builder().build()
}

fn runtime_builder() -> tokio::runtime::Builder {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    builder
}

/// Runs the node until SIGINT or SIGTERM, or until it cannot go on (the error says why).
pub async fn run(config: Config) -> Result<(), StartError> {
    let dir = DataDir::new(&config.data_dir, config.wal_dir.as_ref().map(PathBuf::from));
    tracing::info!(name = %config.name, data_dir = %config.data_dir, "starting an etcd server");
    let tls = listen::tls_setup(&config, &dir)?;
    let mut storage = identity::open_storage(dir)?;
    storage
        .store
        .set_max_response_bytes(usize::try_from(config.max_response_bytes).unwrap_or(usize::MAX));
    let ids = identity::identify(&config, &mut storage, tls.peer_dial.clone()).await?;
    let (fatal_tx, mut fatal_rx) = tokio::sync::mpsc::unbounded_channel();
    let (raft, store) = start::start_raft(
        &config,
        storage,
        ids,
        tls.peer_dial.clone(),
        fatal_tx.clone(),
    )?;
    let peer_tasks = listen::serve_peers(
        &config,
        raft.peer_service.clone(),
        tls.peer_acceptor.clone(),
    )
    .await?;
    let peer_leases = raft.peer_service.leases.clone();
    let lessor = std::sync::Arc::new(lessor::Lessor::new(
        config.heartbeat_interval_ms,
        config.election_timeout_ms,
    ));
    let server = start::start_apply(&config, store.clone(), ids, raft, lessor.clone(), fatal_tx)?;
    start::start_watch_sync(store.clone())?;
    let serving = async {
        let mut listeners = Vec::new();
        for url in &config.listen_client_urls {
            listeners.push((url.clone(), listen::bind(url).await?));
        }
        if config.metrics_extensive {
            metrics::enable_handling_histogram();
        }
        metrics::init_rpc_series();
        let backups = backups::Tracker::new(config.backup.clone());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        // Metrics and health answer before the member is published (probes wait on them
        // while a quorum forms), as etcd's metrics listeners do.
        let metrics_tasks = listen::serve_metrics(
            &config,
            http::metrics_routes(server.clone(), backups.clone()),
            tls.client_acceptor.clone(),
            stop_rx.clone(),
        )
        .await?;
        start::publish(&config, &server).await;
        tokio::spawn(backups::run(server.clone(), backups.clone()));
        start::start_background(&config, &server, lessor.clone()).await?;
        let leases = services::lease::LeaseService {
            server: server.clone(),
            lessor,
            leader_channel: std::sync::Arc::default(),
        };
        let _ = peer_leases.set(std::sync::Arc::new(leases.clone()));
        let routes = listen::client_routes(&config, server.clone(), leases, backups);
        let client_tasks =
            listen::serve_clients(listeners, routes, tls.client_acceptor.clone(), stop_rx);
        // systemd's Type=notify: ready once clients are served, as etcd tells it.
        if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
            tracing::warn!(error = %e, "failed to notify systemd of readiness");
        }
        shutdown::wait_for_signal().await;
        tracing::info!("received signal; shutting down");
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        shutdown::hand_over_leadership(&server).await;
        let _ = stop_tx.send(true);
        listen::join_all(client_tasks, Duration::from_secs(2)).await;
        listen::join_all(metrics_tasks, Duration::from_secs(2)).await;
        Ok(())
    };
    let result = tokio::select! {
        r = serving => r,
        Some(fatal) = fatal_rx.recv() => Err(StartError::Fatal(fatal)),
    };
    for t in peer_tasks {
        t.abort();
    }
    if result.is_ok() {
        // Leave the backend durable so a restart replays nothing.
        if let Ok(wb) = store.begin_write() {
            let _ = wb.commit(true);
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    /// Tasks a running task schedules run in the order it scheduled them: none jumps the
    /// queue through the LIFO slot. Needs tokio's unstable API (.cargo/config.toml), so a
    /// build that lost it fails here rather than only running slower.
    #[test]
    fn the_runtime_runs_tasks_in_the_order_they_were_scheduled() {
        let runtime = super::runtime_builder()
            .worker_threads(1)
            .build()
            .expect("runtime");
        let ran = Arc::new(Mutex::new(Vec::new()));
        let order = ran.clone();
        runtime.block_on(async move {
            let spawner = tokio::spawn(async move {
                let tasks: Vec<_> = ["first", "second", "third"]
                    .into_iter()
                    .map(|name| {
                        let ran = order.clone();
                        tokio::spawn(async move { ran.lock().expect("lock").push(name) })
                    })
                    .collect();
                tasks
            });
            for task in spawner.await.expect("spawner") {
                task.await.expect("task");
            }
        });
        assert_eq!(*ran.lock().expect("lock"), ["first", "second", "third"]);
    }
}
