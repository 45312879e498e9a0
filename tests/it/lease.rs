//! Leases against real etcd, and across a leader kill in a cluster.

use oxcd_api::etcdserverpb::lease_client::LeaseClient;
use oxcd_api::etcdserverpb::*;
use oxcd_tests::kv::{self, put};
use oxcd_tests::wait::eventually;
use oxcd_tests::{Kind, Server};
use std::time::Duration;
use tonic::transport::Channel;

async fn lease_client(url: &str) -> LeaseClient<Channel> {
    LeaseClient::new(
        Channel::from_shared(url.to_string())
            .expect("url")
            .connect()
            .await
            .expect("connect"),
    )
}

fn outcome<T: std::fmt::Debug>(
    r: Result<tonic::Response<T>, tonic::Status>,
    show: impl Fn(&T) -> String,
) -> String {
    match r {
        Ok(r) => show(r.get_ref()),
        Err(e) => format!("error {:?} {}", e.code(), e.message()),
    }
}

/// A put of "v" at `key` attached to `lease`.
fn leased(key: &str, lease: i64) -> PutRequest {
    PutRequest {
        lease,
        ..put(key, "v")
    }
}

/// The same lease calls against a server; each answer as text (IDs chosen by the script,
/// so both servers see the same ones).
async fn script(server: &Server) -> Vec<String> {
    let mut kv = server.ready().await;
    let mut leases = lease_client(&server.url()).await;
    let mut out = Vec::new();
    let grant = |id: i64, ttl: i64| LeaseGrantRequest { id, ttl };
    let show_grant = |r: &LeaseGrantResponse| format!("granted {:x} ttl {}", r.id, r.ttl);
    out.push(outcome(
        leases.lease_grant(grant(0x10, 1)).await,
        show_grant,
    ));
    out.push(outcome(
        leases.lease_grant(grant(0x11, 9_000_000_001)).await,
        show_grant,
    ));
    out.push(outcome(
        leases.lease_grant(grant(0x10, 30)).await,
        show_grant,
    ));
    out.push(outcome(
        leases.lease_grant(grant(0x12, 60)).await,
        show_grant,
    ));
    let rev = |r: &PutResponse| format!("put rev {}", r.header.map_or(0, |h| h.revision));
    out.push(outcome(kv.put(leased("k1", 0x12)).await, rev));
    out.push(outcome(kv.put(leased("k2", 0x12)).await, rev));
    out.push(outcome(kv.put(leased("k3", 0x99)).await, rev));
    out.push(outcome(kv.put(leased("short", 0x10)).await, rev));
    let keep = PutRequest {
        ignore_lease: true,
        ..put("k2", "v2")
    };
    out.push(outcome(kv.put(keep).await, rev));
    let ttl = leases
        .lease_time_to_live(LeaseTimeToLiveRequest {
            id: 0x12,
            keys: true,
        })
        .await
        .expect("ttl")
        .into_inner();
    assert!((58..=60).contains(&ttl.ttl), "remaining {}", ttl.ttl);
    // etcd lists a lease's keys in no particular order.
    let mut keys = ttl.keys.clone();
    keys.sort();
    out.push(format!("ttl granted {} keys {keys:?}", ttl.granted_ttl));
    let mut ids: Vec<i64> = leases
        .lease_leases(LeaseLeasesRequest {})
        .await
        .expect("leases")
        .into_inner()
        .leases
        .iter()
        .map(|l| l.id)
        .collect();
    ids.sort_unstable();
    out.push(format!("leases {ids:x?}"));
    let mut ka = leases
        .lease_keep_alive(futures::stream::iter([LeaseKeepAliveRequest { id: 0x12 }]))
        .await
        .expect("keep-alive")
        .into_inner();
    let r = ka.message().await.expect("answer").expect("one");
    out.push(format!("keepalive {:x} ttl {}", r.id, r.ttl));
    let revoke =
        |r: &LeaseRevokeResponse| format!("revoked at {}", r.header.map_or(0, |h| h.revision));
    out.push(outcome(
        leases.lease_revoke(LeaseRevokeRequest { id: 0x12 }).await,
        revoke,
    ));
    out.push(outcome(
        leases.lease_revoke(LeaseRevokeRequest { id: 0x12 }).await,
        revoke,
    ));
    let gone = leases
        .lease_time_to_live(LeaseTimeToLiveRequest {
            id: 0x12,
            keys: true,
        })
        .await
        .expect("ttl")
        .into_inner();
    out.push(format!(
        "after revoke ttl {} granted {}",
        gone.ttl, gone.granted_ttl
    ));
    let left = kv.range(kv::prefix("k")).await.expect("range").into_inner();
    out.push(format!("k* left {}", left.count));
    // Lease 0x10 (2 s, the minimum) expires by itself and takes "short" with it.
    eventually("lease 0x10 never expired", Duration::from_secs(15), || {
        let mut kv = kv.clone();
        async move {
            let r = kv.range(kv::prefix("short")).await.expect("range");
            r.into_inner().count == 0
        }
    })
    .await;
    out.push("short expired".into());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_answers_match_etcd() {
    let etcd = Server::start(Kind::Etcd, &[]);
    let oxcd = Server::start(Kind::Oxcd, &[]);
    let (theirs, ours) = tokio::join!(script(&etcd), script(&oxcd));
    assert_eq!(theirs, ours);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_and_oxcdctl_lease_commands_print_the_same() {
    use oxcd_tests::{bin, ctl, system_bin};
    let oxcd = Server::start(Kind::Oxcd, &[]);
    oxcd.ready().await;
    let ep = oxcd.endpoint();
    let mut leases = lease_client(&oxcd.url()).await;
    leases
        .lease_grant(LeaseGrantRequest {
            id: 0xabc,
            ttl: 100,
        })
        .await
        .expect("grant");
    let mut kv = oxcd.ready().await;
    kv.put(leased("held", 0xabc)).await.expect("put");
    for args in [
        vec!["lease", "timetolive", "abc", "--keys"],
        vec!["lease", "timetolive", "123"],
        vec!["lease", "list"],
        vec!["lease", "keep-alive", "--once", "abc"],
        vec!["lease", "keep-alive", "--once", "123"],
        vec!["lease", "grant"],
        vec!["lease", "grant", "x"],
        vec!["lease", "revoke", "zz"],
        vec!["lease", "revoke", "123"],
        vec!["put", "k", "v", "--lease=123"],
    ] {
        // The remaining TTL prints in whole seconds: renewed just before, both tools see
        // the same second (a slow machine once let it tick between the two).
        let mut renew = leases
            .lease_keep_alive(futures::stream::iter([LeaseKeepAliveRequest { id: 0xabc }]))
            .await
            .expect("keep-alive")
            .into_inner();
        renew.message().await.expect("renewed").expect("an answer");
        let theirs = ctl(&system_bin("etcdctl"), &ep, &args);
        let ours = ctl(&bin("oxcdctl"), &ep, &args);
        // etcdctl's client logs its retries on stderr; the last line is the error.
        let last = |s: &str| s.lines().last().unwrap_or("").to_string();
        assert_eq!(
            (theirs.0, last(&theirs.1), theirs.2),
            (ours.0, last(&ours.1), ours.2),
            "{args:?}"
        );
    }
    // Revoking changes state: each tool revokes a lease of its own.
    leases
        .lease_grant(LeaseGrantRequest {
            id: 0xdef,
            ttl: 100,
        })
        .await
        .expect("grant");
    let revoke = |tool: &std::path::Path, id: &str| ctl(tool, &ep, &["lease", "revoke", id]);
    let theirs = revoke(&system_bin("etcdctl"), "abc");
    let ours = revoke(&bin("oxcdctl"), "def");
    assert_eq!(theirs.0.replace("abc", "def"), ours.0);
    assert_eq!(
        ours,
        ("lease 0000000000000def revoked\n".into(), String::new(), 0)
    );
    let again = revoke(&bin("oxcdctl"), "def");
    assert_eq!(
        (again.1.trim_end(), again.2),
        (
            "Error: failed to revoke lease (etcdserver: requested lease not found)",
            1
        )
    );
}

async fn time_to_live(leases: &mut LeaseClient<Channel>, id: i64) -> LeaseTimeToLiveResponse {
    leases
        .lease_time_to_live(LeaseTimeToLiveRequest { id, keys: false })
        .await
        .expect("time to live")
        .into_inner()
}

async fn keep_alive_once(leases: &mut LeaseClient<Channel>, id: i64) -> i64 {
    leases
        .lease_keep_alive(futures::stream::iter([LeaseKeepAliveRequest { id }]))
        .await
        .expect("keep-alive stream")
        .into_inner()
        .message()
        .await
        .expect("keep-alive answer")
        .expect("an answer")
        .ttl
}

/// Once its deadline passes a lease reads as expired and a keep-alive no longer revives it,
/// even while its revoke is held up (a failpoint here, on the first try and on the retry
/// three seconds later, so a slow poll cannot outrun it); the revoke then deletes its keys.
/// etcd says "0 s left" until the revoke lands; oxcd says what the deadline says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_past_its_deadline_reads_expired_and_is_not_revived_before_its_revoke() {
    let server = Server::start(Kind::Oxcd, &[]);
    let mut kv = server.ready().await;
    let mut leases = lease_client(&server.url()).await;
    server.failpoint("lessorBeforeRevoke", "2*sleep(6000)");
    let granted_at = std::time::Instant::now();
    let id = leases
        .lease_grant(LeaseGrantRequest { id: 0, ttl: 2 })
        .await
        .expect("grant")
        .into_inner()
        .id;
    kv.put(leased("held", id)).await.expect("leased put");
    let mut expired = leases.clone();
    eventually(
        "the lease reads as expired",
        Duration::from_secs(10),
        || {
            let mut leases = expired.clone();
            async move { time_to_live(&mut leases, id).await.ttl == -1 }
        },
    )
    .await;
    assert!(
        granted_at.elapsed() >= Duration::from_secs(2),
        "expired early"
    );
    let range = |key: &str| RangeRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    };
    let before_revoke = kv.range(range("held")).await.expect("range").into_inner();
    assert_eq!(before_revoke.count, 1, "the revoke was to be held up");
    assert_eq!(keep_alive_once(&mut expired, id).await, 0, "revived");
    let kv2 = kv.clone();
    eventually(
        "the revoke deletes the key",
        Duration::from_secs(15),
        || {
            let mut kv = kv2.clone();
            async move {
                kv.range(range("held"))
                    .await
                    .is_ok_and(|r| r.into_inner().count == 0)
            }
        },
    )
    .await;
    let after = time_to_live(&mut leases, id).await;
    assert_eq!((after.ttl, after.granted_ttl), (-1, 0));
}
