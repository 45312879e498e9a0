//! A small HTTP/1.1 client for the JSON gateway tests: raw requests on a socket, as curl
//! sends them, with chunked replies decoded, and streamed replies read line by line.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The status code and body of a whole reply read from a closed connection (no chunking).
pub fn status_and_body(raw: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("reply is not JSON ({e}): {:?}", self.body))
    }
}

fn send(
    host_port: &str,
    method: &str,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> BufReader<TcpStream> {
    let mut s = TcpStream::connect(host_port).expect("connect for HTTP");
    let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
    // A Host among `headers` replaces the address's.
    let host = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("host"))
        .map_or(host_port, |(_, value)| *value);
    let headers: Vec<_> = headers
        .iter()
        .filter(|(name, _)| !name.eq_ignore_ascii_case("host"))
        .collect();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("send HTTP request");
    BufReader::new(s)
}

fn read_head(r: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    r.read_line(&mut line).expect("status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((n, v)) = line.trim_end().split_once(':') {
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    (status, headers)
}

fn is_chunked(headers: &[(String, String)]) -> bool {
    headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    })
}

/// One chunk of a chunked body; None at its end (trailers are skipped).
fn read_chunk(r: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut size_line = String::new();
    if r.read_line(&mut size_line).ok()? == 0 {
        return None;
    }
    let size = usize::from_str_radix(size_line.trim().split(';').next()?, 16).ok()?;
    if size == 0 {
        return None;
    }
    let mut chunk = vec![0; size + 2];
    r.read_exact(&mut chunk).ok()?;
    chunk.truncate(size);
    Some(chunk)
}

/// A request answered in full.
pub fn request(
    host_port: &str,
    method: &str,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut extra = headers.to_vec();
    extra.push(("Connection", "close"));
    let mut r = send(host_port, method, path, body, &extra);
    let (status, headers) = read_head(&mut r);
    let mut raw = Vec::new();
    if is_chunked(&headers) {
        while let Some(chunk) = read_chunk(&mut r) {
            raw.extend_from_slice(&chunk);
        }
    } else {
        let _ = r.read_to_end(&mut raw);
    }
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&raw).into_owned(),
    }
}

pub fn post(host_port: &str, path: &str, body: &str) -> Reply {
    request(host_port, "POST", path, body, &[])
}

/// A streamed reply (watch, observe), read one line (one JSON object) at a time.
pub struct Stream {
    reader: BufReader<TcpStream>,
    pending: Vec<u8>,
    pub status: u16,
}

impl Stream {
    pub fn open(host_port: &str, path: &str, body: &str) -> Stream {
        let mut reader = send(host_port, "POST", path, body, &[]);
        let (status, _) = read_head(&mut reader);
        Stream {
            reader,
            pending: Vec::new(),
            status,
        }
    }

    /// The next line, or None when the stream ends or nothing comes within the read
    /// timeout.
    pub fn next_line(&mut self) -> Option<String> {
        loop {
            if let Some(at) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=at).collect();
                return Some(String::from_utf8_lossy(&line).trim().to_string());
            }
            let chunk = read_chunk(&mut self.reader)?;
            self.pending.extend_from_slice(&chunk);
        }
    }
}

/// A request to a server that may be down or stopped: its reply, or None if it does not
/// answer within 2 s.
pub fn try_request(
    host_port: &str,
    method: &str,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> Option<Reply> {
    let addr = host_port.parse().ok()?;
    let wait = Duration::from_secs(2);
    let mut s = TcpStream::connect_timeout(&addr, wait).ok()?;
    s.set_read_timeout(Some(wait)).ok()?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host_port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Some(Reply {
        status,
        headers: vec![],
        body,
    })
}
