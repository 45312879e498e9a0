//! Connections to the endpoints, as etcd's client makes them: the first endpoint that answers
//! within the dial timeout serves the command.

use oxcd_api::etcdserverpb::{
    cluster_client::ClusterClient, kv_client::KvClient, maintenance_client::MaintenanceClient,
};
use oxcd_api::EtcdError;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

pub struct Client {
    pub channel: Channel,
}

impl Client {
    pub fn kv(&self) -> KvClient<Channel> {
        KvClient::new(self.channel.clone()).max_decoding_message_size(usize::MAX)
    }
    pub fn maintenance(&self) -> MaintenanceClient<Channel> {
        MaintenanceClient::new(self.channel.clone()).max_decoding_message_size(usize::MAX)
    }
    pub fn cluster(&self) -> ClusterClient<Channel> {
        ClusterClient::new(self.channel.clone())
    }
    pub fn watch(&self) -> oxcd_api::etcdserverpb::watch_client::WatchClient<Channel> {
        oxcd_api::etcdserverpb::watch_client::WatchClient::new(self.channel.clone())
            .max_decoding_message_size(usize::MAX)
    }
}

pub fn endpoint_uri(ep: &str) -> String {
    if ep.contains("://") {
        ep.to_string()
    } else {
        format!("http://{ep}")
    }
}

pub async fn connect_one(ep: &str, dial_timeout: Duration) -> Result<Client, String> {
    let uri = endpoint_uri(ep);
    if uri.starts_with("https://") {
        return Err("oxcdctl does not speak TLS yet; use an http:// endpoint".into());
    }
    let endpoint = Endpoint::from_shared(uri)
        .map_err(|e| e.to_string())?
        .connect_timeout(dial_timeout);
    match tokio::time::timeout(dial_timeout, endpoint.connect()).await {
        Ok(Ok(channel)) => Ok(Client { channel }),
        Ok(Err(_)) | Err(_) => Err("context deadline exceeded".into()),
    }
}

pub async fn connect(endpoints: &[String], dial_timeout: Duration) -> Result<Client, String> {
    let mut last = String::from("no endpoints given");
    for ep in endpoints {
        match connect_one(ep, dial_timeout).await {
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
