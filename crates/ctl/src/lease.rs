//! `lease grant/revoke/timetolive/list/keep-alive`, with etcdctl's arguments, messages and
//! simple output.

use crate::connect::connect;
use crate::error::{CtlError, Result, EXIT_BAD_ARGS, EXIT_BAD_CONNECTION, EXIT_ERROR};
use crate::flags::{args, args_of, bool_flag, flag, subcommand};
use crate::globals::Globals;
use crate::gofmt;
use crate::printer::Out;
use clap::{ArgMatches, Command};
use oxcd_api::etcdserverpb::lease_client::LeaseClient;
use oxcd_api::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseLeasesRequest, LeaseRevokeRequest,
    LeaseTimeToLiveRequest,
};
use oxcd_api::LeaseId;
use oxcd_client::{with_timeout, Client, Conn};
use std::io::Write;
use std::time::Duration;

pub fn lease_cmd() -> Command {
    Command::new("lease")
        .about("Lease related commands")
        .subcommand_required(true)
        .subcommand(
            Command::new("grant")
                .about("Creates leases")
                .arg(args().allow_negative_numbers(true)),
        )
        .subcommand(Command::new("revoke").about("Revokes leases").arg(args()))
        .subcommand(
            Command::new("timetolive")
                .about("Get lease information")
                .arg(args())
                .arg(bool_flag("keys", "Get keys attached to this lease")),
        )
        .subcommand(Command::new("list").about("List all active leases"))
        .subcommand(
            Command::new("keep-alive")
                .about("Keeps leases alive (renew)")
                .arg(args())
                .arg(bool_flag(
                    "once",
                    "Resets the keep-alive time to its original value and exits immediately",
                )),
        )
}

fn client(c: &Client) -> LeaseClient<Conn> {
    LeaseClient::new(c.channel.clone())
}

/// A lease ID argument: Go's strconv.ParseInt(arg, 16, 64) (so not oxcd-api's LeaseId
/// parser, which reads 64 bits unsigned), with etcdctl's message.
fn lease_id(arg: &str) -> Result<LeaseId> {
    i64::from_str_radix(arg, 16).map(LeaseId).map_err(|e| {
        CtlError::new(
            EXIT_BAD_ARGS,
            format!(
                "bad lease ID arg ({}), expecting ID in Hex",
                gofmt::strconv_error("ParseInt", arg, &e)
            ),
        )
    })
}

fn one_arg(args: &[String], missing: &str) -> Result<String> {
    match args {
        [a] => Ok(a.clone()),
        _ => Err(CtlError::new(EXIT_BAD_ARGS, missing)),
    }
}

/// `lease SUB ...`: connects first, then checks the arguments.
pub async fn run(g: &Globals, m: &ArgMatches, out: &mut Out) -> Result<()> {
    let (sub, lm) = subcommand(m)?;
    let args = args_of(lm);
    let c = connect(g).await?;
    let text = lease(g, &c, sub, &args, flag(lm, "keys"), flag(lm, "once")).await?;
    out.stdout.push_str(&text);
    Ok(())
}

async fn lease(
    g: &Globals,
    c: &Client,
    sub: &str,
    args: &[String],
    keys: bool,
    once: bool,
) -> Result<String> {
    let timeout = g.command_timeout;
    match sub {
        "grant" => {
            let a = one_arg(args, "lease grant command needs TTL argument")?;
            let ttl: i64 = a.parse().map_err(|_| {
                CtlError::new(
                    EXIT_BAD_ARGS,
                    format!("bad TTL ({})", gofmt::parse_int_error(&a)),
                )
            })?;
            let r = with_timeout(
                timeout,
                client(c).lease_grant(LeaseGrantRequest { ttl, id: 0 }),
            )
            .await
            .map_err(|e| CtlError::new(EXIT_ERROR, format!("failed to grant lease ({e})")))?;
            Ok(format!(
                "lease {:016x} granted with TTL({}s)\n",
                LeaseId(r.id),
                r.ttl
            ))
        }
        "revoke" => {
            let id = lease_id(&one_arg(args, "lease revoke command needs 1 argument")?)?;
            let req = LeaseRevokeRequest { id: id.get() };
            with_timeout(timeout, client(c).lease_revoke(req))
                .await
                .map_err(|e| CtlError::new(EXIT_ERROR, format!("failed to revoke lease ({e})")))?;
            Ok(format!("lease {id:016x} revoked\n"))
        }
        "timetolive" => {
            let id = lease_id(&one_arg(
                args,
                "lease timetolive command needs lease ID as argument",
            )?)?;
            let req = LeaseTimeToLiveRequest { id: id.get(), keys };
            let r = with_timeout(timeout, client(c).lease_time_to_live(req))
                .await
                .map_err(|e| CtlError::new(EXIT_BAD_CONNECTION, e))?;
            let id = LeaseId(r.id);
            if r.granted_ttl == 0 && r.ttl == -1 {
                return Ok(format!("lease {id:016x} already expired\n"));
            }
            let mut text = format!(
                "lease {id:016x} granted with TTL({}s), remaining({}s)",
                r.granted_ttl, r.ttl
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
            let r = with_timeout(timeout, client(c).lease_leases(LeaseLeasesRequest {}))
                .await
                .map_err(|e| CtlError::new(EXIT_BAD_CONNECTION, e))?;
            let mut text = format!("found {} leases\n", r.leases.len());
            for l in r.leases {
                text.push_str(&format!("{:016x}\n", LeaseId(l.id)));
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
        other => Err(CtlError::new(
            EXIT_BAD_ARGS,
            format!("unknown command {other:?}"),
        )),
    }
}

/// As etcd's client: one request, then another a third of the TTL after each answer, until
/// the lease is gone.
async fn keep_alive(c: &Client, lease: LeaseId, once: bool) -> Result<String> {
    let id = lease.get();
    let bad_connection = |e: tonic::Status| CtlError::new(EXIT_BAD_CONNECTION, e.message());
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let _ = tx.send(LeaseKeepAliveRequest { id }).await;
    let mut stream = client(c)
        .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(bad_connection)?
        .into_inner();
    loop {
        let r = match stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => return Err(bad_connection(e)),
        };
        if r.ttl <= 0 {
            if once {
                return Err(CtlError::new(
                    EXIT_BAD_CONNECTION,
                    oxcd_api::EtcdError::LeaseNotFound.to_string(),
                ));
            }
            break;
        }
        let line = format!(
            "lease {:016x} keepalived with TTL({})\n",
            LeaseId(r.id),
            r.ttl
        );
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
    Ok(format!("lease {lease:016x} expired or revoked.\n"))
}
