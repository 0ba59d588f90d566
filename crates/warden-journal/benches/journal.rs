//! Journal throughput: group-committed appends (synchronous=FULL) and verification.
//!
//! Run: `cargo bench -p warden-journal --bench journal -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use sha2::Digest;
use warden_core::{ActionKind, AgentId, Effect, Event, EventBody, SessionId};
use warden_journal::{Journal, JournalOptions, SyncMode, verify};

/// A decision with a small arguments object: ~270 bytes of canonical JSON.
fn decision(i: u64) -> Event {
    Event {
        time_ms: 1_700_000_000_000 + i as i64,
        agent: AgentId::new("reporting-agent").unwrap(),
        session: SessionId::from_random([7; 16]),
        body: EventBody::Decision {
            action: ActionKind::CallTool,
            target: "fs/read_file".into(),
            args_digest: format!("sha256:{i:064x}"),
            args: json!({"path": format!("/srv/reports/2024/q{}/summary-{i}.csv", i % 4), "max_bytes": 65536}),
            effect: Effect::Allow,
            policies: vec!["read-reports".into()],
            reason: "permitted by read-reports".into(),
        },
    }
}

fn full() -> JournalOptions {
    JournalOptions {
        sync: SyncMode::Full,
        ..JournalOptions::default()
    }
}

fn append(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<Event> = (0..10_000).map(decision).collect();

    let mut group = c.benchmark_group("append_full_sync");
    group.sample_size(10);

    let journal = Journal::open(&dir.path().join("burst.db"), full()).unwrap();
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("submit_10k_then_await", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let pending: Vec<_> = events.iter().map(|e| journal.append(e)).collect();
                for p in pending {
                    black_box(p.wait().unwrap());
                }
                total += start.elapsed();
            }
            total
        });
    });
    journal.close_blocking().unwrap();

    const TASKS: usize = 64;
    const EACH: usize = 100;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let journal = Journal::open(&dir.path().join("tasks.db"), full()).unwrap();
    group.throughput(Throughput::Elements((TASKS * EACH) as u64));
    group.bench_function("64_tasks_each_awaiting_its_own", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                rt.block_on(async {
                    let tasks: Vec<_> = (0..TASKS)
                        .map(|t| {
                            let journal = journal.clone();
                            tokio::spawn(async move {
                                for i in 0..EACH {
                                    let e = decision((t * EACH + i) as u64);
                                    black_box(journal.append(&e).await.unwrap());
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                });
            }
            start.elapsed()
        });
    });
    journal.close_blocking().unwrap();
    group.finish();
}

fn build(path: &Path, n: u64) {
    let journal = Journal::open(
        path,
        JournalOptions {
            sync: SyncMode::Normal,
            ..JournalOptions::default()
        },
    )
    .unwrap();
    let mut pending = Vec::with_capacity(10_000);
    for i in 0..n {
        pending.push(journal.append(&decision(i)));
        if pending.len() == 10_000 {
            for p in pending.drain(..) {
                p.wait().unwrap();
            }
        }
    }
    for p in pending {
        p.wait().unwrap();
    }
    journal.close_blocking().unwrap();
}

fn verification(c: &mut Criterion) {
    const N: u64 = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("verify.db");
    build(&path, N);
    let mut group = c.benchmark_group("verify");
    group.sample_size(10);
    group.throughput(Throughput::Elements(N));
    group.bench_function("200k_records", |b| {
        b.iter(|| {
            let report = verify(&path).unwrap();
            assert!(report.is_intact());
            assert_eq!(report.records_checked, N);
        });
    });
    group.finish();
}

/// The two candidate hashes over one record's hashed bytes (prev hash, seq, time, fields).
fn hash_choice(c: &mut Criterion) {
    let e = decision(42);
    let body = warden_core::redact::canonical_json(&serde_json::to_value(&e.body).unwrap());
    let mut record = Vec::new();
    record.extend_from_slice(&[0u8; 32]);
    record.extend_from_slice(&42u64.to_be_bytes());
    record.extend_from_slice(&e.time_ms.to_be_bytes());
    for part in ["decision", e.agent.as_str(), e.session.as_str(), &body] {
        record.extend_from_slice(&(part.len() as u64).to_be_bytes());
        record.extend_from_slice(part.as_bytes());
    }
    let mut group = c.benchmark_group(format!("hash_{}_bytes", record.len()));
    group.throughput(Throughput::Elements(1));
    group.bench_function("sha256", |b| {
        b.iter(|| black_box(sha2::Sha256::digest(black_box(&record))))
    });
    group.bench_function("blake3", |b| {
        b.iter(|| black_box(blake3::hash(black_box(&record))))
    });
    group.finish();
}

criterion_group!(benches, hash_choice, append, verification);
criterion_main!(benches);
