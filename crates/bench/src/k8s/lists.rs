//! The list phase: a resource filled to each object count, then full paginated lists of it
//! (a reflector's relist) and count-only ranges, while the servers' CPU and resident memory
//! are read from /proc.

use super::spec::{ListFigures, Spec, Target};
use super::storage::{self, Rng};
use crate::{load, procfs};
use oxcd_api::etcdserverpb::kv_client::KvClient;
use oxcd_api::etcdserverpb::{request_op, PutRequest, RequestOp, TxnRequest};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONFIGMAPS: &str = "configmaps/";

/// Count-only ranges timed at each object count.
const COUNTS: usize = 10;

/// Objects per fill txn (under etcd's 1.5 MiB request limit at 10 KiB each).
const FILL_BATCH: usize = 64;

fn configmap_key(spec: &Spec, i: usize) -> Vec<u8> {
    let ns = i % spec.namespaces.max(1);
    format!("{}{CONFIGMAPS}ns-{ns:03}/cm-{i:08}", spec.prefix).into_bytes()
}

/// Puts configmaps `from..to` (not measured: the objects a list then reads).
async fn fill(endpoints: &[String], spec: &Spec, from: usize, to: usize) -> Result<(), String> {
    let next = Arc::new(AtomicUsize::new(from));
    let mut tasks = Vec::new();
    for c in 0..8 {
        let mut kv = KvClient::new(load::connect(&endpoints[c % endpoints.len()]).await?);
        let (next, spec) = (next.clone(), spec.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(5000 + c as u64);
            loop {
                let lo = next.fetch_add(FILL_BATCH, Ordering::Relaxed);
                if lo >= to {
                    return Ok::<(), String>(());
                }
                let success = (lo..(lo + FILL_BATCH).min(to))
                    .map(|i| {
                        let key = configmap_key(&spec, i);
                        let size = rng.between(spec.min_object, spec.max_object);
                        let value = storage::object(&mut rng, &key, size);
                        RequestOp {
                            request: Some(request_op::Request::RequestPut(PutRequest {
                                key,
                                value,
                                ..Default::default()
                            })),
                        }
                    })
                    .collect();
                let req = TxnRequest {
                    success,
                    ..Default::default()
                };
                tokio::time::timeout(storage::REQUEST_TIMEOUT, kv.txn(req))
                    .await
                    .map_err(|_| "fill txn timed out".to_string())?
                    .map_err(|e| format!("fill txn: {}", e.message()))?;
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

/// Samples every process's VmRSS until stopped; returns each one's highest (KiB).
fn sample_rss(pids: Vec<u32>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<u64>> {
    tokio::spawn(async move {
        let mut peak = vec![0u64; pids.len()];
        while !stop.load(Ordering::Relaxed) {
            for (p, pid) in peak.iter_mut().zip(&pids) {
                *p = (*p).max(procfs::status_kb(*pid, "VmRSS:"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        peak
    })
}

/// Fills the resource from `have` to `objects`, then measures lists and counts of it.
pub async fn run(
    target: &Target,
    spec: &Spec,
    have: usize,
    objects: usize,
) -> Result<ListFigures, String> {
    let eps = &target.endpoints;
    if objects > have {
        eprintln!(
            "k8s: filling {}{CONFIGMAPS} to {objects} objects",
            spec.prefix
        );
        fill(eps, spec, have, objects).await?;
    }
    let channel = load::connect(&eps[0]).await?;
    let resource = format!("{}{CONFIGMAPS}", spec.prefix);
    let resource = resource.as_bytes();
    // Warm: the first list after the fill, not measured.
    let (_, seen, _) = storage::list(&channel, resource, spec.page).await?;
    if seen != objects {
        return Err(format!("listed {seen} objects, {objects} were put"));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let pids = target.pids.clone();
    let rss_before: Vec<u64> = pids
        .iter()
        .map(|&p| procfs::status_kb(p, "VmRSS:"))
        .collect();
    let reset = pids.iter().all(|&p| procfs::reset_peak_rss(p));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_rss(pids.clone(), stop.clone());
    let cpu_before = procfs::total_cpu_seconds(&pids);
    let began = Instant::now();
    let mut page_latencies = Vec::new();
    for _ in 0..spec.list_passes.max(1) {
        let (latencies, seen, _) = storage::list(&channel, resource, spec.page).await?;
        if seen != objects {
            return Err(format!("listed {seen} objects, {objects} were put"));
        }
        page_latencies.extend(latencies);
    }
    let elapsed = began.elapsed();
    let cpu_after = procfs::total_cpu_seconds(&pids);
    stop.store(true, Ordering::Relaxed);
    let sampled = sampler.await.map_err(|e| e.to_string())?;
    let rss_delta_mib = (!pids.is_empty()).then(|| {
        pids.iter()
            .zip(&sampled)
            .zip(&rss_before)
            .map(|((&pid, &peak), &before)| {
                let hwm = if reset {
                    procfs::status_kb(pid, "VmHWM:")
                } else {
                    0
                };
                peak.max(hwm).saturating_sub(before)
            })
            .max()
            .unwrap_or(0) as f64
            / 1024.0
    });

    let mut count_latencies = Vec::new();
    for _ in 0..COUNTS {
        let t = Instant::now();
        let n = storage::count(&channel, resource).await?;
        count_latencies.push(t.elapsed());
        if n != objects as i64 {
            return Err(format!("counted {n} objects, {objects} were put"));
        }
    }
    page_latencies.sort_unstable();
    count_latencies.sort_unstable();
    Ok(ListFigures {
        objects,
        pages: page_latencies.len(),
        elapsed,
        page_latencies,
        cpu_per_list: cpu_before
            .zip(cpu_after)
            .map(|(b, a)| (a - b) / spec.list_passes.max(1) as f64),
        rss_delta_mib,
        count_latencies,
    })
}
