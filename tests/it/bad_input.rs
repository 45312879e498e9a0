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
