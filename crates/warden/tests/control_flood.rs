//! A flood of control-plane API requests does not slow the agents' gateway: while operators'
//! scripts hammer the heaviest routes (verification of the whole journal, full journal pages,
//! the fleet), every call an agent makes through the gateway is answered correctly; the
//! requests beyond `[control] max_concurrent_requests` are answered 503 with `Retry-After`
//! at once (none dropped or left hanging); and once the flood is over the API answers as
//! before. No latency is asserted: benchmarks measure that (scripts/bench-control-flood).

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Instant;

use serde_json::{Value, json};
use support::up::{
    EventStream, Up, add_agent, control_get_at, files_setup, open_session, post, rpc, start,
};
use support::{HANG_GUARD, warden};
use warden_core::{AgentId, Event, EventBody, SessionId};
use warden_journal::{Journal, JournalOptions, SyncMode};

/// Records already in the journal, so that verification and full pages are real work.
const PRIOR_RECORDS: u64 = 5_000;
/// Threads of the flood, and the requests each sends at least: each goes on until some
/// request was shed (within the hang guard), since how many are in flight at once is up to
/// the scheduler of a busy machine.
const FLOOD_THREADS: usize = 6;
const FLOOD_REQUESTS_EACH: usize = 20;
/// Requests the control plane works on at once in this test.
const LIMIT: usize = 2;
/// The agent's calls during the flood.
const AGENT_CALLS: u64 = 60;

/// The heavy routes the flood cycles through.
const HEAVY: [&str; 4] = [
    "/api/v1/journal/verify",
    "/api/v1/journal?limit=1000",
    "/api/v1/agents",
    "/api/v1/journal?order=newest&limit=1000",
];

/// Appends `n` records before `warden up` starts.
fn fill_journal(path: &std::path::Path, n: u64) {
    let options = JournalOptions {
        sync: SyncMode::Normal,
        ..JournalOptions::default()
    };
    let journal = Journal::open(path, options).unwrap();
    let mut last = None;
    for i in 0..n {
        last = Some(journal.append_queued(&Event {
            time_ms: 1_700_000_000_000 + i64::try_from(i).unwrap(),
            agent: AgentId::new("earlier").unwrap(),
            session: SessionId::from_raw("earlier-session"),
            body: EventBody::AccessRefused {
                reason: "no bearer token".into(),
                remote: "127.0.0.1:5555".into(),
            },
        }));
    }
    if let Some(last) = last {
        last.wait().unwrap();
    }
    journal.close_blocking().unwrap();
}

/// What the flood saw.
#[derive(Default)]
struct Seen {
    sent: AtomicUsize,
    ok: AtomicUsize,
    shed: AtomicUsize,
}

#[test]
fn an_api_flood_does_not_slow_the_agents_gateway() {
    let s = files_setup("");
    let config = std::fs::read_to_string(s.config()).unwrap();
    std::fs::write(
        s.config(),
        format!(
            "{config}\n[control]\nlisten = \"127.0.0.1:0\"\nmax_concurrent_requests = {LIMIT}\n"
        ),
    )
    .unwrap();
    fill_journal(&s.path("journal.db"), PRIOR_RECORDS);
    let cfg = s.config().to_str().unwrap().to_owned();
    let (status, out, err) = warden(
        &["user", "add", "vic", "--role", "viewer", "--config", &cfg],
        s.dir.path(),
    );
    assert!(status.success(), "{err}");
    let operator = out
        .lines()
        .find(|l| l.starts_with("wdo_"))
        .unwrap()
        .to_owned();
    let agent = add_agent(&s, "tester");
    let up = start(s, &["files"]);
    let control: SocketAddr = up
        .startup_line("serving the control plane at")
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .parse()
        .unwrap();
    let sid = open_session(&up, &agent);

    // The flood: threads that each send a fixed number of heavy requests, then stop.
    let seen = Arc::new(Seen::default());
    let flooding = Arc::new(AtomicUsize::new(FLOOD_THREADS));
    let first_shed = Arc::new(AtomicBool::new(false));
    let go = Arc::new(Barrier::new(FLOOD_THREADS));
    let flood: Vec<_> = (0..FLOOD_THREADS)
        .map(|t| {
            let (seen, flooding, first_shed, go) = (
                seen.clone(),
                flooding.clone(),
                first_shed.clone(),
                go.clone(),
            );
            let operator = operator.clone();
            std::thread::spawn(move || {
                go.wait();
                let deadline = Instant::now() + HANG_GUARD;
                for i in 0.. {
                    let enough = i >= FLOOD_REQUESTS_EACH && first_shed.load(Ordering::SeqCst);
                    if enough || Instant::now() >= deadline {
                        break;
                    }
                    let path = HEAVY[(t + i) % HEAVY.len()];
                    seen.sent.fetch_add(1, Ordering::Relaxed);
                    let r = control_get_at(control, path, &operator);
                    match r.status {
                        200 => {
                            seen.ok.fetch_add(1, Ordering::Relaxed);
                        }
                        503 => {
                            assert_eq!(r.header("retry-after"), Some("1"), "{path}: {}", r.body);
                            let error = r.json()["error"].as_str().unwrap_or("").to_owned();
                            assert!(error.contains("busy"), "{path}: {}", r.body);
                            seen.shed.fetch_add(1, Ordering::Relaxed);
                            first_shed.store(true, Ordering::SeqCst);
                        }
                        other => panic!("{path}: {other} {}", r.body),
                    }
                }
                flooding.fetch_sub(1, Ordering::SeqCst);
            })
        })
        .collect();

    // The agent starts calling once the flood has filled the control plane's room.
    let deadline = Instant::now() + HANG_GUARD;
    while !first_shed.load(Ordering::SeqCst) && flooding.load(Ordering::SeqCst) > 0 {
        assert!(Instant::now() < deadline, "the flood never got going");
        std::thread::yield_now();
    }
    let mut during_flood = 0;
    for id in 1..=AGENT_CALLS {
        // Arguments that differ each time: identical calls in a row would be a runaway loop.
        let r = post(
            &up,
            Some(&agent),
            Some(&sid),
            &rpc(
                id,
                "tools/call",
                json!({"name": "files__echo", "arguments": {"call": id}}),
            ),
        );
        assert_eq!(r.status, 200, "call {id}: {}", r.body);
        let v = r.json();
        assert_eq!(v["id"], id, "{v}");
        assert!(v.get("error").is_none(), "call {id}: {v}");
        assert_ne!(v["result"]["isError"], true, "call {id}: {v}");
        let echoed: Value =
            serde_json::from_str(v["result"]["content"][0]["text"].as_str().unwrap_or(""))
                .unwrap_or_else(|e| panic!("call {id}: not the echo ({e}): {v}"));
        assert_eq!(echoed["arguments"]["call"], id, "{v}");
        if flooding.load(Ordering::SeqCst) > 0 {
            during_flood += 1;
        }
    }
    for thread in flood {
        thread.join().expect("a flood thread failed");
    }

    // Every flood request was answered: served, or shed with Retry-After.
    let (sent, ok, shed) = (
        seen.sent.load(Ordering::Relaxed),
        seen.ok.load(Ordering::Relaxed),
        seen.shed.load(Ordering::Relaxed),
    );
    assert_eq!(ok + shed, sent);
    assert!(sent >= FLOOD_THREADS * FLOOD_REQUESTS_EACH);
    assert!(
        shed > 0,
        "the flood never went beyond the limit ({ok} served)"
    );
    assert!(ok > 0, "the flood was shed entirely");
    assert!(
        during_flood > 0,
        "no agent call overlapped the flood ({ok} served, {shed} shed)"
    );

    // Afterwards the API answers normally again.
    let r = control_get_at(control, "/api/v1/journal/verify", &operator);
    assert_eq!(r.status, 200, "{}", r.body);
    let report = r.json();
    assert_eq!(report["intact"], true, "{report}");
    assert!(
        report["records_checked"].as_u64().unwrap() >= PRIOR_RECORDS,
        "{report}"
    );
    let r = control_get_at(control, "/api/v1/agents", &operator);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("tester"), "{}", r.body);

    // Warden stops cleanly on SIGTERM, the control plane's runtime with it, even with an
    // operator's live stream open.
    let stream = EventStream::open(
        control,
        &format!(
            "GET /api/v1/stream?after=0 HTTP/1.1\r\nhost: {control}\r\n\
             authorization: Bearer {operator}\r\n\r\n"
        ),
        b"",
    );
    assert_eq!(stream.status, 200);
    stop_cleanly(up);
    drop(stream);
}

/// SIGTERM, then `warden up` must exit with success on its own.
fn stop_cleanly(mut up: Up) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &up.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + HANG_GUARD;
    let exited = loop {
        if let Some(status) = up.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "warden did not exit after SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert!(exited.success(), "{exited}");
}
