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
/// A buffer bigger than this is freed once written out (idle connections keep none).
const KEEP: usize = 16 * 1024;
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

impl<S: AsyncRead + Unpin> AsyncRead for WriteCoalesce<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.reads = this.reads.wrapping_add(1);
        let before = buf.filled().len();
        let res = Pin::new(&mut this.io).poll_read(cx, buf);
        if this.mode == Mode::Unknown && buf.filled().len() > before {
            let first = &buf.filled()[before..];
            let n = first.len().min(H2_PREFACE_START.len());
            this.mode = if n == H2_PREFACE_START.len() && first[..n] == *H2_PREFACE_START {
                Mode::H2
            } else {
                Mode::PassThrough
            };
        }
        res
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
        true
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
        writes: Vec<Vec<u8>>,
        /// Writes taken before the socket reports itself full.
        room: Option<usize>,
    }

    impl AsyncRead for Recorder {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            if this.incoming.is_empty() {
                return Poll::Pending;
            }
            buf.put_slice(&std::mem::take(&mut this.incoming));
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
            this.writes.push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
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
            if Pin::new(&mut *w).poll_read(cx, &mut buf).is_pending() {
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
        let waker = std::task::Waker::from(Arc::new(Wakes::default()));
        let mut cx = Context::from_waker(&waker);
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
        let waker = std::task::Waker::from(Arc::new(Wakes::default()));
        let mut cx = Context::from_waker(&waker);
        let mut w = conn(b"GET /health HTTP/1.1\r\n\r\n", &mut cx);
        write_frame(&mut w, &mut cx, b"HTTP/1.1 200 OK\r\n", b"");
        assert_eq!(w.io.writes, vec![b"HTTP/1.1 200 OK\r\n".to_vec()]);
    }

    #[test]
    fn a_shutdown_and_a_full_buffer_write_at_once() {
        let waker = std::task::Waker::from(Arc::new(Wakes::default()));
        let mut cx = Context::from_waker(&waker);
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
        let waker = std::task::Waker::from(Arc::new(Wakes::default()));
        let mut cx = Context::from_waker(&waker);
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
}
