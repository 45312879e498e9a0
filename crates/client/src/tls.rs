//! What a TLS client presents and trusts, and the PEM files it reads them from.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn read_err(path: &Path, e: impl std::fmt::Display) -> String {
    format!("{}: {e}", path.display())
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| read_err(path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| read_err(path, e))?;
    if certs.is_empty() {
        return Err(read_err(path, "no certificate found"));
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| read_err(path, e))
}

/// The trusted CA file: rustls's store, and the certificates as given.
pub fn load_roots(path: &Path) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), String> {
    let certs = load_certs(path)?;
    let mut roots = RootCertStore::empty();
    for cert in &certs {
        roots.add(cert.clone()).map_err(|e| read_err(path, e))?;
    }
    Ok((roots, certs))
}

/// The extended key usage a certificate needs for the side it authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Server,
    Client,
}

/// Go's verifier takes a certificate that is itself one of the trusted roots as the whole
/// chain, even a CA certificate, where webpki refuses a CA as an end entity. etcd's test
/// fixtures and many small deployments use one self-signed certificate as CA, server and
/// client certificate. Only that case is added: the very bytes of a trusted root, within its
/// validity, made for `purpose` (or any, or with no extended key usage, as Go checks), and
/// valid for the server's name when one is given.
pub fn trusted_as_its_own_root(
    roots: &[CertificateDer<'_>],
    leaf: &CertificateDer<'_>,
    now: UnixTime,
    purpose: Purpose,
    name: Option<&ServerName<'_>>,
) -> bool {
    if !roots.iter().any(|root| root.as_ref() == leaf.as_ref()) {
        return false;
    }
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf) else {
        return false;
    };
    let in_validity = i64::try_from(now.as_secs())
        .ok()
        .and_then(|secs| x509_parser::time::ASN1Time::from_timestamp(secs).ok())
        .is_some_and(|at| cert.validity().is_valid_at(at));
    let for_purpose = match cert.extended_key_usage() {
        Ok(None) => true,
        Ok(Some(eku)) => {
            eku.value.any
                || match purpose {
                    Purpose::Server => eku.value.server_auth,
                    Purpose::Client => eku.value.client_auth,
                }
        }
        Err(_) => false,
    };
    let for_name = name.is_none_or(|name| {
        webpki::EndEntityCert::try_from(leaf)
            .is_ok_and(|ee| ee.verify_is_valid_for_subject_name(name).is_ok())
    });
    in_validity && for_purpose && for_name
}

/// Whether a certificate is valid for `name` (a DNS name against its DNS SANs, an IP address
/// against its IP SANs; never its CN), as Go's `VerifyHostname` decides.
pub fn valid_for_name(cert: &CertificateDer<'_>, name: &str) -> bool {
    let Ok(name) = ServerName::try_from(name) else {
        return false;
    };
    webpki::EndEntityCert::try_from(cert)
        .is_ok_and(|ee| ee.verify_is_valid_for_subject_name(&name).is_ok())
}

/// rustls's verifier, and Go's one addition (`trusted_as_its_own_root`).
#[derive(Debug)]
struct GoServerVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    roots: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for GoServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .or_else(|e| {
                if trusted_as_its_own_root(
                    &self.roots,
                    end_entity,
                    now,
                    Purpose::Server,
                    Some(server_name),
                ) {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(e)
                }
            })
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// Accepts any server certificate (`--insecure-skip-tls-verify`, and peers under
/// `--peer-auto-tls`, as etcd does), still checking the handshake's signatures.
#[derive(Debug)]
struct SkipVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What a TLS client presents and trusts.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub skip_verify: bool,
}

pub fn client_config(t: &ClientTls) -> Result<Arc<ClientConfig>, String> {
    client_config_with(t, provider())
}

/// `client_config` with a provider of one's own (a member's `--cipher-suites`).
pub fn client_config_with(
    t: &ClientTls,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<ClientConfig>, String> {
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if t.skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SkipVerify(provider)))
    } else if let Some(ca) = &t.ca_file {
        let (store, roots) = load_roots(ca)?;
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider)
            .build()
            .map_err(|e| read_err(ca, e))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(GoServerVerifier { webpki, roots }))
    } else {
        builder.with_root_certificates(RootCertStore::empty())
    };
    let mut config = match (&t.cert_file, &t.key_file) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| format!("{}: {e}", cert.display()))?,
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("a client certificate needs both a cert and a key file".into()),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};
    use time::{Duration, OffsetDateTime};

    fn self_signed_ca(
        hosts: &[&str],
        eku: Vec<ExtendedKeyUsagePurpose>,
        expired: bool,
    ) -> CertificateDer<'static> {
        let mut params =
            CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
                .expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.extended_key_usages = eku;
        let now = OffsetDateTime::now_utc();
        (params.not_before, params.not_after) = if expired {
            (now - Duration::days(10), now - Duration::days(1))
        } else {
            (now - Duration::days(1), now + Duration::days(1))
        };
        let key = KeyPair::generate().expect("key");
        params.self_signed(&key).expect("sign").der().clone()
    }

    #[test]
    fn a_trusted_root_is_its_own_leaf_only_when_go_would_take_it() {
        use ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
        let now = UnixTime::now();
        let name = ServerName::try_from("127.0.0.1").expect("name");
        let other_name = ServerName::try_from("example.invalid").expect("name");
        let both = self_signed_ca(&["127.0.0.1"], vec![ServerAuth, ClientAuth], false);
        let no_eku = self_signed_ca(&["127.0.0.1"], vec![], false);
        let client_only = self_signed_ca(&["127.0.0.1"], vec![ClientAuth], false);
        let expired = self_signed_ca(&["127.0.0.1"], vec![ServerAuth, ClientAuth], true);
        let stranger = self_signed_ca(&["127.0.0.1"], vec![ServerAuth, ClientAuth], false);
        let roots = vec![
            both.clone(),
            no_eku.clone(),
            client_only.clone(),
            expired.clone(),
        ];
        let takes = |leaf: &CertificateDer<'_>, purpose, name| {
            trusted_as_its_own_root(&roots, leaf, now, purpose, name)
        };
        assert!(takes(&both, Purpose::Server, Some(&name)));
        assert!(takes(&both, Purpose::Client, None));
        assert!(takes(&no_eku, Purpose::Server, Some(&name)));
        assert!(takes(&client_only, Purpose::Client, None));
        assert!(
            !takes(&client_only, Purpose::Server, Some(&name)),
            "wrong purpose"
        );
        assert!(
            !takes(&both, Purpose::Server, Some(&other_name)),
            "wrong name"
        );
        assert!(!takes(&expired, Purpose::Client, None), "expired");
        assert!(
            !takes(&stranger, Purpose::Client, None),
            "not a trusted root"
        );
    }
}
