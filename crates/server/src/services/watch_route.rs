//! The Watch service's gRPC route, written in place of the generated server for its
//! encoder (`watch_wire`), which shares each event's encoding between watches.

use super::watch::{ResponseStream, WatchService};
use super::watch_wire::{WatchCodec, WatchOut};
use oxcd_api::etcdserverpb::WatchRequest;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::codegen::{http, Body, BoxFuture, StdError};
use tonic::server::{Grpc, NamedService, StreamingService};
use tonic::{Request, Status, Streaming};

const WATCH_PATH: &str = "/etcdserverpb.Watch/Watch";

/// The Watch service as a route (etcdserverpb.Watch), in place of the generated server.
#[derive(Clone)]
pub struct WatchRoute {
    service: Arc<WatchService>,
    max_decoding_message_size: usize,
}

impl WatchRoute {
    pub fn new(service: WatchService, max_decoding_message_size: usize) -> Self {
        WatchRoute {
            service: Arc::new(service),
            max_decoding_message_size,
        }
    }
}

impl NamedService for WatchRoute {
    const NAME: &'static str = "etcdserverpb.Watch";
}

struct WatchMethod(Arc<WatchService>);

impl StreamingService<WatchRequest> for WatchMethod {
    type Response = WatchOut;
    type ResponseStream = ResponseStream;
    type Future = BoxFuture<tonic::Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<Streaming<WatchRequest>>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { service.watch(request).await })
    }
}

impl<B> tonic::codegen::Service<http::Request<B>> for WatchRoute
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != WATCH_PATH {
            return Box::pin(async {
                Ok(Status::unimplemented("unknown method").into_http::<tonic::body::Body>())
            });
        }
        let method = WatchMethod(self.service.clone());
        let limit = self.max_decoding_message_size;
        Box::pin(async move {
            let mut grpc = Grpc::new(WatchCodec).apply_max_message_size_config(Some(limit), None);
            Ok(grpc.streaming(method, req).await)
        })
    }
}
