//! `lock` and `elect`, as etcdctl runs them: a session (a lease kept alive) owns the lock or
//! the candidacy, through etcd's Lock and Election services; both hold until SIGINT or
//! SIGTERM, then give up what they hold.

use crate::connect::connect;
use crate::error::{CtlError, Result, EXIT_BAD_ARGS, EXIT_ERROR};
use crate::flags::{args, args_of, bool_flag, flag, string};
use crate::globals::Globals;
use crate::gofmt;
use crate::printer::{Out, Printer};
use clap::{Arg, ArgMatches, Command};
use oxcd_api::etcdserverpb::lease_client::LeaseClient;
use oxcd_api::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest, RangeRequest, RangeResponse,
};
use oxcd_api::v3electionpb::election_client::ElectionClient;
use oxcd_api::v3electionpb::{CampaignRequest, LeaderRequest, ResignRequest};
use oxcd_api::v3lockpb::lock_client::LockClient;
use oxcd_api::v3lockpb::{LockRequest, UnlockRequest};
use oxcd_client::{describe, with_timeout, Client, Conn};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// etcd's default session TTL (elect); `lock --ttl` defaults to 10.
const DEFAULT_SESSION_TTL: i64 = 60;

pub fn lock_cmd() -> Command {
    Command::new("lock")
        .about("Acquires a named lock")
        .arg(args().trailing_var_arg(true).allow_hyphen_values(true))
        .arg(
            Arg::new("ttl")
                .long("ttl")
                .default_value("10")
                .help("timeout for session"),
        )
}

pub fn elect_cmd() -> Command {
    Command::new("elect")
        .about("Observes and participates in leader election")
        .arg(args())
        .arg(bool_flag("listen", "observation mode").short('l'))
}

/// `lock [--ttl N] NAME [COMMAND ARGS...]`.
pub async fn lock_run(g: &Globals, m: &ArgMatches) -> Result<()> {
    let ttl_arg = string(m, "ttl");
    let ttl: i64 = ttl_arg.parse().map_err(|_| {
        CtlError::new(
            EXIT_BAD_ARGS,
            format!(
                "invalid argument {ttl_arg:?} for \"--ttl\" flag: {}",
                gofmt::parse_int_error(&ttl_arg)
            ),
        )
    })?;
    let mut args = args_of(m);
    if args.get(1).is_some_and(|a| a == "--") {
        args.remove(1);
    }
    if args.is_empty() {
        return Err(no_lock_name());
    }
    let c = connect(g).await?;
    lock(g, &c, &args, ttl).await
}

/// `elect [-l] NAME [PROPOSAL]`.
pub async fn elect_run(g: &Globals, m: &ArgMatches) -> Result<()> {
    let args = args_of(m);
    let c = connect(g).await?;
    elect(g, &c, &args, flag(m, "listen")).await
}

fn no_lock_name() -> CtlError {
    CtlError::new(
        EXIT_BAD_ARGS,
        "lock takes a lock name argument and an optional command to execute",
    )
}

/// A lease kept alive in the background, as etcd's concurrency.Session.
struct Session {
    lease: i64,
    expired: watch::Receiver<bool>,
    keeper: tokio::task::JoinHandle<()>,
    leases: LeaseClient<Conn>,
}

impl Session {
    async fn start(c: &Client, ttl: i64) -> Result<Session> {
        let mut leases = LeaseClient::new(c.channel.clone());
        let grant = leases
            .lease_grant(LeaseGrantRequest { ttl, id: 0 })
            .await
            .map_err(failed)?
            .into_inner();
        let (tx, expired) = watch::channel(false);
        let keeper = tokio::spawn(keep_alive(leases.clone(), grant.id, grant.ttl, tx));
        Ok(Session {
            lease: grant.id,
            expired,
            keeper,
            leases,
        })
    }

    async fn expired(&mut self) {
        let _ = self.expired.wait_for(|e| *e).await;
    }

    /// Stops the keep-alives and revokes the lease (what it owns goes with it).
    async fn close(mut self) {
        self.keeper.abort();
        let revoke = self
            .leases
            .lease_revoke(LeaseRevokeRequest { id: self.lease });
        let _ = tokio::time::timeout(Duration::from_secs(5), revoke).await;
    }
}

/// Renews the lease a third of its TTL after each renewal; a broken stream is reopened
/// until the lease could have run out, then the session is expired.
async fn keep_alive(
    mut leases: LeaseClient<Conn>,
    id: i64,
    ttl: i64,
    expired: watch::Sender<bool>,
) {
    let ttl = Duration::from_secs(ttl.max(1) as u64);
    let mut renewed = Instant::now();
    while renewed.elapsed() < ttl {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let stream = leases
            .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await;
        if let Ok(stream) = stream {
            let mut stream = stream.into_inner();
            while tx.send(LeaseKeepAliveRequest { id }).await.is_ok() {
                match stream.message().await {
                    Ok(Some(r)) if r.ttl > 0 => renewed = Instant::now(),
                    Ok(Some(_)) => {
                        let _ = expired.send(true);
                        return;
                    }
                    _ => break,
                }
                tokio::time::sleep(ttl / 3).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = expired.send(true);
}

async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn print_get(printer: &dyn Printer, resp: &RangeResponse) -> Result<()> {
    let mut out = Out::default();
    printer.get(&mut out, resp)?;
    out.flush();
    Ok(())
}

async fn get_key(g: &Globals, c: &Client, key: &[u8]) -> Result<RangeResponse> {
    let req = RangeRequest {
        key: key.to_vec(),
        ..Default::default()
    };
    with_timeout(g.command_timeout, c.kv().range(req))
        .await
        .map_err(|e| CtlError::new(EXIT_ERROR, e))
}

fn failed(status: tonic::Status) -> CtlError {
    CtlError::new(EXIT_ERROR, describe(&status))
}

fn error(msg: &str) -> CtlError {
    CtlError::new(EXIT_ERROR, msg)
}

/// `lock NAME [COMMAND ARGS...]`.
async fn lock(g: &Globals, c: &Client, args: &[String], ttl: i64) -> Result<()> {
    let Some((name, command)) = args.split_first() else {
        return Err(no_lock_name());
    };
    let mut session = Session::start(c, ttl).await?;
    let mut locks = LockClient::new(c.channel.clone());
    let request = LockRequest {
        name: name.as_bytes().to_vec(),
        lease: session.lease,
    };
    let held = tokio::select! {
        held = locks.lock(request) => held.map_err(failed),
        _ = interrupted() => Err(error("context canceled")),
    };
    let held = match held {
        Ok(held) => held.into_inner(),
        Err(e) => {
            session.close().await;
            return Err(e);
        }
    };
    let unlock = UnlockRequest {
        key: held.key.clone(),
    };
    if let Some((program, program_args)) = command.split_first() {
        let revision = held.header.map_or(0, |h| h.revision);
        let status = tokio::process::Command::new(program)
            .args(program_args)
            .env("ETCD_LOCK_KEY", String::from_utf8_lossy(&held.key).as_ref())
            .env("ETCD_LOCK_REV", revision.to_string())
            .status()
            .await;
        let unlocked = locks.unlock(unlock).await;
        session.close().await;
        let status = status.map_err(|e| error(&e.to_string()))?;
        if !status.success() {
            let code = status.code().unwrap_or(-1);
            return Err(error(&format!("exit status {code}")));
        }
        return unlocked.map(|_| ()).map_err(failed);
    }
    let resp = get_key(g, c, &held.key).await?;
    if resp.kvs.is_empty() {
        return Err(error("lock lost on init"));
    }
    print_get(&*g.printer, &resp)?;
    tokio::select! {
        _ = interrupted() => {
            let unlocked = locks.unlock(unlock).await;
            session.close().await;
            unlocked.map(|_| ()).map_err(failed)
        }
        _ = session.expired() => Err(error("session expired")),
    }
}

/// `elect NAME PROPOSAL` campaigns; `elect -l NAME` observes.
async fn elect(g: &Globals, c: &Client, args: &[String], listen: bool) -> Result<()> {
    let bad_args = |msg| Err(CtlError::new(EXIT_BAD_ARGS, msg));
    let (name, proposal) = match args {
        [name] if listen => (name, None),
        [_] => return bad_args("no proposal argument but -l not set"),
        [_, _] if listen => return bad_args("proposal given but -l is set"),
        [name, proposal] => (name, Some(proposal)),
        _ => {
            return bad_args(
                "elect takes one election name argument and an optional proposal argument",
            )
        }
    };
    let mut elections = ElectionClient::new(c.channel.clone());
    let Some(proposal) = proposal else {
        let request = LeaderRequest {
            name: name.as_bytes().to_vec(),
        };
        let mut stream = elections
            .observe(request)
            .await
            .map_err(failed)?
            .into_inner();
        loop {
            let next = tokio::select! {
                next = stream.message() => next,
                _ = interrupted() => return Ok(()),
            };
            match next {
                Ok(Some(leader)) => {
                    let resp = RangeResponse {
                        header: leader.header,
                        count: 1,
                        kvs: leader.kv.into_iter().collect(),
                        more: false,
                    };
                    print_get(&*g.printer, &resp)?;
                }
                _ => return Err(error("elect: observer lost")),
            }
        }
    };
    let mut session = Session::start(c, DEFAULT_SESSION_TTL).await?;
    let request = CampaignRequest {
        name: name.as_bytes().to_vec(),
        lease: session.lease,
        value: proposal.as_bytes().to_vec(),
    };
    let won = tokio::select! {
        won = elections.campaign(request) => won.map_err(failed),
        _ = interrupted() => Err(error("context canceled")),
    };
    let leader = match won {
        Ok(won) => won.into_inner().leader.unwrap_or_default(),
        Err(e) => {
            session.close().await;
            return Err(e);
        }
    };
    print_get(&*g.printer, &get_key(g, c, &leader.key).await?)?;
    tokio::select! {
        _ = interrupted() => {
            let resigned = elections.resign(ResignRequest { leader: Some(leader) }).await;
            session.close().await;
            resigned.map(|_| ()).map_err(failed)
        }
        _ = session.expired() => Err(error("elect: session expired")),
    }
}
