//! The JSON gateway: the same raw HTTP requests against real etcd and oxcd give the same
//! status and JSON (member and cluster IDs aside); a JSON watch streams the same events; a
//! real JSON-gateway client from PyPI (etcd3gw) works against oxcd.

use base64::Engine;
use oxcd_tests::http::{self, Stream};
use oxcd_tests::wait::eventually;
use oxcd_tests::{Kind, Server};
use serde_json::Value;
use std::path::PathBuf;

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Drops what differs between any two clusters: the member and cluster IDs in headers.
fn normalize(v: &mut Value, ignore: &[&str]) {
    match v {
        Value::Object(map) => {
            for field in ["cluster_id", "member_id"].iter().chain(ignore) {
                map.remove(*field);
            }
            for (_, inner) in map.iter_mut() {
                normalize(inner, ignore);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| normalize(i, ignore)),
        _ => {}
    }
}

/// One request of the differential session. `{LEADER}` in the body becomes the last
/// campaign's leader key; `{TOKEN}` in `authorization` the last authentication's token.
struct Step {
    path: &'static str,
    body: String,
    /// Fields left out of the comparison (values that depend on timing or randomness).
    ignore: &'static [&'static str],
    authorization: Option<&'static str>,
    /// Only the status and the gRPC code are compared (the message is Go's or serde's
    /// JSON parser's own).
    code_only: bool,
    method: &'static str,
}

fn step(path: &'static str, body: impl Into<String>) -> Step {
    Step {
        path,
        body: body.into(),
        ignore: &[],
        authorization: None,
        code_only: false,
        method: "POST",
    }
}

fn session() -> Vec<Step> {
    let (k1, k2, k3) = (b64("key1"), b64("key2"), b64("key3"));
    let lock_key = b64(&format!("lock/{:x}", 7777));
    vec![
        step(
            "/v3/kv/put",
            format!(r#"{{"key":"{k1}","value":"{}"}}"#, b64("v1")),
        ),
        step(
            "/v3/kv/put",
            format!(r#"{{"key":"{k2}","value":"{}","prev_kv":true}}"#, b64("v2")),
        ),
        step(
            "/v3/kv/put",
            format!(
                r#"{{"key":"{k1}","value":"{}","prev_kv":true}}"#,
                b64("v1b")
            ),
        ),
        step("/v3/kv/range", format!(r#"{{"key":"{k1}"}}"#)),
        step(
            "/v3/kv/range",
            format!(
                r#"{{"key":"{}","range_end":"{}","sort_order":"DESCEND","sort_target":"KEY"}}"#,
                b64("key"),
                b64("kez")
            ),
        ),
        step(
            "/v3/kv/range",
            format!(
                r#"{{"key":"{}","range_end":"AA==","count_only":true}}"#,
                b64("key")
            ),
        ),
        step(
            "/v3/kv/range",
            format!(
                r#"{{"key":"{}","range_end":"AA==","keys_only":true,"limit":"1"}}"#,
                b64("key")
            ),
        ),
        step(
            "/v3/kv/range",
            format!(r#"{{"key":"{k1}","revision":"2"}}"#),
        ),
        step("/v3/kv/range", r#"{"key":""}"#),
        step("/v3/kv/range", ""),
        step(
            "/v3/kv/range",
            format!(r#"{{"key":"{k1}","revision":"99"}}"#),
        ),
        step(
            "/v3/kv/txn",
            format!(
                r#"{{"compare":[{{"key":"{k1}","result":"EQUAL","target":"VALUE","value":"{}"}}],
                   "success":[{{"request_put":{{"key":"{k3}","value":"{}"}}}},
                              {{"request_range":{{"key":"{k3}"}}}},
                              {{"request_txn":{{"success":[{{"request_delete_range":{{"key":"{k3}","prev_kv":true}}}}]}}}}],
                   "failure":[{{"request_range":{{"key":"{k1}"}}}}]}}"#,
                b64("v1b"),
                b64("v3")
            ),
        ),
        step(
            "/v3/kv/txn",
            format!(
                r#"{{"compare":[{{"key":"{k1}","result":"LESS","target":"MOD","mod_revision":"2"}}],
                   "failure":[{{"request_range":{{"key":"{k2}"}}}}]}}"#
            ),
        ),
        step(
            "/v3/kv/deleterange",
            format!(r#"{{"key":"{k2}","prev_kv":true}}"#),
        ),
        step("/v3/kv/compaction", r#"{"revision":"3"}"#),
        step(
            "/v3/kv/range",
            format!(r#"{{"key":"{k1}","revision":"2"}}"#),
        ),
        step(
            "/v3/kv/put",
            format!(r#"{{"key":"{k3}","value":"eA==","lease":"999"}}"#),
        ),
        step("/v3/lease/grant", r#"{"TTL":"60","ID":"7777"}"#),
        step("/v3/lease/grant", r#"{"TTL":"60","ID":"7777"}"#),
        step(
            "/v3/kv/put",
            format!(r#"{{"key":"{k3}","value":"eA==","lease":"7777"}}"#),
        ),
        Step {
            ignore: &["TTL"],
            ..step("/v3/lease/timetolive", r#"{"ID":"7777","keys":true}"#)
        },
        step("/v3/lease/leases", "{}"),
        step(
            "/v3/lock/lock",
            format!(r#"{{"name":"{}","lease":"7777"}}"#, b64("lock")),
        ),
        step("/v3/lock/unlock", format!(r#"{{"key":"{lock_key}"}}"#)),
        step(
            "/v3/election/campaign",
            format!(
                r#"{{"name":"{}","lease":"7777","value":"{}"}}"#,
                b64("el"),
                b64("one")
            ),
        ),
        step(
            "/v3/election/leader",
            format!(r#"{{"name":"{}"}}"#, b64("el")),
        ),
        step(
            "/v3/election/proclaim",
            format!(r#"{{"leader":{{LEADER}},"value":"{}"}}"#, b64("two")),
        ),
        step(
            "/v3/election/proclaim",
            format!(
                r#"{{"leader":{{"name":"{}","key":"{}","rev":"1"}},"value":"eA=="}}"#,
                b64("el"),
                b64("el/1e61")
            ),
        ),
        step(
            "/v3/election/leader",
            format!(r#"{{"name":"{}"}}"#, b64("el")),
        ),
        step("/v3/election/resign", r#"{"leader":{LEADER}}"#),
        step(
            "/v3/election/leader",
            format!(r#"{{"name":"{}"}}"#, b64("el")),
        ),
        step("/v3/lease/revoke", r#"{"ID":"7777"}"#),
        step("/v3/lease/timetolive", r#"{"ID":"7777"}"#),
        step("/v3beta/kv/range", format!(r#"{{"key":"{k1}"}}"#)),
        Step {
            code_only: true,
            ..step("/v3/kv/range", r#"{"key":"#)
        },
        step("/v3/kv/nothing", "{}"),
        Step {
            method: "GET",
            ..step("/v3/kv/range", "")
        },
        step("/v3/auth/role/add", r#"{"name":"root"}"#),
        step("/v3/auth/user/add", r#"{"name":"root","password":"pw"}"#),
        step("/v3/auth/user/grant", r#"{"user":"root","role":"root"}"#),
        step("/v3/auth/enable", "{}"),
        step("/v3/kv/range", format!(r#"{{"key":"{k1}"}}"#)),
        step(
            "/v3/auth/authenticate",
            r#"{"name":"root","password":"wrong"}"#,
        ),
        Step {
            ignore: &["token"],
            ..step(
                "/v3/auth/authenticate",
                r#"{"name":"root","password":"pw"}"#,
            )
        },
        Step {
            authorization: Some("{TOKEN}"),
            ..step("/v3/kv/range", format!(r#"{{"key":"{k1}"}}"#))
        },
        Step {
            authorization: Some("not-a-token"),
            ..step("/v3/kv/range", format!(r#"{{"key":"{k1}"}}"#))
        },
        Step {
            authorization: Some("{TOKEN}"),
            ..step("/v3/auth/user/get", r#"{"name":"root"}"#)
        },
        Step {
            authorization: Some("{TOKEN}"),
            ..step("/v3/auth/disable", "{}")
        },
        step("/v3/kv/range", format!(r#"{{"key":"{k1}"}}"#)),
    ]
}

/// Runs the session against one server: (status, normalized reply) a step.
fn run_session(server: &Server) -> Vec<(u16, String)> {
    let ep = server.endpoint();
    let mut leader = String::from("null");
    let mut token = String::new();
    let mut replies = Vec::new();
    for s in session() {
        let body = s.body.replace("{LEADER}", &leader);
        let authorization = s.authorization.map(|a| a.replace("{TOKEN}", &token));
        let headers: Vec<(&str, &str)> = authorization
            .iter()
            .map(|a| ("Authorization", a.as_str()))
            .collect();
        let reply = http::request(&ep, s.method, s.path, &body, &headers);
        let text = if reply.header("content-type") == Some("application/json") {
            let mut json = reply.json();
            if let Some(l) = json.get("leader") {
                leader = l.to_string();
            }
            if let Some(t) = json.get("token").and_then(Value::as_str) {
                token = t.to_string();
            }
            if s.code_only {
                json = json.get("code").cloned().unwrap_or(Value::Null);
            }
            normalize(&mut json, s.ignore);
            json.to_string()
        } else {
            reply.body.clone()
        };
        replies.push((reply.status, format!("{} {}: {text}", s.path, body)));
    }
    replies
}

#[tokio::test]
async fn json_requests_give_etcds_replies() {
    let etcd = Server::start(Kind::Etcd, &[]);
    let oxcd = Server::start(Kind::Oxcd, &[]);
    etcd.ready().await;
    oxcd.ready().await;
    let (want, got) = (run_session(&etcd), run_session(&oxcd));
    assert_eq!(want.len(), got.len());
    for (w, g) in want.iter().zip(&got) {
        assert_eq!(w, g, "oxcd's reply differs from etcd's");
    }
    // The session covers successes and failures alike.
    assert!(got.iter().any(|(status, _)| *status == 200));
    for status in [400, 401, 404, 405, 500] {
        assert!(got.iter().any(|(s, _)| *s == status), "no {status} reply");
    }
}

/// Reads stream lines until `n` of them carry events (or the stream stalls).
fn event_lines(stream: &mut Stream, n: usize) -> Vec<Value> {
    let mut lines = Vec::new();
    while lines
        .iter()
        .filter(|l: &&Value| l["result"]["events"].is_array())
        .count()
        < n
    {
        let Some(line) = stream.next_line() else {
            break;
        };
        let mut v: Value = serde_json::from_str(&line).expect("a JSON line");
        normalize(&mut v, &[]);
        lines.push(v);
    }
    lines
}

#[tokio::test]
async fn a_json_watch_streams_etcds_events() {
    let mut streams = Vec::new();
    let mut open_streams = Vec::new();
    let servers = [
        Server::start(Kind::Etcd, &[]),
        Server::start(Kind::Oxcd, &[]),
    ];
    for server in &servers {
        server.ready().await;
        let ep = server.endpoint();
        let create = format!(
            r#"{{"create_request":{{"key":"{}","range_end":"{}","prev_kv":true}}}}"#,
            b64("w/"),
            b64("w0")
        );
        let mut stream = Stream::open(&ep, "/v3/watch", &create);
        assert_eq!(stream.status, 200);
        // The first line says the watch was created; writes come after it.
        let created = stream.next_line().expect("created line");
        assert!(created.contains(r#""created":true"#), "{created}");
        for body in [
            format!(r#"{{"key":"{}","value":"{}"}}"#, b64("w/a"), b64("1")),
            format!(r#"{{"key":"{}","value":"{}"}}"#, b64("w/a"), b64("2")),
            format!(r#"{{"key":"{}","value":"{}"}}"#, b64("other"), b64("x")),
        ] {
            assert_eq!(http::post(&ep, "/v3/kv/put", &body).status, 200);
        }
        let del = format!(r#"{{"key":"{}","range_end":"{}"}}"#, b64("w/"), b64("w0"));
        assert_eq!(http::post(&ep, "/v3/kv/deleterange", &del).status, 200);
        streams.push(event_lines(&mut stream, 3));
        open_streams.push(stream);
    }
    let (want, got) = (&streams[0], &streams[1]);
    assert_eq!(want.len(), 3, "etcd's events: {want:?}");
    assert_eq!(want, got);

    // A client that goes away takes its watch with it (the request stream is held open
    // only while the reply is read).
    drop(open_streams);
    let oxcd = &servers[1];
    let within = std::time::Duration::from_secs(20);
    eventually("the watch outlived its client", within, || async {
        let (_, metrics) = oxcd_tests::http_get(&oxcd.endpoint(), "/metrics");
        metrics
            .lines()
            .any(|l| l == "etcd_debugging_mvcc_watcher_total 0")
    })
    .await;
}

/// The Python the tests run etcd3gw with: scripts/test.sh makes target/py.
fn python() -> PathBuf {
    if let Ok(p) = std::env::var("OXCD_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let p = root.join("target/py/bin/python3");
    assert!(
        p.exists(),
        "{} is missing: run ./scripts/test.sh, which installs etcd3gw from PyPI there",
        p.display()
    );
    p
}

const ETCD3GW_SESSION: &str = r#"
import sys, threading
from etcd3gw.client import Etcd3Client
from etcd3gw.utils import _encode

c = Etcd3Client(host="127.0.0.1", port=int(sys.argv[1]), api_path=None)
assert c.put("k1", "v1")
assert c.api_path == "/v3/", c.api_path
assert c.get("k1") == [b"v1"], c.get("k1")
assert c.put("k2", "v2")
got = sorted(v for v, _ in c.get_prefix("k"))
assert got == [b"v1", b"v2"], got

assert c.replace("k1", "v1", "v1b")
assert not c.replace("k1", "nope", "x")
assert c.get("k1") == [b"v1b"]
txn = c.transaction({
    "compare": [{"key": _encode("k1"), "result": "EQUAL", "target": "VALUE", "value": _encode("v1b")}],
    "success": [{"request_put": {"key": _encode("kt"), "value": _encode("t")}}],
    "failure": [],
})
assert txn.get("succeeded") is True, txn
assert c.get("kt") == [b"t"]

lease = c.lease(ttl=30)
assert lease.ttl() > 0
assert c.put("leased", "x", lease=lease)
assert lease.keys() == [b"leased"], lease.keys()
assert lease.refresh() == 30
assert lease.revoke()
assert c.get("leased") == []

lock = c.lock(ttl=30)
assert lock.acquire()
assert lock.is_acquired()
assert lock.release()

events, cancel = c.watch("wk")
def writer():
    c.put("wk", "w1")
    c.delete("wk")
threading.Timer(0.5, writer).start()
seen = []
for ev in events:
    seen.append((ev.get("type", "PUT"), ev["kv"].get("value")))
    if len(seen) == 2:
        break
cancel()
assert seen == [("PUT", b"w1"), ("DELETE", None)], seen

assert c.delete("k1")
assert not c.delete("k1")
assert c.get("k1") == []
assert c.status()["header"]["revision"]
print("ok")
"#;

#[tokio::test]
async fn etcd3gw_from_pypi_works_against_oxcd() {
    let oxcd = Server::start(Kind::Oxcd, &[]);
    oxcd.ready().await;
    let out = tokio::process::Command::new(python())
        .arg("-c")
        .arg(ETCD3GW_SESSION)
        .arg(oxcd.client_port.to_string())
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), out)
        .await
        .expect("etcd3gw session within 60 s")
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim() == "ok",
        "etcd3gw session failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A JSON request over https, presenting `client`'s certificate: (status, body).
async fn post_tls(
    server: &Server,
    client: &oxcd_client::ClientTls,
    path: &str,
    body: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = oxcd_client::tls::client_config(client).expect("client TLS config");
    let uri: tonic::codegen::http::Uri = server.url().parse().expect("server URL");
    let mut conn = oxcd_client::dial::dial(&uri, None, Some(config))
        .await
        .expect("TLS connection")
        .into_inner();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        server.endpoint(),
        body.len()
    );
    conn.write_all(request.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    let _ = conn.read_to_end(&mut raw).await;
    http::status_and_body(&raw)
}

#[tokio::test]
async fn the_gateway_serves_https_and_refuses_a_certificate_cn_once_auth_is_on() {
    let pki = oxcd_tests::certs::Pki::new();
    let flags = pki.server_flags(false);
    let flag_refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    let root = pki.client(Some("root"));
    let oxcd = Server::start_tls(Kind::Oxcd, &flag_refs, root.clone());
    oxcd.ready().await;
    let put = format!(r#"{{"key":"{}","value":"{}"}}"#, b64("k"), b64("v"));
    assert_eq!(post_tls(&oxcd, &root, "/v3/kv/put", &put).await.0, 200);
    let range = format!(r#"{{"key":"{}"}}"#, b64("k"));
    let (status, body) = post_tls(&oxcd, &root, "/v3/kv/range", &range).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&b64("v")), "{body}");
    for (path, body) in [
        ("/v3/auth/role/add", r#"{"name":"root"}"#),
        ("/v3/auth/user/add", r#"{"name":"root","password":"pw"}"#),
        ("/v3/auth/user/grant", r#"{"user":"root","role":"root"}"#),
        ("/v3/auth/enable", "{}"),
    ] {
        let (status, reply) = post_tls(&oxcd, &root, path, body).await;
        assert_eq!(status, 200, "{path}: {reply}");
    }
    // As etcd: the gateway would not carry the certificate's CN, so it refuses the request.
    let (status, body) = post_tls(&oxcd, &root, "/v3/kv/range", &range).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("CommonName of client sending a request against gateway"),
        "{body}"
    );
}

/// A streaming JSON request that never ends one value (here a key that goes on and on) is
/// refused once it outgrows any request the server accepts: the call ends instead of the
/// gateway holding, and re-reading, an ever longer body.
#[tokio::test]
async fn a_json_stream_request_that_never_ends_is_cut_off() {
    use std::io::{Read, Write};
    let server = Server::start(Kind::Oxcd, &[]);
    server.ready().await;
    let mut conn = std::net::TcpStream::connect(server.endpoint()).expect("connect");
    conn.write_all(
        b"POST /v3/watch HTTP/1.1\r\nHost: oxcd\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .expect("head");
    let mut chunk = |data: &[u8]| {
        let mut c = format!("{:x}\r\n", data.len()).into_bytes();
        c.extend_from_slice(data);
        c.extend_from_slice(b"\r\n");
        // Once the server has given up on the request, it may stop reading.
        conn.write_all(&c).is_ok()
    };
    chunk(br#"{"create_request":{"key":""#);
    // 8 MiB of one key, well past the default request limit (1.5 MiB) however encoded.
    let piece = vec![b'A'; 64 * 1024];
    for _ in 0..128 {
        if !chunk(&piece) {
            break;
        }
    }
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    let ended = loop {
        match conn.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => {
                reply.extend_from_slice(&buf[..n]);
                if reply.ends_with(b"0\r\n\r\n") {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    assert!(
        ended,
        "the gateway still waits for the rest of the value: {}",
        String::from_utf8_lossy(&reply)
    );
    let mut kv = server.ready().await;
    kv.put(oxcd_tests::kv::put("still", "serving"))
        .await
        .expect("the server serves on");
}
