//! `k8s-compare`: oxcd and etcd clusters started side by side with the same flags, the same
//! Kubernetes load against each, each figure with the ratio oxcd/etcd and the goals.

use super::measure::measure;
use super::spec::{goals, rows, Spec, Target};
use crate::servers;
use crate::table::print_rows;

/// Flags both products get: room for the largest list's objects and the writes' history.
pub fn flags() -> Vec<String> {
    vec!["--quota-backend-bytes=8589934592".into()]
}

pub async fn compare(oxcd: &str, etcd: &str, members: usize, spec: &Spec) -> Result<(), String> {
    let mut clusters = Vec::new();
    for (name, program) in [("oxcd", oxcd), ("etcd", etcd)] {
        eprintln!("k8s: starting {members} members of {name}");
        clusters.push(servers::start_with(name, program, members, "http", &flags()).await?);
    }
    let mut figures = Vec::new();
    for c in &clusters {
        eprintln!("k8s: measuring {}", c.name);
        let target = Target {
            endpoints: c.endpoint_list(),
            pids: c.pids(),
        };
        let f = measure(&target, spec).await?;
        println!("{}:\n{}", c.name, f.render());
        figures.push(f);
    }
    println!(
        "{members} member(s) each; {} writes from {} clients; objects {}-{} B",
        spec.writes, spec.clients, spec.min_object, spec.max_object
    );
    print_rows("oxcd", "etcd", rows(&figures[0], &figures[1]));
    for g in goals(&figures[0], &figures[1]) {
        println!("{g}");
    }
    Ok(())
}
