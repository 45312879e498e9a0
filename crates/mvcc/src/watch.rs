//! What a watch is: its key, what it asks for, where its batches go, and the watcher the
//! hub keeps for it.

use crate::key_range::KeyRange;
use oxcd_api::mvccpb::{event::EventType, Event};
use std::sync::Arc;

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
