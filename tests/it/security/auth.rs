//! etcd's auth model: every RPC for every kind of caller (anonymous, expired and malformed
//! tokens, users with and without the permission, root), and the etcdctl auth, user and role
//! commands against real etcd.

use super::rpcs::{rpc_table, with_token};
use super::tool;
use oxcd_api::authpb::{permission::Type as PermType, Permission};
use oxcd_api::etcdserverpb::*;
use oxcd_tests::certs::Pki;
use oxcd_tests::kv::put;
use oxcd_tests::{bin, system_bin, Kind, Server};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// ES256 keys for --auth-token jwt, and an expired token for root signed with them.
fn jwt_keys(pki: &Pki) -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    std::fs::write(pki.path("jwt.key"), key.serialize_pem()).expect("write key");
    std::fs::write(pki.path("jwt.pub"), key.public_key_pem()).expect("write pub");
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &serde_json::json!({"username": "root", "revision": 1, "exp": 1_000_000_000u64}),
        &jsonwebtoken::EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).expect("ec key"),
    )
    .expect("sign");
    (
        format!(
            "--auth-token=jwt,pub-key={},priv-key={},sign-method=ES256,ttl=10m",
            pki.arg("jwt.pub"),
            pki.arg("jwt.key")
        ),
        expired,
    )
}

async fn authenticate(ch: &Channel, name: &str, password: &str) -> Result<String, Status> {
    auth_client::AuthClient::new(ch.clone())
        .authenticate(AuthenticateRequest {
            name: name.into(),
            password: password.into(),
        })
        .await
        .map(|r| r.into_inner().token)
}

/// Users root (root role), alice (readwrite on app/), bob (readwrite on other/), then auth
/// enabled.
async fn set_up_users(ch: &Channel) {
    let mut a = auth_client::AuthClient::new(ch.clone());
    for (user, role, prefix) in [
        ("root", "root", None),
        ("alice", "app", Some("app/")),
        ("bob", "other", Some("other/")),
    ] {
        a.user_add(AuthUserAddRequest {
            name: user.into(),
            password: format!("{user}-pw"),
            ..Default::default()
        })
        .await
        .expect("user add");
        a.role_add(AuthRoleAddRequest { name: role.into() })
            .await
            .expect("role add");
        if let Some(p) = prefix {
            a.role_grant_permission(AuthRoleGrantPermissionRequest {
                name: role.into(),
                perm: Some(Permission {
                    perm_type: PermType::Readwrite as i32,
                    key: p.as_bytes().to_vec(),
                    range_end: oxcd_api::prefix_end(p.as_bytes()),
                }),
            })
            .await
            .expect("grant permission");
        }
        a.user_grant_role(AuthUserGrantRoleRequest {
            user: user.into(),
            role: role.into(),
        })
        .await
        .expect("grant role");
    }
    a.auth_enable(AuthEnableRequest {})
        .await
        .expect("auth enable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_is_checked_for_every_kind_of_caller() {
    let pki = Pki::new();
    let (jwt_flag, expired) = jwt_keys(&pki);
    let server = Server::start(Kind::Oxcd, &[&jwt_flag]);
    server.ready().await;
    let ch = server.channel().await.expect("channel");
    set_up_users(&ch).await;

    let wrong = authenticate(&ch, "alice", "not-her-password").await;
    let status = wrong.expect_err("a wrong password authenticated");
    assert_eq!(
        (status.code(), status.message()),
        (
            Code::InvalidArgument,
            "etcdserver: authentication failed, invalid user ID or password"
        )
    );
    let callers: Vec<(&str, Option<String>)> = vec![
        ("anonymous", None),
        ("expired token", Some(expired)),
        ("malformed token", Some("x.y.z".into())),
        (
            "bob",
            Some(authenticate(&ch, "bob", "bob-pw").await.expect("bob")),
        ),
        (
            "alice",
            Some(authenticate(&ch, "alice", "alice-pw").await.expect("alice")),
        ),
        (
            "root",
            Some(authenticate(&ch, "root", "root-pw").await.expect("root")),
        ),
    ];
    let mut wrong_answers = Vec::new();
    for (rpc, call, allowed) in rpc_table() {
        for (caller, token) in &callers {
            let result = call(ch.clone(), token.clone()).await;
            let expected = allowed.contains(caller);
            let refusal_ok = match (caller, &result) {
                (_, Ok(_)) => true,
                (&"anonymous", Err(s)) => s.message() == "etcdserver: user name is empty",
                (&"expired token" | &"malformed token", Err(s)) => {
                    s.code() == Code::Unauthenticated
                        && s.message() == "etcdserver: invalid auth token"
                }
                (_, Err(s)) => s.message() == "etcdserver: permission denied",
            };
            if result.is_ok() != expected || !refusal_ok {
                wrong_answers.push(format!("{rpc} as {caller}: {result:?}"));
            }
        }
    }
    assert!(wrong_answers.is_empty(), "{wrong_answers:#?}");

    // A permission revoked after the token was issued applies to that token at once.
    let alice = callers[4].1.clone();
    auth_client::AuthClient::new(ch.clone())
        .role_revoke_permission(with_token(
            AuthRoleRevokePermissionRequest {
                role: "app".into(),
                key: b"app/".to_vec(),
                range_end: b"app0".to_vec(),
            },
            callers[5].1.as_deref(),
        ))
        .await
        .expect("revoke");
    let put = kv_client::KvClient::new(ch.clone())
        .put(with_token(put("app/a", "late"), alice.as_deref()))
        .await;
    assert_eq!(put.expect_err("revoked").code(), Code::PermissionDenied);
    // Garbage never crashed the server or leaked a key.
    let range = kv_client::KvClient::new(ch.clone())
        .range(with_token(
            RangeRequest {
                key: b"app/a".to_vec(),
                ..Default::default()
            },
            callers[5].1.as_deref(),
        ))
        .await
        .expect("root reads")
        .into_inner();
    assert_eq!(range.kvs[0].value, b"v");
}

/// The same auth/user/role session through the real etcdctl against etcd and oxcd, and
/// through oxcdctl against oxcd: stdout, the error line and the exit code agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_auth_user_role_commands_match_etcd() {
    // Each client changes its own server's state: one oxcd for etcdctl, one for oxcdctl.
    let etcd = Server::start(Kind::Etcd, &[]);
    let oxcd_for_etcdctl = Server::start(Kind::Oxcd, &[]);
    let oxcd_for_oxcdctl = Server::start(Kind::Oxcd, &[]);
    for s in [&etcd, &oxcd_for_etcdctl, &oxcd_for_oxcdctl] {
        s.ready().await;
    }
    let steps: &[&[&str]] = &[
        &["user", "add", "root:rootpw"],
        &["user", "add", "alice:alicepw"],
        &["user", "add", "alice:again"],
        &["role", "add", "app"],
        &[
            "role",
            "grant-permission",
            "app",
            "readwrite",
            "app/",
            "--prefix",
        ],
        &["role", "grant-permission", "app", "read", "pub", "pub9"],
        &[
            "role",
            "grant-permission",
            "app",
            "write",
            "log/",
            "--from-key",
        ],
        &["user", "grant-role", "alice", "app"],
        &["user", "grant-role", "alice", "nosuchrole"],
        &["role", "get", "app"],
        &["user", "get", "alice"],
        &["user", "list"],
        &["role", "list"],
        &["auth", "enable"],
        &["put", "app/1", "one"],
        &["--user=alice:alicepw", "put", "app/1", "one"],
        &["--user=alice:alicepw", "put", "secret", "x"],
        &["--user=alice:wrong", "get", "app/1"],
        &["--user=alice:alicepw", "get", "app/1"],
        &["--user=alice:alicepw", "get", "", "--prefix", "--keys-only"],
        &["--user=root:rootpw", "get", "", "--prefix", "--keys-only"],
        &[
            "--user=root:rootpw",
            "role",
            "revoke-permission",
            "app",
            "pub",
            "pub9",
        ],
        &[
            "--user=root:rootpw",
            "role",
            "revoke-permission",
            "app",
            "pub",
            "pub9",
        ],
        &["--user=root:rootpw", "user", "revoke-role", "alice", "app"],
        &["--user=alice:alicepw", "get", "app/1"],
        &["--user=root:rootpw", "user", "delete", "root"],
        &["--user=root:rootpw", "role", "delete", "app"],
        &["--user=root:rootpw", "user", "delete", "alice"],
        &["--user=root:rootpw", "auth", "disable"],
        &["get", "app/1"],
    ];
    let last_error = |err: &str| {
        err.lines()
            .rev()
            .find(|l| l.starts_with("Error:"))
            .unwrap_or("")
            .to_string()
    };
    let (etcdctl, oxcdctl) = (system_bin("etcdctl"), bin("oxcdctl"));
    for step in steps {
        let want = tool(&etcdctl, &etcd.endpoint(), &[], step);
        for (program, oxcd) in [(&etcdctl, &oxcd_for_etcdctl), (&oxcdctl, &oxcd_for_oxcdctl)] {
            let got = tool(program, &oxcd.endpoint(), &[], step);
            assert_eq!(
                (got.0.as_str(), last_error(&got.1), got.2),
                (want.0.as_str(), last_error(&want.1), want.2),
                "{program:?} {step:?}; stderr: {}",
                got.1
            );
        }
    }
}

/// The threads a process runs now (Linux's /proc).
fn threads_of(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A flood of logins with a wrong password (each a bcrypt check) runs a few checks at a
/// time, not one thread each: it once took a blocking thread per login, up to 512, and
/// starved the node. The node serves on meanwhile and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_wrong_passwords_checks_a_few_at_a_time() {
    const LOGINS: usize = 32;
    let server = Server::start(Kind::Oxcd, &[]);
    server.ready().await;
    let ch = server.channel().await.expect("channel");
    set_up_users(&ch).await;
    let pid = server.pid().expect("running");
    let before = threads_of(pid);
    let flood: Vec<_> = (0..LOGINS)
        .map(|_| {
            let ch = ch.clone();
            tokio::spawn(async move { authenticate(&ch, "alice", "not-her-password").await })
        })
        .collect();
    let mut most = before;
    while !flood.iter().all(|f| f.is_finished()) {
        most = most.max(threads_of(pid));
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    for f in flood {
        let status = f.await.expect("login task").expect_err("a wrong password");
        assert_eq!(
            status.message(),
            "etcdserver: authentication failed, invalid user ID or password"
        );
    }
    assert!(
        most <= before + 8,
        "{LOGINS} concurrent logins grew the server from {before} to {most} threads"
    );
    let token = authenticate(&ch, "alice", "alice-pw")
        .await
        .expect("the right password still works");
    assert!(!token.is_empty());
}

/// What a user may do with a lease holding keys the user cannot write (etcd's
/// checkLeasePuts, done when the request is applied): attach a key to it, in a Put or a Txn,
/// or revoke it. The same calls against etcd and oxcd give the same answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_holding_keys_a_user_cannot_write_is_not_theirs_to_extend_or_revoke() {
    let mut answers = Vec::new();
    for kind in [Kind::Etcd, Kind::Oxcd] {
        let server = Server::start(kind, &[]);
        server.ready().await;
        let ch = server.channel().await.expect("channel");
        set_up_users(&ch).await;
        let root = authenticate(&ch, "root", "root-pw").await.expect("root");
        let alice = authenticate(&ch, "alice", "alice-pw").await.expect("alice");
        let bob = authenticate(&ch, "bob", "bob-pw").await.expect("bob");
        let lease = lease_client::LeaseClient::new(ch.clone())
            .lease_grant(with_token(
                LeaseGrantRequest { ttl: 100, id: 0 },
                Some(&root),
            ))
            .await
            .expect("grant")
            .into_inner()
            .id;
        let with_lease = |key: &str| {
            let mut p = put(key, "v");
            p.lease = lease;
            p
        };
        let mut kv = kv_client::KvClient::new(ch.clone());
        kv.put(with_token(with_lease("other/secret"), Some(&root)))
            .await
            .expect("root attaches a key");
        let code =
            |r: Result<(), Status>| r.map_or_else(|s| format!("{:?}", s.code()), |_| "OK".into());
        let mut seen = Vec::new();
        seen.push(code(
            kv.put(with_token(with_lease("app/x"), Some(&alice)))
                .await
                .map(|_| ()),
        ));
        seen.push(code(
            lease_client::LeaseClient::new(ch.clone())
                .lease_revoke(with_token(LeaseRevokeRequest { id: lease }, Some(&alice)))
                .await
                .map(|_| ()),
        ));
        seen.push(code(
            kv.put(with_token(with_lease("other/z"), Some(&bob)))
                .await
                .map(|_| ()),
        ));
        let txn = TxnRequest {
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(with_lease("app/y"))),
            }],
            ..Default::default()
        };
        seen.push(code(
            kv.txn(with_token(txn, Some(&alice))).await.map(|_| ()),
        ));
        answers.push(seen);
    }
    assert_eq!(
        answers[1],
        vec![
            "PermissionDenied",
            "PermissionDenied",
            "OK",
            "PermissionDenied"
        ],
        "oxcd"
    );
    // etcd 3.4 checks a Txn's puts for the key only, so a Txn could attach a key to the
    // lease where a Put could not; oxcd refuses both.
    assert_eq!(answers[0][..3], answers[1][..3], "etcd answered otherwise");
}
