//! `--write-out=fields`: one `"Name" : value` line a field (etcdctl's printer_fields.go).

use super::{EndpointHashKv, EndpointHealth, EndpointStatus, Format, Out, Printer};
use crate::error::Result;
use crate::gofmt::quote;
use oxcd_api::etcdserverpb::{
    response_op, DeleteRangeResponse, Member, PutResponse, RangeResponse, ResponseHeader,
    TxnResponse, WatchResponse,
};
use oxcd_api::mvccpb::KeyValue;

pub struct Fields;

fn header(out: &mut Out, h: &Option<ResponseHeader>) {
    let h = (*h).unwrap_or_default();
    out.line(format!("\"ClusterID\" : {}", h.cluster_id));
    out.line(format!("\"MemberID\" : {}", h.member_id));
    out.line(format!("\"Revision\" : {}", h.revision));
    out.line(format!("\"RaftTerm\" : {}", h.raft_term));
}

fn kv(out: &mut Out, pfx: &str, kv: &KeyValue) {
    out.line(format!("\"{pfx}Key\" : {}", quote(&kv.key)));
    out.line(format!("\"{pfx}CreateRevision\" : {}", kv.create_revision));
    out.line(format!("\"{pfx}ModRevision\" : {}", kv.mod_revision));
    out.line(format!("\"{pfx}Version\" : {}", kv.version));
    out.line(format!("\"{pfx}Value\" : {}", quote(&kv.value)));
    out.line(format!("\"{pfx}Lease\" : {}", kv.lease));
}

fn endpoint(out: &mut Out, endpoint: &str) {
    out.line(format!("\"Endpoint\" : {}", quote(endpoint.as_bytes())));
}

/// Go's `fmt.Println` of a []string: `[a b]`.
fn go_slice(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

impl Printer for Fields {
    fn format(&self) -> Format {
        Format::Fields
    }

    fn get(&self, out: &mut Out, r: &RangeResponse) -> Result<()> {
        header(out, &r.header);
        for x in &r.kvs {
            kv(out, "", x);
        }
        out.line(format!("\"More\" : {}", r.more));
        out.line(format!("\"Count\" : {}", r.count));
        Ok(())
    }

    fn put(&self, out: &mut Out, r: &PutResponse) -> Result<()> {
        header(out, &r.header);
        if let Some(x) = &r.prev_kv {
            kv(out, "Prev", x);
        }
        Ok(())
    }

    fn del(&self, out: &mut Out, r: &DeleteRangeResponse) -> Result<()> {
        header(out, &r.header);
        out.line(format!("\"Deleted\" : {}", r.deleted));
        for x in &r.prev_kvs {
            kv(out, "Prev", x);
        }
        Ok(())
    }

    fn txn(&self, out: &mut Out, r: &TxnResponse) -> Result<()> {
        header(out, &r.header);
        out.line(format!("\"Succeeded\" : {}", r.succeeded));
        for op in &r.responses {
            match &op.response {
                Some(response_op::Response::ResponseDeleteRange(x)) => self.del(out, x)?,
                Some(response_op::Response::ResponsePut(x)) => self.put(out, x)?,
                Some(response_op::Response::ResponseRange(x)) => self.get(out, x)?,
                other => out.line(format!(
                    "\"Unknown\" : {}",
                    quote(format!("{other:?}").as_bytes())
                )),
            }
        }
        Ok(())
    }

    fn watch(&self, out: &mut Out, r: &WatchResponse) -> Result<()> {
        header(out, &r.header);
        for e in &r.events {
            out.line(format!("\"Type\" : {}", super::event_type(e)));
            if let Some(prev) = &e.prev_kv {
                kv(out, "Prev", prev);
            }
            kv(out, "", &e.kv.clone().unwrap_or_default());
        }
        Ok(())
    }

    fn member_list(
        &self,
        out: &mut Out,
        h: &Option<ResponseHeader>,
        members: &[Member],
    ) -> Result<()> {
        header(out, h);
        for m in members {
            out.line(format!("\"ID\" : {}", m.id));
            out.line(format!("\"Name\" : {}", quote(m.name.as_bytes())));
            for u in &m.peer_ur_ls {
                out.line(format!("\"PeerURL\" : {}", quote(u.as_bytes())));
            }
            for u in &m.client_ur_ls {
                out.line(format!("\"ClientURL\" : {}", quote(u.as_bytes())));
            }
            out.line(format!("\"IsLearner\" : {}", m.is_learner));
            out.line("");
        }
        Ok(())
    }

    fn endpoint_health(&self, out: &mut Out, hs: &[EndpointHealth]) -> Result<()> {
        for h in hs {
            endpoint(out, &h.endpoint);
            out.line(format!("\"Health\" : {}", h.health));
            out.line(format!("\"Took\" : {}", h.took));
            out.line(format!("\"Error\" : {}", h.error));
            out.line("");
        }
        Ok(())
    }

    fn endpoint_status(&self, out: &mut Out, list: &[EndpointStatus]) -> Result<()> {
        for e in list {
            let s = &e.status;
            header(out, &s.header);
            out.line(format!("\"Version\" : {}", quote(s.version.as_bytes())));
            out.line(format!("\"DBSize\" : {}", s.db_size));
            out.line(format!("\"Leader\" : {}", s.leader));
            out.line(format!("\"IsLearner\" : {}", s.is_learner));
            out.line(format!("\"RaftIndex\" : {}", s.raft_index));
            out.line(format!("\"RaftTerm\" : {}", s.raft_term));
            out.line(format!("\"RaftAppliedIndex\" : {}", s.raft_applied_index));
            out.line(format!("\"Errors\" : {}", go_slice(&s.errors)));
            endpoint(out, &e.endpoint);
            out.line("");
        }
        Ok(())
    }

    fn endpoint_hashkv(&self, out: &mut Out, list: &[EndpointHashKv]) -> Result<()> {
        for h in list {
            header(out, &h.resp.header);
            endpoint(out, &h.endpoint);
            out.line(format!("\"Hash\" : {}", h.resp.hash));
            out.line("");
        }
        Ok(())
    }
}
