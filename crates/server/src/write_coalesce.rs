//! Fewer, larger socket writes for an HTTP/2 connection's frames.
//!
//! h2 writes at most one chained DATA frame (16 KiB, the peer's default frame size) per
//! write and flushes after each, so a watch stream's burst of responses left in 8 KiB
//! writes on average, each paying the kernel's whole send path (on loopback, the receiver's
//! too). This wrapper copies h2's small writes (frame heads, small frames) into one buffer
//! and answers the flushes of a turn of the connection's task by waking the task instead of
//! writing (a full frame is not copied: it goes out with what is held): the connection is
//! polled again after the tasks already queued (other streams' responses) have run, and the
//! first flush of that turn writes everything at once.
//!
//! A turn is told by the reads: h2 reads the socket until it would block each time its task
//! runs, before it flushes. HTTP/1 does not always read, so its connections are left as
//! they are. Nothing waits beyond one turn of the scheduler; a shutdown, and a buffer past
//! `LIMIT`, write at once.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most bytes held back; a write that would go past it goes out with what is held.
const LIMIT: usize = 64 * 1024;
/// A write this big (a full DATA frame) is not copied: it goes out with what is held.
const DIRECT: usize = 8 * 1024;
/// Less than this is written at once: a few small answers (puts') gain nothing from waiting
/// a turn, and h2 flushes those once a turn anyway.
const DEFER_FROM: usize = 1024;
/// A buffer bigger than this is freed once written out (idle connections keep a small one).
const KEEP: usize = 4 * 1024;
/// What an empty buffer takes at least.
const SMALL: usize = 4 * 1024;

const H2_PREFACE_START: &[u8] = b"PRI * HTTP/2.0";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Nothing read yet.
    Unknown,
    H2,
    PassThrough,
}

pub struct WriteCoalesce<S> {
    io: S,
    mode: Mode,
    /// How much of the HTTP/2 preface's start the first reads matched.
    preface_seen: usize,
    buf: Vec<u8>,
    written: usize,
    /// Counts reads: the task's turns.
    reads: u64,
    /// The read count when a flush was last answered by a wake instead of a write.
    deferred_at: Option<u64>,
}

impl<S> WriteCoalesce<S> {
    pub fn new(io: S) -> Self {
        WriteCoalesce {
            io,
            mode: Mode::Unknown,
            preface_seen: 0,
            buf: Vec::new(),
            written: 0,
            reads: 0,
            deferred_at: None,
        }
    }

    fn held(&self) -> usize {
        self.buf.len() - self.written
    }

    /// Everything held has been written.
    fn written_out(&mut self) {
        self.written = 0;
        if self.buf.capacity() > KEEP {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
    }
}

impl<S: AsyncWrite + Unpin> WriteCoalesce<S> {
    /// Writes out everything held.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            let n = std::task::ready!(
                Pin::new(&mut self.io).poll_write(cx, &self.buf[self.written..])
            )?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.written_out();
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WriteCoalesce<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.reads = this.reads.wrapping_add(1);
        let before = buf.filled().len();
        let res = Pin::new(&mut this.io).poll_read(cx, buf);
        let got = &buf.filled()[before..];
        if this.mode == Mode::Unknown && !got.is_empty() {
            this.learn_mode(got);
        }
        let ended = matches!(&res, Poll::Ready(Err(_))) || (res.is_ready() && got.is_empty());
        if ended && this.held() > 0 {
            // The connection is ending (h2 may drop it without a flush): what it answered
            // goes out if the socket still takes it, as it would have without the wrapper.
            let _ = this.poll_drain(cx);
        }
        res
    }
}

impl<S> WriteCoalesce<S> {
    /// HTTP/2 once the preface's start has been read, pass-through once anything else has.
    fn learn_mode(&mut self, got: &[u8]) {
        let want = &H2_PREFACE_START[self.preface_seen..];
        let n = got.len().min(want.len());
        if got[..n] != want[..n] {
            self.mode = Mode::PassThrough;
            return;
        }
        self.preface_seen += n;
        if self.preface_seen == H2_PREFACE_START.len() {
            self.mode = Mode::H2;
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteCoalesce<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.mode != Mode::H2 {
            return Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total < DIRECT && this.held() + total <= LIMIT {
            if this.written > 0 {
                // Part went out before the socket filled: keep only what is left.
                this.buf.drain(..this.written);
                this.written = 0;
            }
            if this.buf.capacity() - this.buf.len() < total {
                this.buf.reserve(total.max(SMALL));
            }
            for b in bufs {
                this.buf.extend_from_slice(b);
            }
            return Poll::Ready(Ok(total));
        }
        // A big payload is not copied: it goes out with what is held, in one write.
        loop {
            let held = this.held();
            if held == 0 {
                return Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
            }
            let mut slices = Vec::with_capacity(bufs.len() + 1);
            slices.push(IoSlice::new(&this.buf[this.written..]));
            slices.extend(bufs.iter().map(|b| IoSlice::new(b)));
            let n = std::task::ready!(Pin::new(&mut this.io).poll_write_vectored(cx, &slices))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            if n < held {
                this.written += n;
                continue;
            }
            this.written_out();
            if n > held {
                return Poll::Ready(Ok(n - held));
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.mode == Mode::H2 || self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.deferred_at {
            Some(at) if at == this.reads => return Poll::Ready(Ok(())),
            None if this.held() >= DEFER_FROM => {
                this.deferred_at = Some(this.reads);
                cx.waker().wake_by_ref();
                return Poll::Ready(Ok(()));
            }
            _ => std::task::ready!(this.poll_drain(cx))?,
        }
        this.deferred_at = None;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected
    for WriteCoalesce<S>
{
    type ConnectInfo = S::ConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    /// A socket that hands out `incoming` once and records each write it is given.
    #[derive(Default)]
    struct Recorder {
        incoming: Vec<u8>,
        /// The most bytes one read hands out (0: all there is).
        read_size: usize,
        /// Once `incoming` is used up: the client has closed its side.
        eof: bool,
        writes: Vec<Vec<u8>>,
        /// Writes taken before the socket reports itself full.
        room: Option<usize>,
        /// The most bytes one write takes (0: all it is given).
        max_write: usize,
    }

    impl AsyncRead for Recorder {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            if this.incoming.is_empty() {
                return if this.eof {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Pending
                };
            }
            let n = match this.read_size {
                0 => this.incoming.len(),
                n => n.min(this.incoming.len()),
            };
            buf.put_slice(&this.incoming.drain(..n).collect::<Vec<u8>>());
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            match &mut this.room {
                Some(0) => return Poll::Pending,
                Some(n) => *n -= 1,
                None => {}
            }
            let n = match this.max_write {
                0 => buf.len(),
                n => n.min(buf.len()),
            };
            this.writes.push(buf[..n].to_vec());
            Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            self.poll_write(cx, &all)
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[derive(Default)]
    struct Wakes(AtomicUsize);
    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    type Conn = WriteCoalesce<Recorder>;

    /// A connection whose client has sent `first` (and then nothing more).
    fn conn(first: &[u8], cx: &mut Context<'_>) -> Conn {
        let mut w = WriteCoalesce::new(Recorder {
            incoming: first.to_vec(),
            ..Default::default()
        });
        read_until_blocked(&mut w, cx);
        w
    }

    /// What h2 does first in each turn of its task.
    fn read_until_blocked(w: &mut Conn, cx: &mut Context<'_>) {
        let mut space = [0u8; 64];
        loop {
            let mut buf = ReadBuf::new(&mut space);
            if Pin::new(&mut *w).poll_read(cx, &mut buf).is_pending() || buf.filled().is_empty() {
                return;
            }
        }
    }

    fn write_frame(w: &mut Conn, cx: &mut Context<'_>, head: &[u8], body: &[u8]) {
        let bufs = [IoSlice::new(head), IoSlice::new(body)];
        let n = Pin::new(&mut *w).poll_write_vectored(cx, &bufs);
        assert!(matches!(n, Poll::Ready(Ok(n)) if n == head.len() + body.len()));
    }

    fn flush(w: &mut Conn, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(w).poll_flush(cx)
    }

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    #[test]
    fn frames_flushed_one_by_one_leave_in_one_write_on_the_next_turn() {
        let wakes = Arc::new(Wakes::default());
        let waker = std::task::Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let mut w = conn(PREFACE, &mut cx);
        // As h2 writes a burst: a frame head and its chained payload, then a flush, each.
        for i in 0..3u8 {
            write_frame(&mut w, &mut cx, &[i; 9], &[i; 4000]);
            assert!(flush(&mut w, &mut cx).is_ready());
        }
        assert!(w.io.writes.is_empty(), "held until the task's next turn");
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "the task is woken once");
        // The next turn: reads, whatever else was queued meanwhile, then a flush.
        read_until_blocked(&mut w, &mut cx);
        write_frame(&mut w, &mut cx, &[7; 9], &[7; 100]);
        assert!(matches!(flush(&mut w, &mut cx), Poll::Ready(Ok(()))));
        let expected: Vec<u8> = (0..3u8)
            .flat_map(|i| [vec![i; 9], vec![i; 4000]].concat())
            .chain([vec![7; 9], vec![7; 100]].concat())
            .collect();
        assert_eq!(w.io.writes, vec![expected]);
        // Written out, the next turn starts over (and an idle flush writes nothing).
        read_until_blocked(&mut w, &mut cx);
        assert!(flush(&mut w, &mut cx).is_ready());
        assert_eq!(w.io.writes.len(), 1);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert!(w.buf.capacity() <= KEEP);
    }

    #[test]
    fn a_full_frame_goes_out_uncopied_with_what_is_held() {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut w = conn(PREFACE, &mut cx);
        write_frame(&mut w, &mut cx, b"head", &[1; 100]);
        write_frame(&mut w, &mut cx, b"", &[2; DIRECT]);
        let expected = [b"head".as_slice(), &[1; 100], &[2; DIRECT]].concat();
        assert_eq!(w.io.writes, vec![expected]);
        assert_eq!(w.held(), 0);
        assert!(flush(&mut w, &mut cx).is_ready());
        assert_eq!(w.io.writes.len(), 1);
    }

    #[test]
    fn http1_writes_go_straight_through() {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut w = conn(b"GET /health HTTP/1.1\r\n\r\n", &mut cx);
        write_frame(&mut w, &mut cx, b"HTTP/1.1 200 OK\r\n", b"");
        assert_eq!(w.io.writes, vec![b"HTTP/1.1 200 OK\r\n".to_vec()]);
    }

    #[test]
    fn a_shutdown_and_a_full_buffer_write_at_once() {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut w = conn(PREFACE, &mut cx);
        write_frame(&mut w, &mut cx, b"head", &[2; DEFER_FROM]);
        assert!(flush(&mut w, &mut cx).is_ready());
        assert!(w.io.writes.is_empty());
        assert!(Pin::new(&mut w).poll_shutdown(&mut cx).is_ready());
        assert_eq!(
            w.io.writes,
            vec![[b"head".as_slice(), &[2; DEFER_FROM]].concat()]
        );

        let mut w = conn(PREFACE, &mut cx);
        let small = vec![1u8; DIRECT - 1];
        let fits = LIMIT / small.len();
        for _ in 0..fits {
            write_frame(&mut w, &mut cx, b"", &small);
        }
        assert!(w.io.writes.is_empty());
        write_frame(&mut w, &mut cx, b"", &small);
        assert_eq!(
            w.io.writes,
            vec![small.repeat(fits + 1)],
            "past the limit, what is held goes out with the new write"
        );
        assert_eq!(w.held(), 0);
        assert_eq!(w.buf.capacity(), 0, "a big buffer is not kept");
    }

    #[test]
    fn a_full_socket_keeps_the_bytes_and_the_flush_pending() {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut w = conn(PREFACE, &mut cx);
        w.io.room = Some(0);
        write_frame(&mut w, &mut cx, b"head", &[2; DEFER_FROM]);
        assert!(flush(&mut w, &mut cx).is_ready(), "the first flush defers");
        read_until_blocked(&mut w, &mut cx);
        assert!(
            flush(&mut w, &mut cx).is_pending(),
            "the next turn's waits for the socket"
        );
        w.io.room = None;
        assert!(matches!(flush(&mut w, &mut cx), Poll::Ready(Ok(()))));
        assert_eq!(
            w.io.writes,
            vec![[b"head".as_slice(), &[2; DEFER_FROM]].concat()]
        );
    }

    #[test]
    fn a_few_small_frames_are_written_at_the_turns_flush() {
        let wakes = Arc::new(Wakes::default());
        let waker = std::task::Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let mut w = conn(PREFACE, &mut cx);
        write_frame(&mut w, &mut cx, b"head", b"small answer");
        assert!(flush(&mut w, &mut cx).is_ready());
        assert_eq!(w.io.writes, vec![b"headsmall answer".to_vec()]);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_preface_read_in_pieces_is_still_http2() {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut w = WriteCoalesce::new(Recorder {
            incoming: PREFACE.to_vec(),
            read_size: 3,
            ..Default::default()
        });
        read_until_blocked(&mut w, &mut cx);
        write_frame(&mut w, &mut cx, b"head", b"small");
        assert!(w.io.writes.is_empty(), "held as HTTP/2");
    }

    #[test]
    fn a_slow_socket_does_not_grow_the_buffer_past_the_limit() {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut w = conn(PREFACE, &mut cx);
        w.io.max_write = 1000;
        let mut sent = Vec::new();
        let mut accepted = 0u32;
        for turn in 0..200u32 {
            // Each turn: one partial write gets through, then the socket is full.
            w.io.room = Some(1);
            read_until_blocked(&mut w, &mut cx);
            let _ = flush(&mut w, &mut cx);
            for i in 0..4u32 {
                let frame = (turn * 4 + i).to_be_bytes().repeat(125);
                match Pin::new(&mut w).poll_write(&mut cx, &frame) {
                    Poll::Ready(Ok(n)) => {
                        assert_eq!(n, frame.len());
                        sent.extend_from_slice(&frame);
                        accepted += 1;
                    }
                    Poll::Pending => break,
                    Poll::Ready(Err(e)) => panic!("{e}"),
                }
            }
            assert!(w.buf.len() <= LIMIT, "{} bytes buffered", w.buf.len());
        }
        assert!(accepted > 100);
        w.io.room = None;
        w.io.max_write = 0;
        for _ in 0..2 {
            read_until_blocked(&mut w, &mut cx);
            assert!(matches!(flush(&mut w, &mut cx), Poll::Ready(Ok(()))));
        }
        assert_eq!(w.io.writes.concat(), sent, "every byte, in order");
    }

    #[test]
    fn what_is_held_goes_out_when_the_client_closes() {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut w = conn(PREFACE, &mut cx);
        write_frame(&mut w, &mut cx, b"head", &[3; DEFER_FROM]);
        assert!(flush(&mut w, &mut cx).is_ready());
        assert!(w.io.writes.is_empty());
        w.io.eof = true;
        read_until_blocked(&mut w, &mut cx);
        assert_eq!(
            w.io.writes,
            vec![[b"head".as_slice(), &[3; DEFER_FROM]].concat()]
        );
    }
}
