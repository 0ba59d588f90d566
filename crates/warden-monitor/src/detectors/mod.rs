//! The detectors Warden ships, and how configuration builds them. Each is configured by its
//! own table, `[monitor.detectors.NAME]`, given here as JSON; unknown keys are errors.

mod action_text;
pub mod data_loss;
pub mod denial_burst;
pub mod first_seen;
pub mod rate_anomaly;
mod recent;
pub mod runaway;
pub mod scope_drift;
pub mod self_tamper;
pub mod sensitive_flow;
#[cfg(test)]
mod testing;

use crate::detector::Detector;

/// A detector's configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("monitor.detectors.{detector}: {why}")]
pub struct ConfigError {
    /// The detector.
    pub detector: String,
    /// What is wrong.
    pub why: String,
}

impl ConfigError {
    /// An error about `detector`'s table.
    pub fn new(detector: &str, why: impl std::fmt::Display) -> Self {
        Self {
            detector: detector.to_owned(),
            why: why.to_string(),
        }
    }
}

/// Every detector name, in the order they run.
pub const NAMES: [&str; 8] = [
    data_loss::NAME,
    self_tamper::NAME,
    denial_burst::NAME,
    runaway::NAME,
    rate_anomaly::NAME,
    first_seen::NAME,
    sensitive_flow::NAME,
    scope_drift::NAME,
];

/// Builds the detector `name` from its table (`{}` for its defaults).
pub fn build(name: &str, config: serde_json::Value) -> Result<Box<dyn Detector>, ConfigError> {
    Ok(match name {
        data_loss::NAME => Box::new(data_loss::DataLoss::from_config(config)?),
        self_tamper::NAME => Box::new(self_tamper::SelfTamper::from_config(config)?),
        denial_burst::NAME => Box::new(denial_burst::DenialBurst::from_config(config)?),
        runaway::NAME => Box::new(runaway::Runaway::from_config(config)?),
        rate_anomaly::NAME => Box::new(rate_anomaly::RateAnomaly::from_config(config)?),
        first_seen::NAME => Box::new(first_seen::FirstSeen::from_config(config)?),
        sensitive_flow::NAME => Box::new(sensitive_flow::SensitiveFlow::from_config(config)?),
        scope_drift::NAME => Box::new(scope_drift::ScopeDrift::from_config(config)?),
        other => {
            return Err(ConfigError::new(
                other,
                format!("no such detector (known: {})", NAMES.join(", ")),
            ));
        }
    })
}
