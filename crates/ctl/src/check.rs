//! `check perf` and `check datascale` (etcdctl's check_command.go): puts of 1 KiB under a
//! prefix by a pool of clients, then the prefix deleted (and optionally compacted and
//! defragmented). perf rate-limits 60 s of puts and judges throughput and latency; datascale
//! puts a fixed number of keys and reports the server's resident memory growth.

use crate::connect::{connect, connect_to};
use crate::error::{err, fail, CtlError, Result, EXIT_BAD_FEATURE, EXIT_ERROR, EXIT_INVALID_INPUT};
use crate::flags::{bool_flag, flag, string, subcommand};
use crate::globals::Globals;
use crate::printer::Out;
use clap::{Arg, ArgMatches, Command};
use oxcd_api::etcdserverpb::{
    CompactionRequest, DefragmentRequest, DeleteRangeRequest, PutRequest, RangeRequest,
};
use oxcd_client::{with_timeout, Client};
use oxcd_utl::progress::{Progress, Unit};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn workload_cmd(
    name: &'static str,
    about: &'static str,
    what: &'static str,
    prefix: &'static str,
) -> Command {
    Command::new(name)
        .about(about)
        .arg(Arg::new("load").long("load").default_value("s").help(format!(
            "The {what} check's workload model. Accepted workloads: s(small), m(medium), l(large), xl(xLarge)"
        )))
        .arg(
            Arg::new("prefix")
                .long("prefix")
                .default_value(prefix)
                .help(format!("The prefix for writing the {what} check's keys.")),
        )
        .arg(bool_flag("auto-compact", "Compact storage with last revision after test is finished."))
        .arg(bool_flag("auto-defrag", "Defragment storage after test is finished."))
}

pub fn check_cmd() -> Command {
    Command::new("check")
        .about("commands for checking properties of the etcd cluster")
        .subcommand_required(true)
        .subcommand(workload_cmd(
            "perf",
            "Check the performance of the etcd cluster",
            "performance",
            "/etcdctl-check-perf/",
        ))
        .subcommand(workload_cmd(
            "datascale",
            "Check the memory usage of holding data for different workloads on a given server endpoint.",
            "datascale",
            "/etcdctl-check-datascale/",
        ))
}

pub async fn check(g: &Globals, m: &ArgMatches, out: &mut Out) -> Result<()> {
    match subcommand(m)? {
        ("datascale", sm) => datascale(g, sm, out).await,
        (_, sm) => perf(g, sm, out).await,
    }
}

/// etcdctl's limit for the clean-up's delete, compaction and defragmentation.
const CLEAN_UP_TIMEOUT: Duration = Duration::from_secs(30);

/// Put errors by message, and how many.
type Errors = Arc<Mutex<BTreeMap<String, u64>>>;

/// The prefix a check writes under, on a connection to the cluster.
struct Workload {
    c: Client,
    prefix: String,
    end: Vec<u8>,
    latencies: Arc<Mutex<Vec<f64>>>,
    errors: Errors,
}

impl Workload {
    /// Connects, and refuses a prefix that already holds keys.
    async fn open(g: &Globals, sm: &ArgMatches) -> Result<Workload> {
        let prefix = string(sm, "prefix");
        let c = connect(g).await?;
        let mut end = prefix.clone().into_bytes();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let existing = with_timeout(
            g.command_timeout,
            c.kv().range(RangeRequest {
                key: prefix.clone().into_bytes(),
                range_end: end.clone(),
                limit: 1,
                ..Default::default()
            }),
        )
        .await
        .map_err(err)?;
        if !existing.kvs.is_empty() {
            return fail(
                EXIT_INVALID_INPUT,
                format!(
                    "prefix {prefix:?} has keys. Delete with etcdctl del --prefix {prefix} first"
                ),
            );
        }
        Ok(Workload {
            c,
            prefix,
            end,
            latencies: Arc::default(),
            errors: Arc::default(),
        })
    }

    /// `n`-th key: the prefix and `len` bytes, distinct for each `n`.
    fn key(&self, n: u64, len: usize) -> Vec<u8> {
        let mut key = self.prefix.clone().into_bytes();
        let mut suffix = vec![0u8; len];
        suffix[..8].copy_from_slice(&(n.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_le_bytes());
        key.extend_from_slice(&suffix);
        key
    }

    /// `clients` tasks putting each key sent (with a value of `value_len` zero bytes) until
    /// the sender is dropped; await the handles for them to finish.
    fn putters(
        &self,
        clients: usize,
        value_len: usize,
    ) -> (
        tokio::sync::mpsc::Sender<Vec<u8>>,
        Vec<tokio::task::JoinHandle<()>>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(clients);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let workers = (0..clients)
            .map(|_| {
                let (rx, latencies, errors) =
                    (rx.clone(), self.latencies.clone(), self.errors.clone());
                let mut kv = self.c.kv();
                tokio::spawn(async move {
                    loop {
                        let key = { rx.lock().await.recv().await };
                        let Some(key) = key else { break };
                        let t = Instant::now();
                        let put = kv.put(PutRequest {
                            key,
                            value: vec![0u8; value_len],
                            ..Default::default()
                        });
                        match put.await {
                            Ok(_) => latencies
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(t.elapsed().as_secs_f64()),
                            Err(e) => {
                                *errors
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .entry(e.message().to_string())
                                    .or_default() += 1
                            }
                        }
                    }
                })
            })
            .collect();
        (tx, workers)
    }

    /// Deletes the prefix, then compacts and defragments as the flags ask.
    async fn clean_up(&self, g: &Globals, sm: &ArgMatches, out: &mut Out) -> Result<()> {
        let deleted = with_timeout(
            CLEAN_UP_TIMEOUT,
            self.c.kv().delete_range(DeleteRangeRequest {
                key: self.prefix.clone().into_bytes(),
                range_end: self.end.clone(),
                ..Default::default()
            }),
        )
        .await
        .map_err(err)?;
        if flag(sm, "auto-compact") {
            let rev = deleted.header.map_or(0, |h| h.revision);
            out.line(format!("Compacting with revision {rev}"));
            with_timeout(
                CLEAN_UP_TIMEOUT,
                self.c.kv().compact(CompactionRequest {
                    revision: rev,
                    physical: true,
                }),
            )
            .await
            .map_err(err)?;
            out.line(format!("Compacted with revision {rev}"));
        }
        if flag(sm, "auto-defrag") {
            for ep in &g.endpoints {
                out.line(format!("Defragmenting {ep:?}"));
                let one = connect_to(g, ep).await.map_err(err)?;
                with_timeout(
                    CLEAN_UP_TIMEOUT,
                    one.maintenance().defragment(DefragmentRequest {}),
                )
                .await
                .map_err(err)?;
                out.line(format!("Defragmented {ep:?}"));
            }
        }
        Ok(())
    }

    /// etcdctl's verdict on errors: false (after listing them) if any put failed.
    fn no_errors(&self, out: &mut Out) -> bool {
        let errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        if errors.is_empty() {
            return true;
        }
        out.line("FAIL: too many errors");
        for (e, count) in errors.iter() {
            out.line(format!("FAIL: ERROR({e}) -> {count}"));
        }
        false
    }
}

/// perf: (writes per second, clients, seconds) for each load level.
fn perf_level(name: &str) -> Option<(u32, usize, u64)> {
    match name {
        "s" | "small" => Some((150, 50, 60)),
        "m" | "medium" => Some((1000, 200, 60)),
        "l" | "large" => Some((8000, 500, 60)),
        "xl" | "xLarge" => Some((15000, 1000, 60)),
        _ => None,
    }
}

/// datascale: (keys, clients) for each load level.
fn datascale_level(name: &str) -> Option<(u64, usize)> {
    match name {
        "s" | "small" => Some((10_000, 50)),
        "m" | "medium" => Some((100_000, 200)),
        "l" | "large" => Some((1_000_000, 500)),
        "xl" | "xLarge" => Some((3_000_000, 1000)),
        _ => None,
    }
}

async fn perf(g: &Globals, sm: &ArgMatches, out: &mut Out) -> Result<()> {
    let load = string(sm, "load");
    let Some((limit, clients, seconds)) = perf_level(&load) else {
        return fail(EXIT_BAD_FEATURE, format!("unknown load option {load}"));
    };
    let w = Workload::open(g, sm).await?;
    let (tx, workers) = w.putters(clients, 1024);
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / limit as f64));
    let mut n: u64 = 0;
    let progress = Progress::new("check perf", Some(seconds), Unit::Seconds);
    while started.elapsed() < Duration::from_secs(seconds) {
        tick.tick().await;
        n += 1;
        progress.set(started.elapsed().as_secs());
        if tx.send(w.key(n, 256)).await.is_err() {
            break;
        }
    }
    progress.finish();
    drop(tx);
    for worker in workers {
        let _ = worker.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    w.clean_up(g, sm, out).await?;

    let lat = w
        .latencies
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let rps = lat.len() as f64 / elapsed;
    let slowest = lat.iter().cloned().fold(0.0, f64::max);
    let mean = lat.iter().sum::<f64>() / lat.len().max(1) as f64;
    let stddev =
        (lat.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / lat.len().max(1) as f64).sqrt();
    let mut ok = w.no_errors(out);
    if rps / limit as f64 <= 0.9 {
        out.line(format!(
            "FAIL: Throughput too low: {} writes/s",
            rps as i64 + 1
        ));
        ok = false;
    } else {
        out.line(format!("PASS: Throughput is {} writes/s", rps as i64 + 1));
    }
    if slowest > 0.5 {
        out.line(format!("Slowest request took too long: {slowest:.6}s"));
        ok = false;
    } else {
        out.line(format!("PASS: Slowest request took {slowest:.6}s"));
    }
    if stddev > 0.1 {
        out.line(format!("Stddev too high: {stddev:.6}s"));
        ok = false;
    } else {
        out.line(format!("PASS: Stddev is {stddev:.6}s"));
    }
    if ok {
        out.line("PASS");
        Ok(())
    } else {
        out.line("FAIL");
        Err(CtlError::silent(EXIT_ERROR))
    }
}

async fn datascale(g: &Globals, sm: &ArgMatches, out: &mut Out) -> Result<()> {
    let load = string(sm, "load");
    let Some((keys, clients)) = datascale_level(&load) else {
        return fail(EXIT_BAD_FEATURE, format!("unknown load option {load}"));
    };
    let w = Workload::open(g, sm).await?;
    let first = g.endpoints.first().cloned().unwrap_or_default();
    let before = resident_memory(g, &first, out).await;
    if before == 0.0 {
        out.line("FAIL: Could not read process_resident_memory_bytes before the put operations.");
        return Err(CtlError::silent(EXIT_ERROR));
    }
    out.line(format!(
        "Start data scale check for work load [{keys} key-value pairs, 1024 bytes per key-value, {clients} concurrent clients]."
    ));
    let (tx, workers) = w.putters(clients, 512);
    let progress = Progress::new("check datascale", Some(keys), Unit::Keys);
    for n in 0..keys {
        progress.inc(1);
        if tx.send(w.key(n, 512)).await.is_err() {
            break;
        }
    }
    progress.finish();
    drop(tx);
    for worker in workers {
        let _ = worker.await;
    }
    let after = resident_memory(g, &first, out).await;
    if after == 0.0 {
        out.line("FAIL: Could not read process_resident_memory_bytes after the put operations.");
        return Err(CtlError::silent(EXIT_ERROR));
    }
    w.clean_up(g, sm, out).await?;
    if !w.no_errors(out) {
        return Err(CtlError::silent(EXIT_ERROR));
    }
    out.line(format!(
        "PASS: Approximate system memory used : {:.2} MB.",
        (after - before) / (1024.0 * 1024.0)
    ));
    Ok(())
}

/// `process_resident_memory_bytes` from the endpoint's /metrics, or 0 (after saying why).
async fn resident_memory(g: &Globals, endpoint: &str, out: &mut Out) -> f64 {
    match oxcd_client::http_get(endpoint, &g.dialer, "/metrics").await {
        Err(e) => {
            out.line(format!("fetch error: {e}"));
            0.0
        }
        Ok(text) => match text
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes"))
        {
            None => {
                out.line("could not find: process_resident_memory_bytes");
                0.0
            }
            Some(v) => v.trim().parse().unwrap_or_else(|e| {
                out.line(format!("parse error: {e}"));
                0.0
            }),
        },
    }
}
