//! A linearizability checker for client histories of single-key reads and writes (Wing &
//! Gong's search with memoized states, as Porcupine does). Keys are independent registers,
//! so each key's history is checked on its own.
//!
//! A write whose outcome is unknown (timeout, connection lost) may have taken effect at any
//! point after its call, or never; a failed read tells nothing and is left out.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Write(String),
    /// What the read saw (`None`: key absent).
    Read(Option<String>),
}

#[derive(Debug, Clone)]
pub struct Op {
    pub key: String,
    pub kind: Kind,
    pub call: Instant,
    /// `None`: the outcome is unknown.
    pub ret: Option<Instant>,
}

/// Operations recorded by concurrent clients.
#[derive(Default)]
pub struct History {
    ops: Mutex<Vec<Op>>,
}

impl History {
    pub fn record(&self, op: Op) {
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).push(op);
    }

    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// `Err` names the first key whose history no sequential order explains.
pub fn check(ops: &[Op]) -> Result<(), String> {
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in ops {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    for (key, ops) in by_key {
        let linearizable = match zones_check(&ops) {
            Some(verdict) => verdict,
            None => check_register(&ops),
        };
        if !linearizable {
            return Err(format!(
                "history of key {key:?} is not linearizable: {ops:#?}"
            ));
        }
    }
    Ok(())
}

/// Gibbons and Korach's test for a register whose writes all write different values (so
/// every read names the write it read from): with each write and the reads of its value
/// as one cluster, the history is linearizable iff no read ends before its write begins, no
/// two forward zones overlap, and no backward zone lies inside a forward zone. A cluster's
/// zone runs between the earliest return and the latest call among its operations; forward
/// when that return comes first. Linear in the history's size (after sorting), so long
/// histories check at once. None if writes repeat a value (the search below then decides).
pub fn zones_check(ops: &[&Op]) -> Option<bool> {
    // Times as nanoseconds after the first call; an unknown return is "never".
    let origin = ops.iter().map(|o| o.call).min()?;
    let at = |t: Instant| t.duration_since(origin).as_nanos() as i128;
    let never = i128::MAX;
    struct Cluster {
        write_call: i128,
        min_ret: i128,
        max_call: i128,
        read: bool,
    }
    let mut clusters: BTreeMap<Option<&str>, Cluster> = BTreeMap::new();
    // The key's absence, as if written before anything else.
    clusters.insert(
        None,
        Cluster {
            write_call: i128::MIN,
            min_ret: i128::MIN,
            max_call: i128::MIN,
            read: true,
        },
    );
    for op in ops {
        if let Kind::Write(v) = &op.kind {
            let ret = op.ret.map_or(never, at);
            let fresh = Cluster {
                write_call: at(op.call),
                min_ret: ret,
                max_call: at(op.call),
                read: false,
            };
            if clusters.insert(Some(v.as_str()), fresh).is_some() {
                return None;
            }
        }
    }
    for op in ops {
        if let Kind::Read(v) = &op.kind {
            let Some(ret) = op.ret.map(at) else { continue };
            let Some(c) = clusters.get_mut(&v.as_deref()) else {
                return Some(false); // a value nobody wrote
            };
            if ret < c.write_call {
                return Some(false); // read from the future
            }
            c.min_ret = c.min_ret.min(ret);
            c.max_call = c.max_call.max(at(op.call));
            c.read = true;
        }
    }
    // A write never read, whose outcome is unknown, may never have happened.
    let zones: Vec<(bool, i128, i128)> = clusters
        .values()
        .filter(|c| c.read || c.min_ret != never)
        .map(|c| {
            let forward = c.min_ret < c.max_call;
            let (lo, hi) = if forward {
                (c.min_ret, c.max_call)
            } else {
                (c.max_call, c.min_ret)
            };
            (forward, lo, hi)
        })
        .collect();
    let mut forward: Vec<(i128, i128)> = zones.iter().filter(|z| z.0).map(|z| (z.1, z.2)).collect();
    forward.sort_unstable();
    if forward.windows(2).any(|w| w[1].0 < w[0].1) {
        return Some(false);
    }
    for (_, lo, hi) in zones.iter().filter(|z| !z.0) {
        // The forward zone starting last before this backward zone does (equal times are
        // concurrent, so only strict containment counts).
        let i = forward.partition_point(|f| f.0 < *lo);
        if i > 0 && forward[i - 1].1 > *hi {
            return Some(false);
        }
    }
    Some(true)
}

/// Wing and Gong's search, for histories whose writes may repeat a value.
pub fn check_register(ops: &[&Op]) -> bool {
    assert!(ops.len() <= 128, "keep per-key histories under 128 ops");
    let origin = ops.iter().map(|o| o.call).min();
    let Some(origin) = origin else {
        return true;
    };
    let at = |t: Instant| t.duration_since(origin).as_nanos();
    let calls: Vec<u128> = ops.iter().map(|o| at(o.call)).collect();
    let rets: Vec<u128> = ops.iter().map(|o| o.ret.map_or(u128::MAX, at)).collect();
    let required: u128 = ops
        .iter()
        .enumerate()
        .filter(|(_, o)| o.ret.is_some())
        .fold(0, |m, (i, _)| m | (1 << i));
    let mut seen = HashSet::new();
    search(ops, &calls, &rets, required, 0, None, &mut seen)
}

/// Depth-first: linearize next any pending op that no other pending op entirely precedes.
fn search(
    ops: &[&Op],
    calls: &[u128],
    rets: &[u128],
    required: u128,
    done: u128,
    value: Option<&str>,
    seen: &mut HashSet<(u128, Option<String>)>,
) -> bool {
    if done & required == required {
        return true;
    }
    if !seen.insert((done, value.map(str::to_string))) {
        return false;
    }
    let pending = |i: usize| done & (1 << i) == 0;
    let earliest_ret = (0..ops.len())
        .filter(|&i| pending(i))
        .map(|i| rets[i])
        .min()
        .unwrap_or(u128::MAX);
    for i in 0..ops.len() {
        if !pending(i) || calls[i] > earliest_ret {
            continue;
        }
        let next = match &ops[i].kind {
            Kind::Write(v) => Some(v.as_str()),
            Kind::Read(seen_value) => {
                if seen_value.as_deref() != value {
                    continue;
                }
                value
            }
        };
        if search(ops, calls, rets, required, done | (1 << i), next, seen) {
            return true;
        }
    }
    false
}
