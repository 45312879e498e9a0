//! `snapshot save|status|restore` (etcdctl's snapshot_command.go). `save` streams a member's
//! backup over the wire (given a list of endpoints, which etcdctl 3.4 refuses, the leader's);
//! `status` and `restore` work on files, through oxcd-utl.

use crate::connect::connect_to;
use crate::error::{fail, CtlError, Result, EXIT_BAD_ARGS, EXIT_INTERRUPTED};
use crate::flags::{args, args_of, bool_flag, flag, string, subcommand};
use crate::globals::Globals;
use crate::gofmt;
use crate::printer::{Format, Out};
use clap::{Arg, ArgMatches, Command};
use oxcd_api::etcdserverpb::{SnapshotRequest, StatusRequest, StatusResponse};
use oxcd_api::MemberId;
use oxcd_client::{describe, with_timeout, Client};
use oxcd_utl::printer::humanize_bytes;
use oxcd_utl::progress::{Progress, Unit};
use oxcd_utl::snapshot::{RestoreOptions, RestorePaths};
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

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
            let source = save(g, file, out)
                .await
                .map_err(|msg| CtlError::new(EXIT_INTERRUPTED, msg))?;
            out.line(format!("Snapshot saved at {file}"));
            // Only a list of endpoints picks a member, so one endpoint prints as etcdctl.
            if let Some(source) = source.filter(|_| g.printer.format() == Format::Json) {
                out.line(source.json(file).to_string());
            }
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
    log_at(out, "info", msg, fields)
}

/// [`log`] at another zap level ("warn").
fn log_at(out: &mut Out, level: &str, msg: &str, fields: &[(&str, Value)]) {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut line = serde_json::Map::new();
    line.insert("level".into(), json!(level));
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

/// The member a backup is taken from when `--endpoints` lists several (etcdctl 3.4 refuses a
/// list): the leader, or without one among them the first endpoint that answered.
struct Source {
    endpoint: String,
    member: MemberId,
    leader: bool,
}

impl Source {
    /// `-w json`'s line after "Snapshot saved at FILE".
    fn json(&self, path: &str) -> Value {
        json!({
            "path": path,
            "endpoint": self.endpoint,
            "member_id": self.member.to_string(),
            "leader": self.leader,
        })
    }
}

/// How long each endpoint has to answer Maintenance.Status when a member is picked.
const PICK_TIMEOUT: Duration = Duration::from_secs(2);

/// Streams the member's backup into FILE.part, checks it, syncs it and renames it into place.
/// With several endpoints, the leader's (see [`Source`]), which it returns.
async fn save(g: &Globals, path: &str, out: &mut Out) -> Result<Option<Source>, String> {
    let (endpoint, client, source) = match g.endpoints.as_slice() {
        [one] => (one.clone(), None, None),
        [] => {
            return Err("snapshot must be requested to one selected node, not multiple []".into())
        }
        many => {
            let (source, client) = pick(g, many, out).await?;
            (source.endpoint.clone(), Some(client), Some(source))
        }
    };
    let part = format!("{path}.part");
    let result = save_part(g, &endpoint, client, path, &part, out).await;
    let _ = std::fs::remove_file(&part);
    result.map(|()| source)
}

/// Asks every endpoint's status at once and picks the leader, else the first that answered
/// (in `--endpoints` order); says on stderr which one and why. None answering fails as a
/// dial fails, with the last endpoint's error.
async fn pick(g: &Globals, eps: &[String], out: &mut Out) -> Result<(Source, Client), String> {
    let timeout = g.command_timeout.min(PICK_TIMEOUT);
    let asks = eps.iter().map(|ep| async move {
        let c = connect_to(g, ep).await?;
        let status = with_timeout(timeout, c.maintenance().status(StatusRequest {})).await?;
        Ok::<_, String>((c, status))
    });
    let answers = futures::future::join_all(asks).await;
    let mut last_error = String::from("context deadline exceeded");
    let mut answered = Vec::new();
    for (ep, answer) in eps.iter().zip(answers) {
        match answer {
            Ok((c, status)) => answered.push((ep, c, status)),
            Err(e) => {
                log_at(
                    out,
                    "warn",
                    "endpoint did not answer status",
                    &[("endpoint", json!(ep)), ("error", json!(e))],
                );
                last_error = e;
            }
        }
    }
    let member = |s: &StatusResponse| s.header.as_ref().map_or(0, |h| h.member_id);
    // A deposed leader may still think it leads: the highest term wins, then list order.
    let mut best: Option<usize> = None;
    for (i, (_, _, s)) in answered.iter().enumerate() {
        let leads = s.leader != 0 && s.leader == member(s);
        if leads && best.is_none_or(|b| s.raft_term > answered[b].2.raft_term) {
            best = Some(i);
        }
    }
    let leader = best.is_some();
    if answered.is_empty() {
        return Err(last_error);
    }
    let (ep, client, status) = answered.swap_remove(best.unwrap_or(0));
    let source = Source {
        endpoint: ep.clone(),
        member: MemberId(member(&status)),
        leader,
    };
    let reason = if leader {
        "leader"
    } else {
        "no leader among the endpoints; first member that answered"
    };
    log(
        out,
        "selected member for snapshot",
        &[
            ("endpoint", json!(source.endpoint)),
            ("member-id", json!(source.member.to_string())),
            ("reason", json!(reason)),
        ],
    );
    Ok((source, client))
}

/// Saves from `endpoint`, through `client` when [`pick`] has already connected there.
async fn save_part(
    g: &Globals,
    endpoint: &str,
    client: Option<Client>,
    path: &str,
    part: &str,
    out: &mut Out,
) -> Result<(), String> {
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
    let c = match client {
        Some(c) => c,
        None => connect_to(g, endpoint).await?,
    };
    let mut stream = c
        .maintenance()
        .snapshot(SnapshotRequest {})
        .await
        .map_err(|s| describe(&s))?
        .into_inner();
    log(out, "fetching snapshot", &[("endpoint", json!(endpoint))]);
    let mut size = 0u64;
    let progress = Progress::new(format!("snapshot save {endpoint}"), None, Unit::Bytes);
    let mut buf = std::io::BufWriter::with_capacity(1 << 20, &mut file);
    while let Some(piece) = stream.message().await.map_err(|s| describe(&s))? {
        if size == 0 {
            // The server's estimate of the whole; the last piece says 0 left.
            progress.set_total(piece.blob.len() as u64 + piece.remaining_bytes);
        }
        size += piece.blob.len() as u64;
        progress.set(size);
        buf.write_all(&piece.blob).map_err(|e| e.to_string())?;
    }
    progress.finish();
    buf.flush().map_err(|e| e.to_string())?;
    drop(buf);
    if !oxcd_utl::snapshot::has_checksum(size) {
        return Err(format!("sha256 checksum not found [bytes: {size}]"));
    }
    file.sync_all().map_err(|e| e.to_string())?;
    drop(file);
    // Checked before it takes the name: its digest, then every page.
    oxcd_utl::snapshot::verify(Path::new(part)).map_err(|e| e.msg)?;
    log(
        out,
        "fetched snapshot",
        &[
            ("endpoint", json!(endpoint)),
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
