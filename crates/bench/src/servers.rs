//! `compare`: oxcd and etcd started with the same flags on loopback, the same loads against
//! each, in one run; every figure is reported with the ratio oxcd/etcd.

use crate::load::{self, LoadSpec, Op};
pub(crate) use crate::procfs::status_kb;
pub(crate) use crate::table::{print_rows, Row};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct Member {
    pub child: Child,
    pub endpoint: String,
}

/// One product's cluster: its members, all stopped (by PID) when dropped.
pub(crate) struct Cluster {
    pub name: &'static str,
    pub members: Vec<Member>,
    pub _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            let _ = m.child.kill();
            let _ = m.child.wait();
        }
    }
}

impl Cluster {
    pub(crate) fn endpoint_list(&self) -> Vec<String> {
        self.members.iter().map(|m| m.endpoint.clone()).collect()
    }

    /// The largest member's resident memory now, in MiB.
    fn rss_now(&self) -> f64 {
        self.members
            .iter()
            .map(|m| status_kb(m.child.id(), "VmRSS:"))
            .max()
            .unwrap_or(0) as f64
            / 1024.0
    }

    /// Every member's process id.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.members.iter().map(|m| m.child.id()).collect()
    }

    /// Every member's client endpoint, comma separated.
    pub(crate) fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| m.endpoint.clone())
            .collect::<Vec<_>>()
            .join(",")
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

/// Starts `size` members of `program` with the same flags (and the caller's environment,
/// so ETCD_HEARTBEAT_INTERVAL / ETCD_ELECTION_TIMEOUT apply to both products).
pub(crate) async fn start(
    name: &'static str,
    program: &str,
    size: usize,
) -> Result<Cluster, String> {
    start_with(name, program, size, "http", &[]).await
}

/// Where a member logs: nowhere, or with OXCD_BENCH_LOG_DIR set, `<dir>/<product>-m<i>.log`
/// (to see what a member did while the load ran).
fn member_log(name: &str, i: usize) -> Result<Stdio, String> {
    let Some(dir) = std::env::var_os("OXCD_BENCH_LOG_DIR") else {
        return Ok(Stdio::null());
    };
    let path = std::path::Path::new(&dir).join(format!("{name}-m{i}.log"));
    let file = std::fs::File::create(&path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    Ok(Stdio::from(file))
}

/// `start`, with `scheme` for client and peer URLs and extra flags (TLS files).
pub(crate) async fn start_with(
    name: &'static str,
    program: &str,
    size: usize,
    scheme: &str,
    extra: &[String],
) -> Result<Cluster, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut ports = Vec::new();
    for _ in 0..size {
        ports.push(two_free_ports()?);
    }
    let initial = ports
        .iter()
        .enumerate()
        .map(|(i, (_, pp))| format!("m{i}={scheme}://127.0.0.1:{pp}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut cluster = Cluster {
        name,
        members: Vec::new(),
        _dir: dir,
    };
    for (i, (cp, pp)) in ports.iter().enumerate() {
        let client = format!("{scheme}://127.0.0.1:{cp}");
        let peer = format!("{scheme}://127.0.0.1:{pp}");
        let mut cmd = Command::new(program);
        cmd.args(["--name", &format!("m{i}"), "--data-dir"])
            .arg(cluster._dir.path().join(format!("m{i}")))
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
            .args(["--initial-cluster", &initial])
            .args(["--initial-cluster-token", &format!("bench-{name}")])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(member_log(name, i)?);
        if name == "etcd" {
            cmd.arg("--logger=zap");
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {program}: {e}"))?;
        cluster.members.push(Member {
            child,
            endpoint: if scheme == "https" {
                client.clone()
            } else {
                format!("127.0.0.1:{cp}")
            },
        });
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for m in &cluster.members {
        loop {
            let spec = LoadSpec {
                endpoint: m.endpoint.clone(),
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
                    break;
                }
            }
            if Instant::now() > deadline {
                return Err(format!("{name} did not become ready"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(cluster)
}

/// Kills the leader (kill -9) and measures until a write through another member succeeds.
async fn failover(cluster: &mut Cluster) -> Result<Duration, String> {
    use oxcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
    use oxcd_api::etcdserverpb::{kv_client::KvClient, PutRequest, StatusRequest};
    let mut leader = None;
    for (i, m) in cluster.members.iter().enumerate() {
        let mut mc = MaintenanceClient::new(load::connect(&m.endpoint).await?);
        let st = mc
            .status(StatusRequest {})
            .await
            .map_err(|e| e.to_string())?
            .into_inner();
        if st.header.map(|h| h.member_id) == Some(st.leader) {
            leader = Some(i);
        }
    }
    let leader = leader.ok_or("no leader found")?;
    let survivor = (leader + 1) % cluster.members.len();
    let channel = load::connect(&cluster.members[survivor].endpoint).await?;
    let killed = Instant::now();
    let _ = cluster.members[leader].child.kill();
    let _ = cluster.members[leader].child.wait();
    loop {
        let mut kv = KvClient::new(channel.clone());
        let put = kv.put(PutRequest {
            key: b"failover".to_vec(),
            value: b"x".to_vec(),
            ..Default::default()
        });
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(200), put).await {
            return Ok(killed.elapsed());
        }
        if killed.elapsed() > Duration::from_secs(60) {
            return Err(format!(
                "{}: no write succeeded within 60s of the kill",
                cluster.name
            ));
        }
    }
}

/// Peak resident memory (VmHWM) of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    status_kb(pid, "VmHWM:") * 1024
}

/// What `compare` measures, in order.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    /// Put, txn, gets and watch delivery: throughput, p99, server CPU per request, goals.
    Cost,
    /// Put throughput by client count, range throughput.
    Throughput,
    /// Peak RSS after loading keys.
    Memory,
    /// Watch fan-out, lease keep-alives, idle watchers' memory.
    Watch,
    /// Kubernetes' storage traffic.
    K8s,
    /// kill -9 the leader (more than one member).
    Failover,
}

/// `compare`'s settings.
pub struct Settings<'a> {
    pub total: usize,
    pub rounds: usize,
    pub load_keys: usize,
    pub members: usize,
    pub tls: bool,
    pub sections: &'a [Section],
    pub k8s: &'a crate::k8s::spec::Spec,
}

pub async fn compare(oxcd_bin: &str, etcd_bin: &str, set: &Settings<'_>) -> Result<(), String> {
    let (total, load_keys, members) = (set.total, set.load_keys, set.members);
    let certificates = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (scheme, flags) = if set.tls {
        ("https", crate::tls::mutual_tls(certificates.path())?)
    } else {
        ("http", Vec::new())
    };
    let mut rows = Vec::new();
    let mut servers = Vec::new();
    for (name, program) in [("oxcd", oxcd_bin), ("etcd", etcd_bin)] {
        servers.push(start_with(name, program, members, scheme, &flags).await?);
    }
    let on = |s: Section| set.sections.contains(&s);
    println!(
        "{members} member(s) each, {}",
        if set.tls { "mutual TLS" } else { "plain TCP" }
    );
    if on(Section::Cost) {
        crate::cost::print(crate::cost::rows(&servers, total, set.rounds).await?);
        println!();
    }
    if on(Section::Throughput) {
        throughput_rows(&servers, total, &mut rows).await?;
    }
    if on(Section::Memory) {
        memory_rows(&servers, load_keys, &mut rows).await?;
    }
    if on(Section::Watch) {
        watch_rows(&servers, total, &mut rows).await?;
    }
    // Kubernetes' traffic (see `k8s`), before the failover kills a member.
    if on(Section::K8s) {
        let mut k8s_figures = Vec::new();
        for s in &servers {
            eprintln!("{}: kubernetes load", s.name);
            let target = crate::k8s::spec::Target {
                endpoints: s.endpoint_list(),
                pids: s.pids(),
            };
            k8s_figures.push(crate::k8s::measure::measure(&target, set.k8s).await?);
        }
        rows.extend(crate::k8s::spec::rows(&k8s_figures[0], &k8s_figures[1]));
    }
    if on(Section::Failover) && members > 1 {
        let mut times = Vec::new();
        for s in &mut servers {
            times.push(failover(s).await?.as_secs_f64() * 1000.0);
        }
        rows.push(Row {
            name: "failover: kill -9 leader to write".into(),
            unit: "ms",
            oxcd: times[0],
            etcd: times[1],
            higher_is_better: false,
        });
    }
    if !rows.is_empty() {
        print_rows(servers[0].name, servers[1].name, rows);
    }
    Ok(())
}

async fn throughput_rows(
    servers: &[Cluster],
    total: usize,
    rows: &mut Vec<Row>,
) -> Result<(), String> {
    let puts = [(1usize, 1usize), (16, 4), (64, 8), (256, 16)];
    for (clients, conns) in puts {
        let mut res = Vec::new();
        for s in servers {
            let spec = LoadSpec {
                endpoint: s.endpoints(),
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
        for s in servers {
            let spec = LoadSpec {
                endpoint: s.endpoints(),
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
    Ok(())
}

async fn memory_rows(
    servers: &[Cluster],
    load_keys: usize,
    rows: &mut Vec<Row>,
) -> Result<(), String> {
    // Load keys, then read each server's peak RSS.
    for s in servers {
        let spec = LoadSpec {
            endpoint: s.endpoints(),
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
    // The largest member's peak (the leader's, as a rule).
    let rss: Vec<f64> = servers
        .iter()
        .map(|s| {
            s.members
                .iter()
                .map(|m| peak_rss(m.child.id()))
                .max()
                .unwrap_or(0) as f64
                / (1024.0 * 1024.0)
        })
        .collect();
    rows.push(Row {
        name: format!("peak RSS after {load_keys} x 256 B"),
        unit: "MiB",
        oxcd: rss[0],
        etcd: rss[1],
        higher_is_better: false,
    });
    Ok(())
}

async fn watch_rows(servers: &[Cluster], total: usize, rows: &mut Vec<Row>) -> Result<(), String> {
    let mut fan = Vec::new();
    let mut keep = Vec::new();
    let mut idle = Vec::new();
    for s in servers {
        let eps = s.endpoint_list();
        eprintln!("{}: watch fan-out", s.name);
        fan.push(crate::watchlease::watch_fan_out(&eps, 200).await?);
        eprintln!("{}: lease keep-alive", s.name);
        keep.push(crate::watchlease::lease_keep_alive(&eps, 16, total).await?);
        eprintln!("{}: idle watchers", s.name);
        let watchers = crate::watchlease::idle_watchers(&eps).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        idle.push(s.rss_now());
        drop(watchers);
    }
    rows.push(Row {
        name: "watch fan-out, 1000 watchers".into(),
        unit: "events/s",
        oxcd: fan[0],
        etcd: fan[1],
        higher_is_better: true,
    });
    rows.push(Row {
        name: "lease keep-alive, 16 streams".into(),
        unit: "req/s",
        oxcd: keep[0],
        etcd: keep[1],
        higher_is_better: true,
    });
    rows.push(Row {
        name: "RSS with 10,000 idle watchers".into(),
        unit: "MiB",
        oxcd: idle[0],
        etcd: idle[1],
        higher_is_better: false,
    });
    Ok(())
}
