//! `compare`'s first section: what one request costs each server. For put, conditional txn,
//! linearizable and serializable get (64 clients over 8 connections, 256 B values) and
//! watch event delivery, each product's throughput, p99 and server CPU per request: the
//! members' utime + stime from /proc/PID/stat over the load, summed, divided by requests.

use crate::load::{self, LoadSpec, Op};
use crate::procfs::total_cpu_seconds;
use crate::servers::Cluster;
use crate::table::Row;
use crate::watchlease::WatchStreams;
use std::time::{Duration, Instant};

/// One load's figures on one product.
#[derive(Default)]
pub struct Cost {
    pub throughput: f64,
    pub p99_ms: f64,
    /// Server CPU per request (per delivered event for watch), in µs.
    pub cpu_us: f64,
}

/// Issue 18's goals for each load, as oxcd/etcd ratios.
pub const CPU_GOAL: f64 = 0.5;
pub const THROUGHPUT_GOAL: f64 = 1.5;
pub const P99_GOAL: f64 = 0.6;

fn cpu_now(c: &Cluster) -> Result<f64, String> {
    total_cpu_seconds(&c.pids()).ok_or_else(|| format!("{}: a member has exited", c.name))
}

/// Runs `op` against `c` and reads its members' CPU time around it.
async fn cost_of(c: &Cluster, op: Op, total: usize) -> Result<Cost, String> {
    let spec = LoadSpec {
        endpoint: c.endpoints(),
        conns: 8,
        clients: 64,
        total,
        op,
    };
    let before = cpu_now(c)?;
    let report = load::run(&spec).await?;
    let cpu = cpu_now(c)? - before;
    if report.errors > 0 {
        return Err(format!("{}: {} requests failed", c.name, report.errors));
    }
    Ok(Cost {
        throughput: report.throughput(),
        p99_ms: report.percentile(99.0).as_secs_f64() * 1000.0,
        cpu_us: cpu * 1e6 / report.latencies.len().max(1) as f64,
    })
}

const WATCHED: &[u8] = b"wc-00000";

/// 100 watchers of one key (10 streams spread over the members), 64 clients putting it
/// `puts` times: events delivered per second, and server CPU per delivered event with the
/// puts' own cost included (a hundredth of a put per event).
async fn watch_cost(c: &Cluster, puts: usize) -> Result<Cost, String> {
    let endpoints = c.endpoint_list();
    let streams = open_watch_load(&endpoints).await?;
    let before = cpu_now(c)?;
    let (delivered, elapsed) = watch_delivery(&endpoints, streams, puts)
        .await
        .map_err(|e| format!("{}: {e}", c.name))?;
    let cpu = cpu_now(c)? - before;
    Ok(Cost {
        throughput: delivered as f64 / elapsed.as_secs_f64(),
        p99_ms: f64::NAN,
        cpu_us: cpu * 1e6 / delivered as f64,
    })
}

/// The watch load's streams, and watchers of the watched key on each.
const WATCH_STREAMS: usize = 10;
const WATCHERS_PER_STREAM: usize = 10;

/// The watchers of the watch load: 100 of one key on 10 streams spread over `endpoints`.
pub async fn open_watch_load(endpoints: &[String]) -> Result<WatchStreams, String> {
    crate::watchlease::open_watches(endpoints, WATCH_STREAMS, WATCHERS_PER_STREAM, |_| {
        WATCHED.to_vec()
    })
    .await
}

/// The watch load on `streams` (`open_watch_load`'s): 64 clients over 8 connections put
/// the watched key `puts` times. Returns the events delivered (every one of them, or an
/// error) and the time from the first put.
pub async fn watch_delivery(
    endpoints: &[String],
    streams: WatchStreams,
    puts: usize,
) -> Result<(usize, Duration), String> {
    let expected = WATCHERS_PER_STREAM * puts;
    let all = streams.len() * expected;
    let start = Instant::now();
    let mut readers = Vec::new();
    for (tx, mut stream) in streams {
        readers.push(tokio::spawn(async move {
            let _open = tx;
            let mut events = 0usize;
            while events < expected {
                match stream.message().await {
                    Ok(Some(r)) => events += r.events.len(),
                    _ => break,
                }
            }
            events
        }));
    }
    let spec = LoadSpec {
        endpoint: endpoints.join(","),
        conns: 8,
        clients: 64,
        total: puts,
        op: Op::Put {
            key_size: WATCHED.len(),
            val_size: 256,
            key_space_size: 1,
            prefix: "wc-".into(),
        },
    };
    let report = load::run(&spec).await?;
    if report.errors > 0 {
        return Err(format!("{} puts failed", report.errors));
    }
    let mut delivered = 0;
    for r in readers {
        delivered += tokio::time::timeout(Duration::from_secs(120), r)
            .await
            .map_err(|_| "watchers missed events for 120 s".to_string())?
            .map_err(|e| e.to_string())?;
    }
    let elapsed = start.elapsed();
    if delivered < all {
        return Err(format!("{delivered} of {all} events delivered"));
    }
    Ok((delivered, elapsed))
}

/// The section's rows for `servers` (oxcd first, then etcd) and the goal each ratio is held
/// to: (row, goal ratio). With more than one round, each load runs `rounds` times on each
/// product, the order alternating, and each figure is the mean of its runs.
pub async fn rows(
    servers: &[Cluster],
    total: usize,
    rounds: usize,
) -> Result<Vec<(Row, f64)>, String> {
    let loads = [
        (
            "put",
            Op::Put {
                key_size: 8,
                val_size: 256,
                key_space_size: 0,
                prefix: "c-".into(),
            },
        ),
        (
            "txn (compare mod + put)",
            Op::Txn {
                val_size: 256,
                prefix: "t-".into(),
            },
        ),
        (
            "get linearizable",
            Op::Range {
                key: b"c-000000".to_vec(),
                end: vec![],
                serializable: false,
            },
        ),
        (
            "get serializable",
            Op::Range {
                key: b"c-000000".to_vec(),
                end: vec![],
                serializable: true,
            },
        ),
    ];
    let mut out = Vec::new();
    for (name, op) in loads {
        let costs = alternating(servers, rounds, |s| {
            eprintln!("{}: {name}", s.name);
            cost_of(s, op.clone(), total)
        })
        .await?;
        push_rows(&mut out, name, &costs, true);
    }
    let costs = alternating(servers, rounds, |s| {
        eprintln!("{}: watch delivery", s.name);
        // Half as many puts as the other loads: each is 100 events, and the phase lasts
        // long enough (seconds) for its CPU figure to settle.
        watch_cost(s, total / 2)
    })
    .await?;
    push_rows(&mut out, "watch, 100 watchers", &costs, false);
    Ok(out)
}

/// Runs `load` `rounds` times on each server, in their order in even rounds and reversed in
/// odd ones; each server's figures are the means of its runs.
async fn alternating<'c, F, Fut>(
    servers: &'c [Cluster],
    rounds: usize,
    mut load: F,
) -> Result<Vec<Cost>, String>
where
    F: FnMut(&'c Cluster) -> Fut,
    Fut: std::future::Future<Output = Result<Cost, String>>,
{
    let rounds = rounds.max(1);
    let mut sums: Vec<Cost> = servers.iter().map(|_| Cost::default()).collect();
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..servers.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let c = load(&servers[i]).await?;
            sums[i].throughput += c.throughput;
            sums[i].p99_ms += c.p99_ms;
            sums[i].cpu_us += c.cpu_us;
        }
    }
    let n = rounds as f64;
    Ok(sums
        .into_iter()
        .map(|c| Cost {
            throughput: c.throughput / n,
            p99_ms: c.p99_ms / n,
            cpu_us: c.cpu_us / n,
        })
        .collect())
}

fn push_rows(out: &mut Vec<(Row, f64)>, name: &str, costs: &[Cost], with_p99: bool) {
    let unit = if with_p99 { "req/s" } else { "events/s" };
    out.push((
        Row {
            name: name.to_string(),
            unit,
            oxcd: costs[0].throughput,
            etcd: costs[1].throughput,
            higher_is_better: true,
        },
        THROUGHPUT_GOAL,
    ));
    if with_p99 {
        out.push((
            Row {
                name: format!("{name} p99"),
                unit: "ms",
                oxcd: costs[0].p99_ms,
                etcd: costs[1].p99_ms,
                higher_is_better: false,
            },
            P99_GOAL,
        ));
    }
    out.push((
        Row {
            name: format!("{name} CPU"),
            unit: if with_p99 { "µs/req" } else { "µs/event" },
            oxcd: costs[0].cpu_us,
            etcd: costs[1].cpu_us,
            higher_is_better: false,
        },
        CPU_GOAL,
    ));
}

/// Prints the section's table, then each goal and whether this run met it.
pub fn print(rows: Vec<(Row, f64)>) {
    let mut goals = Vec::new();
    for (r, goal) in &rows {
        let ratio = r.oxcd / r.etcd;
        let met = if r.higher_is_better {
            ratio >= *goal
        } else {
            ratio <= *goal
        };
        let bound = if r.higher_is_better { ">=" } else { "<=" };
        goals.push(format!(
            "  {:<36} {ratio:>6.2}  goal {bound} {goal:.2}  {}",
            r.name,
            if ratio.is_nan() {
                "no figure"
            } else if met {
                "met"
            } else {
                "NOT met"
            }
        ));
    }
    crate::table::print_rows("oxcd", "etcd", rows.into_iter().map(|(r, _)| r).collect());
    println!("issue 18's goals (oxcd/etcd):");
    for g in goals {
        println!("{g}");
    }
}
