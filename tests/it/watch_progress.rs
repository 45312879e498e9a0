//! Watch progress notifications never overtake events (etcd #15220, fixed in etcd 3.4.24 and
//! 3.5.8). A progress notification (no events, not created or canceled, header revision R)
//! promises that every event of its watch with revision ≤ R has been sent: watch_id is the
//! watch's for the periodic ones (`progress_notify`), -1 for the answer to a RequestProgress,
//! which speaks for every watch on the stream. So no later response of that watch may carry an
//! event at or below R. Under 16 writers (inside and outside the watched ranges),
//! RequestProgress every 5 ms on every stream, a 50 ms notify interval, a stream opened midway
//! whose watch from revision 1 catches up among synced ones, and (on a cluster) a leader moved
//! and a leader killed, every notification is checked against that promise, and every watch's
//! events against the acknowledged writes (each once, in order) and a fresh watch of the same
//! range afterwards. `OXCD_PROGRESS_SECONDS` sets how long the writers run (12 s, 20 s).

use oxcd_api::etcdserverpb::kv_client::KvClient;
use oxcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use oxcd_api::etcdserverpb::watch_client::WatchClient;
use oxcd_api::etcdserverpb::watch_request::RequestUnion;
use oxcd_api::etcdserverpb::{
    MoveLeaderRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
use oxcd_api::mvccpb::event::EventType;
use oxcd_tests::cluster::{Cluster, Spec};
use oxcd_tests::kv::put;
use oxcd_tests::wait::{eventually, retry};
use oxcd_tests::{Kind, Server};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

const NOTIFY_INTERVAL: &str = "--experimental-watch-progress-notify-interval=50ms";
const WRITERS: usize = 16;
const PERIODIC: &str = "a periodic notification";
const PROGRESS_EVERY: Duration = Duration::from_millis(5);

/// One watch of every stream: (id, key, range end, prev_kv, start revision; 0 = now).
type Def = (i64, &'static str, &'static str, bool, i64);
const WATCHES: [Def; 5] = [
    (1, "a/", "a0", true, 0),
    (2, "b/", "b0", false, 0),
    (3, "a/", "c/", true, 0),
    (4, "s/", "s0", false, 0),
    // On the stream opened while the writers run: catches up from revision 1.
    (5, "a/", "c/", true, 1),
];
/// Where the writers write, in turn: a/ and b/ are watched, c/ and z/ are not; s/ is written
/// rarely, so its watch gets periodic notifications between its events.
const PREFIXES: [&str; 8] = ["a/", "b/", "c/", "a/", "z/", "b/", "a/", "c/"];

fn seconds(default: u64) -> Duration {
    let s = std::env::var("OXCD_PROGRESS_SECONDS").ok();
    Duration::from_secs(s.and_then(|s| s.parse().ok()).unwrap_or(default))
}

fn create_request((id, key, end, prev_kv, start): Def) -> WatchRequest {
    WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: key.into(),
            range_end: end.into(),
            start_revision: start,
            progress_notify: true,
            prev_kv,
            watch_id: id,
            ..Default::default()
        })),
    }
}

fn in_range(key: &[u8], def: &Def) -> bool {
    key >= def.1.as_bytes() && key < def.2.as_bytes()
}

/// What one watch has been sent so far.
struct Watch {
    def: Def,
    /// The first revision it may send: its start, or the created header's revision + 1.
    start: i64,
    /// The highest revision a progress notification has promised, and which kind did.
    floor: i64,
    floor_by: &'static str,
    events: Vec<(i64, Vec<u8>)>,
    last_by_key: HashMap<Vec<u8>, i64>,
}

/// What one stream, or a whole run, counted.
#[derive(Default, Debug, Clone, Copy)]
struct Counts {
    progress_sent: u64,
    notifications: u64,
    stream_notifications: u64,
    events: u64,
    violations: u64,
    /// Of those, events overtaken by a periodic notification (the rest by a RequestProgress).
    periodic_violations: u64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.progress_sent += other.progress_sent;
        self.notifications += other.notifications;
        self.stream_notifications += other.stream_notifications;
        self.events += other.events;
        self.violations += other.violations;
        self.periodic_violations += other.periodic_violations;
    }
}

/// One stream's checks, fed response by response.
#[derive(Default)]
struct Check {
    name: String,
    defs: Vec<Def>,
    watches: BTreeMap<i64, Watch>,
    counts: Counts,
    /// Ordering, range, prev_kv and protocol problems (the first few, with a count).
    problems: Vec<String>,
    problem_count: u64,
    examples: Vec<String>,
    ended: Option<String>,
}

impl Check {
    fn problem(&mut self, what: String) {
        self.problem_count += 1;
        if self.problems.len() < 10 {
            self.problems.push(format!("{}: {what}", self.name));
        }
    }

    fn on_response(&mut self, r: WatchResponse) {
        let rev = r.header.as_ref().map_or(0, |h| h.revision);
        let id = r.watch_id;
        if r.created {
            match self.defs.iter().find(|d| d.0 == id) {
                Some(def) if !r.canceled && !self.watches.contains_key(&id) => {
                    let start = if def.4 > 0 { def.4 } else { rev + 1 };
                    let w = Watch {
                        def: *def,
                        start,
                        floor: 0,
                        floor_by: "",
                        events: vec![],
                        last_by_key: HashMap::new(),
                    };
                    self.watches.insert(id, w);
                }
                _ => self.problem(format!("unexpected create answer {r:?}")),
            }
            return;
        }
        if r.canceled || r.compact_revision != 0 || r.fragment {
            return self.problem(format!("unexpected answer {r:?}"));
        }
        if r.events.is_empty() {
            self.counts.notifications += 1;
            if id == -1 {
                self.counts.stream_notifications += 1;
                for w in self.watches.values_mut() {
                    if rev > w.floor {
                        (w.floor, w.floor_by) = (rev, "the answer to a RequestProgress");
                    }
                }
            } else if let Some(w) = self.watches.get_mut(&id) {
                if rev > w.floor {
                    (w.floor, w.floor_by) = (rev, PERIODIC);
                }
            } else {
                self.problem(format!("progress notification for unknown watch {id}"));
            }
            return;
        }
        let Some(mut w) = self.watches.remove(&id) else {
            return self.problem(format!("events for unknown watch {id}"));
        };
        for ev in &r.events {
            self.counts.events += 1;
            let Some(kv) = &ev.kv else {
                self.problem(format!("watch {id}: event without kv"));
                continue;
            };
            let at = kv.mod_revision;
            if at <= w.floor {
                self.counts.violations += 1;
                if w.floor_by == PERIODIC {
                    self.counts.periodic_violations += 1;
                }
                if self.examples.len() < 5 {
                    self.examples.push(format!(
                        "{}: watch {id} got {} at revision {at} after {} at {}",
                        self.name,
                        String::from_utf8_lossy(&kv.key),
                        w.floor_by,
                        w.floor
                    ));
                }
            }
            let last = w.events.last().map_or(0, |e| e.0);
            if at <= last {
                self.problem(format!("watch {id}: revision {at} after {last}"));
            }
            if at < w.start || !in_range(&kv.key, &w.def) || ev.r#type() != EventType::Put {
                self.problem(format!("watch {id}: event it should not see: {ev:?}"));
            }
            let prev = w.last_by_key.insert(kv.key.clone(), at);
            let prev_kv = ev
                .prev_kv
                .as_ref()
                .map(|p| (p.key.as_slice(), p.mod_revision));
            if w.def.3 && kv.version > 1 {
                let right = match (prev_kv, prev) {
                    (Some((k, p)), Some(seen)) => k == kv.key && p == seen,
                    (Some((k, p)), None) => k == kv.key && p < at,
                    (None, _) => false,
                };
                if !right {
                    self.problem(format!(
                        "watch {id}: prev_kv {prev_kv:?}, last seen {prev:?} for {ev:?}"
                    ));
                }
            } else if prev_kv.is_some() {
                self.problem(format!(
                    "watch {id}: prev_kv it did not ask for or none exists: {ev:?}"
                ));
            }
            w.events.push((at, kv.key.clone()));
        }
        self.watches.insert(id, w);
    }

    /// Whether every watch has been sent every event up to `revision` of its range.
    fn reached(&self, sentinels: &[(Vec<u8>, i64)]) -> bool {
        self.watches.values().all(|w| {
            let want = sentinels
                .iter()
                .filter(|(k, _)| in_range(k, &w.def))
                .map(|s| s.1)
                .max()
                .unwrap_or(0);
            w.events.last().map_or(0, |e| e.0) >= want
        })
    }
}

type Shared<T> = Arc<Mutex<T>>;

fn lock<T>(m: &Shared<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A watch stream: its requests, its checks, the task reading it.
struct Stream {
    tx: mpsc::Sender<WatchRequest>,
    check: Shared<Check>,
    reader: JoinHandle<()>,
}

/// A stream knowing the watches `defs`, of which the first `now` are created at once.
async fn open(name: String, url: &str, defs: &[Def], now: usize) -> Stream {
    let ch = Channel::from_shared(url.to_string())
        .expect("url")
        .connect_timeout(Duration::from_secs(2))
        .connect_lazy();
    let (tx, rx) = mpsc::channel(1024);
    // Go gRPC answers a stream's headers with its first response: the creates go first.
    for d in &defs[..now] {
        tx.send(create_request(*d)).await.expect("send");
    }
    let mut responses = WatchClient::new(ch)
        .max_decoding_message_size(usize::MAX)
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("watch stream")
        .into_inner();
    let check = Arc::new(Mutex::new(Check {
        name,
        defs: defs.to_vec(),
        ..Default::default()
    }));
    let reader = {
        let check = check.clone();
        tokio::spawn(async move {
            let end = loop {
                match responses.message().await {
                    Ok(Some(r)) => lock(&check).on_response(r),
                    Ok(None) => break "ended".to_string(),
                    Err(e) => break e.to_string(),
                }
            };
            lock(&check).ended = Some(end);
        })
    };
    let want = now;
    eventually(
        "every watch of the stream created",
        Duration::from_secs(20),
        || {
            let n = lock(&check).watches.len();
            async move { n == want }
        },
    )
    .await;
    Stream { tx, check, reader }
}

/// Writers, streams and RequestProgress senders running against a cluster or one member.
struct Load {
    streams: Vec<Stream>,
    stop_writes: Arc<AtomicBool>,
    stop_progress: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
    progress_tasks: Vec<JoinHandle<()>>,
    acked: Shared<Vec<(Vec<u8>, i64)>>,
    writes_failed: Arc<AtomicU64>,
}

fn kv_client(url: &str) -> KvClient<Channel> {
    let ch = Channel::from_shared(url.to_string())
        .expect("url")
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(5))
        .connect_lazy();
    KvClient::new(ch)
}

impl Load {
    /// Streams on `stream_urls` (one each), writers through every URL in `urls`.
    async fn start(urls: &[String], stream_urls: &[String]) -> Load {
        let mut streams = Vec::new();
        for (i, u) in stream_urls.iter().enumerate() {
            streams.push(open(format!("stream {i}"), u, &WATCHES, 4).await);
        }
        let mut load = Load {
            streams,
            stop_writes: Arc::default(),
            stop_progress: Arc::default(),
            tasks: vec![],
            progress_tasks: vec![],
            acked: Arc::default(),
            writes_failed: Arc::default(),
        };
        for w in 0..WRITERS {
            let mut clients: Vec<_> = urls.iter().map(|u| kv_client(u)).collect();
            let (stop, acked) = (load.stop_writes.clone(), load.acked.clone());
            let failed = load.writes_failed.clone();
            load.tasks.push(tokio::spawn(async move {
                let (mut n, mut at) = (0usize, w);
                while !stop.load(Ordering::Acquire) {
                    let prefix = if n % 40 == 7 { "s/" } else { PREFIXES[n % 8] };
                    let key = format!("{prefix}{w:02}-{:02}", n % 30);
                    let i = at % clients.len();
                    match clients[i].put(put(&key, format!("{w}-{n}"))).await {
                        Ok(r) => {
                            let rev = r.into_inner().header.map_or(0, |h| h.revision);
                            lock(&acked).push((key.into_bytes(), rev));
                            n += 1;
                        }
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            at += 1; // another member next time
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            }));
        }
        for i in 0..load.streams.len() {
            load.ask_progress(i);
        }
        load
    }
}

/// Sleeps until `at` after `began`: the timeline of a run, not a wait for a condition.
async fn pace(began: Instant, at: Duration) {
    tokio::time::sleep_until((began + at).into()).await;
}

/// What a run saw, over every stream.
#[derive(Default, Debug)]
struct Report {
    counts: Counts,
    writes: usize,
    writes_failed: u64,
    examples: Vec<String>,
    problems: Vec<String>,
}

impl Report {
    fn print(&self, what: &str) {
        eprintln!(
            "{what}: {} progress notifications checked ({} answering {} RequestProgress, the rest periodic), \
             {} events, {} violations ({} after a periodic one); {} acknowledged writes \
             ({} failed attempts)",
            self.counts.notifications,
            self.counts.stream_notifications,
            self.counts.progress_sent,
            self.counts.events,
            self.counts.violations,
            self.counts.periodic_violations,
            self.writes,
            self.writes_failed
        );
        for e in &self.examples {
            eprintln!("  violation: {e}");
        }
        for p in &self.problems {
            eprintln!("  problem: {p}");
        }
    }

    /// Order, no gaps, no repeats, ranges, prev_kv; with `promise`, no notification overtaken.
    fn assert_ok(&self, promise: bool) {
        assert!(
            self.problems.is_empty(),
            "watch problems: {:#?}",
            self.problems
        );
        assert!(
            self.counts.notifications > 0 && self.counts.events > 0,
            "nothing checked: {self:?}"
        );
        if promise {
            assert_eq!(
                self.counts.violations, 0,
                "progress notifications overtook events (etcd #15220): {:#?}",
                self.examples
            );
        }
    }
}

impl Load {
    /// Sends a RequestProgress on stream `i` every 5 ms.
    fn ask_progress(&mut self, i: usize) {
        let s = &self.streams[i];
        let (tx, stop, check) = (s.tx.clone(), self.stop_progress.clone(), s.check.clone());
        self.progress_tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Acquire) {
                let req = WatchRequest {
                    request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
                };
                if tx.send(req).await.is_err() {
                    return;
                }
                lock(&check).counts.progress_sent += 1;
                tokio::time::sleep(PROGRESS_EVERY).await; // the cadence, not a wait
            }
        }));
    }

    /// Opens one more stream on `url` while the writers run, its watches as the others' and
    /// one from revision 1 that catches up under the RequestProgress; and adds that watch to
    /// the first stream, which has been asking all along: an answer to a RequestProgress sent
    /// before the create must arrive before the created response (etcd sends them on two
    /// channels, so its client cannot tell which watches such an answer speaks for).
    async fn add_history_stream(&mut self, url: &str) {
        let progress = WatchRequest {
            request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
        };
        for req in [progress, create_request(WATCHES[4])] {
            self.streams[0]
                .tx
                .send(req)
                .await
                .expect("a progress request and a create on a stream that asks for progress");
        }
        let name = format!("stream {}", self.streams.len());
        let s = open(name, url, &WATCHES, WATCHES.len()).await;
        self.streams.push(s);
        self.ask_progress(self.streams.len() - 1);
    }

    /// Stops the writers, puts a last key under every watched prefix through `url`, waits
    /// until every watch has sent it, and checks every watch against the acknowledged writes
    /// and against a fresh watch of the same range from the same start.
    async fn finish(self, url: &str) -> Report {
        self.stop_writes.store(true, Ordering::Release);
        for t in self.tasks {
            t.await.expect("writer");
        }
        let mut report = Report {
            writes: lock(&self.acked).len(),
            writes_failed: self.writes_failed.load(Ordering::Relaxed),
            ..Default::default()
        };
        let mut sentinels = Vec::new();
        let kv = kv_client(url);
        for key in ["a/~last", "b/~last", "s/~last"] {
            let last = retry(Duration::from_secs(20), Duration::from_millis(100), || {
                let mut kv = kv.clone();
                async move { kv.put(put(key, "last")).await }
            })
            .await;
            let rev = last
                .expect("last put")
                .into_inner()
                .header
                .map_or(0, |h| h.revision);
            lock(&self.acked).push((key.into(), rev));
            sentinels.push((key.as_bytes().to_vec(), rev));
        }
        let all_reached =
            |checks: &[&Shared<Check>]| checks.iter().all(|c| lock(c).reached(&sentinels));
        let checks: Vec<&Shared<Check>> = self.streams.iter().map(|s| &s.check).collect();
        let reached = retry(Duration::from_secs(30), Duration::from_millis(50), || {
            let ok = all_reached(&checks);
            async move { ok.then_some(()).ok_or(()) }
        })
        .await;
        self.stop_progress.store(true, Ordering::Release);
        for t in self.progress_tasks {
            let _ = t.await;
        }
        for s in &self.streams {
            s.reader.abort();
        }
        if reached.is_err() {
            report.problems.push(format!(
                "not every watch sent the writes up to {sentinels:?} within 30 s"
            ));
        }

        // The same ranges from the same starts, watched afresh once the writes are over.
        let mut oracle_defs = Vec::new();
        for (i, s) in self.streams.iter().enumerate() {
            for (id, w) in &lock(&s.check).watches {
                let d = w.def;
                oracle_defs.push((100 * i as i64 + id, d.1, d.2, d.3, w.start));
            }
        }
        let oracle = open("afterwards".into(), url, &oracle_defs, oracle_defs.len()).await;
        let oracle_reached = retry(Duration::from_secs(30), Duration::from_millis(50), || {
            let ok = all_reached(&[&oracle.check]);
            async move { ok.then_some(()).ok_or(()) }
        })
        .await;
        oracle.reader.abort();
        if oracle_reached.is_err() {
            report
                .problems
                .push("a fresh watch did not catch up within 30 s".into());
        }

        let acked = lock(&self.acked).clone();
        let oracle = lock(&oracle.check);
        report.problems.extend(oracle.problems.iter().cloned());
        for (i, s) in self.streams.iter().enumerate() {
            let c = lock(&s.check);
            report.counts.add(&c.counts);
            report.examples.extend(c.examples.iter().cloned());
            report.problems.extend(c.problems.iter().cloned());
            if c.problem_count > c.problems.len() as u64 {
                report
                    .problems
                    .push(format!("{}: {} problems in all", c.name, c.problem_count));
            }
            if let Some(end) = &c.ended {
                report
                    .problems
                    .push(format!("{}: the stream ended: {end}", c.name));
            }
            for (id, w) in &c.watches {
                let mut seen: HashMap<i64, (&[u8], usize)> = HashMap::new();
                for (rev, key) in &w.events {
                    seen.entry(*rev).or_insert((key.as_slice(), 0)).1 += 1;
                }
                let want = acked
                    .iter()
                    .filter(|(k, rev)| in_range(k, &w.def) && *rev >= w.start);
                let mut missing = Vec::new();
                for (key, rev) in want {
                    match seen.get(rev) {
                        Some((k, 1)) if *k == key.as_slice() => {}
                        got => missing.push(format!(
                            "{} at {rev}: {got:?}",
                            String::from_utf8_lossy(key)
                        )),
                    }
                }
                if !missing.is_empty() {
                    report.problems.push(format!(
                        "{}: watch {id} lacks or repeats {} acknowledged writes: {:?}",
                        c.name,
                        missing.len(),
                        &missing[..missing.len().min(5)]
                    ));
                }
                let fresh = oracle
                    .watches
                    .get(&(100 * i as i64 + id))
                    .map(|o| &o.events);
                if fresh != Some(&w.events) {
                    let n = fresh.map_or(0, Vec::len);
                    report.problems.push(format!(
                        "{}: watch {id} sent {} events, a fresh watch of its range from {} sends {n}",
                        c.name,
                        w.events.len(),
                        w.start
                    ));
                }
            }
        }
        report
    }
}

async fn one_member(kind: Kind) -> Report {
    let run = seconds(12);
    let server = Server::start(kind, &[NOTIFY_INTERVAL]);
    server.ready().await;
    let url = server.url();
    let began = Instant::now();
    let mut load = Load::start(std::slice::from_ref(&url), &vec![url.clone(); 3]).await;
    pace(began, run / 4).await;
    load.add_history_stream(&url).await;
    pace(began, run).await;
    load.finish(&url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_notifications_never_overtake_events_on_one_member() {
    let report = one_member(Kind::Oxcd).await;
    report.print("oxcd, one member");
    report.assert_ok(true);
}

/// etcd 3.4 overtakes its events too (fixed in 3.4.24): only the rest is asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_watches_keep_order_under_progress_requests() {
    let report = one_member(Kind::Etcd).await;
    report.print("etcd 3.4, one member");
    report.assert_ok(false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_progress_notifications_never_overtake_events() {
    let run = seconds(20);
    let mut spec = Spec::new(3);
    spec.flags.push(NOTIFY_INTERVAL.into());
    let mut c = Cluster::start(spec).await;
    let leader = c.wait_leader(Duration::from_secs(20)).await;
    let (target, other) = ((leader + 1) % 3, (leader + 2) % 3);
    let mut ids = Vec::new();
    for i in 0..3 {
        let status = c.status(i).await.expect("status");
        ids.push(status.header.expect("header").member_id);
    }
    let urls: Vec<String> = (0..3).map(|i| c.url(i)).collect();
    // No stream on the member that is made leader and then killed.
    let stream_urls = [c.url(leader), c.url(other), c.url(other)];
    let began = Instant::now();
    let mut load = Load::start(&urls, &stream_urls).await;
    pace(began, run / 4).await;
    load.add_history_stream(&c.url(other)).await;

    pace(began, run * 2 / 5).await;
    let moved = retry(
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            let now = c.wait_leader(Duration::from_secs(10)).await;
            if now == target {
                return Ok(());
            }
            let req = MoveLeaderRequest {
                target_id: ids[target],
            };
            let mut m: MaintenanceClient<Channel> = c.maintenance(now).await;
            m.move_leader(req).await.map_err(|e| e.to_string())?;
            Err("moved; looking again".to_string())
        },
    )
    .await;
    moved.expect("leadership moved to the target");
    eprintln!(
        "leader moved from member {leader} to {target} at {:?}",
        began.elapsed()
    );

    pace(began, run * 13 / 20).await;
    assert_eq!(c.wait_leader(Duration::from_secs(10)).await, target);
    c.members[target].server.kill9();
    let next = c.wait_leader(Duration::from_secs(20)).await;
    eprintln!(
        "leader {target} killed; member {next} leads at {:?}",
        began.elapsed()
    );
    pace(began, run * 4 / 5).await;
    c.members[target].server.spawn();
    c.members[target].server.ready().await;

    pace(began, run).await;
    let report = load.finish(&c.url(leader)).await;
    report.print("oxcd, 3 members, leader moved and killed");
    report.assert_ok(true);
}
