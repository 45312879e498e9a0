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
