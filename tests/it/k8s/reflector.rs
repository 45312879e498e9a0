//! A reflector, as kube-apiserver's watch cache and client-go build one: its state comes only
//! from a paginated list and a watch from the list's revision + 1 (prefix, prev_kv,
//! progress_notify, `hasleader: true`), asking for progress on the stream now and then; a
//! compacted watch means a new list. Every event is checked as it arrives: revisions in
//! order, prev_kv equal to the reflector's own copy, versions and create revisions that
//! follow, and the progress promise (no event at or below a progress notification's revision
//! after it).

use super::store::{is_compacted, uid_of, Store, PAGE};
use oxcd_api::etcdserverpb::watch_client::WatchClient;
use oxcd_api::etcdserverpb::watch_request::RequestUnion;
use oxcd_api::etcdserverpb::*;
use oxcd_api::mvccpb::event::EventType;
use oxcd_api::mvccpb::{Event, KeyValue};
use oxcd_tests::k8s::lazy_channel;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How often the reflector asks for progress on its stream.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// How long a slow reflector reads before it stalls, and how long it stalls.
const STALL_EVERY: Duration = Duration::from_millis(1500);
const STALL: Duration = Duration::from_secs(3);
/// A stream that answers nothing (not even progress) for this long is given up on.
const QUIET: Duration = Duration::from_secs(5);
/// At most this many violation messages are kept (all are counted).
const KEEP: usize = 20;

/// What the test reads while the reflector runs.
#[derive(Default)]
pub struct Shared {
    /// The revision the reflector knows its state to be at (list, event or progress).
    pub seen_rev: i64,
    pub state: BTreeMap<Vec<u8>, KeyValue>,
}

/// An event as the delivery check needs it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub rev: i64,
    pub key: String,
    /// The uid of a put's object; None for a delete.
    pub uid: Option<String>,
}

/// How the reflector learned about a span of revisions.
#[derive(Debug)]
pub enum Session {
    /// A list at `rev`: (key, (create revision, mod revision, uid)).
    List {
        rev: i64,
        items: BTreeMap<String, (i64, i64, Option<String>)>,
    },
    /// A watch from `from`; `events` in the order they came.
    Watch { from: i64, events: Vec<Seen> },
}

#[derive(Default, Debug)]
pub struct Record {
    pub sessions: Vec<Session>,
    pub violations: Vec<String>,
    pub violation_count: usize,
    pub events: usize,
    pub progress_notifications: usize,
    /// Events that came after a progress notification whose revision they did not exceed.
    pub progress_violations: usize,
    pub progress_examples: Vec<String>,
    pub lists: usize,
    pub compacted_watches: usize,
    /// Watches given up on an update or delete without prev_kv past a compaction.
    pub prev_kv_compacted: usize,
    pub restarted_watches: usize,
}

impl Record {
    fn violation(&mut self, what: String) {
        self.violation_count += 1;
        if self.violations.len() < KEEP {
            self.violations.push(what);
        }
    }
}

pub struct Reflector {
    pub name: String,
    pub prefix: String,
    pub urls: Vec<String>,
    pub member: usize,
    pub shared: Arc<Mutex<Shared>>,
    pub stop: Arc<AtomicBool>,
    /// A slow consumer until this is set: every 1.5 s it stops reading its stream for 3 s
    /// (an overloaded apiserver), so the server must hold events back, catch it up, and
    /// compact past it now and then.
    pub stall_until: Option<Arc<AtomicBool>>,
    /// The highest revision the apiservers asked to compact.
    pub compacted: Arc<AtomicI64>,
}

enum End {
    Compacted,
    Broken,
    Stopped,
}

impl Reflector {
    /// Lists and watches until `stop`; returns what it saw and every violation.
    pub async fn run(mut self) -> Record {
        let mut rec = Record::default();
        // The revision to watch from; None: list first.
        let mut resume: Option<i64> = None;
        while !self.stop.load(Ordering::Relaxed) {
            let from = match resume {
                Some(from) => from,
                None => match self.list(&mut rec).await {
                    Some(rev) => rev + 1,
                    None => continue,
                },
            };
            let mut events = Vec::new();
            let end = self.watch(&mut rec, from, &mut events).await;
            let last = events.last().map(|e: &Seen| e.rev);
            rec.sessions.push(Session::Watch { from, events });
            match end {
                End::Compacted => {
                    rec.compacted_watches += 1;
                    resume = None;
                }
                End::Broken => {
                    rec.restarted_watches += 1;
                    resume = Some(last.map_or(from, |r| r + 1));
                    self.member += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                End::Stopped => break,
            }
        }
        rec
    }

    fn url(&self) -> &str {
        &self.urls[self.member % self.urls.len()]
    }

    /// A paginated list installed as the state; None if it failed (the next member is tried).
    async fn list(&mut self, rec: &mut Record) -> Option<i64> {
        let mut store = Store::new(lazy_channel(self.url(), Some(Duration::from_secs(5))));
        let (rev, kvs) = match store.list(&self.prefix, PAGE, 0).await {
            Ok(l) => l,
            Err(e) => {
                if !is_compacted(&e) {
                    self.member += 1;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                return None;
            }
        };
        rec.lists += 1;
        let items = kvs
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(&kv.key).into_owned(),
                    (kv.create_revision, kv.mod_revision, uid_of(&kv.value)),
                )
            })
            .collect();
        rec.sessions.push(Session::List { rev, items });
        let mut shared = self.shared.lock().expect("shared");
        shared.state = kvs.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
        shared.seen_rev = rev;
        Some(rev)
    }

    async fn watch(&mut self, rec: &mut Record, from: i64, events: &mut Vec<Seen>) -> End {
        let (tx, rx) = mpsc::channel(64);
        let create = WatchCreateRequest {
            key: self.prefix.as_bytes().to_vec(),
            range_end: oxcd_api::prefix_end(self.prefix.as_bytes()),
            start_revision: from,
            progress_notify: true,
            prev_kv: true,
            ..Default::default()
        };
        // Go gRPC sends a stream's headers with its first response: a request goes first.
        if tx
            .send(WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(create)),
            })
            .await
            .is_err()
        {
            return End::Broken;
        }
        let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        request.metadata_mut().insert(
            "hasleader",
            tonic::metadata::MetadataValue::from_static("true"),
        );
        let channel = if self.stall_until.is_some() {
            // HTTP/2's own 64 KiB windows, not hyper's megabytes: a stall soon pushes back.
            tonic::transport::Channel::from_shared(self.url().to_string())
                .expect("url")
                .connect_timeout(Duration::from_secs(1))
                .initial_stream_window_size(Some(65_535))
                .initial_connection_window_size(Some(65_535))
                .connect_lazy()
        } else {
            lazy_channel(self.url(), None)
        };
        let mut client = WatchClient::new(channel).max_decoding_message_size(usize::MAX);
        let mut stream =
            match tokio::time::timeout(Duration::from_secs(5), client.watch(request)).await {
                Ok(Ok(s)) => s.into_inner(),
                _ => return End::Broken,
            };
        let mut ticker = tokio::time::interval(PROGRESS_EVERY);
        let mut heard = Instant::now();
        let mut read_since = Instant::now();
        let mut watch_id: Option<i64> = None;
        // The highest revision a progress notification on this watch promised.
        let mut promised = 0;
        // The revision of the last event of the previous response.
        let mut last_rev = from - 1;
        loop {
            let msg = tokio::select! {
                _ = ticker.tick() => {
                    if self.stop.load(Ordering::Relaxed) {
                        return End::Stopped;
                    }
                    if heard.elapsed() > QUIET {
                        return End::Broken;
                    }
                    let stalls = self.stall_until.as_ref().is_some_and(|s| !s.load(Ordering::Relaxed));
                    if stalls && read_since.elapsed() > STALL_EVERY {
                        tokio::time::sleep(STALL).await;
                        read_since = Instant::now();
                        heard = Instant::now();
                    }
                    let progress = WatchRequest {
                        request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
                    };
                    if tx.send(progress).await.is_err() {
                        return End::Broken;
                    }
                    continue;
                }
                msg = stream.message() => msg,
            };
            let resp = match msg {
                Ok(Some(r)) => r,
                Ok(None) | Err(_) => return End::Broken,
            };
            heard = Instant::now();
            let rev = resp.header.as_ref().map_or(0, |h| h.revision);
            if resp.compact_revision != 0 {
                return End::Compacted;
            }
            if resp.canceled {
                return End::Broken;
            }
            if resp.created {
                if watch_id.is_some() {
                    rec.violation(format!("{}: a second created response", self.name));
                }
                watch_id = Some(resp.watch_id);
                continue;
            }
            if resp.events.is_empty() {
                // A progress notification: ours, or -1 answering RequestProgress.
                if resp.watch_id != -1 && Some(resp.watch_id) != watch_id {
                    rec.violation(format!(
                        "{}: a progress notification for watch {} on a stream with watch {watch_id:?}",
                        self.name, resp.watch_id
                    ));
                    continue;
                }
                rec.progress_notifications += 1;
                promised = promised.max(rev);
                let mut shared = self.shared.lock().expect("shared");
                shared.seen_rev = shared.seen_rev.max(rev);
                continue;
            }
            let mut first = true;
            for ev in resp.events {
                let ev_rev = ev.kv.as_ref().map_or(0, |kv| kv.mod_revision);
                if ev_rev < last_rev || (first && ev_rev == last_rev) {
                    rec.violation(format!(
                        "{}: event at revision {ev_rev} after one at {last_rev} (watch from {from})",
                        self.name
                    ));
                }
                if ev_rev > rev {
                    rec.violation(format!(
                        "{}: event at revision {ev_rev} in a response whose header says {rev}",
                        self.name
                    ));
                }
                if ev_rev <= promised {
                    rec.progress_violations += 1;
                    if rec.progress_examples.len() < 5 {
                        rec.progress_examples.push(format!(
                            "{}: event at revision {ev_rev} after a progress notification at {promised}",
                            self.name
                        ));
                    }
                }
                // kube-apiserver fails a watch whose update or delete comes without prev_kv
                // ("etcd event received with PrevKv=nil"): etcd leaves it out when the
                // previous revision is compacted away, as it may be for a slow watcher.
                // The watch starts again, from a compacted revision: a new list.
                let is_create = ev.r#type == EventType::Put as i32
                    && ev
                        .kv
                        .as_ref()
                        .is_some_and(|kv| kv.create_revision == kv.mod_revision);
                if !is_create && ev.prev_kv.is_none() {
                    let compacted = self.compacted.load(Ordering::SeqCst);
                    if compacted >= ev_rev - 1 {
                        rec.prev_kv_compacted += 1;
                        return End::Compacted;
                    }
                    rec.violation(format!(
                        "{}: an event at {ev_rev} without prev_kv, though compaction reached only {compacted}",
                        self.name
                    ));
                }
                first = false;
                last_rev = ev_rev;
                rec.events += 1;
                if let Some(seen) = self.apply(rec, ev) {
                    events.push(seen);
                }
            }
        }
    }

    /// Applies one event to the state, checking it against the state's copy of its key.
    fn apply(&self, rec: &mut Record, ev: Event) -> Option<Seen> {
        let Some(kv) = ev.kv else {
            rec.violation(format!("{}: an event without a kv", self.name));
            return None;
        };
        let key = String::from_utf8_lossy(&kv.key).into_owned();
        let rev = kv.mod_revision;
        let mut shared = self.shared.lock().expect("shared");
        let before = shared.state.get(&kv.key).cloned();
        let mut bad = Vec::new();
        if ev.r#type == EventType::Delete as i32 {
            match &before {
                None => bad.push("a delete of a key the reflector does not hold".to_string()),
                Some(b) if ev.prev_kv.as_ref() != Some(b) => bad.push(format!(
                    "a delete whose prev_kv {:?} is not the reflector's {:?}",
                    ev.prev_kv.as_ref().map(short),
                    short(b)
                )),
                Some(_) => {}
            }
            shared.state.remove(&kv.key);
            shared.seen_rev = shared.seen_rev.max(rev);
            drop(shared);
            for b in bad {
                rec.violation(format!("{}: {key} at {rev}: {b}", self.name));
            }
            return Some(Seen {
                rev,
                key,
                uid: None,
            });
        }
        match &before {
            None => {
                if ev.prev_kv.is_some() {
                    bad.push(format!(
                        "a create carries prev_kv {:?}",
                        ev.prev_kv.as_ref().map(short)
                    ));
                }
                if kv.version != 1 || kv.create_revision != rev {
                    bad.push(format!("a create reads {:?}", short(&kv)));
                }
            }
            Some(b) => {
                if ev.prev_kv.as_ref() != Some(b) {
                    bad.push(format!(
                        "an update whose prev_kv {:?} is not the reflector's {:?}",
                        ev.prev_kv.as_ref().map(short),
                        short(b)
                    ));
                }
                if kv.version != b.version + 1 || kv.create_revision != b.create_revision {
                    bad.push(format!("an update {:?} of {:?}", short(&kv), short(b)));
                }
            }
        }
        let uid = uid_of(&kv.value);
        shared.state.insert(kv.key.clone(), kv);
        shared.seen_rev = shared.seen_rev.max(rev);
        drop(shared);
        for b in bad {
            rec.violation(format!("{}: {key} at {rev}: {b}", self.name));
        }
        Some(Seen { rev, key, uid })
    }
}

/// A kv without its (long) value, for messages.
pub fn short(kv: &KeyValue) -> String {
    format!(
        "{} create={} mod={} version={} lease={:x} uid={:?}",
        String::from_utf8_lossy(&kv.key),
        kv.create_revision,
        kv.mod_revision,
        kv.version,
        kv.lease,
        uid_of(&kv.value)
    )
}
