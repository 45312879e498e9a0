//! Locks, elections and mirrors, driven the way users drive them: oxcdctl and the real
//! etcdctl as separate processes against oxcd; make-mirror from a live etcd into oxcd.

use oxcd_api::etcdserverpb::kv_client::KvClient;
use oxcd_api::etcdserverpb::DeleteRangeRequest;
use oxcd_tests::kv::{self, put};
use oxcd_tests::wait::{eventually, retry};
use oxcd_tests::{bin, system_bin, Kind, Server, Tool};
use std::collections::BTreeMap;
use std::time::Duration;
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(30);

async fn keys_under(kv: &mut KvClient<Channel>, prefix: &str) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let resp = kv
        .range(kv::prefix(prefix))
        .await
        .expect("range")
        .into_inner();
    resp.kvs.into_iter().map(|kv| (kv.key, kv.value)).collect()
}

async fn wait_for_keys(kv: &mut KvClient<Channel>, prefix: &str, n: usize) {
    eventually(&format!("{prefix} never held {n} keys"), WAIT, || {
        let mut kv = kv.clone();
        async move { keys_under(&mut kv, prefix).await.len() == n }
    })
    .await;
}

#[tokio::test]
async fn a_lock_has_one_holder_at_a_time_and_passes_on_when_a_killed_holders_lease_ends() {
    let oxcd = Server::start(Kind::Oxcd, &[]);
    let mut kv = oxcd.ready().await;
    let ep = oxcd.endpoint();
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("critical-section.log");
    let section = format!(
        "echo in $$ >> {0}; sleep 0.2; echo out $$ >> {0}",
        log.display()
    );

    // oxcdctl (Lock service) and etcdctl (etcd's client-side mutex) contend for one lock.
    let mut contenders: Vec<Tool> = (0..6)
        .map(|i| {
            let program = if i % 2 == 0 {
                bin("oxcdctl")
            } else {
                system_bin("etcdctl")
            };
            let args = [
                "--endpoints",
                &ep,
                "lock",
                "shared",
                "--",
                "sh",
                "-c",
                &section,
            ];
            Tool::spawn(&program, &args)
        })
        .collect();
    for c in &mut contenders {
        assert_eq!(c.wait_exit(Duration::from_secs(60)), Some(0));
    }
    let text = std::fs::read_to_string(&log).expect("section log");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 12, "{text}");
    for pair in lines.chunks(2) {
        let (enter, leave) = (pair[0], pair[1]);
        assert!(enter.starts_with("in "), "{text}");
        assert_eq!(
            leave,
            enter.replace("in ", "out "),
            "two holders at once:\n{text}"
        );
    }
    assert!(keys_under(&mut kv, "shared/").await.is_empty());

    // A holder killed with -9 keeps the lock until its 2 s lease ends; then the waiter has it.
    let oxcdctl = bin("oxcdctl");
    let mut holder = Tool::spawn(&oxcdctl, &["--endpoints", &ep, "lock", "--ttl", "2", "L"]);
    let held = holder.wait_lines(1, WAIT).to_vec();
    assert!(
        held.first().is_some_and(|k| k.starts_with("L/")),
        "{held:?}"
    );
    let mut waiter = Tool::spawn(&oxcdctl, &["--endpoints", &ep, "lock", "L"]);
    wait_for_keys(&mut kv, "L/", 2).await;
    assert!(waiter.wait_lines(1, Duration::from_millis(500)).is_empty());
    holder.kill9();
    let got = waiter.wait_lines(1, WAIT).to_vec();
    assert!(
        got.first()
            .is_some_and(|k| k.starts_with("L/") && *k != held[0]),
        "waiter never got the lock: {got:?}"
    );
    assert_eq!(keys_under(&mut kv, "L/").await.len(), 1);
    // Interrupted, the holder unlocks and exits 0.
    waiter.signal("INT");
    assert_eq!(waiter.wait_exit(WAIT), Some(0));
    assert!(keys_under(&mut kv, "L/").await.is_empty());
}

#[tokio::test]
async fn election_leader_changes_are_observed_in_order() {
    let oxcd = Server::start(Kind::Oxcd, &[]);
    let mut kv = oxcd.ready().await;
    let ep = oxcd.endpoint();
    let (oxcdctl, etcdctl) = (bin("oxcdctl"), system_bin("etcdctl"));
    let mut observers = [
        Tool::spawn(&oxcdctl, &["--endpoints", &ep, "elect", "-l", "E"]),
        Tool::spawn(&etcdctl, &["--endpoints", &ep, "elect", "-l", "E"]),
    ];
    let mut candidates = Vec::new();
    for (i, (program, proposal)) in [(&oxcdctl, "p1"), (&oxcdctl, "p2"), (&etcdctl, "p3")]
        .into_iter()
        .enumerate()
    {
        candidates.push(Tool::spawn(
            program,
            &["--endpoints", &ep, "elect", "E", proposal],
        ));
        // Candidates queue in the order their keys are created.
        wait_for_keys(&mut kv, "E/", i + 1).await;
    }
    let mut leaders = Vec::new();
    for i in 0..candidates.len() {
        let lines = candidates[i].wait_lines(2, WAIT).to_vec();
        assert_eq!(lines.len(), 2, "candidate {} never led", i + 1);
        assert!(lines[0].starts_with("E/"));
        assert_eq!(lines[1], format!("p{}", i + 1));
        leaders.extend(lines);
        // Only the leader has printed; the next one still waits.
        if let Some(next) = candidates.get_mut(i + 1) {
            assert!(next.wait_lines(1, Duration::from_millis(300)).is_empty());
        }
        candidates[i].signal("INT");
        assert_eq!(
            candidates[i].wait_exit(WAIT),
            Some(0),
            "candidate {} resigns",
            i + 1
        );
    }
    for o in &mut observers {
        let seen = o.wait_lines(6, WAIT).to_vec();
        assert_eq!(seen, leaders, "an observer saw the leaders out of order");
        o.signal("INT");
        assert_eq!(o.wait_exit(WAIT), Some(0));
    }
    assert!(keys_under(&mut kv, "E/").await.is_empty());
}

#[tokio::test]
async fn make_mirror_copies_a_live_etcd_keyspace_into_oxcd() {
    let etcd = Server::start(Kind::Etcd, &[]);
    let oxcd = Server::start(Kind::Oxcd, &[]);
    let mut source = etcd.ready().await;
    let mut dest = oxcd.ready().await;
    for i in 0..300 {
        source
            .put(put(format!("app/{i:03}"), format!("base-{i}")))
            .await
            .expect("put");
    }
    source
        .put(put("other/x", "not mirrored"))
        .await
        .expect("put");

    // Writes go on while the mirror copies the base and then follows.
    let writer = {
        let mut source = source.clone();
        tokio::spawn(async move {
            for i in 0..600u32 {
                let key = format!("app/{:03}", (i * 7) % 350);
                if i % 5 == 4 {
                    let del = DeleteRangeRequest {
                        key: key.into_bytes(),
                        ..Default::default()
                    };
                    source.delete_range(del).await.expect("delete");
                } else {
                    let req = put(key, format!("live-{i}"));
                    source.put(req).await.expect("put");
                }
            }
        })
    };
    let mut mirror = Tool::spawn(
        &bin("oxcdctl"),
        &[
            "--endpoints",
            &etcd.endpoint(),
            "make-mirror",
            "--prefix",
            "app/",
            &oxcd.endpoint(),
        ],
    );
    writer.await.expect("writer");

    let want = keys_under(&mut source, "app/").await;
    assert!(want.len() > 250, "the source has {} keys", want.len());
    let mirrored = retry(WAIT, Duration::from_millis(100), || {
        let (mut dest, want) = (dest.clone(), &want);
        async move {
            let got = keys_under(&mut dest, "app/").await;
            (got == *want).then_some(()).ok_or(got.len())
        }
    })
    .await;
    if let Err(got) = mirrored {
        panic!(
            "the mirror differs: {} keys in etcd, {got} in oxcd",
            want.len()
        );
    }
    assert!(keys_under(&mut dest, "other/").await.is_empty());
    assert_eq!(
        mirror.wait_exit(Duration::from_millis(10)),
        None,
        "make-mirror keeps following"
    );
}
