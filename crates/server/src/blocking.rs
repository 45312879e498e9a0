//! Work that would hold one of the async runtime's few threads (reading much of the store,
//! bcrypt) runs on the blocking pool, so raft's peers, heartbeats and small requests keep
//! theirs.

use oxcd_api::Revision;
use oxcd_mvcc::{KvHash, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tonic::Status;

/// Runs `work` on the blocking pool; with `slots`, once one is free, holding it until the
/// work ends (a caller that gives up does not free it early).
pub async fn run<T: Send + 'static>(
    slots: Option<&Arc<Semaphore>>,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let slot = match slots {
        Some(s) => Some(s.clone().acquire_owned().await.map_err(|e| e.to_string())?),
        None => None,
    };
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        work()
    })
    .await
    .map_err(|e| e.to_string())
}

/// HashKV at `rev` (0: the newest), for clients and for peers' corruption checks: it reads
/// the whole history.
pub async fn hash_kv(store: Arc<Store>, rev: Revision) -> Result<KvHash, Status> {
    run(None, move || store.hash_kv(rev))
        .await
        .map_err(|e| Status::internal(format!("hashkv: {e}")))?
        .map_err(crate::error::store_status)
}

/// How often a member looks whether its bytes in use are due a count.
const DB_SIZE_POLL: Duration = Duration::from_secs(1);

/// Keeps the backend's bytes in use (Status, /metrics) counted: the count reads every page,
/// so it runs here, from a read snapshot, never inside a commit.
pub async fn count_db_size_in_use(store: Arc<Store>) {
    loop {
        tokio::time::sleep(DB_SIZE_POLL).await;
        if !store.db_size_in_use_due() {
            continue;
        }
        let counting = store.clone();
        match run(None, move || counting.count_db_size_in_use()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "failed to count the backend's bytes in use"),
            Err(e) => {
                tracing::warn!(error = %e, "counting the backend's bytes in use did not finish")
            }
        }
    }
}
