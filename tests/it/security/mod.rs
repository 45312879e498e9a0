//! Security: mutual TLS on client and peer URLs (certificates made here), and etcd's auth
//! model checked RPC by RPC, with oxcdctl, the real etcdctl and real etcd as the oracle.
//!
//! The TLS cluster test stays in this module: nextest runs `test(/^security::tls_cluster/)`
//! in its `heavy` group.

mod auth;
mod listeners;
mod rpcs;
mod tls;

use oxcd_tests::certs::Pki;
use oxcd_tests::cluster::{Cluster, Spec};
use oxcd_tests::wait::retry;
use oxcd_tests::{bin, ctl, system_bin};
use std::path::Path;
use std::time::Duration;

/// oxcdctl or etcdctl against `endpoint` with short dial and command timeouts and `flags`.
fn tool(program: &Path, endpoint: &str, flags: &[String], args: &[&str]) -> (String, String, i32) {
    let mut a = vec!["--dial-timeout=2s", "--command-timeout=5s"];
    a.extend(flags.iter().map(String::as_str));
    a.extend(args);
    ctl(program, endpoint, &a)
}

/// Runs `args` until it exits 0, within 30 s.
async fn until_ok(program: &Path, endpoint: &str, flags: &[String], args: &[&str]) -> String {
    let every = Duration::from_millis(100);
    retry(Duration::from_secs(30), every, || async {
        let (out, err, code) = tool(program, endpoint, flags, args);
        if code == 0 {
            Ok(out)
        } else {
            Err(err)
        }
    })
    .await
    .unwrap_or_else(|err| panic!("{args:?} kept failing: {err}"))
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

/// Under `--client-cert-auth` the user is the client certificate's CN. A follower forwards
/// lease keep-alives and time-to-lives to the leader after checking that user itself, so the
/// leader never answers as the forwarding member's certificate (CN "server", no user here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_cluster_lease_calls_through_a_follower_are_the_clients_own() {
    use oxcd_api::authpb::{permission::Type as PermType, Permission};
    use oxcd_api::etcdserverpb::auth_client::AuthClient;
    use oxcd_api::etcdserverpb::kv_client::KvClient;
    use oxcd_api::etcdserverpb::lease_client::LeaseClient;
    use oxcd_api::etcdserverpb::*;
    let pki = Pki::new();
    let c = Cluster::start(Spec {
        size: 3,
        proxies: false,
        flags: pki.server_flags(true),
        tls: Some(pki.client(Some("root"))),
    })
    .await;
    let leader = c.wait_leader(Duration::from_secs(20)).await;
    let follower = (leader + 1) % 3;
    let root_ch = c.patient_channel(leader).await;
    let mut auth = AuthClient::new(root_ch.clone());
    for (user, role, prefix) in [("root", "root", None), ("alice", "app", Some("app/"))] {
        auth.user_add(AuthUserAddRequest {
            name: user.into(),
            options: Some(oxcd_api::authpb::UserAddOptions { no_password: true }),
            ..Default::default()
        })
        .await
        .expect("user add");
        auth.role_add(AuthRoleAddRequest { name: role.into() })
            .await
            .expect("role add");
        if let Some(p) = prefix {
            auth.role_grant_permission(AuthRoleGrantPermissionRequest {
                name: role.into(),
                perm: Some(Permission {
                    perm_type: PermType::Readwrite as i32,
                    key: p.as_bytes().to_vec(),
                    range_end: oxcd_api::prefix_end(p.as_bytes()),
                }),
            })
            .await
            .expect("grant");
        }
        auth.user_grant_role(AuthUserGrantRoleRequest {
            user: user.into(),
            role: role.into(),
        })
        .await
        .expect("grant role");
    }
    auth.auth_enable(AuthEnableRequest {})
        .await
        .expect("enable");

    // Root's leases: one holding a key of alice's, one holding a key she may not read.
    let root_leases = LeaseClient::new(root_ch.clone());
    let root_kv = KvClient::new(root_ch);
    let lease_with = |key: &'static str| {
        let (mut leases, mut kv) = (root_leases.clone(), root_kv.clone());
        async move {
            let id = leases
                .lease_grant(LeaseGrantRequest { ttl: 60, id: 0 })
                .await
                .expect("grant")
                .into_inner()
                .id;
            let mut p = oxcd_tests::kv::put(key, "v");
            p.lease = id;
            kv.put(p).await.expect("put with lease");
            id
        }
    };
    let mine = lease_with("app/a").await;
    let secret = lease_with("secret/x").await;

    let alice_tls = oxcd_client::tls::client_config(&pki.client(Some("alice"))).expect("tls");
    let alice = oxcd_client::dial::channel(&c.url(follower), Some(alice_tls), None, |e| {
        e.timeout(Duration::from_secs(20))
    })
    .await
    .expect("alice dials the follower");
    let mut leases = LeaseClient::new(alice);
    let renewed = leases
        .lease_keep_alive(futures::stream::iter([LeaseKeepAliveRequest { id: mine }]))
        .await
        .expect("keep-alive stream")
        .into_inner()
        .message()
        .await;
    assert!(
        renewed
            .as_ref()
            .is_ok_and(|r| r.as_ref().is_some_and(|r| r.ttl > 0)),
        "alice's keep-alive through a follower: {renewed:?}"
    );
    let ttl = leases
        .lease_time_to_live(LeaseTimeToLiveRequest {
            id: mine,
            keys: true,
        })
        .await
        .expect("alice's time-to-live through a follower")
        .into_inner();
    assert_eq!(ttl.keys, vec![b"app/a".to_vec()]);
    let hidden = leases
        .lease_time_to_live(LeaseTimeToLiveRequest {
            id: secret,
            keys: true,
        })
        .await;
    assert_eq!(
        hidden.map(|_| ()).map_err(|s| s.code()),
        Err(tonic::Code::PermissionDenied),
        "a key alice may not read was named to her"
    );
}
