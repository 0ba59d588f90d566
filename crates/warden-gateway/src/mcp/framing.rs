//! Newline-delimited message framing for the MCP stdio transport, with a size bound.
//!
//! A peer that sends an endless line must not make Warden buffer it: past the bound the rest of
//! the line is discarded as it arrives, keeping only its first and last few KiB so the request
//! id can still be recovered and the sender answered.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// How much of an oversize line is kept at each end.
const KEEP: usize = 4096;

/// One framed unit read from a peer.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete line, without its terminator.
    Line(Vec<u8>),
    /// A line longer than the bound; it was discarded.
    Oversize {
        /// Its total length in bytes.
        len: usize,
        /// The first bytes of it.
        head: Vec<u8>,
        /// The last bytes of it.
        tail: Vec<u8>,
    },
    /// The peer closed its side.
    Eof,
}

/// Reads newline-delimited frames of at most `max` bytes.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    max: usize,
    buf: Vec<u8>,
}

impl<R: AsyncBufRead + Unpin> FrameReader<R> {
    /// Wraps a buffered reader.
    pub fn new(inner: R, max: usize) -> Self {
        Self {
            inner,
            max,
            buf: Vec::new(),
        }
    }

    /// Reads the next non-empty frame.
    pub async fn next(&mut self) -> std::io::Result<Frame> {
        loop {
            match self.next_raw().await? {
                Frame::Line(line) if line.iter().all(u8::is_ascii_whitespace) => continue,
                frame => return Ok(frame),
            }
        }
    }

    async fn next_raw(&mut self) -> std::io::Result<Frame> {
        self.buf.clear();
        let mut len = 0usize;
        let mut oversize = false;
        let mut tail: Vec<u8> = Vec::new();
        loop {
            let available = self.inner.fill_buf().await?;
            if available.is_empty() {
                // EOF: a final line without a newline still counts.
                if len == 0 {
                    return Ok(Frame::Eof);
                }
                break;
            }
            let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (&available[..i], true),
                None => (available, false),
            };
            len += chunk.len();
            if !oversize && len > self.max {
                oversize = true;
                // The tail starts before this chunk: what is already buffered may end the line
                // but for a few bytes (and hold its id).
                tail.extend_from_slice(&self.buf[self.buf.len().saturating_sub(KEEP)..]);
                self.buf.truncate(KEEP.min(self.buf.len()));
            }
            if oversize {
                if self.buf.len() < KEEP {
                    let room = KEEP - self.buf.len();
                    self.buf.extend_from_slice(&chunk[..room.min(chunk.len())]);
                }
                tail.extend_from_slice(chunk);
                if tail.len() > 2 * KEEP {
                    tail.drain(..tail.len() - KEEP);
                }
            } else {
                self.buf.extend_from_slice(chunk);
            }
            let consumed = chunk.len() + usize::from(done);
            self.inner.consume(consumed);
            if done {
                break;
            }
        }
        if oversize {
            if tail.len() > KEEP {
                tail.drain(..tail.len() - KEEP);
            }
            return Ok(Frame::Oversize {
                len,
                head: std::mem::take(&mut self.buf),
                tail,
            });
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        Ok(Frame::Line(std::mem::take(&mut self.buf)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn frames(input: &[u8], max: usize) -> Vec<Frame> {
        let mut r = FrameReader::new(tokio::io::BufReader::with_capacity(7, input), max);
        let mut out = Vec::new();
        loop {
            let f = r.next().await.unwrap();
            let eof = f == Frame::Eof;
            out.push(f);
            if eof {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn splits_lines_and_skips_blank_ones() {
        let got = frames(b"{\"a\":1}\r\n\n  \n{\"b\":2}", 100).await;
        assert_eq!(
            got,
            vec![
                Frame::Line(b"{\"a\":1}".to_vec()),
                Frame::Line(b"{\"b\":2}".to_vec()),
                Frame::Eof
            ]
        );
    }

    #[tokio::test]
    async fn discards_oversize_line_and_keeps_going() {
        let mut input = b"{\"id\":7,\"x\":\"".to_vec();
        input.extend(std::iter::repeat_n(b'x', 20_000));
        input.extend_from_slice(b"\"}\nnext\n");
        let got = frames(&input, 1000).await;
        match &got[0] {
            Frame::Oversize { len, head, tail } => {
                assert_eq!(*len, input.len() - b"\nnext\n".len());
                assert!(head.starts_with(b"{\"id\":7"));
                assert!(head.len() <= KEEP);
                assert!(tail.ends_with(b"\"}"));
                assert!(tail.len() <= KEEP);
            }
            other => panic!("expected oversize, got {other:?}"),
        }
        assert_eq!(got[1], Frame::Line(b"next".to_vec()));
    }

    #[tokio::test]
    async fn oversize_tail_includes_bytes_read_before_the_bound_was_crossed() {
        // Read 7 bytes at a time: the bound is crossed in the second chunk, but the tail is
        // the end of the whole line (found by the `framing` fuzz target).
        let got = frames(b"0123456789\n", 9).await;
        assert_eq!(
            got[0],
            Frame::Oversize {
                len: 10,
                head: b"0123456789".to_vec(),
                tail: b"0123456789".to_vec(),
            }
        );
    }

    #[tokio::test]
    async fn line_at_exact_bound_is_kept() {
        let got = frames(b"abcd\n", 4).await;
        assert_eq!(got[0], Frame::Line(b"abcd".to_vec()));
        let got = frames(b"abcde\n", 4).await;
        assert!(matches!(got[0], Frame::Oversize { len: 5, .. }));
    }
}
