//! Watch and lease loads for `compare`: fan-out to many watchers, keep-alive throughput,
//! and the memory idle watchers cost.

use crate::load;
use oxcd_api::etcdserverpb::lease_client::LeaseClient;
use oxcd_api::etcdserverpb::watch_client::WatchClient;
use oxcd_api::etcdserverpb::watch_request::RequestUnion;
use oxcd_api::etcdserverpb::{
    kv_client::KvClient, LeaseGrantRequest, LeaseKeepAliveRequest, PutRequest, WatchCreateRequest,
    WatchRequest,
};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Watch streams, each with the sender that keeps it open.
pub(crate) type WatchStreams = Vec<(
    mpsc::Sender<WatchRequest>,
    tonic::Streaming<oxcd_api::etcdserverpb::WatchResponse>,
)>;

/// Opens `streams` watch streams with `per_stream` watches each; `key(i)` names watch i's
/// key. Returns the streams once every watch is created.
pub(crate) async fn open_watches(
    endpoints: &[String],
    streams: usize,
    per_stream: usize,
    key: impl Fn(usize) -> Vec<u8>,
) -> Result<WatchStreams, String> {
    let mut out = Vec::new();
    for s in 0..streams {
        let ch = load::connect(&endpoints[s % endpoints.len()]).await?;
        let (tx, rx) = mpsc::channel(per_stream + 1);
        for w in 0..per_stream {
            let req = WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                    key: key(s * per_stream + w),
                    ..Default::default()
                })),
            };
            tx.send(req).await.map_err(|e| e.to_string())?;
        }
        let mut stream = WatchClient::new(ch)
            .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .map_err(|e| e.to_string())?
            .into_inner();
        let mut created = 0;
        while created < per_stream {
            let r = stream
                .message()
                .await
                .map_err(|e| e.to_string())?
                .ok_or("watch stream ended")?;
            created += usize::from(r.created);
        }
        out.push((tx, stream));
    }
    Ok(out)
}

/// Events per second delivered to 1000 watchers of one key while `puts` writes go in.
pub async fn watch_fan_out(endpoints: &[String], puts: usize) -> Result<f64, String> {
    let streams = open_watches(endpoints, 10, 100, |_| b"fan-out".to_vec()).await?;
    let mut readers = Vec::new();
    for (tx, mut stream) in streams {
        readers.push(tokio::spawn(async move {
            let _open = tx;
            let mut events = 0usize;
            while events < 100 * puts {
                match stream.message().await {
                    Ok(Some(r)) => events += r.events.len(),
                    _ => break,
                }
            }
            events
        }));
    }
    let mut kv = KvClient::new(load::connect(&endpoints[0]).await?);
    let start = Instant::now();
    for i in 0..puts {
        kv.put(PutRequest {
            key: b"fan-out".to_vec(),
            value: i.to_string().into_bytes(),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    }
    let mut delivered = 0;
    for r in readers {
        delivered += tokio::time::timeout(Duration::from_secs(120), r)
            .await
            .map_err(|_| "watchers did not get every event within 120 s".to_string())?
            .map_err(|e| e.to_string())?;
    }
    Ok(delivered as f64 / start.elapsed().as_secs_f64())
}

/// Keep-alives per second from `clients` streams over 100 leases.
pub async fn lease_keep_alive(
    endpoints: &[String],
    clients: usize,
    total: usize,
) -> Result<f64, String> {
    let mut lc = LeaseClient::new(load::connect(&endpoints[0]).await?);
    let mut ids = Vec::new();
    for _ in 0..100 {
        let r = lc
            .lease_grant(LeaseGrantRequest { ttl: 60, id: 0 })
            .await
            .map_err(|e| e.to_string())?
            .into_inner();
        ids.push(r.id);
    }
    let per_client = total / clients.max(1);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let ep = endpoints[c % endpoints.len()].clone();
        let ids = ids.clone();
        tasks.push(tokio::spawn(async move {
            let ch = load::connect(&ep).await?;
            let (tx, rx) = mpsc::channel(1);
            let request = |i: usize| LeaseKeepAliveRequest {
                id: ids[(c + i) % ids.len()],
            };
            // Go gRPC sends a stream's headers with its first answer: ask before awaiting.
            tx.send(request(0)).await.map_err(|e| e.to_string())?;
            let mut stream = LeaseClient::new(ch)
                .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .map_err(|e| e.to_string())?
                .into_inner();
            for i in 0..per_client {
                if i > 0 {
                    tx.send(request(i)).await.map_err(|e| e.to_string())?;
                }
                stream
                    .message()
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or("keep-alive stream ended")?;
            }
            Ok::<(), String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok((per_client * clients) as f64 / start.elapsed().as_secs_f64())
}

/// Opens 10,000 idle watchers (distinct keys), for the caller to read memory; the streams
/// stay open while the returned value lives.
pub async fn idle_watchers(endpoints: &[String]) -> Result<Vec<impl Sized>, String> {
    open_watches(endpoints, 10, 1000, |i| format!("idle/{i:05}").into_bytes()).await
}
