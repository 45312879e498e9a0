//! The gRPC codec of every generated client and server: prost's, except that a message's
//! buffer is sized once to its encoded length. prost writes into a growing buffer that
//! doubles, so a big answer (a listing of a million keys) left every smaller copy behind
//! in the allocator's pages while it was sent: about as much again as the answer.

use bytes::{BufMut, BytesMut};
use prost::{EncodeError, Message};
use std::marker::PhantomData;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::Status;
use tonic_prost::ProstCodec;

/// prost's codec with [`SizedEncoder`] for what is sent.
pub struct SizedCodec<T, U> {
    inner: ProstCodec<T, U>,
}

impl<T, U> Default for SizedCodec<T, U> {
    fn default() -> Self {
        SizedCodec {
            inner: ProstCodec::default(),
        }
    }
}

impl<T, U> Codec for SizedCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = SizedEncoder<T>;
    type Decoder = <ProstCodec<T, U> as Codec>::Decoder;

    fn encoder(&mut self) -> Self::Encoder {
        SizedEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        self.inner.decoder()
    }
}

/// Encodes a message into a buffer grown once, to the message's length.
pub struct SizedEncoder<T>(PhantomData<T>);

impl<T: Message> Encoder for SizedEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        encode_sized(&item, buf).map_err(|e| Status::internal(e.to_string()))
    }
}

/// A buffer that can be grown ahead of a write.
trait Reserve: BufMut {
    fn reserve_for(&mut self, len: usize);
}

impl Reserve for EncodeBuf<'_> {
    fn reserve_for(&mut self, len: usize) {
        self.reserve(len);
    }
}

impl Reserve for BytesMut {
    fn reserve_for(&mut self, len: usize) {
        self.reserve(len);
    }
}

fn encode_sized<T: Message>(item: &T, buf: &mut impl Reserve) -> Result<(), EncodeError> {
    buf.reserve_for(item.encoded_len());
    item.encode(buf)
}

#[cfg(test)]
mod tests {
    use super::encode_sized;
    use crate::etcdserverpb::RangeResponse;
    use crate::mvccpb::KeyValue;
    use bytes::BytesMut;
    use prost::Message;

    fn listing(keys: usize) -> RangeResponse {
        RangeResponse {
            kvs: (0..keys)
                .map(|i| KeyValue {
                    key: format!("key-{i:08}").into_bytes(),
                    create_revision: i as i64 + 2,
                    mod_revision: i as i64 + 2,
                    version: 1,
                    ..KeyValue::default()
                })
                .collect(),
            count: keys as i64,
            ..RangeResponse::default()
        }
    }

    #[test]
    fn a_big_answer_is_encoded_into_one_buffer_of_its_size() {
        let answer = listing(100_000);
        let expected = answer.encode_to_vec();
        // As tonic hands it over: its default 8 KiB buffer with the 5-byte frame header.
        let mut buf = BytesMut::with_capacity(8 * 1024);
        buf.extend_from_slice(&[0; 5]);
        encode_sized(&answer, &mut buf).expect("encodes");
        assert_eq!(&buf[5..], &expected[..]);
        assert_eq!(
            buf.capacity(),
            buf.len(),
            "the buffer grew past the answer: it doubled as it filled"
        );
    }
}
