//! Bad requests get etcd's gRPC code and message, and leave the server healthy.

use oxcd_api::etcdserverpb::kv_client::KvClient;
use oxcd_api::etcdserverpb::*;
use oxcd_tests::kv::put;
use oxcd_tests::{Kind, Server};
use tonic::transport::Channel;

fn op_put(k: String) -> RequestOp {
    put(k, "").into()
}

type Outcome = Result<String, (tonic::Code, String)>;

async fn outcomes(kv: &mut KvClient<Channel>) -> Vec<(&'static str, Outcome)> {
    let mut out: Vec<(&'static str, Outcome)> = Vec::new();
    let st = |s: tonic::Status| (s.code(), s.message().to_string());
    macro_rules! record {
        ($name:expr, $call:expr) => {
            out.push((
                $name,
                $call
                    .await
                    .map(|r| format!("{:?}", r.into_inner().kvs_or_default()))
                    .map_err(st),
            ));
        };
    }
    record!("put empty key", kv.put(put(b"", b"v")));
    record!("range empty key", kv.range(RangeRequest::default()));
    record!(
        "delete empty key",
        kv.delete_range(DeleteRangeRequest::default())
    );
    record!(
        "ignore_value with a value",
        kv.put(PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ignore_value: true,
            ..Default::default()
        })
    );
    record!(
        "ignore_lease with a lease",
        kv.put(PutRequest {
            key: b"k".to_vec(),
            lease: 5,
            ignore_lease: true,
            ..Default::default()
        })
    );
    record!(
        "ignore_value on a missing key",
        kv.put(PutRequest {
            key: b"missing".to_vec(),
            ignore_value: true,
            ..Default::default()
        })
    );
    record!(
        "unknown lease",
        kv.put(PutRequest {
            key: b"k".to_vec(),
            lease: 7,
            ..Default::default()
        })
    );
    record!(
        "request too large",
        kv.put(put(b"big", vec![b'x'; 1_600_000]))
    );
    let ops: Vec<RequestOp> = (0..129).map(|i| op_put(format!("t{i}"))).collect();
    record!(
        "txn over max-txn-ops",
        kv.txn(TxnRequest {
            compare: vec![],
            success: ops,
            failure: vec![]
        })
    );
    record!(
        "duplicate key in txn",
        kv.txn(TxnRequest {
            compare: vec![],
            success: vec![op_put("d".into()), op_put("d".into())],
            failure: vec![]
        })
    );
    record!("put a", kv.put(put(b"a", b"1")));
    record!("put b", kv.put(put(b"b", b"2")));
    record!(
        "range_end before key",
        kv.range(RangeRequest {
            key: b"b".to_vec(),
            range_end: b"a".to_vec(),
            ..Default::default()
        })
    );
    record!(
        "delete range_end before key",
        kv.delete_range(DeleteRangeRequest {
            key: b"b".to_vec(),
            range_end: b"a".to_vec(),
            ..Default::default()
        })
    );
    record!(
        "future revision",
        kv.range(RangeRequest {
            key: b"a".to_vec(),
            revision: 1000,
            ..Default::default()
        })
    );
    record!(
        "compact",
        kv.compact(CompactionRequest {
            revision: 3,
            physical: true
        })
    );
    record!(
        "compacted revision",
        kv.range(RangeRequest {
            key: b"a".to_vec(),
            revision: 2,
            ..Default::default()
        })
    );
    record!(
        "compact again",
        kv.compact(CompactionRequest {
            revision: 3,
            physical: false
        })
    );
    record!(
        "compact future",
        kv.compact(CompactionRequest {
            revision: 1000,
            physical: false
        })
    );
    record!("still healthy: put", kv.put(put(b"after", b"ok")));
    record!(
        "still healthy: get",
        kv.range(RangeRequest {
            key: b"after".to_vec(),
            ..Default::default()
        })
    );
    out
}

/// Responses compared by what they carry for the client, headers aside.
trait KvsOrDefault {
    fn kvs_or_default(&self) -> String;
}
macro_rules! kvs_or_default {
    ($($t:ty => |$r:ident| $e:expr;)*) => {$(
        impl KvsOrDefault for $t {
            fn kvs_or_default(&self) -> String {
                let $r = self;
                $e
            }
        }
    )*};
}
kvs_or_default! {
    PutResponse => |r| format!("{:?}", r.prev_kv);
    RangeResponse => |r| format!("{:?} {} {}", r.kvs, r.count, r.more);
    DeleteRangeResponse => |r| format!("{}", r.deleted);
    TxnResponse => |r| format!("{} {}", r.succeeded, r.responses.len());
    CompactionResponse => |r| format!("{}", r.header.as_ref().map_or(0, |h| h.revision));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_etcds_errors_and_the_server_stays_healthy() {
    let etcd = Server::start(Kind::Etcd, &[]);
    let oxcd = Server::start(Kind::Oxcd, &[]);
    let mut e = etcd.ready().await;
    let mut o = oxcd.ready().await;
    let want = outcomes(&mut e).await;
    let got = outcomes(&mut o).await;
    for ((name, w), (_, g)) in want.iter().zip(&got) {
        assert_eq!(g, w, "{name}: oxcd (left) vs etcd (right)");
    }
    assert!(got.iter().filter(|(_, r)| r.is_err()).count() >= 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_grpc_limit_is_refused_and_the_server_goes_on() {
    let oxcd = Server::start(Kind::Oxcd, &[]);
    let mut o = oxcd.ready().await;
    let huge = put(b"huge", vec![b'x'; 3 * 1024 * 1024]);
    let err = o.put(huge).await.expect_err("over the gRPC message limit");
    assert!(
        matches!(
            err.code(),
            tonic::Code::ResourceExhausted | tonic::Code::OutOfRange
        ),
        "{err:?}"
    );
    o.put(put(b"k", b"v")).await.expect("still serving");
}

/// gRPC calls to paths no service has answer Unimplemented and leave no trace in /metrics:
/// the method label values are etcd's RPCs only, so a client choosing paths cannot grow
/// the metrics without bound.
#[tokio::test]
async fn made_up_grpc_paths_add_no_metric_series() {
    use tonic::codegen::{http, Service};
    let server = Server::start(Kind::Oxcd, &[]);
    let mut kv = server.ready().await;
    kv.range(RangeRequest {
        key: b"k".to_vec(),
        ..Default::default()
    })
    .await
    .expect("a real RPC");
    let mut channel = server.channel().await.expect("channel");
    for i in 0..20 {
        let req = http::Request::builder()
            .method("POST")
            .uri(format!("{}/made.up.Service{i}/Method{i}", server.url()))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(tonic::body::Body::empty())
            .expect("request");
        std::future::poll_fn(|cx| channel.poll_ready(cx))
            .await
            .expect("ready");
        let resp = channel.call(req).await.expect("an answer");
        let status = resp
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        assert_eq!(status.as_deref(), Some("12"), "Unimplemented");
    }
    let (code, text) = oxcd_tests::http_get(&server.endpoint(), "/metrics");
    assert_eq!(code, 200);
    assert!(
        text.contains("grpc_method=\"Range\""),
        "etcd's RPCs are counted"
    );
    assert!(
        !text.contains("made.up") && !text.contains("Method1"),
        "made-up paths became label values:\n{}",
        text.lines()
            .filter(|l| l.contains("made.up"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// What a raw HTTP/2 client hears after sending `frames` (after the preface and an empty
/// SETTINGS): true once the server resets a stream, sends GOAWAY or closes the connection.
async fn server_refuses(server: &Server, frames: &[u8]) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(server.endpoint())
        .await
        .expect("connect");
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    conn.write_all(&hello).await.expect("preface");
    // The server may stop reading (and the rest of the write fail) once it has refused.
    let _ = conn.write_all(frames).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let read = tokio::time::timeout_at(deadline, conn.read(&mut buf)).await;
        match read {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
        // Walk the frames: RST_STREAM (3) or GOAWAY (7) is a refusal.
        let mut at = 0;
        while seen.len() >= at + 9 {
            let len = u32::from_be_bytes([0, seen[at], seen[at + 1], seen[at + 2]]) as usize;
            if matches!(seen[at + 3], 3 | 7) {
                return true;
            }
            at += 9 + len;
        }
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// The client port reads HTTP/2 before any auth: a header block that never ends is refused
/// at once instead of being held in memory while more of it is awaited.
#[tokio::test]
async fn an_endless_header_block_is_refused_not_buffered() {
    let server = Server::start(Kind::Oxcd, &[]);
    server.ready().await;
    // HEADERS without END_HEADERS, then 1 MiB of CONTINUATION frames that never end it.
    let mut endless = frame(0x1, 0, 1, &[0x82]);
    for _ in 0..64 {
        endless.extend(frame(0x9, 0, 1, &[0x40; 16_384]));
    }
    assert!(
        server_refuses(&server, &endless).await,
        "an endless header block is refused"
    );
    let mut kv = server.ready().await;
    kv.put(put("still", "serving"))
        .await
        .expect("the server serves on");
}

/// A frame declared larger than any the server accepts is refused at once, not awaited
/// (16 MiB held per connection before).
#[tokio::test]
async fn an_oversized_frame_is_refused_not_awaited() {
    let server = Server::start(Kind::Oxcd, &[]);
    server.ready().await;
    let mut huge = vec![0xff, 0xff, 0xff, 0x0, 0x0, 0, 0, 0, 1];
    huge.extend_from_slice(&[0u8; 65_536]);
    assert!(
        server_refuses(&server, &huge).await,
        "a frame larger than the server's limit is refused"
    );
    let mut kv = server.ready().await;
    kv.put(put("still", "serving"))
        .await
        .expect("the server serves on");
}
