//! Connections to a cluster's endpoints, as etcd's client makes them: the first endpoint that
//! answers within the dial timeout serves; the auth token rides on every request.

use oxcd_api::etcdserverpb::{
    cluster_client::ClusterClient, kv_client::KvClient, maintenance_client::MaintenanceClient,
};
use oxcd_api::EtcdError;
use std::sync::Arc;
use std::time::Duration;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Puts the auth token (once there is one) on every request, as etcd's client does.
#[derive(Clone, Default)]
pub struct AddToken(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for AddToken {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(t) = &self.0 {
            req.metadata_mut().insert("token", t.clone());
        }
        Ok(req)
    }
}

pub type Conn = InterceptedService<Channel, AddToken>;

pub struct Client {
    pub channel: Conn,
    raw: Channel,
}

/// How to reach the endpoints: the dial timeout and, for TLS, what to present and trust.
#[derive(Clone)]
pub struct Dialer {
    pub timeout: Duration,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// TLS also for endpoints given without a scheme (a TLS flag was set).
    pub tls_by_default: bool,
}

impl Client {
    pub fn kv(&self) -> KvClient<Conn> {
        KvClient::new(self.channel.clone()).max_decoding_message_size(usize::MAX)
    }
    pub fn maintenance(&self) -> MaintenanceClient<Conn> {
        MaintenanceClient::new(self.channel.clone()).max_decoding_message_size(usize::MAX)
    }
    /// The same connection, sending `token` from now on.
    pub fn with_token(self, token: &str) -> Result<Client, String> {
        let value: MetadataValue<Ascii> = token
            .parse()
            .map_err(|_| "invalid auth token from server".to_string())?;
        Ok(Client {
            channel: InterceptedService::new(self.raw.clone(), AddToken(Some(value))),
            raw: self.raw,
        })
    }
    pub fn cluster(&self) -> ClusterClient<Conn> {
        ClusterClient::new(self.channel.clone())
    }
    pub fn auth(&self) -> oxcd_api::etcdserverpb::auth_client::AuthClient<Conn> {
        oxcd_api::etcdserverpb::auth_client::AuthClient::new(self.channel.clone())
    }
    pub fn watch(&self) -> oxcd_api::etcdserverpb::watch_client::WatchClient<Conn> {
        oxcd_api::etcdserverpb::watch_client::WatchClient::new(self.channel.clone())
            .max_decoding_message_size(usize::MAX)
    }
}

pub fn endpoint_uri(ep: &str, tls: bool) -> String {
    if ep.contains("://") {
        ep.to_string()
    } else if tls {
        format!("https://{ep}")
    } else {
        format!("http://{ep}")
    }
}

pub async fn connect_one(ep: &str, dialer: &Dialer) -> Result<Client, String> {
    let uri = endpoint_uri(ep, dialer.tls_by_default);
    let tls = match (uri.starts_with("https://"), &dialer.tls) {
        (true, Some(t)) => Some(t.clone()),
        (true, None) => Some(crate::tls::client_config(&crate::tls::ClientTls::default())?),
        (false, _) => None,
    };
    let timeout = dialer.timeout;
    let connecting = crate::dial::channel(&uri, tls, None, |e| e.connect_timeout(timeout));
    match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(raw)) => Ok(Client {
            channel: InterceptedService::new(raw.clone(), AddToken::default()),
            raw,
        }),
        Ok(Err(_)) | Err(_) => Err("context deadline exceeded".into()),
    }
}

pub async fn connect(endpoints: &[String], dialer: &Dialer) -> Result<Client, String> {
    let mut last = String::from("no endpoints given");
    for ep in endpoints {
        match connect_one(ep, dialer).await {
            Ok(c) => return Ok(c),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// How etcd's Go client words a failed call: etcd's own errors by their message, others as
/// gRPC status text.
pub fn describe(status: &tonic::Status) -> String {
    if let Some(e) = EtcdError::from_status(status) {
        return e.to_string();
    }
    if status.code() == tonic::Code::DeadlineExceeded || status.code() == tonic::Code::Cancelled {
        return "context deadline exceeded".into();
    }
    let code = format!("{:?}", status.code());
    format!("rpc error: code = {code} desc = {}", status.message())
}

/// Runs `call` under the command timeout, turning every failure into etcdctl's words.
pub async fn with_timeout<T>(
    timeout: Duration,
    call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(status)) => Err(describe(&status)),
        Err(_) => Err("context deadline exceeded".into()),
    }
}

/// An HTTP/1.0 GET of `path` on endpoint `ep` (TLS as the gRPC dial has it): the body of a
/// 200 answer.
pub async fn http_get(ep: &str, dialer: &Dialer, path: &str) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let uri: http::Uri = endpoint_uri(ep, dialer.tls_by_default)
        .parse()
        .map_err(|e| format!("{ep}: {e}"))?;
    let tls = match (&dialer.tls, uri.scheme_str()) {
        (Some(tls), Some("https")) => {
            let mut http1 = (**tls).clone();
            http1.alpn_protocols = vec![b"http/1.1".to_vec()];
            Some(Arc::new(http1))
        }
        _ => None,
    };
    let exchange = async {
        let mut conn = crate::dial::dial(&uri, None, tls)
            .await
            .map_err(|e| e.to_string())?
            .into_inner();
        let host = uri.authority().map_or("", |a| a.as_str());
        conn.write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        conn.read_to_end(&mut raw)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(raw)
    };
    let raw = tokio::time::timeout(dialer.timeout.max(Duration::from_secs(5)), exchange)
        .await
        .map_err(|_| format!("reading {path}: timed out"))??;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("reading {path}: no HTTP answer"))?;
    match head.split_whitespace().nth(1) {
        Some("200") => Ok(body.to_string()),
        status => Err(format!("reading {path}: status {}", status.unwrap_or("?"))),
    }
}
