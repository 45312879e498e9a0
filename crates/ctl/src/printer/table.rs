//! `--write-out=table`: etcdctl's printer_table.go, for the list-like answers.

use super::{
    hashkv_rows, member_rows, status_rows, EndpointHashKv, EndpointHealth, EndpointStatus, Format,
    Out, Printer,
};
use crate::error::Result;
use oxcd_api::etcdserverpb::{Member, ResponseHeader};
use oxcd_utl::printer::table;

pub struct Table;

fn print(out: &mut Out, header: &[&str], rows: &[Vec<String>]) -> Result<()> {
    out.stdout.push_str(&table(header, rows));
    Ok(())
}

impl Printer for Table {
    fn format(&self) -> Format {
        Format::Table
    }

    fn member_list(
        &self,
        out: &mut Out,
        _header: &Option<ResponseHeader>,
        members: &[Member],
    ) -> Result<()> {
        let header = [
            "ID",
            "status",
            "name",
            "peer addrs",
            "client addrs",
            "is learner",
        ];
        print(out, &header, &member_rows(members))
    }

    fn endpoint_health(&self, out: &mut Out, hs: &[EndpointHealth]) -> Result<()> {
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
        print(out, &["endpoint", "health", "took", "error"], &rows)
    }

    fn endpoint_status(&self, out: &mut Out, list: &[EndpointStatus]) -> Result<()> {
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
        print(out, &header, &status_rows(list))
    }

    fn endpoint_hashkv(&self, out: &mut Out, list: &[EndpointHashKv]) -> Result<()> {
        print(out, &["endpoint", "hash"], &hashkv_rows(list))
    }
}
