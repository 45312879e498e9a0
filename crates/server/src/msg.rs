//! The messages between the gRPC layer, the raft thread and the apply thread, and the small
//! shared state they meet at. A leaf: it imports nothing of the server's.

use oxcd_api::etcdserverpb::{DeleteRangeResponse, Member, PutResponse, TxnResponse};
use oxcd_api::{EtcdError, LeaseId, Revision};
use raft::eraftpb::{ConfChange, ConfState, Entry, Message, Snapshot};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Mutex;
use tokio::sync::oneshot;

/// To the raft thread.
pub enum NodeMsg {
    /// The apply thread has applied (and committed to the backend) up to `index`.
    Applied {
        index: u64,
    },
    Propose {
        id: u64,
        data: Vec<u8>,
        /// Nonzero: proposed only while this member leads in that term, never forwarded.
        leader_term: u64,
    },
    ProposeConfChange {
        id: u64,
        change: ConfChange,
    },
    ReadIndex {
        reply: oneshot::Sender<u64>,
    },
    /// A message from a peer.
    Step(Box<Message>),
    Unreachable {
        id: u64,
    },
    SnapshotSent {
        id: u64,
        ok: bool,
    },
    /// A committed membership change the apply thread accepted: raft takes it on, persists
    /// the new configuration, and answers with it.
    ApplyConfChange {
        change: ConfChange,
        reply: std::sync::mpsc::Sender<ConfState>,
    },
    TransferLeader {
        to: u64,
    },
    /// The leader's view of how far each member's log matches its own (empty elsewhere).
    Progress {
        reply: oneshot::Sender<HashMap<u64, u64>>,
    },
    /// The state machine durably holds everything up to `index`; drop older log entries.
    CompactLog {
        index: u64,
    },
    /// Entries up to `index` are applied; the in-memory copy of older ones can go.
    ReleaseApplied {
        index: u64,
    },
}

/// To the apply thread, from the raft thread.
pub enum ApplyMsg {
    Entries(Vec<Entry>),
    /// The raft log now starts after this snapshot; its data names the received file.
    Snapshot(Snapshot),
}

/// What the rest of the server may know of raft without asking the raft thread.
#[derive(Default)]
pub struct RaftStatus {
    pub term: AtomicU64,
    pub leader: AtomicU64,
    pub commit: AtomicU64,
    pub is_leader: AtomicBool,
}

/// Told by the apply thread of each lease granted, so that on the leader its deadline starts
/// then (the lessor; declared here so the apply thread need not know it).
pub trait LeaseGrants: Send + Sync {
    fn granted(
        &self,
        status: &RaftStatus,
        store: &oxcd_mvcc::Store,
        id: oxcd_api::LeaseId,
        ttl: i64,
    );
}

/// etcd's most entries committed but not yet applied before new proposals are refused.
pub const MAX_APPLY_BACKLOG: u64 = 5000;

impl RaftStatus {
    /// etcd's backpressure: while more than `MAX_APPLY_BACKLOG` committed entries wait to be
    /// applied, new proposals get "too many requests" instead of growing the backlog.
    pub fn admit_proposal(&self, applied: u64) -> Result<(), oxcd_api::EtcdError> {
        let committed = self.commit.load(std::sync::atomic::Ordering::Acquire);
        if committed > applied.saturating_add(MAX_APPLY_BACKLOG) {
            return Err(oxcd_api::EtcdError::TooManyRequests);
        }
        Ok(())
    }
}

/// What applying a request produced.
#[derive(Debug)]
pub enum Applied {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    /// Compaction done; the store's revision then.
    Compacted(Revision),
    Published,
    LeaseGranted {
        id: LeaseId,
        ttl: i64,
    },
    /// A lease revoked (with its keys); the store's revision after.
    LeaseRevoked(Revision),
    LeaseCheckpointed,
    /// An auth store change (or a simple token assigned).
    Auth,
    /// The alarms an alarm request changed.
    Alarms(Vec<oxcd_api::etcdserverpb::AlarmMember>),
    /// A membership change: the member it concerned (gone if removed), everyone after it.
    Members {
        member: Option<Member>,
        members: Vec<Member>,
        removed: Option<u64>,
    },
}

type Reply = oneshot::Sender<Result<Applied, EtcdError>>;

/// Hands oneshot replies on from a task on the runtime: a thread outside the runtime (raft,
/// apply) wakes that task once for a batch, and it wakes the waiting tasks from inside,
/// instead of the thread waking each of them from outside (a remote schedule apiece).
pub struct Relay<T>(Option<tokio::sync::mpsc::UnboundedSender<Answers<T>>>);

/// Replies, each with its value.
pub type Answers<T> = Vec<(oneshot::Sender<T>, T)>;

impl<T> Default for Relay<T> {
    /// Replies sent directly.
    fn default() -> Self {
        Relay(None)
    }
}

impl<T: Send + 'static> Relay<T> {
    /// A relay task spawned on the current runtime.
    pub fn spawn() -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Answers<T>>();
        tokio::spawn(async move {
            while let Some(replies) = rx.recv().await {
                for (reply, value) in replies {
                    let _ = reply.send(value);
                }
            }
        });
        Relay(Some(tx))
    }

    /// Sends each reply its value: a lone one directly, more through the relay task.
    pub fn send_all(&self, replies: Answers<T>) {
        let replies = match &self.0 {
            Some(relay) if replies.len() > 1 => match relay.send(replies) {
                Ok(()) => return,
                Err(unsent) => unsent.0,
            },
            _ => replies,
        };
        for (reply, value) in replies {
            let _ = reply.send(value);
        }
    }
}

/// Proposers waiting for their entry to be applied, by request ID.
#[derive(Default)]
pub struct Waiters {
    waiting: Mutex<HashMap<u64, Reply>>,
    relay: Relay<Result<Applied, EtcdError>>,
}

impl Waiters {
    /// Waiters whose batches of replies go through a relay task on the current runtime.
    pub fn relayed() -> Self {
        Waiters {
            waiting: Mutex::default(),
            relay: Relay::spawn(),
        }
    }

    pub fn register(&self, id: u64) -> oneshot::Receiver<Result<Applied, EtcdError>> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut w) = self.waiting.lock() {
            w.insert(id, tx);
        }
        rx
    }

    pub fn forget(&self, id: u64) {
        if let Ok(mut w) = self.waiting.lock() {
            w.remove(&id);
        }
    }

    /// Whether someone still waits for request `id`'s outcome.
    pub fn is_waiting(&self, id: u64) -> bool {
        self.waiting
            .lock()
            .is_ok_and(|w| w.get(&id).is_some_and(|reply| !reply.is_closed()))
    }

    pub fn pending(&self) -> usize {
        self.waiting.lock().map_or(0, |w| w.len())
    }

    pub fn finish(&self, id: u64, result: Result<Applied, EtcdError>) {
        self.finish_all(vec![(id, result)]);
    }

    /// Hands each request its outcome, taking the lock once for all of them.
    pub fn finish_all(&self, results: Vec<(u64, Result<Applied, EtcdError>)>) {
        let replies: Vec<_> = match self.waiting.lock() {
            Ok(mut w) => results
                .into_iter()
                .filter_map(|(id, result)| w.remove(&id).map(|reply| (reply, result)))
                .collect(),
            Err(_) => return,
        };
        self.relay.send_all(replies);
    }
}

/// Why the node cannot go on: the raft or apply thread (or the peer transport) hands this up
/// to `run`, which stops serving and returns it to `main`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fatal {
    /// The disk failed us, or a thread the node needs is gone.
    Failed(String),
    /// This member was removed from the cluster (etcd exits 0 then).
    Removed,
}

impl std::fmt::Display for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fatal::Failed(why) => f.write_str(why),
            Fatal::Removed => {
                f.write_str("the member has been permanently removed from the cluster")
            }
        }
    }
}

/// Where the threads report a fatal error; the first report wins.
pub type FatalTx = tokio::sync::mpsc::UnboundedSender<Fatal>;

#[cfg(test)]
mod tests {
    use super::{Applied, RaftStatus, Waiters, MAX_APPLY_BACKLOG};
    use oxcd_api::EtcdError;
    use std::sync::atomic::Ordering;

    /// A batch's replies go through the relay task, a lone one directly; every proposer
    /// gets its own outcome either way, and nobody's reply is lost when one gave up.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_proposer_of_a_relayed_batch_gets_its_own_outcome() {
        let waiters = std::sync::Arc::new(Waiters::relayed());
        let mut waiting: Vec<_> = (1..=5).map(|id| (id, waiters.register(id))).collect();
        drop(waiting.remove(2)); // request 3's proposer gave up
        let lone = waiters.register(9);
        let from_apply = waiters.clone();
        std::thread::spawn(move || {
            from_apply.finish_all(
                (1..=5)
                    .map(|id| (id, Ok(Applied::Compacted(oxcd_api::Revision(id as i64)))))
                    .collect(),
            );
            from_apply.finish(9, Err(EtcdError::NoLeader));
        })
        .join()
        .expect("apply thread");
        for (id, rx) in waiting {
            match rx.await.expect("a reply") {
                Ok(Applied::Compacted(rev)) => assert_eq!(rev.0, id as i64),
                other => panic!("request {id} got {other:?}"),
            }
        }
        assert!(matches!(lone.await, Ok(Err(EtcdError::NoLeader))));
        assert_eq!(waiters.pending(), 0);
    }

    #[test]
    fn proposals_are_refused_while_the_apply_backlog_is_over_etcds_limit() {
        let status = RaftStatus::default();
        status.commit.store(10_000, Ordering::Release);
        assert_eq!(status.admit_proposal(10_000 - MAX_APPLY_BACKLOG), Ok(()));
        let refused = status.admit_proposal(10_000 - MAX_APPLY_BACKLOG - 1);
        assert_eq!(refused, Err(EtcdError::TooManyRequests));
        assert_eq!(
            EtcdError::TooManyRequests.to_string(),
            "etcdserver: too many requests"
        );
        assert_eq!(
            EtcdError::TooManyRequests.code(),
            tonic::Code::ResourceExhausted
        );
    }
}
