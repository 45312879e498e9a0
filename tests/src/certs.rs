//! Certificates for TLS tests, made with rcgen: a CA, a server certificate for every test
//! loopback address, client certificates (by CN), one expired, and one from a foreign CA.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use std::path::PathBuf;
use time::{Duration, OffsetDateTime};

pub struct Pki {
    pub dir: tempfile::TempDir,
    ca: Issuer<'static, KeyPair>,
    other_ca: Issuer<'static, KeyPair>,
}

fn new_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.not_before = OffsetDateTime::now_utc() - Duration::days(1);
    params.not_after = OffsetDateTime::now_utc() + Duration::days(30);
    let key = KeyPair::generate().expect("ca key");
    let cert = params.self_signed(&key).expect("ca cert");
    (cert.pem(), Issuer::new(params, key))
}

impl Pki {
    /// ca.pem, other-ca.pem, server.pem/-key (SANs localhost and 127.0.0.1..=127.0.0.30,
    /// server and client use), root.pem/-key, alice.pem/-key, expired.pem/-key and
    /// foreign.pem/-key (CN root, signed by the other CA).
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca_pem, ca) = new_ca("oxcd-test-ca");
        let (other_pem, other_ca) = new_ca("some-other-ca");
        std::fs::write(dir.path().join("ca.pem"), ca_pem).expect("write ca");
        std::fs::write(dir.path().join("other-ca.pem"), other_pem).expect("write ca");
        let pki = Pki { dir, ca, other_ca };
        let mut hosts = vec!["localhost".to_string()];
        hosts.extend((1..=30).map(|i| format!("127.0.0.{i}")));
        pki.issue("server", "server", &hosts, false, false);
        pki.issue("root", "root", &[], false, false);
        pki.issue("alice", "alice", &[], false, false);
        pki.issue("expired", "root", &[], true, false);
        pki.issue("foreign", "root", &hosts, false, true);
        pki
    }

    /// Writes NAME.pem and NAME-key.pem: a certificate with CN `cn` for `hosts`.
    pub fn issue(&self, name: &str, cn: &str, hosts: &[String], expired: bool, foreign: bool) {
        let params = leaf_params(cn, hosts, expired);
        let key = KeyPair::generate().expect("key");
        let issuer = if foreign { &self.other_ca } else { &self.ca };
        let cert = params.signed_by(&key, issuer).expect("sign");
        self.write_pair(name, &cert, &key);
    }

    /// Writes NAME.pem and NAME-key.pem: a self-signed CA certificate for `hosts` (server and
    /// client use), the kind etcd's fixtures use as CA, server and client certificate at once.
    pub fn self_signed_ca(&self, name: &str, hosts: &[String], expired: bool) {
        let mut params = leaf_params(name, hosts, expired);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("self-sign");
        self.write_pair(name, &cert, &key);
    }

    fn write_pair(&self, name: &str, cert: &rcgen::Certificate, key: &KeyPair) {
        std::fs::write(self.path(&format!("{name}.pem")), cert.pem()).expect("write cert");
        std::fs::write(self.path(&format!("{name}-key.pem")), key.serialize_pem())
            .expect("write key");
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    pub fn arg(&self, file: &str) -> String {
        self.path(file).display().to_string()
    }

    /// A client's TLS settings: trust the test CA, present NAME.pem.
    pub fn client(&self, name: Option<&str>) -> oxcd_client::ClientTls {
        oxcd_client::ClientTls {
            ca_file: Some(self.path("ca.pem")),
            cert_file: name.map(|n| self.path(&format!("{n}.pem"))),
            key_file: name.map(|n| self.path(&format!("{n}-key.pem"))),
            skip_verify: false,
        }
    }

    /// The server flags for mutual TLS on client (and with `peer`, peer) URLs.
    pub fn server_flags(&self, peer: bool) -> Vec<String> {
        let mut v = vec![
            format!("--cert-file={}", self.arg("server.pem")),
            format!("--key-file={}", self.arg("server-key.pem")),
            format!("--trusted-ca-file={}", self.arg("ca.pem")),
            "--client-cert-auth".to_string(),
        ];
        if peer {
            v.extend([
                format!("--peer-cert-file={}", self.arg("server.pem")),
                format!("--peer-key-file={}", self.arg("server-key.pem")),
                format!("--peer-trusted-ca-file={}", self.arg("ca.pem")),
                "--peer-client-cert-auth".to_string(),
            ]);
        }
        v
    }

    /// etcdctl's TLS flags for client NAME.
    pub fn ctl_flags(&self, name: &str) -> Vec<String> {
        vec![
            format!("--cacert={}", self.arg("ca.pem")),
            format!("--cert={}", self.arg(&format!("{name}.pem"))),
            format!("--key={}", self.arg(&format!("{name}-key.pem"))),
        ]
    }
}

/// A certificate with CN `cn` for `hosts`, for server and client use, valid for a month
/// from yesterday, or expired since yesterday.
fn leaf_params(cn: &str, hosts: &[String], expired: bool) -> CertificateParams {
    let mut params = CertificateParams::new(hosts.to_vec()).expect("params");
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let now = OffsetDateTime::now_utc();
    (params.not_before, params.not_after) = if expired {
        (now - Duration::days(10), now - Duration::days(1))
    } else {
        (now - Duration::days(1), now + Duration::days(30))
    };
    params
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}
