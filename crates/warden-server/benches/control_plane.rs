//! The control plane over a big journal: how long each kind of query the dashboard and
//! operators' scripts make takes over HTTP, on a journal of `RECORDS` records (default
//! 1,000,000). Target: p99 ≤ 100 ms for every journal query.
//!
//! Run: `cargo bench -p warden-server --bench control_plane` (a quick try: `RECORDS=20000`).
//!
//! 1. The journal is written through the real [`Journal`] (hash chain and signed checkpoints
//!    included) with a mix of what a fleet records: ~50 agents of unequal activity, sandboxes
//!    and the MCP sessions opened from them, decisions (allow, deny, ask) with their outcomes,
//!    approvals asked and answered, denial bursts raising alerts that cite their evidence,
//!    quarantines and releases. It is kept in `target/bench-data/` and reused by later runs
//!    (delete it, or change the mix's version below, to regenerate).
//! 2. The real router (`limited_router`, its pace raised to the highest rate `warden up`
//!    accepts) serves it on a loopback port; a viewer's token authenticates.
//! 3. Each query class is asked `REQUESTS` times (default 300) with random cursors and agents
//!    across the whole journal, one request at a time over a kept-alive connection; the
//!    latency is from sending the request to the last byte of the answer.
//!
//! Knobs (environment): `RECORDS`, `REQUESTS`, `SEED`; `BENCH_DATA` (a folder for the cached
//! journal instead of `target/bench-data`); `FILL_ONLY=1` (or `-- --fill-only`) makes or reuses
//! the journal, prints `journal: PATH` and stops.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::header::AUTHORIZATION;
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use warden_core::{
    ActionKind, AgentId, ApprovalAnswer, Effect, Event, EventBody, Outcome, SessionId, Severity,
};
use warden_journal::{Journal, JournalOptions, JournalReader, PendingAppend, Query, SyncMode};
use warden_monitor::{Level, Quarantine, QuarantineEntry};
use warden_policy::PolicySet;
use warden_server::api::{DEFAULT_MAX_CONCURRENT_REQUESTS, limited_router};
use warden_server::{ControlState, OperatorStore, Recorder, Role};

/// The highest `[control] max_requests_per_second` `warden up` accepts.
const MAX_PACED_RATE: u32 = 100_000;

/// The version of the generated mix: a cached journal of another version is regenerated.
const MIX_VERSION: u32 = 1;

/// Agents in the generated fleet.
const AGENTS: usize = 50;

/// Appends handed to the writer before waiting for them (group commit takes them in batches).
const IN_FLIGHT: usize = 8192;

/// Held calls left unanswered near the journal's end, so the approvals queue is not empty.
const PENDING_APPROVALS: u32 = 12;

/// Pages per deep-paging walk.
const WALK_PAGES: usize = 50;

/// The p99 the issue asks of journal queries.
const TARGET_P99_MS: f64 = 100.0;

fn main() -> Result<()> {
    let records: u64 = env_number("RECORDS", 1_000_000)?;
    let requests: usize = env_number("REQUESTS", 300)?;
    let seed: u64 = env_number("SEED", 7)?;
    if records < 1_000 {
        bail!("RECORDS must be at least 1000, not {records}");
    }
    let fill_only = std::env::var_os("FILL_ONLY").is_some_and(|v| v == "1")
        || std::env::args().any(|a| a == "--fill-only");

    let journal = cached_journal(records, seed)?;
    if fill_only {
        println!("journal: {}", journal.display());
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(measure(&journal, records, requests, seed))
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .replace('_', "")
            .parse()
            .map_err(|_| anyhow::anyhow!("{name} must be a number, not {v:?}")),
        Err(_) => Ok(default),
    }
}

// === The journal ===

/// `target/bench-data` (next to this benchmark's executable), or `BENCH_DATA`.
fn data_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("BENCH_DATA") {
        return Ok(PathBuf::from(dir));
    }
    // The executable is target/<profile>/deps/control_plane-<hash>.
    let exe = std::env::current_exe().context("locating the benchmark's executable")?;
    let target = exe
        .ancestors()
        .nth(3)
        .context("the benchmark's executable is not under target/<profile>/deps")?;
    Ok(target.join("bench-data"))
}

/// The journal of `records` records, generated now unless a complete one of this mix is kept.
fn cached_journal(records: u64, seed: u64) -> Result<PathBuf> {
    let dir = data_dir()?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = format!("control-plane-{records}-s{seed}");
    let path = dir.join(format!("{name}.db"));
    let marker = dir.join(format!("{name}.done.json"));
    let want = json!({ "mix_version": MIX_VERSION, "records": records, "seed": seed });
    if let Ok(text) = std::fs::read_to_string(&marker)
        && let Ok(done) = serde_json::from_str::<Value>(&text)
        && done.get("mix") == Some(&want)
        && path.is_file()
    {
        eprintln!(
            "control_plane: reusing {} ({records} records, generated in {} s)",
            path.display(),
            done["seconds"]
        );
        return Ok(path);
    }
    // An incomplete or older journal: start over (its key and head go with it).
    for suffix in ["", "-wal", "-shm", ".key", ".head"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", file.display())),
        }
    }
    let _ = std::fs::remove_file(&marker);
    eprintln!(
        "control_plane: generating {records} records into {}",
        path.display()
    );
    let started = Instant::now();
    let kinds = generate(&path, records, seed)?;
    let seconds = started.elapsed().as_secs_f64();
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "control_plane: generated {records} records in {seconds:.1} s ({:.0} records/s), \
         {:.0} MiB; kinds: {}",
        records as f64 / seconds,
        size as f64 / (1024.0 * 1024.0),
        kinds
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let done = json!({ "mix": want, "seconds": (seconds * 10.0).round() / 10.0, "kinds": kinds });
    std::fs::write(&marker, done.to_string())
        .with_context(|| format!("writing {}", marker.display()))?;
    Ok(path)
}

/// splitmix64: a small, seeded generator, so every run of one seed writes the same journal.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True once in `n`.
    fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

struct Agent {
    id: AgentId,
    /// Its `warden run` session, if one is open.
    run: Option<String>,
    /// Its MCP session (opened from the run), if one is open.
    mcp: Option<(String, &'static str)>,
    sessions: u64,
    /// Recent refusals: a burst of them raises an alert citing them.
    denials: Vec<u64>,
    quarantined: bool,
}

/// Writes the mix through the journal, knowing each record's seq in advance: the journal is
/// new and this is its only writer, so seqs run 1, 2, 3, … (checked as appends complete).
struct Mix {
    journal: Journal,
    rng: Rng,
    agents: Vec<Agent>,
    next_seq: u64,
    time_ms: i64,
    records: u64,
    unanswered: u32,
    in_flight: Vec<(u64, PendingAppend)>,
    kinds: BTreeMap<&'static str, u64>,
}

/// The session operator actions are journaled in.
const OPERATOR: &str = "operator";

/// The `i`th agent's name: `researcher-00`, `builder-01`, …
fn agent_name(i: usize) -> String {
    const ROLES: [&str; 10] = [
        "researcher",
        "builder",
        "reporter",
        "support",
        "deployer",
        "analyst",
        "triage",
        "indexer",
        "reviewer",
        "scheduler",
    ];
    format!("{}-{i:02}", ROLES[i % ROLES.len()])
}

fn generate(path: &Path, records: u64, seed: u64) -> Result<BTreeMap<&'static str, u64>> {
    let journal = Journal::open(
        path,
        JournalOptions {
            sync: SyncMode::Normal,
            ..JournalOptions::default()
        },
    )
    .with_context(|| format!("opening {}", path.display()))?;
    let agents = (0..AGENTS)
        .map(|i| {
            Ok(Agent {
                id: AgentId::new(agent_name(i))?,
                run: None,
                mcp: None,
                sessions: 0,
                denials: Vec::new(),
                quarantined: false,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    // The journal ends about now, ~15 ms a record on average before that.
    let now = now_ms();
    let mut mix = Mix {
        journal,
        rng: Rng(seed),
        agents,
        next_seq: 1,
        time_ms: now - i64::try_from(records).unwrap_or(i64::MAX / 32) * 16,
        records,
        unanswered: PENDING_APPROVALS,
        in_flight: Vec::with_capacity(IN_FLIGHT),
        kinds: BTreeMap::new(),
    };
    let mut last_progress = Instant::now();
    while mix.next_seq <= records {
        // Two draws, the smaller kept: a few agents do most of the work, some very little.
        let a = mix
            .rng
            .below(AGENTS as u64)
            .min(mix.rng.below(AGENTS as u64)) as usize;
        if records - mix.next_seq < 8 {
            // The last few records one by one, so the journal holds exactly `records`.
            mix.decision(a, Effect::Deny)?;
        } else {
            mix.step(a)?;
        }
        if last_progress.elapsed() > Duration::from_secs(10) {
            eprintln!("control_plane: … {} records", mix.next_seq - 1);
            last_progress = Instant::now();
        }
    }
    mix.flush()?;
    mix.journal
        .close_blocking()
        .context("closing the generated journal")?;
    let last = JournalReader::open(path)?.last_seq()?;
    if last != records {
        bail!("the generated journal ends at record {last}, not {records}");
    }
    Ok(mix.kinds)
}

impl Mix {
    fn emit(&mut self, agent: &AgentId, session: &str, body: EventBody) -> Result<u64> {
        self.time_ms += 1 + self.rng.below(30) as i64;
        let seq = self.next_seq;
        self.next_seq += 1;
        *self.kinds.entry(body.kind()).or_default() += 1;
        let pending = self.journal.append_queued(&Event {
            time_ms: self.time_ms,
            agent: agent.clone(),
            session: SessionId::from_raw(session),
            body,
        });
        self.in_flight.push((seq, pending));
        if self.in_flight.len() >= IN_FLIGHT {
            self.flush()?;
        }
        Ok(seq)
    }

    fn flush(&mut self) -> Result<()> {
        for (want, pending) in self.in_flight.drain(..) {
            let got = pending
                .wait()
                .context("appending to the generated journal")?;
            if got != want {
                bail!("record expected as {want} was written as {got}: was the journal new?");
            }
        }
        Ok(())
    }

    fn step(&mut self, a: usize) -> Result<()> {
        let id = self.agents[a].id.clone();
        if self.agents[a].quarantined {
            // Quarantine overrides every permit until an operator releases the agent.
            if self.rng.one_in(4) {
                self.emit(
                    &id,
                    OPERATOR,
                    EventBody::Released {
                        by: "operator:ana".into(),
                        reason: "reviewed the evidence: a misconfigured retry loop, fixed".into(),
                    },
                )?;
                self.agents[a].quarantined = false;
            } else {
                self.decision(a, Effect::Deny)?;
            }
            return Ok(());
        }
        if self.rng.one_in(1000) {
            let remote = format!(
                "10.0.{}.{}:{}",
                self.rng.below(8),
                self.rng.below(250),
                40_000 + self.rng.below(20_000)
            );
            self.emit(
                &AgentId::new("unauthenticated")?,
                "none",
                EventBody::AccessRefused {
                    reason: "no valid agent token".into(),
                    remote,
                },
            )?;
        }
        let roll = self.rng.below(1000);
        if roll < 860 {
            let seq = self.decision(a, Effect::Allow)?;
            if self.rng.one_in(300) {
                self.emit_in_session(
                    a,
                    EventBody::Alert {
                        detector: "first_seen".into(),
                        severity: Severity::Medium,
                        summary: format!("{id} used a tool it had never used before"),
                        evidence: vec![seq],
                    },
                )?;
            }
        } else if roll < 950 {
            let seq = self.decision(a, Effect::Deny)?;
            self.agents[a].denials.push(seq);
            if self.agents[a].denials.len() >= 8 {
                let evidence = std::mem::take(&mut self.agents[a].denials);
                let summary = format!("{id}: {} refusals in a row", evidence.len());
                let alert = self.emit_in_session(
                    a,
                    EventBody::Alert {
                        detector: "denial_burst".into(),
                        severity: Severity::High,
                        summary: summary.clone(),
                        evidence,
                    },
                )?;
                if self.rng.one_in(6) {
                    self.emit_in_session(
                        a,
                        EventBody::Quarantined {
                            level: Level::Quarantine.as_str().into(),
                            reason: summary,
                            by: "detector:denial_burst".into(),
                            evidence: vec![alert],
                        },
                    )?;
                    self.agents[a].quarantined = true;
                    return Ok(());
                }
            }
        } else {
            self.held_call(a)?;
        }
        if self.rng.one_in(250) {
            self.end_mcp(a)?;
            if self.rng.one_in(10) {
                self.end_run(a)?;
            }
        }
        Ok(())
    }

    /// Opens the agent's sandbox and MCP session if they are not open.
    fn session(&mut self, a: usize) -> Result<String> {
        let id = self.agents[a].id.clone();
        let run = match self.agents[a].run.clone() {
            Some(run) => run,
            None => {
                self.agents[a].sessions += 1;
                let run = format!("run-{id}-{}", self.agents[a].sessions);
                self.emit(
                    &id,
                    &run,
                    EventBody::SandboxStarted {
                        command: vec![
                            "python3".into(),
                            "agent.py".into(),
                            "--task".into(),
                            "weekly-report".into(),
                        ],
                        layers: vec![
                            "namespaces".into(),
                            "landlock".into(),
                            "seccomp".into(),
                            "cgroup v2".into(),
                        ],
                        degraded: vec![],
                        cgroups: "v2: memory, pids, cpu; kill by cgroup.kill".into(),
                        task: Some("write the weekly report".into()),
                        scope: vec!["reports".into()],
                    },
                )?;
                self.agents[a].run = Some(run.clone());
                run
            }
        };
        if let Some((mcp, _)) = &self.agents[a].mcp {
            return Ok(mcp.clone());
        }
        let server = *self.rng.pick(&["files", "web", "db"]);
        let mcp = format!("{:016x}{:016x}", self.rng.next(), self.rng.next());
        self.emit(
            &id,
            &mcp,
            EventBody::SessionStarted {
                server: server.into(),
                warden_version: env!("CARGO_PKG_VERSION").into(),
                parent: Some(SessionId::from_raw(run)),
            },
        )?;
        self.agents[a].mcp = Some((mcp.clone(), server));
        Ok(mcp)
    }

    fn emit_in_session(&mut self, a: usize, body: EventBody) -> Result<u64> {
        let session = self.session(a)?;
        let id = self.agents[a].id.clone();
        self.emit(&id, &session, body)
    }

    /// A decision, and for an allowed one its outcome; the decision's seq.
    fn decision(&mut self, a: usize, effect: Effect) -> Result<u64> {
        let session = self.session(a)?;
        let id = self.agents[a].id.clone();
        let server = self.agents[a].mcp.as_ref().map_or("files", |m| m.1);
        let n = self.rng.below(5000);
        let (action, target, args) = match self.rng.below(100) {
            0..80 => {
                let tool = match server {
                    "files" => *self.rng.pick(&["read_file", "write_file", "list_dir"]),
                    "web" => *self.rng.pick(&["fetch", "search"]),
                    _ => *self.rng.pick(&["query", "describe_table"]),
                };
                (
                    ActionKind::CallTool,
                    format!("{server}/{tool}"),
                    json!({ "path": format!("reports/2026/q{}/summary-{n}.csv", n % 4 + 1), "max_bytes": 65536 }),
                )
            }
            80..92 => (
                ActionKind::HttpRequest,
                "api.example.com:443".to_owned(),
                json!({ "method": "GET", "url": format!("https://api.example.com/v2/items/{n}") }),
            ),
            _ => (
                ActionKind::Exec,
                "/usr/bin/git".to_owned(),
                json!({ "argv": ["git", "log", "--oneline", format!("-{}", n % 50 + 1)] }),
            ),
        };
        let quarantined = self.agents[a].quarantined;
        let (policies, reason) = match effect {
            Effect::Allow => (
                vec!["read-workspace".to_owned()],
                "permitted by read-workspace".to_owned(),
            ),
            Effect::Deny if quarantined => (vec![], format!("agent {id} is quarantined")),
            Effect::Deny => (
                vec!["no-secrets".to_owned()],
                "files under secrets/ are off limits to every agent".to_owned(),
            ),
            Effect::Ask => (
                vec!["ask-before-write".to_owned()],
                "writes need a human's approval".to_owned(),
            ),
        };
        let digest = format!(
            "{:016x}{:016x}{:016x}{:016x}",
            self.rng.next(),
            self.rng.next(),
            self.rng.next(),
            self.rng.next()
        );
        let seq = self.emit(
            &id,
            &session,
            EventBody::Decision {
                action,
                target,
                args_digest: digest,
                args,
                effect,
                policies,
                reason,
            },
        )?;
        if effect == Effect::Allow {
            self.outcome(a, &session, seq)?;
        }
        Ok(seq)
    }

    fn outcome(&mut self, a: usize, session: &str, decision_seq: u64) -> Result<u64> {
        let id = self.agents[a].id.clone();
        let (outcome, detail) = if self.rng.one_in(20) {
            (Outcome::ToolError, "no such file")
        } else {
            (Outcome::Ok, "")
        };
        self.emit(
            &id,
            session,
            EventBody::Outcome {
                decision_seq,
                outcome,
                detail: detail.into(),
                labels: vec![],
            },
        )
    }

    /// A call decided `ask`: held, then answered by an operator (or left waiting, near the
    /// journal's end).
    fn held_call(&mut self, a: usize) -> Result<()> {
        let seq = self.decision(a, Effect::Ask)?;
        let session = self.session(a)?;
        let id = self.agents[a].id.clone();
        let leave_waiting = self.unanswered > 0 && self.records - self.next_seq < 20_000;
        let expires_ms = if leave_waiting {
            // Still waiting whenever the benchmark runs.
            now_ms() + 365 * 24 * 3600 * 1000
        } else {
            self.time_ms + 300_000
        };
        self.emit(
            &id,
            &session,
            EventBody::ApprovalRequested {
                decision_seq: seq,
                expires_ms,
            },
        )?;
        if leave_waiting {
            self.unanswered -= 1;
            return Ok(());
        }
        let (answer, by) = match self.rng.below(20) {
            0..14 => (ApprovalAnswer::Approve, "operator:ana"),
            14..19 => (ApprovalAnswer::Deny, "operator:ana"),
            _ => (ApprovalAnswer::Timeout, "timeout"),
        };
        self.emit(
            &id,
            OPERATOR,
            EventBody::ApprovalAnswered {
                decision_seq: seq,
                answer,
                by: by.into(),
                reason: "checked the diff".into(),
            },
        )?;
        if answer.approves() {
            self.outcome(a, &session, seq)?;
        }
        Ok(())
    }

    fn end_mcp(&mut self, a: usize) -> Result<()> {
        if let Some((mcp, _)) = self.agents[a].mcp.take() {
            let id = self.agents[a].id.clone();
            self.emit(
                &id,
                &mcp,
                EventBody::SessionEnded {
                    detail: "the client closed the session".into(),
                },
            )?;
        }
        Ok(())
    }

    fn end_run(&mut self, a: usize) -> Result<()> {
        if let Some(run) = self.agents[a].run.take() {
            let id = self.agents[a].id.clone();
            self.emit(
                &id,
                &run,
                EventBody::SandboxEnded {
                    status: "exit status 0".into(),
                },
            )?;
        }
        Ok(())
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

// === The server ===

/// The benchmark only reads: an operator action it might make is refused, so the cached
/// journal is never written.
struct ReadOnly;

impl Recorder for ReadOnly {
    async fn record_in(
        &self,
        _agent: &AgentId,
        _session: SessionId,
        _body: EventBody,
    ) -> Result<u64, String> {
        Err("the benchmark does not write to its journal".into())
    }
}

/// A viewer's client of the served router.
struct Api {
    client: Client<HttpConnector, Empty<Bytes>>,
    base: String,
    token: String,
}

impl Api {
    /// GETs `path`: the status, the JSON answer, and the time from sending to the last byte.
    async fn get(&self, path: &str) -> Result<(StatusCode, Value, Duration)> {
        let request = Request::get(format!("{}{path}", self.base))
            .header(AUTHORIZATION, format!("Bearer {}", self.token))
            .body(Empty::new())?;
        let started = Instant::now();
        let response = self
            .client
            .request(request)
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        let elapsed = started.elapsed();
        let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Ok((status, value, elapsed))
    }
}

/// A query class's route, with random cursors and agents.
type PathOf = fn(&mut Rng, &Fleet) -> String;

/// What the random queries pick from.
struct Fleet {
    records: u64,
    agents: Vec<String>,
    alerts: Vec<u64>,
}

async fn measure(path: &Path, records: u64, requests: usize, seed: u64) -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let operators = OperatorStore::new(scratch.path().join("operators.json"));
    let token = operators.add("bench", Role::Viewer, false)?;
    let quarantine = Arc::new(Quarantine::open(scratch.path().join("quarantine.json"))?);
    let fleet = fleet_of(path, records)?;
    for name in fleet.agents.iter().take(3) {
        quarantine.add(QuarantineEntry {
            agent: AgentId::new(name)?,
            level: Level::Quarantine,
            reason: "denial burst".into(),
            by: "detector:denial_burst".into(),
            since_ms: now_ms(),
            evidence: fleet.alerts.iter().rev().take(1).copied().collect(),
        })?;
    }
    let policy_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies");
    let mut state = ControlState::new(ReadOnly, path.to_owned(), quarantine, operators);
    state.policies = Some(Arc::new(
        PolicySet::load_dir(&policy_dir)
            .with_context(|| format!("loading {}", policy_dir.display()))?,
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    // The queries are measured, not the pace (`[control] max_requests_per_second`), which
    // one client asking one request after another would meet after its first burst.
    let app = limited_router(
        Arc::new(state),
        DEFAULT_MAX_CONCURRENT_REQUESTS,
        MAX_PACED_RATE,
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("control_plane: the server stopped: {e}");
        }
    });
    let api = Api {
        client: Client::builder(TokioExecutor::new()).build_http(),
        base: format!("http://{addr}"),
        token,
    };
    let mut rng = Rng(seed ^ 0x5EED);
    let mut rows = Vec::new();

    // Once each: the fleet view built from the whole journal, and verification.
    for (name, route) in [
        ("agents, cold (builds the fleet view)", "/api/v1/agents"),
        ("journal/verify (whole chain)", "/api/v1/journal/verify"),
    ] {
        eprintln!("control_plane: {name}");
        let (status, answer, elapsed) = api.get(route).await?;
        if status != StatusCode::OK {
            bail!("{route}: HTTP {status}: {answer}");
        }
        if route.ends_with("verify") && answer["intact"] != true {
            bail!("the generated journal does not verify: {answer}");
        }
        let mut h = histogram();
        h.saturating_record(micros(elapsed));
        rows.push(Row::new(name, &h, answer_rows(&answer) as f64, 0, false));
    }

    let classes: [(&str, bool, PathOf); 19] = [
        ("journal newest page", true, |_, _| {
            "/api/v1/journal?order=newest&limit=100".into()
        }),
        ("journal after=R", true, |r, f| {
            format!("/api/v1/journal?after={}&limit=100", r.below(f.records))
        }),
        ("journal after=R limit=1000", true, |r, f| {
            format!("/api/v1/journal?after={}&limit=1000", r.below(f.records))
        }),
        ("journal newest first before=R", true, |r, f| {
            format!(
                "/api/v1/journal?order=newest&before={}&limit=100",
                1 + r.below(f.records)
            )
        }),
        ("journal agent=A newest first before=R", true, |r, f| {
            format!(
                "/api/v1/journal?agent={}&order=newest&before={}&limit=100",
                r.pick(&f.agents),
                1 + r.below(f.records)
            )
        }),
        ("journal agent=A after=R", true, |r, f| {
            format!(
                "/api/v1/journal?agent={}&after={}&limit=100",
                r.pick(&f.agents),
                r.below(f.records)
            )
        }),
        ("journal kind=decision after=R", true, |r, f| {
            format!(
                "/api/v1/journal?kind=decision&after={}&limit=100",
                r.below(f.records)
            )
        }),
        ("journal kind=alert after=R", true, |r, f| {
            format!(
                "/api/v1/journal?kind=alert&after={}&limit=100",
                r.below(f.records)
            )
        }),
        ("journal kind=alert newest first before=R", true, |r, f| {
            format!(
                "/api/v1/journal?kind=alert&order=newest&before={}&limit=100",
                1 + r.below(f.records)
            )
        }),
        ("journal agent=A kind=decision after=R", true, |r, f| {
            format!(
                "/api/v1/journal?agent={}&kind=decision&after={}&limit=100",
                r.pick(&f.agents),
                r.below(f.records)
            )
        }),
        (
            "journal agent=A kind=alert newest first before=R",
            true,
            |r, f| {
                format!(
                    "/api/v1/journal?agent={}&kind=alert&order=newest&before={}&limit=100",
                    r.pick(&f.agents),
                    1 + r.below(f.records)
                )
            },
        ),
        ("alerts newest 15 (overview)", true, |_, f| {
            format!(
                "/api/v1/alerts?order=newest&before={}&limit=15",
                f.records + 1
            )
        }),
        ("alerts agent=A after=R", true, |r, f| {
            format!(
                "/api/v1/alerts?agent={}&after={}&limit=100",
                r.pick(&f.agents),
                r.below(f.records)
            )
        }),
        ("alert detail with evidence", true, |r, f| {
            format!("/api/v1/alerts/{}", r.pick(&f.alerts))
        }),
        ("agents (warm)", false, |_, _| "/api/v1/agents".into()),
        ("agent detail", false, |r, f| {
            format!("/api/v1/agents/{}", r.pick(&f.agents))
        }),
        ("approvals", false, |_, _| "/api/v1/approvals".into()),
        ("quarantine", false, |_, _| "/api/v1/quarantine".into()),
        ("policies", false, |_, _| "/api/v1/policies".into()),
    ];
    for (name, journal_query, pick) in &classes {
        eprintln!("control_plane: {name} × {requests}");
        // A few unmeasured requests first: connection set up, statements prepared.
        for _ in 0..5 {
            api.get(&pick(&mut rng, &fleet)).await?;
        }
        let mut h = histogram();
        let mut returned = 0usize;
        let mut errors = 0u64;
        for _ in 0..requests {
            let route = pick(&mut rng, &fleet);
            let (status, answer, elapsed) = api.get(&route).await?;
            if status != StatusCode::OK {
                errors += 1;
                if errors == 1 {
                    eprintln!("control_plane: {route}: HTTP {status}: {answer}");
                }
            }
            returned += answer_rows(&answer);
            h.saturating_record(micros(elapsed));
        }
        rows.push(Row::new(
            name,
            &h,
            returned as f64 / requests.max(1) as f64,
            errors,
            *journal_query,
        ));
    }

    // Deep paging: following `next` page after page, as a script exporting a range does.
    let walks = requests.div_ceil(WALK_PAGES).max(1);
    eprintln!("control_plane: deep paging, {walks} walks of {WALK_PAGES} pages");
    let mut pages = histogram();
    let mut totals = histogram();
    let mut errors = 0u64;
    let mut returned = 0usize;
    for _ in 0..walks {
        let span = (WALK_PAGES as u64) * 100;
        let mut after = rng.below(records.saturating_sub(span).max(1));
        let mut total = Duration::ZERO;
        for _ in 0..WALK_PAGES {
            let (status, answer, elapsed) = api
                .get(&format!("/api/v1/journal?after={after}&limit=100"))
                .await?;
            total += elapsed;
            pages.saturating_record(micros(elapsed));
            returned += answer_rows(&answer);
            match (status, answer["next"].as_u64()) {
                (StatusCode::OK, Some(next)) => after = next,
                (StatusCode::OK, None) => break,
                _ => {
                    errors += 1;
                    break;
                }
            }
        }
        totals.saturating_record(micros(total));
    }
    rows.push(Row::new(
        "deep paging, each page",
        &pages,
        returned as f64 / pages.len().max(1) as f64,
        errors,
        true,
    ));
    rows.push(Row::new(
        "deep paging, 50-page walk (total)",
        &totals,
        returned as f64 / walks as f64,
        errors,
        false,
    ));

    print_table(records, requests, &rows);
    let failed: u64 = rows.iter().map(|r| r.errors).sum();
    if failed > 0 {
        bail!("{failed} requests failed (see above)");
    }
    Ok(())
}

/// The agents and alerts in the journal, for picking random ones.
fn fleet_of(path: &Path, records: u64) -> Result<Fleet> {
    let reader = JournalReader::open(path)?;
    let mut alerts = Vec::new();
    let mut after = 0;
    loop {
        let page = reader.records(&Query {
            after_seq: after,
            kind: Some("alert".into()),
            limit: 1000,
            ..Query::default()
        })?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        alerts.extend(page.iter().map(|r| r.seq));
    }
    if alerts.is_empty() {
        bail!("the journal holds no alert");
    }
    Ok(Fleet {
        records,
        agents: (0..AGENTS).map(agent_name).collect(),
        alerts,
    })
}

/// How many items the answer's list holds (its first array field; 1 for a verification).
fn answer_rows(answer: &Value) -> usize {
    answer
        .as_object()
        .and_then(|o| o.values().find_map(Value::as_array).map(Vec::len))
        .unwrap_or(1)
}

// === Results ===

fn histogram() -> Histogram<u64> {
    // 1 µs to 10 min, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3)
        .unwrap_or_else(|_| unreachable!("constant histogram bounds are valid"))
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

struct Row {
    name: String,
    n: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    items: f64,
    errors: u64,
    /// Whether the 100 ms p99 target applies.
    journal_query: bool,
}

impl Row {
    fn new(name: &str, h: &Histogram<u64>, items: f64, errors: u64, journal_query: bool) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            name: name.to_owned(),
            n: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
            items,
            errors,
            journal_query,
        }
    }
}

fn print_table(records: u64, requests: usize, rows: &[Row]) {
    println!(
        "\ncontrol plane over {records} journal records ({requests} requests per class, one at a time; ms)\n"
    );
    println!("| route | n | p50 | p99 | max | items/answer | p99 ≤ {TARGET_P99_MS:.0} ms |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for r in rows {
        let target = match (r.journal_query, r.p99_ms <= TARGET_P99_MS) {
            (false, _) => "",
            (true, true) => "met",
            (true, false) => "MISSED",
        };
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.1} | {target} |",
            r.name, r.n, r.p50_ms, r.p99_ms, r.max_ms, r.items
        );
    }
    println!();
    for r in rows {
        println!(
            "{}",
            json!({
                "bench": "control_plane",
                "records": records,
                "route": r.name,
                "n": r.n,
                "p50_ms": r.p50_ms,
                "p99_ms": r.p99_ms,
                "max_ms": r.max_ms,
                "items_per_answer": r.items,
                "errors": r.errors,
            })
        );
    }
}
