//! Clusters of either product for the Kubernetes traffic test: oxcd through
//! `cluster::Cluster::start`, real etcd (Debian's /usr/bin/etcd) as members laid out the same
//! way (member i on 127.0.0.(11+i), ports picked free, the same heartbeat and election
//! timeout), so the one `Cluster` type drives both.

use crate::cluster::{Cluster, Member, Spec, ELECTION_MS, HEARTBEAT_MS};
use crate::{free_port, Kind, Server};
use std::net::IpAddr;
use std::time::Duration;
use tonic::transport::Channel;

/// Starts a `size`-member cluster of `kind` and waits until every member serves and they
/// agree on a leader.
pub async fn start_cluster(kind: Kind, size: usize) -> Cluster {
    match kind {
        Kind::Oxcd => Cluster::start(Spec::new(size)).await,
        Kind::Etcd => start_etcd_cluster(size).await,
    }
}

async fn start_etcd_cluster(size: usize) -> Cluster {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = format!("etcd-test-{}", free_port());
    let mut members = Vec::new();
    for i in 0..size {
        let ip: IpAddr = format!("127.0.0.{}", 11 + i).parse().expect("ip");
        let (client_port, peer_port) = (free_port(), free_port());
        let data_dir = dir.path().join(format!("m{i}"));
        let mut server = Server::member(&ip.to_string(), client_port, peer_port, data_dir, vec![]);
        server.kind = Kind::Etcd;
        members.push(Member {
            name: format!("m{i}"),
            ip,
            server,
            advertised_peer: format!("http://{ip}:{peer_port}"),
            proxy: None,
        });
    }
    let initial = members
        .iter()
        .map(|m| format!("{}={}", m.name, m.advertised_peer))
        .collect::<Vec<_>>()
        .join(",");
    for m in &mut members {
        let client = m.server.url();
        let args: Vec<String> = [
            "--name",
            &m.name,
            "--data-dir",
            &m.server.data_dir.display().to_string(),
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
            "--listen-peer-urls",
            &m.advertised_peer,
            "--initial-advertise-peer-urls",
            &m.advertised_peer,
            "--initial-cluster",
            &initial,
            "--initial-cluster-token",
            &token,
            "--initial-cluster-state",
            "new",
            "--heartbeat-interval",
            &HEARTBEAT_MS.to_string(),
            "--election-timeout",
            &ELECTION_MS.to_string(),
            "--logger=zap",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        m.server.custom_args = Some(args);
        m.server.spawn();
    }
    let cluster = Cluster {
        members,
        token,
        flags: vec![],
        proxies: false,
        tls: None,
        dir,
    };
    for m in &cluster.members {
        m.server.ready().await;
    }
    cluster.wait_leader(Duration::from_secs(30)).await;
    cluster
}

/// A channel that connects on first use; with `timeout`, its calls give up after it, as an
/// apiserver's etcd client with a request deadline (none for watch streams, which stay open).
pub fn lazy_channel(url: &str, timeout: Option<Duration>) -> Channel {
    let endpoint = Channel::from_shared(url.to_string())
        .expect("url")
        .connect_timeout(Duration::from_secs(1));
    match timeout {
        Some(t) => endpoint.timeout(t).connect_lazy(),
        None => endpoint.connect_lazy(),
    }
}
