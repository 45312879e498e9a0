//! `downgrade validate|enable <TARGET_VERSION>` and `downgrade cancel` (etcdctl 3.6's
//! downgrade_command.go).

use crate::connect::connect;
use crate::error::{err, fail, Result, EXIT_BAD_ARGS};
use crate::flags::{args, args_of, subcommand};
use crate::globals::Globals;
use crate::printer::Out;
use clap::{ArgMatches, Command};
use oxcd_api::etcdserverpb::downgrade_request::DowngradeAction;
use oxcd_api::etcdserverpb::DowngradeRequest;
use oxcd_client::with_timeout;

pub fn downgrade_cmd() -> Command {
    let with_target = |name: &'static str, about: &'static str| {
        Command::new(name)
            .about(about)
            .arg(args().value_name("TARGET_VERSION"))
    };
    Command::new("downgrade")
        .about("Downgrade related commands")
        .subcommand_required(true)
        .subcommand(with_target(
            "validate",
            "Validate downgrade capability before starting downgrade",
        ))
        .subcommand(with_target("enable", "Start a downgrade action to cluster"))
        .subcommand(
            Command::new("cancel")
                .about("Cancel the ongoing downgrade action to cluster")
                .arg(args()),
        )
}

pub async fn run(g: &Globals, m: &ArgMatches, out: &mut Out) -> Result<()> {
    let (sub, sm) = subcommand(m)?;
    let given = args_of(sm);
    let (action, version) = match sub {
        "cancel" => (DowngradeAction::Cancel, String::new()),
        _ => {
            let action = if sub == "enable" {
                DowngradeAction::Enable
            } else {
                DowngradeAction::Validate
            };
            match given.as_slice() {
                [] => return fail(EXIT_BAD_ARGS, "TARGET_VERSION not provided"),
                [v] if v.is_empty() => return fail(EXIT_BAD_ARGS, "target version not provided"),
                [v] => (action, v.clone()),
                _ => return fail(EXIT_BAD_ARGS, "too many arguments"),
            }
        }
    };
    let c = connect(g).await?;
    let resp = with_timeout(
        g.command_timeout,
        c.maintenance().downgrade(DowngradeRequest {
            action: action as i32,
            version,
        }),
    )
    .await
    .map_err(err)?;
    out.line(format!(
        "Downgrade {sub} success, cluster version {}",
        resp.version
    ));
    Ok(())
}
