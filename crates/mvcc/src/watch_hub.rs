//! The watchers' hub, as etcd's watchable store runs it: a synced watcher gets each
//! revision's events as it is committed; one whose sink is full, or that asked for history,
//! is unsynced and catches up from the store, so a write never waits for a watcher and
//! nothing queues up beyond what the sinks hold.

use crate::error::StoreError;
use crate::watch::{
    revision_of, EventRun, Events, Progress, WatchBatch, WatchEvent, WatchKey, WatchSink,
    WatchSpec, Watcher,
};
use crate::watcher_group::WatcherGroup;
use oxcd_api::mvccpb::Event;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// What the hub needs of the store: its revisions, and its history to catch up from.
pub(crate) trait History {
    fn current(&self) -> i64;
    fn compacted(&self) -> i64;
    /// Every event of revisions `from..=upto`, in order, stopping after the revision that
    /// brings them past `max_bytes`; with the last revision read. `None` when a compaction
    /// has reached `from` meanwhile (that history is gone).
    fn events(
        &self,
        from: i64,
        upto: i64,
        max_bytes: usize,
    ) -> Result<Option<(Vec<Event>, i64)>, StoreError>;
}

/// The most history one catch-up round reads (at least one revision): with big values,
/// 1,000 revisions would be gigabytes.
const CATCH_UP_BYTES: usize = 8 << 20;
/// A live batch takes a commit's next revision while it holds less than this.
const LIVE_BATCH_BYTES: usize = 1 << 20;

#[derive(Default)]
pub(crate) struct Hub {
    group: Mutex<WatcherGroup>,
    /// Whether any watch exists; writes collect events only then.
    watching: AtomicBool,
}

impl Hub {
    fn group(&self) -> MutexGuard<'_, WatcherGroup> {
        self.group.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_watching(&self) -> bool {
        self.watching.load(Ordering::Acquire)
    }

    fn forget_if_empty(&self, group: &WatcherGroup) {
        if group.is_empty() {
            self.watching.store(false, Ordering::Release);
        }
    }

    /// Starts a watch. It is synced (fed by commits) when it starts after the current
    /// revision, and catches up from history (`sync`) otherwise.
    pub fn watch(
        &self,
        key: WatchKey,
        spec: WatchSpec,
        sink: Arc<dyn WatchSink>,
        store: &impl History,
    ) {
        let mut group = self.group();
        let next = spec.start_revision;
        group.insert(key, Watcher::new(spec, sink));
        self.watching.store(true, Ordering::Release);
        // Read under the lock: a commit after this read notifies after the watcher is in.
        if next > store.current() {
            group.make_synced(key);
        }
    }

    /// Ends a watch; false if there was none.
    pub fn cancel(&self, key: WatchKey) -> bool {
        let mut group = self.group();
        let found = group.remove(key);
        self.forget_if_empty(&group);
        found
    }

    /// Ends every watch of a stream.
    pub fn cancel_stream(&self, stream: u64) {
        let mut group = self.group();
        for k in group.of_stream(stream) {
            group.remove(k);
        }
        self.forget_if_empty(&group);
    }

    #[cfg(test)]
    pub fn is_synced(&self, key: WatchKey) -> bool {
        self.group().get(&key).is_some_and(|w| w.synced)
    }

    pub fn len(&self) -> usize {
        self.group().len()
    }

    /// The store was replaced wholesale: `advance` moves its current revision, under the
    /// hub's lock, and every watcher catches up from history.
    pub fn unsync_all(&self, advance: impl FnOnce()) {
        let mut group = self.group();
        advance();
        group.unsync_all();
    }

    /// A progress notification at the current revision for one watch of `stream`, or (with
    /// `watch` None) for all of them, carrying `response_id`. It goes through their sink
    /// behind the events they have been sent, and only when every one of them is synced: a
    /// synced watcher has been handed every event up to the current revision (commits
    /// publish under this lock), so nothing it promises can come after it (etcd #15220).
    pub fn progress(
        &self,
        stream: u64,
        watch: Option<i64>,
        response_id: i64,
        store: &impl History,
    ) -> Progress {
        let group = self.group();
        let keys = match watch {
            Some(id) => vec![(stream, id)],
            None => group.of_stream(stream),
        };
        let mut sink = None;
        for k in &keys {
            match group.get(k) {
                Some(w) if w.synced => sink = Some(w.sink.clone()),
                Some(_) => return Progress::NotYet,
                None => {}
            }
        }
        let Some(sink) = sink else {
            return Progress::NoWatch;
        };
        if sink.try_send(WatchBatch::progress(response_id, store.current())) {
            Progress::Sent
        } else {
            Progress::NotYet
        }
    }

    /// Publishes a commit that brought the store to revision `upto`: `advance` moves the
    /// store's current revision, under the hub's lock, so a watch starting meanwhile is either
    /// synced before it (and gets these events) or after it (and does not want them). The
    /// synced watchers get `events` (in revision order); a watcher whose sink is full falls back
    /// to catching up from history. When `complete` is false, some change was prepared while
    /// no watch existed and is missing from `events`: the synced watchers that want any of
    /// these revisions catch up from history instead, so none misses a write.
    pub fn publish(&self, upto: i64, events: Vec<Event>, complete: bool, advance: impl FnOnce()) {
        let mut group = self.group();
        advance();
        if !complete {
            for k in group.synced_from(upto) {
                group.make_unsynced(k);
            }
            return;
        }
        let events: Vec<Arc<WatchEvent>> = events.into_iter().map(WatchEvent::new).collect();
        notify_commit(&mut group, &events);
    }

    /// One catch-up round for unsynced watchers: at most `max_revisions` revisions of
    /// history read from the store and sent; those that reach the present become synced.
    /// Returns how many are still unsynced.
    pub fn sync(&self, store: &impl History, max_revisions: i64) -> Result<usize, StoreError> {
        let current = store.current();
        let compacted = store.compacted();
        let from = {
            let mut group = self.group();
            end_compacted(&mut group, compacted);
            // Each round reads from the furthest-behind watcher that can take a batch now;
            // one whose client stopped reading (etcd's victim) pins no window.
            let from = group
                .unsynced()
                .filter(|(_, w)| w.next >= compacted && w.sink.has_room())
                .map(|(_, w)| w.next)
                .min();
            self.forget_if_empty(&group);
            match from {
                Some(f) => f,
                None => return Ok(group.unsynced_count()),
            }
        };
        let upto = current.min(from.saturating_add(max_revisions.max(1) - 1));
        let (history, upto) = if from <= upto {
            match store.events(from, upto, CATCH_UP_BYTES)? {
                Some((events, upto)) => (
                    events.into_iter().map(WatchEvent::new).collect::<Vec<_>>(),
                    upto,
                ),
                // Compacted meanwhile: the next round tells those watchers so.
                None => return Ok(self.group().unsynced_count()),
            }
        } else {
            (Vec::new(), upto)
        };
        let mut group = self.group();
        // Sinks that took a batch this round: their other watchers are still offered theirs
        // (the sink refuses what does not fit), while a sink that had no room when the round
        // began (a client that stopped reading) is passed over without building a batch.
        let mut took: HashSet<*const ()> = HashSet::new();
        for k in group.unsynced_keys() {
            let now = store.current();
            let Some(w) = group.get_mut(&k) else {
                continue;
            };
            let sink = Arc::as_ptr(&w.sink) as *const ();
            if !took.contains(&sink) && !w.sink.has_room() {
                continue;
            }
            let caught_up = if w.next < from || w.next > upto {
                w.next > now
            } else {
                let evs: Vec<Arc<WatchEvent>> = history
                    .iter()
                    .filter(|e| revision_of(e) >= w.next && w.wants(e))
                    .cloned()
                    .collect();
                let sent = evs.is_empty()
                    || w.sink.try_send(WatchBatch {
                        watch_id: k.1,
                        events: Events::from(evs),
                        revision: upto,
                        compact_revision: 0,
                    });
                if sent {
                    w.next = upto + 1;
                    took.insert(sink);
                }
                sent && w.next > now
            };
            if caught_up {
                group.make_synced(k);
            }
        }
        Ok(group.unsynced_count())
    }
}

/// Sends a commit's events (in revision order) to the synced watchers that want them: each
/// watcher gets them in as few batches as `LIVE_BATCH_BYTES` allows, never splitting a
/// revision, rather than a batch (a response and two task wake-ups) per revision. The
/// watchers of a key share its run of events and their encoding, each taking a slice.
fn notify_commit(group: &mut WatcherGroup, events: &[Arc<WatchEvent>]) {
    // Each watcher's batches with the bytes of the last one, in the order first met.
    let mut batches: Vec<(WatchKey, Vec<WatchBatch>, usize)> = Vec::new();
    let mut slot_of: HashMap<WatchKey, usize> = HashMap::new();
    // A run of events on one key has the same watchers: they and their slots are looked
    // up once per run, not once per event.
    let mut run_key: Option<&[u8]> = None;
    let mut run_watchers: Vec<(&Watcher, usize)> = Vec::new();
    let (mut run_start, mut run_end) = (0, 0);
    // The run's events as its watchers share them, made once one wants any.
    let mut run_events: Option<Arc<EventRun>> = None;
    for (i, ev) in events.iter().enumerate() {
        let Some(kv) = &ev.kv else { continue };
        if run_key != Some(kv.key.as_slice()) {
            run_key = Some(kv.key.as_slice());
            // Events without a key-value are skipped without ending the run.
            run_start = i;
            run_end = i + events[i..]
                .iter()
                .take_while(|e| e.kv.as_ref().is_none_or(|k| k.key == kv.key))
                .count();
            run_events = None;
            run_watchers.clear();
            let targets = group.targets(&kv.key);
            // Room for every watcher at once, not grown one doubling at a time.
            batches.reserve(targets.len());
            slot_of.reserve(targets.len());
            run_watchers.reserve(targets.len());
            for t in targets {
                // A range watcher whose range misses the key misses the whole run.
                let Some(w) = group.get(&t).filter(|w| w.spec.range.contains(&kv.key)) else {
                    continue;
                };
                let slot = *slot_of.entry(t).or_insert_with(|| {
                    batches.push((t, Vec::new(), 0));
                    batches.len() - 1
                });
                run_watchers.push((w, slot));
            }
        }
        let rev = revision_of(ev);
        let at = i - run_start;
        for &(w, slot) in &run_watchers {
            // The key is in every one of the run's watchers' ranges.
            if rev < w.next || !w.wants_kind(ev) {
                continue;
            }
            let shared = run_events
                .get_or_insert_with(|| EventRun::shared(events[run_start..run_end].to_vec()));
            let size = shared.field_len(at);
            let (t, list, bytes) = &mut batches[slot];
            match list.last_mut() {
                Some(b) if b.revision == rev || *bytes < LIVE_BATCH_BYTES => {
                    b.events.push(shared, at);
                    b.revision = rev;
                    *bytes += size;
                }
                _ => {
                    let mut first = Events::default();
                    first.push(shared, at);
                    list.push(WatchBatch {
                        watch_id: t.1,
                        events: first,
                        revision: rev,
                        compact_revision: 0,
                    });
                    *bytes = size;
                }
            }
        }
    }
    drop(run_watchers);
    for (t, list, _) in batches {
        if list.is_empty() {
            continue;
        }
        let Some(w) = group.get_mut(&t) else {
            continue;
        };
        for mut batch in list {
            batch.events.own_small_slices();
            let first = batch
                .events
                .first()
                .map_or(batch.revision, |e| revision_of(e));
            let last = batch.revision;
            if w.sink.try_send(batch) {
                w.next = last + 1;
            } else {
                w.next = first;
                group.make_unsynced(t);
                break;
            }
        }
    }
}

/// History before the compaction point is gone: says so to the unsynced watchers that
/// wanted it, and ends their watches.
fn end_compacted(group: &mut WatcherGroup, compacted: i64) {
    let doomed: Vec<WatchKey> = group
        .unsynced()
        .filter(|(_, w)| w.next < compacted)
        .map(|(k, _)| k)
        .collect();
    for k in doomed {
        let sent = group.get(&k).is_some_and(|w| {
            w.sink.try_send(WatchBatch {
                watch_id: k.1,
                events: Events::default(),
                // etcd leaves the header revision of this answer at 0.
                revision: 0,
                compact_revision: compacted,
            })
        });
        if sent {
            group.remove(k);
        }
    }
}

#[cfg(test)]
mod tests;
