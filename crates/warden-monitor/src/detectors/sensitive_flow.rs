//! Placeholder, being written.

use crate::alert::Alert;
use crate::detector::{Detector, Observation};
use crate::detectors::ConfigError;

/// The name in configuration and alerts.
pub const NAME: &str = "sensitive_flow";

/// Not written yet.
#[derive(Debug)]
pub struct SensitiveFlow;

impl SensitiveFlow {
    /// Refuses every configuration until the detector exists.
    pub fn from_config(_config: serde_json::Value) -> Result<Self, ConfigError> {
        Err(ConfigError::new(NAME, "not available yet"))
    }
}

impl Detector for SensitiveFlow {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&self, _observation: &Observation<'_>, _alerts: &mut Vec<Alert>) {}
}
