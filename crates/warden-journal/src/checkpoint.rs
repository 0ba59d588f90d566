//! Signed checkpoints: the signing key file, the checkpoint signature, and the `.head` file
//! kept outside the database so that cutting off the tail of the journal is detectable.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::chain::Hash;
use crate::error::KeyError;

/// Domain separation: a checkpoint signature can never be mistaken for another signature.
const SIGNING_CONTEXT: &[u8] = b"warden-journal checkpoint v1\0";

/// A signed statement that the record `seq` has hash `hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The record's sequence number.
    pub seq: u64,
    /// The record's hash.
    pub hash: Hash,
    /// When the checkpoint was taken, in milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// Ed25519 signature over the context string, `seq`, `hash` and `time_ms`.
    pub signature: [u8; 64],
}

fn message(seq: u64, hash: &Hash, time_ms: i64) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNING_CONTEXT.len() + 48);
    m.extend_from_slice(SIGNING_CONTEXT);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash);
    m.extend_from_slice(&time_ms.to_be_bytes());
    m
}

impl Checkpoint {
    pub(crate) fn sign(key: &SigningKey, seq: u64, hash: Hash, time_ms: i64) -> Self {
        let signature = key.sign(&message(seq, &hash, time_ms)).to_bytes();
        Self {
            seq,
            hash,
            time_ms,
            signature,
        }
    }

    /// Whether the signature is valid under `key`.
    pub fn is_signed_by(&self, key: &VerifyingKey) -> bool {
        let sig = Signature::from_bytes(&self.signature);
        key.verify(&message(self.seq, &self.hash, self.time_ms), &sig)
            .is_ok()
    }
}

/// `<journal file><suffix>`, e.g. `audit.db.key`.
pub(crate) fn sibling(journal: &Path, suffix: &str) -> PathBuf {
    let mut name: OsString = journal.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Loads `<journal>.key`, creating it with mode 0600 if it does not exist.
pub(crate) fn load_or_create_key(journal: &Path) -> Result<SigningKey, KeyError> {
    let path = sibling(journal, ".key");
    match load_key(&path) {
        Err(LoadKey::Missing) => {}
        Err(LoadKey::Bad(e)) => return Err(e),
        Ok(key) => return Ok(key),
    }
    let err = |detail: String| KeyError {
        path: path.clone(),
        detail,
    };
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| err(format!("no randomness available: {e}")))?;
    // Written under a unique name, then linked into place: link refuses to replace an existing
    // file, so two Warden processes opening a new journal at once agree on one key, and no
    // process ever reads a half-written key.
    let mut tag = [0u8; 8];
    getrandom::fill(&mut tag).map_err(|e| err(format!("no randomness available: {e}")))?;
    let tmp = sibling(journal, &format!(".key.{}.tmp", hex::encode(tag)));
    let written = (|| -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&secret)?;
        f.sync_all()
    })();
    let linked = written.and_then(|()| fs::hard_link(&tmp, &path));
    // Best effort: the temporary name is unique, so a leftover harms nothing.
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_dir(&path);
            Ok(SigningKey::from_bytes(&secret))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match load_key(&path) {
            Ok(key) => Ok(key),
            Err(LoadKey::Bad(e)) => Err(e),
            Err(LoadKey::Missing) => Err(err("vanished while being created".into())),
        },
        Err(e) => Err(err(format!("cannot create: {e}"))),
    }
}

enum LoadKey {
    Missing,
    Bad(KeyError),
}

fn load_key(path: &Path) -> Result<SigningKey, LoadKey> {
    let bad = |detail: String| {
        LoadKey::Bad(KeyError {
            path: path.to_owned(),
            detail,
        })
    };
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(LoadKey::Missing),
        Err(e) => return Err(bad(format!("cannot open: {e}"))),
    };
    let meta = file
        .metadata()
        .map_err(|e| bad(format!("cannot stat: {e}")))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(bad(format!(
            "refusing a key that others may read or change (mode {mode:04o}); \
             run `chmod 600` on it"
        )));
    }
    let mut secret = [0u8; 32];
    let mut rest = Vec::new();
    file.read_exact(&mut secret)
        .and_then(|()| file.read_to_end(&mut rest))
        .map_err(|e| bad(format!("cannot read 32 bytes: {e}")))?;
    if !rest.is_empty() {
        return Err(bad(format!(
            "expected exactly 32 bytes, found {}",
            32 + rest.len()
        )));
    }
    Ok(SigningKey::from_bytes(&secret))
}

/// The `.head` file's content.
#[derive(Debug, Serialize, Deserialize)]
struct HeadFile {
    seq: u64,
    hash: String,
    time_ms: i64,
    signature: String,
}

/// Reads `<journal>.head`: `Ok(None)` if it does not exist, `Err(why)` if it is unreadable.
pub(crate) fn read_head(journal: &Path) -> Result<Option<Checkpoint>, String> {
    let path = sibling(journal, ".head");
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let head: HeadFile = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a head file: {e}", path.display()))?;
    let hash = decode_fixed::<32>(&head.hash).ok_or("head hash is not 32 hex bytes")?;
    let signature =
        decode_fixed::<64>(&head.signature).ok_or("head signature is not 64 hex bytes")?;
    Ok(Some(Checkpoint {
        seq: head.seq,
        hash,
        time_ms: head.time_ms,
        signature,
    }))
}

fn decode_fixed<const N: usize>(s: &str) -> Option<[u8; N]> {
    hex::decode(s).ok()?.try_into().ok()
}

/// Replaces `<journal>.head` with `cp` unless it already names a later checkpoint.
///
/// INVARIANT: the head only moves forward. Writers of one journal (possibly in several
/// processes) serialise here on an advisory lock on the key file, which every writer has.
pub(crate) fn write_head(journal: &Path, cp: &Checkpoint) -> io::Result<()> {
    let lock = File::open(sibling(journal, ".key"))?;
    lock.lock()?;
    if let Ok(Some(current)) = read_head(journal)
        && current.seq >= cp.seq
    {
        return Ok(());
    }
    let path = sibling(journal, ".head");
    let tmp = sibling(journal, ".head.tmp");
    let text = serde_json::to_string(&HeadFile {
        seq: cp.seq,
        hash: hex::encode(cp.hash),
        time_ms: cp.time_ms,
        signature: hex::encode(cp.signature),
    })
    .map_err(io::Error::other)?;
    {
        let mut f = File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &path)?;
    sync_dir(&path);
    drop(lock);
    Ok(())
}

/// Makes a rename or link in `file`'s directory durable. Best effort: some filesystems refuse
/// to fsync a directory, and the data itself is already synced.
fn sync_dir(file: &Path) {
    if let Some(dir) = file.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("j.db");
        let a = load_or_create_key(&journal).unwrap();
        let mode = fs::metadata(sibling(&journal, ".key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = load_or_create_key(&journal).unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
    }

    #[test]
    fn refuses_a_key_others_can_read() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("j.db");
        load_or_create_key(&journal).unwrap();
        let key = sibling(&journal, ".key");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create_key(&journal).unwrap_err();
        assert!(err.detail.contains("0644"), "{err}");
    }

    #[test]
    fn refuses_a_key_of_the_wrong_length() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("j.db");
        let key = sibling(&journal, ".key");
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key)
            .unwrap()
            .write_all(&[1; 31])
            .unwrap();
        assert!(load_or_create_key(&journal).is_err());
    }

    #[test]
    fn checkpoint_signature_covers_every_field() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let vk = key.verifying_key();
        let cp = Checkpoint::sign(&key, 10, [3; 32], 1234);
        assert!(cp.is_signed_by(&vk));
        for forged in [
            Checkpoint {
                seq: 11,
                ..cp.clone()
            },
            Checkpoint {
                hash: [4; 32],
                ..cp.clone()
            },
            Checkpoint {
                time_ms: 1235,
                ..cp.clone()
            },
        ] {
            assert!(!forged.is_signed_by(&vk));
        }
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
        assert!(!cp.is_signed_by(&other));
    }

    #[test]
    fn head_only_moves_forward() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("j.db");
        let key = load_or_create_key(&journal).unwrap();
        let later = Checkpoint::sign(&key, 20, [2; 32], 2);
        let earlier = Checkpoint::sign(&key, 10, [1; 32], 1);
        write_head(&journal, &later).unwrap();
        write_head(&journal, &earlier).unwrap();
        assert_eq!(read_head(&journal).unwrap(), Some(later));
    }
}
