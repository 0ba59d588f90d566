//! Who is calling: the agents an operator registered, and the bearer tokens they present.
//!
//! An agent never names itself. The operator issues each agent a token (`warden agent add`);
//! the HTTP gateway maps the bearer token of every request to the agent it was issued to, or
//! refuses the request. Two sides share one file, the *agent file*:
//!
//! - [`AgentStore`] (the CLI) adds, rotates, revokes and lists agents. Changes are serialised
//!   between processes with an advisory lock, and each is written atomically (temporary file
//!   in the same folder, fsync, rename), so a reader never sees half a file.
//! - [`Authenticator`] (the gateway) keeps an in-memory index by token digest and reloads it
//!   when the file changes, so a revocation takes effect on the next request.
//!
//! INVARIANT: the agent file holds SHA-256 digests of tokens, never tokens. A token is shown
//! once, to the operator who issued it.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use warden_core::AgentId;

/// The agent name the journal uses for requests that carry no valid token. No agent may be
/// registered under it.
pub const UNAUTHENTICATED: &str = "unauthenticated";

/// How every token Warden issues begins, so a leaked one is recognisable (secret scanners,
/// logs) as a Warden token.
pub const TOKEN_PREFIX: &str = "wdn_";

/// The agent file's format version; any other is refused rather than guessed at.
const FORMAT_VERSION: u32 = 1;

// === Errors ===

/// Why the agent file could not be read or changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// A file operation failed.
    #[error("cannot {op} {}: {error}", path.display())]
    Io {
        /// What was being done ("read", "lock", "write", ...).
        op: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The I/O error.
        error: io::Error,
    },
    /// The agent file exists but is not one Warden can use. It is never treated as empty: that
    /// would silently drop every revocation in it.
    #[error("{} is not a usable agent file: {detail}", path.display())]
    Garbled {
        /// The agent file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The name is reserved for requests that carry no valid token.
    #[error("the agent name \"{UNAUTHENTICATED}\" is reserved for requests without a valid token")]
    ReservedName,
    /// The agent already has a token in force; replacing it must be asked for (rotation).
    #[error("agent {0} already has an active token")]
    AlreadyActive(AgentId),
    /// No agent of that name is registered.
    #[error("no agent named {0} is registered")]
    UnknownAgent(AgentId),
    /// The agent's token is already revoked.
    #[error("agent {0} is already revoked")]
    AlreadyRevoked(AgentId),
    /// The operating system gave no randomness for a token.
    #[error("no randomness for a token: {0}")]
    Randomness(String),
    /// The change was checked but could not be recorded, so it was not made.
    #[error("the change to agent {agent} was not made, because recording it failed: {error}")]
    NotRecorded {
        /// The agent the change was for.
        agent: AgentId,
        /// Why recording failed.
        error: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Why a request's bearer token was not accepted. The texts tell a client what to do; none
/// of them repeats the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The request carried no token.
    #[error(
        "no bearer token: send `Authorization: Bearer <token>` with the token the operator \
         issued for this agent"
    )]
    Missing,
    /// The token is not one Warden issued, or it was replaced by a newer one.
    #[error(
        "the bearer token is not valid (never issued, or replaced by a newer one); ask the \
         operator for this agent's current token"
    )]
    Unknown,
    /// The token was issued to this agent and then revoked.
    #[error("the token of agent {0} was revoked; ask the operator to issue a new one")]
    Revoked(AgentId),
}

// === The agent file ===

/// One registered agent, as the agent file keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentRecord {
    /// The agent.
    pub name: AgentId,
    /// SHA-256 (lowercase hex) of the agent's current token.
    pub token_sha256: String,
    /// When the current token was issued, in milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// When the token was revoked; `None` while it is in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_ms: Option<i64>,
}

impl AgentRecord {
    /// Whether the agent's token is in force.
    pub fn is_active(&self) -> bool {
        self.revoked_ms.is_none()
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentFile {
    version: u32,
    agents: Vec<AgentRecord>,
}

impl AgentFile {
    fn empty() -> Self {
        Self {
            version: FORMAT_VERSION,
            agents: Vec::new(),
        }
    }

    fn parse(path: &Path, text: &str) -> Result<Self, IdentityError> {
        let garbled = |detail: String| IdentityError::Garbled {
            path: path.to_owned(),
            detail,
        };
        let file: AgentFile = serde_json::from_str(text).map_err(|e| garbled(e.to_string()))?;
        if file.version != FORMAT_VERSION {
            return Err(garbled(format!(
                "format version {} is not supported (expected {FORMAT_VERSION})",
                file.version
            )));
        }
        let mut names = HashSet::new();
        let mut digests = HashSet::new();
        for r in &file.agents {
            if r.name.as_str() == UNAUTHENTICATED {
                return Err(garbled(format!(
                    "the reserved name \"{UNAUTHENTICATED}\" is listed"
                )));
            }
            if !names.insert(&r.name) {
                return Err(garbled(format!("agent {} is listed twice", r.name)));
            }
            let Some(digest) = parse_digest(&r.token_sha256) else {
                return Err(garbled(format!(
                    "agent {}: token_sha256 is not 64 lowercase hex digits",
                    r.name
                )));
            };
            // Two agents answering to one token would make the caller ambiguous.
            if !digests.insert(digest) {
                return Err(garbled(format!(
                    "agent {} has the same token as another agent",
                    r.name
                )));
            }
        }
        Ok(file)
    }

    /// Reads the file; a missing file is `Ok(None)`.
    fn read(path: &Path) -> Result<Option<Self>, IdentityError> {
        match fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("read", path, e)),
        }
    }

    /// Replaces the file at `path` with this content: a reader sees the old file or the new
    /// one, never a mixture, and the new one survives a crash once this returns.
    fn write_atomically(&self, path: &Path) -> Result<(), IdentityError> {
        let mut text = serde_json::to_string_pretty(self).map_err(|e| IdentityError::Garbled {
            path: path.to_owned(),
            detail: format!("cannot encode: {e}"),
        })?;
        text.push('\n');
        let mut tag = [0u8; 8];
        getrandom::fill(&mut tag).map_err(|e| IdentityError::Randomness(e.to_string()))?;
        // Same folder, so the rename cannot cross filesystems; a unique name, so a temporary
        // file left by a crash is never reused.
        let tmp = sibling(path, &format!(".{}.tmp", hex::encode(tag)), true)?;
        let written = (|| -> io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()
        })()
        .map_err(|e| io_error("write", &tmp, e))
        .and_then(|()| fs::rename(&tmp, path).map_err(|e| io_error("replace", path, e)));
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written?;
        sync_dir(path);
        Ok(())
    }
}

// === impl AgentStore ===

/// What a change did to an agent, as the journal records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentChange {
    /// A new agent, or a revoked one given a new token.
    Added,
    /// An active agent's token was replaced; the old one no longer works.
    Rotated,
    /// The agent's token was revoked.
    Revoked,
}

impl AgentChange {
    /// `"added"`, `"rotated"` or `"revoked"`.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentChange::Added => "added",
            AgentChange::Rotated => "rotated",
            AgentChange::Revoked => "revoked",
        }
    }
}

impl fmt::Display for AgentChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token just issued. The only place the token exists outside the agent's hands; its
/// `Debug` output hides it.
pub struct IssuedToken {
    agent: AgentId,
    token: String,
    change: AgentChange,
}

impl IssuedToken {
    /// The agent the token was issued to.
    pub fn agent(&self) -> &AgentId {
        &self.agent
    }

    /// The token, to hand to the agent.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Whether the agent was added or its token rotated.
    pub fn change(&self) -> AgentChange {
        self.change
    }
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("agent", &self.agent)
            .field("token", &"<hidden>")
            .field("change", &self.change)
            .finish()
    }
}

/// The operator's side of the agent file: add, rotate, revoke and list agents.
#[derive(Debug, Clone)]
pub struct AgentStore {
    path: PathBuf,
}

impl AgentStore {
    /// The store kept in the agent file at `path` (created on the first change).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The agent file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Issues a token for `name`: a new agent, a revoked one, or (with `rotate`) an active one,
    /// whose previous token then stops working.
    pub fn add(&self, name: &AgentId, rotate: bool) -> Result<IssuedToken, IdentityError> {
        self.add_recorded(name, rotate, no_record)
    }

    /// [`AgentStore::add`], calling `record` once the change is known to be allowed and before
    /// it is written. If `record` fails, the file is left as it was.
    pub fn add_recorded<E>(
        &self,
        name: &AgentId,
        rotate: bool,
        record: impl FnOnce(&AgentId, AgentChange) -> Result<(), E>,
    ) -> Result<IssuedToken, IdentityError>
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if name.as_str() == UNAUTHENTICATED {
            return Err(IdentityError::ReservedName);
        }
        self.change(name, record, |file, now| {
            let token = new_token()?;
            let digest = hex::encode(digest_of(&token));
            let change = match file.agents.iter_mut().find(|r| &r.name == name) {
                Some(r) if r.is_active() && !rotate => {
                    return Err(IdentityError::AlreadyActive(name.clone()));
                }
                Some(r) => {
                    let change = if r.is_active() {
                        AgentChange::Rotated
                    } else {
                        AgentChange::Added
                    };
                    r.token_sha256 = digest;
                    r.created_ms = now;
                    r.revoked_ms = None;
                    change
                }
                None => {
                    file.agents.push(AgentRecord {
                        name: name.clone(),
                        token_sha256: digest,
                        created_ms: now,
                        revoked_ms: None,
                    });
                    AgentChange::Added
                }
            };
            Ok((
                change,
                IssuedToken {
                    agent: name.clone(),
                    token,
                    change,
                },
            ))
        })
    }

    /// Revokes `name`'s token. The record stays, so a request with the old token is refused
    /// as revoked rather than unknown.
    pub fn revoke(&self, name: &AgentId) -> Result<(), IdentityError> {
        self.revoke_recorded(name, no_record)
    }

    /// [`AgentStore::revoke`], calling `record` before the change is written. If `record`
    /// fails, the file is left as it was.
    pub fn revoke_recorded<E>(
        &self,
        name: &AgentId,
        record: impl FnOnce(&AgentId, AgentChange) -> Result<(), E>,
    ) -> Result<(), IdentityError>
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.change(name, record, |file, now| {
            match file.agents.iter_mut().find(|r| &r.name == name) {
                None => Err(IdentityError::UnknownAgent(name.clone())),
                Some(r) if !r.is_active() => Err(IdentityError::AlreadyRevoked(name.clone())),
                Some(r) => {
                    r.revoked_ms = Some(now);
                    Ok((AgentChange::Revoked, ()))
                }
            }
        })
    }

    /// Every registered agent, by name. A missing file lists none.
    pub fn list(&self) -> Result<Vec<AgentRecord>, IdentityError> {
        // No lock needed: the file is only ever replaced whole.
        let mut agents = AgentFile::read(&self.path)?.map_or_else(Vec::new, |f| f.agents);
        agents.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(agents)
    }

    /// Read, change and write the file under the store's lock, recording the change in between.
    fn change<T, E>(
        &self,
        name: &AgentId,
        record: impl FnOnce(&AgentId, AgentChange) -> Result<(), E>,
        apply: impl FnOnce(&mut AgentFile, i64) -> Result<(AgentChange, T), IdentityError>,
    ) -> Result<T, IdentityError>
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // A separate lock file: the agent file itself is replaced by rename, and a lock on a
        // replaced file would no longer exclude anyone.
        let lock_path = sibling(&self.path, ".lock", false)?;
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| io_error("open", &lock_path, e))?;
        lock.lock().map_err(|e| io_error("lock", &lock_path, e))?;
        let mut file = AgentFile::read(&self.path)?.unwrap_or_else(AgentFile::empty);
        let (change, out) = apply(&mut file, now_ms())?;
        // Recorded before it takes effect, like every action Warden journals: a failure
        // afterwards leaves a record of a change that did not happen, never the reverse.
        record(name, change).map_err(|e| IdentityError::NotRecorded {
            agent: name.clone(),
            error: e.into(),
        })?;
        file.write_atomically(&self.path)?;
        drop(lock);
        Ok(out)
    }
}

fn no_record(_: &AgentId, _: AgentChange) -> Result<(), std::convert::Infallible> {
    Ok(())
}

// === impl Authenticator ===

/// What identifies one version of the agent file without reading it. The store replaces the
/// file by rename, so every change brings a new inode; length and times catch in-place edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// The version of the file the table was last brought up to date with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Not backed by a file: one agent and one token, for the life of the process.
    Fixed,
    Missing,
    File(Stamp),
    /// The file could not be examined; the table is what it was before.
    Unreadable,
}

#[derive(Debug)]
struct Entry {
    agent: AgentId,
    revoked: bool,
}

#[derive(Debug)]
struct Table {
    seen: Seen,
    by_digest: HashMap<[u8; 32], Entry>,
    active: usize,
}

impl Table {
    fn new(seen: Seen, file: AgentFile) -> Self {
        let mut by_digest = HashMap::with_capacity(file.agents.len());
        let mut active = 0;
        for r in file.agents {
            // INVARIANT: AgentFile::parse checked every digest, so none is skipped here.
            if let Some(digest) = parse_digest(&r.token_sha256) {
                active += usize::from(r.is_active());
                by_digest.insert(
                    digest,
                    Entry {
                        revoked: !r.is_active(),
                        agent: r.name,
                    },
                );
            }
        }
        Self {
            seen,
            by_digest,
            active,
        }
    }
}

/// The gateway's side of the agent file: which agent a bearer token belongs to. Shared by all
/// requests (`&self`, `Send + Sync`); follows changes to the file as they happen.
#[derive(Debug)]
pub struct Authenticator {
    path: PathBuf,
    table: RwLock<Table>,
}

impl Authenticator {
    /// An authenticator for one agent and one token, kept in memory only: the gateway a
    /// sandbox reaches, whose token lives as long as that one run (`warden run`).
    pub fn for_one(agent: AgentId, token: &str) -> Self {
        let file = AgentFile {
            version: FORMAT_VERSION,
            agents: vec![AgentRecord {
                name: agent,
                token_sha256: hex::encode(digest_of(token)),
                created_ms: 0,
                revoked_ms: None,
            }],
        };
        Self {
            path: PathBuf::new(),
            table: RwLock::new(Table::new(Seen::Fixed, file)),
        }
    }

    /// Loads the agent file at `path`. A missing file means no agent can authenticate yet (and
    /// is logged); a file that cannot be read or parsed is an error.
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, IdentityError> {
        let path = path.into();
        let table = match read_versioned(&path)? {
            Some((stamp, file)) => Table::new(Seen::File(stamp), file),
            None => {
                tracing::warn!(
                    path = %path.display(),
                    "no agent file: every request will be refused until agents are added"
                );
                Table::new(Seen::Missing, AgentFile::empty())
            }
        };
        Ok(Self {
            path,
            table: RwLock::new(table),
        })
    }

    /// The agent file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The agent `bearer_token` was issued to, if it is in force.
    ///
    /// Cheap per request: a `stat` of the agent file, and a reload only when it changed. A
    /// file that fails to load keeps the previous table (and is logged) until it changes again.
    pub fn authenticate(&self, bearer_token: &str) -> Result<AgentId, AuthError> {
        if bearer_token.is_empty() {
            return Err(AuthError::Missing);
        }
        self.refresh();
        // A lookup by digest is not a secret-dependent comparison an attacker can time: the
        // digest of a guess reveals nothing about the digests of real tokens.
        let digest = digest_of(bearer_token);
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        match table.by_digest.get(&digest) {
            None => Err(AuthError::Unknown),
            Some(e) if e.revoked => Err(AuthError::Revoked(e.agent.clone())),
            Some(e) => Ok(e.agent.clone()),
        }
    }

    /// Of the tokens whose SHA-256 are `digests`, those no longer in force (revoked, or
    /// replaced by a rotation), the agent file read again if it changed: sessions opened with
    /// them must end. Empty unless the agents were loaded from a file that is there now: a
    /// file briefly missing or unreadable (being replaced) withdraws nothing.
    pub fn withdrawn(&self, digests: &[[u8; 32]]) -> Vec<[u8; 32]> {
        self.refresh();
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        if !matches!(table.seen, Seen::File(_)) {
            return Vec::new();
        }
        digests
            .iter()
            .filter(|d| table.by_digest.get(*d).is_none_or(|e| e.revoked))
            .copied()
            .collect()
    }

    /// How many agents have a token in force, as of the last load.
    pub fn agent_count(&self) -> usize {
        self.table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .active
    }

    fn refresh(&self) {
        if self
            .table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .seen
            == Seen::Fixed
        {
            return;
        }
        let now = match fs::metadata(&self.path) {
            Ok(meta) => Seen::File(Stamp::of(&meta)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Seen::Missing,
            Err(e) => {
                let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
                if table.seen != Seen::Unreadable {
                    tracing::error!(
                        path = %self.path.display(), error = %e,
                        "cannot examine the agent file; keeping the agents loaded before"
                    );
                    table.seen = Seen::Unreadable;
                }
                return;
            }
        };
        let seen = self
            .table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .seen;
        if seen == now {
            return;
        }
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        if table.seen == now {
            // Another request reloaded it meanwhile.
            return;
        }
        match read_versioned(&self.path) {
            Ok(Some((stamp, file))) => {
                *table = Table::new(Seen::File(stamp), file);
                tracing::info!(
                    path = %self.path.display(), active = table.active,
                    "agent file reloaded"
                );
            }
            Ok(None) => {
                tracing::warn!(
                    path = %self.path.display(),
                    "the agent file was removed: every request will be refused"
                );
                *table = Table::new(Seen::Missing, AgentFile::empty());
            }
            Err(err) => {
                tracing::error!(%err, "keeping the agents loaded before");
                // Not retried until the file changes again, so a bad file costs one parse.
                table.seen = now;
            }
        }
    }
}

/// Reads the agent file and the stamp of exactly the version read.
fn read_versioned(path: &Path) -> Result<Option<(Stamp, AgentFile)>, IdentityError> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("open", path, e)),
    };
    let meta = f.metadata().map_err(|e| io_error("examine", path, e))?;
    // Whoever can write this file can mint identities: refuse one others may write.
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o022 != 0 {
            return Err(IdentityError::Garbled {
                path: path.to_path_buf(),
                detail: format!(
                    "its mode {:o} lets group or others write it; run: chmod 600 {}",
                    mode & 0o777,
                    path.display()
                ),
            });
        }
    }
    let mut text = String::new();
    f.read_to_string(&mut text)
        .map_err(|e| io_error("read", path, e))?;
    Ok(Some((Stamp::of(&meta), AgentFile::parse(path, &text)?)))
}

// === Tokens ===

/// A fresh agent bearer token: 256 random bits, prefixed so scanners can recognise it.
pub fn new_token() -> Result<String, IdentityError> {
    new_token_with(TOKEN_PREFIX)
}

/// A fresh bearer token with another prefix (operators' tokens are not agents').
pub fn new_token_with(prefix: &str) -> Result<String, IdentityError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| IdentityError::Randomness(e.to_string()))?;
    Ok(format!("{prefix}{}", base64url(&bytes)))
}

/// The digest the agent file keeps of a token. Plain SHA-256 with no salt or slow KDF is
/// enough: a token carries 256 random bits, so there is no dictionary to precompute and no
/// guess worth trying; salts and stretching only protect low-entropy secrets like passwords.
fn digest_of(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn parse_digest(hex_digest: &str) -> Option<[u8; 32]> {
    // Lowercase only, so one digest has one spelling and duplicates are caught.
    if hex_digest.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    hex::decode(hex_digest).ok()?.try_into().ok()
}

/// RFC 4648 §5 (URL- and filename-safe alphabet), without padding.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        // 1 byte → 2 characters, 2 → 3, 3 → 4.
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize]));
        }
    }
    out
}

// === Helpers ===

fn io_error(op: &'static str, path: &Path, error: io::Error) -> IdentityError {
    IdentityError::Io {
        op,
        path: path.to_owned(),
        error,
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A file next to `path`: its name plus `suffix`, hidden (a leading dot) if asked.
fn sibling(path: &Path, suffix: &str, hidden: bool) -> Result<PathBuf, IdentityError> {
    let Some(name) = path.file_name() else {
        return Err(IdentityError::Garbled {
            path: path.to_owned(),
            detail: "the agent file's path does not name a file".into(),
        });
    };
    let mut sibling = OsString::from(if hidden { "." } else { "" });
    sibling.push(name);
    sibling.push(suffix);
    Ok(path.with_file_name(sibling))
}

/// Makes a rename in `file`'s folder durable. Best effort: some filesystems refuse to fsync a
/// folder, and the data itself is already synced.
fn sync_dir(file: &Path) {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    use super::*;

    fn agent(name: &str) -> AgentId {
        AgentId::new(name).unwrap()
    }

    fn setup() -> (tempfile::TempDir, AgentStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = AgentStore::new(dir.path().join("agents.json"));
        (dir, store)
    }

    fn issue(store: &AgentStore, name: &str) -> String {
        store.add(&agent(name), false).unwrap().token().to_owned()
    }

    /// Replaces the file the way an editor that writes a new file would.
    fn replace(path: &Path, text: &str) {
        let tmp = path.with_extension("edit");
        fs::write(&tmp, text).unwrap();
        fs::rename(&tmp, path).unwrap();
    }

    #[test]
    fn a_one_agent_authenticator_knows_only_its_token() {
        let auth = Authenticator::for_one(agent("bot"), "wdn_run_token");
        assert_eq!(auth.authenticate("wdn_run_token").unwrap(), agent("bot"));
        assert!(matches!(
            auth.authenticate("wdn_other"),
            Err(AuthError::Unknown)
        ));
        assert!(matches!(auth.authenticate(""), Err(AuthError::Missing)));
        assert_eq!(auth.agent_count(), 1);
    }

    #[test]
    fn an_added_agent_authenticates_and_the_file_keeps_only_a_digest() {
        let (_dir, store) = setup();
        let issued = store.add(&agent("alice"), false).unwrap();
        assert_eq!(issued.change(), AgentChange::Added);
        let token = issued.token();
        assert!(token.starts_with(TOKEN_PREFIX));
        assert_eq!(token.len(), TOKEN_PREFIX.len() + 43);
        assert!(!format!("{issued:?}").contains(token));

        let auth = Authenticator::load(store.path()).unwrap();
        assert_eq!(auth.authenticate(token), Ok(agent("alice")));
        assert_eq!(auth.agent_count(), 1);
        assert_eq!(auth.authenticate("wdn_guess"), Err(AuthError::Unknown));
        assert_eq!(auth.authenticate(""), Err(AuthError::Missing));

        let text = fs::read_to_string(store.path()).unwrap();
        assert!(!text.contains(&token[TOKEN_PREFIX.len()..]), "{text}");
        assert!(text.contains(&hex::encode(digest_of(token))), "{text}");
    }

    #[test]
    fn a_file_others_may_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, store) = setup();
        issue(&store, "alice");
        fs::set_permissions(store.path(), fs::Permissions::from_mode(0o666)).unwrap();
        let Err(err) = Authenticator::load(store.path()) else {
            panic!("a file others may write was accepted");
        };
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn two_tokens_differ() {
        let (_dir, store) = setup();
        let a = store.add(&agent("a"), false).unwrap();
        let b = store.add(&agent("b"), false).unwrap();
        assert_ne!(a.token(), b.token());
    }

    #[test]
    fn revocation_reaches_a_running_authenticator() {
        let (_dir, store) = setup();
        let token = issue(&store, "alice");
        let auth = Authenticator::load(store.path()).unwrap();
        assert_eq!(auth.authenticate(&token), Ok(agent("alice")));
        assert!(auth.withdrawn(&[digest_of(&token)]).is_empty());

        store.revoke(&agent("alice")).unwrap();
        // Seen without a request carrying the token: how idle sessions are ended.
        assert_eq!(auth.withdrawn(&[digest_of(&token)]), [digest_of(&token)]);
        assert_eq!(
            auth.authenticate(&token),
            Err(AuthError::Revoked(agent("alice")))
        );
        assert_eq!(auth.agent_count(), 0);
        let records = store.list().unwrap();
        assert!(!records[0].is_active());
        assert!(matches!(
            store.revoke(&agent("alice")),
            Err(IdentityError::AlreadyRevoked(_))
        ));
        assert!(matches!(
            store.revoke(&agent("bob")),
            Err(IdentityError::UnknownAgent(_))
        ));

        // Re-adding a revoked agent issues a token that works; the revoked one is now unknown.
        let again = store.add(&agent("alice"), false).unwrap();
        assert_eq!(again.change(), AgentChange::Added);
        assert_eq!(auth.authenticate(again.token()), Ok(agent("alice")));
        assert_eq!(auth.authenticate(&token), Err(AuthError::Unknown));
    }

    #[test]
    fn rotation_replaces_the_token_and_must_be_asked_for() {
        let (_dir, store) = setup();
        let old = issue(&store, "alice");
        let auth = Authenticator::load(store.path()).unwrap();
        assert!(matches!(
            store.add(&agent("alice"), false),
            Err(IdentityError::AlreadyActive(_))
        ));
        assert_eq!(auth.authenticate(&old), Ok(agent("alice")));

        let new = store.add(&agent("alice"), true).unwrap();
        assert_eq!(new.change(), AgentChange::Rotated);
        assert_eq!(
            auth.withdrawn(&[digest_of(&old), digest_of(new.token())]),
            [digest_of(&old)]
        );
        assert_eq!(auth.authenticate(&old), Err(AuthError::Unknown));
        assert_eq!(auth.authenticate(new.token()), Ok(agent("alice")));
        assert_eq!(store.list().unwrap().len(), 1);
    }

    #[test]
    fn a_garbled_file_on_reload_keeps_the_previous_table() {
        let (_dir, store) = setup();
        let token = issue(&store, "alice");
        let auth = Authenticator::load(store.path()).unwrap();
        let good = fs::read_to_string(store.path()).unwrap();

        replace(store.path(), "{\"version\": 1, \"agents\": [");
        assert_eq!(auth.authenticate(&token), Ok(agent("alice")));
        assert!(matches!(store.list(), Err(IdentityError::Garbled { .. })));
        // The store refuses to build on it rather than start from empty.
        assert!(matches!(
            store.add(&agent("bob"), false),
            Err(IdentityError::Garbled { .. })
        ));

        // Once repaired, changes are picked up again.
        replace(store.path(), &good);
        store.revoke(&agent("alice")).unwrap();
        assert_eq!(
            auth.authenticate(&token),
            Err(AuthError::Revoked(agent("alice")))
        );
    }

    #[test]
    fn files_that_are_not_agent_files_are_refused() {
        let (_dir, store) = setup();
        let digest = "ab".repeat(32);
        let row = |name: &str, d: &str| {
            format!(r#"{{"name":"{name}","token_sha256":"{d}","created_ms":1}}"#)
        };
        for text in [
            String::new(),
            "[]".to_owned(),
            r#"{"version": 2, "agents": []}"#.to_owned(),
            r#"{"version": 1, "agents": [], "extra": 1}"#.to_owned(),
            format!(r#"{{"version":1,"agents":[{}]}}"#, row("../x", &digest)),
            format!(
                r#"{{"version":1,"agents":[{}]}}"#,
                row(UNAUTHENTICATED, &digest)
            ),
            format!(r#"{{"version":1,"agents":[{}]}}"#, row("a", "abc")),
            format!(
                r#"{{"version":1,"agents":[{}]}}"#,
                row("a", &digest.to_uppercase())
            ),
            format!(
                r#"{{"version":1,"agents":[{},{}]}}"#,
                row("a", &digest),
                row("a", &"cd".repeat(32))
            ),
            format!(
                r#"{{"version":1,"agents":[{},{}]}}"#,
                row("a", &digest),
                row("b", &digest)
            ),
        ] {
            fs::write(store.path(), &text).unwrap();
            let err = Authenticator::load(store.path()).unwrap_err();
            assert!(
                matches!(err, IdentityError::Garbled { .. }),
                "{text}: {err}"
            );
        }
        fs::write(
            store.path(),
            format!(r#"{{"version":1,"agents":[{}]}}"#, row("a", &digest)),
        )
        .unwrap();
        assert_eq!(Authenticator::load(store.path()).unwrap().agent_count(), 1);
    }

    #[test]
    fn a_missing_file_means_no_agents_until_one_is_added() {
        let (_dir, store) = setup();
        let auth = Authenticator::load(store.path()).unwrap();
        assert_eq!(auth.agent_count(), 0);
        assert!(store.list().unwrap().is_empty());
        let token = issue(&store, "alice");
        assert_eq!(auth.authenticate(&token), Ok(agent("alice")));

        fs::remove_file(store.path()).unwrap();
        assert_eq!(auth.authenticate(&token), Err(AuthError::Unknown));
        // A file being replaced ends no session: only a file that says so withdraws a token.
        assert!(auth.withdrawn(&[digest_of(&token)]).is_empty());
    }

    #[test]
    fn the_file_is_private() {
        let (_dir, store) = setup();
        store.add(&agent("alice"), false).unwrap();
        for path in [
            store.path().to_owned(),
            sibling(store.path(), ".lock", false).unwrap(),
        ] {
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", path.display());
        }
        store.revoke(&agent("alice")).unwrap();
        let mode = fs::metadata(store.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn the_reserved_name_is_refused() {
        let (_dir, store) = setup();
        assert!(matches!(
            store.add(&agent(UNAUTHENTICATED), false),
            Err(IdentityError::ReservedName)
        ));
        assert!(!store.path().exists());
    }

    #[test]
    fn a_change_that_cannot_be_recorded_is_not_made() {
        let (_dir, store) = setup();
        let token = issue(&store, "alice");
        let before = fs::read_to_string(store.path()).unwrap();
        let err = store
            .revoke_recorded(&agent("alice"), |_, _| Err("journal unavailable"))
            .unwrap_err();
        assert!(err.to_string().contains("journal unavailable"), "{err}");
        assert_eq!(fs::read_to_string(store.path()).unwrap(), before);
        let auth = Authenticator::load(store.path()).unwrap();
        assert_eq!(auth.authenticate(&token), Ok(agent("alice")));

        let mut seen = None;
        store
            .add_recorded(&agent("alice"), true, |a, c| {
                seen = Some((a.clone(), c));
                Ok::<(), std::convert::Infallible>(())
            })
            .unwrap();
        assert_eq!(seen, Some((agent("alice"), AgentChange::Rotated)));
    }

    #[test]
    fn concurrent_adds_lose_no_agent() {
        let (_dir, store) = setup();
        let store = Arc::new(store);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    (0..5)
                        .map(|i| {
                            let name = agent(&format!("agent-{t}-{i}"));
                            let token = store.add(&name, false).unwrap().token().to_owned();
                            (name, token)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let issued: Vec<_> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        assert_eq!(store.list().unwrap().len(), 40);
        let auth = Authenticator::load(store.path()).unwrap();
        assert_eq!(auth.agent_count(), 40);
        for (name, token) in issued {
            assert_eq!(auth.authenticate(&token), Ok(name));
        }
    }

    #[test]
    fn refusals_never_repeat_the_token() {
        let (_dir, store) = setup();
        let token = issue(&store, "alice");
        let auth = Authenticator::load(store.path()).unwrap();
        store.revoke(&agent("alice")).unwrap();
        for err in [
            auth.authenticate(&token).unwrap_err(),
            auth.authenticate("wdn_not-a-token").unwrap_err(),
            AuthError::Missing,
        ] {
            let text = err.to_string();
            assert!(
                !text.contains(&token) && !text.contains("not-a-token"),
                "{text}"
            );
        }
    }

    #[test]
    fn base64url_matches_rfc_4648() {
        // RFC 4648 §10 vectors, without padding.
        for (input, expected) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64url(input.as_bytes()), expected);
        }
        // The two characters where the URL alphabet differs from the standard one.
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn authenticator_is_shareable() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Authenticator>();
        shareable::<AgentStore>();
    }
}
