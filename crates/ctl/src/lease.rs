//! `lease grant/revoke/timetolive/list/keep-alive`, with etcdctl's arguments, messages and
//! simple output.

use crate::client::{self, Client};
use crate::{go_parse_int_error, Globals};
use oxcd_api::etcdserverpb::lease_client::LeaseClient;
use oxcd_api::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseLeasesRequest, LeaseRevokeRequest,
    LeaseTimeToLiveRequest,
};
use std::io::Write;
use std::time::Duration;

pub const EXIT_ERROR: i32 = 1;
pub const EXIT_BAD_CONNECTION: i32 = 2;
pub const EXIT_BAD_ARGS: i32 = 128;

/// (exit code, message) for etcdctl's `Error: ...` line.
pub type Failure = (i32, String);

fn client(c: &Client) -> LeaseClient<crate::client::Conn> {
    LeaseClient::new(c.channel.clone())
}

/// etcdctl's strconv.ParseInt(arg, 16, 64) with its message.
pub fn lease_id(arg: &str) -> Result<i64, Failure> {
    i64::from_str_radix(arg, 16).map_err(|e| {
        let why = match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                "value out of range"
            }
            _ => "invalid syntax",
        };
        (
            EXIT_BAD_ARGS,
            format!(
                "bad lease ID arg (strconv.ParseInt: parsing {}: {why}), expecting ID in Hex",
                crate::gofmt::quote(arg.as_bytes())
            ),
        )
    })
}

fn one_arg(args: &[String], missing: &str) -> Result<String, Failure> {
    match args {
        [a] => Ok(a.clone()),
        _ => Err((EXIT_BAD_ARGS, missing.to_string())),
    }
}

pub async fn run(
    g: &Globals,
    c: &Client,
    sub: &str,
    args: &[String],
    keys: bool,
    once: bool,
) -> Result<String, Failure> {
    let timeout = g.command_timeout;
    match sub {
        "grant" => {
            let a = one_arg(args, "lease grant command needs TTL argument")?;
            let ttl: i64 = a.parse().map_err(|_| {
                (
                    EXIT_BAD_ARGS,
                    format!("bad TTL ({})", go_parse_int_error(&a)),
                )
            })?;
            let r = client::with_timeout(
                timeout,
                client(c).lease_grant(LeaseGrantRequest { ttl, id: 0 }),
            )
            .await
            .map_err(|e| (EXIT_ERROR, format!("failed to grant lease ({e})")))?;
            Ok(format!(
                "lease {:016x} granted with TTL({}s)\n",
                r.id, r.ttl
            ))
        }
        "revoke" => {
            let id = lease_id(&one_arg(args, "lease revoke command needs 1 argument")?)?;
            client::with_timeout(timeout, client(c).lease_revoke(LeaseRevokeRequest { id }))
                .await
                .map_err(|e| (EXIT_ERROR, format!("failed to revoke lease ({e})")))?;
            Ok(format!("lease {id:016x} revoked\n"))
        }
        "timetolive" => {
            let id = lease_id(&one_arg(
                args,
                "lease timetolive command needs lease ID as argument",
            )?)?;
            let r = client::with_timeout(
                timeout,
                client(c).lease_time_to_live(LeaseTimeToLiveRequest { id, keys }),
            )
            .await
            .map_err(|e| (EXIT_BAD_CONNECTION, e))?;
            if r.granted_ttl == 0 && r.ttl == -1 {
                return Ok(format!("lease {:016x} already expired\n", r.id));
            }
            let mut text = format!(
                "lease {:016x} granted with TTL({}s), remaining({}s)",
                r.id, r.granted_ttl, r.ttl
            );
            if keys {
                let ks: Vec<String> = r
                    .keys
                    .iter()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .collect();
                text.push_str(&format!(", attached keys([{}])", ks.join(" ")));
            }
            Ok(text + "\n")
        }
        "list" => {
            let r = client::with_timeout(timeout, client(c).lease_leases(LeaseLeasesRequest {}))
                .await
                .map_err(|e| (EXIT_BAD_CONNECTION, e))?;
            let mut text = format!("found {} leases\n", r.leases.len());
            for l in r.leases {
                text.push_str(&format!("{:016x}\n", l.id));
            }
            Ok(text)
        }
        "keep-alive" => {
            let id = lease_id(&one_arg(
                args,
                "lease keep-alive command needs lease ID as argument",
            )?)?;
            keep_alive(c, id, once).await
        }
        other => Err((EXIT_BAD_ARGS, format!("unknown command {other:?}"))),
    }
}

/// As etcd's client: one request, then another a third of the TTL after each answer, until
/// the lease is gone.
async fn keep_alive(c: &Client, id: i64, once: bool) -> Result<String, Failure> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let _ = tx.send(LeaseKeepAliveRequest { id }).await;
    let mut stream = client(c)
        .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|e| (EXIT_BAD_CONNECTION, e.message().to_string()))?
        .into_inner();
    loop {
        let r = match stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => return Err((EXIT_BAD_CONNECTION, e.message().to_string())),
        };
        if r.ttl <= 0 {
            if once {
                return Err((
                    EXIT_BAD_CONNECTION,
                    oxcd_api::EtcdError::LeaseNotFound.to_string(),
                ));
            }
            break;
        }
        let line = format!("lease {:016x} keepalived with TTL({})\n", r.id, r.ttl);
        if once {
            return Ok(line);
        }
        print!("{line}");
        let _ = std::io::stdout().flush();
        tokio::time::sleep(Duration::from_secs((r.ttl / 3).max(1) as u64)).await;
        if tx.send(LeaseKeepAliveRequest { id }).await.is_err() {
            break;
        }
    }
    Ok(format!("lease {id:016x} expired or revoked.\n"))
}
