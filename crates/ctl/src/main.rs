//! oxcdctl: etcdctl v3's command tree, flags, `ETCDCTL_*` variables and output. One module a
//! command group, as etcdctl's `*_command.go`; this file parses, dispatches, and is the only
//! place that ends the process.

mod alarm;
mod auth;
mod check;
mod cli;
mod concurrency;
mod connect;
mod defrag;
mod downgrade;
mod endpoint;
mod error;
mod flags;
mod globals;
mod gofmt;
mod kv;
mod lease;
mod member;
mod mirror;
mod printer;
mod role;
mod snapshot;
mod txn;
mod user;
mod watch;

use clap::ArgMatches;
use error::{fail, CtlError, EXIT_BAD_ARGS, EXIT_ERROR, EXIT_SUCCESS};
use globals::Globals;
use printer::Out;
use std::io::Write;

fn main() {
    let matches = match cli::root().try_get_matches() {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() {
                EXIT_BAD_ARGS
            } else {
                EXIT_SUCCESS
            });
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: {e}");
            std::process::exit(EXIT_ERROR);
        }
    };
    let mut out = Out::default();
    let result = runtime.block_on(run(&matches, &mut out));
    let _ = std::io::stdout().write_all(out.stdout.as_bytes());
    let _ = std::io::stderr().write_all(out.stderr.as_bytes());
    if let Err(e) = result {
        if !e.msg.is_empty() {
            eprintln!("Error: {}", e.msg);
        }
        std::process::exit(e.code);
    }
}

async fn run(m: &ArgMatches, out: &mut Out) -> Result<(), CtlError> {
    let g = Globals::from_matches(m)?;
    let (name, sm) = flags::subcommand(m)?;
    match name {
        "version" => {
            out.stdout.push_str(&format!(
                "etcdctl version: {} (oxcdctl {})\nAPI version: {}\n",
                oxcd_api::ETCD_VERSION,
                env!("CARGO_PKG_VERSION"),
                oxcd_api::API_VERSION
            ));
            Ok(())
        }
        "completion" => {
            let shell = flags::string(sm, "shell");
            let script = oxcd_utl::cli::completion(cli::root(), &shell);
            out.stdout.push_str(&String::from_utf8_lossy(&script));
            Ok(())
        }
        "get" | "put" | "del" | "txn" | "compaction" => kv::run(&g, name, sm, out).await,
        "endpoint" => endpoint::run(&g, sm, out).await,
        "member" => member::run(&g, sm, out).await,
        "move-leader" => member::move_leader(&g, sm, out).await,
        "lease" => lease::run(&g, sm, out).await,
        "watch" => watch::run(&g, sm).await,
        "snapshot" => snapshot::run(&g, sm, out).await,
        "alarm" => alarm::run(&g, sm, out).await,
        "downgrade" => downgrade::run(&g, sm, out).await,
        "defrag" => defrag::run(&g, sm, out).await,
        "auth" => auth::auth(&g, sm, out).await,
        "user" => user::run(&g, sm, out).await,
        "role" => role::run(&g, sm, out).await,
        "check" => check::check(&g, sm, out).await,
        "lock" => concurrency::lock_run(&g, sm).await,
        "elect" => concurrency::elect_run(&g, sm).await,
        "make-mirror" => mirror::run(&g, sm).await,
        other => fail(EXIT_BAD_ARGS, format!("unknown command {other:?}")),
    }
}
