//! Failpoints for tests, compiled in by the `failpoints` feature only: set at start from
//! `FAILPOINTS` (`name=actions;...`), or on a running member over HTTP on its client URL, as
//! gofail's endpoint does for etcd: `PUT /debug/failpoints/NAME` with the actions as the body
//! (the fail crate's syntax: `panic`, `sleep(2000)`, `pause`, `1*return`, `50%sleep(10)`),
//! `DELETE` to clear one, `GET /debug/failpoints` to list them all with their actions. A `panic` action ends the
//! process at once, as a crash would (see the binary's panic hook).

/// A failpoint in async code. Its actions run on a blocking thread: a `sleep` there holds
/// its own task only, where `fail_point!` would block a runtime worker and the tasks queued
/// on it (a held lease revoke once stalled unrelated requests for seconds). A panicking
/// action still unwinds the task.
macro_rules! async_fail_point {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        {
            let run = tokio::task::spawn_blocking(|| fail::fail_point!($name)).await;
            if let Err(e) = run {
                if e.is_panic() {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        }
    };
}
pub(crate) use async_fail_point;

/// Every failpoint oxcd has, where it sits, for the robustness suite to pick from.
pub const ALL: &[(&str, &str)] = &[
    (
        "raftBeforeSave",
        "raft thread: before new entries and hard state are written and fsynced",
    ),
    (
        "raftAfterSave",
        "raft thread: after the fsync, before messages that depend on it are sent",
    ),
    (
        "raftBeforeLeaderSend",
        "raft thread: before the leader sends what it has not persisted yet",
    ),
    (
        "raftBeforeFollowerSend",
        "raft thread: before persisted messages are sent",
    ),
    (
        "raftBeforeApplySnap",
        "raft thread: before a received snapshot moves the raft log on",
    ),
    (
        "raftAfterApplySnap",
        "raft thread: after the raft log moved on, before the apply thread loads it",
    ),
    (
        "raftBeforeAdvance",
        "raft thread: before raft hears the Ready was handled",
    ),
    (
        "raftBeforeCompactLog",
        "raft thread: before the raft log is compacted behind a snapshot",
    ),
    (
        "raftAfterCompactLog",
        "raft thread: after the raft log is compacted",
    ),
    (
        "raftBeforeSaveSnap",
        "peer port: before a received snapshot file is renamed into place",
    ),
    (
        "raftAfterSaveSnap",
        "peer port: after the rename and its fsync, before raft hears of it",
    ),
    (
        "raftBeforeSendSnap",
        "peer port: before the leader streams a snapshot to a follower",
    ),
    (
        "applyBeforeOpenSnapshot",
        "apply thread: before the state machine is replaced by a snapshot",
    ),
    (
        "applyBeforeEntry",
        "apply thread: before each committed entry",
    ),
    ("applyBeforePut", "apply thread: before a Put"),
    (
        "applyBeforeDeleteRange",
        "apply thread: before a DeleteRange",
    ),
    ("applyBeforeTxn", "apply thread: before a Txn"),
    (
        "applyBeforeCompaction",
        "apply thread: before a Compaction is recorded",
    ),
    ("applyBeforeLeaseGrant", "apply thread: before a LeaseGrant"),
    (
        "applyBeforeLeaseRevoke",
        "apply thread: before a LeaseRevoke",
    ),
    (
        "applyBeforeLeaseCheckpoint",
        "apply thread: before lease checkpoints",
    ),
    ("applyBeforeAuth", "apply thread: before an auth change"),
    (
        "applyBeforeConfChange",
        "apply thread: before a membership change",
    ),
    (
        "beforeCommit",
        "apply thread: before the backend transaction of a batch commits",
    ),
    (
        "afterCommit",
        "apply thread: after it commits, before proposers are woken",
    ),
    (
        "compactBeforeCommitBatch",
        "compaction: before a batch of deletions commits",
    ),
    (
        "compactAfterCommitBatch",
        "compaction: after a batch of deletions commits",
    ),
    (
        "compactBeforeSetFinishedCompact",
        "compaction: before the finished mark is written",
    ),
    (
        "defragBeforeCopy",
        "defragmentation: before the copy starts",
    ),
    (
        "defragBeforeRename",
        "defragmentation: before the copy replaces the backend file",
    ),
    (
        "lessorBeforeTick",
        "lessor: before the leader's loop looks at leadership and deadlines",
    ),
    (
        "lessorBeforeRevoke",
        "lessor: before the leader proposes an expired lease's revoke",
    ),
    (
        "lessorBeforeCheckpoint",
        "lessor: before the leader proposes remaining TTLs",
    ),
    (
        "walBeforeSync",
        "raft log: after a record is written, before its fsync",
    ),
];

#[cfg(feature = "failpoints")]
pub fn routes<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    use axum::extract::Path;
    use axum::http::StatusCode;
    use axum::routing::get;
    /// Every failpoint, `name=actions` (actions empty where none are set), one a line.
    async fn list() -> String {
        let set: std::collections::BTreeMap<String, String> = fail::list().into_iter().collect();
        ALL.iter()
            .map(|(name, _)| {
                let actions = set.get(*name).map_or("", String::as_str);
                format!("{name}={actions}\n")
            })
            .collect()
    }
    async fn set(Path(name): Path<String>, actions: String) -> (StatusCode, String) {
        match fail::cfg(name, actions.trim()) {
            Ok(()) => (StatusCode::NO_CONTENT, String::new()),
            Err(e) => (StatusCode::BAD_REQUEST, e),
        }
    }
    async fn clear(Path(name): Path<String>) -> StatusCode {
        fail::remove(name);
        StatusCode::NO_CONTENT
    }
    axum::Router::new()
        .route("/debug/failpoints", get(list))
        .route("/debug/failpoints/{name}", get(list).put(set).delete(clear))
}

#[cfg(not(feature = "failpoints"))]
pub fn routes<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    axum::Router::new()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    fn placed(dir: &Path, found: &mut BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                placed(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                for part in text.split("fail_point!(\"").skip(1) {
                    if let Some((name, _)) = part.split_once('"') {
                        found.insert(name.to_string());
                    }
                }
            }
        }
    }

    #[test]
    fn the_list_names_every_failpoint_in_the_code_and_nothing_else() {
        let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut found = BTreeSet::new();
        for krate in ["server", "mvcc", "raftlog", "storage"] {
            placed(&crates.join(krate).join("src"), &mut found);
        }
        let listed: BTreeSet<String> = super::ALL.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(found, listed);
    }
}
