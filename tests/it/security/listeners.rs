//! etcd's listener flags, each against real etcd as the oracle: --cipher-suites,
//! --client-cert-allowed-hostname and --host-whitelist.

use super::{tool, until_ok};
use oxcd_tests::certs::Pki;
use oxcd_tests::http::request;
use oxcd_tests::{bin, system_bin, Kind, Server};
use std::process::{Command, Stdio};

/// Whether `openssl s_client` completes a handshake with `args` (a version and a suite).
fn handshake(endpoint: &str, args: &[&str]) -> bool {
    Command::new("openssl")
        .args(["s_client", "-connect", endpoint, "-servername", "localhost"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cipher_suites_limit_tls12_handshakes_and_leave_tls13_alone_as_in_etcd() {
    let pki = Pki::new();
    // The test certificates carry ECDSA keys.
    let flags = [
        format!("--cert-file={}", pki.arg("server.pem")),
        format!("--key-file={}", pki.arg("server-key.pem")),
        "--cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".to_string(),
    ];
    let flag_refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    let ca = vec![format!("--cacert={}", pki.arg("ca.pem"))];
    for kind in [Kind::Oxcd, Kind::Etcd] {
        let server = Server::start_tls(kind, &flag_refs, pki.client(None));
        until_ok(&bin("oxcdctl"), &server.url(), &ca, &["put", "k", "v"]).await;
        let ep = server.endpoint();
        let listed = ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"];
        let unlisted = ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"];
        assert!(handshake(&ep, &listed), "{kind:?} refused the listed suite");
        assert!(
            !handshake(&ep, &unlisted),
            "{kind:?} took a suite --cipher-suites leaves out"
        );
        assert!(handshake(&ep, &["-tls1_3"]), "{kind:?} refused TLS 1.3");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_cert_allowed_hostname_admits_only_certificates_for_that_name_as_in_etcd() {
    let pki = Pki::new();
    pki.issue(
        "named",
        "carol",
        &["allowed.example".to_string()],
        false,
        false,
    );
    let mut flags = pki.server_flags(false);
    flags.push("--client-cert-allowed-hostname=allowed.example".to_string());
    let flag_refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    for kind in [Kind::Oxcd, Kind::Etcd] {
        let server = Server::start_tls(kind, &flag_refs, pki.client(Some("named")));
        let ep = server.url();
        until_ok(
            &bin("oxcdctl"),
            &ep,
            &pki.ctl_flags("named"),
            &["put", "k", "v"],
        )
        .await;
        for program in [bin("oxcdctl"), system_bin("etcdctl")] {
            let (out, err, code) = tool(&program, &ep, &pki.ctl_flags("named"), &["get", "k"]);
            assert_eq!(
                (out.as_str(), code),
                ("k\nv\n", 0),
                "{kind:?} {program:?}: {err}"
            );
            // root.pem has no names; server.pem is for localhost and loopback addresses.
            for other in ["root", "server"] {
                let (out, _, code) = tool(&program, &ep, &pki.ctl_flags(other), &["get", "k"]);
                assert_ne!(
                    code, 0,
                    "{kind:?} let {program:?} in with {other}.pem: {out}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_whitelist_refuses_unlisted_hosts_over_plain_http_as_etcd_does() {
    let mut replies = Vec::new();
    for kind in [Kind::Oxcd, Kind::Etcd] {
        let server = Server::start(kind, &["--host-whitelist=good.example,other.example"]);
        let ep = server.url();
        // gRPC is not checked: etcdctl reaches the server by its address.
        until_ok(&bin("oxcdctl"), &ep, &[], &["put", "k", "v"]).await;
        let ask =
            |host: &str| request(&server.endpoint(), "GET", "/version", "", &[("Host", host)]);
        let good = ask("good.example:2379");
        assert_eq!(good.status, 200, "{kind:?}: {}", good.body);
        let bad = ask("evil.example:2379");
        assert_eq!(bad.status, 421, "{kind:?}: {}", bad.body);
        assert!(
            bad.body.contains("etcd --host-whitelist \"evil.example\""),
            "{kind:?}: {}",
            bad.body
        );
        replies.push((bad.status, bad.body, ask("other.example").status));
    }
    assert_eq!(replies[0], replies[1], "oxcd's refusal differs from etcd's");
}
