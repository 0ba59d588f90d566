//! Reading a stopped target's memory through `/proc/PID/mem`, with hard bounds.
//!
//! Everything read here is hostile input: pointers may be wild, strings unterminated, arrays
//! endless. Every read is bounded and every failure is a value, never a panic.

use std::fs::File;
use std::os::unix::fs::FileExt;

/// At most this many `argv` entries are read.
pub(crate) const MAX_ARGS: usize = 256;
/// At most this many bytes of one string are read.
pub(crate) const MAX_STRING: usize = 4096;
/// At most this many bytes are read for one notification, all strings together.
pub(crate) const MAX_TOTAL: usize = 128 * 1024;

/// Reads never cross this boundary in one call: a mapping ends at a page edge, and a read that
/// starts in a mapped page must not fail because a later page is not mapped. The smallest page
/// size of the supported architectures.
const CHUNK: u64 = 4096;

/// A string read from the target, and whether it was cut at a bound.
pub(crate) struct Read {
    pub(crate) text: String,
    pub(crate) truncated: bool,
}

/// One target's memory, with what is left of the notification's byte budget.
pub(crate) struct TargetMemory {
    mem: File,
    budget: usize,
}

impl TargetMemory {
    pub(crate) fn open(pid: i32) -> std::io::Result<Self> {
        Ok(Self {
            mem: File::open(format!("/proc/{pid}/mem"))?,
            budget: MAX_TOTAL,
        })
    }

    /// Reads exactly `len` bytes at `addr` (`len` is small: a socket address).
    pub(crate) fn bytes(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, String> {
        let mut out = vec![0u8; len];
        self.fill(&mut out, addr)?;
        Ok(out)
    }

    /// Reads a NUL-terminated string at `addr`, at most [`MAX_STRING`] bytes and within the
    /// budget; lossy UTF-8.
    pub(crate) fn c_string(&mut self, addr: u64) -> Result<Read, String> {
        let limit = MAX_STRING.min(self.budget);
        let mut bytes = Vec::new();
        let mut at = addr;
        let mut terminated = false;
        while bytes.len() < limit {
            let room = chunk_room(at).min((limit - bytes.len()) as u64) as usize;
            let start = bytes.len();
            bytes.resize(start + room, 0);
            let n = self.read_at(&mut bytes[start..], at)?;
            bytes.truncate(start + n);
            if let Some(nul) = bytes[start..].iter().position(|&b| b == 0) {
                bytes.truncate(start + nul);
                terminated = true;
                break;
            }
            at = at
                .checked_add(n as u64)
                .ok_or_else(|| format!("string at {addr:#x} runs past the address space"))?;
        }
        self.budget = self.budget.saturating_sub(bytes.len() + 1);
        Ok(Read {
            text: String::from_utf8_lossy(&bytes).into_owned(),
            truncated: !terminated,
        })
    }

    /// Reads the NULL-terminated pointer array at `addr`, at most [`MAX_ARGS`] entries.
    /// Returns the pointers and whether the array went on past the bound.
    pub(crate) fn pointers(&mut self, addr: u64) -> Result<(Vec<u64>, bool), String> {
        const WORD: usize = size_of::<u64>();
        let mut out = Vec::new();
        if addr == 0 {
            return Ok((out, false));
        }
        let mut at = addr;
        let mut buf = [0u8; CHUNK as usize];
        while out.len() < MAX_ARGS {
            // Whole words up to the chunk edge; a word straddling the edge is read on its own.
            let words = (chunk_room(at) as usize / WORD).clamp(1, MAX_ARGS - out.len());
            let bytes = &mut buf[..words * WORD];
            self.fill(bytes, at)?;
            for word in bytes.chunks_exact(WORD) {
                let mut w = [0u8; WORD];
                w.copy_from_slice(word);
                let ptr = u64::from_ne_bytes(w);
                if ptr == 0 {
                    return Ok((out, false));
                }
                out.push(ptr);
            }
            at = at.checked_add((words * WORD) as u64).ok_or_else(|| {
                format!("argument array at {addr:#x} runs past the address space")
            })?;
        }
        // More entries may follow: the array is cut if the next pointer is not NULL.
        let mut next = [0u8; WORD];
        let more = match self.read_at(&mut next, at) {
            Ok(WORD) => u64::from_ne_bytes(next) != 0,
            _ => true,
        };
        Ok((out, more))
    }

    /// Fills `buf` from `at`, or fails.
    fn fill(&self, buf: &mut [u8], at: u64) -> Result<(), String> {
        let mut done = 0;
        while done < buf.len() {
            let from = at
                .checked_add(done as u64)
                .ok_or_else(|| format!("address {at:#x} runs past the address space"))?;
            done += self.read_at(&mut buf[done..], from)?;
        }
        Ok(())
    }

    /// One `pread`; a zero-length read of a non-empty buffer is an error (unmapped memory).
    fn read_at(&self, buf: &mut [u8], at: u64) -> Result<usize, String> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.mem.read_at(buf, at) {
                Ok(0) => return Err(format!("nothing readable at {at:#x}")),
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("cannot read at {at:#x}: {e}")),
            }
        }
    }
}

/// Bytes from `at` to the next chunk boundary.
fn chunk_room(at: u64) -> u64 {
    CHUNK - at % CHUNK
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> TargetMemory {
        TargetMemory::open(std::process::id() as i32).unwrap()
    }

    #[test]
    fn strings_are_read_to_their_nul() {
        let s = b"hello world\0tail";
        let got = me().c_string(s.as_ptr() as u64).unwrap();
        assert_eq!(got.text, "hello world");
        assert!(!got.truncated);
    }

    #[test]
    fn long_strings_are_cut_at_the_bound() {
        let long = vec![b'a'; MAX_STRING + 100];
        let got = me().c_string(long.as_ptr() as u64).unwrap();
        assert_eq!(got.text.len(), MAX_STRING);
        assert!(got.truncated);
    }

    #[test]
    fn strings_crossing_chunk_edges_are_whole() {
        // A string that starts 3 bytes before a 4096-byte boundary.
        let buf = vec![b'x'; 3 * CHUNK as usize];
        let base = buf.as_ptr() as u64;
        let start = (base / CHUNK + 1) * CHUNK - 3;
        let mut buf = buf;
        let off = (start - base) as usize;
        buf[off..off + 10].copy_from_slice(b"abcdefghi\0");
        let got = me().c_string(start).unwrap();
        assert_eq!(got.text, "abcdefghi");
    }

    #[test]
    fn the_budget_caps_the_total() {
        let long = vec![b'b'; MAX_STRING + 1];
        let mut mem = me();
        let mut total = 0;
        for _ in 0..(MAX_TOTAL / MAX_STRING + 5) {
            total += mem.c_string(long.as_ptr() as u64).unwrap().text.len();
        }
        assert!(total <= MAX_TOTAL, "{total}");
    }

    #[test]
    fn pointer_arrays_stop_at_null_or_the_bound() {
        let strings: Vec<Vec<u8>> = (0..3).map(|i| format!("arg{i}\0").into_bytes()).collect();
        let mut ptrs: Vec<u64> = strings.iter().map(|s| s.as_ptr() as u64).collect();
        ptrs.push(0);
        let (got, more) = me().pointers(ptrs.as_ptr() as u64).unwrap();
        assert_eq!(got, ptrs[..3]);
        assert!(!more);

        let many: Vec<u64> = (1..=(MAX_ARGS as u64 + 10)).chain([0]).collect();
        let (got, more) = me().pointers(many.as_ptr() as u64).unwrap();
        assert_eq!(got.len(), MAX_ARGS);
        assert_eq!(got, many[..MAX_ARGS]);
        assert!(more);

        let (got, more) = me().pointers(0).unwrap();
        assert!(got.is_empty() && !more);
    }

    #[test]
    fn wild_pointers_are_errors() {
        assert!(me().c_string(8).is_err());
        assert!(me().pointers(8).is_err());
        assert!(me().bytes(u64::MAX - 2, 8).is_err());
    }
}
