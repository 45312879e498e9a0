//! TLS for client and peer URLs (rustls), as etcd configures it: a certificate and key, an
//! optional CA whose signature client certificates must carry (`--client-cert-auth`), a CRL,
//! self-signed certificates for `--auto-tls`, and certificates reread from disk when their
//! files change, so they rotate without a restart. The client side (what oxcdctl and a member
//! dialing its peers present and trust) is oxcd-client's.

use oxcd_client::tls::{
    load_certs, load_key, load_roots, read_err, trusted_as_its_own_root, valid_for_name, ClientTls,
    Purpose,
};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, DistinguishedName, ServerConfig};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One side's TLS settings (client URLs or peer URLs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub trusted_ca_file: Option<PathBuf>,
    pub client_cert_auth: bool,
    pub crl_file: Option<PathBuf>,
    /// `--auto-tls`: a self-signed certificate made at start (cert and key files empty).
    pub auto_tls: bool,
    /// `--peer-cert-allowed-cn`: the CNs a peer's certificate may carry (any, when empty).
    pub allowed_cns: Vec<String>,
    /// `--client-cert-allowed-hostname` / `--peer-cert-allowed-hostname`: the names a
    /// client's certificate may be valid for (any, when empty).
    pub allowed_hostnames: Vec<String>,
    /// `--cipher-suites`, as Go names them (rustls's defaults when empty).
    pub cipher_suites: Vec<String>,
    /// The lowest and highest TLS versions: 12 or 13.
    pub min_version: u8,
    pub max_version: u8,
}

/// `--tls-min-version` / `--tls-max-version` as etcd names them. rustls speaks TLS 1.2 and
/// 1.3 only, so TLS1.0 and TLS1.1 as a minimum mean 1.2.
pub fn parse_version(text: &str, default: u8) -> Result<u8, String> {
    match text {
        "" => Ok(default),
        "TLS1.0" | "TLS1.1" | "TLS1.2" => Ok(12),
        "TLS1.3" => Ok(13),
        other => Err(format!("unknown TLS version: {other}")),
    }
}

fn versions(min: u8, max: u8) -> Vec<&'static rustls::SupportedProtocolVersion> {
    let mut v = Vec::new();
    if min <= 12 && max >= 12 {
        v.push(&rustls::version::TLS12);
    }
    if max >= 13 {
        v.push(&rustls::version::TLS13);
    }
    v
}

/// `--cipher-suites`: Go's names for the TLS 1.2 suites rustls speaks, and etcd's two short
/// ChaCha20 aliases. Go does not let TLS 1.3 suites be chosen and neither do we: their names
/// are taken and change nothing. A suite Go knows but rustls lacks (CBC, RC4, 3DES, RSA key
/// exchange) cannot be honoured, so it is refused rather than dropped.
pub fn cipher_suites(names: &[String]) -> Result<Vec<rustls::SupportedCipherSuite>, String> {
    use rustls::crypto::ring::cipher_suite as rs;
    const UNSUPPORTED: &[&str] = &[
        "TLS_RSA_WITH_RC4_128_SHA",
        "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
        "TLS_RSA_WITH_AES_128_CBC_SHA",
        "TLS_RSA_WITH_AES_256_CBC_SHA",
        "TLS_RSA_WITH_AES_128_CBC_SHA256",
        "TLS_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
        "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
        "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    ];
    let mut suites = Vec::new();
    for name in names {
        let suite = match name.as_str() {
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => rs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => rs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => rs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => rs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" => {
                rs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
            }
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
            | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" => {
                rs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            }
            "TLS_AES_128_GCM_SHA256" | "TLS_AES_256_GCM_SHA384" | "TLS_CHACHA20_POLY1305_SHA256" => {
                continue
            }
            other if UNSUPPORTED.contains(&other) => {
                return Err(format!(
                    "TLS cipher suite {other:?} cannot be honoured: oxcd speaks TLS 1.2 only with ECDHE and AES-GCM or ChaCha20-Poly1305"
                ))
            }
            other => return Err(format!("unexpected TLS cipher suite {other:?}")),
        };
        if !suites.contains(&suite) {
            suites.push(suite);
        }
    }
    Ok(suites)
}

/// The crypto provider for one side: rustls's defaults, or with `--cipher-suites` the TLS 1.2
/// suites named and every TLS 1.3 suite.
fn side_provider(t: &TlsConfig) -> Result<Arc<rustls::crypto::CryptoProvider>, String> {
    let mut provider = rustls::crypto::ring::default_provider();
    if !t.cipher_suites.is_empty() {
        let mut chosen: Vec<rustls::SupportedCipherSuite> = provider
            .cipher_suites
            .iter()
            .copied()
            .filter(|s| s.version() == &rustls::version::TLS13)
            .collect();
        chosen.extend(cipher_suites(&t.cipher_suites)?);
        provider.cipher_suites = chosen;
    }
    Ok(Arc::new(provider))
}

/// `--peer-cert-allowed-cn` / `--*-cert-allowed-hostname`: whether the certificate a client
/// presented may connect (etcd's check after the chain is verified).
fn allowed(t: &TlsConfig, cert: Option<&CertificateDer<'_>>) -> bool {
    if t.allowed_cns.is_empty() && t.allowed_hostnames.is_empty() {
        return true;
    }
    let Some(cert) = cert else {
        return false;
    };
    let cn_ok =
        t.allowed_cns.is_empty() || common_name(cert).is_some_and(|cn| t.allowed_cns.contains(&cn));
    let name_ok = t.allowed_hostnames.is_empty()
        || t.allowed_hostnames.iter().any(|h| valid_for_name(cert, h));
    cn_ok && name_ok
}

fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    CertificateRevocationListDer::pem_file_iter(path)
        .map_err(|e| read_err(path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| read_err(path, e))
}

/// The subject CN of a DER certificate.
pub fn common_name(cert: &[u8]) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

/// rustls's verifier of client certificates, and Go's one addition (a trusted root presented
/// as its own client certificate; see `trusted_as_its_own_root`).
#[derive(Debug)]
struct GoClientVerifier {
    webpki: Arc<dyn ClientCertVerifier>,
    roots: Vec<CertificateDer<'static>>,
    /// With a CRL, only webpki's verdict counts: it refuses a CA as a leaf before it looks
    /// at revocations, so a revoked root would pass the fallback.
    crls: bool,
}

impl ClientCertVerifier for GoClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.webpki.offer_client_auth()
    }
    fn client_auth_mandatory(&self) -> bool {
        self.webpki.client_auth_mandatory()
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.webpki
            .verify_client_cert(end_entity, intermediates, now)
            .or_else(|e| {
                if !self.crls
                    && trusted_as_its_own_root(&self.roots, end_entity, now, Purpose::Client, None)
                {
                    Ok(ClientCertVerified::assertion())
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
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

pub fn server_config(t: &TlsConfig) -> Result<ServerConfig, String> {
    let provider = side_provider(t)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions(t.min_version, t.max_version))
        .map_err(|e| e.to_string())?;
    let builder = match &t.trusted_ca_file {
        Some(ca) => {
            let (store, roots) = load_roots(ca)?;
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider);
            if let Some(crl) = &t.crl_file {
                verifier = verifier.with_crls(load_crls(crl)?);
            }
            if !t.client_cert_auth {
                verifier = verifier.allow_unauthenticated();
            }
            let webpki = verifier.build().map_err(|e| e.to_string())?;
            builder.with_client_cert_verifier(Arc::new(GoClientVerifier {
                webpki,
                roots,
                crls: t.crl_file.is_some(),
            }))
        }
        None if t.client_cert_auth => {
            return Err("client certificate authentication needs a trusted CA file".into())
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(load_certs(&t.cert_file)?, load_key(&t.key_file)?)
        .map_err(|e| format!("{}: {e}", t.cert_file.display()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The server side of one listener's TLS: its config, rebuilt when a file behind it changes.
pub struct Acceptor {
    tls: TlsConfig,
    current: Mutex<(Vec<Option<SystemTime>>, Arc<ServerConfig>)>,
}

impl Acceptor {
    pub fn new(tls: TlsConfig) -> Result<Arc<Acceptor>, String> {
        let config = Arc::new(server_config(&tls)?);
        let stamps = Self::stamps(&tls);
        Ok(Arc::new(Acceptor {
            tls,
            current: Mutex::new((stamps, config)),
        }))
    }

    fn stamps(tls: &TlsConfig) -> Vec<Option<SystemTime>> {
        [
            Some(&tls.cert_file),
            Some(&tls.key_file),
            tls.trusted_ca_file.as_ref(),
            tls.crl_file.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(|p| modified(p))
        .collect()
    }

    /// The config for a new connection: the files' current contents when they changed and
    /// still make a valid config, else the last good one.
    pub fn config(&self) -> Arc<ServerConfig> {
        let stamps = Self::stamps(&self.tls);
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.0 != stamps {
            match server_config(&self.tls) {
                Ok(fresh) => {
                    tracing::info!(cert_file = %self.tls.cert_file.display(), "reloaded TLS certificates");
                    *current = (stamps, Arc::new(fresh));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "changed TLS files do not load; keeping the previous ones");
                    current.0 = stamps;
                }
            }
        }
        current.1.clone()
    }
}

/// What the services learn about a connection.
#[derive(Debug, Clone, Default)]
pub struct ConnInfo {
    pub remote: Option<SocketAddr>,
    /// The connection is TLS.
    pub tls: bool,
    /// The verified client certificate's CN.
    pub common_name: Option<String>,
}

use oxcd_client::dial::Io;

/// An accepted connection, plain or TLS.
pub struct Conn {
    io: Box<dyn Io>,
    info: ConnInfo,
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ConnInfo;
    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

async fn handshake(
    tcp: TcpStream,
    remote: SocketAddr,
    acceptor: &Acceptor,
) -> Result<Conn, String> {
    let tls = tokio_rustls::TlsAcceptor::from(acceptor.config());
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp))
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let leaf = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first());
    if !allowed(&acceptor.tls, leaf) {
        return Err("client certificate authentication failed".into());
    }
    let common_name = leaf.and_then(|c| common_name(c));
    Ok(Conn {
        io: Box::new(stream),
        info: ConnInfo {
            remote: Some(remote),
            tls: true,
            common_name,
        },
    })
}

/// The connections a listener accepts, with TLS handshakes (each in its own task, so a slow
/// one holds up nobody) when `acceptor` is given.
pub fn incoming(
    listener: TcpListener,
    acceptor: Option<Arc<Acceptor>>,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<Conn>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = tx.closed() => return,
            };
            let (tcp, remote) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Small gRPC frames must not wait for Nagle's algorithm.
            let _ = tcp.set_nodelay(true);
            match &acceptor {
                None => {
                    let conn = Conn {
                        io: Box::new(tcp),
                        info: ConnInfo {
                            remote: Some(remote),
                            tls: false,
                            common_name: None,
                        },
                    };
                    if tx.send(Ok(conn)).await.is_err() {
                        return;
                    }
                }
                Some(acceptor) => {
                    let (acceptor, tx) = (acceptor.clone(), tx.clone());
                    tokio::spawn(async move {
                        match handshake(tcp, remote, &acceptor).await {
                            Ok(conn) => {
                                let _ = tx.send(Ok(conn)).await;
                            }
                            Err(e) => {
                                tracing::warn!(remote_addr = %remote, error = %e, "rejected connection")
                            }
                        }
                    });
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// How a member dials with one side's settings (peers, or another member's client URL): its
/// own certificate as the client's, trusting that side's CA.
pub fn dial_config(t: &TlsConfig) -> Result<Arc<ClientConfig>, String> {
    let tls = ClientTls {
        ca_file: t.trusted_ca_file.clone(),
        cert_file: Some(t.cert_file.clone()),
        key_file: Some(t.key_file.clone()),
        skip_verify: t.auto_tls,
    };
    oxcd_client::tls::client_config_with(&tls, side_provider(t)?)
}

/// `--auto-tls`: a self-signed certificate for `hosts` in `dir`, made once and kept.
pub fn self_signed(
    dir: &Path,
    hosts: &[String],
    validity_years: u64,
) -> Result<(PathBuf, PathBuf), String> {
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    oxcd_storage::mkdir(dir).map_err(|e| e.to_string())?;
    let mut names: Vec<String> = hosts.to_vec();
    names.sort();
    names.dedup();
    let mut params = rcgen::CertificateParams::new(names).map_err(|e| e.to_string())?;
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "oxcd");
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    params.not_after =
        time::OffsetDateTime::now_utc() + time::Duration::days(365 * validity_years.max(1) as i64);
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    std::fs::write(&cert_path, cert.pem()).map_err(|e| read_err(&cert_path, e))?;
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&key_path)
            .map_err(|e| read_err(&key_path, e))?;
        f.write_all(key.serialize_pem().as_bytes())
            .map_err(|e| read_err(&key_path, e))?;
    }
    tracing::info!(cert = %cert_path.display(), "made a self-signed certificate (--auto-tls)");
    Ok((cert_path, key_path))
}
