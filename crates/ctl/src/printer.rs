//! etcdctl's output formats (simple, json, fields, table) for the responses oxcdctl prints.

use crate::gofmt;
use base64::Engine;
use oxcd_api::etcdserverpb::{
    response_op, DeleteRangeResponse, HashKvResponse, Member, PutResponse, RangeResponse,
    ResponseHeader, StatusResponse, TxnResponse, WatchResponse,
};
use oxcd_api::mvccpb::KeyValue;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Simple,
    Json,
    Fields,
    Table,
    Protobuf,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        Some(match s {
            "simple" => Format::Simple,
            "json" => Format::Json,
            "fields" => Format::Fields,
            "table" => Format::Table,
            "protobuf" => Format::Protobuf,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Simple => "simple",
            Format::Json => "json",
            Format::Fields => "fields",
            Format::Table => "table",
            Format::Protobuf => "protobuf",
        }
    }
}

pub struct EndpointHealth {
    pub endpoint: String,
    pub health: bool,
    pub took: String,
    pub error: String,
}

pub struct EndpointStatus {
    pub endpoint: String,
    pub status: StatusResponse,
}

pub struct EndpointHashKv {
    pub endpoint: String,
    pub resp: HashKvResponse,
}

/// Output collected as text so commands can be tested and printed in one go.
#[derive(Default)]
pub struct Out {
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn line(&mut self, s: impl AsRef<str>) {
        self.stdout.push_str(s.as_ref());
        self.stdout.push('\n');
    }

    /// Writes what is collected so far, for commands that print as they go (watch, lock,
    /// elect).
    pub fn flush(&mut self) {
        use std::io::Write;
        let _ = std::io::stdout().write_all(self.stdout.as_bytes());
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().write_all(self.stderr.as_bytes());
        self.stdout.clear();
        self.stderr.clear();
    }
}

pub struct Printer {
    pub format: Format,
    pub hex: bool,
    pub value_only: bool,
}

// --- Go encoding/json of the protobuf structs (omitempty, bytes as base64) ---

fn put_i64(m: &mut Map<String, Value>, k: &str, v: i64) {
    if v != 0 {
        m.insert(k.into(), json!(v));
    }
}

fn put_u64(m: &mut Map<String, Value>, k: &str, v: u64) {
    if v != 0 {
        m.insert(k.into(), json!(v));
    }
}

fn put_bytes(m: &mut Map<String, Value>, k: &str, v: &[u8]) {
    if !v.is_empty() {
        m.insert(
            k.into(),
            json!(base64::engine::general_purpose::STANDARD.encode(v)),
        );
    }
}

fn put_bool(m: &mut Map<String, Value>, k: &str, v: bool) {
    if v {
        m.insert(k.into(), json!(true));
    }
}

pub(crate) fn header_json(h: &Option<ResponseHeader>) -> Option<Value> {
    let h = h.as_ref()?;
    let mut m = Map::new();
    put_u64(&mut m, "cluster_id", h.cluster_id);
    put_u64(&mut m, "member_id", h.member_id);
    put_i64(&mut m, "revision", h.revision);
    put_u64(&mut m, "raft_term", h.raft_term);
    Some(Value::Object(m))
}

fn kv_json(kv: &KeyValue) -> Value {
    let mut m = Map::new();
    put_bytes(&mut m, "key", &kv.key);
    put_i64(&mut m, "create_revision", kv.create_revision);
    put_i64(&mut m, "mod_revision", kv.mod_revision);
    put_i64(&mut m, "version", kv.version);
    put_bytes(&mut m, "value", &kv.value);
    put_i64(&mut m, "lease", kv.lease);
    Value::Object(m)
}

fn with_header(h: &Option<ResponseHeader>) -> Map<String, Value> {
    let mut m = Map::new();
    if let Some(h) = header_json(h) {
        m.insert("header".into(), h);
    }
    m
}

fn kvs_json(m: &mut Map<String, Value>, k: &str, kvs: &[KeyValue]) {
    if !kvs.is_empty() {
        m.insert(k.into(), Value::Array(kvs.iter().map(kv_json).collect()));
    }
}

pub fn range_json(r: &RangeResponse) -> Value {
    let mut m = with_header(&r.header);
    kvs_json(&mut m, "kvs", &r.kvs);
    put_bool(&mut m, "more", r.more);
    put_i64(&mut m, "count", r.count);
    Value::Object(m)
}

pub fn put_json(r: &PutResponse) -> Value {
    let mut m = with_header(&r.header);
    if let Some(kv) = &r.prev_kv {
        m.insert("prev_kv".into(), kv_json(kv));
    }
    Value::Object(m)
}

pub fn delete_json(r: &DeleteRangeResponse) -> Value {
    let mut m = with_header(&r.header);
    put_i64(&mut m, "deleted", r.deleted);
    kvs_json(&mut m, "prev_kvs", &r.prev_kvs);
    Value::Object(m)
}

pub fn txn_json(r: &TxnResponse) -> Value {
    let mut m = with_header(&r.header);
    put_bool(&mut m, "succeeded", r.succeeded);
    if !r.responses.is_empty() {
        let ops = r
            .responses
            .iter()
            .map(|op| {
                let inner = match &op.response {
                    Some(response_op::Response::ResponseRange(x)) => {
                        json!({ "ResponseRange": range_json(x) })
                    }
                    Some(response_op::Response::ResponsePut(x)) => {
                        json!({ "ResponsePut": put_json(x) })
                    }
                    Some(response_op::Response::ResponseDeleteRange(x)) => {
                        json!({ "ResponseDeleteRange": delete_json(x) })
                    }
                    Some(response_op::Response::ResponseTxn(x)) => {
                        json!({ "ResponseTxn": txn_json(x) })
                    }
                    None => Value::Null,
                };
                json!({ "Response": inner })
            })
            .collect();
        m.insert("responses".into(), Value::Array(ops));
    }
    Value::Object(m)
}

fn status_json(s: &StatusResponse) -> Value {
    let mut m = with_header(&s.header);
    if !s.version.is_empty() {
        m.insert("version".into(), json!(s.version));
    }
    put_i64(&mut m, "dbSize", s.db_size);
    put_u64(&mut m, "leader", s.leader);
    put_u64(&mut m, "raftIndex", s.raft_index);
    put_u64(&mut m, "raftTerm", s.raft_term);
    put_u64(&mut m, "raftAppliedIndex", s.raft_applied_index);
    if !s.errors.is_empty() {
        m.insert("errors".into(), json!(s.errors));
    }
    put_i64(&mut m, "dbSizeInUse", s.db_size_in_use);
    put_bool(&mut m, "isLearner", s.is_learner);
    Value::Object(m)
}

fn member_json(mb: &Member) -> Value {
    let mut m = Map::new();
    put_u64(&mut m, "ID", mb.id);
    if !mb.name.is_empty() {
        m.insert("name".into(), json!(mb.name));
    }
    if !mb.peer_ur_ls.is_empty() {
        m.insert("peerURLs".into(), json!(mb.peer_ur_ls));
    }
    if !mb.client_ur_ls.is_empty() {
        m.insert("clientURLs".into(), json!(mb.client_ur_ls));
    }
    put_bool(&mut m, "isLearner", mb.is_learner);
    Value::Object(m)
}

/// Go's `fmt.Println` of a []string: `[a b]`.
fn go_slice(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// tablewriter as etcdctl sets it up: centred upper-case header, right-aligned cells.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = header
        .iter()
        .enumerate()
        .map(|(i, h)| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain(std::iter::once(h.len()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let rule = format!(
        "+{}+\n",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("+")
    );
    let mut out = rule.clone();
    let cells: Vec<String> = header
        .iter()
        .zip(&widths)
        .map(|(h, w)| {
            let h = h.to_uppercase();
            let pad = w - h.len();
            format!(
                " {}{}{} ",
                " ".repeat(pad / 2),
                h,
                " ".repeat(pad - pad / 2)
            )
        })
        .collect();
    out.push_str(&format!("|{}|\n", cells.join("|")));
    out.push_str(&rule);
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!(" {c:>w$} "))
            .collect();
        out.push_str(&format!("|{}|\n", cells.join("|")));
    }
    if !rows.is_empty() {
        out.push_str(&rule);
    }
    out
}

pub fn unsupported(format: Format) -> String {
    format!("{} not supported as output format", format.name())
}

impl Printer {
    fn kv_simple(&self, out: &mut Out, kv: &KeyValue) {
        let (k, v) = if self.hex {
            (gofmt::hex(&kv.key), gofmt::hex(&kv.value))
        } else {
            (
                String::from_utf8_lossy(&kv.key).into_owned(),
                String::from_utf8_lossy(&kv.value).into_owned(),
            )
        };
        if !self.value_only {
            out.line(k);
        }
        out.line(v);
    }

    fn hdr_fields(out: &mut Out, h: &Option<ResponseHeader>) {
        let h = (*h).unwrap_or_default();
        out.line(format!("\"ClusterID\" : {}", h.cluster_id));
        out.line(format!("\"MemberID\" : {}", h.member_id));
        out.line(format!("\"Revision\" : {}", h.revision));
        out.line(format!("\"RaftTerm\" : {}", h.raft_term));
    }

    fn kv_fields(out: &mut Out, pfx: &str, kv: &KeyValue) {
        out.line(format!("\"{pfx}Key\" : {}", gofmt::quote(&kv.key)));
        out.line(format!("\"{pfx}CreateRevision\" : {}", kv.create_revision));
        out.line(format!("\"{pfx}ModRevision\" : {}", kv.mod_revision));
        out.line(format!("\"{pfx}Version\" : {}", kv.version));
        out.line(format!("\"{pfx}Value\" : {}", gofmt::quote(&kv.value)));
        out.line(format!("\"{pfx}Lease\" : {}", kv.lease));
    }

    /// Prints `value` for json; `Err` when the format cannot show this response.
    fn json(&self, out: &mut Out, value: Value) -> Result<(), String> {
        out.line(value.to_string());
        Ok(())
    }

    pub fn get(&self, out: &mut Out, r: &RangeResponse) -> Result<(), String> {
        match self.format {
            Format::Simple => {
                for kv in &r.kvs {
                    self.kv_simple(out, kv);
                }
                Ok(())
            }
            Format::Json => self.json(out, range_json(r)),
            Format::Fields => {
                Self::hdr_fields(out, &r.header);
                for kv in &r.kvs {
                    Self::kv_fields(out, "", kv);
                }
                out.line(format!("\"More\" : {}", r.more));
                out.line(format!("\"Count\" : {}", r.count));
                Ok(())
            }
            f => Err(unsupported(f)),
        }
    }

    pub fn put(&self, out: &mut Out, r: &PutResponse) -> Result<(), String> {
        match self.format {
            Format::Simple => {
                out.line("OK");
                if let Some(kv) = &r.prev_kv {
                    self.kv_simple(out, kv);
                }
                Ok(())
            }
            Format::Json => self.json(out, put_json(r)),
            Format::Fields => {
                Self::hdr_fields(out, &r.header);
                if let Some(kv) = &r.prev_kv {
                    Self::kv_fields(out, "Prev", kv);
                }
                Ok(())
            }
            f => Err(unsupported(f)),
        }
    }

    pub fn del(&self, out: &mut Out, r: &DeleteRangeResponse) -> Result<(), String> {
        match self.format {
            Format::Simple => {
                out.line(r.deleted.to_string());
                for kv in &r.prev_kvs {
                    self.kv_simple(out, kv);
                }
                Ok(())
            }
            Format::Json => self.json(out, delete_json(r)),
            Format::Fields => {
                Self::hdr_fields(out, &r.header);
                out.line(format!("\"Deleted\" : {}", r.deleted));
                for kv in &r.prev_kvs {
                    Self::kv_fields(out, "Prev", kv);
                }
                Ok(())
            }
            f => Err(unsupported(f)),
        }
    }

    pub fn txn(&self, out: &mut Out, r: &TxnResponse) -> Result<(), String> {
        match self.format {
            Format::Simple => {
                out.line(if r.succeeded { "SUCCESS" } else { "FAILURE" });
                for op in &r.responses {
                    out.line("");
                    match &op.response {
                        Some(response_op::Response::ResponseDeleteRange(x)) => self.del(out, x)?,
                        Some(response_op::Response::ResponsePut(x)) => self.put(out, x)?,
                        Some(response_op::Response::ResponseRange(x)) => self.get(out, x)?,
                        other => out.line(format!("unexpected response {other:?}")),
                    }
                }
                Ok(())
            }
            Format::Json => self.json(out, txn_json(r)),
            Format::Fields => {
                Self::hdr_fields(out, &r.header);
                out.line(format!("\"Succeeded\" : {}", r.succeeded));
                for op in &r.responses {
                    match &op.response {
                        Some(response_op::Response::ResponseDeleteRange(x)) => self.del(out, x)?,
                        Some(response_op::Response::ResponsePut(x)) => self.put(out, x)?,
                        Some(response_op::Response::ResponseRange(x)) => self.get(out, x)?,
                        other => out.line(format!(
                            "\"Unknown\" : {}",
                            gofmt::quote(format!("{other:?}").as_bytes())
                        )),
                    }
                }
                Ok(())
            }
            f => Err(unsupported(f)),
        }
    }

    pub fn endpoint_health(&self, out: &mut Out, hs: &[EndpointHealth]) -> Result<(), String> {
        match self.format {
            Format::Simple => {
                for h in hs {
                    if h.error.is_empty() {
                        out.stderr.push_str(&format!(
                            "{} is healthy: successfully committed proposal: took = {}\n",
                            h.endpoint, h.took
                        ));
                    } else {
                        out.stderr.push_str(&format!(
                            "{} is unhealthy: failed to commit proposal: {}\n",
                            h.endpoint, h.error
                        ));
                    }
                }
                Ok(())
            }
            Format::Json => {
                let v: Vec<Value> = hs
                    .iter()
                    .map(|h| {
                        let mut m = Map::new();
                        m.insert("endpoint".into(), json!(h.endpoint));
                        m.insert("health".into(), json!(h.health));
                        m.insert("took".into(), json!(h.took));
                        if !h.error.is_empty() {
                            m.insert("error".into(), json!(h.error));
                        }
                        Value::Object(m)
                    })
                    .collect();
                self.json(out, Value::Array(v))
            }
            Format::Fields => {
                for h in hs {
                    out.line(format!(
                        "\"Endpoint\" : {}",
                        gofmt::quote(h.endpoint.as_bytes())
                    ));
                    out.line(format!("\"Health\" : {}", h.health));
                    out.line(format!("\"Took\" : {}", h.took));
                    out.line(format!("\"Error\" : {}", h.error));
                    out.line("");
                }
                Ok(())
            }
            Format::Table => {
                let rows: Vec<Vec<String>> = hs
                    .iter()
                    .map(|h| {
                        vec![
                            h.endpoint.clone(),
                            h.health.to_string(),
                            h.took.clone(),
                            h.error.clone(),
                        ]
                    })
                    .collect();
                out.stdout
                    .push_str(&table(&["endpoint", "health", "took", "error"], &rows));
                Ok(())
            }
            f => Err(unsupported(f)),
        }
    }

    fn status_rows(list: &[EndpointStatus]) -> Vec<Vec<String>> {
        list.iter()
            .map(|e| {
                let s = &e.status;
                let member = s.header.as_ref().map_or(0, |h| h.member_id);
                vec![
                    e.endpoint.clone(),
                    format!("{member:x}"),
                    s.version.clone(),
                    gofmt::humanize_bytes(s.db_size.max(0) as u64),
                    (s.leader == member).to_string(),
                    s.is_learner.to_string(),
                    s.raft_term.to_string(),
                    s.raft_index.to_string(),
                    s.raft_applied_index.to_string(),
                    s.errors.join(", "),
                ]
            })
            .collect()
    }

    pub fn endpoint_status(&self, out: &mut Out, list: &[EndpointStatus]) -> Result<(), String> {
        match self.format {
            Format::Simple => {
                for row in Self::status_rows(list) {
                    out.line(row.join(", "));
                }
                Ok(())
            }
            Format::Json => {
                let v: Vec<Value> = list
                    .iter()
                    .map(|e| json!({ "Endpoint": e.endpoint, "Status": status_json(&e.status) }))
                    .collect();
                self.json(out, Value::Array(v))
            }
            Format::Fields => {
                for e in list {
                    let s = &e.status;
                    Self::hdr_fields(out, &s.header);
                    out.line(format!(
                        "\"Version\" : {}",
                        gofmt::quote(s.version.as_bytes())
                    ));
                    out.line(format!("\"DBSize\" : {}", s.db_size));
                    out.line(format!("\"Leader\" : {}", s.leader));
                    out.line(format!("\"IsLearner\" : {}", s.is_learner));
                    out.line(format!("\"RaftIndex\" : {}", s.raft_index));
                    out.line(format!("\"RaftTerm\" : {}", s.raft_term));
                    out.line(format!("\"RaftAppliedIndex\" : {}", s.raft_applied_index));
                    out.line(format!("\"Errors\" : {}", go_slice(&s.errors)));
                    out.line(format!(
                        "\"Endpoint\" : {}",
                        gofmt::quote(e.endpoint.as_bytes())
                    ));
                    out.line("");
                }
                Ok(())
            }
            Format::Table => {
                let header = [
                    "endpoint",
                    "ID",
                    "version",
                    "db size",
                    "is leader",
                    "is learner",
                    "raft term",
                    "raft index",
                    "raft applied index",
                    "errors",
                ];
                out.stdout
                    .push_str(&table(&header, &Self::status_rows(list)));
                Ok(())
            }
            f => Err(unsupported(f)),
        }
    }

    pub fn member_list(
        &self,
        out: &mut Out,
        header: &Option<ResponseHeader>,
        members: &[Member],
    ) -> Result<(), String> {
        let rows: Vec<Vec<String>> = members
            .iter()
            .map(|m| {
                let status = if m.name.is_empty() {
                    "unstarted"
                } else {
                    "started"
                };
                vec![
                    format!("{:x}", m.id),
                    status.to_string(),
                    m.name.clone(),
                    m.peer_ur_ls.join(","),
                    m.client_ur_ls.join(","),
                    m.is_learner.to_string(),
                ]
            })
            .collect();
        match self.format {
            Format::Simple => {
                for r in rows {
                    out.line(r.join(", "));
                }
                Ok(())
            }
            Format::Json => {
                let mut m = with_header(header);
                m.insert(
                    "members".into(),
                    Value::Array(members.iter().map(member_json).collect()),
                );
                self.json(out, Value::Object(m))
            }
            Format::Fields => {
                Self::hdr_fields(out, header);
                for m in members {
                    out.line(format!("\"ID\" : {}", m.id));
                    out.line(format!("\"Name\" : {}", gofmt::quote(m.name.as_bytes())));
                    for u in &m.peer_ur_ls {
                        out.line(format!("\"PeerURL\" : {}", gofmt::quote(u.as_bytes())));
                    }
                    for u in &m.client_ur_ls {
                        out.line(format!("\"ClientURL\" : {}", gofmt::quote(u.as_bytes())));
                    }
                    out.line(format!("\"IsLearner\" : {}", m.is_learner));
                    out.line("");
                }
                Ok(())
            }
            Format::Table => {
                let header = [
                    "ID",
                    "status",
                    "name",
                    "peer addrs",
                    "client addrs",
                    "is learner",
                ];
                out.stdout.push_str(&table(&header, &rows));
                Ok(())
            }
            f => Err(unsupported(f)),
        }
    }

    /// MemberAdd/Remove/Update/Promote: `what` is "added to", "removed from", ...
    pub fn member_changed(
        &self,
        out: &mut Out,
        what: &str,
        id: u64,
        header: &Option<ResponseHeader>,
        member: Option<&Member>,
        members: &[Member],
    ) -> Result<(), String> {
        match self.format {
            Format::Simple => {
                let cluster = header.map_or(0, |h| h.cluster_id);
                out.line(format!("Member {id:16x} {what} cluster {cluster:16x}"));
                Ok(())
            }
            Format::Json => {
                let mut m = with_header(header);
                if let Some(mb) = member {
                    m.insert("member".into(), member_json(mb));
                }
                if !members.is_empty() {
                    m.insert(
                        "members".into(),
                        Value::Array(members.iter().map(member_json).collect()),
                    );
                }
                self.json(out, Value::Object(m))
            }
            f => Err(unsupported(f)),
        }
    }

    pub fn endpoint_hashkv(&self, out: &mut Out, list: &[EndpointHashKv]) -> Result<(), String> {
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|h| vec![h.endpoint.clone(), h.resp.hash.to_string()])
            .collect();
        match self.format {
            Format::Simple => {
                for r in rows {
                    out.line(r.join(", "));
                }
                Ok(())
            }
            Format::Json => {
                let v: Vec<Value> = list
                    .iter()
                    .map(|h| {
                        let mut m = with_header(&h.resp.header);
                        put_u64(&mut m, "hash", u64::from(h.resp.hash));
                        put_i64(&mut m, "compact_revision", h.resp.compact_revision);
                        json!({ "Endpoint": h.endpoint, "HashKV": Value::Object(m) })
                    })
                    .collect();
                self.json(out, Value::Array(v))
            }
            Format::Fields => {
                for h in list {
                    Self::hdr_fields(out, &h.resp.header);
                    out.line(format!(
                        "\"Endpoint\" : {}",
                        gofmt::quote(h.endpoint.as_bytes())
                    ));
                    out.line(format!("\"Hash\" : {}", h.resp.hash));
                    out.line("");
                }
                Ok(())
            }
            Format::Table => {
                out.stdout.push_str(&table(&["endpoint", "hash"], &rows));
                Ok(())
            }
            f => Err(unsupported(f)),
        }
    }

    pub fn move_leader(
        &self,
        out: &mut Out,
        leader: u64,
        target: u64,
        header: &Option<ResponseHeader>,
    ) -> Result<(), String> {
        match self.format {
            Format::Simple => {
                out.line(format!(
                    "Leadership transferred from {leader:x} to {target:x}"
                ));
                Ok(())
            }
            Format::Json => self.json(out, Value::Object(with_header(header))),
            f => Err(unsupported(f)),
        }
    }

    /// One watch response's events, as etcdctl prints them.
    pub fn watch(&self, out: &mut Out, r: &WatchResponse) -> Result<(), String> {
        let kind = |e: &oxcd_api::mvccpb::Event| match e.r#type() {
            oxcd_api::mvccpb::event::EventType::Put => "PUT",
            oxcd_api::mvccpb::event::EventType::Delete => "DELETE",
        };
        match self.format {
            Format::Simple => {
                for e in &r.events {
                    out.line(kind(e));
                    if let Some(prev) = &e.prev_kv {
                        self.kv_simple(out, prev);
                    }
                    self.kv_simple(out, &e.kv.clone().unwrap_or_default());
                }
                Ok(())
            }
            Format::Fields => {
                Self::hdr_fields(out, &r.header);
                for e in &r.events {
                    out.line(format!("\"Type\" : {}", kind(e)));
                    if let Some(prev) = &e.prev_kv {
                        Self::kv_fields(out, "Prev", prev);
                    }
                    Self::kv_fields(out, "", &e.kv.clone().unwrap_or_default());
                }
                Ok(())
            }
            f => Err(unsupported(f)),
        }
    }
}
