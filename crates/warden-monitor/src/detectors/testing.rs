//! What the detectors' unit tests share: showing one record to a detector.

use warden_core::{Action, Event};

use crate::alert::Alert;
use crate::detector::{Detector, Observation};

/// The alerts `detector` raises on record `seq`, with the raw action when there is one.
pub(crate) fn observe_with(
    detector: &dyn Detector,
    seq: u64,
    event: &Event,
    action: Option<&Action>,
) -> Vec<Alert> {
    let mut alerts = Vec::new();
    detector.observe(&Observation { seq, event, action }, &mut alerts);
    alerts
}

/// The alerts `detector` raises on record `seq` alone (as on replay).
pub(crate) fn observe(detector: &dyn Detector, seq: u64, event: &Event) -> Vec<Alert> {
    observe_with(detector, seq, event, None)
}
