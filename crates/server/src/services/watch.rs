//! etcd's Watch service: one bidirectional stream carries many watches. Requests (create,
//! cancel, progress) are read by one task; another turns the store's event batches into
//! responses (previous values, fragments, progress notifications).

use super::watch_wire::WatchOut;
use crate::server::EtcdServer;
use oxcd_api::etcdserverpb::watch_create_request::FilterType;
use oxcd_api::etcdserverpb::watch_request::RequestUnion;
use oxcd_api::etcdserverpb::{RangeRequest, WatchCreateRequest, WatchRequest, WatchResponse};
use oxcd_api::mvccpb::event::EventType;
use oxcd_api::mvccpb::Event;
use oxcd_api::Revision;
use oxcd_mvcc::{KeyRange, Progress, WatchBatch, WatchSink, WatchSpec};
use prost::Message;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

/// Batches a stream's watches may have waiting before a watch falls back to history
/// (etcd's chanBufLen).
const EVENT_BUFFER: usize = 128;
/// Event bytes a stream may have waiting: past it, its watches fall back to history until
/// the client reads (a client that stops reading holds this much, not 128 batches of
/// whatever size). A batch larger than this still goes when nothing else waits.
const EVENT_BYTES: usize = 2 << 20;
/// Responses ready for the transport; kept short, as these are not counted in bytes.
const RESPONSE_BUFFER: usize = 4;
/// etcd's clientv3.InvalidWatchID.
const INVALID_WATCH_ID: i64 = -1;

pub struct WatchService {
    pub server: Arc<EtcdServer>,
    pub next_stream: Arc<AtomicU64>,
    pub progress_interval: Duration,
}

/// What a stream sends, in one queue: the store's batches (events, progress, compaction)
/// and the answers to the client's requests (created, canceled), so that a watch's
/// "created" goes before its events and a progress notification asked for before a watch
/// was created reaches the client before that watch's "created".
enum Outgoing {
    /// A batch and its events' bytes, as counted in the stream's queue.
    Batch(WatchBatch, usize),
    Reply(WatchResponse),
}

/// A stream's queue of batches, bounded in count and in event bytes.
struct ChannelSink {
    batches: mpsc::Sender<Outgoing>,
    queued: Arc<AtomicUsize>,
}

impl WatchSink for ChannelSink {
    fn try_send(&self, batch: WatchBatch) -> bool {
        let bytes = batch.events.wire_len();
        let queued = self.queued.load(Ordering::Acquire);
        if queued > 0 && queued + bytes > EVENT_BYTES {
            return false;
        }
        self.queued.fetch_add(bytes, Ordering::AcqRel);
        if self.batches.try_send(Outgoing::Batch(batch, bytes)).is_ok() {
            return true;
        }
        self.queued.fetch_sub(bytes, Ordering::AcqRel);
        false
    }

    /// Whether a catch-up batch of any size would be taken now: only once everything
    /// queued has gone on (a watcher that could take only a small batch would pin the
    /// catch-up window to its place without moving).
    fn has_room(&self) -> bool {
        self.batches.capacity() > 0 && self.queued.load(Ordering::Acquire) == 0
    }
}

#[derive(Default, Clone, Copy)]
struct Options {
    prev_kv: bool,
    fragment: bool,
    progress_notify: bool,
}

/// What both tasks of a stream know of its watches.
#[derive(Default)]
struct StreamState {
    watches: HashMap<i64, Options>,
    next_id: i64,
    /// Watches that got events since the last progress tick (their notification is elided).
    active: std::collections::HashSet<i64>,
    /// A RequestProgress waits for the stream's watches to catch up (one answer for all
    /// asked meanwhile, as etcd).
    progress_deferred: bool,
}

type Shared = Arc<Mutex<StreamState>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, StreamState> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) type ResponseStream =
    Pin<Box<dyn futures::Stream<Item = Result<WatchOut, Status>> + Send>>;

impl WatchService {
    pub async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        // etcd's clients ask, with this header, to be cut off when the member loses its
        // leader (so they move to a member that has one).
        let require_leader = request
            .metadata()
            .get("hasleader")
            .is_some_and(|v| v.as_bytes() == b"true");
        if require_leader && self.server.raft.leader.load(Ordering::Acquire) == 0 {
            return Err(oxcd_api::EtcdError::NoLeader.into());
        }
        // As etcd: the stream's token (or certificate) is who every watch on it is for.
        let who = self.server.auth_info(&request)?;
        let stream_id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let (out_tx, out_rx) = mpsc::channel::<WatchOut>(RESPONSE_BUFFER);
        let (ev_tx, ev_rx) = mpsc::channel::<Outgoing>(EVENT_BUFFER);
        let queued = Arc::new(AtomicUsize::new(0));
        let replies = ev_tx.clone();
        let sink: Arc<dyn WatchSink> = Arc::new(ChannelSink {
            batches: ev_tx,
            queued: queued.clone(),
        });
        let state: Shared = Arc::default();
        let server = self.server.clone();
        let incoming = request.into_inner();

        let sender = tokio::spawn(send_loop(
            server.clone(),
            stream_id,
            state.clone(),
            (ev_rx, queued),
            out_tx,
            self.progress_interval,
        ));
        let (fail_tx, fail_rx) = mpsc::channel::<Status>(1);
        let receiver = tokio::spawn(async move {
            let who = who.as_ref();
            recv_loop(&server, who, stream_id, &state, incoming, &replies, sink).await;
            // The client is gone (or sent garbage): its watches end with it.
            server.store.cancel_stream(stream_id);
            sender.abort();
        });
        if require_leader {
            tokio::spawn(monitor_leader(
                self.server.clone(),
                stream_id,
                receiver,
                fail_tx,
            ));
        }
        let out =
            tokio_stream::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(out_rx), Ok);
        let fail =
            tokio_stream::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(fail_rx), Err);
        Ok(Response::new(Box::pin(tokio_stream::StreamExt::merge(
            out, fail,
        ))))
    }
}

/// As etcd's monitorLeader: a stream that requires a leader ends with "etcdserver: no
/// leader" once its member has had none for more than 3 election timeouts.
async fn monitor_leader(
    server: Arc<EtcdServer>,
    stream_id: u64,
    receiver: tokio::task::JoinHandle<()>,
    fail: mpsc::Sender<Status>,
) {
    let mut leaderless = 0;
    while !receiver.is_finished() {
        tokio::time::sleep(server.election_timeout).await;
        if server.raft.leader.load(Ordering::Acquire) == 0 {
            leaderless += 1;
        } else {
            leaderless = 0;
        }
        if leaderless > 3 {
            receiver.abort();
            server.store.cancel_stream(stream_id);
            let _ = fail.send(oxcd_api::EtcdError::NoLeader.into()).await;
            return;
        }
    }
}

async fn recv_loop(
    server: &EtcdServer,
    who: Option<&crate::auth::AuthInfo>,
    stream_id: u64,
    state: &Shared,
    mut incoming: Streaming<WatchRequest>,
    out: &mpsc::Sender<Outgoing>,
    sink: Arc<dyn WatchSink>,
) {
    while let Ok(Some(req)) = incoming.message().await {
        let response = match req.request_union {
            Some(RequestUnion::CreateRequest(c)) => {
                create(server, who, stream_id, state, c, out, sink.clone()).await;
                continue;
            }
            Some(RequestUnion::CancelRequest(c)) => {
                if !server.store.cancel_watch((stream_id, c.watch_id)) {
                    continue;
                }
                lock(state).watches.remove(&c.watch_id);
                WatchResponse {
                    header: server.header(server.store.current_revision()),
                    watch_id: c.watch_id,
                    canceled: true,
                    ..Default::default()
                }
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                let mut st = lock(state);
                if st.progress_deferred {
                    continue;
                }
                match request_stream_progress(server, stream_id, &mut st) {
                    Some(answer) => answer,
                    None => continue,
                }
            }
            None => continue,
        };
        if out.send(Outgoing::Reply(response)).await.is_err() {
            return;
        }
    }
}

/// etcd's rules: an empty key means "\0"; "\0" as range end means every key from `key`; a
/// range end not after the key is an empty range.
fn watch_range(c: &WatchCreateRequest) -> Result<KeyRange, &'static str> {
    let key = if c.key.is_empty() {
        vec![0]
    } else {
        c.key.clone()
    };
    let range = KeyRange::new(&key, &c.range_end);
    if let KeyRange::Between(from, end) = &range {
        if from >= end {
            return Err("mvcc: watcher range is empty");
        }
    }
    Ok(range)
}

async fn create(
    server: &EtcdServer,
    who: Option<&crate::auth::AuthInfo>,
    stream_id: u64,
    state: &Shared,
    c: WatchCreateRequest,
    out: &mpsc::Sender<Outgoing>,
    sink: Arc<dyn WatchSink>,
) {
    let current = server.store.current_revision();
    let permitted = server.auth.check_read(who, &c.key, &c.range_end);
    let chosen = if let Err(denied) = permitted {
        Err(denied.to_string())
    } else {
        let mut st = lock(state);
        // As etcd: the range is checked first, and a refused watch takes no ID.
        let chosen = watch_range(&c).map_err(str::to_string).and_then(|range| {
            let id = if c.watch_id == 0 {
                while st.watches.contains_key(&st.next_id) {
                    st.next_id += 1;
                }
                st.next_id += 1;
                st.next_id - 1
            } else if st.watches.contains_key(&c.watch_id) {
                return Err("mvcc: duplicate watch ID provided on the WatchStream".to_string());
            } else {
                c.watch_id
            };
            Ok((range, id))
        });
        if let Ok((_, id)) = &chosen {
            st.watches.insert(
                *id,
                Options {
                    prev_kv: c.prev_kv,
                    fragment: c.fragment,
                    progress_notify: c.progress_notify,
                },
            );
        }
        chosen
    };
    let mut response = WatchResponse {
        header: server.header(current),
        created: true,
        ..Default::default()
    };
    match chosen {
        Ok((range, id)) => {
            response.watch_id = id;
            // Created goes out before any event of the watch can.
            if out.send(Outgoing::Reply(response)).await.is_err() {
                return;
            }
            let start = if c.start_revision == 0 {
                current.0 + 1
            } else {
                c.start_revision
            };
            let filters = |f: FilterType| c.filters.contains(&(f as i32));
            let spec = WatchSpec {
                range,
                start_revision: start,
                no_put: filters(FilterType::Noput),
                no_delete: filters(FilterType::Nodelete),
            };
            server.store.watch((stream_id, id), spec, sink);
        }
        Err(reason) => {
            response.watch_id = INVALID_WATCH_ID;
            response.canceled = true;
            response.cancel_reason = reason;
            let _ = out.send(Outgoing::Reply(response)).await;
        }
    }
}

async fn send_loop(
    server: Arc<EtcdServer>,
    stream_id: u64,
    state: Shared,
    (mut queue, queued): (mpsc::Receiver<Outgoing>, Arc<AtomicUsize>),
    out: mpsc::Sender<WatchOut>,
    progress_interval: Duration,
) {
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + progress_interval,
        progress_interval,
    );
    let mut retry = tokio::time::interval(PROGRESS_RETRY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            next = queue.recv() => {
                let (batch, bytes) = match next {
                    None => return,
                    Some(Outgoing::Reply(r)) => {
                        if out.send(r.into()).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Some(Outgoing::Batch(batch, bytes)) => (batch, bytes),
                };
                if is_for_a_canceled_watch(&state, &batch) {
                    queued.fetch_sub(bytes, Ordering::AcqRel);
                    continue;
                }
                let responses = if batch.events.len() > PREV_KV_ON_RUNTIME && wants_prev_kv(&state, &batch) {
                    // A lookup per event: a big batch's go to the blocking pool.
                    let (server, state) = (server.clone(), state.clone());
                    match crate::blocking::run(None, move || respond(&server, &state, batch)).await {
                        Ok(responses) => responses,
                        Err(_) => return,
                    }
                } else {
                    respond(&server, &state, batch)
                };
                for r in responses {
                    if out.send(r).await.is_err() {
                        return;
                    }
                }
                // Counted until handed on: a client that does not read keeps it counted.
                queued.fetch_sub(bytes, Ordering::AcqRel);
                if let Some(r) = retry_deferred_progress(&server, stream_id, &state) {
                    if out.send(r.into()).await.is_err() {
                        return;
                    }
                }
            }
            _ = retry.tick(), if lock(&state).progress_deferred => {
                if let Some(r) = retry_deferred_progress(&server, stream_id, &state) {
                    if out.send(r.into()).await.is_err() {
                        return;
                    }
                }
            }
            _ = ticker.tick() => {
                let due: Vec<i64> = {
                    let mut st = lock(&state);
                    let active = std::mem::take(&mut st.active);
                    st.watches
                        .iter()
                        .filter(|(id, o)| o.progress_notify && !active.contains(id))
                        .map(|(id, _)| *id)
                        .collect()
                };
                // Queued behind the watch's events; one still catching up gets none (as etcd).
                for id in due {
                    server.store.request_progress(stream_id, Some(id), id);
                }
            }
        }
    }
}

/// How often a deferred RequestProgress is tried again while no batch arrives.
const PROGRESS_RETRY: Duration = Duration::from_millis(10);

/// Tries a deferred RequestProgress again; the answer to send directly when the stream's
/// watches ended meanwhile.
fn retry_deferred_progress(
    server: &EtcdServer,
    stream_id: u64,
    state: &Shared,
) -> Option<WatchResponse> {
    let mut st = lock(state);
    if !st.progress_deferred {
        return None;
    }
    request_stream_progress(server, stream_id, &mut st)
}

/// Asks the store for a progress notification covering every watch of the stream: queued
/// behind their events, deferred while one still catches up, or (no watch, nothing it could
/// overtake) the answer to send at once, as etcd 3.4.
fn request_stream_progress(
    server: &EtcdServer,
    stream_id: u64,
    st: &mut StreamState,
) -> Option<WatchResponse> {
    let progress = server
        .store
        .request_progress(stream_id, None, INVALID_WATCH_ID);
    st.progress_deferred = progress == Progress::NotYet;
    (progress == Progress::NoWatch).then(|| progress_response(server))
}

/// A RequestProgress answer for a stream without watches: nothing it could overtake.
fn progress_response(server: &EtcdServer) -> WatchResponse {
    WatchResponse {
        header: server.header(server.store.current_revision()),
        watch_id: INVALID_WATCH_ID,
        ..Default::default()
    }
}

/// Events queued for a watch the client canceled since: dropped, as etcd drops them, rather
/// than sent after the cancel's answer.
fn is_for_a_canceled_watch(state: &Shared, batch: &WatchBatch) -> bool {
    batch.watch_id != INVALID_WATCH_ID && !lock(state).watches.contains_key(&batch.watch_id)
}

/// The most events whose previous values are looked up on the async runtime.
const PREV_KV_ON_RUNTIME: usize = 16;

fn wants_prev_kv(state: &Shared, batch: &WatchBatch) -> bool {
    lock(state)
        .watches
        .get(&batch.watch_id)
        .is_some_and(|o| o.prev_kv)
}

/// A store batch as the responses etcd would send for it. Events go out from their shared
/// encoding unless this watch adds previous values or splits them into fragments.
fn respond(server: &EtcdServer, state: &Shared, batch: WatchBatch) -> Vec<WatchOut> {
    let options = {
        let mut st = lock(state);
        if batch.compact_revision != 0 {
            st.watches.remove(&batch.watch_id);
        } else if !batch.is_progress() {
            st.active.insert(batch.watch_id);
        }
        st.watches.get(&batch.watch_id).copied().unwrap_or_default()
    };
    let compacted = batch.compact_revision != 0;
    let head = WatchResponse {
        header: server.header(Revision(batch.revision)),
        watch_id: batch.watch_id,
        created: false,
        canceled: compacted,
        compact_revision: batch.compact_revision,
        cancel_reason: if compacted {
            oxcd_api::EtcdError::Compacted.to_string()
        } else {
            String::new()
        },
        fragment: false,
        events: vec![],
    };
    if !options.prev_kv {
        let fits =
            || (head.encoded_len() + batch.events.wire_len()) as u64 <= server.max_request_bytes;
        if !options.fragment || fits() {
            let events = batch.events;
            return vec![WatchOut::Shared { head, events }];
        }
        let whole = WatchResponse {
            events: batch.events.iter().map(|e| Event::clone(e)).collect(),
            ..head
        };
        return fragments(whole, server.max_request_bytes as usize);
    }
    let mut events: Vec<Event> = batch.events.iter().map(|e| Event::clone(e)).collect();
    for ev in &mut events {
        let created = ev
            .kv
            .as_ref()
            .is_some_and(|kv| kv.create_revision == kv.mod_revision);
        if ev.r#type() == EventType::Put && created {
            continue; // a create has no previous value
        }
        let Some(kv) = &ev.kv else { continue };
        let req = RangeRequest {
            key: kv.key.clone(),
            revision: kv.mod_revision - 1,
            ..Default::default()
        };
        if let Ok(r) = server.store.range(&req) {
            ev.prev_kv = r.kvs.into_iter().next();
        }
    }
    let whole = WatchResponse { events, ..head };
    if !options.fragment || whole.encoded_len() as u64 <= server.max_request_bytes {
        return vec![whole.into()];
    }
    fragments(whole, server.max_request_bytes as usize)
}

/// Splits a response into pieces under `limit` bytes (at least one event each); all but the
/// last are marked as fragments.
fn fragments(whole: WatchResponse, limit: usize) -> Vec<WatchOut> {
    let template = WatchResponse {
        events: vec![],
        ..whole.clone()
    };
    let mut out: Vec<WatchResponse> = Vec::new();
    let mut current = template.clone();
    for ev in whole.events {
        let size = current.encoded_len() + ev.encoded_len() + 8;
        if !current.events.is_empty() && size > limit {
            out.push(std::mem::replace(&mut current, template.clone()));
        }
        current.events.push(ev);
    }
    out.push(current);
    let n = out.len();
    for (i, r) in out.iter_mut().enumerate() {
        r.fragment = i + 1 < n;
    }
    out.into_iter().map(WatchOut::Whole).collect()
}
