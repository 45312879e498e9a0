//! oxcd-bench: put and range loads with N clients over M connections against any
//! etcd-compatible endpoint, and `compare`, which runs the same loads against oxcd and real
//! etcd started side by side on loopback and prints the ratios.

mod cost;
mod gateway;
mod k8s;
mod load;
mod ops;
mod overload;
mod procfs;
mod scale;
mod servers;
mod table;
mod tls;
mod watchlease;

use clap::{Args, Parser, Subcommand};
use load::{LoadSpec, Op, Report};

#[derive(Parser)]
#[command(
    name = "oxcd-bench",
    about = "Benchmarks etcd-compatible servers (oxcd, etcd)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Args, Clone)]
struct Common {
    /// gRPC endpoints, comma separated (connections spread over them, as etcd's benchmark)
    #[arg(long, default_value = "127.0.0.1:2379", value_delimiter = ',')]
    endpoints: Vec<String>,
    /// gRPC connections shared by the clients
    #[arg(long, default_value_t = 1)]
    conns: usize,
    /// concurrent clients
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// total requests
    #[arg(long, default_value_t = 10_000)]
    total: usize,
    #[command(flatten)]
    tls: TlsFiles,
}

/// How https endpoints are dialed (etcd's benchmark's flags).
#[derive(Args, Clone)]
struct TlsFiles {
    /// CA bundle for https endpoints
    #[arg(long, value_name = "FILE")]
    cacert: Option<std::path::PathBuf>,
    /// Client certificate for https endpoints
    #[arg(long, value_name = "FILE", requires = "client_key")]
    cert: Option<std::path::PathBuf>,
    /// Client key for https endpoints (`range` names its key positionally, hence the id)
    #[arg(
        long = "key",
        id = "client_key",
        value_name = "FILE",
        requires = "cert"
    )]
    key: Option<std::path::PathBuf>,
}

impl TlsFiles {
    /// Sets what https endpoints are dialed with, when any file is given.
    fn install(self) {
        if self.cacert.is_some() || self.cert.is_some() {
            let _ = load::CLIENT_TLS.set(oxcd_client::ClientTls {
                ca_file: self.cacert,
                cert_file: self.cert,
                key_file: self.key,
                skip_verify: false,
            });
        }
    }
}

/// The two servers measured side by side.
#[derive(Args)]
struct Products {
    #[arg(long, default_value = "target/release/oxcd")]
    oxcd: String,
    #[arg(long, default_value = "/usr/bin/etcd")]
    etcd: String,
}

/// Each product's command-line client.
#[derive(Args)]
struct Ctls {
    #[arg(long, default_value = "target/release/oxcdctl")]
    oxcdctl: String,
    #[arg(long, default_value = "/usr/bin/etcdctl")]
    etcdctl: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// Puts `total` keys.
    Put {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 8)]
        key_size: usize,
        #[arg(long, default_value_t = 8)]
        val_size: usize,
        /// Keys cycle through this many distinct keys (0: every put a new key).
        #[arg(long, default_value_t = 0)]
        key_space_size: usize,
    },
    /// Reads KEY (or [KEY, END)) `total` times.
    Range {
        #[command(flatten)]
        common: Common,
        key: String,
        end: Option<String>,
        /// l (linearizable) or s (serializable)
        #[arg(long, default_value = "l")]
        consistency: String,
    },
    /// The cost section's watch delivery load against running endpoints: 100 watchers of one
    /// key on 10 streams spread over the endpoints, 64 clients over 8 connections putting it
    /// `total` times; every event must arrive.
    WatchDelivery {
        /// gRPC endpoints, comma separated
        #[arg(long, default_value = "127.0.0.1:2379", value_delimiter = ',')]
        endpoints: Vec<String>,
        /// Puts of the watched key (each delivered to all 100 watchers)
        #[arg(long, default_value_t = 10_000)]
        total: usize,
        #[command(flatten)]
        tls: TlsFiles,
    },
    /// Streams a backup (Maintenance.Snapshot) from a running endpoint to FILE and fsyncs it,
    /// as `scale` and `ops` time it.
    Backup {
        #[arg(long, default_value = "127.0.0.1:2379")]
        endpoint: String,
        file: std::path::PathBuf,
    },
    /// Starts oxcd and etcd (same member count, same flags), runs the standard loads against
    /// both and prints each figure with the ratio oxcd/etcd.
    Compare {
        #[command(flatten)]
        products: Products,
        /// Requests per put load.
        #[arg(long, default_value_t = 20_000)]
        total: usize,
        /// Keys loaded before measuring peak memory.
        #[arg(long, default_value_t = 100_000)]
        load_keys: usize,
        /// Runs of each cost load per product, the products' order alternating from one to
        /// the next; each figure is the mean of its runs (for A/B comparisons of two builds).
        #[arg(long, default_value_t = 1)]
        rounds: usize,
        /// Cluster size for each product; with more than one, leader failover is measured
        /// too (ETCD_HEARTBEAT_INTERVAL / ETCD_ELECTION_TIMEOUT reach both products).
        #[arg(long, default_value_t = 1)]
        members: usize,
        /// Mutual TLS on client and peer URLs for both products.
        #[arg(long)]
        tls: bool,
        /// What to measure (comma separated).
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "cost,throughput,memory,watch,k8s,failover"
        )]
        sections: Vec<servers::Section>,
        /// The Kubernetes load's section (the flags of `k8s`).
        #[command(flatten, next_help_heading = "Kubernetes load")]
        k8s: k8s::Spec,
    },
    /// Kubernetes' storage traffic (kube-apiserver's conditional txns, leased events,
    /// paginated lists, a reflector's watch) against running endpoints.
    K8s {
        /// gRPC endpoints, comma separated (writers spread over all; the watcher uses the
        /// last, lists the first)
        #[arg(long, default_value = "127.0.0.1:2379", value_delimiter = ',')]
        endpoints: Vec<String>,
        /// The servers' process ids, comma separated, for CPU per write and list memory
        #[arg(long, value_delimiter = ',')]
        pids: Vec<u32>,
        #[command(flatten)]
        spec: k8s::Spec,
    },
    /// Starts oxcd and etcd clusters side by side, runs the Kubernetes load (`k8s`) against
    /// each and prints each figure with the ratio oxcd/etcd and the goals.
    K8sCompare {
        #[command(flatten)]
        products: Products,
        #[arg(long, default_value_t = 3)]
        members: usize,
        #[command(flatten)]
        spec: k8s::Spec,
    },
    /// Put throughput over mutual TLS (client and peer) and over plain TCP, for oxcd and
    /// etcd clusters side by side.
    Tls {
        #[command(flatten)]
        products: Products,
        #[arg(long, default_value_t = 3)]
        members: usize,
        #[arg(long, default_value_t = 20_000)]
        total: usize,
    },
    /// Put and range throughput through the JSON gateway and through gRPC, for one oxcd and
    /// one etcd member side by side.
    Gateway {
        #[command(flatten)]
        products: Products,
        #[arg(long, default_value_t = 20_000)]
        total: usize,
    },
    /// A 3-member cluster of each product under the same overload (see `overload` in the
    /// README): victims' latency, elections, memory, watchers, leases, HashKV agreement.
    Overload {
        #[command(flatten)]
        products: Products,
        /// Which products to run, in order (comma separated).
        #[arg(long, default_value = "oxcd,etcd", value_delimiter = ',')]
        run: Vec<String>,
        #[command(flatten)]
        spec: overload::Spec,
    },
    /// Backup, restore and defragmentation figures for oxcd and etcd side by side.
    Ops {
        #[command(flatten)]
        products: Products,
        #[command(flatten)]
        ctls: Ctls,
        #[arg(long, default_value_t = 1_000_000)]
        keys: usize,
    },
    /// Memory, listing cost, restart and backup of one oxcd and one etcd member at N/10, N
    /// and 3N keys, with issue 18's goals and each figure's growth with the key count.
    Scale {
        #[command(flatten)]
        products: Products,
        #[command(flatten)]
        ctls: Ctls,
        /// N: the middle key count.
        #[arg(long, default_value_t = 1_000_000)]
        keys: usize,
    },
}

fn print_report(r: &Report) {
    println!("{}", r.render());
}

fn spec(common: Common, op: Op) -> LoadSpec {
    common.tls.install();
    LoadSpec {
        endpoint: common.endpoints.join(","),
        conns: common.conns,
        clients: common.clients,
        total: common.total,
        op,
    }
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Put {
            common,
            key_size,
            val_size,
            key_space_size,
        } => {
            let spec = spec(
                common,
                Op::Put {
                    key_size,
                    val_size,
                    key_space_size,
                    prefix: String::new(),
                },
            );
            load::run(&spec).await.map(|r| print_report(&r))
        }
        Cmd::Range {
            common,
            key,
            end,
            consistency,
        } => {
            let spec = spec(
                common,
                Op::Range {
                    key: key.into_bytes(),
                    end: end.map(String::into_bytes).unwrap_or_default(),
                    serializable: consistency == "s",
                },
            );
            load::run(&spec).await.map(|r| print_report(&r))
        }
        Cmd::WatchDelivery {
            endpoints,
            total,
            tls,
        } => {
            tls.install();
            match cost::open_watch_load(&endpoints).await {
                Ok(streams) => cost::watch_delivery(&endpoints, streams, total).await,
                Err(e) => Err(e),
            }
            .map(|(events, took)| {
                println!("  Events:\t{events}");
                println!("  Took:\t{:.3} s", took.as_secs_f64());
                println!("  Events/sec:\t{:.1}", events as f64 / took.as_secs_f64());
            })
        }
        Cmd::Backup { endpoint, file } => {
            ops::stream_backup(&endpoint, &file)
                .await
                .map(|(took, fsync, bytes)| {
                    println!("  Bytes:\t{bytes}");
                    println!(
                        "  Took:\t{:.3} s (fsync {:.3} s)",
                        took.as_secs_f64(),
                        fsync.as_secs_f64()
                    );
                })
        }
        Cmd::Compare {
            products: Products { oxcd, etcd },
            total,
            load_keys,
            rounds,
            members,
            tls,
            sections,
            k8s,
        } => {
            let settings = servers::Settings {
                total,
                load_keys,
                rounds,
                members,
                tls,
                sections: &sections,
                k8s: &k8s,
            };
            servers::compare(&oxcd, &etcd, &settings).await
        }
        Cmd::K8s {
            endpoints,
            pids,
            spec,
        } => k8s::run(endpoints, pids, &spec).await,
        Cmd::K8sCompare {
            products: Products { oxcd, etcd },
            members,
            spec,
        } => k8s::compare(&oxcd, &etcd, members, &spec).await,
        Cmd::Ops {
            products: Products { oxcd, etcd },
            ctls: Ctls { oxcdctl, etcdctl },
            keys,
        } => ops::ops(&oxcd, &etcd, &oxcdctl, &etcdctl, keys).await,
        Cmd::Scale {
            products: Products { oxcd, etcd },
            ctls: Ctls { oxcdctl, etcdctl },
            keys,
        } => scale::scale(&oxcd, &etcd, &oxcdctl, &etcdctl, keys).await,
        Cmd::Overload {
            products: Products { oxcd, etcd },
            run,
            spec,
        } => {
            let mut products = Vec::new();
            for name in &run {
                match name.as_str() {
                    "oxcd" => products.push(("oxcd", oxcd.clone())),
                    "etcd" => products.push(("etcd", etcd.clone())),
                    other => {
                        eprintln!("oxcd-bench: unknown product {other:?} (oxcd or etcd)");
                        std::process::exit(2);
                    }
                }
            }
            overload::run(&products, &spec).await
        }
        Cmd::Tls {
            products: Products { oxcd, etcd },
            members,
            total,
        } => tls::compare(&oxcd, &etcd, members, total).await,
        Cmd::Gateway {
            products: Products { oxcd, etcd },
            total,
        } => gateway::compare(&oxcd, &etcd, total).await,
    };
    if let Err(e) = result {
        eprintln!("oxcd-bench: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// clap refuses clashing argument ids only when a subcommand is parsed; this checks all.
    #[test]
    fn every_subcommands_arguments_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn range_takes_its_key_and_a_client_key_file() {
        let cli = <Cli as clap::Parser>::try_parse_from([
            "oxcd-bench",
            "range",
            "greeting",
            "--cert",
            "cert.pem",
            "--key",
            "key.pem",
        ]);
        assert!(cli.is_ok(), "{:?}", cli.err());
    }

    #[test]
    fn a_client_certificate_needs_its_key_and_a_key_its_certificate() {
        for half in [["--cert", "cert.pem"], ["--key", "key.pem"]] {
            let cli = <Cli as clap::Parser>::try_parse_from(
                ["oxcd-bench", "put"].into_iter().chain(half),
            );
            assert!(cli.is_err(), "{half:?} alone was accepted");
        }
    }
}
