//! What a watch is: its key, what it asks for, where its batches go, and the watcher the
//! hub keeps for it.

use crate::key_range::KeyRange;
use oxcd_api::mvccpb::{event::EventType, Event};
use prost::bytes::BufMut;
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
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

/// `WatchResponse.events`' field number.
const EVENTS_FIELD: u32 = 11;

/// Bytes of a `WatchResponse.events` field holding an event encoded in `len` bytes.
fn field_len(len: usize) -> usize {
    key_len(EVENTS_FIELD) + encoded_len_varint(len as u64) + len
}

/// The key and length that go before an event encoded in `len` bytes.
fn put_field_head(len: usize, buf: &mut impl BufMut) {
    encode_key(EVENTS_FIELD, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

/// Bytes of one event as a `WatchResponse.events` field.
fn event_field_len(event: &WatchEvent) -> usize {
    field_len(event.encoded().len())
}

fn put_event_field(event: &WatchEvent, buf: &mut impl BufMut) {
    let bytes = event.encoded();
    put_field_head(bytes.len(), buf);
    buf.put_slice(bytes);
}

/// Events in revision order, as a commit hands them to the watches of one key: shared by
/// those watches, which each take a slice of them, not an `Arc` per event.
pub struct EventRun {
    events: Vec<Arc<WatchEvent>>,
    /// The events as `WatchResponse.events` fields, back to back, made once for all the
    /// watches; `None` for a run made for one watch, whose events are written one by one.
    wire: Option<Wire>,
}

struct Wire {
    bytes: Vec<u8>,
    /// Where each event's field ends in `bytes`.
    ends: Vec<usize>,
}

impl Wire {
    /// Encodes straight into the run's bytes: the events keep no encoding of their own.
    fn of(events: &[Arc<WatchEvent>]) -> Wire {
        let lens: Vec<usize> = events.iter().map(|e| e.event.encoded_len()).collect();
        let mut bytes = Vec::with_capacity(lens.iter().map(|&l| field_len(l)).sum());
        let mut ends = Vec::with_capacity(events.len());
        for (e, len) in events.iter().zip(lens) {
            put_field_head(len, &mut bytes);
            e.event.encode_raw(&mut bytes);
            ends.push(bytes.len());
        }
        Wire { bytes, ends }
    }

    fn start(&self, i: usize) -> usize {
        i.checked_sub(1).map_or(0, |p| self.ends[p])
    }
}

impl EventRun {
    /// A run that many watches take slices of.
    pub fn shared(events: Vec<Arc<WatchEvent>>) -> Arc<Self> {
        let wire = Some(Wire::of(&events));
        Arc::new(EventRun { events, wire })
    }

    /// Events `start..end` as a run of their own, their bytes copied.
    fn part(&self, start: usize, end: usize) -> Arc<Self> {
        let wire = self.wire.as_ref().map(|w| {
            let from = w.start(start);
            Wire {
                bytes: w.bytes[from..w.ends[end - 1]].to_vec(),
                ends: w.ends[start..end].iter().map(|e| e - from).collect(),
            }
        });
        Arc::new(EventRun {
            events: self.events[start..end].to_vec(),
            wire,
        })
    }

    /// Bytes of events `start..end` as `WatchResponse.events` fields.
    fn span_len(&self, start: usize, end: usize) -> usize {
        match &self.wire {
            Some(w) => w.ends[end - 1] - w.start(start),
            None => self.events[start..end]
                .iter()
                .map(|e| event_field_len(e))
                .sum(),
        }
    }

    /// Bytes of event `i` as a `WatchResponse.events` field.
    pub(crate) fn field_len(&self, i: usize) -> usize {
        self.span_len(i, i + 1)
    }

    fn write_span(&self, start: usize, end: usize, buf: &mut impl BufMut) {
        match &self.wire {
            Some(w) => buf.put_slice(&w.bytes[w.start(start)..w.ends[end - 1]]),
            None => self.events[start..end]
                .iter()
                .for_each(|e| put_event_field(e, buf)),
        }
    }
}

#[derive(Clone)]
struct Slice {
    run: Arc<EventRun>,
    start: usize,
    end: usize,
}

/// A watch's events, in order: slices of runs.
#[derive(Clone, Default)]
pub struct Events {
    slices: Vec<Slice>,
}

impl Events {
    /// Adds event `i` of `run`, after the others.
    pub fn push(&mut self, run: &Arc<EventRun>, i: usize) {
        debug_assert!(i < run.events.len());
        if let Some(s) = self.slices.last_mut() {
            if Arc::ptr_eq(&s.run, run) && s.end == i {
                s.end += 1;
                return;
            }
        }
        self.slices.push(Slice {
            run: run.clone(),
            start: i,
            end: i + 1,
        });
    }

    pub fn len(&self) -> usize {
        self.slices.iter().map(|s| s.end - s.start).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.slices.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<WatchEvent>> {
        self.slices
            .iter()
            .flat_map(|s| s.run.events[s.start..s.end].iter())
    }

    pub fn first(&self) -> Option<&Arc<WatchEvent>> {
        self.slices.first().map(|s| &s.run.events[s.start])
    }

    pub fn last(&self) -> Option<&Arc<WatchEvent>> {
        self.slices.last().map(|s| &s.run.events[s.end - 1])
    }

    /// Bytes of these events as `WatchResponse.events` fields.
    pub fn wire_len(&self) -> usize {
        self.slices
            .iter()
            .map(|s| s.run.span_len(s.start, s.end))
            .sum()
    }

    /// Copies each slice that covers less than half of its run's bytes into a run of its
    /// own: a batch waiting in a stream's queue then holds about the bytes it is counted
    /// for, not every event of its commit on that key.
    pub(crate) fn own_small_slices(&mut self) {
        for s in &mut self.slices {
            let run_bytes = s.run.wire.as_ref().map_or(0, |w| w.bytes.len());
            if s.run.span_len(s.start, s.end) * 2 < run_bytes {
                let end = s.end - s.start;
                *s = Slice {
                    run: s.run.part(s.start, s.end),
                    start: 0,
                    end,
                };
            }
        }
    }

    /// Bytes of the runs these events hold.
    #[cfg(test)]
    pub(crate) fn held_bytes(&self) -> usize {
        let mut runs: Vec<&Arc<EventRun>> = self.slices.iter().map(|s| &s.run).collect();
        runs.dedup_by(|a, b| Arc::ptr_eq(a, b));
        runs.iter().map(|r| r.span_len(0, r.events.len())).sum()
    }

    /// Writes these events as `WatchResponse.events` fields (`wire_len` bytes).
    pub fn write_wire(&self, buf: &mut impl BufMut) {
        for s in &self.slices {
            s.run.write_span(s.start, s.end, buf);
        }
    }
}

impl From<Vec<Arc<WatchEvent>>> for Events {
    /// Events for one watch alone.
    fn from(events: Vec<Arc<WatchEvent>>) -> Self {
        if events.is_empty() {
            return Events::default();
        }
        let end = events.len();
        Events {
            slices: vec![Slice {
                run: Arc::new(EventRun { events, wire: None }),
                start: 0,
                end,
            }],
        }
    }
}

impl PartialEq for Events {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|e| &e.event))
            .finish()
    }
}

/// Events for one watch, all at revisions up to `revision`; or, with `compact_revision` set,
/// the news that the history it wanted is gone (the watch is then over).
#[derive(Debug, Clone, PartialEq)]
pub struct WatchBatch {
    pub watch_id: i64,
    pub events: Events,
    pub revision: i64,
    pub compact_revision: i64,
}

impl WatchBatch {
    /// A progress notification: every event up to `revision` has gone before it.
    pub fn progress(watch_id: i64, revision: i64) -> Self {
        WatchBatch {
            watch_id,
            events: Events::default(),
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
        ev.kv
            .as_ref()
            .is_some_and(|kv| self.wants_kind(ev) && self.spec.range.contains(&kv.key))
    }

    /// Whether the watch takes this kind of event (its key aside).
    pub fn wants_kind(&self, ev: &Event) -> bool {
        match ev.r#type() {
            EventType::Put => !self.spec.no_put,
            EventType::Delete => !self.spec.no_delete,
        }
    }
}

/// The revision an event happened at.
pub(crate) fn revision_of(ev: &Event) -> i64 {
    ev.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}
