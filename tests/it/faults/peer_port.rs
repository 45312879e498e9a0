//! What reaches a member on its peer port is raft's, never a path on the member's disk.

use oxcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use oxcd_api::etcdserverpb::StatusRequest;
use oxcd_api::oxcdpb::raft_client::RaftClient;
use oxcd_api::oxcdpb::RaftBatch;
use oxcd_tests::kv::put;
use oxcd_tests::wait::retry;
use oxcd_tests::{Kind, Server};
use prost::Message as _;
use std::time::Duration;

/// raft's eraftpb.Message, as much of it as a snapshot message needs.
#[derive(Clone, PartialEq, prost::Message)]
struct RaftMessage {
    #[prost(int32, tag = "1")]
    msg_type: i32,
    #[prost(uint64, tag = "2")]
    to: u64,
    #[prost(uint64, tag = "3")]
    from: u64,
    #[prost(uint64, tag = "4")]
    term: u64,
    #[prost(message, optional, tag = "9")]
    snapshot: Option<Snapshot>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Snapshot {
    #[prost(bytes = "vec", tag = "1")]
    data: Vec<u8>,
    #[prost(message, optional, tag = "2")]
    metadata: Option<SnapshotMetadata>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SnapshotMetadata {
    #[prost(message, optional, tag = "1")]
    conf_state: Option<ConfState>,
    #[prost(uint64, tag = "2")]
    index: u64,
    #[prost(uint64, tag = "3")]
    term: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ConfState {
    #[prost(uint64, repeated, tag = "1")]
    voters: Vec<u64>,
}

/// eraftpb.MessageType.MsgSnapshot
const MSG_SNAPSHOT: i32 = 7;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_message_on_the_raft_stream_cannot_name_a_file_to_load_or_delete() {
    let mut server = Server::start(Kind::Oxcd, &[]);
    let mut kv = server.ready().await;
    kv.put(put("before", "1")).await.expect("put");
    let status = MaintenanceClient::new(server.channel().await.expect("channel"))
        .status(StatusRequest {})
        .await
        .expect("status")
        .into_inner();
    let header = status.header.expect("header");

    let dir = tempfile::tempdir().expect("tempdir");
    let victim = dir.path().join("precious");
    std::fs::write(&victim, b"not a snapshot").expect("write");

    let intruder = 0xdead_u64;
    let msg = RaftMessage {
        msg_type: MSG_SNAPSHOT,
        to: header.member_id,
        from: intruder,
        term: status.raft_term + 1,
        snapshot: Some(Snapshot {
            data: victim.to_string_lossy().as_bytes().to_vec(),
            metadata: Some(SnapshotMetadata {
                conf_state: Some(ConfState {
                    voters: vec![header.member_id],
                }),
                index: status.raft_index + 1000,
                term: status.raft_term + 1,
            }),
        }),
    };
    let bytes = msg.encode_to_vec();

    let peer = format!("http://127.0.0.1:{}", server.peer_port);
    let mut raft = RaftClient::connect(peer).await.expect("peer port");
    raft.send(tokio_stream::iter(vec![RaftBatch {
        cluster_id: header.cluster_id,
        from: intruder,
        messages: vec![bytes],
    }]))
    .await
    .expect("the stream is taken");

    // Proposals queue behind the stepped message: once a put is through, it was handled.
    let after = retry(Duration::from_secs(10), Duration::from_millis(100), || {
        let mut kv = kv.clone();
        async move { kv.put(put("after", "2")).await.map_err(|e| e.to_string()) }
    })
    .await;
    let exited = server
        .child
        .as_mut()
        .and_then(|c| c.try_wait().ok().flatten());
    assert!(
        after.is_ok() && exited.is_none(),
        "the member stopped serving ({after:?}, exit {exited:?}); log:\n{}",
        server.log()
    );
    assert!(
        server
            .wait_for_log("dropping a snapshot message", Duration::from_secs(5))
            .await,
        "the forged message never reached raft's door"
    );
    assert_eq!(
        std::fs::read(&victim).ok().as_deref(),
        Some(&b"not a snapshot"[..]),
        "the member touched a file a peer named"
    );
    server.kill9();
}
