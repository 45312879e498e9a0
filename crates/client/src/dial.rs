//! Dialing: TCP from a chosen source address, TLS for https URLs, and gRPC channels over
//! such connections.

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

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
