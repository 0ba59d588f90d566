//! `FrameReader` over bytes from a peer, delivered in chunks of fuzzer-chosen sizes.
//!
//! The input is `[bound selector, chunking seed, repeat count, body...]`; the stream is the
//! body repeated 1..=8 times, so lines can outgrow the 4 KiB kept at each end of an oversize
//! line. The frames read must equal those of a plain reference model: split the stream at
//! '\n'; a final piece without '\n' still counts; a piece longer than the bound is
//! `Oversize` with its full length, its first min(len, 4096) bytes and its last
//! min(len, 4096) bytes; otherwise it is a `Line` without a trailing '\r'; lines of ASCII
//! whitespace only are skipped; then exactly one `Eof`. So lines within the bound are
//! reconstructed byte for byte, however the bytes were chunked.
#![no_main]

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};
use warden_gateway::mcp::framing::{Frame, FrameReader};

/// What `FrameReader` keeps of each end of an oversize line (its private `KEEP`).
const KEEP: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let [bound, seed, repeat, body @ ..] = data else {
        return;
    };
    let max = bound_from(*bound);
    let mut stream = Vec::with_capacity(body.len() * 8);
    for _ in 0..=(repeat % 8) {
        stream.extend_from_slice(body);
    }
    let expected = model(&stream, max);
    let got = read_all(Chunked::new(stream, *seed), max);
    assert_eq!(got.len(), expected.len(), "frame count, bound {max}");
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert!(
            g == e,
            "frame {i} differs, bound {max}: got {}, expected {}",
            show(g),
            show(e)
        );
    }
});

/// Bounds around the edges that matter: tiny, near `KEEP`, near `2 * KEEP`.
fn bound_from(b: u8) -> usize {
    const EDGES: [usize; 12] = [
        0,
        1,
        2,
        4095,
        4096,
        4097,
        8191,
        8192,
        8193,
        10_000,
        20_000,
        1 << 20,
    ];
    match b {
        0..=127 => usize::from(b),
        _ => EDGES[usize::from(b) % EDGES.len()],
    }
}

fn model(stream: &[u8], max: usize) -> Vec<Frame> {
    let mut pieces: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
    // After a final '\n' (or for an empty stream) the last piece is empty: nothing to read.
    if pieces.last().is_some_and(|p| p.is_empty()) {
        pieces.pop();
    }
    let mut frames = Vec::new();
    for piece in pieces {
        let len = piece.len();
        if len > max {
            frames.push(Frame::Oversize {
                len,
                head: piece[..len.min(KEEP)].to_vec(),
                tail: piece[len - len.min(KEEP)..].to_vec(),
            });
            continue;
        }
        let line = piece.strip_suffix(b"\r").unwrap_or(piece);
        if !line.iter().all(u8::is_ascii_whitespace) {
            frames.push(Frame::Line(line.to_vec()));
        }
    }
    frames.push(Frame::Eof);
    frames
}

fn read_all(reader: Chunked, max: usize) -> Vec<Frame> {
    let mut frames = FrameReader::new(reader, max);
    let mut out = Vec::new();
    loop {
        // The reader never returns Pending, so one poll completes each read.
        let frame = match pin!(frames.next()).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(frame)) => frame,
            Poll::Ready(Err(e)) => panic!("read failed: {e}"),
            Poll::Pending => panic!("a read over ready bytes did not complete"),
        };
        let eof = frame == Frame::Eof;
        out.push(frame);
        if eof {
            return out;
        }
    }
}

fn show(f: &Frame) -> String {
    match f {
        Frame::Line(l) => format!("Line({} bytes)", l.len()),
        Frame::Oversize { len, head, tail } => {
            format!(
                "Oversize {{ len: {len}, head: {} bytes, tail: {} bytes }}",
                head.len(),
                tail.len()
            )
        }
        Frame::Eof => "Eof".to_owned(),
    }
}

/// A buffered reader that hands out its bytes in chunks of pseudo-random sizes, as a pipe
/// would; a chunk is only replaced once fully consumed, as with `BufReader`.
struct Chunked {
    data: Vec<u8>,
    pos: usize,
    end: usize,
    state: u64,
    cap: usize,
}

impl Chunked {
    fn new(data: Vec<u8>, seed: u8) -> Self {
        // The low bits pick the largest chunk, from one byte at a time to all at once.
        let cap = [1, 3, 16, 255, 4096, 8192, 10_000, usize::MAX][usize::from(seed % 8)];
        Self {
            data,
            pos: 0,
            end: 0,
            state: u64::from(seed) | 0x9E37_79B9_0000_0000,
            cap,
        }
    }

    fn next_size(&mut self) -> usize {
        // xorshift64: deterministic, so a crash replays exactly.
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        match self.cap {
            usize::MAX => usize::MAX,
            cap => 1 + (self.state % cap as u64) as usize,
        }
    }
}

impl AsyncRead for Chunked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let available = match self.as_mut().poll_fill_buf(cx) {
            Poll::Ready(Ok(a)) => a,
            other => return other.map_ok(|_| ()),
        };
        let n = available.len().min(buf.remaining());
        buf.put_slice(&available[..n]);
        self.consume(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncBufRead for Chunked {
    fn poll_fill_buf(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        if this.pos == this.end && this.pos < this.data.len() {
            let size = this.next_size();
            this.end = this.pos.saturating_add(size).min(this.data.len());
        }
        Poll::Ready(Ok(&this.data[this.pos..this.end]))
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        let this = self.get_mut();
        assert!(this.pos + amt <= this.end, "consumed more than was offered");
        this.pos += amt;
    }
}
