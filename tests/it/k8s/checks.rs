//! The checks that need the whole run: every acknowledged write reached each reflector (by
//! its watch, or by the list that replaced a compacted watch), nothing reached one that no
//! one wrote, and the events' lease holds the keys written with it.

use super::reflector::{Record, Session};
use super::store::Write;
use oxcd_api::etcdserverpb::lease_client::LeaseClient;
use oxcd_api::etcdserverpb::LeaseTimeToLiveRequest;
use oxcd_api::mvccpb::KeyValue;
use std::collections::{BTreeSet, HashMap, HashSet};
use tonic::transport::Channel;

/// Each acknowledged write under `prefix` (all at or below `final_rev`) is in the session of
/// `rec` that covers its revision: a watch delivered it with its key and object; a list shows
/// it or something newer. Returns the number of writes checked and the violations.
pub fn delivery(
    name: &str,
    prefix: &str,
    rec: &Record,
    acked: &[Write],
    attempted: &HashSet<String>,
    unknown_deletes: &HashSet<String>,
    final_rev: i64,
) -> (usize, Vec<String>) {
    let mut revs: HashMap<&str, Vec<i64>> = HashMap::new();
    for w in acked {
        revs.entry(w.key.as_str()).or_default().push(w.rev);
    }
    let mut bad = Vec::new();
    // (lowest, highest) revision each session covers, in order; they touch end to end.
    let mut spans = Vec::new();
    let mut covered = 0;
    let last = rec.sessions.len().saturating_sub(1);
    for (i, s) in rec.sessions.iter().enumerate() {
        let (lo, hi) = match s {
            Session::List { rev, .. } => (covered + 1, *rev),
            Session::Watch { from, events } => {
                let hi = events.last().map_or(from - 1, |e| e.rev);
                // The last watch was caught up with the final list before it stopped.
                let hi = if i == last { hi.max(final_rev) } else { hi };
                if *from != covered + 1 {
                    bad.push(format!(
                        "{name}: a watch from {from} after sessions covering up to {covered}"
                    ));
                }
                (*from, hi)
            }
        };
        if lo <= hi {
            spans.push((lo, hi, i));
            covered = hi;
        }
    }
    let mut by_rev: Vec<HashMap<i64, Vec<&super::reflector::Seen>>> =
        rec.sessions.iter().map(|_| HashMap::new()).collect();
    for (i, s) in rec.sessions.iter().enumerate() {
        if let Session::Watch { events, .. } = s {
            for e in events {
                by_rev[i].entry(e.rev).or_default().push(e);
                if let Some(uid) = &e.uid {
                    if !attempted.contains(uid) {
                        bad.push(format!(
                            "{name}: {} at {} holds {uid}, which no one wrote",
                            e.key, e.rev
                        ));
                    }
                }
            }
        }
    }
    let mut checked = 0;
    for w in acked.iter().filter(|w| w.key.starts_with(prefix)) {
        checked += 1;
        let Some(&(_, _, i)) = spans
            .iter()
            .find(|(lo, hi, _)| *lo <= w.rev && w.rev <= *hi)
        else {
            bad.push(format!(
                "{name}: no list or watch covered the write {w:?} (final revision {final_rev})"
            ));
            continue;
        };
        match &rec.sessions[i] {
            Session::Watch { from, .. } => {
                let delivered = by_rev[i]
                    .get(&w.rev)
                    .is_some_and(|evs| evs.iter().any(|e| e.key == w.key && e.uid == w.uid));
                if !delivered {
                    bad.push(format!(
                        "{name}: the watch from {from} did not deliver {w:?}; it delivered {:?} at that revision",
                        by_rev[i].get(&w.rev)
                    ));
                }
            }
            Session::List { rev, items } => {
                // The list shows the last acknowledged write at or below its revision.
                if revs[w.key.as_str()].iter().any(|r| *r > w.rev && r <= rev) {
                    continue;
                }
                let ok = match (&w.uid, items.get(&w.key)) {
                    (Some(uid), Some((_, m, u))) => {
                        *m > w.rev || (*m == w.rev && u.as_ref() == Some(uid))
                    }
                    (Some(_), None) => unknown_deletes.contains(&w.key),
                    (None, Some((c, _, _))) => *c > w.rev,
                    (None, None) => true,
                };
                if !ok {
                    bad.push(format!(
                        "{name}: the list at {rev} does not reflect {w:?}: it holds {:?}",
                        items.get(&w.key)
                    ));
                }
            }
        }
    }
    (checked, bad)
}

/// The final list against the acknowledged writes: each key shows its last acknowledged
/// write or a later one (a write whose answer was lost may still have been applied).
pub fn final_state(
    list: &[KeyValue],
    acked: &[Write],
    unknown_deletes: &HashSet<String>,
) -> Vec<String> {
    let held: HashMap<String, &KeyValue> = list
        .iter()
        .map(|kv| (String::from_utf8_lossy(&kv.key).into_owned(), kv))
        .collect();
    let mut latest: HashMap<&str, &Write> = HashMap::new();
    for w in acked.iter().filter(|w| w.key.starts_with("/registry/")) {
        let e = latest.entry(w.key.as_str()).or_insert(w);
        if w.rev > e.rev {
            *e = w;
        }
    }
    let mut bad = Vec::new();
    for (key, w) in latest {
        let kv = held.get(key);
        let ok = match (&w.uid, kv) {
            (Some(uid), Some(kv)) => {
                kv.mod_revision > w.rev
                    || (kv.mod_revision == w.rev
                        && super::store::uid_of(&kv.value).as_ref() == Some(uid))
            }
            (Some(_), None) => unknown_deletes.contains(key),
            (None, Some(kv)) => kv.create_revision > w.rev,
            (None, None) => true,
        };
        if !ok {
            bad.push(format!(
                "the final list does not reflect {w:?}: it holds {:?}",
                kv.map(|kv| super::reflector::short(kv))
            ));
        }
    }
    bad
}

/// Each lease: granted for 3660 s, still alive, and holding exactly the keys the final list
/// shows with it; every event key carries one of them, no other key any.
pub async fn leases(ch: Channel, leases: &[i64], list: &[KeyValue]) -> Vec<String> {
    let mut bad = Vec::new();
    for kv in list {
        let key = String::from_utf8_lossy(&kv.key);
        let is_event = key.starts_with("/registry/events/");
        if is_event && !leases.contains(&kv.lease) {
            bad.push(format!(
                "{key} carries lease {:x}, not an events lease",
                kv.lease
            ));
        }
        if !is_event && kv.lease != 0 {
            bad.push(format!("{key} carries lease {:x}", kv.lease));
        }
    }
    let mut client = LeaseClient::new(ch).max_decoding_message_size(usize::MAX);
    for &id in leases {
        let ttl = match client
            .lease_time_to_live(LeaseTimeToLiveRequest { id, keys: true })
            .await
        {
            Ok(r) => r.into_inner(),
            Err(e) => {
                bad.push(format!("LeaseTimeToLive {id:x}: {e}"));
                continue;
            }
        };
        if ttl.granted_ttl != 3660 || ttl.ttl <= 0 || ttl.ttl > 3660 {
            bad.push(format!(
                "lease {id:x}: granted {} s, {} s left",
                ttl.granted_ttl, ttl.ttl
            ));
        }
        let attached: BTreeSet<Vec<u8>> = ttl.keys.into_iter().collect();
        let expected: BTreeSet<Vec<u8>> = list
            .iter()
            .filter(|kv| kv.lease == id)
            .map(|kv| kv.key.clone())
            .collect();
        if attached != expected {
            bad.push(format!(
                "lease {id:x} holds {} keys, the final list shows {} with it ({} only there, {} only in the lease)",
                attached.len(),
                expected.len(),
                expected.difference(&attached).count(),
                attached.difference(&expected).count()
            ));
        }
    }
    bad
}
