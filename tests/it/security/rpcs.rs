//! Every RPC under auth, as a call that can be made with any caller's token.

use futures::{FutureExt, StreamExt};
use oxcd_api::etcdserverpb::*;
use oxcd_tests::kv::put;
use tonic::transport::Channel;
use tonic::{Request, Status};

pub(super) fn with_token<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut r = Request::new(message);
    if let Some(t) = token {
        r.metadata_mut()
            .insert("token", t.parse().expect("token metadata"));
    }
    r
}

pub(super) type Call =
    fn(Channel, Option<String>) -> futures::future::BoxFuture<'static, Result<(), Status>>;

/// A unary call `Client::new(ch).method(request)` with the caller's token, its answer
/// dropped.
macro_rules! unary {
    ($($client:ident)::+, $method:ident, $request:expr) => {
        |ch, t| {
            async move {
                $($client)::+::new(ch)
                    .$method(with_token($request, t.as_deref()))
                    .await
                    .map(drop)
            }
            .boxed()
        }
    };
}

/// Each RPC under test, and who may make it. Key RPCs touch app/, which alice may read and
/// write; admin RPCs need the root role.
pub(super) fn rpc_table() -> Vec<(&'static str, Call, &'static [&'static str])> {
    const KEYS: &[&str] = &["alice", "root"];
    const ADMIN: &[&str] = &["root"];
    vec![
        (
            "Range",
            unary!(
                kv_client::KvClient,
                range,
                RangeRequest {
                    key: b"app/a".to_vec(),
                    ..Default::default()
                }
            ),
            KEYS,
        ),
        (
            "Range whole keyspace",
            unary!(
                kv_client::KvClient,
                range,
                RangeRequest {
                    key: vec![0],
                    range_end: vec![0],
                    ..Default::default()
                }
            ),
            ADMIN,
        ),
        (
            "Put",
            unary!(kv_client::KvClient, put, put("app/a", "v")),
            KEYS,
        ),
        (
            "DeleteRange",
            unary!(
                kv_client::KvClient,
                delete_range,
                DeleteRangeRequest {
                    key: b"app/gone".to_vec(),
                    ..Default::default()
                }
            ),
            KEYS,
        ),
        (
            "Txn",
            unary!(kv_client::KvClient, txn, {
                let cmp = Compare {
                    key: b"app/a".to_vec(),
                    target: compare::CompareTarget::Version as i32,
                    ..Default::default()
                };
                TxnRequest {
                    compare: vec![cmp],
                    success: vec![put("app/t", "1").into()],
                    ..Default::default()
                }
            }),
            KEYS,
        ),
        (
            "Watch",
            |ch, t| {
                async move {
                    let create = WatchRequest {
                        request_union: Some(watch_request::RequestUnion::CreateRequest(
                            WatchCreateRequest {
                                key: b"app/".to_vec(),
                                range_end: b"app0".to_vec(),
                                ..Default::default()
                            },
                        )),
                    };
                    let mut stream = watch_client::WatchClient::new(ch)
                        .watch(with_token(
                            futures::stream::iter([create]).chain(futures::stream::pending()),
                            t.as_deref(),
                        ))
                        .await?
                        .into_inner();
                    let first = stream
                        .message()
                        .await?
                        .ok_or_else(|| Status::unknown("no response"))?;
                    if first.canceled {
                        Err(Status::permission_denied(first.cancel_reason))
                    } else {
                        Ok(())
                    }
                }
                .boxed()
            },
            KEYS,
        ),
        (
            "LeaseGrant",
            unary!(
                lease_client::LeaseClient,
                lease_grant,
                LeaseGrantRequest { ttl: 60, id: 0 }
            ),
            &["bob", "alice", "root"],
        ),
        (
            "Status",
            unary!(
                maintenance_client::MaintenanceClient,
                status,
                StatusRequest {}
            ),
            ADMIN,
        ),
        (
            "HashKV",
            unary!(
                maintenance_client::MaintenanceClient,
                hash_kv,
                HashKvRequest { revision: 0 }
            ),
            ADMIN,
        ),
        (
            "Alarm",
            unary!(
                maintenance_client::MaintenanceClient,
                alarm,
                AlarmRequest::default()
            ),
            ADMIN,
        ),
        (
            "Defragment",
            unary!(
                maintenance_client::MaintenanceClient,
                defragment,
                DefragmentRequest {}
            ),
            ADMIN,
        ),
        (
            "Snapshot",
            |ch, t| {
                async move {
                    let mut s = maintenance_client::MaintenanceClient::new(ch)
                        .snapshot(with_token(SnapshotRequest {}, t.as_deref()))
                        .await?
                        .into_inner();
                    s.message().await.map(drop)
                }
                .boxed()
            },
            ADMIN,
        ),
        (
            "MemberAdd",
            |ch, t| {
                async move {
                    // A bad URL: allowed callers get past auth to the URL check.
                    match cluster_client::ClusterClient::new(ch)
                        .member_add(with_token(
                            MemberAddRequest {
                                peer_ur_ls: vec!["not a url".into()],
                                is_learner: true,
                            },
                            t.as_deref(),
                        ))
                        .await
                    {
                        Err(s) if s.message() == "etcdserver: given member URLs are invalid" => {
                            Ok(())
                        }
                        other => other.map(drop),
                    }
                }
                .boxed()
            },
            ADMIN,
        ),
        (
            "UserList",
            unary!(auth_client::AuthClient, user_list, AuthUserListRequest {}),
            ADMIN,
        ),
        (
            "RoleGet app",
            unary!(
                auth_client::AuthClient,
                role_get,
                AuthRoleGetRequest { role: "app".into() }
            ),
            KEYS,
        ),
        (
            "UserAdd",
            unary!(
                auth_client::AuthClient,
                user_add,
                AuthUserAddRequest {
                    name: format!("u{}", rand::random::<u32>()),
                    password: "p".into(),
                    ..Default::default()
                }
            ),
            ADMIN,
        ),
    ]
}
