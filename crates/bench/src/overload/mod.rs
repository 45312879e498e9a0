//! `overload`: a 3-member cluster of each product under the same misbehaving load at once
//! (small requests from "victims" beside full-keyspace ranges, watchers that never read,
//! watchers resuming from old revisions, a mass lease expiry, a login flood, a compaction
//! and a follower's defragmentation), and what each product kept: the victims' latency,
//! its leader, its memory, every watcher's events, and agreement between members.

mod work;

use crate::servers::{self, Cluster};
use oxcd_api::etcdserverpb::auth_client::AuthClient;
use oxcd_api::etcdserverpb::{
    AuthEnableRequest, AuthUserAddRequest, AuthUserGrantRoleRequest, AuthenticateRequest,
    HashKvRequest, StatusRequest,
};
use oxcd_client::{Client, Dialer};
use std::time::Duration;
use work::Outcome;

pub const USER: &str = "root";
pub const PASSWORD: &str = "overload-pass";

/// The load, each figure a flag of `oxcd-bench overload`.
#[derive(Clone, Debug, clap::Args)]
pub struct Spec {
    /// Keys loaded before the run (value size each).
    #[arg(long, default_value_t = 1_000_000)]
    pub keys: usize,
    #[arg(long, default_value_t = 1024)]
    pub value_size: usize,
    /// Length of the mixed load, in seconds.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Clients doing small puts and linearizable gets; their latencies are reported.
    #[arg(long, default_value_t = 16)]
    pub victims: usize,
    /// Clients ranging over the whole keyspace in a loop.
    #[arg(long, default_value_t = 8)]
    pub rangers: usize,
    /// Clients doing keys-only and count-only ranges over the whole keyspace.
    #[arg(long, default_value_t = 4)]
    pub counters: usize,
    /// Watchers that never read, on a range one writer fills with big values.
    #[arg(long, default_value_t = 100)]
    pub stalled_watchers: usize,
    #[arg(long, default_value_t = 1 << 20)]
    pub big_value: usize,
    /// Watchers resuming from 1,000 revisions back; each must see every event after.
    #[arg(long, default_value_t = 1000)]
    pub resumers: usize,
    /// Leases (one key each) that all expire at a third of the run.
    #[arg(long, default_value_t = 10_000)]
    pub leases: usize,
    /// Clients sending logins with a wrong password.
    #[arg(long, default_value_t = 4)]
    pub login_flooders: usize,
}

/// Runs `spec` against each product in turn and prints each outcome and the ratios.
pub async fn run(products: &[(&'static str, String)], spec: &Spec) -> Result<(), String> {
    let mut outcomes = Vec::new();
    for (name, program) in products {
        eprintln!("overload: starting 3 members of {name}");
        let cluster = servers::start_with(name, program, 3, "http", &flags()).await?;
        let outcome = against(&cluster, spec).await?;
        println!("{}", outcome.render());
        println!("{}", outcome.result_line());
        outcomes.push(outcome);
        drop(cluster);
    }
    if let [a, b] = &outcomes[..] {
        println!("{}", work::ratios(a, b));
    }
    Ok(())
}

/// Flags both products get: room for the keyspace and its history, and auth tokens that
/// outlive the run (etcd drops a simple token idle for its TTL, 5 minutes by default, and
/// loading takes longer than that).
fn flags() -> Vec<String> {
    vec![
        "--quota-backend-bytes=8589934592".into(),
        "--auth-token-ttl=86400".into(),
    ]
}

async fn against(cluster: &Cluster, spec: &Spec) -> Result<Outcome, String> {
    let endpoints = cluster.endpoint_list();
    eprintln!(
        "overload: {}: loading {} keys of {} bytes",
        cluster.name, spec.keys, spec.value_size
    );
    work::load_keyspace(&endpoints, spec).await?;
    enable_auth(&endpoints[0]).await?;
    let outcome = work::mixed(cluster, spec).await?;
    Ok(outcome)
}

pub fn dialer() -> Dialer {
    Dialer {
        timeout: Duration::from_secs(5),
        tls: None,
        tls_by_default: false,
    }
}

/// A connection to `endpoint` carrying root's token.
pub async fn connect(endpoint: &str) -> Result<Client, String> {
    let client = oxcd_client::connect_one(endpoint, &dialer()).await?;
    let token = client
        .auth()
        .authenticate(AuthenticateRequest {
            name: USER.into(),
            password: PASSWORD.into(),
        })
        .await
        .map_err(|e| format!("authenticate on {endpoint}: {}", e.message()))?
        .into_inner()
        .token;
    client.with_token(&token)
}

async fn enable_auth(endpoint: &str) -> Result<(), String> {
    let client = oxcd_client::connect_one(endpoint, &dialer()).await?;
    let mut auth: AuthClient<_> = client.auth();
    let err = |what: &'static str| move |e: tonic::Status| format!("{what}: {}", e.message());
    auth.user_add(AuthUserAddRequest {
        name: USER.into(),
        password: PASSWORD.into(),
        ..Default::default()
    })
    .await
    .map_err(err("user add"))?;
    auth.user_grant_role(AuthUserGrantRoleRequest {
        user: USER.into(),
        role: "root".into(),
    })
    .await
    .map_err(err("grant root"))?;
    auth.auth_enable(AuthEnableRequest {})
        .await
        .map_err(err("auth enable"))?;
    Ok(())
}

/// Each member's raft term (the highest seen tells how many elections there were).
pub async fn terms(endpoints: &[String]) -> Vec<u64> {
    let mut out = Vec::new();
    for ep in endpoints {
        let term = match connect(ep).await {
            Ok(c) => c
                .maintenance()
                .status(StatusRequest {})
                .await
                .map(|r| r.into_inner().raft_term)
                .unwrap_or(0),
            Err(_) => 0,
        };
        out.push(term);
    }
    out
}

/// Each member's HashKV at `revision`.
pub async fn hashes(endpoints: &[String], revision: i64) -> Result<Vec<(u32, i64)>, String> {
    let mut out = Vec::new();
    for ep in endpoints {
        let r = connect(ep)
            .await?
            .maintenance()
            .hash_kv(HashKvRequest { revision })
            .await
            .map_err(|e| format!("hashkv on {ep}: {}", e.message()))?
            .into_inner();
        out.push((r.hash, r.compact_revision));
    }
    Ok(out)
}
