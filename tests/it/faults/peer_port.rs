//! What reaches a member on its peer port is raft's, never a path on the member's disk.

use oxcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use oxcd_api::etcdserverpb::StatusRequest;
use oxcd_api::oxcdpb::raft_client::RaftClient;
use oxcd_api::oxcdpb::RaftBatch;
use oxcd_tests::kv::put;
use oxcd_tests::wait::retry;
use oxcd_tests::{Kind, Server};
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use std::time::Duration;

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
    let mut msg = Message::default();
    msg.set_msg_type(MessageType::MsgSnapshot);
    msg.to = header.member_id;
    msg.from = intruder;
    msg.term = status.raft_term + 1;
    let snap = msg.mut_snapshot();
    snap.data = victim.to_string_lossy().as_bytes().to_vec().into();
    let meta = snap.mut_metadata();
    meta.index = status.raft_index + 1000;
    meta.term = status.raft_term + 1;
    meta.mut_conf_state().voters = vec![header.member_id];
    let bytes = msg.write_to_bytes().expect("encode");

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
    assert_eq!(
        std::fs::read(&victim).ok().as_deref(),
        Some(&b"not a snapshot"[..]),
        "the member touched a file a peer named"
    );
    server.kill9();
}
