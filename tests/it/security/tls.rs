//! Mutual TLS on the client URL: untrusted, foreign and expired certificates are refused,
//! the certificate's CN is the user, rotated files are reloaded; --auto-tls.

use super::{tool, until_ok};
use oxcd_tests::certs::Pki;
use oxcd_tests::{bin, run_tool_env, system_bin, Kind, Server};

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
    until_ok(&oxcdctl, &ep, &root, &["put", "k", "v"]).await;
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
    until_ok(&oxcdctl, &ep, &foreign, &["get", "k"]).await;
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
    until_ok(&bin("oxcdctl"), &ep, &skip, &["put", "a", "1"]).await;
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

/// A self-signed CA certificate given as the server's certificate, its trusted CA and the
/// client's certificate (etcd's fixtures do this): Go's verifier takes it, so etcd and
/// etcdctl work with it, and so must oxcd and oxcdctl. Nothing more: another self-signed CA,
/// or an expired one, even a trusted one, is refused, by both servers alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_ca_certificate_serves_as_its_own_server_and_client_certificate() {
    let pki = Pki::new();
    let mut hosts = vec!["localhost".to_string()];
    hosts.extend((1..=30).map(|i| format!("127.0.0.{i}")));
    pki.self_signed_ca("self", &hosts, false);
    pki.self_signed_ca("stranger", &hosts, false);
    pki.self_signed_ca("stale", &hosts, true);
    let trust = [pki.path("self.pem"), pki.path("stale.pem")]
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("read pem"))
        .collect::<String>();
    std::fs::write(pki.path("trust.pem"), trust).expect("write trust");
    let flags = [
        format!("--cert-file={}", pki.arg("self.pem")),
        format!("--key-file={}", pki.arg("self-key.pem")),
        format!("--trusted-ca-file={}", pki.arg("trust.pem")),
        "--client-cert-auth".to_string(),
    ];
    let flag_refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    let own = |name: &str| {
        vec![
            format!("--cacert={}", pki.arg("self.pem")),
            format!("--cert={}", pki.arg(&format!("{name}.pem"))),
            format!("--key={}", pki.arg(&format!("{name}-key.pem"))),
        ]
    };
    let client = oxcd_client::ClientTls {
        ca_file: Some(pki.path("self.pem")),
        cert_file: Some(pki.path("self.pem")),
        key_file: Some(pki.path("self-key.pem")),
        skip_verify: false,
    };
    for kind in [Kind::Oxcd, Kind::Etcd] {
        let server = Server::start_tls(kind, &flag_refs, client.clone());
        let ep = server.url();
        let (oxcdctl, etcdctl) = (bin("oxcdctl"), system_bin("etcdctl"));
        until_ok(&oxcdctl, &ep, &own("self"), &["put", "k", "v"]).await;
        for program in [&oxcdctl, &etcdctl] {
            let (out, err, code) = tool(program, &ep, &own("self"), &["get", "k"]);
            assert_eq!(
                (out.as_str(), code),
                ("k\nv\n", 0),
                "{kind:?} {program:?}: {err}"
            );
            for refused in ["stranger", "stale"] {
                let (out, _, code) = tool(program, &ep, &own(refused), &["get", "k"]);
                assert_ne!(
                    code, 0,
                    "{kind:?} let {program:?} in with {refused}.pem: {out}"
                );
            }
            // The client still checks the server: trusting another CA, it refuses.
            let mut wrong_ca = own("self");
            wrong_ca[0] = format!("--cacert={}", pki.arg("stranger.pem"));
            let (out, _, code) = tool(program, &ep, &wrong_ca, &["get", "k"]);
            assert_ne!(
                code, 0,
                "{program:?} trusted {kind:?} without its CA: {out}"
            );
        }
    }
}
