//! `tls`: what mutual TLS on client and peer URLs costs. Each product runs a cluster over
//! plain TCP and one over mutual TLS (the same certificates for both), under the same put
//! load; the figures are each product's throughput and its TLS/plain ratio.

use crate::load::{self, LoadSpec, Op};
use crate::servers::{print_rows, start_with, Row};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use std::path::Path;

/// A CA and one certificate (server and client use, for 127.0.0.1) signed by it.
fn make_certificates(dir: &Path) -> Result<(), String> {
    let e = |e: rcgen::Error| e.to_string();
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "oxcd-bench-ca");
    let ca_key = KeyPair::generate().map_err(e)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(e)?;
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .map_err(e)?;
    leaf.distinguished_name.push(DnType::CommonName, "root");
    leaf.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().map_err(e)?;
    let cert = leaf.signed_by(&key, &issuer).map_err(e)?;
    let write = |name: &str, text: String| {
        std::fs::write(dir.join(name), text).map_err(|e| format!("{name}: {e}"))
    };
    write("ca.pem", ca_cert.pem())?;
    write("cert.pem", cert.pem())?;
    write("key.pem", key.serialize_pem())
}

/// Certificates in `dir` for mutual TLS on client and peer URLs: the flags both products
/// take, and the bench's own client identity set for https endpoints.
pub(crate) fn mutual_tls(dir: &Path) -> Result<Vec<String>, String> {
    make_certificates(dir)?;
    let file = |n: &str| dir.join(n).display().to_string();
    let _ = load::CLIENT_TLS.set(oxcd_client::ClientTls {
        ca_file: Some(dir.join("ca.pem")),
        cert_file: Some(dir.join("cert.pem")),
        key_file: Some(dir.join("key.pem")),
        skip_verify: false,
    });
    Ok(vec![
        format!("--cert-file={}", file("cert.pem")),
        format!("--key-file={}", file("key.pem")),
        format!("--trusted-ca-file={}", file("ca.pem")),
        "--client-cert-auth".to_string(),
        format!("--peer-cert-file={}", file("cert.pem")),
        format!("--peer-key-file={}", file("key.pem")),
        format!("--peer-trusted-ca-file={}", file("ca.pem")),
        "--peer-client-cert-auth".to_string(),
    ])
}

pub async fn compare(oxcd: &str, etcd: &str, members: usize, total: usize) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let flags = mutual_tls(dir.path())?;
    let mut throughput = Vec::new();
    for (name, program) in [("oxcd", oxcd), ("etcd", etcd)] {
        let mut per_mode = Vec::new();
        for (scheme, extra) in [("http", &[][..]), ("https", &flags[..])] {
            let cluster = start_with(name, program, members, scheme, extra).await?;
            let spec = LoadSpec {
                endpoint: cluster
                    .members
                    .iter()
                    .map(|m| m.endpoint.clone())
                    .collect::<Vec<_>>()
                    .join(","),
                conns: 8,
                clients: 64,
                total,
                op: Op::Put {
                    key_size: 8,
                    val_size: 256,
                    key_space_size: 0,
                    prefix: "t-".into(),
                },
            };
            let report = load::run(&spec).await?;
            if report.errors > 0 {
                return Err(format!("{name} over {scheme}: {} errors", report.errors));
            }
            per_mode.push(report.throughput());
        }
        throughput.push(per_mode);
    }
    let rows = vec![
        Row {
            name: "put 64 clients, plain".into(),
            unit: "req/s",
            oxcd: throughput[0][0],
            etcd: throughput[1][0],
            higher_is_better: true,
        },
        Row {
            name: "put 64 clients, mutual TLS".into(),
            unit: "req/s",
            oxcd: throughput[0][1],
            etcd: throughput[1][1],
            higher_is_better: true,
        },
        Row {
            name: "mutual TLS / plain".into(),
            unit: "ratio",
            oxcd: throughput[0][1] / throughput[0][0],
            etcd: throughput[1][1] / throughput[1][0],
            higher_is_better: true,
        },
    ];
    println!("{members}-member clusters, 64 clients over 8 connections, 256-byte values");
    print_rows("oxcd", "etcd", rows);
    Ok(())
}
