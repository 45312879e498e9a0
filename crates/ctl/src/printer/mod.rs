//! etcdctl's output formats, one printer a format (etcdctl's printer.go and printer_*.go):
//! `--write-out` picks one [`Printer`] once; a format that cannot show a response says so with
//! etcdctl's "... not supported as output format" (ExitBadFeature), the trait's default.

mod fields;
mod json;
mod protobuf;
mod simple;
mod table;

use crate::error::{CtlError, Result, EXIT_BAD_FEATURE};
use oxcd_api::etcdserverpb::{
    AlarmMember, DeleteRangeResponse, HashKvResponse, Member, MemberAddResponse, PutResponse,
    RangeResponse, ResponseHeader, StatusResponse, TxnResponse, WatchResponse,
};
use oxcd_api::{ClusterId, MemberId};
use oxcd_utl::printer::humanize_bytes;
use oxcd_utl::snapshot::SnapshotStatus;
use serde_json::Value;

/// `--write-out`: the same formats as oxcdutl's.
pub use oxcd_utl::printer::Format;
pub use simple::Simple;

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

/// MemberAdd/Remove/Update/Promote, as the printers need them.
pub struct MemberChange<'a> {
    /// "added to", "removed from", "updated in", "promoted in".
    pub what: &'a str,
    pub id: MemberId,
    pub header: &'a Option<ResponseHeader>,
    /// The member itself (member add only).
    pub member: Option<&'a Member>,
    pub members: &'a [Member],
}

/// One output format. Every method has etcdctl's "not supported" answer unless the format
/// prints that response.
pub trait Printer {
    fn format(&self) -> Format;

    fn unsupported(&self) -> Result<()> {
        let msg = format!("{} not supported as output format", self.format().name());
        Err(CtlError::new(EXIT_BAD_FEATURE, msg))
    }

    fn get(&self, _out: &mut Out, _r: &RangeResponse) -> Result<()> {
        self.unsupported()
    }

    fn put(&self, _out: &mut Out, _r: &PutResponse) -> Result<()> {
        self.unsupported()
    }

    fn del(&self, _out: &mut Out, _r: &DeleteRangeResponse) -> Result<()> {
        self.unsupported()
    }

    fn txn(&self, _out: &mut Out, _r: &TxnResponse) -> Result<()> {
        self.unsupported()
    }

    /// One watch response's events.
    fn watch(&self, _out: &mut Out, _r: &WatchResponse) -> Result<()> {
        self.unsupported()
    }

    fn member_list(
        &self,
        _out: &mut Out,
        _header: &Option<ResponseHeader>,
        _members: &[Member],
    ) -> Result<()> {
        self.unsupported()
    }

    fn member_changed(&self, _out: &mut Out, _change: &MemberChange) -> Result<()> {
        self.unsupported()
    }

    /// `member add NAME --peer-urls=URLS`.
    fn member_add(
        &self,
        out: &mut Out,
        r: &MemberAddResponse,
        _name: &str,
        _peer_urls: &str,
    ) -> Result<()> {
        self.member_changed(out, &member_added(r))
    }

    fn move_leader(
        &self,
        _out: &mut Out,
        _leader: MemberId,
        _target: MemberId,
        _header: &Option<ResponseHeader>,
    ) -> Result<()> {
        self.unsupported()
    }

    fn endpoint_health(&self, _out: &mut Out, _hs: &[EndpointHealth]) -> Result<()> {
        self.unsupported()
    }

    fn endpoint_status(&self, _out: &mut Out, _list: &[EndpointStatus]) -> Result<()> {
        self.unsupported()
    }

    fn endpoint_hashkv(&self, _out: &mut Out, _list: &[EndpointHashKv]) -> Result<()> {
        self.unsupported()
    }

    /// An auth/user/role answer: etcdctl's `text` in every format but json, which prints the
    /// header and `fields`.
    fn auth(&self, out: &mut Out, text: &str, _fields: Value, _header: &Option<ResponseHeader>) {
        out.stdout.push_str(text);
    }

    /// `alarm list|disarm`: one line an alarm in every format but json.
    fn alarms(&self, out: &mut Out, _header: &Option<ResponseHeader>, alarms: &[AlarmMember]) {
        for a in alarms {
            out.line(oxcd_api::alarm_text(a));
        }
    }

    /// `snapshot status FILE`: as oxcdutl prints it, in every format but protobuf.
    fn db_status(&self, out: &mut Out, st: &SnapshotStatus) -> Result<()> {
        out.stdout
            .push_str(&oxcd_utl::printer::snapshot_status(self.format(), st)?);
        Ok(())
    }
}

/// The printer for `format`; `--hex` prints keys and values as `\x..` escapes (simple).
pub fn new(format: Format, hex: bool) -> Box<dyn Printer> {
    match format {
        Format::Simple => Box::new(Simple {
            hex,
            value_only: false,
        }),
        Format::Json => Box::new(json::Json),
        Format::Fields => Box::new(fields::Fields),
        Format::Table => Box::new(table::Table),
        Format::Protobuf => Box::new(protobuf::Protobuf),
    }
}

/// The printer `--write-out` chose (its [`Printer::format`] for the few commands whose flags
/// depend on it: `get --print-value-only`, `--count-only`, `user get --detail`), and `--hex`.
pub struct Selected {
    pub hex: bool,
    printer: Box<dyn Printer>,
}

impl Selected {
    pub fn new(format: Format, hex: bool) -> Selected {
        Selected {
            hex,
            printer: new(format, hex),
        }
    }
}

impl std::ops::Deref for Selected {
    type Target = dyn Printer;

    fn deref(&self) -> &(dyn Printer + 'static) {
        self.printer.as_ref()
    }
}

fn member_added(r: &MemberAddResponse) -> MemberChange<'_> {
    MemberChange {
        what: "added to",
        id: MemberId(r.member.as_ref().map_or(0, |m| m.id)),
        header: &r.header,
        member: r.member.as_ref(),
        members: &r.members,
    }
}

fn cluster_id(header: &Option<ResponseHeader>) -> ClusterId {
    ClusterId(header.map_or(0, |h| h.cluster_id))
}

// --- rows shared by the simple and table printers ---

fn status_rows(list: &[EndpointStatus]) -> Vec<Vec<String>> {
    list.iter()
        .map(|e| {
            let s = &e.status;
            let member = s.header.as_ref().map_or(0, |h| h.member_id);
            vec![
                e.endpoint.clone(),
                MemberId(member).to_string(),
                s.version.clone(),
                humanize_bytes(s.db_size.max(0) as u64),
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

fn member_rows(members: &[Member]) -> Vec<Vec<String>> {
    members
        .iter()
        .map(|m| {
            let status = if m.name.is_empty() {
                "unstarted"
            } else {
                "started"
            };
            vec![
                MemberId(m.id).to_string(),
                status.to_string(),
                m.name.clone(),
                m.peer_ur_ls.join(","),
                m.client_ur_ls.join(","),
                m.is_learner.to_string(),
            ]
        })
        .collect()
}

fn hashkv_rows(list: &[EndpointHashKv]) -> Vec<Vec<String>> {
    list.iter()
        .map(|h| vec![h.endpoint.clone(), h.resp.hash.to_string()])
        .collect()
}

fn event_type(e: &oxcd_api::mvccpb::Event) -> &'static str {
    match e.r#type() {
        oxcd_api::mvccpb::event::EventType::Put => "PUT",
        oxcd_api::mvccpb::event::EventType::Delete => "DELETE",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_format_that_cannot_print_a_response_says_so_with_exit_code_4() {
        let mut out = Out::default();
        let e = new(Format::Table, false)
            .get(&mut out, &RangeResponse::default())
            .expect_err("table cannot print get");
        assert_eq!(e, CtlError::new(4, "table not supported as output format"));
        assert!(out.stdout.is_empty());
    }

    #[test]
    fn simple_member_change_pads_ids_as_etcdctl() {
        let mut out = Out::default();
        let header = Some(ResponseHeader {
            cluster_id: 0xabc,
            ..Default::default()
        });
        let change = MemberChange {
            what: "removed from",
            id: MemberId(0x2a9e3471fc93a75),
            header: &header,
            member: None,
            members: &[],
        };
        new(Format::Simple, false)
            .member_changed(&mut out, &change)
            .expect("simple prints member changes");
        assert_eq!(
            out.stdout,
            "Member  2a9e3471fc93a75 removed from cluster              abc\n"
        );
    }
}
