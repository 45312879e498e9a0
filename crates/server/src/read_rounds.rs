//! Linearizable reads waiting on raft's ReadIndex. One round is out at a time, as in etcd's
//! read loop: the reads that come while it is out share the next round, so a burst of reads
//! costs the leader a round or two of heartbeats, not one each.

use std::time::{Duration, Instant};
use tokio::sync::oneshot;

pub type ReadReply = oneshot::Sender<u64>;

/// What a ReadIndex's fate depends on: the term, the leader, and whether an entry of the term
/// is known committed (a leader drops a ReadIndex until then). A round asked under another
/// epoch was most likely dropped.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Epoch {
    pub term: u64,
    pub leader: u64,
    pub committed_in_term: bool,
}

pub struct ReadRounds {
    member: u64,
    waiting: Vec<ReadReply>,
    out: Option<Round>,
    counter: u64,
}

struct Round {
    /// The ReadIndex request's context: this member's ID, then the round's counter (the
    /// leader keys pending reads by context, so members' counters must not collide).
    ctx: Vec<u8>,
    epoch: Epoch,
    since: Instant,
    asked: Instant,
    replies: Vec<ReadReply>,
}

impl ReadRounds {
    pub fn new(member: u64) -> Self {
        ReadRounds {
            member,
            waiting: Vec::new(),
            out: None,
            counter: 0,
        }
    }

    pub fn push(&mut self, reply: ReadReply) {
        self.waiting.push(reply);
    }

    /// Whether no read waits and no round is out.
    pub fn is_idle(&self) -> bool {
        self.out.is_none() && self.waiting.is_empty()
    }

    /// Whether reads wait while no round is out: `start` would begin one.
    pub fn can_start(&self) -> bool {
        self.out.is_none() && !self.waiting.is_empty()
    }

    /// Begins a round for the waiting reads and returns its context for `read_index`; none
    /// while a round asked in this `epoch` is out, or no read waits. A round out from another
    /// epoch is asked again at once, under a new context, with the waiting reads joining it.
    pub fn start(&mut self, now: Instant, epoch: Epoch) -> Option<Vec<u8>> {
        let (since, mut replies) = match self.out.take() {
            Some(round) if round.epoch == epoch => {
                self.out = Some(round);
                return None;
            }
            Some(round) => (round.since, round.replies),
            None if self.waiting.is_empty() => return None,
            None => (now, Vec::new()),
        };
        replies.append(&mut self.waiting);
        self.counter += 1;
        let mut ctx = self.member.to_be_bytes().to_vec();
        ctx.extend_from_slice(&self.counter.to_be_bytes());
        self.out = Some(Round {
            ctx: ctx.clone(),
            epoch,
            since,
            asked: now,
            replies,
        });
        Some(ctx)
    }

    /// No leader to ask: the waiting reads fail at once (their senders are dropped).
    pub fn fail_waiting(&mut self) {
        self.waiting.clear();
    }

    /// The reads a ReadIndex answer with `ctx` is for; an answer to no round out is ignored.
    pub fn answered(&mut self, ctx: &[u8]) -> Option<Vec<ReadReply>> {
        if self.out.as_ref().is_some_and(|r| r.ctx == ctx) {
            return self.out.take().map(|r| r.replies);
        }
        None
    }

    /// Drops a round out for longer than `timeout` (its reads fail); otherwise, once `retry`
    /// has passed since it was last asked, returns its context to ask again (a leader drops
    /// a ReadIndex until it has committed an entry of its term, and a deposed one never
    /// answers).
    pub fn on_tick(&mut self, now: Instant, timeout: Duration, retry: Duration) -> Option<Vec<u8>> {
        if self
            .out
            .as_ref()
            .is_some_and(|r| now.duration_since(r.since) >= timeout)
        {
            self.out = None;
        }
        let round = self.out.as_mut()?;
        if now.duration_since(round.asked) < retry {
            return None;
        }
        round.asked = now;
        Some(round.ctx.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPOCH: Epoch = Epoch {
        term: 2,
        leader: 1,
        committed_in_term: true,
    };

    fn read() -> (ReadReply, oneshot::Receiver<u64>) {
        oneshot::channel()
    }

    fn answer(replies: Vec<ReadReply>, index: u64) {
        for r in replies {
            let _ = r.send(index);
        }
    }

    #[test]
    fn reads_that_come_while_a_round_is_out_share_the_next() {
        let now = Instant::now();
        let mut rounds = ReadRounds::new(7);
        let (first, mut first_rx) = read();
        rounds.push(first);
        let ctx1 = rounds
            .start(now, EPOCH)
            .expect("a round for the first read");
        assert_eq!(
            &ctx1[..8],
            &7u64.to_be_bytes(),
            "the context starts with the member"
        );
        let mut later = Vec::new();
        for _ in 0..3 {
            let (tx, rx) = read();
            rounds.push(tx);
            later.push(rx);
        }
        assert!(!rounds.can_start(), "a second round while the first is out");
        assert_eq!(rounds.start(now, EPOCH), None);
        answer(rounds.answered(&ctx1).expect("the first round's reads"), 10);
        assert_eq!(first_rx.try_recv(), Ok(10));
        let ctx2 = rounds.start(now, EPOCH).expect("the later reads' round");
        assert_ne!(ctx1, ctx2);
        let replies = rounds.answered(&ctx2).expect("the later reads");
        assert_eq!(replies.len(), 3, "all three share one round");
        answer(replies, 11);
        for mut rx in later {
            assert_eq!(rx.try_recv(), Ok(11));
        }
        assert!(!rounds.can_start(), "nothing left to ask for");
    }

    #[test]
    fn an_answer_to_no_round_out_is_ignored() {
        let now = Instant::now();
        let mut rounds = ReadRounds::new(1);
        let (tx, mut rx) = read();
        rounds.push(tx);
        let ctx = rounds.start(now, EPOCH).expect("round");
        let mut other = ctx.clone();
        other[15] ^= 1;
        assert!(rounds.answered(&other).is_none());
        assert!(rounds.answered(&[]).is_none());
        assert!(rx.try_recv().is_err(), "still waiting");
        assert_eq!(rounds.answered(&ctx).map(|r| r.len()), Some(1));
        assert!(rounds.answered(&ctx).is_none(), "answered once");
    }

    #[test]
    fn a_round_is_asked_again_and_dropped_after_the_timeout() {
        let t0 = Instant::now();
        let (timeout, retry) = (Duration::from_secs(5), Duration::from_millis(300));
        let mut rounds = ReadRounds::new(3);
        let (tx, mut rx) = read();
        rounds.push(tx);
        let ctx = rounds.start(t0, EPOCH).expect("round");
        assert_eq!(rounds.on_tick(t0 + retry / 2, timeout, retry), None);
        assert_eq!(
            rounds.on_tick(t0 + retry, timeout, retry),
            Some(ctx.clone())
        );
        assert_eq!(
            rounds.on_tick(t0 + retry, timeout, retry),
            None,
            "asked just now"
        );
        let (waiting, _waiting_rx) = read();
        rounds.push(waiting);
        assert_eq!(rounds.on_tick(t0 + timeout, timeout, retry), None);
        assert_eq!(
            rx.try_recv(),
            Err(oneshot::error::TryRecvError::Closed),
            "the timed-out read hears it"
        );
        assert!(
            rounds.can_start(),
            "the slot is free for the read that waited"
        );
    }

    #[test]
    fn without_a_leader_waiting_reads_fail_and_the_round_out_stays() {
        let now = Instant::now();
        let mut rounds = ReadRounds::new(2);
        let (out, _out_rx) = read();
        rounds.push(out);
        let ctx = rounds.start(now, EPOCH).expect("round");
        let (waiting, mut waiting_rx) = read();
        rounds.push(waiting);
        rounds.fail_waiting();
        assert_eq!(
            waiting_rx.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        );
        assert_eq!(rounds.answered(&ctx).map(|r| r.len()), Some(1));
    }

    #[test]
    fn a_round_from_another_epoch_is_asked_again_at_once_with_the_reads_that_waited() {
        let t0 = Instant::now();
        let before = Epoch {
            committed_in_term: false,
            ..EPOCH
        };
        let mut rounds = ReadRounds::new(4);
        let (first, mut first_rx) = read();
        rounds.push(first);
        // Asked of a new leader before it committed in its term: dropped by raft.
        let dropped = rounds.start(t0, before).expect("round");
        let (later, mut later_rx) = read();
        rounds.push(later);
        assert_eq!(rounds.start(t0, before), None, "same epoch: wait for it");
        let again = rounds.start(t0, EPOCH).expect("asked again");
        assert_ne!(again, dropped);
        assert!(
            rounds.answered(&dropped).is_none(),
            "the old context is gone"
        );
        let replies = rounds.answered(&again).expect("both reads");
        assert_eq!(replies.len(), 2);
        answer(replies, 5);
        assert_eq!(first_rx.try_recv(), Ok(5));
        assert_eq!(later_rx.try_recv(), Ok(5));
        // A new leader or term does the same.
        let (tx, _rx) = read();
        rounds.push(tx);
        rounds.start(t0, EPOCH).expect("round");
        let moved = Epoch { leader: 3, ..EPOCH };
        assert!(rounds.start(t0, moved).is_some());
        let (timeout, retry) = (Duration::from_secs(5), Duration::from_secs(1));
        assert_eq!(
            rounds.on_tick(t0 + timeout, timeout, retry),
            None,
            "the timeout still counts from the first ask"
        );
        assert!(!rounds.can_start());
    }
}
