//! HTTP on the client URLs beside gRPC, as etcd serves it: /health, /livez, /readyz,
//! /version and /metrics; and the layer that counts gRPC requests for /metrics.

use crate::server::EtcdServer;
use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use oxcd_api::etcdserverpb::AlarmType;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub fn routes(server: Arc<EtcdServer>, backups: Arc<crate::backups::Tracker>) -> axum::Router {
    metrics_routes(server.clone(), backups).merge(
        axum::Router::new()
            .route("/version", get(version))
            .merge(crate::failpoints::routes())
            .with_state(server),
    )
}

/// What `--listen-metrics-urls` serve (etcd 3.5.11's set): /metrics and the health checks.
pub fn metrics_routes(
    server: Arc<EtcdServer>,
    backups: Arc<crate::backups::Tracker>,
) -> axum::Router {
    axum::Router::new()
        .route("/health", get(health))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .layer(axum::Extension(backups))
        .with_state(server)
}

/// etcd's `--host-whitelist`: a plain HTTP/1 request (not TLS, so not gRPC either) whose Host
/// is not listed gets 421, against DNS rebinding (CVE-2018-5702), with etcd's explanation.
pub async fn host_check(
    State(allowed): State<Arc<Vec<String>>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let open = allowed.is_empty() || allowed.iter().any(|h| h == "*");
    let over_tls = req
        .extensions()
        .get::<crate::tls::ConnInfo>()
        .is_some_and(|c| c.tls);
    if open || over_tls || req.version() >= axum::http::Version::HTTP_2 {
        return next.run(req).await;
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host())
        .unwrap_or("");
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.parse::<u16>().is_ok() => {
            name.trim_start_matches('[').trim_end_matches(']')
        }
        _ => host,
    };
    if allowed.iter().any(|h| h == name) {
        return next.run(req).await;
    }
    tracing::warn!(
        host = name,
        "rejecting HTTP request to prevent DNS rebinding attacks"
    );
    let body = format!(
        "\netcd received your request, but the Host header was unrecognized.\n\nTo fix this, choose one of the following options:\n- Enable TLS, then any HTTPS request will be allowed.\n- Add the hostname you want to use to the whitelist in settings.\n  - e.g. etcd --host-whitelist {name:?}\n\nThis requirement has been added to help prevent \"DNS Rebinding\" attacks (CVE-2018-5702).\n\n"
    );
    (
        StatusCode::MISDIRECTED_REQUEST,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

fn query_values<'q>(query: &'q Option<String>, name: &str) -> Vec<&'q str> {
    query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .collect()
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Why the member is unhealthy, or None. As etcd: an alarm not excluded, no leader, or a
/// read that does not complete (linearizable unless ?serializable=true).
async fn unhealthy(server: &EtcdServer, query: &Option<String>) -> Option<String> {
    let excluded = query_values(query, "exclude");
    for a in server.alarms.list(AlarmType::None) {
        let name = crate::alarms::alarm_name(&a);
        if !excluded.contains(&name) {
            return Some(format!("ALARM {name}"));
        }
    }
    if server.raft.leader.load(Ordering::Acquire) == 0 {
        return Some("RAFT NO LEADER".into());
    }
    let serializable = query_values(query, "serializable").contains(&"true");
    if !serializable {
        if let Err(e) = server.linearizable_read_barrier().await {
            return Some(format!("QGET ERROR:{e}"));
        }
    }
    None
}

/// etcd's /health, and with scheduled backups on, a leader whose last good backup is older
/// than twice the interval (`?exclude=BACKUP` leaves that out).
async fn health(
    State(server): State<Arc<EtcdServer>>,
    axum::Extension(backups): axum::Extension<Arc<crate::backups::Tracker>>,
    RawQuery(q): RawQuery,
) -> Response {
    let backup_overdue = || {
        let leading = server.raft.is_leader.load(Ordering::Acquire);
        backups
            .overdue(leading)
            .filter(|_| !query_values(&q, "exclude").contains(&"BACKUP"))
    };
    let reason = match unhealthy(&server, &q).await {
        None => backup_overdue(),
        some => some,
    };
    match reason {
        None => json(StatusCode::OK, r#"{"health":"true","reason":""}"#.into()),
        Some(reason) => {
            tracing::warn!(reason = %reason, "serving /health false");
            json(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"health": "false", "reason": reason}).to_string(),
            )
        }
    }
}

async fn ready(State(server): State<Arc<EtcdServer>>, RawQuery(q): RawQuery) -> Response {
    match unhealthy(&server, &q).await {
        None => (StatusCode::OK, "ok").into_response(),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason).into_response(),
    }
}

async fn version() -> Response {
    let v = crate::version::SERVER_VERSION;
    json(
        StatusCode::OK,
        serde_json::json!({"etcdserver": v, "etcdcluster": oxcd_api::CLUSTER_VERSION}).to_string(),
    )
}

async fn metrics(State(server): State<Arc<EtcdServer>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::exposition::render(&server),
    )
        .into_response()
}
