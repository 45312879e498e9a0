//! gRPC's metrics as etcd exports them (go-grpc-prometheus's names): RPCs started, RPCs
//! handled by code (unary ones when their answer's head is out, streams when they end, a
//! stream the client drops as Canceled), with `--metrics=extensive` their handling time,
//! and the protobuf bytes of the messages clients send and receive.

use crate::metrics::RpcCounters;
use bytes::Bytes;
use http::header;
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

#[derive(Clone, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;
    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics { inner }
    }
}

#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S, RB> tower::Service<http::Request<tonic::body::Body>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<tonic::body::Body>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    RB: Body<Data = Bytes> + Send + Unpin + 'static,
    RB::Error: Into<tonic::codegen::StdError>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let grpc = req
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        let counters = grpc
            .then(|| crate::metrics::rpc_counters(req.uri().path()))
            .flatten();
        let Some(c) = counters else {
            let fut = self.inner.call(req);
            return Box::pin(async move { Ok(fut.await?.map(tonic::body::Body::new)) });
        };
        c.started.inc();
        let started = Instant::now();
        let bytes_counter = |pick: fn(&crate::metrics::Metrics) -> &prometheus::IntCounter| {
            crate::metrics::get().map(|m| pick(m).clone())
        };
        let received = bytes_counter(|m| &m.client_received_bytes);
        let sent = bytes_counter(|m| &m.client_sent_bytes);
        let req = req.map(|body| {
            tonic::body::Body::new(Counted {
                inner: body,
                framing: Framing::default(),
                bytes: received,
                stream: None,
            })
        });
        let fut = self.inner.call(req);
        Box::pin(async move {
            // A call dropped before its answer (the client went away) counts as Canceled.
            let mut pending = Pending(Some((c, started)));
            let resp = fut.await?;
            pending.0 = None;
            // An error comes back as headers only, its code among them; a stream that
            // answers with more counts when it ends.
            let refused = status_code(resp.headers());
            let mut stream = None;
            match refused {
                Some(code) => c.handled(code, started),
                None if c.kind == "unary" => c.handled("OK", started),
                None => stream = Some((c, started)),
            }
            Ok(resp.map(|body| {
                tonic::body::Body::new(Counted {
                    inner: body,
                    framing: Framing::default(),
                    bytes: sent,
                    stream,
                })
            }))
        })
    }
}

/// The gRPC status code in headers or trailers, as a metric label.
fn status_code(headers: &http::HeaderMap) -> Option<&'static str> {
    let code = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .parse::<i32>()
        .ok()?;
    Some(tonic::Code::from(code).description_name())
}

/// A call not answered yet; dropped unanswered, it counts as Canceled.
struct Pending(Option<(&'static RpcCounters, Instant)>);

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some((c, started)) = self.0.take() {
            c.handled("Canceled", started);
        }
    }
}

/// The gRPC framing of a body (each message: a flag byte, a 4-byte length, the message), to
/// count message bytes as etcd's codec does.
#[derive(Default)]
struct Framing {
    prefix: [u8; 5],
    have: usize,
    left: u64,
}

impl Framing {
    /// The message bytes in `data` (its share of the 5-byte prefixes left out).
    fn payload(&mut self, mut data: &[u8]) -> u64 {
        let mut n = 0;
        while !data.is_empty() {
            if self.left > 0 {
                let take = data
                    .len()
                    .min(usize::try_from(self.left).unwrap_or(usize::MAX));
                n += take as u64;
                self.left -= take as u64;
                data = &data[take..];
            } else {
                let take = (5 - self.have).min(data.len());
                self.prefix[self.have..self.have + take].copy_from_slice(&data[..take]);
                self.have += take;
                data = &data[take..];
                if self.have == 5 {
                    let len = [
                        self.prefix[1],
                        self.prefix[2],
                        self.prefix[3],
                        self.prefix[4],
                    ];
                    self.left = u64::from(u32::from_be_bytes(len));
                    self.have = 0;
                }
            }
        }
        n
    }
}

/// A request or response body whose message bytes are counted; a stream's response is
/// counted as handled when its trailers pass, or as Canceled if it is dropped before.
struct Counted<B> {
    inner: B,
    framing: Framing,
    /// etcd_network_client_grpc_received_bytes_total or _sent_bytes_total.
    bytes: Option<prometheus::IntCounter>,
    stream: Option<(&'static RpcCounters, Instant)>,
}

impl<B: Body<Data = Bytes> + Unpin> Body for Counted<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                let n = self.framing.payload(data);
                if let Some(c) = &self.bytes {
                    c.inc_by(n);
                }
            }
            if let Some(trailers) = frame.trailers_ref() {
                if let Some((c, started)) = self.stream.take() {
                    c.handled(status_code(trailers).unwrap_or("OK"), started);
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for Counted<B> {
    fn drop(&mut self) {
        if let Some((c, started)) = self.stream.take() {
            c.handled("Canceled", started);
        }
    }
}

trait CodeName {
    fn description_name(self) -> &'static str;
}

impl CodeName for tonic::Code {
    /// The code's name as Go's grpc prints it in metric labels.
    fn description_name(self) -> &'static str {
        use tonic::Code::*;
        match self {
            Ok => "OK",
            Cancelled => "Canceled",
            Unknown => "Unknown",
            InvalidArgument => "InvalidArgument",
            DeadlineExceeded => "DeadlineExceeded",
            NotFound => "NotFound",
            AlreadyExists => "AlreadyExists",
            PermissionDenied => "PermissionDenied",
            ResourceExhausted => "ResourceExhausted",
            FailedPrecondition => "FailedPrecondition",
            Aborted => "Aborted",
            OutOfRange => "OutOfRange",
            Unimplemented => "Unimplemented",
            Internal => "Internal",
            Unavailable => "Unavailable",
            DataLoss => "DataLoss",
            Unauthenticated => "Unauthenticated",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Framing;

    #[test]
    fn message_bytes_are_counted_across_any_split_of_the_framing() {
        let mut body = Vec::new();
        for msg in [&b"hello"[..], b"", b"a longer message"] {
            body.push(0);
            body.extend_from_slice(&(msg.len() as u32).to_be_bytes());
            body.extend_from_slice(msg);
        }
        for chunk in 1..=body.len() {
            let mut f = Framing::default();
            let counted: u64 = body.chunks(chunk).map(|c| f.payload(c)).sum();
            assert_eq!(counted, 21, "chunks of {chunk}");
        }
    }
}
