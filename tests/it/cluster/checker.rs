//! The linearizability checker itself, on hand-made histories.

use oxcd_tests::linearizability::*;
use std::time::Duration;
use std::time::Instant;

fn op(kind: Kind, call_ms: u64, ret_ms: Option<u64>, base: Instant) -> Op {
    Op {
        key: "k".into(),
        kind,
        call: base + Duration::from_millis(call_ms),
        ret: ret_ms.map(|r| base + Duration::from_millis(r)),
    }
}

#[test]
fn accepts_overlapping_and_refuses_stale_reads() {
    let t = Instant::now();
    let w = |v: &str| Kind::Write(v.into());
    let r = |v: Option<&str>| Kind::Read(v.map(str::to_string));
    // A read overlapping a write may see either value.
    let ok = vec![
        op(w("1"), 0, Some(10), t),
        op(w("2"), 20, Some(40), t),
        op(r(Some("1")), 25, Some(30), t),
        op(r(Some("2")), 50, Some(60), t),
    ];
    assert!(check(&ok).is_ok());
    // Once "2" was read, a later read may not go back to "1".
    let stale = vec![
        op(w("1"), 0, Some(10), t),
        op(w("2"), 20, Some(40), t),
        op(r(Some("2")), 45, Some(50), t),
        op(r(Some("1")), 55, Some(60), t),
    ];
    assert!(check(&stale).is_err());
    // A write with an unknown outcome may have happened late, or never.
    let unknown = vec![
        op(w("1"), 0, Some(10), t),
        op(w("2"), 20, None, t),
        op(r(Some("1")), 30, Some(35), t),
        op(r(Some("2")), 40, Some(45), t),
    ];
    assert!(check(&unknown).is_ok());
    // A read of a value nobody wrote is never linearizable.
    let invented = vec![op(r(Some("9")), 0, Some(1), t)];
    assert!(check(&invented).is_err());
}

/// The zones test (used when writes are unique) and the search agree on random small
/// histories, unknown outcomes included.
#[test]
fn the_zones_test_agrees_with_the_search() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let t = Instant::now();
    let (mut linearizable, mut not) = (0, 0);
    for _ in 0..20_000 {
        let n = rng.gen_range(1..8);
        let mut written = Vec::new();
        let mut ops = Vec::new();
        for i in 0..n {
            let call = rng.gen_range(0..20u64);
            let ret = (rng.gen_range(0..8) > 0).then(|| call + rng.gen_range(1..10u64));
            let kind = if rng.gen_bool(0.5) {
                written.push(format!("v{i}"));
                Kind::Write(format!("v{i}"))
            } else {
                let pick = rng.gen_range(0..=written.len());
                Kind::Read(written.get(pick).cloned())
            };
            ops.push(op(kind, call, ret, t));
        }
        let refs: Vec<&Op> = ops.iter().collect();
        let zones = zones_check(&refs).expect("unique writes");
        let brief: Vec<String> = ops
            .iter()
            .map(|o| {
                let ms = |i: Instant| i.duration_since(t).as_millis();
                format!("{:?} {}..{:?}", o.kind, ms(o.call), o.ret.map(ms))
            })
            .collect();
        assert_eq!(
            zones,
            check_register(&refs),
            "zones said {zones}: {brief:#?}"
        );
        if zones {
            linearizable += 1;
        } else {
            not += 1;
        }
    }
    assert!(linearizable > 1000 && not > 1000, "{linearizable} / {not}");
}
