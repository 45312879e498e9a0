//! `scale`: how oxcd and etcd grow with the key count (issue 18). For N/10, N and 3N keys
//! (16 B `s-` keys, 256 B values) one member of each product is loaded, one after the other,
//! and measured: resident memory after the load, the server's CPU time and memory spike for
//! a keys-only listing of every key and for a count-only one, the time from a restart (kill
//! -9, same data dir and flags) to the first linearizable read and the memory then, and the
//! time and size of a backup (Maintenance.Snapshot streamed to a file and fsynced; the fsync's
//! share, the client's disk, is shown on its own). Each key count gets
//! a table and the goals; the growth of every figure with the key count follows.

use crate::load::{self, LoadSpec, Op};
use crate::procfs::{cpu_seconds, reset_peak_rss, status_kb};
use crate::servers::{start, Cluster};
use crate::table::{print_rows, Row};
use oxcd_api::etcdserverpb::{kv_client::KvClient, RangeRequest};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MIB: f64 = 1024.0 * 1024.0;
const KEY_PREFIX: &str = "s-";
/// The end of the `s-` prefix: [`s-`, `s.`) is every loaded key.
const PREFIX_END: &[u8] = b"s.";
const KEY_SIZE: usize = 16;
const VALUE_SIZE: usize = 256;
/// How often VmRSS is sampled while a listing runs, when VmHWM cannot be reset.
const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(20);
/// The longest a listing of 3N keys, or a restarted server's first read, may take.
const SLOW_REQUEST: Duration = Duration::from_secs(600);

/// One product's figures at one key count.
struct Figures {
    load_puts_per_s: f64,
    rss_after_load_mb: f64,
    keys_only: ListCost,
    count_only: ListCost,
    restart_ms: f64,
    rss_after_restart_mb: f64,
    backup_ms: f64,
    /// Of `backup_ms`, the client's final fsync of the file.
    backup_fsync_ms: f64,
    backup_mb: f64,
}

/// What one listing cost the server, and how long the client waited for it.
struct ListCost {
    cpu_ms: f64,
    spike_mb: f64,
    time_ms: f64,
}

/// How to read one figure from `Figures`.
type Figure = fn(&Figures) -> f64;

/// A figure as printed: its name, unit, how to read it, whether higher is better.
type FigureSpec = (&'static str, &'static str, Figure, bool);

/// A goal: the figure's name, how to read it, the largest ratio oxcd/etcd that meets it.
type Goal = (&'static str, Figure, f64);

/// Every figure, in the tables' order. Times are in ms because the table prints one
/// decimal and the smallest of these are a few hundredths of a second.
const FIGURES: &[FigureSpec] = &[
    ("RSS after load", "MiB", |f| f.rss_after_load_mb, false),
    ("keys-only list CPU", "ms", |f| f.keys_only.cpu_ms, false),
    (
        "keys-only list memory spike",
        "MiB",
        |f| f.keys_only.spike_mb,
        false,
    ),
    ("keys-only list time", "ms", |f| f.keys_only.time_ms, false),
    ("count-only list CPU", "ms", |f| f.count_only.cpu_ms, false),
    (
        "count-only list memory spike",
        "MiB",
        |f| f.count_only.spike_mb,
        false,
    ),
    (
        "count-only list time",
        "ms",
        |f| f.count_only.time_ms,
        false,
    ),
    ("restart to first read", "ms", |f| f.restart_ms, false),
    (
        "RSS after restart",
        "MiB",
        |f| f.rss_after_restart_mb,
        false,
    ),
    ("backup time", "ms", |f| f.backup_ms, false),
    (
        "backup: client's fsync of the file",
        "ms",
        |f| f.backup_fsync_ms,
        false,
    ),
    ("backup size", "MiB", |f| f.backup_mb, false),
    ("load throughput", "puts/s", |f| f.load_puts_per_s, true),
];

/// Issue 18's goals.
const GOALS: &[Goal] = &[
    ("RSS after load", |f| f.rss_after_load_mb, 0.35),
    ("keys-only list CPU", |f| f.keys_only.cpu_ms, 0.5),
    (
        "keys-only list memory spike",
        |f| f.keys_only.spike_mb,
        0.25,
    ),
    ("count-only list CPU", |f| f.count_only.cpu_ms, 0.5),
    (
        "count-only list memory spike",
        |f| f.count_only.spike_mb,
        0.25,
    ),
    ("restart to first read", |f| f.restart_ms, 0.3),
    ("backup time", |f| f.backup_ms, 0.5),
];

/// A RangeResponse decoded only as far as the bench needs: each KeyValue stays raw bytes
/// (never parsed), so the client's own work stays small next to the server's.
#[derive(Clone, PartialEq, prost::Message)]
struct Listing {
    #[prost(bytes = "bytes", repeated, tag = "2")]
    kvs: Vec<bytes::Bytes>,
    #[prost(bool, tag = "3")]
    more: bool,
    #[prost(int64, tag = "4")]
    count: i64,
}

fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn cpu_of(pid: u32) -> Result<f64, String> {
    cpu_seconds(pid).ok_or_else(|| format!("cannot read /proc/{pid}/stat (server gone?)"))
}

/// Runs `req` against the server `pid` listening on `endpoint`: the server's CPU time over
/// the request and its memory spike (peak minus resident memory just before).
async fn measure_listing(
    endpoint: &str,
    pid: u32,
    req: RangeRequest,
) -> Result<(ListCost, Listing), String> {
    // Connected first, so that only the request itself is measured.
    let channel = load::connect(endpoint).await?;
    let rss_before = status_kb(pid, "VmRSS:");
    let peak_was_reset = reset_peak_rss(pid);
    let cpu_before = cpu_of(pid)?;
    let started = Instant::now();
    let call = crate::k8s::storage::range_as::<Listing>(&channel, req, SLOW_REQUEST);
    let (listing, sampled_peak) = if peak_was_reset {
        (call.await?, 0)
    } else {
        // No VmHWM reset: sample VmRSS while the request runs.
        tokio::pin!(call);
        let mut ticks = tokio::time::interval(RSS_SAMPLE_EVERY);
        let mut peak = rss_before;
        loop {
            tokio::select! {
                result = &mut call => break (result?, peak),
                _ = ticks.tick() => peak = peak.max(status_kb(pid, "VmRSS:")),
            }
        }
    };
    let time_ms = started.elapsed().as_secs_f64() * 1000.0;
    let cpu_after = cpu_of(pid)?;
    let peak = if peak_was_reset {
        status_kb(pid, "VmHWM:")
    } else {
        sampled_peak.max(status_kb(pid, "VmRSS:"))
    };
    let cost = ListCost {
        cpu_ms: (cpu_after - cpu_before) * 1000.0,
        spike_mb: kib_to_mib(peak.saturating_sub(rss_before)),
        time_ms,
    };
    Ok((cost, listing))
}

/// Where a restarted member logs: nowhere, or with OXCD_BENCH_LOG_DIR set, appended to
/// `<dir>/<product>-m0.log` (the file `servers::start` logs its first run to).
fn restart_log(name: &str) -> Result<Stdio, String> {
    let Some(dir) = std::env::var_os("OXCD_BENCH_LOG_DIR") else {
        return Ok(Stdio::null());
    };
    let path = Path::new(&dir).join(format!("{name}-m0.log"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    Ok(Stdio::from(file))
}

/// The arguments (after the program) a running process was started with.
fn arguments_of(pid: u32) -> Result<Vec<String>, String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map_err(|e| format!("cannot read /proc/{pid}/cmdline: {e}"))?;
    // NUL-terminated arguments, the program first.
    let raw = raw.strip_suffix(&[0]).unwrap_or(&raw);
    Ok(raw
        .split(|&b| b == 0)
        .skip(1)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect())
}

/// Kills the one member (SIGKILL, by its PID) and starts `program` again with the very
/// arguments it ran with (same name, data dir, ports, flags). Returns when it was spawned.
fn kill_and_respawn(cluster: &mut Cluster, program: &str) -> Result<Instant, String> {
    let name = cluster.name;
    let member = &mut cluster.members[0];
    let arguments = arguments_of(member.child.id())?;
    member
        .child
        .kill()
        .map_err(|e| format!("{name}: cannot kill: {e}"))?;
    member
        .child
        .wait()
        .map_err(|e| format!("{name}: waiting for the killed server: {e}"))?;
    let spawned = Instant::now();
    let child: Child = Command::new(program)
        .args(&arguments)
        .stdout(Stdio::null())
        .stderr(restart_log(name)?)
        .spawn()
        .map_err(|e| format!("cannot restart {program}: {e}"))?;
    // The killed process is reaped; the Cluster now stops the new one when dropped.
    member.child = child;
    Ok(spawned)
}

/// The first loaded key, as `load::run` names key 0.
fn first_key() -> Vec<u8> {
    format!(
        "{KEY_PREFIX}{:0width$}",
        0,
        width = KEY_SIZE - KEY_PREFIX.len()
    )
    .into_bytes()
}

/// A linearizable Range of the first key: how many keys it found.
async fn read_first_key(endpoint: &str) -> Result<usize, String> {
    let mut kv = KvClient::new(load::connect(endpoint).await?);
    let resp = kv
        .range(RangeRequest {
            key: first_key(),
            ..Default::default()
        })
        .await
        .map_err(|e| e.message().to_string())?
        .into_inner();
    Ok(resp.kvs.len())
}

/// Waits until a linearizable Range of the first key succeeds and finds it.
async fn wait_for_first_read(cluster: &mut Cluster) -> Result<(), String> {
    let name = cluster.name;
    let endpoint = cluster.members[0].endpoint.clone();
    let deadline = Instant::now() + SLOW_REQUEST;
    loop {
        let attempt = read_first_key(&endpoint);
        let last_error = match tokio::time::timeout(Duration::from_secs(10), attempt).await {
            Ok(Ok(1)) => return Ok(()),
            Ok(Ok(n)) => {
                return Err(format!(
                    "{name}: the first key read {n} times after restart"
                ))
            }
            Ok(Err(e)) => e,
            Err(_) => "read timed out".to_string(),
        };
        if let Ok(Some(status)) = cluster.members[0].child.try_wait() {
            return Err(format!("{name} exited after restart: {status}"));
        }
        if Instant::now() > deadline {
            return Err(format!("{name}: no read after restart: {last_error}"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One product at one key count: start, load, measure, stop.
async fn measure(
    name: &'static str,
    program: &str,
    ctl: &str,
    keys: usize,
) -> Result<Figures, String> {
    let mut cluster = start(name, program, 1).await?;
    let endpoint = cluster.members[0].endpoint.clone();
    let pid = cluster.members[0].child.id();

    eprintln!("{name}: loading {keys} keys");
    let fill = LoadSpec {
        endpoint: endpoint.clone(),
        conns: 8,
        clients: 64,
        total: keys,
        op: Op::Put {
            key_size: KEY_SIZE,
            val_size: VALUE_SIZE,
            key_space_size: 0,
            prefix: KEY_PREFIX.into(),
        },
    };
    let loaded = load::run(&fill).await?;
    if loaded.errors > 0 {
        return Err(format!("{name}: {} of {keys} puts failed", loaded.errors));
    }
    let rss_after_load_mb = kib_to_mib(status_kb(pid, "VmRSS:"));

    eprintln!("{name}: keys-only listing");
    let every_key = RangeRequest {
        key: KEY_PREFIX.as_bytes().to_vec(),
        range_end: PREFIX_END.to_vec(),
        ..Default::default()
    };
    let keys_only_req = RangeRequest {
        keys_only: true,
        ..every_key.clone()
    };
    let (keys_only, listing) = measure_listing(&endpoint, pid, keys_only_req).await?;
    if listing.kvs.len() != keys || listing.more {
        return Err(format!(
            "{name}: keys-only listing returned {} keys (more: {}), {keys} loaded",
            listing.kvs.len(),
            listing.more
        ));
    }
    drop(listing);

    eprintln!("{name}: count-only listing");
    let count_only_req = RangeRequest {
        count_only: true,
        ..every_key
    };
    let (count_only, counted) = measure_listing(&endpoint, pid, count_only_req).await?;
    if counted.count != keys as i64 {
        return Err(format!(
            "{name}: count-only listing counted {}, {keys} loaded",
            counted.count
        ));
    }

    eprintln!("{name}: kill -9 and restart");
    let restarted = kill_and_respawn(&mut cluster, program)?;
    wait_for_first_read(&mut cluster).await?;
    let restart_ms = restarted.elapsed().as_secs_f64() * 1000.0;
    let rss_after_restart_mb = kib_to_mib(status_kb(cluster.members[0].child.id(), "VmRSS:"));

    eprintln!("{name}: backup");
    let backup_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let backup_file = backup_dir.path().join("backup.db");
    let (took, fsync, bytes) = crate::ops::stream_backup(&endpoint, &backup_file).await?;
    let (backup_ms, backup_mb) = (took.as_secs_f64() * 1000.0, bytes as f64 / MIB);
    let backup_fsync_ms = fsync.as_secs_f64() * 1000.0;
    // Not timed: the backup holds every key, as the product's own ctl reads it (its total
    // counts every bucket's records: meta, members, ... add a few).
    match crate::ops::status(ctl, &backup_file).map(|[_hash, _revision, total]| total) {
        Ok(n) if n >= keys as u64 => {}
        Ok(n) => {
            println!("{name}: WARNING: {ctl} finds {n} records in the backup, {keys} keys loaded")
        }
        Err(e) => println!("{name}: WARNING: backup not checked: {e}"),
    }
    drop(cluster);

    Ok(Figures {
        load_puts_per_s: loaded.throughput(),
        rss_after_load_mb,
        keys_only,
        count_only,
        restart_ms,
        rss_after_restart_mb,
        backup_ms,
        backup_fsync_ms,
        backup_mb,
    })
}

/// `a / b`, or NaN when `b` is 0.
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

fn print_table(oxcd: &Figures, etcd: &Figures) {
    let rows = FIGURES
        .iter()
        .map(|&(name, unit, figure, higher_is_better)| Row {
            name: name.to_string(),
            unit,
            oxcd: figure(oxcd),
            etcd: figure(etcd),
            higher_is_better,
        })
        .collect();
    print_rows("oxcd", "etcd", rows);
}

fn print_goals(keys: usize, oxcd: &Figures, etcd: &Figures) {
    println!("issue 18's goals at {keys} keys (oxcd/etcd):");
    for &(name, figure, most) in GOALS {
        let (ours, theirs) = (figure(oxcd), figure(etcd));
        // Both 0 (no spike at all) meets the goal; oxcd above an etcd of 0 does not.
        let met = if theirs > 0.0 {
            ours / theirs <= most
        } else {
            ours <= 0.0
        };
        println!(
            "  {name:<34} <= {most:<4}  {:<7}  ratio {:.2} ({ours:.1} / {theirs:.1})",
            if met { "met" } else { "NOT met" },
            ratio(ours, theirs),
        );
    }
}

/// How each figure grew from N/10 to N keys and from N to 3N keys, per product.
fn print_growth(counts: &[usize; 3], results: &[[Figures; 2]]) {
    println!(
        "growth with the key count (linear: ~10 from {} to {}, ~3 from {} to {}):",
        counts[0], counts[1], counts[1], counts[2]
    );
    println!(
        "{:<30} {:>11} {:>11} {:>11} {:>11}",
        "figure", "oxcd x10", "oxcd x3", "etcd x10", "etcd x3"
    );
    for &(name, _, figure, _) in FIGURES {
        let growth = |product: usize| {
            let at = |count: usize| figure(&results[count][product]);
            (ratio(at(1), at(0)), ratio(at(2), at(1)))
        };
        let ((oxcd10, oxcd3), (etcd10, etcd3)) = (growth(0), growth(1));
        println!("{name:<34} {oxcd10:>11.2} {oxcd3:>11.2} {etcd10:>11.2} {etcd3:>11.2}");
    }
}

/// `oxcd-bench scale`: both products at N/10, N and 3N keys, one server at a time.
pub async fn scale(
    oxcd: &str,
    etcd: &str,
    oxcdctl: &str,
    etcdctl: &str,
    keys: usize,
) -> Result<(), String> {
    if keys < 10 {
        return Err(format!(
            "--keys {keys}: at least 10 (N/10 keys are loaded too)"
        ));
    }
    let counts = [keys / 10, keys, keys * 3];
    let mut results = Vec::new();
    for count in counts {
        let ours = measure("oxcd", oxcd, oxcdctl, count).await?;
        let theirs = measure("etcd", etcd, etcdctl, count).await?;
        println!("{count} keys x {VALUE_SIZE} B, one member each");
        print_table(&ours, &theirs);
        print_goals(count, &ours, &theirs);
        println!();
        results.push([ours, theirs]);
    }
    print_growth(&counts, &results);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxcd_api::etcdserverpb::RangeResponse;
    use oxcd_api::mvccpb::KeyValue;
    use prost::Message;

    #[test]
    fn listing_counts_the_kvs_of_a_range_response() {
        let kv = |key: &[u8]| KeyValue {
            key: key.to_vec(),
            create_revision: 2,
            mod_revision: 3,
            version: 1,
            ..Default::default()
        };
        let response = RangeResponse {
            kvs: vec![kv(b"s-1"), kv(b"s-2"), kv(b"s-3")],
            more: true,
            count: 7,
            ..Default::default()
        };
        let listing = Listing::decode(response.encode_to_vec().as_slice()).unwrap();
        assert_eq!(
            (listing.kvs.len(), listing.more, listing.count),
            (3, true, 7)
        );
    }

    #[test]
    fn first_key_is_the_loads_key_zero() {
        assert_eq!(first_key(), b"s-00000000000000");
        assert_eq!(first_key().len(), KEY_SIZE);
    }
}
