use super::*;
use crate::key_range::KeyRange;
use crate::kvstore::{Store, WriteBatch};
use crate::test_support::put;
use oxcd_api::etcdserverpb::{CompactionRequest, DeleteRangeRequest, PutRequest};
use oxcd_api::mvccpb::event::EventType;
use std::sync::Mutex;

/// A sink that holds at most `room` batches until drained. A stream's queue (the watch
/// service's) offers room for catch-up only while nothing is queued.
struct Sink {
    room: usize,
    room_only_when_empty: bool,
    got: Mutex<Vec<WatchBatch>>,
}

impl WatchSink for Sink {
    fn try_send(&self, batch: WatchBatch) -> bool {
        let mut got = self.got.lock().expect("sink");
        if got.len() >= self.room {
            return false;
        }
        got.push(batch);
        true
    }

    fn has_room(&self) -> bool {
        let queued = self.got.lock().expect("sink").len();
        if self.room_only_when_empty {
            queued == 0
        } else {
            queued < self.room
        }
    }
}

impl Sink {
    fn with_room(room: usize) -> Arc<Sink> {
        Arc::new(Sink {
            room,
            room_only_when_empty: false,
            got: Mutex::new(vec![]),
        })
    }

    fn stream_queue(room: usize) -> Arc<Sink> {
        Arc::new(Sink {
            room,
            room_only_when_empty: true,
            got: Mutex::new(vec![]),
        })
    }

    fn drain(&self) -> Vec<WatchBatch> {
        std::mem::take(&mut *self.got.lock().expect("sink"))
    }
}

/// A watch of [key, end) from `start_revision`, every event kind.
fn spec(key: &[u8], end: &[u8], start_revision: i64) -> WatchSpec {
    WatchSpec {
        range: KeyRange::new(key, end),
        start_revision,
        no_put: false,
        no_delete: false,
    }
}

fn revisions(batches: &[WatchBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| b.events.iter().map(|e| revision_of(e)))
        .collect()
}

/// Every watch of a key gets the same event, not a copy of its own, whether it is fed
/// by the commit or catches up from history.
#[test]
fn watches_of_a_key_share_each_event_live_and_in_catch_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("db")).expect("open");
    put(&store, "k", "old");
    let sinks: Vec<Arc<Sink>> = (0..4)
        .map(|i| {
            let sink = Sink::with_room(usize::MAX);
            let start = if i < 2 {
                store.current_revision().0 + 1
            } else {
                1
            };
            store.watch((i, 0), spec(b"k", b"", start), sink.clone());
            sink
        })
        .collect();
    put(&store, "k", "new");
    store.sync_watchers(i64::MAX).expect("sync");
    let got: Vec<Vec<WatchBatch>> = sinks.iter().map(|s| s.drain()).collect();
    let last = |b: &[WatchBatch]| b.last().and_then(|b| b.events.last()).cloned();
    let live = (
        last(&got[0]).expect("live 0"),
        last(&got[1]).expect("live 1"),
    );
    assert!(Arc::ptr_eq(&live.0, &live.1), "synced watches share it");
    let history = (
        last(&got[2]).expect("history 2"),
        last(&got[3]).expect("history 3"),
    );
    assert!(Arc::ptr_eq(&history.0, &history.1), "catching up shares it");
    assert_eq!(history.0, live.0);
    assert_eq!(live.0.encoded(), prost::Message::encode_to_vec(&**live.0));
}

/// Catch-up moved one watcher of a stream per round (the first batch left the stream's
/// queue non-empty, and the others were passed over), so a stream's watchers behind the
/// present caught up one at a time, 10 ms apart.
#[test]
fn one_catch_up_round_serves_every_watcher_of_a_stream_its_queue_can_take() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("db")).expect("open");
    for i in 0..5 {
        put(&store, &format!("a{i}"), "history");
    }
    let queue = Sink::stream_queue(8);
    for id in 0..3 {
        store.watch((1, id), spec(b"a", b"b", 2), queue.clone());
    }
    store.sync_watchers(1000).expect("sync");
    let got = queue.drain();
    let mut served: Vec<i64> = got.iter().map(|b| b.watch_id).collect();
    served.sort_unstable();
    assert_eq!(served, vec![0, 1, 2], "one round");
    for b in &got {
        assert_eq!(b.events.len(), 5, "watch {}", b.watch_id);
    }
    for id in 0..3 {
        assert!(store.is_synced((1, id)));
    }
}

#[test]
fn a_full_sink_falls_back_to_history_without_gaps_or_repeats() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("db")).expect("open");
    let sink = Sink::with_room(2);
    store.watch(
        (1, 0),
        spec(b"a", b"b", store.current_revision().0 + 1),
        sink.clone(),
    );
    assert!(store.is_synced((1, 0)));
    let mut seen = Vec::new();
    for i in 0..10 {
        put(&store, &format!("a{i}"), "v");
        put(&store, "zz", "not watched");
    }
    assert!(
        !store.is_synced((1, 0)),
        "a full sink makes the watcher unsynced"
    );
    seen.extend(revisions(&sink.drain()));
    for _ in 0..20 {
        store.sync_watchers(3).expect("sync");
        seen.extend(revisions(&sink.drain()));
    }
    assert!(store.is_synced((1, 0)));
    commit_changes(&store, &[(b"a0", None)]);
    let last = sink.drain();
    assert_eq!(
        last[0].events.first().expect("event").r#type(),
        EventType::Delete
    );
    seen.extend(revisions(&last));
    // KeyRevision 1 is the empty store; puts alternate watched and unwatched keys.
    let expected: Vec<i64> = (0..10).map(|i| 2 + 2 * i).chain([22]).collect();
    assert_eq!(seen, expected);
}

/// A progress notification goes through the sink behind every event it covers, and only
/// once every watch it speaks for is synced (etcd #15220: it overtook queued events).
#[test]
fn a_progress_notification_never_overtakes_the_events_it_covers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("db")).expect("open");
    for i in 0..5 {
        put(&store, &format!("a{i}"), "history");
    }
    let sink = Sink::with_room(6);
    let next = store.current_revision().0 + 1;
    store.watch((1, 0), spec(b"a", b"b", next), sink.clone());
    store.watch((1, 1), spec(b"a", b"b", 1), sink.clone());
    put(&store, "a", "new");
    assert_eq!(store.request_progress(1, None, -1), Progress::NotYet);
    assert_eq!(store.request_progress(1, Some(0), 0), Progress::Sent);
    assert_eq!(store.request_progress(2, None, -1), Progress::NoWatch);
    store.sync_watchers(100).expect("sync");
    put(&store, "a", "newer");
    assert_eq!(store.request_progress(1, None, -1), Progress::Sent);
    let got = sink.drain();
    let progress: Vec<(usize, i64, i64)> = got
        .iter()
        .enumerate()
        .filter(|(_, b)| b.is_progress())
        .map(|(n, b)| (n, b.watch_id, b.revision))
        .collect();
    assert_eq!(progress, vec![(1, 0, 7), (5, -1, 8)]);
    for (n, id, rev) in progress {
        let later = got[n + 1..]
            .iter()
            .filter(|b| id == -1 || b.watch_id == id)
            .flat_map(|b| b.events.iter().map(|e| revision_of(e)))
            .collect::<Vec<_>>();
        assert!(later.iter().all(|&r| r > rev), "after {rev}: {later:?}");
    }
    for _ in 0..6 {
        put(&store, "a", "fills the sink");
    }
    assert_eq!(
        store.request_progress(1, None, -1),
        Progress::NotYet,
        "a full sink takes no notification"
    );
}

/// A watch that starts while a write prepared with no watcher around is in flight still
/// gets that write (it once skipped it: the write collected no events, and the watch
/// counted as synced past it).
#[test]
fn a_watch_starting_while_an_unwatched_write_is_in_flight_gets_that_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("db")).expect("open");
    put(&store, "a", "before");
    let mut in_flight = store.begin_write().expect("write");
    in_flight
        .put(&PutRequest {
            key: b"a".to_vec(),
            value: b"in flight".to_vec(),
            ..Default::default()
        })
        .expect("put");
    let sink = Sink::with_room(10);
    store.watch(
        (1, 0),
        spec(b"a", b"", store.current_revision().0 + 1),
        sink.clone(),
    );
    in_flight.commit(false).expect("commit");
    put(&store, "a", "after");
    let mut seen = revisions(&sink.drain());
    for _ in 0..3 {
        store.sync_watchers(100).expect("sync");
        seen.extend(revisions(&sink.drain()));
    }
    // Revision 2 was "before", 3 the write in flight, 4 "after".
    assert_eq!(seen, vec![3, 4]);
    assert!(store.is_synced((1, 0)));
}

/// The same when the last watch leaves and another comes while a batch of writes is
/// being prepared: every revision of the batch reaches the new watch once, in order.
#[test]
fn watches_leaving_and_joining_mid_batch_miss_nothing_and_repeat_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("db")).expect("open");
    let first = Sink::with_room(10);
    let from = |start_revision| spec(b"a", b"b", start_revision);
    store.watch((1, 0), from(2), first.clone());
    let mut batch = store.begin_write().expect("write");
    let put_a = |batch: &mut WriteBatch<'_>, key: &str| {
        batch
            .put(&PutRequest {
                key: key.into(),
                value: b"v".to_vec(),
                ..Default::default()
            })
            .expect("put");
    };
    put_a(&mut batch, "a1");
    assert!(store.cancel_watch((1, 0)));
    put_a(&mut batch, "a2");
    let second = Sink::with_room(10);
    store.watch((2, 0), from(2), second.clone());
    put_a(&mut batch, "a3");
    batch.commit(false).expect("commit");
    let mut seen = revisions(&second.drain());
    for _ in 0..3 {
        store.sync_watchers(100).expect("sync");
        seen.extend(revisions(&second.drain()));
    }
    assert_eq!(seen, vec![2, 3, 4]);
}

/// Writers and watches racing for real: each watch starts from the revision after the
/// present right after its predecessor left (so the store is often without watches when a
/// batch is prepared), while batches of writes commit on another thread. Every watch sees
/// the revisions from its start on with no gap or repeat, and the last one sees them all.
#[test]
fn racing_watches_see_every_revision_from_their_start_once_in_order() {
    const WATCHES: u64 = 1000;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(&dir.path().join("db")).expect("open"));
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, done) = (store.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                let mut wb = store.begin_write().expect("write");
                for _ in 0..3 {
                    wb.put(&PutRequest {
                        key: b"k".to_vec(),
                        value: b"v".to_vec(),
                        ..Default::default()
                    })
                    .expect("put");
                    std::thread::yield_now();
                }
                wb.commit(false).expect("commit");
            }
        })
    };
    let mut watches = Vec::new();
    for i in 0..WATCHES {
        if i > 0 {
            store.cancel_watch((i - 1, 0));
        }
        let sink = Sink::with_room(usize::MAX);
        let start = store.current_revision().0 + 1;
        store.watch((i, 0), spec(b"k", b"", start), sink.clone());
        watches.push((i, start, sink));
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    done.store(true, Ordering::Release);
    writer.join().expect("writer");
    for _ in 0..10 {
        store.sync_watchers(i64::MAX).expect("sync");
    }
    let end = store.current_revision().0;
    for (i, start, sink) in &watches {
        let seen = revisions(&sink.drain());
        let last = if *i == WATCHES - 1 {
            end
        } else {
            start + seen.len() as i64 - 1
        };
        let expected: Vec<i64> = (*start..=last).collect();
        assert_eq!(seen, expected, "watch {i} from {start}");
    }
}

/// A watcher whose client stopped reading does not hold back one that resumes from a
/// recent revision (catch-up once read only from the furthest-behind watcher, and a
/// stuck one pinned that window for everyone).
#[test]
fn a_stuck_watcher_does_not_hold_back_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("db")).expect("open");
    for i in 0..3000 {
        put(&store, "k", i.to_string());
    }
    let from = |start_revision| spec(b"k", b"", start_revision);
    let stuck = Sink::with_room(1);
    store.watch((1, 0), from(2), stuck.clone());
    let resuming = Sink::with_room(100);
    let end = store.current_revision().0;
    store.watch((2, 0), from(end - 10), resuming.clone());
    for _ in 0..5 {
        store.sync_watchers(1000).expect("sync");
    }
    assert!(store.is_synced((2, 0)), "the resuming watcher caught up");
    let expected: Vec<i64> = (end - 10..=end).collect();
    assert_eq!(revisions(&resuming.drain()), expected);
    assert!(
        !store.is_synced((1, 0)),
        "the stuck one waits for its client"
    );
    let first = stuck.drain();
    assert_eq!(revisions(&first), (2..=1001).collect::<Vec<i64>>());
    for _ in 0..5 {
        store.sync_watchers(1000).expect("sync");
        let _ = stuck.drain();
    }
    assert!(
        store.is_synced((1, 0)),
        "once read again, it catches up too"
    );
}

/// A history that compacts the store the first time catch-up reads it, between the
/// moment catch-up chose where to read from and the read itself.
struct CompactsDuringCatchUp<'a> {
    store: &'a Store,
    at: i64,
    compacted: std::cell::Cell<bool>,
}

impl History for CompactsDuringCatchUp<'_> {
    fn current(&self) -> i64 {
        History::current(self.store)
    }
    fn compacted(&self) -> i64 {
        History::compacted(self.store)
    }
    fn events(
        &self,
        from: i64,
        upto: i64,
        max_bytes: usize,
    ) -> Result<Option<(Vec<Event>, i64)>, StoreError> {
        if !self.compacted.replace(true) {
            let mut wb = self.store.begin_write().expect("write");
            wb.compact(&CompactionRequest {
                revision: self.at,
                physical: true,
            })
            .expect("compact");
            wb.commit(false).expect("commit");
        }
        History::events(self.store, from, upto, max_bytes)
    }
}

/// A compaction that lands while catch-up reads history does not hand the watcher the
/// rest of the history with a hole in it: the watcher is told of the compaction instead.
#[test]
fn a_compaction_during_catch_up_ends_the_watch_instead_of_skipping_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("db")).expect("open");
    for i in 0..10 {
        put(&store, "k", i.to_string());
    }
    let hub = Hub::default();
    let sink = Sink::with_room(10);
    hub.watch((1, 0), spec(b"k", b"", 2), sink.clone(), &store);
    let racing = CompactsDuringCatchUp {
        store: &store,
        at: 6,
        compacted: std::cell::Cell::new(false),
    };
    for _ in 0..3 {
        hub.sync(&racing, 100).expect("sync");
    }
    let got = sink.drain();
    assert!(
        got.iter().all(|b| b.events.is_empty()),
        "history with a hole was sent: {:?}",
        revisions(&got)
    );
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].compact_revision, 6);
    assert_eq!(hub.len(), 0, "the watch is over");
}

#[test]
fn history_before_the_compaction_point_ends_the_watch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("db")).expect("open");
    for i in 0..5 {
        put(&store, "k", i.to_string());
    }
    let mut wb = store.begin_write().expect("write");
    wb.compact(&CompactionRequest {
        revision: 4,
        physical: false,
    })
    .expect("compact");
    wb.commit(false).expect("commit");
    let sink = Sink::with_room(10);
    let from = |start_revision| WatchSpec {
        no_delete: true,
        ..spec(b"k", b"", start_revision)
    };
    store.watch((1, 0), from(2), sink.clone());
    store.watch((1, 1), from(4), sink.clone());
    store.sync_watchers(100).expect("sync");
    let got = sink.drain();
    let compacted: Vec<&WatchBatch> = got.iter().filter(|b| b.compact_revision != 0).collect();
    assert_eq!(compacted.len(), 1);
    assert_eq!(
        (compacted[0].watch_id, compacted[0].compact_revision),
        (0, 4)
    );
    let from_4: Vec<i64> = got
        .iter()
        .filter(|b| b.watch_id == 1)
        .flat_map(|b| b.events.iter().map(|e| revision_of(e)))
        .collect();
    // The five puts were revisions 2..=6.
    assert_eq!(from_4, vec![4, 5, 6]);
    assert_eq!(store.watcher_count(), 1);
}

/// A watch on [a, b) and a sink with room for `room` batches.
fn watched(store: &Store, room: usize) -> Arc<Sink> {
    let sink = Sink::with_room(room);
    store.watch(
        (1, 0),
        spec(b"a", b"b", store.current_revision().0 + 1),
        sink.clone(),
    );
    sink
}

/// One commit of puts (`Some` value) and deletes (`None`) of single keys, in order.
fn commit_changes(store: &Store, changes: &[(&[u8], Option<&[u8]>)]) {
    let mut wb = store.begin_write().expect("write");
    for &(key, value) in changes {
        let key = key.to_vec();
        match value {
            Some(v) => wb
                .put(&PutRequest {
                    key,
                    value: v.to_vec(),
                    ..Default::default()
                })
                .map(drop)
                .expect("put"),
            None => wb
                .delete_range(&DeleteRangeRequest {
                    key,
                    ..Default::default()
                })
                .map(drop)
                .expect("delete"),
        }
    }
    wb.commit(false).expect("commit");
}

/// One commit of `values` put to a0, a1, ..., each followed by an unwatched put.
fn commit_puts(store: &Store, values: &[Vec<u8>]) {
    let mut wb = store.begin_write().expect("write");
    for (i, v) in values.iter().enumerate() {
        for key in [format!("a{i}"), "zz".to_string()] {
            wb.put(&PutRequest {
                key: key.into_bytes(),
                value: v.clone(),
                ..Default::default()
            })
            .expect("put");
        }
    }
    wb.commit(false).expect("commit");
}

#[test]
fn a_commits_revisions_reach_a_watcher_as_one_batch_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("db")).expect("open");
    let sink = watched(&store, 10);
    commit_puts(&store, &vec![b"v".to_vec(); 5]);
    let got = sink.drain();
    assert_eq!(got.len(), 1, "one batch for the commit");
    assert_eq!(revisions(&got), vec![2, 4, 6, 8, 10]);
    assert_eq!(got[0].revision, 10);
    assert!(store.is_synced((1, 0)));
}

#[test]
fn big_events_split_a_commits_batch_and_a_full_sink_catches_up_without_gaps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("db")).expect("open");
    let sink = watched(&store, 1);
    let big = vec![b'x'; LIVE_BATCH_BYTES / 2 + 1];
    commit_puts(&store, &vec![big; 4]);
    let first = sink.drain();
    assert_eq!(
        revisions(&first),
        vec![2, 4],
        "the first batch, just over the bound"
    );
    assert!(
        !store.is_synced((1, 0)),
        "the second batch found the sink full"
    );
    let mut seen = revisions(&first);
    for _ in 0..10 {
        store.sync_watchers(1000).expect("sync");
        seen.extend(revisions(&sink.drain()));
    }
    assert_eq!(seen, vec![2, 4, 6, 8]);
    assert!(store.is_synced((1, 0)));
}

/// Watchers are looked up once per run of events on one key: a commit that goes back and
/// forth between keys still reaches each watcher with exactly the events it wants, in order.
#[test]
fn a_commit_alternating_between_keys_reaches_each_watcher_with_its_own_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("db")).expect("open");
    // The commit's first revision; its changes take n, n + 1, ...
    let n = store.current_revision().0 + 1;
    let watch = |id: i64, key: &[u8], end: &[u8], no_put: bool| {
        let sink = Sink::with_room(10);
        let mut s = spec(key, end, n);
        s.no_put = no_put;
        store.watch((1, id), s, sink.clone());
        sink
    };
    let (on_a, on_b, on_a_to_c, deletes_of_a) = (
        watch(0, b"a", b"", false),
        watch(1, b"b", b"", false),
        watch(2, b"a", b"c", false),
        watch(3, b"a", b"", true),
    );
    // One commit, one revision per change: a, b, a (deleted), c, b.
    let v: &[u8] = b"v";
    commit_changes(
        &store,
        &[
            (b"a", Some(v)),
            (b"b", Some(v)),
            (b"a", None),
            (b"c", Some(v)),
            (b"b", Some(v)),
        ],
    );
    let keys_and_revisions = |sink: &Sink| -> Vec<(Vec<u8>, i64)> {
        sink.drain()
            .iter()
            .flat_map(|b| b.events.iter())
            .map(|e| (e.kv.as_ref().expect("kv").key.clone(), revision_of(e)))
            .collect()
    };
    assert_eq!(
        keys_and_revisions(&on_a),
        vec![(b"a".to_vec(), n), (b"a".to_vec(), n + 2)]
    );
    assert_eq!(
        keys_and_revisions(&on_b),
        vec![(b"b".to_vec(), n + 1), (b"b".to_vec(), n + 4)]
    );
    assert_eq!(
        keys_and_revisions(&on_a_to_c),
        vec![
            (b"a".to_vec(), n),
            (b"b".to_vec(), n + 1),
            (b"a".to_vec(), n + 2),
            (b"b".to_vec(), n + 4)
        ]
    );
    assert_eq!(
        keys_and_revisions(&deletes_of_a),
        vec![(b"a".to_vec(), n + 2)]
    );
}

/// An event without a key-value (none comes from the store, but the fan-out skips them)
/// between two of one key's, with a watcher that wants only the later one: its batch
/// starts past where the key's first run was measured to end.
#[test]
fn a_batch_starting_after_a_skipped_event_in_a_keys_run_gets_its_events() {
    use oxcd_api::mvccpb::{Event, KeyValue};
    let event = |rev: i64| {
        WatchEvent::new(Event {
            kv: Some(KeyValue {
                key: b"a".to_vec(),
                mod_revision: rev,
                ..Default::default()
            }),
            ..Default::default()
        })
    };
    let sink = Sink::with_room(10);
    let mut group = WatcherGroup::default();
    group.insert((1, 0), Watcher::new(spec(b"a", b"", 3), sink.clone()));
    group.make_synced((1, 0));
    let events = vec![event(2), WatchEvent::new(Event::default()), event(3)];
    notify_commit(&mut group, &events);
    assert_eq!(revisions(&sink.drain()), vec![3]);
}

/// A watch that wants a small part of its key's run in a commit (the delete after big puts)
/// holds only that part while its batch waits in a queue, not every event of the run: a stuck
/// client's queue then holds about the bytes it is counted for.
#[test]
fn a_watch_taking_part_of_a_commits_run_holds_only_that_part() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("db")).expect("open");
    let n = store.current_revision().0 + 1;
    let watch = |id: i64, no_put: bool| {
        let sink = Sink::with_room(10);
        let mut s = spec(b"k", b"", n);
        s.no_put = no_put;
        store.watch((1, id), s, sink.clone());
        sink
    };
    let (every_event, deletes) = (watch(0, false), watch(1, true));
    let big = vec![b'v'; 100_000];
    let put: (&[u8], Option<&[u8]>) = (b"k", Some(&big));
    commit_changes(&store, &[put, put, put, (b"k", None)]);
    let got = every_event.drain();
    assert_eq!(revisions(&got), vec![n, n + 1, n + 2, n + 3]);
    assert_eq!(got[0].events.held_bytes(), got[0].events.wire_len());
    let got = deletes.drain();
    assert_eq!(revisions(&got), vec![n + 3]);
    let (held, counted) = (got[0].events.held_bytes(), got[0].events.wire_len());
    assert_eq!(held, counted, "one delete's batch holds {held} bytes");
}
