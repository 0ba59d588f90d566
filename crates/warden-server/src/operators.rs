//! Operators: the people (and their scripts) who use the control plane, each with a role and a
//! bearer token. Tokens start with `wdo_` — never confused with agents' `wdn_` — and only their
//! SHA-256 digests are kept, in a file readable by Warden's user only.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The prefix of operator tokens.
pub const OPERATOR_PREFIX: &str = "wdo_";

/// What an operator may do; each role may do what the ones below it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads: agents, the journal, alerts, the quarantine list.
    Viewer,
    /// Also answers approval requests.
    Approver,
    /// Also quarantines and releases agents.
    Admin,
}

impl Role {
    /// The name used on the command line and in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }

    /// Parses a role name.
    pub fn parse(name: &str) -> Option<Role> {
        [Role::Viewer, Role::Approver, Role::Admin]
            .into_iter()
            .find(|r| r.as_str() == name)
    }
}

/// One operator as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorRecord {
    /// The operator's name, as the journal records their actions.
    pub name: String,
    /// What they may do.
    pub role: Role,
    /// SHA-256 (lowercase hex) of their token.
    pub token_sha256: String,
    /// When the token was made (absent in files written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_ms: Option<i64>,
    /// When the token was revoked; `None` while it is in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_ms: Option<i64>,
    /// When the token stops working; `None`: it does not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OperatorFile {
    version: u32,
    operators: Vec<OperatorRecord>,
}

/// Why the operators file could not be used, or a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// The file could not be read or written.
    #[error("operators file {path}: {what}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        what: String,
    },
    /// The name is not usable.
    #[error("operator names are 1 to 64 letters, digits, '.', '_' or '-': {0:?}")]
    BadName(String),
    /// The operator already has a token in force.
    #[error("operator {0} already has an active token (revoke it first)")]
    AlreadyActive(String),
    /// No randomness for a token.
    #[error("cannot make a token: {0}")]
    Randomness(String),
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No token was presented.
    #[error("an operator token is required")]
    Missing,
    /// An agent's token: agents never reach the control plane.
    #[error("agent tokens are refused on the control plane")]
    AgentToken,
    /// A token no operator holds.
    #[error("this token is not an operator's")]
    Unknown,
    /// A token that was revoked (or replaced by a newer one).
    #[error("this operator token was revoked")]
    Revoked,
    /// A token past its expiry.
    #[error(
        "this operator token expired; an admin can issue a new one (warden user add NAME --rotate)"
    )]
    Expired,
    /// The operators file is unusable; every token is refused until it is fixed.
    #[error(transparent)]
    Store(#[from] OperatorError),
}

/// An operator whose token is in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// Their name, as the journal records their actions.
    pub name: String,
    /// What they may do.
    pub role: Role,
}

/// What identifies one version of the file on disk. Every write renames a new file into
/// place and a chmod changes ctime, so any change moves at least one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    ino: u64,
    len: u64,
    mtime_ns: (i64, i64),
    ctime_ns: (i64, i64),
}

impl FileStamp {
    fn of(meta: &fs::Metadata) -> Self {
        Self {
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: (meta.mtime(), meta.mtime_nsec()),
            ctime_ns: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// The file as last read, with the stamp it had then.
type Cached = Option<(FileStamp, Arc<OperatorFile>)>;

/// The operators file, and the last version of it read for authentication.
#[derive(Debug, Clone)]
pub struct OperatorStore {
    path: PathBuf,
    // Shared by clones so one server keeps one copy; replaced whenever the stamp moves.
    cached: Arc<Mutex<Cached>>,
}

fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl OperatorStore {
    /// The store kept at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            cached: Arc::default(),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, what: impl std::fmt::Display) -> OperatorError {
        OperatorError::File {
            path: self.path.clone(),
            what: what.to_string(),
        }
    }

    fn read(&self) -> Result<OperatorFile, OperatorError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(OperatorFile {
                    version: 1,
                    operators: Vec::new(),
                });
            }
            Err(e) => return Err(self.err(format!("cannot read it: {e}"))),
        };
        let mode = fs::metadata(&self.path)
            .map_err(|e| self.err(format!("cannot examine it: {e}")))?
            .permissions()
            .mode();
        if mode & 0o022 != 0 {
            return Err(self.err(format!(
                "it is writable by group or others (mode {:o}); refusing it",
                mode & 0o777
            )));
        }
        let file: OperatorFile =
            serde_json::from_str(&text).map_err(|e| self.err(format!("it is malformed: {e}")))?;
        if file.version != 1 {
            return Err(self.err(format!("unknown version {}", file.version)));
        }
        Ok(file)
    }

    fn write(&self, file: &OperatorFile) -> Result<(), OperatorError> {
        let mut tmp = self.path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let text = serde_json::to_vec_pretty(file).map_err(|e| self.err(e))?;
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| self.err(format!("cannot write it: {e}")))?;
        f.write_all(&text)
            .and_then(|()| f.sync_all())
            .map_err(|e| self.err(format!("cannot write it: {e}")))?;
        fs::rename(&tmp, &self.path).map_err(|e| self.err(format!("cannot replace it: {e}")))
    }

    /// Adds `name` with `role` (or, with `rotate`, gives them a new token); returns the token,
    /// shown once and never stored.
    pub fn add(&self, name: &str, role: Role, rotate: bool) -> Result<String, OperatorError> {
        self.add_until(name, role, rotate, None)
    }

    /// [`OperatorStore::add`] with a token that stops working at `expires_ms` (`None`: never).
    pub fn add_until(
        &self,
        name: &str,
        role: Role,
        rotate: bool,
        expires_ms: Option<i64>,
    ) -> Result<String, OperatorError> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !valid {
            return Err(OperatorError::BadName(name.to_owned()));
        }
        let mut file = self.read()?;
        let token = warden_gateway::identity::new_token_with(OPERATOR_PREFIX)
            .map_err(|e| OperatorError::Randomness(e.to_string()))?;
        let record = OperatorRecord {
            name: name.to_owned(),
            role,
            token_sha256: digest(&token),
            created_ms: Some(warden_gateway::guard::now_ms()),
            revoked_ms: None,
            expires_ms,
        };
        match file.operators.iter_mut().find(|o| o.name == name) {
            Some(existing) if existing.revoked_ms.is_none() && !rotate => {
                return Err(OperatorError::AlreadyActive(name.to_owned()));
            }
            Some(existing) => *existing = record,
            None => file.operators.push(record),
        }
        self.write(&file)?;
        Ok(token)
    }

    /// Revokes `name`'s token; `Ok(false)` if there was none in force.
    pub fn revoke(&self, name: &str, now_ms: i64) -> Result<bool, OperatorError> {
        let mut file = self.read()?;
        let Some(record) = file
            .operators
            .iter_mut()
            .find(|o| o.name == name && o.revoked_ms.is_none())
        else {
            return Ok(false);
        };
        record.revoked_ms = Some(now_ms);
        self.write(&file)?;
        Ok(true)
    }

    /// Every operator.
    pub fn list(&self) -> Result<Vec<OperatorRecord>, OperatorError> {
        Ok(self.read()?.operators)
    }

    /// The operator holding `token`. The file is examined (stat) on every call and read
    /// again whenever it changed, so a revocation takes effect on the next request.
    pub fn authenticate(&self, token: &str) -> Result<Operator, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.starts_with(warden_gateway::identity::TOKEN_PREFIX) {
            return Err(AuthError::AgentToken);
        }
        if !token.starts_with(OPERATOR_PREFIX) {
            return Err(AuthError::Unknown);
        }
        let wanted = digest(token);
        let file = self.current()?;
        let record = file
            .operators
            .iter()
            .find(|o| o.token_sha256 == wanted)
            .ok_or(AuthError::Unknown)?;
        if record.revoked_ms.is_some() {
            return Err(AuthError::Revoked);
        }
        if record
            .expires_ms
            .is_some_and(|at| at <= warden_gateway::guard::now_ms())
        {
            return Err(AuthError::Expired);
        }
        Ok(Operator {
            name: record.name.clone(),
            role: record.role,
        })
    }

    /// The file as it is now, from the cache when its stamp has not moved.
    fn current(&self) -> Result<Arc<OperatorFile>, OperatorError> {
        let stamp = match fs::metadata(&self.path) {
            Ok(meta) => Some(FileStamp::of(&meta)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(self.err(format!("cannot examine it: {e}"))),
        };
        // A poisoned lock only means another request panicked mid-update; the cache is
        // then simply rebuilt.
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let (Some(stamp), Some((seen, file))) = (stamp, cached.as_ref())
            && *seen == stamp
        {
            return Ok(file.clone());
        }
        let file = Arc::new(self.read()?);
        *cached = stamp.map(|s| (s, file.clone()));
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_identify_their_operator_until_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let store = OperatorStore::new(dir.path().join("operators.json"));
        let token = store.add("ana", Role::Admin, false).unwrap();
        assert!(token.starts_with("wdo_"));
        assert_eq!(
            store.authenticate(&token).unwrap(),
            Operator {
                name: "ana".into(),
                role: Role::Admin
            }
        );
        assert!(matches!(
            store.add("ana", Role::Viewer, false),
            Err(OperatorError::AlreadyActive(_))
        ));
        assert!(matches!(
            store.authenticate("wdn_agent"),
            Err(AuthError::AgentToken)
        ));
        assert!(matches!(
            store.authenticate("wdo_guess"),
            Err(AuthError::Unknown)
        ));
        assert!(matches!(store.authenticate(""), Err(AuthError::Missing)));
        // Revoked through another handle on the same file: this one must notice.
        assert!(OperatorStore::new(store.path()).revoke("ana", 1).unwrap());
        assert!(matches!(
            store.authenticate(&token),
            Err(AuthError::Revoked)
        ));
        let text = fs::read_to_string(store.path()).unwrap();
        assert!(!text.contains(&token), "only the digest is kept");
        assert!(matches!(
            store.add("a b", Role::Viewer, false),
            Err(OperatorError::BadName(_))
        ));
    }

    #[test]
    fn rotating_a_token_retires_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = OperatorStore::new(dir.path().join("operators.json"));
        let old = store.add("ana", Role::Viewer, false).unwrap();
        let new = store.add("ana", Role::Approver, true).unwrap();
        assert_ne!(old, new);
        assert!(store.authenticate(&old).is_err());
        assert_eq!(store.authenticate(&new).unwrap().role, Role::Approver);
        let listed = store.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert!(listed[0].created_ms.is_some());
        let mode = fs::metadata(store.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_file_others_can_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = OperatorStore::new(dir.path().join("operators.json"));
        store.add("ana", Role::Viewer, false).unwrap();
        assert!(matches!(
            store.authenticate("wdo_x"),
            Err(AuthError::Unknown)
        ));
        fs::set_permissions(store.path(), fs::Permissions::from_mode(0o666)).unwrap();
        assert!(matches!(
            store.authenticate("wdo_x"),
            Err(AuthError::Store(_))
        ));
    }
}
