//! oxcd clusters as separate processes on loopback: member i serves on 127.0.0.(11+i), on
//! ports picked free; optionally a proxy (see `proxy`) in front of each peer URL.

use crate::kv::put;
use crate::proxy::PeerProxy;
use crate::wait::{retry, POLL};
use crate::{free_port, Server};
use futures::FutureExt;
use oxcd_api::etcdserverpb::cluster_client::ClusterClient;
use oxcd_api::etcdserverpb::kv_client::KvClient;
use oxcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use oxcd_api::etcdserverpb::{
    HashKvRequest, MemberAddRequest, RangeRequest, StatusRequest, StatusResponse,
};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;
use tonic::transport::Channel;

pub struct Spec {
    pub size: usize,
    pub proxies: bool,
    /// Extra flags for every member.
    pub flags: Vec<String>,
    /// https client and peer URLs; test clients dial with these settings.
    pub tls: Option<oxcd_client::ClientTls>,
}

impl Spec {
    pub fn new(size: usize) -> Spec {
        Spec {
            size,
            proxies: false,
            flags: vec![],
            tls: None,
        }
    }
}

pub struct Member {
    pub name: String,
    pub ip: IpAddr,
    pub server: Server,
    /// The peer URL the cluster knows this member by.
    pub advertised_peer: String,
    pub proxy: Option<PeerProxy>,
}

pub struct Cluster {
    pub members: Vec<Member>,
    pub token: String,
    pub flags: Vec<String>,
    pub proxies: bool,
    pub tls: Option<oxcd_client::ClientTls>,
    pub dir: tempfile::TempDir,
}

pub const HEARTBEAT_MS: u64 = 100;
pub const ELECTION_MS: u64 = 1000;

/// Client calls give up after this; the server's own request timeout is longer
/// (5 s + 2 × election timeout).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(3);

async fn channel_with(
    url: &str,
    timeout: Duration,
    tls: Option<&oxcd_client::ClientTls>,
) -> Option<Channel> {
    let tls = match tls {
        Some(t) => Some(oxcd_client::tls::client_config(t).ok()?),
        None => None,
    };
    oxcd_client::dial::channel(url, tls, None, |e| {
        e.connect_timeout(Duration::from_secs(1)).timeout(timeout)
    })
    .await
    .ok()
}

impl Cluster {
    /// Starts `spec.size` members with --initial-cluster-state new and waits until each one
    /// serves and a leader is elected.
    pub async fn start(spec: Spec) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = Cluster {
            members: vec![],
            token: format!("oxcd-test-{}", free_port()),
            flags: spec.flags,
            proxies: spec.proxies,
            tls: spec.tls,
            dir,
        };
        for i in 0..spec.size {
            let m = c.new_member(i);
            c.members.push(m);
        }
        let initial = c.initial_cluster();
        for i in 0..spec.size {
            let args = c.args(i, &initial, "new");
            c.members[i].server.custom_args = Some(args);
            c.members[i].server.spawn();
        }
        for i in 0..spec.size {
            c.members[i].server.ready().await;
        }
        c.wait_leader(Duration::from_secs(30)).await;
        c
    }

    fn new_member(&self, i: usize) -> Member {
        let ip: IpAddr = format!("127.0.0.{}", 11 + i).parse().expect("ip");
        let (client_port, peer_port) = (free_port(), free_port());
        let scheme = self.scheme();
        let (advertised_peer, proxy) = if self.proxies {
            let port = free_port();
            let proxy = PeerProxy::start(port, std::net::SocketAddr::new(ip, peer_port));
            (format!("http://127.0.0.1:{port}"), Some(proxy))
        } else {
            (format!("{scheme}://{ip}:{peer_port}"), None)
        };
        let data_dir = self.dir.path().join(format!("m{i}"));
        let mut server = Server::member(&ip.to_string(), client_port, peer_port, data_dir, vec![]);
        server.tls = self.tls.clone();
        Member {
            name: format!("m{i}"),
            ip,
            server,
            advertised_peer,
            proxy,
        }
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    pub fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}={}", m.name, m.advertised_peer))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn args(&self, i: usize, initial_cluster: &str, state: &str) -> Vec<String> {
        let m = &self.members[i];
        let client = m.server.url();
        let mut a: Vec<String> = [
            "--name",
            &m.name,
            "--data-dir",
            &m.server.data_dir.display().to_string(),
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
            "--listen-peer-urls",
            &format!("{}://{}:{}", self.scheme(), m.ip, m.server.peer_port),
            "--initial-advertise-peer-urls",
            &m.advertised_peer,
            "--initial-cluster",
            initial_cluster,
            "--initial-cluster-token",
            &self.token,
            "--initial-cluster-state",
            state,
            "--heartbeat-interval",
            &HEARTBEAT_MS.to_string(),
            "--election-timeout",
            &ELECTION_MS.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(self.flags.iter().cloned());
        a
    }

    pub fn url(&self, i: usize) -> String {
        self.members[i].server.url()
    }

    /// Every running member's client URL, comma separated (for --endpoints).
    pub fn endpoints(&self) -> String {
        self.running()
            .map(|i| self.url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn running(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.members.len()).filter(|&i| self.members[i].server.child.is_some())
    }

    pub async fn kv(&self, i: usize) -> KvClient<Channel> {
        KvClient::new(self.channel(i).await)
    }

    /// A KV client that waits for the server's own answer, however long it takes.
    pub async fn patient_kv(&self, i: usize) -> KvClient<Channel> {
        let ch = channel_with(&self.url(i), Duration::from_secs(30), self.tls.as_ref())
            .await
            .expect("member reachable");
        KvClient::new(ch)
    }

    /// A channel to member `i` whose calls give up after `timeout`; None if it does not
    /// answer now.
    pub async fn try_channel(&self, i: usize, timeout: Duration) -> Option<Channel> {
        channel_with(&self.url(i), timeout, self.tls.as_ref()).await
    }

    /// A channel to member `i` whose calls wait for the server's own answer, however long.
    pub async fn patient_channel(&self, i: usize) -> Channel {
        channel_with(&self.url(i), Duration::from_secs(300), self.tls.as_ref())
            .await
            .expect("member reachable")
    }

    /// A watch stream on member `i` carrying `creates`, kept open; with `require_leader`, the
    /// header etcd's clients send to be cut off when the member loses its leader.
    pub async fn watch(
        &self,
        i: usize,
        creates: Vec<oxcd_api::etcdserverpb::WatchCreateRequest>,
        require_leader: bool,
    ) -> tonic::Streaming<oxcd_api::etcdserverpb::WatchResponse> {
        use oxcd_api::etcdserverpb::watch_client::WatchClient;
        use oxcd_api::etcdserverpb::watch_request::RequestUnion;
        use oxcd_api::etcdserverpb::WatchRequest;
        let requests = creates.into_iter().map(|c| WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(c)),
        });
        // Sent before the call is awaited, and never ended: the stream stays open.
        let mut request = tonic::Request::new(futures::StreamExt::chain(
            futures::stream::iter(requests),
            futures::stream::pending(),
        ));
        if require_leader {
            request.metadata_mut().insert(
                "hasleader",
                tonic::metadata::MetadataValue::from_static("true"),
            );
        }
        WatchClient::new(self.channel(i).await)
            .watch(request)
            .await
            .expect("watch")
            .into_inner()
    }

    pub async fn maintenance(&self, i: usize) -> MaintenanceClient<Channel> {
        MaintenanceClient::new(self.channel(i).await)
    }

    pub async fn cluster_client(&self, i: usize) -> ClusterClient<Channel> {
        ClusterClient::new(self.channel(i).await)
    }

    async fn channel(&self, i: usize) -> Channel {
        let url = self.url(i);
        retry(Duration::from_secs(20), POLL, || {
            channel_with(&url, CLIENT_TIMEOUT, self.tls.as_ref()).map(|ch| ch.ok_or(()))
        })
        .await
        .unwrap_or_else(|_| panic!("member {i} unreachable"))
    }

    pub async fn status(&self, i: usize) -> Option<StatusResponse> {
        let ch = channel_with(&self.url(i), CLIENT_TIMEOUT, self.tls.as_ref()).await?;
        MaintenanceClient::new(ch)
            .status(StatusRequest {})
            .await
            .ok()
            .map(|r| r.into_inner())
    }

    /// The index of the member every running member agrees leads, within `within`.
    /// Member `i`'s ID, from its Status.
    pub async fn member_id(&self, i: usize) -> u64 {
        self.status(i)
            .await
            .and_then(|s| s.header)
            .unwrap_or_else(|| panic!("member {i} answers Status"))
            .member_id
    }

    pub async fn wait_leader(&self, within: Duration) -> usize {
        let agreed = retry(within, Duration::from_millis(20), || async {
            let mut leaders = Vec::new();
            let mut ids = Vec::new();
            for i in self.running().collect::<Vec<_>>() {
                if let Some(s) = self.status(i).await {
                    leaders.push(s.leader);
                    ids.push((i, s.header.map_or(0, |h| h.member_id)));
                }
            }
            if !leaders.is_empty()
                && leaders.len() == self.running().count()
                && leaders[0] != 0
                && leaders.iter().all(|l| *l == leaders[0])
            {
                if let Some((i, _)) = ids.iter().find(|(_, id)| *id == leaders[0]) {
                    return Ok(*i);
                }
            }
            Err(leaders)
        })
        .await;
        agreed.unwrap_or_else(|leaders| panic!("no agreed leader within {within:?}: {leaders:x?}"))
    }

    pub async fn put(&self, i: usize, key: &str, value: &str) -> Result<i64, tonic::Status> {
        let mut kv = self.kv(i).await;
        let resp = kv.put(put(key, value)).await?.into_inner();
        Ok(resp.header.map_or(0, |h| h.revision))
    }

    /// A linearizable read of one key through member `i`.
    pub async fn get(&self, i: usize, key: &str) -> Result<Option<String>, tonic::Status> {
        let mut kv = self.kv(i).await;
        let resp = kv
            .range(RangeRequest {
                key: key.into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        Ok(resp
            .kvs
            .first()
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned()))
    }

    /// HashKV of every running member at the newest committed revision (read linearizably
    /// through the first running member), once each has applied it.
    pub async fn settled_hashes(&self) -> Vec<u32> {
        let first = self.running().next().expect("a running member");
        let revision = retry(Duration::from_secs(20), POLL, || async move {
            let mut kv = self.kv(first).await;
            kv.range(RangeRequest {
                key: b"\0".to_vec(),
                count_only: true,
                ..Default::default()
            })
            .await
        })
        .await
        .unwrap_or_else(|e| panic!("member {first} range: {e}"))
        .into_inner()
        .header
        .map_or(0, |h| h.revision);
        self.hashes(revision).await
    }

    /// HashKV of every running member at the same revision, once they have all applied it.
    pub async fn hashes(&self, revision: i64) -> Vec<u32> {
        let mut out = Vec::new();
        for i in self.running().collect::<Vec<_>>() {
            let hash = retry(Duration::from_secs(20), POLL, || async move {
                let mut m = self.maintenance(i).await;
                m.hash_kv(HashKvRequest { revision }).await
            })
            .await
            .unwrap_or_else(|e| panic!("member {i} hashkv: {e}"));
            out.push(hash.into_inner().hash);
        }
        out
    }

    /// Cuts member `i` off from every other member, both ways.
    pub fn isolate(&self, i: usize) {
        let others: Vec<IpAddr> = (0..self.members.len())
            .filter(|&j| j != i)
            .map(|j| self.members[j].ip)
            .collect();
        self.proxy(i).block(&others);
        for j in 0..self.members.len() {
            if j != i {
                self.proxy(j).block(&[self.members[i].ip]);
            }
        }
    }

    /// Member `from` can no longer reach member `to` (the other direction still works).
    pub fn cut_one_way(&self, from: usize, to: usize) {
        self.proxy(to).block(&[self.members[from].ip]);
    }

    pub fn heal(&self) {
        for m in &self.members {
            if let Some(p) = &m.proxy {
                p.unblock_all();
                p.set_delay(Duration::ZERO);
            }
        }
    }

    pub fn proxy(&self, i: usize) -> &PeerProxy {
        self.members[i]
            .proxy
            .as_ref()
            .expect("cluster started without proxies")
    }

    /// Adds a member through `via` (member add), then starts it with
    /// --initial-cluster-state existing. Returns its index.
    pub async fn add_member(&mut self, via: usize, learner: bool) -> usize {
        self.add_member_with_env(via, learner, &[]).await
    }

    /// `add_member` with extra environment variables for the new member's process.
    pub async fn add_member_with_env(
        &mut self,
        via: usize,
        learner: bool,
        env: &[(&str, &str)],
    ) -> usize {
        let i = self.members.len();
        let mut m = self.new_member(i);
        m.server.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        // The server's own request timeout bounds the change.
        let mut cc = ClusterClient::new(self.patient_channel(via).await);
        cc.member_add(MemberAddRequest {
            peer_ur_ls: vec![m.advertised_peer.clone()],
            is_learner: learner,
        })
        .await
        .expect("member add");
        self.members.push(m);
        self.start_joining(i);
        i
    }

    /// Starts member `i`, already added, with --initial-cluster-state existing.
    pub fn start_joining(&mut self, i: usize) {
        let initial = self
            .running()
            .chain(std::iter::once(i))
            .map(|j| {
                format!(
                    "{}={}",
                    self.members[j].name, self.members[j].advertised_peer
                )
            })
            .collect::<Vec<_>>()
            .join(",");
        let args = self.args(i, &initial, "existing");
        self.members[i].server.custom_args = Some(args);
        self.members[i].server.spawn();
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.members[i].server.data_dir.clone()
    }
}
