//! The hash chain: how one record's hash is computed from its content and its predecessor's.
//!
//! `hash = SHA-256(prev_hash ‖ seq ‖ time_ms ‖ len kind ‖ kind ‖ len agent ‖ agent ‖
//! len session ‖ session ‖ len body ‖ body)`, integers as 8 big-endian bytes. Every
//! variable-length field carries its length, so no two different records encode to the same
//! bytes. See `docs/decisions/0003-journal-hash.md` for why SHA-256.

use sha2::{Digest, Sha256};

/// Length of a record hash in bytes.
pub const HASH_LEN: usize = 32;

/// A record hash.
pub type Hash = [u8; HASH_LEN];

/// The `prev_hash` of the first record.
pub const GENESIS: Hash = [0; HASH_LEN];

/// The fields of one record that its hash covers, borrowed from wherever they live (an event
/// about to be written, or a row being verified).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordFields<'a> {
    pub seq: u64,
    pub time_ms: i64,
    pub kind: &'a [u8],
    pub agent: &'a [u8],
    pub session: &'a [u8],
    pub body: &'a [u8],
}

/// Feeds the bytes a record hash covers to `sink`, in order.
fn feed(prev: &Hash, fields: &RecordFields<'_>, mut sink: impl FnMut(&[u8])) {
    sink(prev);
    sink(&fields.seq.to_be_bytes());
    sink(&fields.time_ms.to_be_bytes());
    for part in [fields.kind, fields.agent, fields.session, fields.body] {
        sink(&(part.len() as u64).to_be_bytes());
        sink(part);
    }
}

/// The hash of a record whose predecessor's hash is `prev`.
pub(crate) fn record_hash(prev: &Hash, fields: &RecordFields<'_>) -> Hash {
    let mut h = Sha256::new();
    feed(prev, fields, |bytes| h.update(bytes));
    h.finalize().into()
}

/// Appends the bytes that [`record_hash`] hashes to `out`, so that hashing can happen
/// elsewhere (on another thread, during verification).
pub(crate) fn push_preimage(prev: &Hash, fields: &RecordFields<'_>, out: &mut Vec<u8>) {
    feed(prev, fields, |bytes| out.extend_from_slice(bytes));
}

/// SHA-256 of a preimage built by [`push_preimage`].
pub(crate) fn hash_preimage(preimage: &[u8]) -> Hash {
    Sha256::digest(preimage).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>(kind: &'a [u8], agent: &'a [u8]) -> RecordFields<'a> {
        RecordFields {
            seq: 1,
            time_ms: 7,
            kind,
            agent,
            session: b"s",
            body: b"{}",
        }
    }

    #[test]
    fn length_prefix_separates_fields() {
        // Moving a byte from one field to the next must change the hash.
        let a = record_hash(&GENESIS, &fields(b"ab", b"c"));
        let b = record_hash(&GENESIS, &fields(b"a", b"bc"));
        assert_ne!(a, b);
    }

    #[test]
    fn hash_depends_on_prev_and_seq() {
        let f = fields(b"decision", b"alice");
        let base = record_hash(&GENESIS, &f);
        assert_ne!(base, record_hash(&[1; HASH_LEN], &f));
        assert_ne!(base, record_hash(&GENESIS, &RecordFields { seq: 2, ..f }));
        assert_eq!(base, record_hash(&GENESIS, &f));
    }

    #[test]
    fn preimage_hashes_like_the_record() {
        let f = fields(b"outcome", b"bob");
        let mut pre = Vec::new();
        push_preimage(&[5; HASH_LEN], &f, &mut pre);
        assert_eq!(hash_preimage(&pre), record_hash(&[5; HASH_LEN], &f));
    }
}
