//! `--write-out=json`: the responses as Go's encoding/json writes etcd's protobuf structs
//! (omitempty, bytes as base64), one line each.

use super::{EndpointHashKv, EndpointHealth, EndpointStatus, Format, MemberChange, Out, Printer};
use crate::error::Result;
use base64::Engine;
use oxcd_api::etcdserverpb::{
    response_op, AlarmMember, DeleteRangeResponse, Member, PutResponse, RangeResponse,
    ResponseHeader, StatusResponse, TxnResponse,
};
use oxcd_api::mvccpb::KeyValue;
use oxcd_api::MemberId;
use serde_json::{json, Map, Value};

pub struct Json;

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

fn header_json(h: &Option<ResponseHeader>) -> Option<Value> {
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

fn range_json(r: &RangeResponse) -> Value {
    let mut m = with_header(&r.header);
    kvs_json(&mut m, "kvs", &r.kvs);
    put_bool(&mut m, "more", r.more);
    put_i64(&mut m, "count", r.count);
    Value::Object(m)
}

fn put_json(r: &PutResponse) -> Value {
    let mut m = with_header(&r.header);
    if let Some(kv) = &r.prev_kv {
        m.insert("prev_kv".into(), kv_json(kv));
    }
    Value::Object(m)
}

fn delete_json(r: &DeleteRangeResponse) -> Value {
    let mut m = with_header(&r.header);
    put_i64(&mut m, "deleted", r.deleted);
    kvs_json(&mut m, "prev_kvs", &r.prev_kvs);
    Value::Object(m)
}

fn txn_json(r: &TxnResponse) -> Value {
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

fn members_json(members: &[Member]) -> Value {
    Value::Array(members.iter().map(member_json).collect())
}

fn print(out: &mut Out, value: Value) -> Result<()> {
    out.line(value.to_string());
    Ok(())
}

impl Printer for Json {
    fn format(&self) -> Format {
        Format::Json
    }

    fn get(&self, out: &mut Out, r: &RangeResponse) -> Result<()> {
        print(out, range_json(r))
    }

    fn put(&self, out: &mut Out, r: &PutResponse) -> Result<()> {
        print(out, put_json(r))
    }

    fn del(&self, out: &mut Out, r: &DeleteRangeResponse) -> Result<()> {
        print(out, delete_json(r))
    }

    fn txn(&self, out: &mut Out, r: &TxnResponse) -> Result<()> {
        print(out, txn_json(r))
    }

    fn member_list(
        &self,
        out: &mut Out,
        header: &Option<ResponseHeader>,
        members: &[Member],
    ) -> Result<()> {
        let mut m = with_header(header);
        m.insert("members".into(), members_json(members));
        print(out, Value::Object(m))
    }

    fn member_changed(&self, out: &mut Out, c: &MemberChange) -> Result<()> {
        let mut m = with_header(c.header);
        if let Some(mb) = c.member {
            m.insert("member".into(), member_json(mb));
        }
        if !c.members.is_empty() {
            m.insert("members".into(), members_json(c.members));
        }
        print(out, Value::Object(m))
    }

    fn move_leader(
        &self,
        out: &mut Out,
        _leader: MemberId,
        _target: MemberId,
        header: &Option<ResponseHeader>,
    ) -> Result<()> {
        print(out, Value::Object(with_header(header)))
    }

    fn endpoint_health(&self, out: &mut Out, hs: &[EndpointHealth]) -> Result<()> {
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
        print(out, Value::Array(v))
    }

    fn endpoint_status(&self, out: &mut Out, list: &[EndpointStatus]) -> Result<()> {
        let v: Vec<Value> = list
            .iter()
            .map(|e| json!({ "Endpoint": e.endpoint, "Status": status_json(&e.status) }))
            .collect();
        print(out, Value::Array(v))
    }

    fn endpoint_hashkv(&self, out: &mut Out, list: &[EndpointHashKv]) -> Result<()> {
        let v: Vec<Value> = list
            .iter()
            .map(|h| {
                let mut m = with_header(&h.resp.header);
                put_u64(&mut m, "hash", u64::from(h.resp.hash));
                put_i64(&mut m, "compact_revision", h.resp.compact_revision);
                json!({ "Endpoint": h.endpoint, "HashKV": Value::Object(m) })
            })
            .collect();
        print(out, Value::Array(v))
    }

    fn auth(&self, out: &mut Out, _text: &str, fields: Value, header: &Option<ResponseHeader>) {
        let mut v = json!({});
        if let Some(h) = header_json(header) {
            v["header"] = h;
        }
        if let (Some(obj), Some(extra)) = (v.as_object_mut(), fields.as_object()) {
            for (k, val) in extra {
                obj.insert(k.clone(), val.clone());
            }
        }
        out.line(v.to_string());
    }

    fn alarms(&self, out: &mut Out, header: &Option<ResponseHeader>, alarms: &[AlarmMember]) {
        let mut m = with_header(header);
        if !alarms.is_empty() {
            let list: Vec<Value> = alarms
                .iter()
                .map(|a| {
                    let mut e = Map::new();
                    e.insert("memberID".into(), json!(a.member_id));
                    if a.alarm != 0 {
                        e.insert("alarm".into(), json!(a.alarm));
                    }
                    Value::Object(e)
                })
                .collect();
            m.insert("alarms".into(), Value::Array(list));
        }
        out.line(Value::Object(m).to_string());
    }
}
