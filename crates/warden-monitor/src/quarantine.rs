//! The quarantine list: agents whose every further action is refused until a human releases
//! them. Kept in a file (mode 0600), written whole and renamed into place under a lock, so it
//! survives a restart and every Warden process on the machine sees the same list; each process
//! re-reads it when its size, time or inode changes (one `stat` per check).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};

use serde::{Deserialize, Serialize};
use warden_core::AgentId;

/// How far an agent is restricted, from the least to the most.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// At most one action per second (per Warden process); the rest are refused.
    Throttle,
    /// Every action needs a human's approval (`ask`), whatever the policies say.
    Ask,
    /// Every action is refused; sandboxes are killed; HTTP tokens revoked.
    #[default]
    Quarantine,
}

impl Level {
    /// The name used in configuration and the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Throttle => "throttle",
            Level::Ask => "ask",
            Level::Quarantine => "quarantine",
        }
    }

    /// What an agent under this level is, as operators read it: `quarantined`, `ask` (every
    /// action needs a human's approval) or `throttled`.
    pub fn state(self) -> &'static str {
        match self {
            Level::Throttle => "throttled",
            Level::Ask => "ask",
            Level::Quarantine => "quarantined",
        }
    }
}

/// One restricted agent: quarantined, or held to asking or to a slow rate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineEntry {
    /// The agent.
    pub agent: AgentId,
    /// How far it is restricted (lists written before levels existed hold quarantines).
    #[serde(default)]
    pub level: Level,
    /// Why, as journaled.
    pub reason: String,
    /// Who: `detector:<name>` or `operator`.
    pub by: String,
    /// Since when, in milliseconds since the Unix epoch.
    pub since_ms: i64,
    /// The journal records that led to it.
    pub evidence: Vec<u64>,
}

/// Why the list could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("quarantine list {path}: {what}")]
pub struct QuarantineError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub what: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListFile {
    version: u32,
    agents: Vec<QuarantineEntry>,
}

const VERSION: u32 = 1;

/// What identifies one version of the file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    size: u64,
    mtime_ns: i128,
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Self {
        Self {
            inode: meta.ino(),
            size: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// `None` when the file does not exist (nobody is quarantined).
    stamp: Option<Stamp>,
    entries: BTreeMap<AgentId, QuarantineEntry>,
    /// Quarantines in force in this process but not yet on disk: kept over every re-read
    /// until written, so a refresh never lifts them.
    unwritten: BTreeMap<AgentId, QuarantineEntry>,
}

/// The list, shared by every gateway of one process.
#[derive(Debug)]
pub struct Quarantine {
    /// `None`: in memory only (tests, benchmarks).
    path: Option<PathBuf>,
    state: RwLock<State>,
}

impl Quarantine {
    /// The list kept in `path`; a missing file is an empty list.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, QuarantineError> {
        let path = path.into();
        let state = read(&path)?;
        Ok(Self {
            path: Some(path),
            state: RwLock::new(state),
        })
    }

    /// A list that lives only in this process.
    pub fn in_memory() -> Self {
        Self {
            path: None,
            state: RwLock::new(State::default()),
        }
    }

    /// The file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The agent's entry, if it is quarantined. Follows changes other processes made.
    ///
    /// A file that cannot be read keeps the list as last read: it never lifts a quarantine.
    pub fn get(&self, agent: &AgentId) -> Option<QuarantineEntry> {
        self.refresh();
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .get(agent)
            .cloned()
    }

    /// Every quarantined agent.
    pub fn list(&self) -> Vec<QuarantineEntry> {
        self.refresh();
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .values()
            .cloned()
            .collect()
    }

    /// Restricts `entry.agent` to `entry.level`; `Ok(false)` if it already was at that level or
    /// a stronger one (that entry is kept). A stronger level replaces a weaker one.
    ///
    /// The quarantine is in force in this process as soon as this is called — the next
    /// [`get`](Self::get) sees it — and on disk, for other processes and restarts, when it
    /// returns. If the write fails, it stays in force here and the error says so.
    pub fn add(&self, entry: QuarantineEntry) -> Result<bool, QuarantineError> {
        {
            let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
            if state
                .entries
                .get(&entry.agent)
                .is_some_and(|e| e.level >= entry.level)
            {
                return Ok(false);
            }
            state.entries.insert(entry.agent.clone(), entry.clone());
            state.unwritten.insert(entry.agent.clone(), entry.clone());
        }
        let agent = entry.agent.clone();
        let result = self.change(|entries| {
            if entries
                .get(&entry.agent)
                .is_some_and(|e| e.level >= entry.level)
            {
                return false;
            }
            entries.insert(entry.agent.clone(), entry);
            true
        });
        if result.is_ok() {
            self.state
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .unwritten
                .remove(&agent);
        }
        // `false` when another process had written it first.
        result
    }

    /// Releases `agent`; its entry, or `None` if it was not quarantined.
    pub fn remove(&self, agent: &AgentId) -> Result<Option<QuarantineEntry>, QuarantineError> {
        let mut removed = None;
        self.change(|entries| {
            removed = entries.remove(agent);
            removed.is_some()
        })?;
        Ok(removed)
    }

    /// Applies `edit` to the list as it is on disk now, and writes it back if `edit` says it
    /// changed something. Other processes are kept out by a lock beside the file.
    fn change(
        &self,
        edit: impl FnOnce(&mut BTreeMap<AgentId, QuarantineEntry>) -> bool,
    ) -> Result<bool, QuarantineError> {
        let Some(path) = &self.path else {
            let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
            return Ok(edit(&mut state.entries));
        };
        let lock = lock_file(path)?;
        let mut on_disk = read(path)?;
        let changed = edit(&mut on_disk.entries);
        if changed {
            write(path, &on_disk.entries)?;
            on_disk = read(path)?;
        }
        drop(lock);
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        on_disk.unwritten = std::mem::take(&mut state.unwritten);
        on_disk.merge_unwritten();
        *state = on_disk;
        Ok(changed)
    }

    fn refresh(&self) {
        let Some(path) = &self.path else { return };
        let now = match fs::metadata(path) {
            Ok(meta) => Some(Stamp::of(&meta)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot examine the quarantine list; keeping it as last read");
                return;
            }
        };
        if self
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .stamp
            == now
        {
            return;
        }
        match read(path) {
            Ok(mut fresh) => {
                let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
                fresh.unwritten = std::mem::take(&mut state.unwritten);
                fresh.merge_unwritten();
                *state = fresh;
            }
            Err(e) => tracing::error!(%e, "keeping the quarantine list as last read"),
        }
    }
}

impl State {
    fn merge_unwritten(&mut self) {
        for (agent, entry) in &self.unwritten {
            let kept = self
                .entries
                .entry(agent.clone())
                .or_insert_with(|| entry.clone());
            if kept.level < entry.level {
                *kept = entry.clone();
            }
        }
    }
}

fn err(path: &Path, what: impl std::fmt::Display) -> QuarantineError {
    QuarantineError {
        path: path.to_owned(),
        what: what.to_string(),
    }
}

fn read(path: &Path) -> Result<State, QuarantineError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(State::default()),
        Err(e) => return Err(err(path, format!("cannot open it: {e}"))),
    };
    let meta = file
        .metadata()
        .map_err(|e| err(path, format!("cannot examine it: {e}")))?;
    let mut text = String::new();
    io::Read::read_to_string(&mut file, &mut text)
        .map_err(|e| err(path, format!("cannot read it: {e}")))?;
    let list: ListFile =
        serde_json::from_str(&text).map_err(|e| err(path, format!("it is malformed: {e}")))?;
    if list.version != VERSION {
        return Err(err(path, format!("unknown version {}", list.version)));
    }
    Ok(State {
        stamp: Some(Stamp::of(&meta)),
        entries: list
            .agents
            .into_iter()
            .map(|e| (e.agent.clone(), e))
            .collect(),
        unwritten: BTreeMap::new(),
    })
}

fn write(path: &Path, entries: &BTreeMap<AgentId, QuarantineEntry>) -> Result<(), QuarantineError> {
    let list = ListFile {
        version: VERSION,
        agents: entries.values().cloned().collect(),
    };
    let text = serde_json::to_vec_pretty(&list).map_err(|e| err(path, e))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| err(&tmp, format!("cannot create it: {e}")))?;
    file.write_all(&text)
        .and_then(|()| file.sync_all())
        .map_err(|e| err(&tmp, format!("cannot write it: {e}")))?;
    fs::rename(&tmp, path).map_err(|e| err(path, format!("cannot replace it: {e}")))
}

/// An exclusive lock on `<path>.lock`, held until dropped.
fn lock_file(path: &Path) -> Result<File, QuarantineError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| err(&lock_path, format!("cannot open the lock: {e}")))?;
    file.lock()
        .map_err(|e| err(&lock_path, format!("cannot take the lock: {e}")))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(agent: &str) -> QuarantineEntry {
        QuarantineEntry {
            agent: AgentId::new(agent).unwrap(),
            level: Level::Quarantine,
            reason: "5 refusals in 60 s".into(),
            by: "detector:denial_burst".into(),
            since_ms: 1,
            evidence: vec![3, 4],
        }
    }

    #[test]
    fn a_quarantine_survives_a_restart_and_is_seen_by_other_processes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quarantine.json");
        let one = Quarantine::open(&path).unwrap();
        let other = Quarantine::open(&path).unwrap();
        let mallory = AgentId::new("mallory").unwrap();
        assert!(one.get(&mallory).is_none());
        assert!(one.add(entry("mallory")).unwrap());
        assert!(
            !one.add(entry("mallory")).unwrap(),
            "the first entry is kept"
        );
        assert!(!other.add(entry("mallory")).unwrap(), "already on disk");
        assert!(other.get(&AgentId::new("mallory").unwrap()).is_some());
        // Another process (here: another handle) sees it at its next check.
        assert_eq!(other.get(&mallory).unwrap().reason, "5 refusals in 60 s");
        // A restart reads it back.
        let restarted = Quarantine::open(&path).unwrap();
        assert_eq!(restarted.list().len(), 1);
        assert!(other.remove(&mallory).unwrap().is_some());
        assert!(one.get(&mallory).is_none());
        assert!(restarted.remove(&mallory).unwrap().is_none());
        let mode = fs::metadata(&path).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
    }

    #[test]
    fn a_stronger_level_replaces_a_weaker_one_never_the_reverse() {
        let dir = tempfile::tempdir().unwrap();
        let q = Quarantine::open(dir.path().join("quarantine.json")).unwrap();
        let agent = AgentId::new("mallory").unwrap();
        let at = |level| QuarantineEntry {
            level,
            ..entry("mallory")
        };
        assert!(q.add(at(Level::Throttle)).unwrap());
        assert!(q.add(at(Level::Ask)).unwrap());
        assert!(!q.add(at(Level::Throttle)).unwrap());
        assert_eq!(q.get(&agent).unwrap().level, Level::Ask);
        assert!(q.add(at(Level::Quarantine)).unwrap());
        assert!(!q.add(at(Level::Ask)).unwrap());
        let reread = Quarantine::open(dir.path().join("quarantine.json")).unwrap();
        assert_eq!(reread.get(&agent).unwrap().level, Level::Quarantine);
        // A list written before levels existed holds quarantines.
        std::fs::write(
            dir.path().join("old.json"),
            r#"{"version":1,"agents":[{"agent":"a","reason":"r","by":"operator","since_ms":1,"evidence":[]}]}"#,
        )
        .unwrap();
        let old = Quarantine::open(dir.path().join("old.json")).unwrap();
        assert_eq!(old.list()[0].level, Level::Quarantine);
    }

    #[test]
    fn an_unreadable_list_never_lifts_a_quarantine() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quarantine.json");
        let q = Quarantine::open(&path).unwrap();
        q.add(entry("mallory")).unwrap();
        fs::write(&path, "not json").unwrap();
        assert!(q.get(&AgentId::new("mallory").unwrap()).is_some());
        assert!(
            Quarantine::open(&path).is_err(),
            "a malformed list is an error at start"
        );
    }

    #[test]
    fn two_writers_do_not_lose_each_others_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quarantine.json");
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    Quarantine::open(&path)
                        .unwrap()
                        .add(entry(&format!("agent{i}")))
                        .unwrap()
                })
            })
            .collect();
        for h in handles {
            assert!(h.join().unwrap());
        }
        assert_eq!(Quarantine::open(&path).unwrap().list().len(), 8);
    }
}
