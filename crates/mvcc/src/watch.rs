//! What a watch is: its key, what it asks for, where its batches go, and the watcher the
//! hub keeps for it.

use crate::key_range::KeyRange;
use oxcd_api::mvccpb::{event::EventType, Event};
use prost::Message;
use std::sync::{Arc, OnceLock};

/// A watch, named by its stream and its ID in that stream.
pub type WatchKey = (u64, i64);

/// One event, shared by every watch that gets it: it is not copied per watch, and its
/// protobuf encoding is made once, by the first that needs it.
#[derive(Debug)]
pub struct WatchEvent {
    event: Event,
    encoded: OnceLock<Vec<u8>>,
}

impl WatchEvent {
    pub fn new(event: Event) -> Arc<Self> {
        Arc::new(WatchEvent {
            event,
            encoded: OnceLock::new(),
        })
    }

    /// The event's protobuf encoding (an `mvccpb.Event` message, without a field key).
    pub fn encoded(&self) -> &[u8] {
        self.encoded.get_or_init(|| self.event.encode_to_vec())
    }
}

impl std::ops::Deref for WatchEvent {
    type Target = Event;

    fn deref(&self) -> &Event {
        &self.event
    }
}

impl PartialEq for WatchEvent {
    fn eq(&self, other: &Self) -> bool {
        self.event == other.event
    }
}

/// Events for one watch, all at revisions up to `revision`; or, with `compact_revision` set,
/// the news that the history it wanted is gone (the watch is then over).
#[derive(Debug, Clone, PartialEq)]
pub struct WatchBatch {
    pub watch_id: i64,
    pub events: Vec<Arc<WatchEvent>>,
    pub revision: i64,
    pub compact_revision: i64,
}

impl WatchBatch {
    /// A progress notification: every event up to `revision` has gone before it.
    pub fn progress(watch_id: i64, revision: i64) -> Self {
        WatchBatch {
            watch_id,
            events: Vec::new(),
            revision,
            compact_revision: 0,
        }
    }

    pub fn is_progress(&self) -> bool {
        self.events.is_empty() && self.compact_revision == 0
    }
}

/// What came of asking for a progress notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Queued behind every event its watches have been sent.
    Sent,
    /// A watch is still catching up, or its sink is full: ask again later.
    NotYet,
    /// No such watch (none on the stream).
    NoWatch,
}

/// Where a watch's batches go. `try_send` must not block: false means full.
pub trait WatchSink: Send + Sync {
    fn try_send(&self, batch: WatchBatch) -> bool;

    /// Whether a batch would be taken now. A watcher whose sink is full (its client stopped
    /// reading) is passed over by catch-up, so it never holds the others back.
    fn has_room(&self) -> bool {
        true
    }
}

pub struct WatchSpec {
    pub range: KeyRange,
    /// The first revision to deliver.
    pub start_revision: i64,
    pub no_put: bool,
    pub no_delete: bool,
}

pub(crate) struct Watcher {
    pub spec: WatchSpec,
    /// The next revision this watcher still has to see.
    pub next: i64,
    pub synced: bool,
    pub sink: Arc<dyn WatchSink>,
}

impl Watcher {
    pub fn new(spec: WatchSpec, sink: Arc<dyn WatchSink>) -> Self {
        Watcher {
            next: spec.start_revision,
            spec,
            synced: false,
            sink,
        }
    }

    pub fn wants(&self, ev: &Event) -> bool {
        let Some(kv) = &ev.kv else { return false };
        let kind_ok = match ev.r#type() {
            EventType::Put => !self.spec.no_put,
            EventType::Delete => !self.spec.no_delete,
        };
        kind_ok && self.spec.range.contains(&kv.key)
    }
}

/// The revision an event happened at.
pub(crate) fn revision_of(ev: &Event) -> i64 {
    ev.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}
