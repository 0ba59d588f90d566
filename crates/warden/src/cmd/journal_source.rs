//! Where the read-only commands (`agents`, `alerts`, `events`, `audit`) find the journal.

use std::path::PathBuf;

use anyhow::{Context, Result};
use warden_journal::JournalReader;

use crate::config::Config;

/// `--journal`, or the one the configuration names.
#[derive(clap::Args)]
pub struct JournalSource {
    /// The journal file (default: the one named in the configuration).
    #[arg(long)]
    journal: Option<PathBuf>,
    /// The configuration file (default: ./warden.toml if present).
    #[arg(long)]
    config: Option<PathBuf>,
}

impl JournalSource {
    /// The configuration (`--config`, or ./warden.toml, or the defaults).
    pub(crate) fn config(&self) -> Result<Config> {
        Config::load(self.config.as_deref())
    }

    /// The journal's path, `config` already loaded.
    pub(crate) fn journal_path(&self, config: &Config) -> PathBuf {
        self.journal
            .clone()
            .unwrap_or_else(|| config.journal_path())
    }

    /// The journal's path; the configuration is read only when `--journal` is not given.
    pub(crate) fn path(&self) -> Result<PathBuf> {
        match &self.journal {
            Some(path) => Ok(path.clone()),
            None => Ok(self.config()?.journal_path()),
        }
    }

    /// The journal, opened read-only, and its path.
    pub(crate) fn reader(&self, config: &Config) -> Result<(JournalReader, PathBuf)> {
        let path = self.journal_path(config);
        let reader = JournalReader::open(&path)
            .with_context(|| format!("reading the journal {}", path.display()))?;
        Ok((reader, path))
    }
}
