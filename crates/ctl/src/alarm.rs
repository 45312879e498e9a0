//! `alarm list|disarm` (etcdctl's alarm_command.go).

use crate::connect::connect;
use crate::error::{err, fail, Result, EXIT_BAD_ARGS};
use crate::flags::{args, args_of, subcommand};
use crate::globals::Globals;
use crate::printer::Out;
use clap::{ArgMatches, Command};
use oxcd_api::etcdserverpb::{alarm_request::AlarmAction, AlarmRequest};
use oxcd_client::with_timeout;

pub fn alarm_cmd() -> Command {
    Command::new("alarm")
        .about("Alarm related commands")
        .subcommand_required(true)
        .subcommand(
            Command::new("disarm")
                .about("Disarms all alarms")
                .arg(args()),
        )
        .subcommand(Command::new("list").about("Lists all alarms").arg(args()))
}

pub async fn run(g: &Globals, m: &ArgMatches, out: &mut Out) -> Result<()> {
    let (sub, sm) = subcommand(m)?;
    if !args_of(sm).is_empty() {
        return fail(
            EXIT_BAD_ARGS,
            format!("alarm {sub} command accepts no arguments"),
        );
    }
    let c = connect(g).await?;
    let list = with_timeout(
        g.command_timeout,
        c.maintenance().alarm(AlarmRequest::default()),
    )
    .await
    .map_err(err)?;
    if sub == "list" {
        g.printer.alarms(out, &list.header, &list.alarms);
        return Ok(());
    }
    // As etcd's client: disarm each active alarm in turn.
    let mut disarmed = Vec::new();
    for a in &list.alarms {
        let resp = with_timeout(
            g.command_timeout,
            c.maintenance().alarm(AlarmRequest {
                action: AlarmAction::Deactivate as i32,
                member_id: a.member_id,
                alarm: a.alarm,
            }),
        )
        .await
        .map_err(err)?;
        disarmed.extend(resp.alarms);
    }
    g.printer.alarms(out, &None, &disarmed);
    Ok(())
}
