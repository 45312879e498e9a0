//! Linearizable reads across leader changes: a read that meets a leader which has not yet
//! committed an entry of its term is asked again, not left to time out.

use oxcd_api::etcdserverpb::{MoveLeaderRequest, RangeRequest};
use oxcd_tests::cluster::{Cluster, Spec};
use oxcd_tests::wait::retry;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_reads_right_after_a_leader_change_are_answered_promptly() {
    let cluster = Cluster::start(Spec::new(3)).await;
    cluster.wait_leader(Duration::from_secs(20)).await;
    cluster.put(0, "k", "v").await.expect("put");
    let mut ids = Vec::new();
    for i in 0..3 {
        let status = cluster.status(i).await.expect("status");
        ids.push(status.header.expect("header").member_id);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let slowest = Arc::new(Mutex::new((Duration::ZERO, String::new())));
    let mut readers = Vec::new();
    for r in 0..9 {
        let mut kv = cluster.patient_kv(r % 3).await;
        let (stop, slowest, done) = (stop.clone(), slowest.clone(), done.clone());
        readers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let outcome = kv
                    .range(RangeRequest {
                        key: b"k".to_vec(),
                        ..Default::default()
                    })
                    .await;
                let took = started.elapsed();
                let mut s = slowest.lock().expect("lock");
                if took > s.0 {
                    *s = (took, format!("reader {r}: {:?}", outcome.err()));
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    for _ in 0..8 {
        let leader = cluster.wait_leader(Duration::from_secs(20)).await;
        let target = (leader + 1) % 3;
        let mut m = cluster.maintenance(leader).await;
        // Raft's transfer may be refused while a follower catches up; the next round tries again.
        let _ = m
            .move_leader(MoveLeaderRequest {
                target_id: ids[target],
            })
            .await;
        // Reads go on under the new leader before the next change.
        let before = done.load(Ordering::Relaxed);
        let _ = retry(
            Duration::from_secs(20),
            Duration::from_millis(20),
            || async {
                (done.load(Ordering::Relaxed) >= before + 50)
                    .then_some(())
                    .ok_or(())
            },
        )
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.expect("reader");
    }
    let (took, what) = slowest.lock().expect("lock").clone();
    assert!(
        took < Duration::from_secs(3),
        "a read took {took:?} ({what}) across leader changes"
    );
    let reads = done.load(Ordering::Relaxed);
    assert!(reads > 400, "too few reads to say anything: {reads}");
}
