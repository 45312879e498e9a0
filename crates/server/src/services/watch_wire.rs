//! How a watch response goes on the wire: each event is written from the bytes it was
//! encoded to once, for every watch that gets it, so a hundred watchers of a key cost one
//! encoding of its event, not a hundred copies and encodings.

use oxcd_api::etcdserverpb::{WatchRequest, WatchResponse};
use oxcd_mvcc::WatchEvent;
use prost::bytes::BufMut;
use prost::encoding::{encode_key, encode_varint, WireType};
use prost::Message;
use std::sync::Arc;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::Status;

/// `WatchResponse.events`' field number.
const EVENTS_FIELD: u32 = 11;

/// A response as it goes on the wire.
#[derive(Debug)]
pub enum WatchOut {
    Whole(WatchResponse),
    /// `head` (without events) followed by `events`, each from its shared encoding: the
    /// same bytes as `head` with the events in it (they are its last field).
    Shared {
        head: WatchResponse,
        events: Vec<Arc<WatchEvent>>,
    },
}

impl WatchOut {
    fn encoded_len(&self) -> usize {
        match self {
            WatchOut::Whole(r) => r.encoded_len(),
            WatchOut::Shared { head, events } => {
                head.encoded_len() + events.iter().map(|e| event_field_len(e)).sum::<usize>()
            }
        }
    }
}

/// Bytes of one event as a field of `WatchResponse`.
pub fn event_field_len(event: &WatchEvent) -> usize {
    let len = event.encoded().len();
    prost::encoding::key_len(EVENTS_FIELD) + prost::encoding::encoded_len_varint(len as u64) + len
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
            for e in events {
                let bytes = e.encoded();
                encode_key(EVENTS_FIELD, WireType::LengthDelimited, buf);
                encode_varint(bytes.len() as u64, buf);
                buf.put_slice(bytes);
            }
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

    fn encode(out: WatchOut) -> Vec<u8> {
        let mut buf = Vec::new();
        write_out(&out, &mut buf);
        assert_eq!(buf.len(), out.encoded_len(), "encoded_len");
        buf
    }

    #[test]
    fn shared_events_encode_to_the_same_bytes_as_the_whole_response() {
        let events: Vec<Event> = (1..=3)
            .map(|i| Event {
                kv: Some(KeyValue {
                    key: format!("k{i}").into_bytes(),
                    value: vec![b'v'; 200 * i],
                    mod_revision: 10 + i as i64,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect();
        let head = WatchResponse {
            header: Some(ResponseHeader {
                revision: 13,
                ..Default::default()
            }),
            watch_id: 7,
            ..Default::default()
        };
        let whole = WatchResponse {
            events: events.clone(),
            ..head.clone()
        };
        let shared = WatchOut::Shared {
            head,
            events: events.into_iter().map(WatchEvent::new).collect(),
        };
        let bytes = encode(shared);
        assert_eq!(bytes, whole.encode_to_vec());
        assert_eq!(WatchResponse::decode(&bytes[..]).expect("decode"), whole);
    }
}
