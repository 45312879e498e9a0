//! etcd's JSON gateway on the client URLs. `POST /v3/kv/range` with a JSON body is the gRPC
//! call KV.Range: the body becomes the protobuf request, the call goes through the same gRPC
//! services in process (so authorization, limits and errors are the gRPC path's), and the
//! reply comes back in proto3's JSON mapping with proto field names, as etcd's grpc-gateway
//! writes it. Streams (watch, lease keep-alive, snapshot, election observe) answer with one
//! `{"result": ...}` object a line. `/v3beta/` and `/v3alpha/` are the same API.

use crate::server::EtcdServer;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use prost::Message;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tonic::service::Routes;
use tonic::{Code, Status};
use tower::ServiceExt;

/// The most a JSON body may hold; the gRPC services then apply --max-request-bytes.
const MAX_BODY_BYTES: usize = 64 << 20;

struct Gateway {
    grpc: Routes,
    server: Arc<EtcdServer>,
}

pub fn routes(grpc: Routes, server: Arc<EtcdServer>) -> axum::Router {
    let gateway = Arc::new(Gateway { grpc, server });
    axum::Router::new()
        .route("/v3/{*method}", any(handle))
        .route("/v3beta/{*method}", any(handle))
        .route("/v3alpha/{*method}", any(handle))
        .with_state(gateway)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Unary,
    ServerStream,
    /// Requests stream in the body. A watch stays open after the body ends, as etcd's does;
    /// keep-alives end with it.
    BidiStream {
        hold_open: bool,
    },
}

struct Rpc {
    path: &'static str,
    kind: Kind,
    request: fn(&[u8]) -> Result<Vec<u8>, serde_json::Error>,
    response: fn(&[u8]) -> Result<Vec<u8>, Status>,
}

fn json_to_proto<T: Message + Default + DeserializeOwned>(
    json: &[u8],
) -> Result<Vec<u8>, serde_json::Error> {
    // An empty body is an empty request, as in etcd's gateway.
    let msg: T = if json.iter().all(u8::is_ascii_whitespace) {
        T::default()
    } else {
        serde_json::from_slice(json)?
    };
    Ok(msg.encode_to_vec())
}

fn proto_to_json<T: Message + Default + Serialize>(proto: &[u8]) -> Result<Vec<u8>, Status> {
    let msg = T::decode(proto).map_err(|e| Status::internal(e.to_string()))?;
    serde_json::to_vec(&msg).map_err(|e| Status::internal(e.to_string()))
}

fn rpc<Req, Resp>(path: &'static str, kind: Kind) -> Rpc
where
    Req: Message + Default + DeserializeOwned,
    Resp: Message + Default + Serialize,
{
    Rpc {
        path,
        kind,
        request: json_to_proto::<Req>,
        response: proto_to_json::<Resp>,
    }
}

/// The gRPC method behind a gateway path (below the version prefix), as etcd 3.5 maps them.
fn lookup(method: &str) -> Option<Rpc> {
    use oxcd_api::etcdserverpb::*;
    use oxcd_api::{v3electionpb as el, v3lockpb as lk};
    use Kind::*;
    Some(match method {
        "kv/range" => rpc::<RangeRequest, RangeResponse>("/etcdserverpb.KV/Range", Unary),
        "kv/put" => rpc::<PutRequest, PutResponse>("/etcdserverpb.KV/Put", Unary),
        "kv/deleterange" => {
            rpc::<DeleteRangeRequest, DeleteRangeResponse>("/etcdserverpb.KV/DeleteRange", Unary)
        }
        "kv/txn" => rpc::<TxnRequest, TxnResponse>("/etcdserverpb.KV/Txn", Unary),
        "kv/compaction" => {
            rpc::<CompactionRequest, CompactionResponse>("/etcdserverpb.KV/Compact", Unary)
        }
        "watch" => rpc::<WatchRequest, WatchResponse>(
            "/etcdserverpb.Watch/Watch",
            BidiStream { hold_open: true },
        ),
        "lease/grant" => {
            rpc::<LeaseGrantRequest, LeaseGrantResponse>("/etcdserverpb.Lease/LeaseGrant", Unary)
        }
        "lease/revoke" | "kv/lease/revoke" => {
            rpc::<LeaseRevokeRequest, LeaseRevokeResponse>("/etcdserverpb.Lease/LeaseRevoke", Unary)
        }
        "lease/keepalive" => rpc::<LeaseKeepAliveRequest, LeaseKeepAliveResponse>(
            "/etcdserverpb.Lease/LeaseKeepAlive",
            BidiStream { hold_open: false },
        ),
        "lease/timetolive" | "kv/lease/timetolive" => {
            rpc::<LeaseTimeToLiveRequest, LeaseTimeToLiveResponse>(
                "/etcdserverpb.Lease/LeaseTimeToLive",
                Unary,
            )
        }
        "lease/leases" | "kv/lease/leases" => {
            rpc::<LeaseLeasesRequest, LeaseLeasesResponse>("/etcdserverpb.Lease/LeaseLeases", Unary)
        }
        "cluster/member/add" => {
            rpc::<MemberAddRequest, MemberAddResponse>("/etcdserverpb.Cluster/MemberAdd", Unary)
        }
        "cluster/member/remove" => rpc::<MemberRemoveRequest, MemberRemoveResponse>(
            "/etcdserverpb.Cluster/MemberRemove",
            Unary,
        ),
        "cluster/member/update" => rpc::<MemberUpdateRequest, MemberUpdateResponse>(
            "/etcdserverpb.Cluster/MemberUpdate",
            Unary,
        ),
        "cluster/member/list" => {
            rpc::<MemberListRequest, MemberListResponse>("/etcdserverpb.Cluster/MemberList", Unary)
        }
        "cluster/member/promote" => rpc::<MemberPromoteRequest, MemberPromoteResponse>(
            "/etcdserverpb.Cluster/MemberPromote",
            Unary,
        ),
        "maintenance/alarm" => {
            rpc::<AlarmRequest, AlarmResponse>("/etcdserverpb.Maintenance/Alarm", Unary)
        }
        "maintenance/status" => {
            rpc::<StatusRequest, StatusResponse>("/etcdserverpb.Maintenance/Status", Unary)
        }
        "maintenance/defragment" => rpc::<DefragmentRequest, DefragmentResponse>(
            "/etcdserverpb.Maintenance/Defragment",
            Unary,
        ),
        "maintenance/hash" => {
            rpc::<HashRequest, HashResponse>("/etcdserverpb.Maintenance/Hash", Unary)
        }
        "maintenance/hashkv" => {
            rpc::<HashKvRequest, HashKvResponse>("/etcdserverpb.Maintenance/HashKV", Unary)
        }
        "maintenance/snapshot" => rpc::<SnapshotRequest, SnapshotResponse>(
            "/etcdserverpb.Maintenance/Snapshot",
            ServerStream,
        ),
        "maintenance/transfer-leadership" => rpc::<MoveLeaderRequest, MoveLeaderResponse>(
            "/etcdserverpb.Maintenance/MoveLeader",
            Unary,
        ),
        "maintenance/downgrade" => {
            rpc::<DowngradeRequest, DowngradeResponse>("/etcdserverpb.Maintenance/Downgrade", Unary)
        }
        "auth/enable" => {
            rpc::<AuthEnableRequest, AuthEnableResponse>("/etcdserverpb.Auth/AuthEnable", Unary)
        }
        "auth/disable" => {
            rpc::<AuthDisableRequest, AuthDisableResponse>("/etcdserverpb.Auth/AuthDisable", Unary)
        }
        "auth/status" => {
            rpc::<AuthStatusRequest, AuthStatusResponse>("/etcdserverpb.Auth/AuthStatus", Unary)
        }
        "auth/authenticate" => rpc::<AuthenticateRequest, AuthenticateResponse>(
            "/etcdserverpb.Auth/Authenticate",
            Unary,
        ),
        "auth/user/add" => {
            rpc::<AuthUserAddRequest, AuthUserAddResponse>("/etcdserverpb.Auth/UserAdd", Unary)
        }
        "auth/user/get" => {
            rpc::<AuthUserGetRequest, AuthUserGetResponse>("/etcdserverpb.Auth/UserGet", Unary)
        }
        "auth/user/list" => {
            rpc::<AuthUserListRequest, AuthUserListResponse>("/etcdserverpb.Auth/UserList", Unary)
        }
        "auth/user/delete" => rpc::<AuthUserDeleteRequest, AuthUserDeleteResponse>(
            "/etcdserverpb.Auth/UserDelete",
            Unary,
        ),
        "auth/user/changepw" => {
            rpc::<AuthUserChangePasswordRequest, AuthUserChangePasswordResponse>(
                "/etcdserverpb.Auth/UserChangePassword",
                Unary,
            )
        }
        "auth/user/grant" => rpc::<AuthUserGrantRoleRequest, AuthUserGrantRoleResponse>(
            "/etcdserverpb.Auth/UserGrantRole",
            Unary,
        ),
        "auth/user/revoke" => rpc::<AuthUserRevokeRoleRequest, AuthUserRevokeRoleResponse>(
            "/etcdserverpb.Auth/UserRevokeRole",
            Unary,
        ),
        "auth/role/add" => {
            rpc::<AuthRoleAddRequest, AuthRoleAddResponse>("/etcdserverpb.Auth/RoleAdd", Unary)
        }
        "auth/role/get" => {
            rpc::<AuthRoleGetRequest, AuthRoleGetResponse>("/etcdserverpb.Auth/RoleGet", Unary)
        }
        "auth/role/list" => {
            rpc::<AuthRoleListRequest, AuthRoleListResponse>("/etcdserverpb.Auth/RoleList", Unary)
        }
        "auth/role/delete" => rpc::<AuthRoleDeleteRequest, AuthRoleDeleteResponse>(
            "/etcdserverpb.Auth/RoleDelete",
            Unary,
        ),
        "auth/role/grant" => {
            rpc::<AuthRoleGrantPermissionRequest, AuthRoleGrantPermissionResponse>(
                "/etcdserverpb.Auth/RoleGrantPermission",
                Unary,
            )
        }
        "auth/role/revoke" => rpc::<
            AuthRoleRevokePermissionRequest,
            AuthRoleRevokePermissionResponse,
        >("/etcdserverpb.Auth/RoleRevokePermission", Unary),
        "lock/lock" => rpc::<lk::LockRequest, lk::LockResponse>("/v3lockpb.Lock/Lock", Unary),
        "lock/unlock" => {
            rpc::<lk::UnlockRequest, lk::UnlockResponse>("/v3lockpb.Lock/Unlock", Unary)
        }
        "election/campaign" => rpc::<el::CampaignRequest, el::CampaignResponse>(
            "/v3electionpb.Election/Campaign",
            Unary,
        ),
        "election/proclaim" => rpc::<el::ProclaimRequest, el::ProclaimResponse>(
            "/v3electionpb.Election/Proclaim",
            Unary,
        ),
        "election/leader" => {
            rpc::<el::LeaderRequest, el::LeaderResponse>("/v3electionpb.Election/Leader", Unary)
        }
        "election/observe" => rpc::<el::LeaderRequest, el::LeaderResponse>(
            "/v3electionpb.Election/Observe",
            ServerStream,
        ),
        "election/resign" => {
            rpc::<el::ResignRequest, el::ResignResponse>("/v3electionpb.Election/Resign", Unary)
        }
        _ => return None,
    })
}

/// grpc-gateway's HTTP status for a gRPC code.
fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn plain(status: StatusCode, text: &str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        format!("{text}\n"),
    )
        .into_response()
}

fn json_response(status: StatusCode, body: impl Into<Body>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.into(),
    )
        .into_response()
}

/// A failed unary call: grpc-gateway's error body.
fn error_response(status: &Status) -> Response {
    let mut body = serde_json::Map::new();
    if !status.message().is_empty() {
        body.insert("error".into(), status.message().into());
        body.insert("message".into(), status.message().into());
    }
    body.insert("code".into(), (status.code() as i32).into());
    json_response(
        http_status(status.code()),
        serde_json::Value::Object(body).to_string(),
    )
}

/// A failed stream: the `{"error": ...}` line grpc-gateway ends it with.
fn stream_error_line(status: &Status) -> Bytes {
    let http = http_status(status.code());
    let mut error = serde_json::Map::new();
    error.insert("grpc_code".into(), (status.code() as i32).into());
    error.insert("http_code".into(), http.as_u16().into());
    if !status.message().is_empty() {
        error.insert("message".into(), status.message().into());
    }
    error.insert(
        "http_status".into(),
        http.canonical_reason().unwrap_or("").into(),
    );
    let mut line = serde_json::json!({ "error": error }).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn result_line(json: &[u8]) -> Bytes {
    let mut line = Vec::with_capacity(json.len() + 12);
    line.extend_from_slice(b"{\"result\":");
    line.extend_from_slice(json);
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

fn grpc_frame(msg: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(msg.len() + 5);
    frame.extend_from_slice(&[0]);
    frame.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    frame.extend_from_slice(msg);
    frame.freeze()
}

fn bad_json(e: serde_json::Error) -> Status {
    Status::invalid_argument(e.to_string())
}

/// HTTP headers that become gRPC metadata, as grpc-gateway forwards them: Authorization,
/// and `Grpc-Metadata-<key>` as `<key>`.
fn forward_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        let name = name.as_str();
        if name == "authorization" {
            to.insert(header::AUTHORIZATION, value.clone());
        } else if let Some(key) = name.strip_prefix("grpc-metadata-") {
            if let Ok(key) = header::HeaderName::from_bytes(key.as_bytes()) {
                to.append(key, value.clone());
            }
        }
    }
}

/// etcd's default CORS answer (`--cors '*'`) on every gateway reply; OPTIONS is answered
/// with it alone.
async fn handle(
    State(gateway): State<Arc<Gateway>>,
    Path(method): Path<String>,
    req: axum::extract::Request,
) -> Response {
    let mut resp = if req.method() == http::Method::OPTIONS {
        StatusCode::OK.into_response()
    } else {
        call(&gateway, &method, req).await
    };
    let headers = resp.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("accept, content-type, authorization"),
    );
    resp
}

async fn call(gateway: &Gateway, method: &str, req: axum::extract::Request) -> Response {
    let Some(rpc) = lookup(method) else {
        return plain(StatusCode::NOT_FOUND, "Not Found");
    };
    if req.method() != http::Method::POST {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    }
    // etcd refuses, rather than silently ignore, a certificate's CN on the gateway when
    // auth is on: the gateway's own connection would not carry it.
    let has_cn = req
        .extensions()
        .get::<crate::tls::ConnInfo>()
        .is_some_and(|c| c.common_name.is_some());
    if has_cn && gateway.server.client_cert_auth && gateway.server.auth.is_enabled() {
        return plain(
            StatusCode::BAD_REQUEST,
            "CommonName of client sending a request against gateway will be ignored and not used as expected",
        );
    }
    let (parts, body) = req.into_parts();
    // Dropped when the reply ends (or the client goes away): a held-open request stream
    // then ends too, and the call with it.
    let (reply_done, reply_gone) = oneshot::channel::<()>();
    let grpc_body = match rpc.kind {
        Kind::Unary | Kind::ServerStream => {
            let json = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
                Ok(json) => json,
                Err(e) => return error_response(&Status::invalid_argument(e.to_string())),
            };
            match (rpc.request)(&json) {
                Ok(msg) => Body::from(grpc_frame(&msg)),
                Err(e) => return error_response(&bad_json(e)),
            }
        }
        Kind::BidiStream { hold_open } => {
            let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(16);
            let hold = hold_open.then_some(reply_gone);
            // A request's JSON is at most about twice its protobuf (base64, names, quotes).
            let max_json = 2 * gateway.server.max_request_bytes as usize + 64 * 1024;
            tokio::spawn(stream_requests(body, rpc.request, max_json, tx, hold));
            Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        }
    };
    let mut grpc_req = http::Request::new(grpc_body);
    *grpc_req.method_mut() = http::Method::POST;
    *grpc_req.uri_mut() = http::Uri::from_static(rpc.path);
    *grpc_req.extensions_mut() = parts.extensions;
    let headers = grpc_req.headers_mut();
    forward_headers(&parts.headers, headers);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(header::TE, HeaderValue::from_static("trailers"));

    let resp = match gateway.grpc.clone().oneshot(grpc_req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    };
    // A call that fails before any message answers with headers alone.
    if let Some(status) = Status::from_header_map(resp.headers()) {
        if status.code() != Code::Ok {
            return match rpc.kind {
                Kind::Unary => error_response(&status),
                _ => json_response(http_status(status.code()), stream_error_line(&status)),
            };
        }
    }
    let mut frames = GrpcFrames::new(resp.into_body());
    match rpc.kind {
        Kind::Unary => match frames.next().await {
            Some(Ok(msg)) => match (rpc.response)(&msg) {
                Ok(json) => json_response(StatusCode::OK, json),
                Err(status) => error_response(&status),
            },
            Some(Err(status)) => error_response(&status),
            None => error_response(&Status::internal("oxcd: empty gRPC response")),
        },
        _ => stream_response(frames, rpc.response, reply_done).await,
    }
}

/// Reads JSON requests one after another from the body and sends each as a gRPC frame. A
/// request still incomplete past `max_json` bytes ends the stream: it could never be
/// accepted, and holding it would let one client grow the buffer (and its re-reading)
/// without bound.
async fn stream_requests(
    mut body: Body,
    to_proto: fn(&[u8]) -> Result<Vec<u8>, serde_json::Error>,
    max_json: usize,
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
    hold_until: Option<oneshot::Receiver<()>>,
) {
    let mut buf = BytesMut::new();
    while let Some(Ok(frame)) = body.frame().await {
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        loop {
            let mut values =
                serde_json::Deserializer::from_slice(&buf).into_iter::<serde::de::IgnoredAny>();
            match values.next() {
                Some(Ok(_)) => {
                    let end = values.byte_offset();
                    let json = buf.split_to(end);
                    match to_proto(&json) {
                        Ok(msg) => {
                            if tx.send(Ok(grpc_frame(&msg))).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::info!(error = %e, "gateway: bad JSON request in stream");
                            return;
                        }
                    }
                }
                Some(Err(e)) if e.is_eof() => {
                    if buf.len() > max_json {
                        tracing::info!(
                            bytes = buf.len(),
                            "gateway: a JSON request in a stream outgrew the request limit"
                        );
                        return;
                    }
                    break;
                }
                None => {
                    buf.clear();
                    break;
                }
                Some(Err(e)) => {
                    tracing::info!(error = %e, "gateway: bad JSON request in stream");
                    return;
                }
            }
        }
    }
    if let Some(reply_gone) = hold_until {
        tokio::select! {
            _ = tx.closed() => {}
            _ = reply_gone => {}
        }
    }
}

/// Streams the call's messages as `{"result": ...}` lines. The status is the first one's:
/// 200, or the error's when the call fails before its first message.
async fn stream_response(
    mut frames: GrpcFrames,
    to_json: fn(&[u8]) -> Result<Vec<u8>, Status>,
    reply_done: oneshot::Sender<()>,
) -> Response {
    let line = move |item: Result<Bytes, Status>| -> (Bytes, bool) {
        match item.and_then(|msg| to_json(&msg)) {
            Ok(json) => (result_line(&json), false),
            Err(status) => (stream_error_line(&status), true),
        }
    };
    let first = match frames.next().await {
        None => return json_response(StatusCode::OK, Body::empty()),
        Some(Err(status)) => {
            return json_response(http_status(status.code()), stream_error_line(&status))
        }
        Some(Ok(msg)) => line(Ok(msg)),
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(16);
    tokio::spawn(async move {
        let _reply_done = reply_done;
        let (bytes, mut failed) = first;
        if tx.send(Ok(bytes)).await.is_err() {
            return;
        }
        while !failed {
            let next = tokio::select! {
                next = frames.next() => next,
                _ = tx.closed() => return,
            };
            let Some(item) = next else {
                return;
            };
            let (bytes, error) = line(item);
            failed = error;
            if tx.send(Ok(bytes)).await.is_err() {
                return;
            }
        }
    });
    json_response(
        StatusCode::OK,
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
}

/// The messages of a gRPC response body, then its status from the trailers.
struct GrpcFrames {
    body: tonic::body::Body,
    buf: BytesMut,
    status: Option<Status>,
}

impl GrpcFrames {
    fn new(body: tonic::body::Body) -> Self {
        GrpcFrames {
            body,
            buf: BytesMut::new(),
            status: None,
        }
    }

    async fn next(&mut self) -> Option<Result<Bytes, Status>> {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]])
                    as usize;
                if self.buf.len() >= 5 + len {
                    self.buf.advance(5);
                    return Some(Ok(self.buf.split_to(len).freeze()));
                }
            }
            match self.body.frame().await {
                None => {
                    return match self.status.take() {
                        Some(status) if status.code() != Code::Ok => Some(Err(status)),
                        _ => None,
                    }
                }
                Some(Err(e)) => return Some(Err(e)),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.buf.extend_from_slice(&data),
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            self.status = Status::from_header_map(&trailers);
                        }
                    }
                },
            }
        }
    }
}
