//! Peer transport: raft messages to the other members over one long-lived gRPC stream per
//! peer, batched; reconnects with backoff; a MsgSnapshot travels on its own stream after the
//! state machine it stands for. Also the receiving side (the `Raft` service on peer URLs).

use crate::msg::{Fatal, FatalTx, NodeMsg};
use oxcd_api::etcdserverpb::Member;
use oxcd_api::oxcdpb::raft_client::RaftClient;
use oxcd_api::oxcdpb::raft_server::Raft;
use oxcd_api::oxcdpb::{ClusterRecord, PeerAck, RaftBatch, SnapshotChunk};
use oxcd_api::{ClusterId, MemberId};
use oxcd_api::{EtcdError, Revision};
use oxcd_mvcc::{Store, META_APPLIED_INDEX, META_APPLIED_TERM};
use oxcd_storage::membership;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

/// The key under which the cluster table keeps raft's membership (voters, learners).
const QUEUE: usize = 4096;
const BATCH: usize = 512;
const SNAPSHOT_CHUNK: usize = 1 << 20;
/// Peer messages may carry up to a whole raft batch of max-size requests.
pub const MAX_PEER_MESSAGE: usize = 256 << 20;
/// How often a peer connection is pinged, and how long a ping's answer may take before the
/// connection counts as dead (etcd's rafthttp read timeout). Raft's heartbeats and
/// check-quorum decide whether a peer is alive: a busy machine that answers a ping late must
/// not lose its connection, and with it its leader.
const PEER_PING_EVERY: Duration = Duration::from_secs(1);
const PEER_SILENCE_LIMIT: Duration = Duration::from_secs(5);

/// Why a member refuses a peer's stream, carried in the status's metadata so the sender
/// reads it by kind, not by the message's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerRefusal {
    ClusterIdMismatch,
    Removed,
}

const REFUSAL_KEY: &str = "oxcd-peer-refusal";

impl PeerRefusal {
    fn name(self) -> &'static str {
        match self {
            PeerRefusal::ClusterIdMismatch => "cluster-id-mismatch",
            PeerRefusal::Removed => "removed",
        }
    }

    fn status(self, message: String) -> Status {
        let mut status = Status::failed_precondition(message);
        status.metadata_mut().insert(
            REFUSAL_KEY,
            tonic::metadata::MetadataValue::from_static(self.name()),
        );
        status
    }

    fn of(status: &Status) -> Option<PeerRefusal> {
        let value = status.metadata().get(REFUSAL_KEY)?.to_str().ok()?;
        [PeerRefusal::ClusterIdMismatch, PeerRefusal::Removed]
            .into_iter()
            .find(|r| r.name() == value)
    }
}

struct Peer {
    urls: Vec<String>,
    /// When the leader last sent this peer a heartbeat.
    last_heartbeat: Option<std::time::Instant>,
    queue: mpsc::Sender<Message>,
    connected: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

/// How often a peer's round trip is measured (etcd probes every 4 s, records every 30 s).
const PROBE_EVERY: Duration = Duration::from_secs(5);

/// Measures the round trip to a peer on its connection until aborted.
async fn probe(mut client: RaftClient<Channel>, to: u64) {
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        let sent = std::time::Instant::now();
        if client.probe(PeerAck {}).await.is_ok() {
            if let Some(m) = crate::metrics::get() {
                m.peer_round_trip
                    .with_label_values(&[&format!("{to:x}")])
                    .observe(sent.elapsed().as_secs_f64());
            }
        }
    }
}

/// Aborts a task when dropped (the prober of a connection that ended).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub struct Transport {
    me: MemberId,
    cluster_id: ClusterId,
    node: Sender<NodeMsg>,
    store: Arc<Store>,
    /// Outgoing connections start from this address (the peer listen address), if any.
    source_ip: Option<IpAddr>,
    keepalive: Duration,
    /// With peer TLS: what this member presents and trusts when it dials a peer.
    tls: Option<Arc<rustls::ClientConfig>>,
    peers: Mutex<HashMap<u64, Peer>>,
    rt: tokio::runtime::Handle,
    fatal: FatalTx,
}

/// How this member dials its peers.
pub struct PeerDialing {
    /// The address connections come from (the peer listen address), when it is specific.
    pub source_ip: Option<IpAddr>,
    pub keepalive: Duration,
    /// With peer TLS: what this member presents and trusts.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Transport {
    pub fn new(
        (me, cluster_id): (MemberId, ClusterId),
        node: Sender<NodeMsg>,
        store: Arc<Store>,
        dialing: PeerDialing,
        fatal: FatalTx,
    ) -> Arc<Transport> {
        Arc::new(Transport {
            fatal,
            me,
            cluster_id,
            node,
            store,
            source_ip: dialing.source_ip,
            keepalive: dialing.keepalive,
            tls: dialing.tls,
            peers: Mutex::new(HashMap::new()),
            rt: tokio::runtime::Handle::current(),
        })
    }

    fn peers(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Peer>> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues messages for their peers; never blocks the raft thread. A full queue or an
    /// unknown peer tells raft the peer is unreachable, and raft sends again later.
    pub fn send(&self, msgs: Vec<Message>) {
        if msgs.is_empty() {
            return;
        }
        let mut peers = self.peers();
        for m in msgs {
            let to = m.to;
            if m.get_msg_type() == MessageType::MsgHeartbeat {
                if let Some(p) = peers.get_mut(&to) {
                    self.heartbeat_sent(MemberId(to), &mut p.last_heartbeat);
                }
            }
            let queued = peers.get(&to).is_some_and(|p| p.queue.try_send(m).is_ok());
            if !queued {
                crate::metrics::inc_peer(|m| &m.peer_sent_failures, to, 1);
                let _ = self.node.send(NodeMsg::Unreachable { id: to });
            }
        }
    }

    /// etcd's check that a leader's heartbeats go out on time: one later than twice the
    /// heartbeat interval after the last is counted and logged (an overloaded leader, likely
    /// from a slow disk).
    fn heartbeat_sent(&self, to: MemberId, last: &mut Option<std::time::Instant>) {
        let now = std::time::Instant::now();
        if let Some(gap) = last.map(|t| now.duration_since(t)) {
            if gap > 2 * self.keepalive {
                crate::metrics::inc(|m| &m.heartbeat_send_failures);
                tracing::warn!(
                    to = %to,
                    heartbeat_interval = ?self.keepalive,
                    expected_duration = ?(2 * self.keepalive),
                    exceeded_duration = ?(gap - 2 * self.keepalive),
                    "leader failed to send out heartbeat on time; took too long, leader is overloaded likely from slow disk"
                );
            }
        }
        *last = Some(now);
    }

    /// A new term of leadership: its first heartbeats are on time by definition.
    pub fn forget_heartbeats(&self) {
        for p in self.peers().values_mut() {
            p.last_heartbeat = None;
        }
    }

    /// What this member dials its peers with (peer TLS), if anything.
    pub fn tls(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.tls.clone()
    }

    /// Whether the stream to `id` is up (self counts as up).
    pub fn is_active(&self, id: u64) -> bool {
        id == self.me.0
            || self
                .peers()
                .get(&id)
                .is_some_and(|p| p.connected.load(Ordering::Acquire))
    }

    /// Connects to members that appeared, drops those that left, reconnects moved ones.
    pub fn set_members(self: &Arc<Self>, members: &[Member]) {
        let mut peers = self.peers();
        peers.retain(|id, p| {
            let keep = members
                .iter()
                .any(|m| m.id == *id && m.peer_ur_ls == p.urls);
            if !keep {
                p.task.abort();
            }
            keep
        });
        for m in members {
            if m.id == self.me.0 || peers.contains_key(&m.id) || m.peer_ur_ls.is_empty() {
                continue;
            }
            let (queue, rx) = mpsc::channel(QUEUE);
            let connected = Arc::new(AtomicBool::new(false));
            crate::metrics::add_peer(m.id);
            let task = self.rt.spawn(self.clone().run_peer(
                m.id,
                m.peer_ur_ls.clone(),
                rx,
                connected.clone(),
            ));
            peers.insert(
                m.id,
                Peer {
                    urls: m.peer_ur_ls.clone(),
                    last_heartbeat: None,
                    queue,
                    connected,
                    task,
                },
            );
        }
    }

    /// How long a handshake or a batch may take before the connection counts as dead.
    fn stall_limit(&self) -> Duration {
        (self.keepalive * 10).max(Duration::from_secs(2))
    }

    async fn connect(&self, url: &str) -> Result<Channel, String> {
        oxcd_client::dial::channel(url, self.tls.clone(), self.source_ip, |e| {
            e.connect_timeout(Duration::from_secs(1))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(PEER_PING_EVERY)
                .keep_alive_timeout(PEER_SILENCE_LIMIT)
                .keep_alive_while_idle(true)
        })
        .await
    }

    async fn run_peer(
        self: Arc<Self>,
        id: u64,
        urls: Vec<String>,
        mut queue: mpsc::Receiver<Message>,
        connected: Arc<AtomicBool>,
    ) {
        let peer = MemberId(id);
        let mut backoff = Duration::from_millis(50);
        let mut attempt = 0usize;
        loop {
            let url = &urls[attempt % urls.len()];
            attempt += 1;
            // The TCP connect has its own timeout; this bounds the HTTP/2 handshake too.
            let connected_channel = tokio::time::timeout(self.stall_limit(), self.connect(url))
                .await
                .map_err(|_| "handshake timed out".to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            let channel = match connected_channel {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(remote_peer_id = %peer, error = %e, "peer unreachable");
                    self.idle_while_down(id, &mut queue, backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            backoff = Duration::from_millis(50);
            let mut client = RaftClient::new(channel.clone())
                .max_encoding_message_size(MAX_PEER_MESSAGE)
                .max_decoding_message_size(MAX_PEER_MESSAGE);
            let sent_bytes = crate::metrics::peer_counter(|m| &m.peer_sent_bytes, id);
            let prober = self.rt.spawn(probe(client.clone(), id));
            let _stop_probing = AbortOnDrop(prober);
            let (tx, rx) = mpsc::channel::<RaftBatch>(64);
            let mut call = Box::pin(client.send(tokio_stream::wrappers::ReceiverStream::new(rx)));
            connected.store(true, Ordering::Release);
            tracing::info!(remote_peer_id = %peer, "established TCP streaming connection with remote peer");
            loop {
                tokio::select! {
                    res = &mut call => {
                        if let Err(status) = res {
                            self.on_refused(peer, &status);
                        }
                        break;
                    }
                    m = queue.recv() => {
                        let Some(m) = m else { return };
                        let mut batch = vec![m];
                        while batch.len() < BATCH {
                            match queue.try_recv() {
                                Ok(m) => batch.push(m),
                                Err(_) => break,
                            }
                        }
                        let mut messages = Vec::with_capacity(batch.len());
                        for m in batch {
                            if m.get_msg_type() == MessageType::MsgSnapshot {
                                tokio::spawn(self.clone().send_snapshot(channel.clone(), m));
                            } else if let Ok(b) = m.write_to_bytes() {
                                messages.push(b);
                            }
                        }
                        if messages.is_empty() {
                            continue;
                        }
                        let bytes: usize = messages.iter().map(Vec::len).sum();
                        let batch = RaftBatch { cluster_id: self.cluster_id.0, from: self.me.0, messages };
                        // A stream that stops taking batches is dead even if TCP has not
                        // noticed: start over on a new connection.
                        match tokio::time::timeout(self.stall_limit(), tx.send(batch)).await {
                            Ok(Ok(())) => {
                                if let Some(c) = &sent_bytes {
                                    c.inc_by(bytes as u64);
                                }
                            }
                            Ok(Err(_)) => break,
                            Err(_) => {
                                tracing::warn!(remote_peer_id = %peer, "peer stream stalled; reconnecting");
                                break;
                            }
                        }
                    }
                }
            }
            connected.store(false, Ordering::Release);
            tracing::warn!(remote_peer_id = %peer, "lost TCP streaming connection with remote peer");
            let _ = self.node.send(NodeMsg::Unreachable { id });
            self.idle_while_down(id, &mut queue, backoff).await;
        }
    }

    /// Waits out a backoff while the peer is down, dropping what raft queues for it meanwhile
    /// (raft resends once the peer answers again).
    async fn idle_while_down(&self, id: u64, queue: &mut mpsc::Receiver<Message>, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        let mut told = false;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                m = queue.recv() => {
                    let Some(m) = m else { return };
                    crate::metrics::inc_peer(|m| &m.peer_sent_failures, id, 1);
                    if m.get_msg_type() == MessageType::MsgSnapshot {
                        let _ = self.node.send(NodeMsg::SnapshotSent { id, ok: false });
                    }
                    if !told {
                        told = true;
                        let _ = self.node.send(NodeMsg::Unreachable { id });
                    }
                }
            }
        }
    }

    fn on_refused(&self, peer: MemberId, status: &Status) {
        match PeerRefusal::of(status) {
            Some(PeerRefusal::Removed) => {
                tracing::error!(remote_peer_id = %peer, "{}; stopping", Fatal::Removed);
                // A peer told us, not our own applied log: etcd exits 1 here.
                let _ = self.fatal.send(Fatal::Failed(Fatal::Removed.to_string()));
            }
            Some(PeerRefusal::ClusterIdMismatch) => {
                tracing::error!(remote_peer_id = %peer, local_member_cluster_id = %self.cluster_id, error = %status.message(), "request sent was ignored due to cluster ID mismatch");
            }
            None => {
                tracing::warn!(remote_peer_id = %peer, error = %status.message(), "peer stream ended");
            }
        }
    }

    /// Streams the whole state machine to `msg.to`, then the MsgSnapshot with its metadata
    /// set to the point the stream stands for.
    async fn send_snapshot(self: Arc<Self>, channel: Channel, mut msg: Message) {
        crate::failpoints::async_fail_point!("raftBeforeSendSnap");
        let to = msg.to;
        let (tx, rx) = mpsc::channel::<SnapshotChunk>(4);
        let store = self.store.clone();
        let (cluster_id, from) = (self.cluster_id.0, self.me.0);
        let producer = tokio::task::spawn_blocking(move || {
            let mut w = ChunkWriter {
                tx: tx.clone(),
                buf: Vec::with_capacity(SNAPSHOT_CHUNK),
                cluster_id,
                from,
            };
            let point = store.write_snapshot(&mut w)?;
            let conf = oxcd_storage::records::snapshot_conf_state(&point)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let meta = msg.mut_snapshot().mut_metadata();
            meta.index = point.meta(META_APPLIED_INDEX).unwrap_or(0);
            meta.term = point.meta(META_APPLIED_TERM).unwrap_or(0);
            meta.set_conf_state(conf);
            let index = meta.index;
            let message = msg
                .write_to_bytes()
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            tx.blocking_send(SnapshotChunk {
                cluster_id,
                from,
                message,
                data: Vec::new(),
            })
            .map_err(|_| std::io::Error::other("snapshot stream closed"))?;
            Ok::<u64, oxcd_mvcc::SnapshotError>(index)
        });
        let mut client = RaftClient::new(channel)
            .max_encoding_message_size(MAX_PEER_MESSAGE)
            .max_decoding_message_size(MAX_PEER_MESSAGE);
        let sent = client
            .snapshot(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await;
        let produced = producer.await;
        let ok = match (&sent, &produced) {
            (Ok(_), Ok(Ok(index))) => {
                tracing::info!(remote_peer_id = %MemberId(to), snapshot_index = index, "sent database snapshot to remote peer");
                true
            }
            _ => {
                tracing::warn!(remote_peer_id = %MemberId(to), send = ?sent.err(), produce = ?produced.map(|r| r.err()), "failed to send database snapshot");
                false
            }
        };
        let _ = self.node.send(NodeMsg::SnapshotSent { id: to, ok });
    }
}

struct ChunkWriter {
    tx: mpsc::Sender<SnapshotChunk>,
    buf: Vec<u8>,
    cluster_id: u64,
    from: u64,
}

impl ChunkWriter {
    fn ship(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(SNAPSHOT_CHUNK));
        self.tx
            .blocking_send(SnapshotChunk {
                cluster_id: self.cluster_id,
                from: self.from,
                message: Vec::new(),
                data,
            })
            .map_err(|_| std::io::Error::other("snapshot stream closed"))
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= SNAPSHOT_CHUNK {
            self.ship()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.ship()
    }
}

/// The receiving side, served on the peer URLs.
#[derive(Clone)]
pub struct PeerService {
    pub cluster_id: ClusterId,
    pub member_id: MemberId,
    pub node: Sender<NodeMsg>,
    pub store: Arc<Store>,
    pub snap_dir: PathBuf,
    /// The lease service, once the member serves clients: it answers forwarded lease calls.
    pub leases: Arc<std::sync::OnceLock<Arc<dyn PeerLeases>>>,
}

/// What the peer service needs from the lease service to answer calls other members forward.
#[tonic::async_trait]
pub trait PeerLeases: Send + Sync {
    async fn renew_for_peer(
        &self,
        id: i64,
    ) -> Result<oxcd_api::etcdserverpb::LeaseKeepAliveResponse, Status>;
    async fn time_to_live_for_peer(
        &self,
        request: oxcd_api::etcdserverpb::LeaseTimeToLiveRequest,
    ) -> Result<oxcd_api::etcdserverpb::LeaseTimeToLiveResponse, Status>;
}

impl PeerService {
    fn check_sender(&self, cluster_id: u64, from: u64) -> Result<(), Status> {
        if cluster_id != self.cluster_id.0 {
            tracing::warn!(local_member_cluster_id = %self.cluster_id, remote_peer_cluster_id = %ClusterId(cluster_id), remote_peer_id = %MemberId(from), "request cluster ID mismatch");
            return Err(PeerRefusal::ClusterIdMismatch.status(format!(
                "cluster ID mismatch: local {}, remote {}",
                self.cluster_id,
                ClusterId(cluster_id)
            )));
        }
        let removed = membership::load(&self.store)
            .ok()
            .flatten()
            .is_some_and(|r| r.removed.contains(&from));
        if removed {
            return Err(PeerRefusal::Removed.status(Fatal::Removed.to_string()));
        }
        Ok(())
    }

    fn step(&self, msg: Message) -> Result<(), Status> {
        self.node
            .send(NodeMsg::Step(Box::new(msg)))
            .map_err(|_| Status::unavailable("etcdserver: server stopped"))
    }
}

#[tonic::async_trait]
impl Raft for PeerService {
    async fn send(
        &self,
        request: Request<Streaming<RaftBatch>>,
    ) -> Result<Response<PeerAck>, Status> {
        let mut stream = request.into_inner();
        let mut sender: Option<(u64, Option<prometheus::IntCounter>)> = None;
        while let Some(batch) = stream.message().await? {
            match &sender {
                None => {
                    self.check_sender(batch.cluster_id, batch.from)?;
                    let received =
                        crate::metrics::peer_counter(|m| &m.peer_received_bytes, batch.from);
                    sender = Some((batch.from, received));
                }
                Some((from, _)) if *from != batch.from => {
                    return Err(Status::invalid_argument("a peer stream changed its sender"));
                }
                Some(_) => {}
            }
            if let Some((_, Some(received))) = &sender {
                received.inc_by(batch.messages.iter().map(|m| m.len() as u64).sum());
            }
            for bytes in batch.messages {
                match Message::parse_from_bytes(&bytes) {
                    // A snapshot comes only on its own stream, with the state it stands for.
                    Ok(m) if m.get_msg_type() == MessageType::MsgSnapshot => {
                        tracing::warn!(remote_peer_id = %MemberId(m.from), "dropping a snapshot message sent outside a snapshot stream");
                    }
                    Ok(m) => self.step(m)?,
                    Err(e) => tracing::warn!(error = %e, "dropping undecodable raft message"),
                }
            }
        }
        Ok(Response::new(PeerAck {}))
    }

    async fn snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<PeerAck>, Status> {
        use tokio::io::AsyncWriteExt;
        let mut stream = request.into_inner();
        let part = self.snap_dir.join(format!(
            "{:x}.snap.part",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        let io_err = |e: std::io::Error| Status::internal(format!("snapshot: {e}"));
        let mut file = tokio::fs::File::create(&part).await.map_err(io_err)?;
        let mut message = None;
        let mut checked = false;
        while let Some(chunk) = stream.message().await? {
            if !checked {
                self.check_sender(chunk.cluster_id, chunk.from)?;
                checked = true;
            }
            file.write_all(&chunk.data).await.map_err(io_err)?;
            if !chunk.message.is_empty() {
                message = Some(chunk.message);
            }
        }
        file.sync_all().await.map_err(io_err)?;
        drop(file);
        let Some(bytes) = message else {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(Status::invalid_argument("snapshot stream ended early"));
        };
        let mut msg = Message::parse_from_bytes(&bytes)
            .map_err(|e| Status::invalid_argument(format!("snapshot message: {e}")))?;
        let index = msg.get_snapshot().get_metadata().index;
        let path = crate::apply::received_snapshot_path(&self.snap_dir, index);
        crate::failpoints::async_fail_point!("raftBeforeSaveSnap");
        tokio::fs::rename(&part, &path).await.map_err(io_err)?;
        // The rename must be durable before raft hears of the snapshot and moves its log on.
        tokio::fs::File::open(&self.snap_dir)
            .await
            .map_err(io_err)?
            .sync_all()
            .await
            .map_err(io_err)?;
        crate::failpoints::async_fail_point!("raftAfterSaveSnap");
        tracing::info!(remote_peer_id = %MemberId(msg.from), snapshot_index = index, "received database snapshot from remote peer");
        // The apply thread finds the file by the snapshot's index in the snap dir; nothing a
        // peer sends names a path.
        msg.mut_snapshot().data = Default::default();
        self.step(msg)?;
        Ok(Response::new(PeerAck {}))
    }

    async fn hash_kv(
        &self,
        request: Request<oxcd_api::etcdserverpb::HashKvRequest>,
    ) -> Result<Response<oxcd_api::etcdserverpb::HashKvResponse>, Status> {
        let kv =
            crate::blocking::hash_kv(self.store.clone(), Revision(request.into_inner().revision))
                .await?;
        Ok(Response::new(oxcd_api::etcdserverpb::HashKvResponse {
            header: Some(oxcd_api::etcdserverpb::ResponseHeader {
                cluster_id: self.cluster_id.0,
                member_id: self.member_id.0,
                ..Default::default()
            }),
            hash: kv.hash,
            compact_revision: kv.compact_revision.0,
            hash_revision: kv.revision.0,
        }))
    }

    async fn lease_renew(
        &self,
        request: Request<oxcd_api::etcdserverpb::LeaseKeepAliveRequest>,
    ) -> Result<Response<oxcd_api::etcdserverpb::LeaseKeepAliveResponse>, Status> {
        let leases = self.leases.get().ok_or(EtcdError::LeaderChanged)?;
        let id = request.into_inner().id;
        Ok(Response::new(leases.renew_for_peer(id).await?))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<oxcd_api::etcdserverpb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<oxcd_api::etcdserverpb::LeaseTimeToLiveResponse>, Status> {
        let leases = self.leases.get().ok_or(EtcdError::LeaderChanged)?;
        let r = request.into_inner();
        Ok(Response::new(leases.time_to_live_for_peer(r).await?))
    }

    async fn probe(&self, _request: Request<PeerAck>) -> Result<Response<PeerAck>, Status> {
        Ok(Response::new(PeerAck {}))
    }

    async fn members(&self, _request: Request<PeerAck>) -> Result<Response<ClusterRecord>, Status> {
        let record = membership::load(&self.store)
            .map_err(|e| Status::internal(e.to_string()))?
            .unwrap_or_default();
        Ok(Response::new(record))
    }
}
