//! `snapshot save|status|restore` (etcdctl's snapshot_command.go). `save` streams a member's
//! backup over the wire; `status` and `restore` work on files, through oxcd-utl.

use crate::connect::connect_to;
use crate::error::{fail, CtlError, Result, EXIT_BAD_ARGS, EXIT_INTERRUPTED};
use crate::flags::{args, args_of, bool_flag, flag, string, subcommand};
use crate::globals::Globals;
use crate::gofmt;
use crate::printer::Out;
use clap::{Arg, ArgMatches, Command};
use oxcd_api::etcdserverpb::SnapshotRequest;
use oxcd_client::describe;
use oxcd_utl::printer::humanize_bytes;
use oxcd_utl::snapshot::{RestoreOptions, RestorePaths};
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

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
                .arg(args()),
        )
        .subcommand(
            Command::new("status")
                .about("Gets backend snapshot status of a given file")
                .arg(args()),
        )
        .subcommand(
            Command::new("restore")
                .about("Restores an etcd member snapshot to an etcd directory")
                .arg(args())
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
                .arg(bool_flag(
                    "skip-hash-check",
                    "Ignore snapshot integrity hash value (required if copied from data directory)",
                )),
        )
}

pub async fn run(g: &Globals, m: &ArgMatches, out: &mut Out) -> Result<()> {
    let (sub, sm) = subcommand(m)?;
    let args = args_of(sm);
    let [file] = args.as_slice() else {
        let msg = match sub {
            "save" => "snapshot save expects one argument".to_string(),
            _ => format!("snapshot {sub} requires exactly one argument"),
        };
        return fail(EXIT_BAD_ARGS, msg);
    };
    match sub {
        "save" => {
            save(g, file, out)
                .await
                .map_err(|msg| CtlError::new(EXIT_INTERRUPTED, msg))?;
            out.line(format!("Snapshot saved at {file}"));
            Ok(())
        }
        "status" => {
            let st = oxcd_utl::snapshot::status(Path::new(file))?;
            g.printer.db_status(out, &st)
        }
        "restore" => restore(sm, file, out),
        other => fail(EXIT_BAD_ARGS, format!("unknown command {other:?}")),
    }
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

fn restore(m: &ArgMatches, file: &str, out: &mut Out) -> Result<()> {
    let opts = RestoreOptions {
        snapshot: file.into(),
        name: string(m, "name"),
        data_dir: string(m, "data-dir"),
        wal_dir: string(m, "wal-dir"),
        initial_cluster: string(m, "initial-cluster"),
        initial_cluster_token: string(m, "initial-cluster-token"),
        initial_advertise_peer_urls: string(m, "initial-advertise-peer-urls"),
        skip_hash_check: flag(m, "skip-hash-check"),
        ..RestoreOptions::default()
    };
    let text = |p: &Path| json!(p.display().to_string());
    let done = oxcd_utl::snapshot::restore(&opts, &mut |p: &RestorePaths| {
        log(
            out,
            "restoring snapshot",
            &[("path", json!(file)), ("data-dir", text(&p.data_dir))],
        )
    })?;
    log(
        out,
        "restored snapshot",
        &[
            ("path", json!(file)),
            ("wal-dir", text(&done.wal_dir)),
            ("data-dir", text(&done.data_dir)),
            ("snap-dir", text(&done.snap_dir)),
        ],
    );
    Ok(())
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
    let c = connect_to(g, &g.endpoints[0]).await?;
    let mut stream = c
        .maintenance()
        .snapshot(SnapshotRequest {})
        .await
        .map_err(|s| describe(&s))?
        .into_inner();
    log(
        out,
        "fetching snapshot",
        &[("endpoint", json!(g.endpoints[0]))],
    );
    let mut size = 0u64;
    let mut buf = std::io::BufWriter::with_capacity(1 << 20, &mut file);
    while let Some(piece) = stream.message().await.map_err(|s| describe(&s))? {
        size += piece.blob.len() as u64;
        buf.write_all(&piece.blob).map_err(|e| e.to_string())?;
    }
    buf.flush().map_err(|e| e.to_string())?;
    drop(buf);
    if !oxcd_utl::snapshot::has_checksum(size) {
        return Err(format!("sha256 checksum not found [bytes: {size}]"));
    }
    file.sync_all().map_err(|e| e.to_string())?;
    drop(file);
    // With its digest in place, `status` checks the digest and every record.
    oxcd_utl::snapshot::status(Path::new(part)).map_err(|e| e.msg)?;
    log(
        out,
        "fetched snapshot",
        &[
            ("endpoint", json!(g.endpoints[0])),
            ("size", json!(humanize_bytes(size))),
            ("took", json!(gofmt::duration(started.elapsed()))),
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
