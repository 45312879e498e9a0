//! How a watch response goes on the wire: its events are copied from the bytes they were
//! encoded to once, for every watch that gets them, so a hundred watchers of a key cost one
//! encoding of its events, not a hundred.

use oxcd_api::etcdserverpb::{WatchRequest, WatchResponse};
use oxcd_mvcc::Events;
use prost::bytes::BufMut;
use prost::Message;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::Status;

/// A response as it goes on the wire.
#[derive(Debug)]
pub enum WatchOut {
    Whole(WatchResponse),
    /// `head` (without events) followed by `events` from their shared encoding: the same
    /// bytes as `head` with the events in it (they are its last field).
    Shared {
        head: WatchResponse,
        events: Events,
    },
}

impl WatchOut {
    fn encoded_len(&self) -> usize {
        match self {
            WatchOut::Whole(r) => r.encoded_len(),
            WatchOut::Shared { head, events } => head.encoded_len() + events.wire_len(),
        }
    }
}

impl From<WatchResponse> for WatchOut {
    fn from(r: WatchResponse) -> Self {
        WatchOut::Whole(r)
    }
}

pub(super) struct WatchEncoder;

impl Encoder for WatchEncoder {
    type Item = WatchOut;
    type Error = Status;

    fn encode(&mut self, item: WatchOut, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        if matches!(item, WatchOut::Shared { .. }) {
            // Room for the whole response at once, rather than growing as events are added.
            buf.reserve(item.encoded_len());
        }
        write_out(&item, buf);
        Ok(())
    }
}

fn write_out(item: &WatchOut, buf: &mut impl BufMut) {
    match item {
        WatchOut::Whole(r) => r.encode_raw(buf),
        WatchOut::Shared { head, events } => {
            head.encode_raw(buf);
            events.write_wire(buf);
        }
    }
}

#[derive(Clone, Copy)]
pub(super) struct WatchCodec;

impl Codec for WatchCodec {
    type Encode = WatchOut;
    type Decode = WatchRequest;
    type Encoder = WatchEncoder;
    type Decoder = tonic_prost::ProstDecoder<WatchRequest>;

    fn encoder(&mut self) -> WatchEncoder {
        WatchEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxcd_api::etcdserverpb::ResponseHeader;
    use oxcd_api::mvccpb::{Event, KeyValue};
    use oxcd_mvcc::{EventRun, WatchEvent};

    fn encode(out: WatchOut) -> Vec<u8> {
        let mut buf = Vec::new();
        write_out(&out, &mut buf);
        assert_eq!(buf.len(), out.encoded_len(), "encoded_len");
        buf
    }

    fn event(i: usize) -> Event {
        Event {
            kv: Some(KeyValue {
                key: format!("k{i}").into_bytes(),
                value: vec![b'v'; 200 * i],
                mod_revision: 10 + i as i64,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// `events` after `head`, as the shared form writes them and as prost does.
    fn assert_same_bytes(events: Events, expected: Vec<Event>) {
        let head = WatchResponse {
            header: Some(ResponseHeader {
                revision: 13,
                ..Default::default()
            }),
            watch_id: 7,
            ..Default::default()
        };
        let whole = WatchResponse {
            events: expected,
            ..head.clone()
        };
        let bytes = encode(WatchOut::Shared { head, events });
        assert_eq!(bytes, whole.encode_to_vec());
        assert_eq!(WatchResponse::decode(&bytes[..]).expect("decode"), whole);
    }

    #[test]
    fn shared_events_encode_to_the_same_bytes_as_the_whole_response() {
        let events: Vec<Event> = (1..=3).map(event).collect();
        let own = Events::from(
            events
                .iter()
                .cloned()
                .map(WatchEvent::new)
                .collect::<Vec<_>>(),
        );
        assert_same_bytes(own, events);
    }

    #[test]
    fn slices_of_shared_runs_encode_as_their_events_alone() {
        let run = |range: std::ops::Range<usize>| {
            EventRun::shared(range.map(|i| WatchEvent::new(event(i))).collect())
        };
        let (first, second) = (run(0..5), run(5..7));
        let mut events = Events::default();
        for i in [1, 2, 4] {
            events.push(&first, i);
        }
        events.push(&second, 0);
        assert_eq!(events.len(), 4);
        assert_same_bytes(events, [1, 2, 4, 5].into_iter().map(event).collect());
    }
}
