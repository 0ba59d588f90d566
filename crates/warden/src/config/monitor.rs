//! `[monitor]`: which detectors watch agents, what the playbook does about their alerts, and
//! where the quarantine list lives.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use warden_monitor::detectors::{self, NAMES};
use warden_monitor::{Monitor, Playbook, Quarantine, Rule};

/// Detectors that run when `[monitor] detectors` names none: those that need no baseline.
pub const DEFAULT_DETECTORS: &[&str] = &[
    "data_loss",
    "self_tamper",
    "denial_burst",
    "runaway",
    "sensitive_flow",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorSection {
    /// The quarantine list, shared by every Warden process using this configuration.
    #[serde(default = "default_quarantine_file")]
    pub quarantine_file: PathBuf,
    /// `[monitor.detectors.NAME]` tables; when none is given, [`DEFAULT_DETECTORS`] with their
    /// defaults. `enabled = false` in a table turns one off.
    #[serde(default)]
    pub detectors: BTreeMap<String, toml::Value>,
    /// `[[monitor.playbook]]` rules; when none is given: log every alert, quarantine on a
    /// critical one.
    #[serde(default)]
    pub playbook: Vec<Rule>,
    /// Where `webhook` responses POST alerts (JSON), e.g. "https://alerts.example/warden".
    #[serde(default)]
    pub webhook: Option<String>,
}

impl Default for MonitorSection {
    fn default() -> Self {
        Self {
            quarantine_file: default_quarantine_file(),
            detectors: BTreeMap::new(),
            playbook: Vec::new(),
            webhook: None,
        }
    }
}

fn default_quarantine_file() -> PathBuf {
    "quarantine.json".into()
}

/// What Warden adds to detectors' configuration from its own (its files and ports for
/// `self_tamper`, the run's canaries for `data_loss`).
#[derive(Debug, Default)]
pub struct Facts {
    pub protected_paths: Vec<PathBuf>,
    pub protected_ports: Vec<u16>,
    pub canaries: Vec<String>,
}

impl MonitorSection {
    pub fn check(&self) -> Result<()> {
        for name in self.detectors.keys() {
            if !NAMES.contains(&name.as_str()) {
                bail!(
                    "monitor.detectors.{name}: no such detector (known: {})",
                    NAMES.join(", ")
                );
            }
        }
        let playbook = Playbook::new(self.playbook.clone());
        match &self.webhook {
            None if playbook.uses(warden_monitor::Response::Webhook) => {
                bail!("monitor.playbook answers with \"webhook\" but monitor.webhook is not set")
            }
            Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                bail!("monitor.webhook must be an http:// or https:// URL, not {url:?}")
            }
            _ => {}
        }
        for name in playbook.detectors() {
            if !NAMES.contains(&name) {
                bail!(
                    "monitor.playbook names detector {name:?}, which does not exist (known: {})",
                    NAMES.join(", ")
                );
            }
        }
        Ok(())
    }

    /// The monitor: the configured detectors, the playbook and the quarantine list at
    /// `quarantine_file` (resolved by the caller).
    /// Each configured detector's table as written (the defaults' are empty), for operators
    /// to read; Warden's own facts added at build time are not in it.
    pub fn detector_settings(&self) -> BTreeMap<String, serde_json::Value> {
        if self.detectors.is_empty() {
            return DEFAULT_DETECTORS
                .iter()
                .map(|n| ((*n).to_owned(), serde_json::json!({})))
                .collect();
        }
        self.detectors
            .iter()
            .filter_map(|(n, v)| Some((n.clone(), serde_json::to_value(v).ok()?)))
            .collect()
    }

    pub fn build(&self, quarantine_file: PathBuf, facts: &Facts) -> Result<Arc<Monitor>> {
        let quarantine = Quarantine::open(&quarantine_file).with_context(|| {
            format!("reading the quarantine list {}", quarantine_file.display())
        })?;
        let mut tables: Vec<(String, serde_json::Value)> = if self.detectors.is_empty() {
            DEFAULT_DETECTORS
                .iter()
                .map(|n| ((*n).to_owned(), serde_json::json!({})))
                .collect()
        } else {
            self.detectors
                .iter()
                .map(|(n, v)| {
                    serde_json::to_value(v)
                        .map(|j| (n.clone(), j))
                        .with_context(|| format!("monitor.detectors.{n}"))
                })
                .collect::<Result<_>>()?
        };
        let mut built = Vec::new();
        for (name, table) in &mut tables {
            if let serde_json::Value::Object(map) = table {
                if map.remove("enabled") == Some(serde_json::Value::Bool(false)) {
                    continue;
                }
                add_facts(name, map, facts);
            }
            built.push(detectors::build(name, table.clone())?);
        }
        let playbook = if self.playbook.is_empty() {
            Playbook::default_rules()
        } else {
            Playbook::new(self.playbook.clone())
        };
        Ok(Arc::new(
            Monitor::new(built, playbook, Arc::new(quarantine)).with_webhook(self.webhook.clone()),
        ))
    }
}

/// Warden's own facts, merged under what the operator wrote.
fn add_facts(name: &str, table: &mut serde_json::Map<String, serde_json::Value>, facts: &Facts) {
    let mut extend = |key: &str, values: Vec<serde_json::Value>| {
        let list = table
            .entry(key.to_owned())
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        if let serde_json::Value::Array(list) = list {
            list.extend(values);
        }
    };
    match name {
        "self_tamper" => {
            extend(
                "paths",
                facts
                    .protected_paths
                    .iter()
                    .map(|p| serde_json::Value::String(p.display().to_string()))
                    .collect(),
            );
            extend(
                "ports",
                facts.protected_ports.iter().map(|p| (*p).into()).collect(),
            );
        }
        "data_loss" => extend(
            "canaries",
            facts
                .canaries
                .iter()
                .cloned()
                .map(serde_json::Value::String)
                .collect(),
        ),
        _ => {}
    }
}
