//! The record of each running sandbox, so `warden kill` can find its cgroups from another
//! process. One JSON file per run, readable by Warden's user only.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use warden_contain::Cgroups;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    pub agent: String,
    pub session: String,
    /// The sandbox's first process, on the host.
    pub pid: u32,
    pub cgroups: Option<Cgroups>,
    /// The journal the run writes to.
    pub journal: PathBuf,
}

/// Writes `run` and returns its file.
pub fn write(dir: &Path, run: &Run) -> Result<PathBuf> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{}.{}.json", run.agent, run.session));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(&serde_json::to_vec_pretty(run)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The recorded runs of `agent`, with their files.
pub fn of_agent(dir: &Path, agent: &str) -> Result<Vec<(PathBuf, Run)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let prefix = format!("{agent}.");
    let mut runs = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(&prefix) || !name.ends_with(".json") {
            continue;
        }
        let path = entry.path();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let run: Run = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a run record", path.display()))?;
        if run.agent == agent {
            runs.push((path, run));
        }
    }
    Ok(runs)
}
