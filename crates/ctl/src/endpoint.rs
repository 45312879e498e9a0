//! `endpoint health|status|hashkv` (etcdctl's ep_command.go): every endpoint in
//! `--endpoints`, or with `--cluster` every member's client URLs.

use crate::connect::{cluster_endpoints, connect_to};
use crate::error::{err, fail, CtlError, Result, EXIT_BAD_ARGS, EXIT_ERROR};
use crate::flags::{bool_flag, string, subcommand};
use crate::globals::Globals;
use crate::gofmt;
use crate::printer::{EndpointHashKv, EndpointHealth, EndpointStatus, Out};
use clap::{Arg, ArgMatches, Command};
use oxcd_api::etcdserverpb::{AlarmRequest, HashKvRequest, RangeRequest, StatusRequest};
use oxcd_client::with_timeout;
use std::time::Instant;

pub fn endpoint_cmd() -> Command {
    Command::new("endpoint")
        .about("Endpoint related commands")
        .subcommand_required(true)
        .arg(bool_flag("cluster", "use all endpoints from the cluster member list").global(true))
        .subcommand(
            Command::new("health")
                .about("Checks the healthiness of endpoints specified in `--endpoints` flag"),
        )
        .subcommand(
            Command::new("status")
                .about("Prints out the status of endpoints specified in `--endpoints` flag"),
        )
        .subcommand(
            Command::new("hashkv")
                .about("Prints the KV history hash for each endpoint in --endpoints")
                .arg(
                    Arg::new("rev")
                        .long("rev")
                        .default_value("0")
                        .help("maximum revision to hash (default: all revisions)"),
                ),
        )
}

pub async fn run(g: &Globals, m: &ArgMatches, out: &mut Out) -> Result<()> {
    let (sub, sm) = subcommand(m)?;
    let eps = cluster_endpoints(g, m).await?;
    match sub {
        "health" => health(g, &eps, out).await,
        "status" => status(g, &eps, out).await,
        "hashkv" => hashkv(g, sm, &eps, out).await,
        other => fail(EXIT_BAD_ARGS, format!("unknown command {other:?}")),
    }
}

/// A linearizable read and no active alarm make an endpoint healthy.
async fn check_health(g: &Globals, ep: &str) -> Result<(), String> {
    let c = connect_to(g, ep).await?;
    let req = RangeRequest {
        key: b"health".to_vec(),
        ..Default::default()
    };
    with_timeout(g.command_timeout, c.kv().range(req)).await?;
    let alarms = with_timeout(
        g.command_timeout,
        c.maintenance().alarm(AlarmRequest::default()),
    )
    .await?;
    if !alarms.alarms.is_empty() {
        let names: Vec<String> = alarms
            .alarms
            .iter()
            .map(|a| format!("{:?}", a.alarm()))
            .collect();
        return Err(format!(
            "Active Alarm(s): {}",
            names.join(" ").to_uppercase()
        ));
    }
    Ok(())
}

async fn health(g: &Globals, eps: &[String], out: &mut Out) -> Result<()> {
    let checks = eps.iter().map(|ep| async move {
        let start = Instant::now();
        let result = check_health(g, ep).await;
        EndpointHealth {
            endpoint: ep.clone(),
            health: result.is_ok(),
            took: gofmt::duration(start.elapsed()),
            error: result.err().unwrap_or_default(),
        }
    });
    // Every endpoint is checked at once, as etcdctl does; results keep the given order.
    let hs = futures::future::join_all(checks).await;
    g.printer.endpoint_health(out, &hs)?;
    if hs.iter().any(|h| !h.error.is_empty()) {
        return fail(EXIT_ERROR, "unhealthy cluster");
    }
    Ok(())
}

async fn status(g: &Globals, eps: &[String], out: &mut Out) -> Result<()> {
    let mut list = Vec::new();
    let mut failed = false;
    for ep in eps {
        let status = async {
            let c = connect_to(g, ep).await?;
            with_timeout(g.command_timeout, c.maintenance().status(StatusRequest {})).await
        }
        .await;
        match status {
            Ok(status) => list.push(EndpointStatus {
                endpoint: ep.clone(),
                status,
            }),
            Err(e) => {
                failed = true;
                out.stderr.push_str(&format!(
                    "Failed to get the status of endpoint {ep} ({e})\n"
                ));
            }
        }
    }
    g.printer.endpoint_status(out, &list)?;
    if failed {
        return Err(CtlError::silent(EXIT_ERROR));
    }
    Ok(())
}

async fn hashkv(g: &Globals, m: &ArgMatches, eps: &[String], out: &mut Out) -> Result<()> {
    let rev_arg = string(m, "rev");
    let revision: i64 = rev_arg
        .parse()
        .map_err(|_| err(gofmt::parse_int_error(&rev_arg)))?;
    let mut list = Vec::new();
    let mut last_error = None;
    for ep in eps {
        let hash = async {
            let c = connect_to(g, ep).await?;
            with_timeout(
                g.command_timeout,
                c.maintenance().hash_kv(HashKvRequest { revision }),
            )
            .await
        }
        .await;
        match hash {
            Ok(resp) => list.push(EndpointHashKv {
                endpoint: ep.clone(),
                resp,
            }),
            Err(e) => {
                out.stderr
                    .push_str(&format!("Failed to get the hash of endpoint {ep} ({e})\n"));
                last_error = Some(e);
            }
        }
    }
    g.printer.endpoint_hashkv(out, &list)?;
    match last_error {
        Some(e) => fail(EXIT_ERROR, e),
        None => Ok(()),
    }
}
