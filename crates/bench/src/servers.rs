//! `compare`: oxcd and etcd started with the same flags on loopback, the same loads against
//! each, in one run; every figure is reported with the ratio oxcd/etcd.

use crate::load::{self, LoadSpec, Op};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Proc {
    name: &'static str,
    child: Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two distinct free loopback ports: both listeners are held at once, so the kernel cannot
/// hand the same port out twice.
fn two_free_ports() -> Result<(u16, u16), String> {
    let bind = || std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string());
    let (a, b) = (bind()?, bind()?);
    let port =
        |l: &std::net::TcpListener| l.local_addr().map(|a| a.port()).map_err(|e| e.to_string());
    Ok((port(&a)?, port(&b)?))
}

async fn start(name: &'static str, program: &str) -> Result<Proc, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (cp, pp) = two_free_ports()?;
    let client = format!("http://127.0.0.1:{cp}");
    let peer = format!("http://127.0.0.1:{pp}");
    let mut cmd = Command::new(program);
    cmd.args(["--name", "bench", "--data-dir"])
        .arg(dir.path().join("data"))
        .args([
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
        ])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .args(["--initial-cluster", &format!("bench={peer}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if name == "etcd" {
        cmd.arg("--logger=zap");
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let p = Proc {
        name,
        child,
        endpoint: format!("127.0.0.1:{cp}"),
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let spec = LoadSpec {
            endpoint: p.endpoint.clone(),
            conns: 1,
            clients: 1,
            total: 1,
            op: Op::Range {
                key: b"x".to_vec(),
                end: vec![],
                serializable: false,
            },
        };
        if let Ok(r) = load::run(&spec).await {
            if r.errors == 0 {
                return Ok(p);
            }
        }
        if Instant::now() > deadline {
            return Err(format!("{name} did not become ready"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Peak resident memory (VmHWM) of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
            })
        })
        .map_or(0, |kb| kb * 1024)
}

struct Row {
    name: String,
    unit: &'static str,
    oxcd: f64,
    etcd: f64,
    higher_is_better: bool,
}

pub async fn compare(
    oxcd_bin: &str,
    etcd_bin: &str,
    total: usize,
    load_keys: usize,
) -> Result<(), String> {
    let mut rows = Vec::new();
    let mut servers = Vec::new();
    for (name, program) in [("oxcd", oxcd_bin), ("etcd", etcd_bin)] {
        servers.push(start(name, program).await?);
    }
    let puts = [(1usize, 1usize), (16, 4), (64, 8)];
    for (clients, conns) in puts {
        let mut res = Vec::new();
        for s in &servers {
            let spec = LoadSpec {
                endpoint: s.endpoint.clone(),
                conns,
                clients,
                total: if clients == 1 { total / 4 } else { total },
                op: Op::Put {
                    key_size: 8,
                    val_size: 256,
                    key_space_size: 0,
                    prefix: format!("p{clients}-"),
                },
            };
            res.push(load::run(&spec).await?);
        }
        rows.push(Row {
            name: format!("put {clients} clients"),
            unit: "req/s",
            oxcd: res[0].throughput(),
            etcd: res[1].throughput(),
            higher_is_better: true,
        });
        let p99 = |i: usize| res[i].percentile(99.0).as_secs_f64() * 1000.0;
        rows.push(Row {
            name: format!("put {clients} clients p99"),
            unit: "ms",
            oxcd: p99(0),
            etcd: p99(1),
            higher_is_better: false,
        });
    }
    for (label, serializable) in [("linearizable", false), ("serializable", true)] {
        let mut res = Vec::new();
        for s in &servers {
            let spec = LoadSpec {
                endpoint: s.endpoint.clone(),
                conns: 8,
                clients: 64,
                total: total * 2,
                op: Op::Range {
                    key: b"p1-00000".to_vec(),
                    end: vec![],
                    serializable,
                },
            };
            res.push(load::run(&spec).await?);
        }
        rows.push(Row {
            name: format!("range {label} 64 clients"),
            unit: "req/s",
            oxcd: res[0].throughput(),
            etcd: res[1].throughput(),
            higher_is_better: true,
        });
    }
    // Memory: load keys, then read each server's peak RSS.
    for s in &servers {
        let spec = LoadSpec {
            endpoint: s.endpoint.clone(),
            conns: 8,
            clients: 64,
            total: load_keys,
            op: Op::Put {
                key_size: 16,
                val_size: 256,
                key_space_size: 0,
                prefix: "mem-".into(),
            },
        };
        load::run(&spec).await?;
    }
    let rss: Vec<f64> = servers
        .iter()
        .map(|s| peak_rss(s.child.id()) as f64 / (1024.0 * 1024.0))
        .collect();
    rows.push(Row {
        name: format!("peak RSS after {load_keys} x 256 B"),
        unit: "MiB",
        oxcd: rss[0],
        etcd: rss[1],
        higher_is_better: false,
    });

    println!(
        "{:<34} {:>12} {:>12} {:>10}  unit",
        "load", servers[0].name, servers[1].name, "oxcd/etcd"
    );
    for r in rows {
        let ratio = if r.etcd > 0.0 {
            r.oxcd / r.etcd
        } else {
            f64::NAN
        };
        let mark = if (r.higher_is_better && ratio >= 1.0) || (!r.higher_is_better && ratio <= 1.0)
        {
            ""
        } else {
            "  (worse)"
        };
        println!(
            "{:<34} {:>12.1} {:>12.1} {:>10.2}  {}{mark}",
            r.name, r.oxcd, r.etcd, ratio, r.unit
        );
    }
    Ok(())
}
