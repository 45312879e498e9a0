//! One product's run: the write phase, then the list phase at each object count.

use super::spec::{Figures, Spec, Target};
use super::{lists, storage, writes};
use crate::load;

/// Runs the whole load against `target` and returns its figures.
pub async fn measure(target: &Target, spec: &Spec) -> Result<Figures, String> {
    let first = target.endpoints.first().ok_or("no endpoints")?;
    let channel = load::connect(first).await?;
    let present = storage::count(&channel, spec.prefix.as_bytes()).await?;
    if present > 0 {
        return Err(format!(
            "{present} keys are already under {}: use an empty cluster or another --prefix",
            spec.prefix
        ));
    }
    if spec.min_object > spec.max_object {
        return Err("--min-object is larger than --max-object".into());
    }
    eprintln!(
        "k8s: {} writes from {} clients over {} connections",
        spec.writes, spec.clients, spec.conns
    );
    let writes = writes::run(target, spec).await?;
    let mut sizes: Vec<usize> = spec
        .list_objects
        .iter()
        .copied()
        .filter(|&n| n > 0)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    let mut lists = Vec::new();
    let mut have = 0;
    for n in sizes {
        eprintln!("k8s: lists at {n} objects");
        lists.push(lists::run(target, spec, have, n).await?);
        have = n;
    }
    Ok(Figures { writes, lists })
}

/// `oxcd-bench k8s`: the load against `endpoints`; CPU and memory of `pids` if given.
pub async fn run(endpoints: Vec<String>, pids: Vec<u32>, spec: &Spec) -> Result<(), String> {
    let target = Target { endpoints, pids };
    let figures = measure(&target, spec).await?;
    print!("{}", figures.render());
    Ok(())
}
