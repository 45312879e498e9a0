//! `oxcd-bench gateway`: put and range throughput through the JSON gateway (POST /v3/kv/...
//! over HTTP/1.1 keep-alive connections, one a client, as JSON clients make them) and
//! through gRPC, for one oxcd and one etcd member side by side.

use crate::load::{self, LoadSpec, Op};
use crate::servers::{print_rows, start_with, Row};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

const CLIENTS: usize = 64;
const VALUE_SIZE: usize = 256;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Requests a second for `total` JSON requests made by `CLIENTS` clients; `body(n)` is the
/// nth request's body.
async fn json_load(
    endpoint: &str,
    path: &str,
    total: usize,
    body: impl Fn(usize) -> String + Send + Sync + 'static,
) -> Result<f64, String> {
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(CLIENTS)
        .build_http::<Full<Bytes>>();
    let host = endpoint.trim_start_matches("http://");
    let uri = format!("http://{host}{path}");
    let body = Arc::new(body);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (client, uri, body, next) = (client.clone(), uri.clone(), body.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return Ok::<(), String>(());
                }
                let req = hyper::Request::post(&uri)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body(n))))
                    .map_err(|e| e.to_string())?;
                let resp = client.request(req).await.map_err(|e| e.to_string())?;
                let status = resp.status();
                let reply = resp
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?;
                if !status.is_success() {
                    let text = String::from_utf8_lossy(&reply.to_bytes()).into_owned();
                    return Err(format!("{uri}: {status} {text}"));
                }
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

pub async fn compare(oxcd: &str, etcd: &str, total: usize) -> Result<(), String> {
    let value = b64(&[b'v'; VALUE_SIZE]);
    let range_key = b"range-key".to_vec();
    // [product][put grpc, put json, range grpc, range json]
    let mut figures = Vec::new();
    for (name, program) in [("oxcd", oxcd), ("etcd", etcd)] {
        let cluster = start_with(name, program, 1, "http", &[]).await?;
        let endpoint = cluster.members[0].endpoint.clone();
        let grpc = |op: Op| LoadSpec {
            endpoint: endpoint.clone(),
            conns: 8,
            clients: CLIENTS,
            total,
            op,
        };
        let put = load::run(&grpc(Op::Put {
            key_size: 8,
            val_size: VALUE_SIZE,
            key_space_size: 0,
            prefix: "g-".into(),
        }))
        .await?;
        let value = value.clone();
        let json_put = json_load(&endpoint, "/v3/kv/put", total, move |n| {
            format!(
                r#"{{"key":"{}","value":"{value}"}}"#,
                b64(format!("j-{n:06}").as_bytes())
            )
        })
        .await?;
        let range = load::run(&grpc(Op::Range {
            key: range_key.clone(),
            end: Vec::new(),
            serializable: false,
        }))
        .await?;
        let key = b64(&range_key);
        let json_range = json_load(&endpoint, "/v3/kv/range", total, move |_| {
            format!(r#"{{"key":"{key}"}}"#)
        })
        .await?;
        if put.errors + range.errors > 0 {
            return Err(format!("{name}: {} gRPC errors", put.errors + range.errors));
        }
        figures.push([put.throughput(), json_put, range.throughput(), json_range]);
    }
    let (o, e) = (figures[0], figures[1]);
    let row = |name: &str, unit: &'static str, oxcd: f64, etcd: f64| Row {
        name: name.into(),
        unit,
        oxcd,
        etcd,
        higher_is_better: true,
    };
    let rows = vec![
        row("put, gRPC", "req/s", o[0], e[0]),
        row("put, JSON gateway", "req/s", o[1], e[1]),
        row("put, JSON / gRPC", "ratio", o[1] / o[0], e[1] / e[0]),
        row("range (linearizable), gRPC", "req/s", o[2], e[2]),
        row("range (linearizable), JSON", "req/s", o[3], e[3]),
        row("range, JSON / gRPC", "ratio", o[3] / o[2], e[3] / e[2]),
    ];
    println!(
        "one member each, {CLIENTS} clients ({CLIENTS} HTTP/1.1 connections for JSON, 8 gRPC connections), {VALUE_SIZE}-byte values, {total} requests a load"
    );
    print_rows("oxcd", "etcd", rows);
    Ok(())
}
