//! `ops`: the operations figures side by side, one member of each product loaded with the
//! same keys: backup (Maintenance.Snapshot) time and size, `snapshot save` through each
//! product's ctl (time, the ctl's peak memory, the server's memory meanwhile), restore time
//! of each product's backup with each ctl (the restored data dirs started and checked), and
//! the db file before and after defragmenting once most keys are deleted.

use crate::load::{self, LoadSpec, Op};
use crate::procfs::status_kb;
use crate::servers::{print_rows, start, Row};
use oxcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use oxcd_api::etcdserverpb::{
    kv_client::KvClient, CompactionRequest, DefragmentRequest, DeleteRangeRequest, RangeRequest,
    SnapshotRequest, StatusRequest,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Figures {
    save_s: f64,
    backup_mb: f64,
    ctl_save_s: f64,
    ctl_rss_mb: f64,
    server_rss_mb: f64,
    server_rise_mb: f64,
    db_full_mb: f64,
    db_deleted_mb: f64,
    db_defragged_mb: f64,
    defrag_s: f64,
}

/// A product's backup (Maintenance.Snapshot) and what its member held when it was taken.
struct Backup {
    product: &'static str,
    file: PathBuf,
    keys: i64,
    revision: i64,
    _dir: tempfile::TempDir,
}

const MB: f64 = 1024.0 * 1024.0;

/// The end of the `ops-` prefix.
const ALL: &[u8] = b"ops.";

/// GNU time: `-f %M` is the peak resident memory of the command it ran, in KiB.
const TIME: &str = "/usr/bin/time";

async fn db_size(endpoint: &str) -> Result<f64, String> {
    let mut m = MaintenanceClient::new(load::connect(endpoint).await?);
    let st = m
        .status(StatusRequest {})
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    Ok(st.db_size as f64 / MB)
}

/// How many keys in [`ops-`, `end`) a member holds, and its revision.
async fn ops_keys(endpoint: &str, end: &[u8]) -> Result<(i64, i64), String> {
    let mut kv = KvClient::new(load::connect(endpoint).await?);
    let r = kv
        .range(RangeRequest {
            key: b"ops-".to_vec(),
            range_end: end.to_vec(),
            count_only: true,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    Ok((r.count, r.header.map_or(0, |h| h.revision)))
}

/// `ctl snapshot save` run under GNU time, the server's RSS sampled every 50 ms meanwhile:
/// (seconds, the ctl's peak RSS, the server's RSS just before, the server's peak) in MiB.
async fn ctl_save(
    ctl: &str,
    endpoint: &str,
    file: &Path,
    server: u32,
) -> Result<(f64, f64, f64, f64), String> {
    let rss_file = file.with_extension("rss");
    let before = status_kb(server, "VmRSS:");
    let mut peak = before;
    let started = Instant::now();
    let mut child = Command::new(TIME)
        .args(["-f", "%M", "-o"])
        .arg(&rss_file)
        .arg(ctl)
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoint, "snapshot", "save"])
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{TIME} {ctl}: {e}"))?;
    let status = loop {
        peak = peak.max(status_kb(server, "VmRSS:"));
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let save_s = started.elapsed().as_secs_f64();
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!(
            "{ctl} snapshot save: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = std::fs::read_to_string(&rss_file).map_err(|e| e.to_string())?;
    let ctl_kb: u64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{TIME} -f %M: unexpected {text:?}"))?;
    let mib = |kb: u64| kb as f64 / 1024.0;
    Ok((save_s, mib(ctl_kb), mib(before), mib(peak)))
}

/// `ctl snapshot restore FILE --data-dir DIR`, in seconds.
fn restore(ctl: &str, file: &Path, data_dir: &Path) -> Result<f64, String> {
    let started = Instant::now();
    let out = Command::new(ctl)
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "restore"])
        .arg(file)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .map_err(|e| format!("{ctl}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{ctl} snapshot restore {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Streams a backup into `file` and syncs it: the whole time, the part of it the final
/// fsync took (a cost of the client's disk, which grows with the file's size), and the bytes.
pub(crate) async fn stream_backup(
    endpoint: &str,
    file: &Path,
) -> Result<(Duration, Duration, u64), String> {
    let started = Instant::now();
    let mut maintenance =
        MaintenanceClient::new(load::connect(endpoint).await?).max_decoding_message_size(64 << 20);
    let mut stream = maintenance
        .snapshot(SnapshotRequest {})
        .await
        .map_err(|e| format!("snapshot: {}", e.message()))?
        .into_inner();
    let on_file = |e: std::io::Error| format!("{}: {e}", file.display());
    let mut out = std::io::BufWriter::new(std::fs::File::create(file).map_err(on_file)?);
    let mut bytes = 0u64;
    while let Some(piece) = stream
        .message()
        .await
        .map_err(|e| format!("snapshot: {}", e.message()))?
    {
        bytes += piece.blob.len() as u64;
        out.write_all(&piece.blob).map_err(on_file)?;
    }
    let out = out.into_inner().map_err(|e| on_file(e.into_error()))?;
    let syncing = Instant::now();
    out.sync_all().map_err(on_file)?;
    Ok((started.elapsed(), syncing.elapsed(), bytes))
}

/// `ctl snapshot status FILE -w json`: its hash, revision and totalKey.
pub(crate) fn status(ctl: &str, file: &Path) -> Result<[u64; 3], String> {
    let out = Command::new(ctl)
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "status", "-w", "json"])
        .arg(file)
        .output()
        .map_err(|e| format!("{ctl}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.split(&format!("\"{name}\":"))
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| {
                format!(
                    "{ctl} snapshot status {}: no {name} in {text:?} {}",
                    file.display(),
                    String::from_utf8_lossy(&out.stderr)
                )
            })
    };
    Ok([field("hash")?, field("revision")?, field("totalKey")?])
}

/// Starts `program` on a data dir restored with the ctls' defaults (member `default`) and
/// reads [`ops_keys`] from it.
async fn restored_keys(program: &str, data_dir: &Path) -> Result<(i64, i64), String> {
    let bind = || std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string());
    let (a, b) = (bind()?, bind()?);
    let port =
        |l: &std::net::TcpListener| l.local_addr().map(|a| a.port()).map_err(|e| e.to_string());
    let (cp, pp) = (port(&a)?, port(&b)?);
    drop((a, b));
    let client = format!("http://127.0.0.1:{cp}");
    let mut child = Command::new(program)
        .args(["--name", "default", "--data-dir"])
        .arg(data_dir)
        .args([
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
        ])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{pp}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let endpoint = format!("127.0.0.1:{cp}");
    let deadline = Instant::now() + Duration::from_secs(120);
    let result = loop {
        let e = match tokio::time::timeout(Duration::from_secs(5), ops_keys(&endpoint, ALL)).await {
            Ok(Ok(got)) => break Ok(got),
            Ok(Err(e)) => e,
            Err(_) => "timed out".to_string(),
        };
        if Instant::now() > deadline {
            break Err(format!("{program} on {}: {e}", data_dir.display()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    result
}

async fn measure(
    name: &'static str,
    program: &str,
    ctl: &str,
    keys: usize,
) -> Result<(Figures, Backup), String> {
    let cluster = start(name, program, 1).await?;
    let endpoint = cluster.members[0].endpoint.clone();
    eprintln!("{name}: loading {keys} keys");
    let fill = LoadSpec {
        endpoint: endpoint.clone(),
        conns: 16,
        clients: 256,
        total: keys,
        op: Op::Put {
            key_size: 16,
            val_size: 256,
            key_space_size: 0,
            prefix: "ops-".into(),
        },
    };
    load::run(&fill).await?;
    let db_full_mb = db_size(&endpoint).await?;
    let (loaded, revision) = ops_keys(&endpoint, ALL).await?;
    println!("{name}: loaded {loaded} keys, revision {revision}");

    eprintln!("{name}: snapshot save with {ctl}");
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let ctl_file = dir.path().join("ctl.db");
    let pid = cluster.members[0].child.id();
    let (ctl_save_s, ctl_rss_mb, server_before_mb, server_rss_mb) =
        ctl_save(ctl, &endpoint, &ctl_file, pid).await?;
    let _ = std::fs::remove_file(&ctl_file);

    eprintln!("{name}: backup");
    let backup = dir.path().join("backup.db");
    let (took, _, bytes) = stream_backup(&endpoint, &backup).await?;
    let save_s = took.as_secs_f64();

    eprintln!("{name}: delete 90%, compact, defragment");
    let mut kv = KvClient::new(load::connect(&endpoint).await?);
    let cut = format!("ops-{:0width$}", keys / 10 * 9, width = 12);
    let deleted = kv
        .delete_range(DeleteRangeRequest {
            key: b"ops-".to_vec(),
            range_end: cut.clone().into_bytes(),
            ..Default::default()
        })
        .await;
    let rev = match deleted {
        Ok(resp) => resp.into_inner().header.map_or(0, |h| h.revision),
        // etcd answers "request timed out" when the delete outlasts its request timeout,
        // and applies it all the same: wait until the keys are gone.
        Err(e) => {
            println!(
                "{name}: delete 90%: {}; waiting for it to apply",
                e.message()
            );
            let deadline = Instant::now() + Duration::from_secs(600);
            loop {
                let read = ops_keys(&endpoint, cut.as_bytes());
                if let Ok(Ok((0, rev))) = tokio::time::timeout(Duration::from_secs(10), read).await
                {
                    break rev;
                }
                if Instant::now() > deadline {
                    return Err(format!("{name}: delete 90%: {e}"));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    kv.compact(CompactionRequest {
        revision: rev,
        physical: true,
    })
    .await
    .map_err(|e| e.to_string())?;
    let db_deleted_mb = db_size(&endpoint).await?;
    let mut m = MaintenanceClient::new(load::connect(&endpoint).await?);
    let started = Instant::now();
    m.defragment(DefragmentRequest {})
        .await
        .map_err(|e| e.to_string())?;
    let defrag_s = started.elapsed().as_secs_f64();
    let db_defragged_mb = db_size(&endpoint).await?;
    let figures = Figures {
        save_s,
        backup_mb: bytes as f64 / MB,
        ctl_save_s,
        ctl_rss_mb,
        server_rss_mb,
        server_rise_mb: server_rss_mb - server_before_mb,
        db_full_mb,
        db_deleted_mb,
        db_defragged_mb,
        defrag_s,
    };
    let backup = Backup {
        product: name,
        file: backup,
        keys: loaded,
        revision,
        _dir: dir,
    };
    Ok((figures, backup))
}

pub async fn ops(
    oxcd: &str,
    etcd: &str,
    oxcdctl: &str,
    etcdctl: &str,
    keys: usize,
) -> Result<(), String> {
    let (ours, our_backup) = measure("oxcd", oxcd, oxcdctl, keys).await?;
    let (theirs, their_backup) = measure("etcd", etcd, etcdctl, keys).await?;
    // Each backup restored by each ctl (with both servers stopped), each restored data dir
    // started with the ctl's own product: secs[backup][ctl], oxcd first.
    let ctls = [(oxcdctl, oxcd), (etcdctl, etcd)];
    let mut secs = [[f64::NAN; 2]; 2];
    let mut problems = Vec::new();
    for (b, backup) in [&our_backup, &their_backup].into_iter().enumerate() {
        let what = format!("{}'s backup", backup.product);
        match (status(oxcdctl, &backup.file), status(etcdctl, &backup.file)) {
            (Ok(ox), Ok(et)) => {
                println!("{what}: status [hash, rev, totalKey] oxcdctl {ox:?} etcdctl {et:?}");
                if ox != et || ox[1] != backup.revision as u64 {
                    problems.push(format!(
                        "{what}: the ctls' snapshot status differ or revision is not {}",
                        backup.revision
                    ));
                }
            }
            (Err(e), _) | (_, Err(e)) => problems.push(e),
        }
        for (c, (ctl, server)) in ctls.into_iter().enumerate() {
            let data_dir = backup.file.with_file_name(format!("restored-{c}"));
            eprintln!("{what}: restore with {ctl}, start {server} on it");
            let checked = match restore(ctl, &backup.file, &data_dir) {
                Ok(s) => {
                    secs[b][c] = s;
                    restored_keys(server, &data_dir).await
                }
                Err(e) => Err(e),
            };
            match checked {
                Ok(got) => {
                    println!(
                        "{what} restored by {ctl}: {} keys, revision {}",
                        got.0, got.1
                    );
                    if got != (backup.keys, backup.revision) {
                        problems.push(format!(
                            "{what} restored by {ctl}: {got:?} (keys, revision), taken at {:?}",
                            (backup.keys, backup.revision)
                        ));
                    }
                }
                Err(e) => problems.push(e),
            }
            let _ = std::fs::remove_dir_all(&data_dir);
        }
    }
    let row = |name: &str, unit: &'static str, f: fn(&Figures) -> f64| Row {
        name: name.to_string(),
        unit,
        oxcd: f(&ours),
        etcd: f(&theirs),
        higher_is_better: false,
    };
    let restored = |name: &str, oxcd: f64, etcd: f64| Row {
        name: name.to_string(),
        unit: "s",
        oxcd,
        etcd,
        higher_is_better: false,
    };
    println!("{keys} keys x 256 B, one member each");
    print_rows(
        "oxcd",
        "etcd",
        vec![
            row("snapshot save (stream to file)", "s", |f| f.save_s),
            row("backup file size", "MiB", |f| f.backup_mb),
            row("snapshot save (own ctl)", "s", |f| f.ctl_save_s),
            row("ctl peak RSS, snapshot save", "MiB", |f| f.ctl_rss_mb),
            row("server peak RSS, ctl save", "MiB", |f| f.server_rss_mb),
            row("server RSS rise, ctl save", "MiB", |f| f.server_rise_mb),
            restored("snapshot restore (own ctl)", secs[0][0], secs[1][1]),
            restored("restore etcd's backup, each ctl", secs[1][0], secs[1][1]),
            restored("restore oxcd's backup, each ctl", secs[0][0], secs[0][1]),
            row("db size, all keys", "MiB", |f| f.db_full_mb),
            row("db size, 90% deleted+compacted", "MiB", |f| f.db_deleted_mb),
            row("db size after defrag", "MiB", |f| f.db_defragged_mb),
            row("defrag time", "s", |f| f.defrag_s),
        ],
    );
    println!("(\"each ctl\" rows: the oxcd column is oxcdctl's time, the etcd column etcdctl's)");
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}
