//! Operations commands: `snapshot save|status|restore`, `alarm list|disarm`, `defrag`.

use crate::client;
use crate::gofmt::humanize_bytes;
use crate::printer::{table, Format, Out};
use crate::{args_of, err, fail, flag, string, CtlError, Globals, EXIT_BAD_ARGS, EXIT_ERROR};
use clap::{Arg, ArgMatches, Command};
use oxcd_api::etcdserverpb::{
    alarm_request::AlarmAction, AlarmMember, AlarmRequest, DefragmentRequest, SnapshotRequest,
};
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// etcdctl's exit code for an interrupted snapshot save.
const EXIT_INTERRUPTED: i32 = 5;

pub fn snapshot_cmd() -> Command {
    let arg = |name: &'static str, default: &'static str, help: &'static str| {
        Arg::new(name)
            .long(name)
            .num_args(1)
            .default_value(default)
            .help(help)
    };
    Command::new("snapshot")
        .about("Manages etcd node snapshots")
        .subcommand_required(true)
        .subcommand(
            Command::new("save")
                .about("Stores an etcd node backend snapshot to a given file")
                .arg(Arg::new("args").num_args(0..)),
        )
        .subcommand(
            Command::new("status")
                .about("Gets backend snapshot status of a given file")
                .arg(Arg::new("args").num_args(0..)),
        )
        .subcommand(
            Command::new("restore")
                .about("Restores an etcd member snapshot to an etcd directory")
                .arg(Arg::new("args").num_args(0..))
                .arg(arg("data-dir", "", "Path to the data directory"))
                .arg(arg(
                    "wal-dir",
                    "",
                    "Path to the WAL directory (use --data-dir if none given)",
                ))
                .arg(arg(
                    "initial-cluster",
                    "default=http://localhost:2380",
                    "Initial cluster configuration for restore bootstrap",
                ))
                .arg(arg(
                    "initial-cluster-token",
                    "etcd-cluster",
                    "Initial cluster token for the etcd cluster during restore bootstrap",
                ))
                .arg(arg(
                    "initial-advertise-peer-urls",
                    "http://localhost:2380",
                    "List of this member's peer URLs to advertise to the rest of the cluster",
                ))
                .arg(arg(
                    "name",
                    "default",
                    "Human-readable name for this member",
                ))
                .arg(crate::bool_flag(
                    "skip-hash-check",
                    "Ignore snapshot integrity hash value (required if copied from data directory)",
                )),
        )
}

pub fn alarm_cmd() -> Command {
    Command::new("alarm")
        .about("Alarm related commands")
        .subcommand_required(true)
        .subcommand(
            Command::new("disarm")
                .about("Disarms all alarms")
                .arg(Arg::new("args").num_args(0..)),
        )
        .subcommand(
            Command::new("list")
                .about("Lists all alarms")
                .arg(Arg::new("args").num_args(0..)),
        )
}

pub fn defrag_cmd() -> Command {
    Command::new("defrag")
        .about("Defragments the storage of the etcd members with given endpoints")
        .arg(crate::bool_flag(
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

/// A log line as etcdctl's zap production logger writes it to stderr.
fn log(out: &mut Out, msg: &str, fields: &[(&str, Value)]) {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut line = serde_json::Map::new();
    line.insert("level".into(), json!("info"));
    line.insert("ts".into(), json!(ts));
    line.insert("msg".into(), json!(msg));
    for (k, v) in fields {
        line.insert(k.to_string(), v.clone());
    }
    out.stderr.push_str(&Value::Object(line).to_string());
    out.stderr.push('\n');
}

pub async fn snapshot(g: &Globals, m: &ArgMatches, out: &mut Out) -> Result<(), CtlError> {
    let (sub, sm) = m.subcommand().ok_or_else(|| err("no command".into()))?;
    let args = args_of(sm);
    match sub {
        "save" => {
            if args.len() != 1 {
                return fail(EXIT_BAD_ARGS, "snapshot save expects one argument");
            }
            save(g, &args[0], out).await.map_err(|msg| CtlError {
                code: EXIT_INTERRUPTED,
                msg,
            })?;
            out.line(format!("Snapshot saved at {}", args[0]));
            Ok(())
        }
        "status" => {
            if args.len() != 1 {
                return fail(
                    EXIT_BAD_ARGS,
                    "snapshot status requires exactly one argument",
                );
            }
            status(g, &args[0], out)
        }
        "restore" => {
            if args.len() != 1 {
                return fail(
                    EXIT_BAD_ARGS,
                    "snapshot restore requires exactly one argument",
                );
            }
            let opts = oxcd_storage::RestoreOptions {
                snapshot: args[0].clone().into(),
                name: string(sm, "name"),
                data_dir: Some(string(sm, "data-dir")),
                wal_dir: Some(string(sm, "wal-dir")),
                initial_cluster: string(sm, "initial-cluster"),
                initial_cluster_token: string(sm, "initial-cluster-token"),
                initial_advertise_peer_urls: string(sm, "initial-advertise-peer-urls"),
                skip_hash_check: flag(sm, "skip-hash-check"),
            };
            let data_dir = Some(string(sm, "data-dir"))
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| format!("{}.etcd", opts.name));
            log(
                out,
                "restoring snapshot",
                &[("path", json!(args[0])), ("data-dir", json!(data_dir))],
            );
            let done = oxcd_storage::restore(&opts).map_err(err)?;
            log(
                out,
                "restored snapshot",
                &[
                    ("path", json!(args[0])),
                    ("wal-dir", json!(done.wal_dir.display().to_string())),
                    ("data-dir", json!(done.data_dir.display().to_string())),
                    ("snap-dir", json!(done.snap_dir.display().to_string())),
                ],
            );
            Ok(())
        }
        other => fail(EXIT_BAD_ARGS, format!("unknown command {other:?}")),
    }
}

/// Streams the member's backup into FILE.part, checks it, syncs it and renames it into place.
async fn save(g: &Globals, path: &str, out: &mut Out) -> Result<(), String> {
    if g.endpoints.len() != 1 {
        return Err(format!(
            "snapshot must be requested to one selected node, not multiple [{}]",
            g.endpoints.join(" ")
        ));
    }
    let part = format!("{path}.part");
    let result = save_part(g, path, &part, out).await;
    let _ = std::fs::remove_file(&part);
    result
}

async fn save_part(g: &Globals, path: &str, part: &str, out: &mut Out) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(part)
        .map_err(|e| format!("could not open {part} ({e})"))?;
    log(out, "created temporary db file", &[("path", json!(part))]);
    let started = Instant::now();
    let c = crate::connect_to(g, &g.endpoints[0]).await?;
    let mut stream = c
        .maintenance()
        .snapshot(SnapshotRequest {})
        .await
        .map_err(|s| client::describe(&s))?
        .into_inner();
    log(
        out,
        "fetching snapshot",
        &[("endpoint", json!(g.endpoints[0]))],
    );
    let mut size = 0u64;
    let mut buf = std::io::BufWriter::with_capacity(1 << 20, &mut file);
    while let Some(piece) = stream.message().await.map_err(|s| client::describe(&s))? {
        size += piece.blob.len() as u64;
        buf.write_all(&piece.blob).map_err(|e| e.to_string())?;
    }
    buf.flush().map_err(|e| e.to_string())?;
    drop(buf);
    if !oxcd_storage::has_checksum(size) {
        return Err(format!("sha256 checksum not found [bytes: {size}]"));
    }
    file.sync_all().map_err(|e| e.to_string())?;
    drop(file);
    oxcd_storage::check_backup(Path::new(part), false).map_err(|e| e.to_string())?;
    log(
        out,
        "fetched snapshot",
        &[
            ("endpoint", json!(g.endpoints[0])),
            ("size", json!(humanize_bytes(size))),
            ("took", json!(crate::gofmt::duration(started.elapsed()))),
        ],
    );
    std::fs::rename(part, path).map_err(|e| format!("could not rename {part} to {path} ({e})"))?;
    if let Some(dir) = Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    log(out, "saved", &[("path", json!(path))]);
    Ok(())
}

fn status(g: &Globals, path: &str, out: &mut Out) -> Result<(), CtlError> {
    let len = std::fs::metadata(path)
        .map_err(|e| err(format!("stat {path}: {}", io_error_text(&e))))?
        .len();
    let st = oxcd_storage::check_backup(Path::new(path), !oxcd_storage::has_checksum(len))
        .map_err(|e| err(e.to_string()))?;
    let row = vec![
        format!("{:x}", st.hash),
        st.revision.to_string(),
        st.total_keys.to_string(),
        humanize_bytes(st.total_size),
    ];
    match g.printer.format {
        Format::Simple => out.line(row.join(", ")),
        Format::Table => out.stdout.push_str(&table(
            &["hash", "revision", "total keys", "total size"],
            &[row],
        )),
        Format::Json => out.line(
            json!({
                "hash": st.hash,
                "revision": st.revision,
                "totalKey": st.total_keys,
                "totalSize": st.total_size,
            })
            .to_string(),
        ),
        other => return fail(crate::EXIT_BAD_FEATURE, crate::printer::unsupported(other)),
    }
    Ok(())
}

fn print_alarms(
    g: &Globals,
    header: &Option<oxcd_api::etcdserverpb::ResponseHeader>,
    alarms: &[AlarmMember],
    out: &mut Out,
) -> Result<(), CtlError> {
    match g.printer.format {
        Format::Json => {
            let mut m = serde_json::Map::new();
            if let Some(h) = crate::printer::header_json(header) {
                m.insert("header".into(), h);
            }
            if !alarms.is_empty() {
                let list: Vec<Value> = alarms
                    .iter()
                    .map(|a| {
                        let mut e = serde_json::Map::new();
                        e.insert("memberID".into(), json!(a.member_id));
                        if a.alarm != 0 {
                            e.insert("alarm".into(), json!(a.alarm));
                        }
                        Value::Object(e)
                    })
                    .collect();
                m.insert("alarms".into(), Value::Array(list));
            }
            out.line(Value::Object(m).to_string());
        }
        _ => {
            for a in alarms {
                out.line(oxcd_api::alarm_text(a));
            }
        }
    }
    Ok(())
}

pub async fn alarm(g: &Globals, m: &ArgMatches, out: &mut Out) -> Result<(), CtlError> {
    let (sub, sm) = m.subcommand().ok_or_else(|| err("no command".into()))?;
    if !args_of(sm).is_empty() {
        return fail(
            EXIT_BAD_ARGS,
            format!("alarm {sub} command accepts no arguments"),
        );
    }
    let c = crate::connect(g).await?;
    let list = client::with_timeout(
        g.command_timeout,
        c.maintenance().alarm(AlarmRequest::default()),
    )
    .await
    .map_err(err)?;
    if sub == "list" {
        return print_alarms(g, &list.header, &list.alarms, out);
    }
    // As etcd's client: disarm each active alarm in turn.
    let mut disarmed = Vec::new();
    for a in &list.alarms {
        let resp = client::with_timeout(
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
    print_alarms(g, &None, &disarmed, out)
}

pub async fn defrag(g: &Globals, m: &ArgMatches, out: &mut Out) -> Result<(), CtlError> {
    let data_dir = string(m, "data-dir");
    if !data_dir.is_empty() {
        let db = Path::new(&data_dir).join("member").join("snap").join("db");
        let result = oxcd_storage::Store::open(&db)
            .map_err(|e| e.to_string())
            .and_then(|s| s.defragment().map_err(|e| e.to_string()));
        if let Err(e) = result {
            out.stderr.push_str(&format!(
                "Failed to defragment etcd data[{data_dir}] ({e})\n"
            ));
            return fail(EXIT_ERROR, "");
        }
        return Ok(());
    }
    let eps = crate::cluster_endpoints(g, m).await?;
    let mut failures = 0;
    for ep in eps {
        let result = async {
            let c = crate::connect_to(g, &ep).await?;
            client::with_timeout(
                g.command_timeout,
                c.maintenance().defragment(DefragmentRequest {}),
            )
            .await
        }
        .await;
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

/// Go's text for common file errors ("no such file or directory").
fn io_error_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}
