//! `[monitor]`: which detectors watch agents, what the playbook does about their alerts, and
//! where the quarantine list lives.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use warden_monitor::detectors::{self, NAMES};
use warden_monitor::{Monitor, Playbook, Quarantine, Rule};

/// Detectors that always run unless a `[monitor.detectors.NAME]` table turns one off with
/// `enabled = false`: those that need no baseline. Configuring another detector (a pasted
/// `first_seen` baseline, say) adds it; it never silently drops these.
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
    /// `[monitor.detectors.NAME]` tables: settings of [`DEFAULT_DETECTORS`], which run
    /// anyway, or other detectors to run too. `enabled = false` in a table turns one off.
    #[serde(default)]
    pub detectors: BTreeMap<String, toml::Value>,
    /// `[[monitor.playbook]]` rules; when none is given: log every alert. A critical alert
    /// quarantines the agent whatever the rules say, unless `quarantine_on_critical = false`.
    #[serde(default)]
    pub playbook: Vec<Rule>,
    /// Whether a critical alert (an attempt on Warden itself, a canary on its way out)
    /// quarantines the agent besides what the playbook's rules order. On by default, and kept
    /// when rules are added, so that writing one rule never turns containment off.
    #[serde(default = "default_true")]
    pub quarantine_on_critical: bool,
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
            quarantine_on_critical: true,
            webhook: None,
        }
    }
}

fn default_true() -> bool {
    true
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
        let mut settings: BTreeMap<String, serde_json::Value> = DEFAULT_DETECTORS
            .iter()
            .map(|n| ((*n).to_owned(), serde_json::json!({})))
            .collect();
        settings.extend(
            self.detectors
                .iter()
                .filter_map(|(n, v)| Some((n.clone(), serde_json::to_value(v).ok()?))),
        );
        settings
    }

    pub fn build(&self, quarantine_file: PathBuf, facts: &Facts) -> Result<Arc<Monitor>> {
        let quarantine = Quarantine::open(&quarantine_file).with_context(|| {
            format!("reading the quarantine list {}", quarantine_file.display())
        })?;
        let mut tables: BTreeMap<String, serde_json::Value> = DEFAULT_DETECTORS
            .iter()
            .map(|n| ((*n).to_owned(), serde_json::json!({})))
            .collect();
        for (n, v) in &self.detectors {
            let table =
                serde_json::to_value(v).with_context(|| format!("monitor.detectors.{n}"))?;
            tables.insert(n.clone(), table);
        }
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
        let mut rules = if self.playbook.is_empty() {
            vec![Rule {
                detector: "*".into(),
                min_severity: warden_core::Severity::Low,
                respond: vec![warden_monitor::Response::Log],
            }]
        } else {
            self.playbook.clone()
        };
        if self.quarantine_on_critical {
            rules.push(Rule {
                detector: "*".into(),
                min_severity: warden_core::Severity::Critical,
                respond: vec![warden_monitor::Response::Quarantine],
            });
        }
        let playbook = Playbook::new(rules);
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

#[cfg(test)]
mod tests {
    use warden_core::{AgentId, SessionId, Severity};
    use warden_monitor::{Alert, Response};

    use super::{DEFAULT_DETECTORS, Facts, MonitorSection};

    fn section(text: &str) -> MonitorSection {
        let section: MonitorSection = toml::from_str(text).unwrap();
        section.check().unwrap();
        section
    }

    fn built(text: &str) -> std::sync::Arc<warden_monitor::Monitor> {
        let dir = tempfile::tempdir().unwrap();
        section(text)
            .build(dir.path().join("q.json"), &Facts::default())
            .unwrap()
    }

    fn critical() -> Alert {
        Alert {
            detector: "self_tamper",
            severity: Severity::Critical,
            agent: AgentId::new("a").unwrap(),
            session: SessionId::from_raw("s"),
            summary: String::new(),
            evidence: Vec::new(),
        }
    }

    #[test]
    fn configuring_one_detector_keeps_the_default_ones() {
        let monitor = built("[detectors.rate_anomaly]\nfactor = 5\n");
        let names = monitor.detector_names();
        for default in DEFAULT_DETECTORS {
            assert!(names.contains(default), "{default} dropped: {names:?}");
        }
        assert!(names.contains(&"rate_anomaly"), "{names:?}");
        let monitor = built("[detectors.runaway]\nenabled = false\n");
        assert!(!monitor.detector_names().contains(&"runaway"));
    }

    #[test]
    fn a_rule_of_ones_own_keeps_quarantine_on_critical_unless_turned_off() {
        let rule = "[[playbook]]\ndetector = \"denial_burst\"\nrespond = [\"log\"]\n";
        let monitor = built(rule);
        assert!(
            monitor
                .playbook()
                .responses(&critical())
                .contains(&Response::Quarantine)
        );
        let monitor = built(&format!("quarantine_on_critical = false\n{rule}"));
        assert!(
            !monitor
                .playbook()
                .responses(&critical())
                .contains(&Response::Quarantine)
        );
        // No rules at all: every alert is logged, a critical one also quarantines.
        let responses = built("").playbook().responses(&critical());
        assert!(responses.contains(&Response::Log) && responses.contains(&Response::Quarantine));
    }
}
