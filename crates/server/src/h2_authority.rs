//! etcdctl 3.4 dials single endpoints (`endpoint status`, `--cluster`) with the whole URL as
//! the HTTP/2 `:authority` ("http://127.0.0.1:2379"), which Go's gRPC server accepts and the
//! h2 crate refuses as malformed. This read-side wrapper looks at the first header block of
//! each connection: with a proper authority it steps aside for good (plain pass-through);
//! with a URL it re-encodes every header block of that connection, authority fixed, as HPACK
//! literals that never touch the server's dynamic table.

use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const PREFACE_LEN: usize = H2_PREFACE.len();
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The h2 server's default SETTINGS_MAX_FRAME_SIZE.
const MAX_FRAME: usize = 16_384;
/// The most of one header block held back for inspection (HEADERS plus CONTINUATIONs);
/// beyond it the block goes to the server as it came, whose own limits then apply.
const MAX_HELD_BLOCK: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Inspect,
    Rewrite,
    PassThrough,
}

pub struct AuthorityFix<S> {
    io: S,
    mode: Mode,
    preface_left: usize,
    /// Bytes read from the client, not yet parsed.
    inbuf: Vec<u8>,
    /// Bytes ready for the server.
    out: Vec<u8>,
    out_pos: usize,
    /// Frames of a header block still waiting for END_HEADERS.
    held: Vec<u8>,
    decoder: fluke_hpack::Decoder<'static>,
    eof: bool,
}

impl<S> AuthorityFix<S> {
    pub fn new(io: S) -> Self {
        AuthorityFix {
            io,
            mode: Mode::Inspect,
            preface_left: PREFACE_LEN,
            inbuf: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            held: Vec::new(),
            decoder: fluke_hpack::Decoder::new(),
            eof: false,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// Moves whatever can be decided from `inbuf` to `out`.
    fn process(&mut self) {
        if self.preface_left > 0 {
            let n = self.preface_left.min(self.inbuf.len());
            let seen = PREFACE_LEN - self.preface_left;
            if self.inbuf[..n] != H2_PREFACE[seen..seen + n] {
                // HTTP/1 (health checks, metrics): nothing to fix.
                self.mode = Mode::PassThrough;
                self.preface_left = 0;
            } else {
                self.out.extend(self.inbuf.drain(..n));
                self.preface_left -= n;
            }
        }
        while self.preface_left == 0 && self.mode != Mode::PassThrough {
            if self.inbuf.len() < FRAME_HEADER {
                break;
            }
            let len = u32::from_be_bytes([0, self.inbuf[0], self.inbuf[1], self.inbuf[2]]) as usize;
            if len > MAX_FRAME || self.held.len() + FRAME_HEADER + len > MAX_HELD_BLOCK {
                // Nothing a proper client sends: the server refuses it; never wait for it.
                self.mode = Mode::PassThrough;
                break;
            }
            if self.inbuf.len() < FRAME_HEADER + len {
                break;
            }
            let frame: Vec<u8> = self.inbuf.drain(..FRAME_HEADER + len).collect();
            let (kind, flags) = (frame[3], frame[4]);
            if kind == HEADERS || (kind == CONTINUATION && !self.held.is_empty()) {
                self.held.extend_from_slice(&frame);
                if flags & END_HEADERS != 0 {
                    self.finish_block();
                }
            } else {
                self.out.extend_from_slice(&frame);
            }
        }
        if self.mode == Mode::PassThrough {
            self.out.append(&mut self.held);
            self.out.append(&mut self.inbuf);
        }
    }

    /// A whole header block is held: pass it on as it is, or rewritten.
    fn finish_block(&mut self) {
        let held = std::mem::take(&mut self.held);
        let Some(block) = parse_block(&held) else {
            self.out.extend_from_slice(&held);
            self.mode = Mode::PassThrough;
            return;
        };
        let headers = match self.decoder.decode(&block.fragment) {
            Ok(h) => h,
            Err(_) => {
                // Not ours to judge: let the server see it as it came.
                self.out.extend_from_slice(&held);
                self.mode = Mode::PassThrough;
                return;
            }
        };
        let url_authority = headers
            .iter()
            .any(|(n, v)| n.as_slice() == b":authority" && v.windows(3).any(|w| w == b"://"));
        if self.mode == Mode::Inspect && !url_authority {
            self.out.extend_from_slice(&held);
            self.mode = Mode::PassThrough;
            return;
        }
        self.mode = Mode::Rewrite;
        let mut encoded = Vec::new();
        for (name, value) in &headers {
            let value = if name.as_slice() == b":authority" {
                host_port(value)
            } else {
                value.clone()
            };
            encode_literal(&mut encoded, name, &value);
        }
        write_block(&mut self.out, &block, &encoded);
    }
}

struct Block {
    stream_id: [u8; 4],
    end_stream: bool,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
}

/// The header block fragments of a HEADERS frame and its CONTINUATIONs, padding removed.
fn parse_block(frames: &[u8]) -> Option<Block> {
    let mut off = 0;
    let mut block: Option<Block> = None;
    while off + FRAME_HEADER <= frames.len() {
        let len = u32::from_be_bytes([0, frames[off], frames[off + 1], frames[off + 2]]) as usize;
        let (kind, flags) = (frames[off + 3], frames[off + 4]);
        let payload = frames.get(off + FRAME_HEADER..off + FRAME_HEADER + len)?;
        if kind == HEADERS {
            let mut p = payload;
            let mut pad = 0;
            if flags & PADDED != 0 {
                pad = *p.first()? as usize;
                p = p.get(1..)?;
            }
            let mut priority = None;
            if flags & PRIORITY != 0 {
                priority = Some(<[u8; 5]>::try_from(p.get(..5)?).ok()?);
                p = p.get(5..)?;
            }
            let fragment = p.get(..p.len().checked_sub(pad)?)?.to_vec();
            let mut stream_id = [0u8; 4];
            stream_id.copy_from_slice(&frames[off + 5..off + 9]);
            block = Some(Block {
                stream_id,
                end_stream: flags & END_STREAM != 0,
                priority,
                fragment,
            });
        } else {
            block.as_mut()?.fragment.extend_from_slice(payload);
        }
        off += FRAME_HEADER + len;
    }
    block
}

fn frame_header(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream_id: [u8; 4]) {
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream_id);
}

fn write_block(out: &mut Vec<u8>, block: &Block, encoded: &[u8]) {
    let prio_len = block.priority.map_or(0, |_| 5);
    let first_len = encoded.len().min(MAX_FRAME - prio_len);
    let mut flags = if block.end_stream { END_STREAM } else { 0 };
    if block.priority.is_some() {
        flags |= PRIORITY;
    }
    let mut rest = &encoded[first_len..];
    if rest.is_empty() {
        flags |= END_HEADERS;
    }
    frame_header(out, prio_len + first_len, HEADERS, flags, block.stream_id);
    if let Some(p) = block.priority {
        out.extend_from_slice(&p);
    }
    out.extend_from_slice(&encoded[..first_len]);
    while !rest.is_empty() {
        let n = rest.len().min(MAX_FRAME);
        let flags = if n == rest.len() { END_HEADERS } else { 0 };
        frame_header(out, n, CONTINUATION, flags, block.stream_id);
        out.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
    }
}

/// "http://host:port[/...]" → "host:port".
fn host_port(v: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(v);
    let rest = text.split_once("://").map_or(text.as_ref(), |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).as_bytes().to_vec()
}

/// HPACK integer with an `prefix`-bit prefix; `first` holds the bits above the prefix.
fn encode_int(out: &mut Vec<u8>, first: u8, prefix: u32, mut v: usize) {
    let max = (1usize << prefix) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// "Literal header field without indexing — new name", strings not Huffman-coded.
fn encode_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    encode_int(out, 0, 7, name.len());
    out.extend_from_slice(name);
    encode_int(out, 0, 7, value.len());
    out.extend_from_slice(value);
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.out_pos < this.out.len() {
                let n = (this.out.len() - this.out_pos).min(buf.remaining());
                buf.put_slice(&this.out[this.out_pos..this.out_pos + n]);
                this.out_pos += n;
                if this.out_pos == this.out.len() {
                    this.out.clear();
                    this.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.mode == Mode::PassThrough || this.eof {
                return Pin::new(&mut this.io).poll_read(cx, buf);
            }
            let mut chunk = [0u8; 8192];
            let mut rb = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.io).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    if rb.filled().is_empty() {
                        // The client is gone; hand over what is left and then the EOF.
                        this.eof = true;
                        this.out.append(&mut this.held);
                        this.out.append(&mut this.inbuf);
                        if this.out.is_empty() {
                            return Poll::Ready(Ok(()));
                        }
                        continue;
                    }
                    this.inbuf.extend_from_slice(rb.filled());
                    this.process();
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected
    for AuthorityFix<S>
{
    type ConnectInfo = S::ConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn client_bytes(authority: &[u8], extra_frames: &[u8]) -> Vec<u8> {
        let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        frame_header(&mut out, 0, 0x4, 0, [0; 4]); // empty SETTINGS
        let mut block = Vec::new();
        encode_literal(&mut block, b":method", b"POST");
        encode_literal(&mut block, b":authority", authority);
        encode_literal(&mut block, b":path", b"/etcdserverpb.Maintenance/Status");
        // The client's HEADERS: padded, to check padding is dropped on rewrite.
        let mut payload = vec![2u8];
        payload.extend_from_slice(&block);
        payload.extend_from_slice(&[0, 0]);
        frame_header(
            &mut out,
            payload.len(),
            HEADERS,
            END_HEADERS | PADDED,
            [0, 0, 0, 1],
        );
        out.extend_from_slice(&payload);
        out.extend_from_slice(extra_frames);
        out
    }

    async fn through(input: Vec<u8>) -> Vec<u8> {
        let mut fix = AuthorityFix::new(std::io::Cursor::new(input));
        let mut out = Vec::new();
        fix.read_to_end(&mut out).await.expect("read");
        out
    }

    fn headers_of(out: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let frames = &out[PREFACE_LEN + FRAME_HEADER..];
        let len = u32::from_be_bytes([0, frames[0], frames[1], frames[2]]) as usize;
        assert_eq!(frames[4] & END_HEADERS, END_HEADERS);
        let block = parse_block(&frames[..FRAME_HEADER + len]).expect("a header block");
        fluke_hpack::Decoder::new()
            .decode(&block.fragment)
            .expect("decodes")
    }

    #[tokio::test]
    async fn a_url_authority_becomes_host_port() {
        let data = [0u8, 0, 3, 0, 1, 0, 0, 0, 1, b'a', b'b', b'c']; // a DATA frame after it
        let out = through(client_bytes(b"http://127.0.0.1:2379", &data)).await;
        let h = headers_of(&out);
        assert!(
            h.contains(&(b":authority".to_vec(), b"127.0.0.1:2379".to_vec())),
            "{h:?}"
        );
        assert_eq!(h[0].0, b":method");
        assert!(out.ends_with(&data));
    }

    #[tokio::test]
    async fn a_proper_authority_passes_through_untouched() {
        let input = client_bytes(b"127.0.0.1:2379", b"tail bytes");
        assert_eq!(through(input.clone()).await, input);
    }

    #[test]
    fn hpack_integers() {
        let mut v = Vec::new();
        encode_int(&mut v, 0, 7, 1337);
        assert_eq!(v, vec![127, 0xba, 0x09]);
    }
}
