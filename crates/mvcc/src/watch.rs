//! Watchers, as etcd's watchable store keeps them: a synced watcher gets each revision's
//! events as it is committed; one whose sink is full, or that asked for history, is unsynced
//! and catches up from the store, so a write never waits for a watcher and nothing queues up
//! beyond what the sinks hold.

use crate::backend::{self, KV};
use crate::kvstore::{backend_err, Store, StoreError};
use crate::{KeyRange, Revision};
use oxcd_api::mvccpb::{event::EventType, Event, KeyValue};
use redb::ReadableDatabase;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};

/// A watch, named by its stream and its ID in that stream.
pub type WatchKey = (u64, i64);

/// Events for one watch, all at revisions up to `revision`; or, with `compact_revision` set,
/// the news that the history it wanted is gone (the watch is then over).
#[derive(Debug, Clone, PartialEq)]
pub struct WatchBatch {
    pub watch_id: i64,
    pub events: Vec<Event>,
    pub revision: i64,
    pub compact_revision: i64,
}

/// Where a watch's batches go. `try_send` must not block: false means full.
pub trait WatchSink: Send + Sync {
    fn try_send(&self, batch: WatchBatch) -> bool;
}

pub struct WatchSpec {
    pub range: KeyRange,
    /// The first revision to deliver.
    pub start_revision: i64,
    pub no_put: bool,
    pub no_delete: bool,
}

struct Watcher {
    spec: WatchSpec,
    /// The next revision this watcher still has to see.
    next: i64,
    synced: bool,
    sink: Arc<dyn WatchSink>,
}

impl Watcher {
    fn wants(&self, ev: &Event) -> bool {
        let Some(kv) = &ev.kv else { return false };
        let kind_ok = match ev.r#type() {
            EventType::Put => !self.spec.no_put,
            EventType::Delete => !self.spec.no_delete,
        };
        kind_ok && self.spec.range.contains(&kv.key)
    }
}

#[derive(Default)]
pub(crate) struct Hub {
    watchers: HashMap<WatchKey, Watcher>,
    /// Synced watchers of one key, by key; synced range watchers.
    by_key: HashMap<Vec<u8>, HashSet<WatchKey>>,
    ranges: HashSet<WatchKey>,
    unsynced: HashSet<WatchKey>,
}

impl Hub {
    fn make_synced(&mut self, key: WatchKey) {
        let Some(w) = self.watchers.get_mut(&key) else {
            return;
        };
        w.synced = true;
        self.unsynced.remove(&key);
        match &w.spec.range {
            KeyRange::Single(k) => {
                self.by_key.entry(k.clone()).or_default().insert(key);
            }
            _ => {
                self.ranges.insert(key);
            }
        }
    }

    fn make_unsynced(&mut self, key: WatchKey) {
        let Some(w) = self.watchers.get_mut(&key) else {
            return;
        };
        w.synced = false;
        self.unsynced.insert(key);
        match &w.spec.range {
            KeyRange::Single(k) => {
                if let Some(set) = self.by_key.get_mut(k) {
                    set.remove(&key);
                    if set.is_empty() {
                        self.by_key.remove(k);
                    }
                }
            }
            _ => {
                self.ranges.remove(&key);
            }
        }
    }

    /// After the store was replaced wholesale: every watcher catches up from history.
    pub(crate) fn unsync_all(&mut self) {
        let keys: Vec<WatchKey> = self.watchers.keys().copied().collect();
        for k in keys {
            self.make_unsynced(k);
        }
    }

    fn remove(&mut self, key: WatchKey) -> bool {
        self.make_unsynced(key);
        self.unsynced.remove(&key);
        self.watchers.remove(&key).is_some()
    }

    /// Synced watchers that may want an event on `key`.
    fn targets(&self, key: &[u8]) -> Vec<WatchKey> {
        let mut out: Vec<WatchKey> = self
            .by_key
            .get(key)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        out.extend(self.ranges.iter().copied());
        out
    }
}

impl KeyRange {
    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            KeyRange::Single(k) => k.as_slice() == key,
            KeyRange::FromKey(from) => key >= from.as_slice(),
            KeyRange::Between(from, end) => key >= from.as_slice() && key < end.as_slice(),
        }
    }
}

fn event_of(rev: Revision, rec: backend::Record) -> Event {
    if rec.tombstone {
        Event {
            r#type: EventType::Delete as i32,
            kv: Some(KeyValue {
                key: rec.kv.key,
                mod_revision: rev.main,
                ..Default::default()
            }),
            prev_kv: None,
        }
    } else {
        Event {
            r#type: EventType::Put as i32,
            kv: Some(rec.kv),
            prev_kv: None,
        }
    }
}

/// The revision an event happened at.
fn revision_of(ev: &Event) -> i64 {
    ev.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}

impl Store {
    fn hub(&self) -> MutexGuard<'_, Hub> {
        self.hub.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a watch. It is synced (fed by commits) when it starts after the current
    /// revision, and catches up from history (`sync_watchers`) otherwise.
    pub fn watch(&self, key: WatchKey, spec: WatchSpec, sink: Arc<dyn WatchSink>) {
        let mut hub = self.hub();
        let next = spec.start_revision;
        hub.watchers.insert(
            key,
            Watcher {
                spec,
                next,
                synced: false,
                sink,
            },
        );
        self.watching.store(true, Ordering::Release);
        if next > self.current_revision() {
            hub.make_synced(key);
        } else {
            hub.unsynced.insert(key);
        }
    }

    /// Ends a watch; false if there was none.
    pub fn cancel_watch(&self, key: WatchKey) -> bool {
        let mut hub = self.hub();
        let found = hub.remove(key);
        if hub.watchers.is_empty() {
            self.watching.store(false, Ordering::Release);
        }
        found
    }

    /// Ends every watch of a stream.
    pub fn cancel_stream(&self, stream: u64) {
        let mut hub = self.hub();
        let keys: Vec<WatchKey> = hub
            .watchers
            .keys()
            .filter(|k| k.0 == stream)
            .copied()
            .collect();
        for k in keys {
            hub.remove(k);
        }
        if hub.watchers.is_empty() {
            self.watching.store(false, Ordering::Release);
        }
    }

    /// Whether a watch gets each commit as it happens (progress notifications go only to
    /// those).
    pub fn is_synced(&self, key: WatchKey) -> bool {
        self.hub().watchers.get(&key).is_some_and(|w| w.synced)
    }

    pub fn watcher_count(&self) -> usize {
        self.hub().watchers.len()
    }

    /// Hands committed events (in revision order) to the synced watchers; a watcher whose
    /// sink is full falls back to catching up from history.
    pub(crate) fn notify(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let mut hub = self.hub();
        let mut start = 0;
        while start < events.len() {
            let rev = revision_of(&events[start]);
            let end = events[start..]
                .iter()
                .position(|e| revision_of(e) != rev)
                .map_or(events.len(), |p| start + p);
            let mut batches: HashMap<WatchKey, Vec<Event>> = HashMap::new();
            for ev in &events[start..end] {
                let Some(kv) = &ev.kv else { continue };
                for t in hub.targets(&kv.key) {
                    if let Some(w) = hub.watchers.get(&t) {
                        if rev >= w.next && w.wants(ev) {
                            batches.entry(t).or_default().push(ev.clone());
                        }
                    }
                }
            }
            for (t, evs) in batches {
                let Some(w) = hub.watchers.get_mut(&t) else {
                    continue;
                };
                let batch = WatchBatch {
                    watch_id: t.1,
                    events: evs,
                    revision: rev,
                    compact_revision: 0,
                };
                if w.sink.try_send(batch) {
                    w.next = rev + 1;
                } else {
                    w.next = rev;
                    hub.make_unsynced(t);
                }
            }
            start = end;
        }
    }

    /// One catch-up round for unsynced watchers: at most `max_revisions` revisions of
    /// history read from the store and sent; those that reach the present become synced.
    /// Returns how many are still unsynced.
    pub fn sync_watchers(&self, max_revisions: i64) -> Result<usize, StoreError> {
        let current = self.current_revision();
        let compacted = self.compacted_revision();
        let from = {
            let mut hub = self.hub();
            // History before the compaction point is gone: say so and end those watches.
            let doomed: Vec<WatchKey> = hub
                .unsynced
                .iter()
                .filter(|k| hub.watchers.get(k).is_some_and(|w| w.next < compacted))
                .copied()
                .collect();
            for k in doomed {
                let sent = hub.watchers.get(&k).is_some_and(|w| {
                    w.sink.try_send(WatchBatch {
                        watch_id: k.1,
                        events: vec![],
                        // etcd leaves the header revision of this answer at 0.
                        revision: 0,
                        compact_revision: compacted,
                    })
                });
                if sent {
                    hub.remove(k);
                }
            }
            let from = hub
                .unsynced
                .iter()
                .filter_map(|k| hub.watchers.get(k))
                .map(|w| w.next)
                .filter(|n| *n >= compacted)
                .min();
            if hub.watchers.is_empty() {
                self.watching.store(false, Ordering::Release);
            }
            match from {
                Some(f) => f,
                None => return Ok(hub.unsynced.len()),
            }
        };
        let upto = current.min(from.saturating_add(max_revisions.max(1) - 1));
        let mut history = Vec::new();
        if from <= upto {
            let rx = self.db().begin_read().map_err(backend_err)?;
            let table = rx.open_table(KV).map_err(backend_err)?;
            let lo = Revision::new(from, 0).to_backend_key();
            let hi = Revision::new(upto, i64::MAX).to_backend_key();
            for item in table.range(lo..=hi).map_err(backend_err)? {
                let (k, v) = item.map_err(backend_err)?;
                let rev = Revision::from_backend_key(k.value());
                let rec = backend::decode_record(rev, v.value()).map_err(StoreError::Backend)?;
                history.push(event_of(rev, rec));
            }
        }
        let mut hub = self.hub();
        let keys: Vec<WatchKey> = hub.unsynced.iter().copied().collect();
        for k in keys {
            let now = self.current_revision();
            let Some(w) = hub.watchers.get_mut(&k) else {
                continue;
            };
            let caught_up = if w.next < from || w.next > upto {
                w.next > now
            } else {
                let evs: Vec<Event> = history
                    .iter()
                    .filter(|e| revision_of(e) >= w.next && w.wants(e))
                    .cloned()
                    .collect();
                let sent = evs.is_empty()
                    || w.sink.try_send(WatchBatch {
                        watch_id: k.1,
                        events: evs,
                        revision: upto,
                        compact_revision: 0,
                    });
                if sent {
                    w.next = upto + 1;
                }
                sent && w.next > now
            };
            if caught_up {
                hub.make_synced(k);
            }
        }
        Ok(hub.unsynced.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxcd_api::etcdserverpb::{CompactionRequest, DeleteRangeRequest, PutRequest};
    use std::sync::Mutex;

    /// A sink that holds at most `room` batches until drained.
    struct Sink {
        room: usize,
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
    }

    impl Sink {
        fn drain(&self) -> Vec<WatchBatch> {
            std::mem::take(&mut *self.got.lock().expect("sink"))
        }
    }

    fn put(store: &Store, key: &str, value: &str) {
        let mut wb = store.begin_write().expect("write");
        wb.put(&PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        })
        .expect("put");
        wb.commit(false).expect("commit");
    }

    fn revisions(batches: &[WatchBatch]) -> Vec<i64> {
        batches
            .iter()
            .flat_map(|b| b.events.iter().map(revision_of))
            .collect()
    }

    #[test]
    fn a_full_sink_falls_back_to_history_without_gaps_or_repeats() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("db")).expect("open");
        let sink = Arc::new(Sink {
            room: 2,
            got: Mutex::new(vec![]),
        });
        let spec = WatchSpec {
            range: KeyRange::new(b"a", b"b"),
            start_revision: store.current_revision() + 1,
            no_put: false,
            no_delete: false,
        };
        store.watch((1, 0), spec, sink.clone());
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
        let mut wb = store.begin_write().expect("write");
        wb.delete_range(&DeleteRangeRequest {
            key: b"a0".to_vec(),
            ..Default::default()
        })
        .expect("delete");
        wb.commit(false).expect("commit");
        let last = sink.drain();
        assert_eq!(last[0].events[0].r#type(), EventType::Delete);
        seen.extend(revisions(&last));
        // Revision 1 is the empty store; puts alternate watched and unwatched keys.
        let expected: Vec<i64> = (0..10).map(|i| 2 + 2 * i).chain([22]).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn history_before_the_compaction_point_ends_the_watch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("db")).expect("open");
        for i in 0..5 {
            put(&store, "k", &i.to_string());
        }
        let mut wb = store.begin_write().expect("write");
        wb.compact(&CompactionRequest {
            revision: 4,
            physical: false,
        })
        .expect("compact");
        wb.commit(false).expect("commit");
        let sink = Arc::new(Sink {
            room: 10,
            got: Mutex::new(vec![]),
        });
        let from = |start_revision| WatchSpec {
            range: KeyRange::new(b"k", b""),
            start_revision,
            no_put: false,
            no_delete: true,
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
            .flat_map(|b| b.events.iter().map(revision_of))
            .collect();
        // The five puts were revisions 2..=6.
        assert_eq!(from_4, vec![4, 5, 6]);
        assert_eq!(store.watcher_count(), 1);
    }
}
