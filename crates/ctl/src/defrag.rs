//! `defrag` (etcdctl's defrag_command.go): each member over the wire, or with `--data-dir` the
//! backend of a member that is not running, through oxcd-utl.

use crate::connect::{cluster_endpoints, connect_to};
use crate::error::{fail, CtlError, Result, EXIT_ERROR};
use crate::flags::{bool_flag, string};
use crate::globals::Globals;
use crate::printer::Out;
use clap::{Arg, ArgMatches, Command};
use oxcd_api::etcdserverpb::DefragmentRequest;
use oxcd_client::with_timeout;
use oxcd_utl::progress::{Progress, Unit};
use std::path::Path;

pub fn defrag_cmd() -> Command {
    Command::new("defrag")
        .about("Defragments the storage of the etcd members with given endpoints")
        .arg(bool_flag(
            "cluster",
            "use all endpoints from the cluster member list",
        ))
        .arg(
            Arg::new("data-dir")
                .long("data-dir")
                .num_args(1)
                .default_value("")
                .help("Optional. If present, defragments a data directory not in use by etcd."),
        )
}

pub async fn run(g: &Globals, m: &ArgMatches, out: &mut Out) -> Result<()> {
    let data_dir = string(m, "data-dir");
    if !data_dir.is_empty() {
        return defrag_data_dir(Path::new(&data_dir), out);
    }
    let mut failures = 0;
    for ep in cluster_endpoints(g, m).await? {
        let defragmenting = async {
            let c = connect_to(g, &ep).await?;
            with_timeout(
                g.command_timeout,
                c.maintenance().defragment(DefragmentRequest {}),
            )
            .await
        };
        // The server says nothing until it is done: the time it has taken so far.
        let progress = Progress::new(format!("defragmenting {ep}"), None, Unit::Seconds);
        let started = std::time::Instant::now();
        let ticking = async {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                progress.set(started.elapsed().as_secs());
            }
        };
        let result = tokio::select! {
            r = defragmenting => r,
            () = ticking => unreachable!("ticks forever"),
        };
        progress.finish();
        match result {
            Ok(_) => out.line(format!("Finished defragmenting etcd member[{ep}]")),
            Err(e) => {
                out.stderr
                    .push_str(&format!("Failed to defragment etcd member[{ep}] ({e})\n"));
                failures += 1;
            }
        }
    }
    if failures > 0 {
        return fail(EXIT_ERROR, "");
    }
    Ok(())
}

/// The failure is told on stderr as it is for a member, without an `Error:` line.
fn defrag_data_dir(dir: &Path, out: &mut Out) -> Result<()> {
    let result = oxcd_utl::defrag::defrag(dir, &mut |db| {
        // Said at once: the wait lasts until the member holding the file stops.
        out.stderr.push_str(&oxcd_utl::defrag::waiting_notice(db));
        out.stderr.push('\n');
        out.flush();
    });
    match result {
        Ok(_) => Ok(()),
        Err(e) => {
            out.stderr.push_str(&format!("{}\n", e.msg));
            Err(CtlError::silent(e.exit.code()))
        }
    }
}
