//! oxcdutl: etcdutl's commands, flags, output and exit codes, on oxcd's files.

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Arg, ArgMatches, Command};
use oxcd_utl::cli::{bool_flag, last_flag_wins};
use oxcd_utl::printer::{self, Format};
use oxcd_utl::snapshot::{RestoreOptions, RestorePaths};
use oxcd_utl::{defrag, hashkv, log, snapshot, UtlError};
use std::io::Write;
use std::path::{Path, PathBuf};

fn flag(name: &'static str, default: &'static str, help: &'static str) -> Arg {
    Arg::new(name)
        .long(name)
        .num_args(1)
        .default_value(default)
        .help(help)
}

fn args() -> Arg {
    Arg::new("args").num_args(0..).value_name("filename")
}

fn cli() -> Command {
    let restore = Command::new("restore")
        .about("Restores an etcd member snapshot to an etcd directory")
        .arg(args())
        .arg(flag("data-dir", "", "Path to the output data directory"))
        .arg(flag(
            "wal-dir",
            "",
            "Path to the WAL directory (use --data-dir if none given)",
        ))
        .arg(flag(
            "initial-cluster",
            "default=http://localhost:2380",
            "Initial cluster configuration for restore bootstrap",
        ))
        .arg(flag(
            "initial-cluster-token",
            "etcd-cluster",
            "Initial cluster token for the etcd cluster during restore bootstrap",
        ))
        .arg(flag(
            "initial-advertise-peer-urls",
            "http://localhost:2380",
            "List of this member's peer URLs to advertise to the rest of the cluster",
        ))
        .arg(flag("name", "default", "Human-readable name for this member"))
        .arg(bool_flag(
            "skip-hash-check",
            "Ignore snapshot integrity hash value (required if copied from data directory)",
        ))
        .arg(
            flag(
                "initial-memory-map-size",
                "0",
                "Initial memory map size of the database in bytes (accepted; oxcd's backend grows as it needs)",
            )
            .value_parser(clap::value_parser!(u64)),
        )
        .arg(
            flag(
                "bump-revision",
                "0",
                "How much to increase the latest revision after restore (not supported yet)",
            )
            .value_parser(clap::value_parser!(u64)),
        )
        .arg(bool_flag(
            "mark-compacted",
            "Mark the latest revision after restore as the point of scheduled compaction (required if --bump-revision > 0, disallowed otherwise)",
        ));
    let snapshot = Command::new("snapshot")
        .about("Manages etcd node snapshots")
        .arg_required_else_help(true)
        .subcommand(
            Command::new("save")
                .about("Stores an etcd node backend snapshot to a given file")
                .hide(true)
                .arg(args()),
        )
        .subcommand(restore)
        .subcommand(
            Command::new("status")
                .about("Gets backend snapshot status of a given file")
                .long_about(
                    "When --write-out is set to simple, this command prints out comma-separated \
                     status lists for each endpoint.\nThe items in the lists are hash, revision, \
                     total keys, total size.",
                )
                .arg(args()),
        );
    let hashkv = Command::new("hashkv")
        .about("Prints the KV history hash of a given file")
        .arg(args())
        .arg(
            flag(
                "rev",
                "0",
                "maximum revision to hash (default: latest revision)",
            )
            .value_parser(clap::value_parser!(i64))
            .allow_negative_numbers(true),
        )
        .arg(
            Arg::new("data-dir")
                .long("data-dir")
                .num_args(1)
                .help("The data dir whose backend to hash (instead of <filename>)"),
        );
    Command::new("oxcdutl")
        .about("An administrative command line tool for etcd3 (and oxcd).")
        .arg_required_else_help(true)
        .infer_subcommands(true)
        .disable_version_flag(true)
        .arg(
            Arg::new("write-out")
                .short('w')
                .long("write-out")
                .num_args(1)
                .default_value("simple")
                .global(true)
                .help("set the output format (fields, json, protobuf, simple, table)"),
        )
        .subcommand(
            Command::new("defrag")
                .about("Defragments the storage of the etcd")
                .arg(args())
                .arg(
                    Arg::new("data-dir")
                        .long("data-dir")
                        .num_args(1)
                        .required(true)
                        .help("Required. Defragments a data directory not in use by etcd."),
                ),
        )
        .subcommand(snapshot)
        .subcommand(hashkv)
        .subcommand(Command::new("version").about("Prints the version of etcdutl"))
        .subcommand(oxcd_utl::cli::completion_cmd())
}

fn string(m: &ArgMatches, name: &str) -> String {
    m.get_one::<String>(name).cloned().unwrap_or_default()
}

fn boolean(m: &ArgMatches, name: &str) -> bool {
    m.get_one::<bool>(name).copied().unwrap_or(false)
}

fn positional(m: &ArgMatches) -> Vec<String> {
    m.get_many::<String>("args")
        .map(|v| v.cloned().collect())
        .unwrap_or_default()
}

fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

fn err(text: &str) {
    let _ = std::io::stderr().write_all(text.as_bytes());
}

fn format(m: &ArgMatches) -> Result<Format, UtlError> {
    Format::parse(&string(m, "write-out"))
}

fn run(m: &ArgMatches) -> Result<(), UtlError> {
    match m.subcommand() {
        Some(("defrag", sm)) => {
            let dir = PathBuf::from(string(sm, "data-dir"));
            defrag::defrag(&dir, &mut |db| {
                err(&format!("{}\n", defrag::waiting_notice(db)))
            })?;
            Ok(())
        }
        Some(("snapshot", sm)) => snapshot_cmd(sm),
        Some(("hashkv", sm)) => hashkv_cmd(sm),
        Some(("version", _)) => {
            out(&oxcd_utl::version_text());
            Ok(())
        }
        Some(("completion", sm)) => {
            let script = oxcd_utl::cli::completion(cli(), &string(sm, "shell"));
            out(&String::from_utf8_lossy(&script));
            Ok(())
        }
        // No command (only flags): the usage, as cobra prints it.
        _ => {
            out(&cli().render_help().to_string());
            Ok(())
        }
    }
}

fn snapshot_cmd(m: &ArgMatches) -> Result<(), UtlError> {
    match m.subcommand() {
        Some(("save", _)) => {
            out("Command \"save\" is deprecated, Use `etcdctl snapshot save` to download snapshot\n");
            Err(UtlError::bad_args(
                "In order to download snapshot use: `etcdctl snapshot save ...`",
            ))
        }
        Some(("status", sm)) => {
            let args = positional(sm);
            if args.len() != 1 {
                return Err(UtlError::bad_args(
                    "snapshot status requires exactly one argument",
                ));
            }
            let format = format(sm)?;
            let st = snapshot::status(Path::new(&args[0]))?;
            out(&printer::snapshot_status(format, &st)?);
            Ok(())
        }
        Some(("restore", sm)) => {
            let args = positional(sm);
            if args.len() != 1 {
                return Err(UtlError::bad_args(
                    "snapshot restore requires exactly one argument",
                ));
            }
            let opts = RestoreOptions {
                snapshot: PathBuf::from(&args[0]),
                name: string(sm, "name"),
                data_dir: string(sm, "data-dir"),
                wal_dir: string(sm, "wal-dir"),
                initial_cluster: string(sm, "initial-cluster"),
                initial_cluster_token: string(sm, "initial-cluster-token"),
                initial_advertise_peer_urls: string(sm, "initial-advertise-peer-urls"),
                skip_hash_check: boolean(sm, "skip-hash-check"),
                bump_revision: sm.get_one::<u64>("bump-revision").copied().unwrap_or(0),
                mark_compacted: boolean(sm, "mark-compacted"),
            };
            let log_paths = |msg: &str, p: &RestorePaths| {
                let fields = [
                    ("path", args[0].clone()),
                    ("wal-dir", p.wal_dir.display().to_string()),
                    ("data-dir", p.data_dir.display().to_string()),
                    ("snap-dir", p.snap_dir.display().to_string()),
                ];
                let fields: Vec<(&str, &str)> =
                    fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
                err(&log::info("snapshot/restore.rs", msg, &fields));
            };
            let done = snapshot::restore(&opts, &mut |p| log_paths("restoring snapshot", p))?;
            log_paths("restored snapshot", &done);
            Ok(())
        }
        _ => {
            let mut snapshot = cli();
            if let Some(sub) = snapshot.find_subcommand_mut("snapshot") {
                out(&sub.render_help().to_string());
            }
            Ok(())
        }
    }
}

fn hashkv_cmd(m: &ArgMatches) -> Result<(), UtlError> {
    let args = positional(m);
    let db = match (args.as_slice(), m.get_one::<String>("data-dir")) {
        ([file], None) => hashkv::backend_of(Path::new(file)),
        ([], Some(dir)) => oxcd_utl::backend::backend_path(Path::new(dir)),
        ([_], Some(_)) => {
            return Err(UtlError::error(
                "give either <filename> or --data-dir, not both",
            ))
        }
        (_, _) => {
            return Err(UtlError::error(format!(
                "accepts 1 arg(s), received {}",
                args.len()
            )))
        }
    };
    let format = format(m)?;
    let rev = oxcd_api::Revision(m.get_one::<i64>("rev").copied().unwrap_or(0));
    let h = hashkv::hashkv(&db, rev, &mut |path| {
        err(&format!(
            "waiting for etcd to close and release its lock on {:?}\n",
            path.display().to_string()
        ))
    })?;
    out(&printer::hashkv(format, &h)?);
    Ok(())
}

/// A command line clap refused, worded as cobra words it (etcdutl exits 1 on these).
fn usage_error(e: &clap::Error) -> String {
    let context = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => s.clone(),
        Some(ContextValue::Strings(v)) => v.first().cloned().unwrap_or_default(),
        _ => String::new(),
    };
    let flag_name = |arg: String| {
        arg.split([' ', '=', '['])
            .next()
            .unwrap_or_default()
            .trim_start_matches('-')
            .to_string()
    };
    match e.kind() {
        ErrorKind::UnknownArgument => format!("unknown flag: {}", context(ContextKind::InvalidArg)),
        ErrorKind::InvalidSubcommand => format!(
            "unknown command {:?} for \"oxcdutl\"",
            context(ContextKind::InvalidSubcommand)
        ),
        ErrorKind::MissingRequiredArgument => format!(
            "required flag(s) \"{}\" not set",
            flag_name(context(ContextKind::InvalidArg))
        ),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => format!(
            "invalid argument {:?} for \"--{}\" flag",
            context(ContextKind::InvalidValue),
            flag_name(context(ContextKind::InvalidArg))
        ),
        _ => e
            .render()
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_string(),
    }
}

fn main() {
    let matches = match last_flag_wins(cli()).try_get_matches() {
        Ok(m) => m,
        Err(e) => match e.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                out(&e.render().to_string());
                std::process::exit(0);
            }
            _ => {
                err(&format!("Error: {}\n", usage_error(&e)));
                std::process::exit(oxcd_utl::Exit::Error.code());
            }
        },
    };
    if let Err(e) = run(&matches) {
        err(&format!("Error: {}\n", e.msg));
        std::process::exit(e.exit.code());
    }
}
