//! `--write-out=simple` (the default): etcdctl's printer_simple.go.

use super::{
    cluster_id, hashkv_rows, member_rows, status_rows, EndpointHashKv, EndpointHealth,
    EndpointStatus, Format, MemberChange, Out, Printer,
};
use crate::error::Result;
use crate::gofmt;
use oxcd_api::etcdserverpb::{
    response_op, DeleteRangeResponse, Member, MemberAddResponse, PutResponse, RangeResponse,
    ResponseHeader, TxnResponse, WatchResponse,
};
use oxcd_api::mvccpb::KeyValue;
use oxcd_api::MemberId;

pub struct Simple {
    /// `--hex`: keys and values as `\x..` escapes.
    pub hex: bool,
    /// `get --print-value-only`.
    pub value_only: bool,
}

impl Simple {
    fn kv(&self, out: &mut Out, kv: &KeyValue) {
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
}

fn lines(out: &mut Out, rows: Vec<Vec<String>>) {
    for row in rows {
        out.line(row.join(", "));
    }
}

impl Printer for Simple {
    fn format(&self) -> Format {
        Format::Simple
    }

    fn get(&self, out: &mut Out, r: &RangeResponse) -> Result<()> {
        for kv in &r.kvs {
            self.kv(out, kv);
        }
        Ok(())
    }

    fn put(&self, out: &mut Out, r: &PutResponse) -> Result<()> {
        out.line("OK");
        if let Some(kv) = &r.prev_kv {
            self.kv(out, kv);
        }
        Ok(())
    }

    fn del(&self, out: &mut Out, r: &DeleteRangeResponse) -> Result<()> {
        out.line(r.deleted.to_string());
        for kv in &r.prev_kvs {
            self.kv(out, kv);
        }
        Ok(())
    }

    fn txn(&self, out: &mut Out, r: &TxnResponse) -> Result<()> {
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

    fn watch(&self, out: &mut Out, r: &WatchResponse) -> Result<()> {
        for e in &r.events {
            out.line(super::event_type(e));
            if let Some(prev) = &e.prev_kv {
                self.kv(out, prev);
            }
            self.kv(out, &e.kv.clone().unwrap_or_default());
        }
        Ok(())
    }

    fn member_list(
        &self,
        out: &mut Out,
        _header: &Option<ResponseHeader>,
        members: &[Member],
    ) -> Result<()> {
        lines(out, member_rows(members));
        Ok(())
    }

    fn member_changed(&self, out: &mut Out, c: &MemberChange) -> Result<()> {
        let cluster = cluster_id(c.header);
        out.line(format!(
            "Member {:16x} {} cluster {cluster:16x}",
            c.id, c.what
        ));
        Ok(())
    }

    /// After the usual line, the settings the new member starts with, as etcdctl prints them.
    fn member_add(
        &self,
        out: &mut Out,
        r: &MemberAddResponse,
        name: &str,
        peer_urls: &str,
    ) -> Result<()> {
        let added = super::member_added(r);
        self.member_changed(out, &added)?;
        let conf: Vec<String> = r
            .members
            .iter()
            .flat_map(|mb| {
                let n = if mb.id == added.id.get() {
                    name
                } else {
                    &mb.name
                };
                mb.peer_ur_ls.iter().map(move |u| format!("{n}={u}"))
            })
            .collect();
        let q = |s: &str| gofmt::quote(s.as_bytes());
        out.line("");
        out.line(format!("ETCD_NAME={}", q(name)));
        out.line(format!("ETCD_INITIAL_CLUSTER={}", q(&conf.join(","))));
        out.line(format!("ETCD_INITIAL_ADVERTISE_PEER_URLS={}", q(peer_urls)));
        out.line("ETCD_INITIAL_CLUSTER_STATE=\"existing\"");
        Ok(())
    }

    fn move_leader(
        &self,
        out: &mut Out,
        leader: MemberId,
        target: MemberId,
        _header: &Option<ResponseHeader>,
    ) -> Result<()> {
        out.line(format!("Leadership transferred from {leader} to {target}"));
        Ok(())
    }

    fn endpoint_health(&self, out: &mut Out, hs: &[EndpointHealth]) -> Result<()> {
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

    fn endpoint_status(&self, out: &mut Out, list: &[EndpointStatus]) -> Result<()> {
        lines(out, status_rows(list));
        Ok(())
    }

    fn endpoint_hashkv(&self, out: &mut Out, list: &[EndpointHashKv]) -> Result<()> {
        lines(out, hashkv_rows(list));
        Ok(())
    }
}
