//! The cost Warden adds in front of one `tools/call`: build the action, decide it with 100
//! policies, redact and digest the arguments, and append the decision record durably.
//!
//! `latency/*`: one call at a time, so each call waits for its own commit (with `full` sync,
//! its own fsync); `*_paced_1ms` leaves 1 ms between calls, as at 1,000 calls/s. `throughput/*`: 64 calls in flight, as from many agents at once, so group
//! commit shares each fsync among them; reported per call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Map, Value, json};
use warden_core::{Action, AgentId, ServerName, SessionId, ToolRef};
use warden_gateway::Guard;
use warden_journal::{Journal, JournalOptions, SyncMode};
use warden_policy::{PolicySet, SourceFile};

const SCHEMA: &str = "type Arguments = { path?: String, amount?: Long, to?: String };";

/// 100 policies over 20 agents and 10 servers, a third with argument conditions.
fn policies() -> PolicySet {
    let mut text = String::from(
        "@reason(\"no keys\")\nforbid(principal, action == Action::\"call_tool\", resource)\n  when { context.arguments has path && context.arguments.path like \"*/.ssh/*\" };\n",
    );
    for i in 0..99 {
        let (a, s, t) = (i % 20, i % 10, i % 7);
        let p = match i % 3 {
            0 => format!(
                "permit(principal == Agent::\"agent{a}\", action == Action::\"call_tool\", resource in Server::\"srv{s}\");"
            ),
            1 => format!(
                "permit(principal == Agent::\"agent{a}\", action == Action::\"call_tool\", resource == Tool::\"srv{s}/tool{t}\")\n  when {{ context.arguments has path && context.arguments.path like \"/data/agent{a}/*\" }};"
            ),
            _ => format!(
                "forbid(principal, action, resource == Tool::\"srv{s}/tool{t}\")\n  when {{ context.arguments has amount && context.arguments.amount > {} }};",
                1000 + i
            ),
        };
        text.push_str(&p);
        text.push('\n');
    }
    let set = PolicySet::from_sources(
        &[SourceFile::new("bench.cedar", text)],
        &[SourceFile::new("arguments.cedarschema", SCHEMA)],
    )
    .expect("generated policies load");
    assert_eq!(set.len(), 100);
    set
}

fn arguments() -> Map<String, Value> {
    let Value::Object(map) = json!({
        "path": "/data/agent0/reports/q3.csv",
        "amount": 42,
        "to": "team@example.com",
        "note": "quarterly numbers, as discussed",
    }) else {
        unreachable!()
    };
    map
}

fn guard(sync: SyncMode, dir: &tempfile::TempDir) -> Guard {
    let journal = Journal::open(
        &dir.path().join("journal.db"),
        JournalOptions {
            sync,
            ..JournalOptions::default()
        },
    )
    .expect("journal opens");
    Guard::new(
        AgentId::new("agent0").expect("agent"),
        SessionId::from_random([7; 16]),
        Arc::new(policies()),
        journal,
    )
}

/// The action the agent attempts: built per call, as the gateway builds it from the request.
fn call(args: &Map<String, Value>) -> Action {
    Action::CallTool {
        tool: ToolRef::new(ServerName::new("srv0").expect("server"), "tool0").expect("tool"),
        arguments: args.clone(),
    }
}

fn hot_path(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let args = arguments();
    for (name, sync) in [("normal", SyncMode::Normal), ("full", SyncMode::Full)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let guard = guard(sync, &dir);
        let verdict = rt.block_on(guard.check(&call(&args)));
        assert!(verdict.seq.is_some() && verdict.decision.effect.permits());

        let mut g = c.benchmark_group("latency");
        g.bench_function(BenchmarkId::new("decide_and_journal", name), |b| {
            b.iter(|| rt.block_on(guard.check(&call(&args))))
        });
        // Calls 1 ms apart, as at 1,000 calls/s: nothing to batch with, so each decision is
        // committed on the caller's thread (the sleep is not timed).
        g.bench_function(
            BenchmarkId::new("decide_and_journal_paced_1ms", name),
            |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        std::thread::sleep(Duration::from_millis(1));
                        let start = Instant::now();
                        let verdict = rt.block_on(guard.check(&call(&args)));
                        total += start.elapsed();
                        assert!(verdict.seq.is_some());
                    }
                    total
                })
            },
        );
        g.finish();

        let mut g = c.benchmark_group("throughput");
        const IN_FLIGHT: u64 = 64;
        g.throughput(Throughput::Elements(IN_FLIGHT));
        g.bench_function(
            BenchmarkId::new("decide_and_journal_64_in_flight", name),
            |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let start = Instant::now();
                        rt.block_on(async {
                            let calls: Vec<_> = (0..IN_FLIGHT)
                                .map(|_| {
                                    let guard = guard.clone();
                                    let args = args.clone();
                                    tokio::spawn(async move { guard.check(&call(&args)).await })
                                })
                                .collect();
                            for call in calls {
                                let verdict = call.await.expect("task");
                                assert!(verdict.seq.is_some());
                            }
                        });
                        total += start.elapsed();
                    }
                    total
                })
            },
        );
        g.finish();
    }
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
