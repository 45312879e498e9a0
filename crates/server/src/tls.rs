//! TLS for client and peer URLs (rustls), as etcd configures it: a certificate and key, an
//! optional CA whose signature client certificates must carry (`--client-cert-auth`), a CRL,
//! self-signed certificates for `--auto-tls`, and certificates reread from disk when their
//! files change, so they rotate without a restart. Also the dialer members and oxcdctl
//! share, which speaks TLS to https URLs.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use std::io;
use std::net::{IpAddr, SocketAddr};
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
    /// `--peer-cert-allowed-cn`: the CN every peer's certificate must carry.
    pub allowed_cn: Option<String>,
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

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
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

fn read_err(path: &Path, e: impl std::fmt::Display) -> String {
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

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| read_err(path, e))
}

fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| read_err(path, e))?;
    }
    Ok(roots)
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

pub fn server_config(t: &TlsConfig) -> Result<ServerConfig, String> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions(t.min_version, t.max_version))
        .map_err(|e| e.to_string())?;
    let builder = match &t.trusted_ca_file {
        Some(ca) => {
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(load_roots(ca)?), provider);
            if let Some(crl) = &t.crl_file {
                verifier = verifier.with_crls(load_crls(crl)?);
            }
            if !t.client_cert_auth {
                verifier = verifier.allow_unauthenticated();
            }
            builder.with_client_cert_verifier(verifier.build().map_err(|e| e.to_string())?)
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
    /// The verified client certificate's CN.
    pub common_name: Option<String>,
}

pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

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
    let common_name = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| common_name(c));
    if let Some(allowed) = &acceptor.tls.allowed_cn {
        if common_name.as_deref() != Some(allowed.as_str()) {
            return Err(format!(
                "client certificate CN {:?} is not the allowed CN {allowed:?}",
                common_name.unwrap_or_default()
            ));
        }
    }
    Ok(Conn {
        io: Box::new(stream),
        info: ConnInfo {
            remote: Some(remote),
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
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if t.skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SkipVerify(provider)))
    } else {
        let roots = match &t.ca_file {
            Some(ca) => load_roots(ca)?,
            None => RootCertStore::empty(),
        };
        builder.with_root_certificates(roots)
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

/// How a member dials with one side's settings (peers, or another member's client URL): its
/// own certificate as the client's, trusting that side's CA.
pub fn dial_config(t: &TlsConfig) -> Result<Arc<ClientConfig>, String> {
    client_config(&ClientTls {
        ca_file: t.trusted_ca_file.clone(),
        cert_file: Some(t.cert_file.clone()),
        key_file: Some(t.key_file.clone()),
        skip_verify: t.auto_tls,
    })
}

/// A dialed connection as hyper wants it.
pub type Dialed = hyper_util::rt::TokioIo<Box<dyn Io>>;

/// Connects to `uri`'s host and port (from `source` when given), with TLS when `tls` is set.
pub async fn dial(
    uri: &http::Uri,
    source: Option<IpAddr>,
    tls: Option<Arc<ClientConfig>>,
) -> io::Result<Dialed> {
    let named = uri.host().unwrap_or("127.0.0.1");
    let named = named.trim_start_matches('[').trim_end_matches(']');
    let host = if named == "localhost" {
        "127.0.0.1"
    } else {
        named
    };
    let port = uri.port_u16().unwrap_or(2379);
    let addr: SocketAddr = match host.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port),
        Err(_) => tokio::net::lookup_host((host, port))
            .await?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?,
    };
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // Only from an address of the same kind (loopback to loopback, other to other).
    if let Some(ip) = source
        .filter(|ip| ip.is_ipv4() == addr.is_ipv4() && ip.is_loopback() == addr.ip().is_loopback())
    {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    let Some(tls) = tls else {
        return Ok(hyper_util::rt::TokioIo::new(Box::new(stream)));
    };
    let name = ServerName::try_from(named.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, stream)
        .await?;
    Ok(hyper_util::rt::TokioIo::new(Box::new(stream)))
}

/// A gRPC channel to `url` (http or https); TLS by `tls` for https URLs.
pub async fn channel(
    url: &str,
    tls: Option<Arc<ClientConfig>>,
    source: Option<IpAddr>,
    configure: impl FnOnce(tonic::transport::Endpoint) -> tonic::transport::Endpoint,
) -> Result<tonic::transport::Channel, String> {
    let (plain, tls) = match url.strip_prefix("https://") {
        Some(rest) => (
            format!("http://{rest}"),
            Some(tls.ok_or_else(|| format!("{url}: no TLS settings for an https URL"))?),
        ),
        None => (url.to_string(), None),
    };
    let endpoint =
        configure(tonic::transport::Endpoint::from_shared(plain).map_err(|e| e.to_string())?);
    endpoint
        .connect_with_connector(tower::service_fn(move |uri: http::Uri| {
            let tls = tls.clone();
            async move { dial(&uri, source, tls).await }
        }))
        .await
        .map_err(|e| {
            use std::error::Error;
            let mut text = e.to_string();
            let mut cause = e.source();
            while let Some(c) = cause {
                text = format!("{text}: {c}");
                cause = c.source();
            }
            text
        })
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
    crate::mkdir(dir).map_err(|e| e.to_string())?;
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
