//! `warden.toml`: where the journal and policies live, the limits of a session, and the
//! upstream servers. Unknown keys are errors, so a typo never silently weakens a setting.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use warden_core::ServerName;
use warden_gateway::SessionOptions;
use warden_journal::{JournalOptions, SyncMode};

/// The file looked for in the current directory when `--config` is not given.
pub const DEFAULT_FILE: &str = "warden.toml";

/// The whole configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub journal: JournalSection,
    #[serde(default)]
    pub policy: PolicySection,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub servers: BTreeMap<ServerName, ServerSection>,
    /// The folder relative paths are resolved against (the config file's).
    #[serde(skip)]
    pub base: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalSection {
    #[serde(default = "default_journal_path")]
    pub path: PathBuf,
    #[serde(default)]
    pub sync: SyncSetting,
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// How long an append waits for another Warden process holding the journal's write lock.
    #[serde(default = "default_busy_timeout_ms")]
    pub busy_timeout_ms: u64,
}

impl Default for JournalSection {
    fn default() -> Self {
        Self {
            path: default_journal_path(),
            sync: SyncSetting::default(),
            checkpoint_every: default_checkpoint_every(),
            busy_timeout_ms: default_busy_timeout_ms(),
        }
    }
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncSetting {
    /// Durable against power loss: every group commit is fsynced.
    #[default]
    Full,
    /// Durable against a crash of Warden, not of the machine.
    Normal,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    #[serde(default = "default_policy_dir")]
    pub dir: PathBuf,
}

impl Default for PolicySection {
    fn default() -> Self {
        Self {
            dir: default_policy_dir(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    #[serde(default = "default_initialize_timeout")]
    pub initialize_timeout_secs: f64,
    #[serde(default = "default_call_timeout")]
    pub call_timeout_secs: f64,
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            max_message_bytes: default_max_message_bytes(),
            max_in_flight: default_max_in_flight(),
            initialize_timeout_secs: default_initialize_timeout(),
            call_timeout_secs: default_call_timeout(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// The program and its arguments.
    pub command: Vec<String>,
    /// Its working directory, relative to the config file.
    pub cwd: Option<PathBuf>,
}

fn default_journal_path() -> PathBuf {
    "warden-journal.db".into()
}
fn default_checkpoint_every() -> u64 {
    10_000
}
fn default_busy_timeout_ms() -> u64 {
    5_000
}
fn default_policy_dir() -> PathBuf {
    "policies".into()
}
fn default_max_message_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_max_in_flight() -> usize {
    256
}
fn default_initialize_timeout() -> f64 {
    30.0
}
fn default_call_timeout() -> f64 {
    300.0
}

impl Config {
    /// Loads `path`, or `./warden.toml` when it exists, or the defaults relative to the current
    /// directory.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let path = match path {
            Some(p) => Some(p.to_path_buf()),
            None => {
                let default = PathBuf::from(DEFAULT_FILE);
                default.exists().then_some(default)
            }
        };
        let Some(path) = path else {
            return Ok(Config {
                base: std::env::current_dir().context("reading the current directory")?,
                ..Config::default()
            });
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the configuration {}", path.display()))?;
        let mut config = Self::parse(&text).with_context(|| format!("in {}", path.display()))?;
        config.base = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(config)
    }

    /// Parses and checks a configuration text.
    pub fn parse(text: &str) -> Result<Config> {
        let config: Config = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<()> {
        let l = &self.limits;
        if !(1024..=256 * 1024 * 1024).contains(&l.max_message_bytes) {
            bail!("limits.max_message_bytes must be between 1024 and 268435456");
        }
        if !(1..=65_536).contains(&l.max_in_flight) {
            bail!("limits.max_in_flight must be between 1 and 65536");
        }
        for (name, secs) in [
            ("initialize_timeout_secs", l.initialize_timeout_secs),
            ("call_timeout_secs", l.call_timeout_secs),
        ] {
            if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
                bail!("limits.{name} must be a number of seconds above 0 and at most 86400");
            }
        }
        if self.journal.checkpoint_every == 0 {
            bail!("journal.checkpoint_every must be at least 1");
        }
        for (name, server) in &self.servers {
            if server.command.is_empty() {
                bail!("servers.{name}.command must name a program");
            }
        }
        Ok(())
    }

    /// A path from the configuration, resolved against the config file's folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base.join(path)
        }
    }

    pub fn journal_path(&self) -> PathBuf {
        self.resolve(&self.journal.path)
    }

    pub fn policy_dir(&self) -> PathBuf {
        self.resolve(&self.policy.dir)
    }

    pub fn journal_options(&self) -> JournalOptions {
        JournalOptions {
            sync: match self.journal.sync {
                SyncSetting::Full => SyncMode::Full,
                SyncSetting::Normal => SyncMode::Normal,
            },
            checkpoint_every: self.journal.checkpoint_every,
            busy_timeout: Duration::from_millis(self.journal.busy_timeout_ms),
            ..JournalOptions::default()
        }
    }

    pub fn session_options(&self) -> SessionOptions {
        SessionOptions {
            max_message_bytes: self.limits.max_message_bytes,
            max_in_flight: self.limits.max_in_flight,
            initialize_timeout: Duration::from_secs_f64(self.limits.initialize_timeout_secs),
            call_timeout: Duration::from_secs_f64(self.limits.call_timeout_secs),
            ..SessionOptions::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_the_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.limits.max_message_bytes, 4 * 1024 * 1024);
        assert_eq!(c.policy.dir, PathBuf::from("policies"));
    }

    #[test]
    fn unknown_key_is_an_error_with_its_line() {
        let err = Config::parse("[journal]\npath = \"j.db\"\nsynk = \"full\"\n").unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("synk"), "{text}");
        assert!(text.contains("line 3"), "{text}");
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(Config::parse("[limits]\nmax_message_bytes = 10\n").is_err());
        assert!(Config::parse("[limits]\ncall_timeout_secs = -1\n").is_err());
        assert!(Config::parse("[journal]\nsync = \"sometimes\"\n").is_err());
        assert!(Config::parse("[servers.\"../x\"]\ncommand = [\"a\"]\n").is_err());
        assert!(Config::parse("[servers.files]\ncommand = []\n").is_err());
    }
}
