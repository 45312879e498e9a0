//! `lock` and `elect`, as etcdctl runs them: a session (a lease kept alive) owns the lock or
//! the candidacy, through etcd's Lock and Election services; both hold until SIGINT or
//! SIGTERM, then give up what they hold.

use crate::client::{self, Client};
use crate::lease::{Failure, EXIT_BAD_ARGS, EXIT_ERROR};
use crate::printer::{Out, Printer};
use crate::Globals;
use oxcd_api::etcdserverpb::lease_client::LeaseClient;
use oxcd_api::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest, RangeRequest, RangeResponse,
};
use oxcd_api::v3electionpb::election_client::ElectionClient;
use oxcd_api::v3electionpb::{CampaignRequest, LeaderRequest, ResignRequest};
use oxcd_api::v3lockpb::lock_client::LockClient;
use oxcd_api::v3lockpb::{LockRequest, UnlockRequest};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// etcd's default session TTL (elect); `lock --ttl` defaults to 10.
pub const DEFAULT_SESSION_TTL: i64 = 60;

/// A lease kept alive in the background, as etcd's concurrency.Session.
struct Session {
    lease: i64,
    expired: watch::Receiver<bool>,
    keeper: tokio::task::JoinHandle<()>,
    leases: LeaseClient<client::Conn>,
}

impl Session {
    async fn start(c: &Client, ttl: i64) -> Result<Session, String> {
        let mut leases = LeaseClient::new(c.channel.clone());
        let grant = leases
            .lease_grant(LeaseGrantRequest { ttl, id: 0 })
            .await
            .map_err(|e| client::describe(&e))?
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
    mut leases: LeaseClient<client::Conn>,
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

fn print_get(printer: &Printer, resp: &RangeResponse) -> Result<(), Failure> {
    let mut out = Out::default();
    printer
        .get(&mut out, resp)
        .map_err(|msg| (crate::EXIT_BAD_FEATURE, msg))?;
    out.flush();
    Ok(())
}

async fn get_key(g: &Globals, c: &Client, key: &[u8]) -> Result<RangeResponse, Failure> {
    let req = RangeRequest {
        key: key.to_vec(),
        ..Default::default()
    };
    client::with_timeout(g.command_timeout, c.kv().range(req))
        .await
        .map_err(|e| (EXIT_ERROR, e))
}

fn failed(status: tonic::Status) -> Failure {
    (EXIT_ERROR, client::describe(&status))
}

/// `lock NAME [COMMAND ARGS...]`.
pub async fn lock(g: &Globals, c: &Client, args: &[String], ttl: i64) -> Result<(), Failure> {
    let Some((name, command)) = args.split_first() else {
        return Err((
            EXIT_BAD_ARGS,
            "lock takes a lock name argument and an optional command to execute".into(),
        ));
    };
    let mut session = Session::start(c, ttl).await.map_err(|e| (EXIT_ERROR, e))?;
    let mut locks = LockClient::new(c.channel.clone());
    let request = LockRequest {
        name: name.as_bytes().to_vec(),
        lease: session.lease,
    };
    let held = tokio::select! {
        held = locks.lock(request) => held.map_err(failed),
        _ = interrupted() => Err((EXIT_ERROR, "context canceled".into())),
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
        let status = status.map_err(|e| (EXIT_ERROR, e.to_string()))?;
        if !status.success() {
            let code = status.code().unwrap_or(-1);
            return Err((EXIT_ERROR, format!("exit status {code}")));
        }
        return unlocked.map(|_| ()).map_err(failed);
    }
    let resp = get_key(g, c, &held.key).await?;
    if resp.kvs.is_empty() {
        return Err((EXIT_ERROR, "lock lost on init".into()));
    }
    print_get(&g.printer, &resp)?;
    tokio::select! {
        _ = interrupted() => {
            let unlocked = locks.unlock(unlock).await;
            session.close().await;
            unlocked.map(|_| ()).map_err(failed)
        }
        _ = session.expired() => Err((EXIT_ERROR, "session expired".into())),
    }
}

/// `elect NAME PROPOSAL` campaigns; `elect -l NAME` observes.
pub async fn elect(g: &Globals, c: &Client, args: &[String], listen: bool) -> Result<(), Failure> {
    let (name, proposal) = match args {
        [name] if listen => (name, None),
        [_] => return Err((EXIT_BAD_ARGS, "no proposal argument but -l not set".into())),
        [_, _] if listen => return Err((EXIT_BAD_ARGS, "proposal given but -l is set".into())),
        [name, proposal] => (name, Some(proposal)),
        _ => {
            return Err((
                EXIT_BAD_ARGS,
                "elect takes one election name argument and an optional proposal argument".into(),
            ))
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
                    print_get(&g.printer, &resp)?;
                }
                _ => return Err((EXIT_ERROR, "elect: observer lost".into())),
            }
        }
    };
    let mut session = Session::start(c, DEFAULT_SESSION_TTL)
        .await
        .map_err(|e| (EXIT_ERROR, e))?;
    let request = CampaignRequest {
        name: name.as_bytes().to_vec(),
        lease: session.lease,
        value: proposal.as_bytes().to_vec(),
    };
    let won = tokio::select! {
        won = elections.campaign(request) => won.map_err(failed),
        _ = interrupted() => Err((EXIT_ERROR, "context canceled".into())),
    };
    let leader = match won {
        Ok(won) => won.into_inner().leader.unwrap_or_default(),
        Err(e) => {
            session.close().await;
            return Err(e);
        }
    };
    print_get(&g.printer, &get_key(g, c, &leader.key).await?)?;
    tokio::select! {
        _ = interrupted() => {
            let resigned = elections.resign(ResignRequest { leader: Some(leader) }).await;
            session.close().await;
            resigned.map(|_| ()).map_err(failed)
        }
        _ = session.expired() => Err((EXIT_ERROR, "elect: session expired".into())),
    }
}
