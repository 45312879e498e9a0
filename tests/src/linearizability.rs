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
        if !check_register(&ops) {
            return Err(format!(
                "history of key {key:?} is not linearizable: {ops:#?}"
            ));
        }
    }
    Ok(())
}

fn check_register(ops: &[&Op]) -> bool {
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
