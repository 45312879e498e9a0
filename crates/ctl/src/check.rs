//! `check perf`: etcdctl's write benchmark with its load levels and PASS/FAIL criteria: 60 s
//! of rate-limited puts of 256-byte keys and 1 KiB values under a prefix, then the prefix is
//! deleted (and optionally compacted and defragmented).

use crate::connect::{connect, connect_to};
use crate::error::{err, fail, CtlError, Result, EXIT_BAD_FEATURE, EXIT_ERROR, EXIT_INVALID_INPUT};
use crate::flags::{bool_flag, flag, string, subcommand};
use crate::globals::Globals;
use crate::printer::Out;
use clap::{Arg, ArgMatches, Command};
use oxcd_api::etcdserverpb::{
    CompactionRequest, DefragmentRequest, DeleteRangeRequest, PutRequest, RangeRequest,
};
use oxcd_client::with_timeout;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn check_cmd() -> Command {
    Command::new("check")
        .about("commands for checking properties of the etcd cluster")
        .subcommand_required(true)
        .subcommand(
            Command::new("perf")
                .about("Check the performance of the etcd cluster")
                .arg(
                    Arg::new("load")
                        .long("load")
                        .default_value("s")
                        .help("The performance check's workload model. Accepted workloads: s(small), m(medium), l(large), xl(xLarge)"),
                )
                .arg(
                    Arg::new("prefix")
                        .long("prefix")
                        .default_value("/etcdctl-check-perf/")
                        .help("The prefix for writing the performance check's keys."),
                )
                .arg(bool_flag("auto-compact", "Compact storage with last revision after test is finished."))
                .arg(bool_flag("auto-defrag", "Defragment storage after test is finished.")),
        )
}

/// (writes per second, clients, seconds) for each load level.
fn level(name: &str) -> Option<(u32, usize, u64)> {
    match name {
        "s" | "small" => Some((150, 50, 60)),
        "m" | "medium" => Some((1000, 200, 60)),
        "l" | "large" => Some((8000, 500, 60)),
        "xl" | "xLarge" => Some((15000, 1000, 60)),
        _ => None,
    }
}

pub async fn check(g: &Globals, m: &ArgMatches, out: &mut Out) -> Result<()> {
    let (_, sm) = subcommand(m)?;
    let load = string(sm, "load");
    let Some((limit, clients, seconds)) = level(&load) else {
        return fail(EXIT_BAD_FEATURE, format!("unknown load option {load}"));
    };
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
            format!("prefix {prefix:?} has keys. Delete with etcdctl del --prefix {prefix} first"),
        );
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(clients);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let latencies: Arc<Mutex<Vec<f64>>> = Arc::default();
    let errors: Arc<Mutex<std::collections::BTreeMap<String, u64>>> = Arc::default();
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..clients {
        let (rx, latencies, errors) = (rx.clone(), latencies.clone(), errors.clone());
        let mut kv = c.kv();
        workers.push(tokio::spawn(async move {
            loop {
                let key = { rx.lock().await.recv().await };
                let Some(key) = key else { break };
                let t = Instant::now();
                let put = kv.put(PutRequest {
                    key,
                    value: vec![0u8; 1024],
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
        }));
    }
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / limit as f64));
    let mut n: u64 = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        tick.tick().await;
        n += 1;
        let mut key = prefix.clone().into_bytes();
        let mut suffix = [0u8; 256];
        suffix[..8].copy_from_slice(&(n.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_le_bytes());
        key.extend_from_slice(&suffix);
        if tx.send(key).await.is_err() {
            break;
        }
    }
    drop(tx);
    for w in workers {
        let _ = w.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let deleted = with_timeout(
        Duration::from_secs(30),
        c.kv().delete_range(DeleteRangeRequest {
            key: prefix.clone().into_bytes(),
            range_end: end,
            ..Default::default()
        }),
    )
    .await
    .map_err(err)?;
    if flag(sm, "auto-compact") {
        let rev = deleted.header.map_or(0, |h| h.revision);
        let _ = with_timeout(
            g.command_timeout,
            c.kv().compact(CompactionRequest {
                revision: rev,
                physical: true,
            }),
        )
        .await;
    }
    if flag(sm, "auto-defrag") {
        for ep in &g.endpoints {
            if let Ok(one) = connect_to(g, ep).await {
                let _ = with_timeout(
                    g.command_timeout,
                    one.maintenance().defragment(DefragmentRequest {}),
                )
                .await;
            }
        }
    }

    let lat = latencies.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let errors = errors.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let rps = lat.len() as f64 / elapsed;
    let slowest = lat.iter().cloned().fold(0.0, f64::max);
    let mean = lat.iter().sum::<f64>() / lat.len().max(1) as f64;
    let stddev =
        (lat.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / lat.len().max(1) as f64).sqrt();
    let mut ok = true;
    if !errors.is_empty() {
        out.line("FAIL: too many errors");
        for (e, count) in &errors {
            out.line(format!("FAIL: ERROR({e}) -> {count}"));
        }
        ok = false;
    }
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
