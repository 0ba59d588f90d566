//! The cost per journaled action of the stream detectors `denial_burst`, `runaway` and
//! `rate_anomaly` together, with their default configuration, on a realistic stream: 500
//! agents in 1,000 sessions, about 20 actions a second in all, 93 % allowed, 5 % refused,
//! 2 % sent to a human; small arguments objects. The budget is 5 µs per action.
//!
//! Run: `cargo bench -p warden-monitor --bench detectors`

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use serde_json::json;
use warden_core::{ActionKind, AgentId, Effect, Event, EventBody, SessionId};
use warden_monitor::detectors::{denial_burst, rate_anomaly, runaway};
use warden_monitor::{Alert, Detector, Observation};

const EVENTS: u64 = 20_000;
const AGENTS: u64 = 500;

/// A small deterministic generator, so every run sees the same stream.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn stream() -> Vec<Event> {
    let mut rng = SplitMix(7);
    let tools = ["files/read", "files/list", "search/query", "files/write"];
    let mut time_ms = 1_700_000_000_000;
    (0..EVENTS)
        .map(|i| {
            time_ms += (rng.next() % 100) as i64;
            let agent = rng.next() % AGENTS;
            let session = agent * 2 + rng.next() % 2;
            let roll = rng.next() % 100;
            let effect = match roll {
                0..93 => Effect::Allow,
                93..98 => Effect::Deny,
                _ => Effect::Ask,
            };
            let (action, target) = if roll.is_multiple_of(10) {
                (ActionKind::HttpRequest, "api.example.org".to_owned())
            } else {
                let tool = tools[(rng.next() % 4) as usize];
                (ActionKind::CallTool, tool.to_owned())
            };
            Event {
                time_ms,
                agent: AgentId::new(format!("agent-{agent}")).unwrap(),
                session: SessionId::from_raw(format!("{session:032x}")),
                body: EventBody::Decision {
                    action,
                    target,
                    args_digest: format!("sha256:{i:064x}"),
                    args: json!({
                        "path": format!("/srv/project/src/module_{}.rs", rng.next() % 50),
                        "max_bytes": 65536,
                    }),
                    effect,
                    policies: vec!["project-files".into()],
                    reason: "permitted by project-files".into(),
                },
            }
        })
        .collect()
}

fn detectors() -> Vec<Box<dyn Detector>> {
    [denial_burst::NAME, runaway::NAME, rate_anomaly::NAME]
        .into_iter()
        .map(|name| warden_monitor::detectors::build(name, json!({})).unwrap())
        .collect()
}

/// The set `warden` runs when `[monitor]` names no detector, with Warden's files protected.
fn default_set() -> Vec<Box<dyn Detector>> {
    let configs = [
        ("data_loss", json!({"canaries": ["AKIAWARDENCANARY0001"]})),
        (
            "self_tamper",
            json!({"paths": ["/var/lib/warden/journal.db", "/etc/warden"], "ports": [7411]}),
        ),
        ("denial_burst", json!({})),
        ("runaway", json!({})),
        ("sensitive_flow", json!({})),
    ];
    configs
        .into_iter()
        .map(|(name, config)| warden_monitor::detectors::build(name, config).unwrap())
        .collect()
}

/// The raw action of each decision, as the gateway hands it to detectors (and vetoes).
fn actions(events: &[Event]) -> Vec<warden_core::Action> {
    events
        .iter()
        .map(|e| {
            let EventBody::Decision { target, args, .. } = &e.body else {
                unreachable!("the stream holds decisions only")
            };
            let (server, name) = target.split_once('/').unwrap_or(("web", target));
            let serde_json::Value::Object(arguments) = args.clone() else {
                unreachable!("arguments are objects")
            };
            warden_core::Action::CallTool {
                tool: warden_core::ToolRef::new(
                    warden_core::ServerName::new(server).unwrap(),
                    name,
                )
                .unwrap(),
                arguments,
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let events = stream();
    let mut group = c.benchmark_group("detectors");
    group
        .sample_size(30)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(events.len() as u64));
    // Fresh detectors for each pass, so time never runs backwards for them; building them is
    // not measured. Criterion reports the time per pass and the actions per second; the cost
    // per action is the time per pass divided by 20,000.
    group.bench_function("denial_burst+runaway+rate_anomaly/20k_actions", |b| {
        b.iter_batched(
            detectors,
            |detectors| {
                let mut alerts: Vec<Alert> = Vec::new();
                for (seq, event) in events.iter().enumerate() {
                    let observation = Observation {
                        seq: seq as u64,
                        event,
                        action: None,
                    };
                    for d in &detectors {
                        d.observe(&observation, &mut alerts);
                    }
                    alerts.clear();
                }
                black_box(detectors)
            },
            BatchSize::PerIteration,
        );
    });
    let raw = actions(&events);
    group.bench_function("default_set_with_vetoes/20k_actions", |b| {
        b.iter_batched(
            default_set,
            |detectors| {
                let mut alerts: Vec<Alert> = Vec::new();
                for (seq, (event, action)) in events.iter().zip(&raw).enumerate() {
                    for d in &detectors {
                        black_box(d.veto(&event.agent, &event.session, action));
                    }
                    let observation = Observation {
                        seq: seq as u64,
                        event,
                        action: Some(action),
                    };
                    for d in &detectors {
                        d.observe(&observation, &mut alerts);
                    }
                    alerts.clear();
                }
                black_box(detectors)
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
