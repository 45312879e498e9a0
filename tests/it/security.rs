//! Security: mutual TLS on client and peer URLs (certificates made here), and etcd's auth
//! model checked RPC by RPC, with oxcdctl, the real etcdctl and real etcd as the oracle.

use futures::StreamExt;
use oxcd_api::authpb::{permission::Type as PermType, Permission};
use oxcd_api::etcdserverpb::*;
use oxcd_tests::certs::Pki;
use oxcd_tests::cluster::{Cluster, Spec};
use oxcd_tests::{bin, run_tool, run_tool_env, system_bin, Kind, Server};
use std::path::Path;
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

fn tool(program: &Path, endpoint: &str, flags: &[String], args: &[&str]) -> (String, String, i32) {
    let mut a = vec![
        format!("--endpoints={endpoint}"),
        "--dial-timeout=2s".into(),
        "--command-timeout=5s".into(),
    ];
    a.extend(flags.iter().cloned());
    a.extend(args.iter().map(|s| s.to_string()));
    run_tool(program, &a, None)
}

/// Runs `args` until it exits 0, within 30 s.
fn until_ok(program: &Path, endpoint: &str, flags: &[String], args: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (out, err, code) = tool(program, endpoint, flags, args);
        if code == 0 {
            return out;
        }
        assert!(Instant::now() < deadline, "{args:?} kept failing: {err}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_clients_without_a_trusted_certificate_and_reloads_rotated_files() {
    let pki = Pki::new();
    // The server trusts a copy of the CA, so the test can rotate it under the server.
    std::fs::copy(pki.path("ca.pem"), pki.path("trust.pem")).expect("copy ca");
    let flags = [
        format!("--cert-file={}", pki.arg("server.pem")),
        format!("--key-file={}", pki.arg("server-key.pem")),
        format!("--trusted-ca-file={}", pki.arg("trust.pem")),
        "--client-cert-auth".to_string(),
    ];
    let flag_refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = Server::start_tls(Kind::Oxcd, &flag_refs, pki.client(Some("root")));
    let ep = server.url();
    let (oxcdctl, etcdctl) = (bin("oxcdctl"), system_bin("etcdctl"));
    let root = pki.ctl_flags("root");
    until_ok(&oxcdctl, &ep, &root, &["put", "k", "v"]);
    for program in [&oxcdctl, &etcdctl] {
        let (out, err, code) = tool(program, &ep, &root, &["get", "k"]);
        assert_eq!((out.as_str(), code), ("k\nv\n", 0), "{program:?}: {err}");
        // Without a client certificate, with one from another CA, with an expired one: the
        // handshake fails and nothing is read.
        let ca_only = vec![format!("--cacert={}", pki.arg("ca.pem"))];
        for (what, flags) in [
            ("no client certificate", ca_only),
            ("foreign CA", pki.ctl_flags("foreign")),
            ("expired", pki.ctl_flags("expired")),
        ] {
            let (out, _, code) = tool(program, &ep, &flags, &["get", "k"]);
            assert_ne!(code, 0, "{program:?} with {what} got through: {out}");
            assert!(!out.contains('v'), "{what}: {out}");
        }
        // The client checks the server too: without the CA it refuses, unless told not to.
        let no_ca = vec![
            format!("--cert={}", pki.arg("root.pem")),
            format!("--key={}", pki.arg("root-key.pem")),
        ];
        let (_, _, code) = tool(program, &ep, &no_ca, &["get", "k"]);
        assert_ne!(code, 0, "{program:?} trusted an unknown server CA");
        let mut skip = no_ca.clone();
        skip.push("--insecure-skip-tls-verify".into());
        let (out, err, code) = tool(program, &ep, &skip, &["get", "k"]);
        assert_eq!((out.as_str(), code), ("k\nv\n", 0), "{program:?}: {err}");
    }
    // ETCDCTL_CACERT / ETCDCTL_CERT / ETCDCTL_KEY configure oxcdctl as they do etcdctl.
    let (ca, cert, key) = (
        pki.arg("ca.pem"),
        pki.arg("root.pem"),
        pki.arg("root-key.pem"),
    );
    let env = [
        ("ETCDCTL_CACERT", ca.as_str()),
        ("ETCDCTL_CERT", cert.as_str()),
        ("ETCDCTL_KEY", key.as_str()),
    ];
    let (out, err, code) = run_tool_env(
        &oxcdctl,
        &[format!("--endpoints={ep}"), "get".into(), "k".into()],
        None,
        &env,
    );
    assert_eq!((out.as_str(), code), ("k\nv\n", 0), "{err}");

    // With --client-cert-auth and no token, the certificate's CN is the user: root.pem acts
    // as root, alice.pem as alice (who holds no role).
    for step in [
        &["user", "add", "root:rootpw"][..],
        &["user", "add", "alice:alicepw"],
        &["auth", "enable"],
    ] {
        let (out, err, code) = tool(&oxcdctl, &ep, &root, step);
        assert_eq!(code, 0, "{step:?}: {out}{err}");
    }
    let (out, err, code) = tool(&etcdctl, &ep, &root, &["get", "k"]);
    assert_eq!((out.as_str(), code), ("k\nv\n", 0), "{err}");
    let (out, err, code) = tool(&etcdctl, &ep, &pki.ctl_flags("alice"), &["get", "k"]);
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("etcdserver: permission denied"), "{err}");
    let (_, err, code) = tool(&oxcdctl, &ep, &root, &["auth", "disable"]);
    assert_eq!(code, 0, "{err}");

    // Rotation without restart: the trusted CA file now holds the other CA, so certificates
    // of the other CA get in and those of the first no longer do.
    std::fs::copy(pki.path("other-ca.pem"), pki.path("trust.pem")).expect("rotate ca");
    let foreign = {
        let mut f = pki.ctl_flags("foreign");
        f[0] = format!("--cacert={}", pki.arg("ca.pem"));
        f
    };
    until_ok(&oxcdctl, &ep, &foreign, &["get", "k"]);
    let (_, _, code) = tool(&oxcdctl, &ep, &root, &["get", "k"]);
    assert_ne!(code, 0, "a certificate of the rotated-out CA still got in");
    assert!(
        server.log().contains("reloaded TLS certificates"),
        "{}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_tls_serves_https_with_a_self_signed_certificate() {
    let server = Server::start_tls(
        Kind::Oxcd,
        &["--auto-tls"],
        oxcd_client::ClientTls {
            skip_verify: true,
            ..Default::default()
        },
    );
    let ep = server.url();
    // oxcdctl skips verification; etcdctl 3.4 applies --insecure-skip-tls-verify only with
    // another TLS flag, so it trusts the self-signed certificate itself instead.
    let skip = vec!["--insecure-skip-tls-verify".to_string()];
    until_ok(&bin("oxcdctl"), &ep, &skip, &["put", "a", "1"]);
    let own = server.data_dir.join("fixtures/client/cert.pem");
    let trust = vec![format!("--cacert={}", own.display())];
    let (out, err, code) = tool(&system_bin("etcdctl"), &ep, &trust, &["get", "a"]);
    assert_eq!((out.as_str(), code), ("a\n1\n", 0), "{err}");
    // Without either, the self-signed certificate is not trusted.
    for program in [bin("oxcdctl"), system_bin("etcdctl")] {
        let (out, _, code) = tool(&program, &ep, &[], &["get", "a"]);
        assert_ne!(
            code, 0,
            "{program:?} trusted a self-signed certificate: {out}"
        );
    }
    assert!(server.data_dir.join("fixtures/client/cert.pem").exists());
}

fn with_token<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut r = Request::new(message);
    if let Some(t) = token {
        r.metadata_mut()
            .insert("token", t.parse().expect("token metadata"));
    }
    r
}

type Call = fn(Channel, Option<String>) -> futures::future::BoxFuture<'static, Result<(), Status>>;

/// Each RPC under test, and who may make it. Key RPCs touch app/, which alice may read and
/// write; admin RPCs need the root role.
fn rpc_table() -> Vec<(&'static str, Call, &'static [&'static str])> {
    use futures::FutureExt;
    const KEYS: &[&str] = &["alice", "root"];
    const ADMIN: &[&str] = &["root"];
    vec![
        (
            "Range",
            |ch, t| {
                async move {
                    kv_client::KvClient::new(ch)
                        .range(with_token(
                            RangeRequest {
                                key: b"app/a".to_vec(),
                                ..Default::default()
                            },
                            t.as_deref(),
                        ))
                        .await
                        .map(drop)
                }
                .boxed()
            },
            KEYS,
        ),
        (
            "Range whole keyspace",
            |ch, t| {
                async move {
                    kv_client::KvClient::new(ch)
                        .range(with_token(
                            RangeRequest {
                                key: vec![0],
                                range_end: vec![0],
                                ..Default::default()
                            },
                            t.as_deref(),
                        ))
                        .await
                        .map(drop)
                }
                .boxed()
            },
            ADMIN,
        ),
        (
            "Put",
            |ch, t| {
                async move {
                    kv_client::KvClient::new(ch)
                        .put(with_token(
                            PutRequest {
                                key: b"app/a".to_vec(),
                                value: b"v".to_vec(),
                                ..Default::default()
                            },
                            t.as_deref(),
                        ))
                        .await
                        .map(drop)
                }
                .boxed()
            },
            KEYS,
        ),
        (
            "DeleteRange",
            |ch, t| {
                async move {
                    kv_client::KvClient::new(ch)
                        .delete_range(with_token(
                            DeleteRangeRequest {
                                key: b"app/gone".to_vec(),
                                ..Default::default()
                            },
                            t.as_deref(),
                        ))
                        .await
                        .map(drop)
                }
                .boxed()
            },
            KEYS,
        ),
        (
            "Txn",
            |ch, t| {
                async move {
                    let put = RequestOp::from(PutRequest {
                        key: b"app/t".to_vec(),
                        value: b"1".to_vec(),
                        ..Default::default()
                    });
                    let cmp = Compare {
                        key: b"app/a".to_vec(),
                        target: compare::CompareTarget::Version as i32,
                        ..Default::default()
                    };
                    kv_client::KvClient::new(ch)
                        .txn(with_token(
                            TxnRequest {
                                compare: vec![cmp],
                                success: vec![put],
                                ..Default::default()
                            },
                            t.as_deref(),
                        ))
                        .await
                        .map(drop)
                }
                .boxed()
            },
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
            |ch, t| {
                async move {
                    lease_client::LeaseClient::new(ch)
                        .lease_grant(with_token(
                            LeaseGrantRequest { ttl: 60, id: 0 },
                            t.as_deref(),
                        ))
                        .await
                        .map(drop)
                }
                .boxed()
            },
            &["bob", "alice", "root"],
        ),
        (
            "Status",
            |ch, t| {
                async move {
                    maintenance_client::MaintenanceClient::new(ch)
                        .status(with_token(StatusRequest {}, t.as_deref()))
                        .await
                        .map(drop)
                }
                .boxed()
            },
            ADMIN,
        ),
        (
            "HashKV",
            |ch, t| {
                async move {
                    maintenance_client::MaintenanceClient::new(ch)
                        .hash_kv(with_token(HashKvRequest { revision: 0 }, t.as_deref()))
                        .await
                        .map(drop)
                }
                .boxed()
            },
            ADMIN,
        ),
        (
            "Alarm",
            |ch, t| {
                async move {
                    maintenance_client::MaintenanceClient::new(ch)
                        .alarm(with_token(AlarmRequest::default(), t.as_deref()))
                        .await
                        .map(drop)
                }
                .boxed()
            },
            ADMIN,
        ),
        (
            "Defragment",
            |ch, t| {
                async move {
                    maintenance_client::MaintenanceClient::new(ch)
                        .defragment(with_token(DefragmentRequest {}, t.as_deref()))
                        .await
                        .map(drop)
                }
                .boxed()
            },
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
            |ch, t| {
                async move {
                    auth_client::AuthClient::new(ch)
                        .user_list(with_token(AuthUserListRequest {}, t.as_deref()))
                        .await
                        .map(drop)
                }
                .boxed()
            },
            ADMIN,
        ),
        (
            "RoleGet app",
            |ch, t| {
                async move {
                    auth_client::AuthClient::new(ch)
                        .role_get(with_token(
                            AuthRoleGetRequest { role: "app".into() },
                            t.as_deref(),
                        ))
                        .await
                        .map(drop)
                }
                .boxed()
            },
            KEYS,
        ),
        (
            "UserAdd",
            |ch, t| {
                async move {
                    let name = format!("u{}", rand::random::<u32>());
                    auth_client::AuthClient::new(ch)
                        .user_add(with_token(
                            AuthUserAddRequest {
                                name,
                                password: "p".into(),
                                ..Default::default()
                            },
                            t.as_deref(),
                        ))
                        .await
                        .map(drop)
                }
                .boxed()
            },
            ADMIN,
        ),
    ]
}

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
        .put(with_token(
            PutRequest {
                key: b"app/a".to_vec(),
                value: b"late".to_vec(),
                ..Default::default()
            },
            alice.as_deref(),
        ))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_cluster_runs_the_seed_runbook_and_refuses_a_foreign_peer() {
    let pki = Pki::new();
    let mut c = Cluster::start(Spec {
        size: 3,
        proxies: false,
        flags: pki.server_flags(true),
        tls: Some(pki.client(Some("root"))),
    })
    .await;
    let eps = c.endpoints();
    let root = pki.ctl_flags("root");
    let dir = tempfile::tempdir().expect("tempdir");
    for (n, program) in [bin("oxcdctl"), system_bin("etcdctl")]
        .into_iter()
        .enumerate()
    {
        let (out, err, code) = tool(&program, &eps, &root, &["endpoint", "health"]);
        assert_eq!(code, 0, "{program:?}: {out}{err}");
        assert_eq!(
            out.matches("is healthy").count() + err.matches("is healthy").count(),
            3,
            "{out}{err}"
        );
        let (out, _, code) = tool(&program, &eps, &root, &["member", "list"]);
        assert_eq!((out.lines().count(), code), (3, 0), "{out}");
        assert!(out.contains("https://"), "{out}");
        let (_, err, code) = tool(&program, &eps, &root, &["put", "/registry/a", "1"]);
        assert_eq!(code, 0, "{err}");
        let (out, _, code) = tool(
            &program,
            &eps,
            &root,
            &["get", "/", "--prefix", "--keys-only"],
        );
        assert_eq!((out.as_str(), code), ("/registry/a\n\n", 0));
        let file = dir.path().join(format!("backup-{n}.db"));
        let (out, err, code) = tool(
            &program,
            &c.url(0),
            &root,
            &["snapshot", "save", &file.display().to_string()],
        );
        assert_eq!(code, 0, "{program:?}: {out}{err}");
        assert!(out.contains("Snapshot saved at"), "{out}");
    }

    // A member whose peer certificate comes from another CA cannot join or speak raft.
    let good_flags = c.flags.clone();
    c.flags = good_flags
        .iter()
        .map(|f| {
            f.replace("server.pem", "foreign.pem")
                .replace("server-key.pem", "foreign-key.pem")
        })
        .collect();
    let intruder = c.add_member(0, true).await;
    c.flags = good_flags;
    assert!(
        c.members[0]
            .server
            .wait_for_log("rejected connection", Duration::from_secs(20))
            .await,
        "the foreign peer was not refused at the handshake"
    );
    let members = tool(&bin("oxcdctl"), &eps, &root, &["member", "list"]).0;
    let line = members
        .lines()
        .find(|l| l.contains("unstarted"))
        .unwrap_or_default();
    assert!(line.contains("true"), "the intruder started: {members}");
    // And the runbook's member remove (by hex ID) takes it out again.
    let id = line
        .split(',')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let (out, err, code) = tool(
        &system_bin("etcdctl"),
        &eps,
        &root,
        &["member", "remove", &id],
    );
    assert_eq!(code, 0, "{out}{err}");
    // etcdctl pads the hex ID to 16 columns (`%16x`): IDs below 2^60 start with a space.
    assert!(out.contains(&format!("Member {id:>16} removed")), "{out}");
    c.members[intruder].server.kill9();
}
