//! The HTTP machinery against a small in-process Streamable HTTP MCP server that counts what it
//! sees: every call, session and DELETE the load generator reports must have happened, and a
//! stall must show up in the latency measured from the schedule.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use serde_json::{Value, json};
use warden_loadgen::rate::{self, RateOptions};
use warden_loadgen::saturate::{self, SaturateOptions};
use warden_loadgen::sessions::{self, SessionsOptions};
use warden_loadgen::{CallSpec, Connection, LoadError, Target};

const TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Fake {
    sessions: Mutex<HashSet<String>>,
    opened: AtomicU64,
    calls: AtomicU64,
    deletes: AtomicU64,
    /// The call (counted from 0, warm-ups included) that is held back for `STALL`.
    stall_call: Option<u64>,
    /// A delay before every answer to a call.
    every_call: Duration,
}

const STALL: Duration = Duration::from_millis(300);

fn response(status: StatusCode, content_type: &str, body: String) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Body::from(body))
        .unwrap()
}

fn known_session(fake: &Fake, headers: &HeaderMap) -> bool {
    headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|id| fake.sessions.lock().unwrap().contains(id))
}

async fn handle_post(State(fake): State<Arc<Fake>>, headers: HeaderMap, body: Bytes) -> Response {
    let message: Value = serde_json::from_slice(&body).unwrap();
    let method = message["method"].as_str().unwrap_or("");
    if method == "initialize" {
        let n = fake.opened.fetch_add(1, Ordering::SeqCst);
        let id = format!("session-{n}");
        fake.sessions.lock().unwrap().insert(id.clone());
        let result = json!({"jsonrpc": "2.0", "id": message["id"], "result": {
            "protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
            "serverInfo": {"name": "fake", "version": "1"}}});
        let mut r = response(StatusCode::OK, "application/json", result.to_string());
        r.headers_mut()
            .insert("mcp-session-id", id.parse().unwrap());
        return r;
    }
    if !known_session(&fake, &headers) || !headers.contains_key("mcp-protocol-version") {
        return response(
            StatusCode::NOT_FOUND,
            "text/plain",
            "no such session".into(),
        );
    }
    match method {
        "notifications/initialized" => response(StatusCode::ACCEPTED, "text/plain", String::new()),
        "tools/call" => {
            let n = fake.calls.fetch_add(1, Ordering::SeqCst);
            if fake.stall_call == Some(n) {
                tokio::time::sleep(STALL).await;
            }
            tokio::time::sleep(fake.every_call).await;
            let refused = message["params"]["name"] == "refused";
            let result = json!({"jsonrpc": "2.0", "id": message["id"], "result": {
                "content": [{"type": "text", "text": message["params"]["arguments"].to_string()}],
                "isError": refused}});
            if n % 2 == 0 {
                response(StatusCode::OK, "application/json", result.to_string())
            } else {
                // An event stream with a notification before the answer, as servers send.
                let progress = json!({"jsonrpc": "2.0", "method": "notifications/progress",
                    "params": {"progressToken": 1, "progress": 1}});
                let body = format!(
                    "event: message\ndata: {progress}\n\nevent: message\ndata: {result}\n\n"
                );
                response(StatusCode::OK, "text/event-stream", body)
            }
        }
        _ => response(StatusCode::BAD_REQUEST, "text/plain", "unknown".into()),
    }
}

async fn handle_delete(State(fake): State<Arc<Fake>>, headers: HeaderMap) -> Response {
    let id = headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if fake.sessions.lock().unwrap().remove(id) {
        fake.deletes.fetch_add(1, Ordering::SeqCst);
        response(StatusCode::OK, "text/plain", String::new())
    } else {
        response(StatusCode::NOT_FOUND, "text/plain", String::new())
    }
}

async fn serve(fake: Fake) -> (Arc<Fake>, Connection) {
    let fake = Arc::new(fake);
    let app = Router::new()
        .route("/mcp", post(handle_post).delete(handle_delete))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let target = Target::Http {
        url: format!("http://{addr}/mcp"),
        token: None,
    };
    let connection = Connection::open(&target, TIMEOUT).await.unwrap();
    (fake, connection)
}

fn echo() -> CallSpec {
    CallSpec::new("echo", &json!({"text": "hi"}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturate_reports_exactly_the_calls_the_server_answered() {
    let (fake, connection) = serve(Fake::default()).await;
    let options = SaturateOptions {
        concurrency: 4,
        duration: Duration::from_millis(300),
        timeout: TIMEOUT,
    };
    let report = saturate::run(&connection, &echo(), &options).await.unwrap();
    assert!(report.tally.errors.is_empty(), "{:?}", report.tally);
    // One warm-up call per worker is sent but not counted.
    assert_eq!(report.tally.ok + 4, fake.calls.load(Ordering::SeqCst));
    assert!(
        report.tally.ok >= 2,
        "both JSON and event-stream answers were read"
    );
    assert_eq!(report.latency.count, report.tally.ok);
    assert!(report.calls_per_s > 0.0);
    assert_eq!(fake.opened.load(Ordering::SeqCst), 4);
    assert_eq!(fake.deletes.load(Ordering::SeqCst), 4);
    assert_eq!(report.close_failures, 0);
    assert!(fake.sessions.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_counts_against_every_call_that_fell_due_during_it() {
    // One lane, 100 calls/s: call 11 (after the warm-up and 10 more) is held back for
    // 300 ms, so the ~30 calls due meanwhile wait. Measured from the schedule they are late;
    // measured from their actual send only the stalled one is slow.
    let (fake, connection) = serve(Fake {
        stall_call: Some(11),
        ..Fake::default()
    })
    .await;
    let options = RateOptions {
        rate: 100.0,
        duration: Duration::from_secs(1),
        lanes: 1,
        timeout: TIMEOUT,
    };
    let report = rate::run(&connection, &echo(), &options).await.unwrap();
    assert_eq!(report.scheduled, 100);
    assert_eq!(report.tally.ok, 100, "{:?}", report.tally);
    assert_eq!(fake.calls.load(Ordering::SeqCst), 101);
    let stall_us = STALL.as_micros() as f64;
    assert!(
        report.latency.max_us >= stall_us * 0.95,
        "{:?}",
        report.latency
    );
    assert!(
        report.service.max_us >= stall_us * 0.95,
        "{:?}",
        report.service
    );
    // ~20 of the 100 calls were due more than 100 ms before they could be sent.
    assert!(report.latency.p90_us > 100_000.0, "{:?}", report.latency);
    assert!(report.service.p90_us < 100_000.0, "{:?}", report.service);
    assert!(report.send_lag.p90_us > 50_000.0, "{:?}", report.send_lag);
    assert_eq!(report.send_lag.count, 100);
    assert_eq!(fake.deletes.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_is_given_up_one_timeout_after_the_schedule() {
    // 20 calls due within 200 ms on one lane, each taking 200 ms: only those sent within the
    // schedule plus one timeout (1 s) go out; the rest are reported as not sent.
    let (fake, connection) = serve(Fake {
        every_call: Duration::from_millis(200),
        ..Fake::default()
    })
    .await;
    let options = RateOptions {
        rate: 100.0,
        duration: Duration::from_millis(200),
        lanes: 1,
        timeout: Duration::from_secs(1),
    };
    let started = std::time::Instant::now();
    let report = rate::run(&connection, &echo(), &options).await.unwrap();
    let took = started.elapsed();
    assert_eq!(report.scheduled, 20);
    let not_sent = report.tally.errors.get("not_sent").copied().unwrap_or(0);
    assert_eq!(report.tally.ok + not_sent, 20, "{:?}", report.tally);
    assert!((3..=8).contains(&report.tally.ok), "{:?}", report.tally);
    assert_eq!(report.tally.ok + 1, fake.calls.load(Ordering::SeqCst));
    assert!(took < Duration::from_secs(4), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_opened_held_and_deleted() {
    let (fake, connection) = serve(Fake::default()).await;
    let options = SessionsOptions {
        sessions: 300,
        concurrency: 8,
        pid: Some(std::process::id()),
        idle: Duration::ZERO,
        timeout: TIMEOUT,
    };
    let report = sessions::run(&connection, &options).await.unwrap();
    assert_eq!(report.opened.ok, 300, "{:?}", report.opened);
    assert_eq!(fake.opened.load(Ordering::SeqCst), 300);
    assert_eq!(report.initialize.count, 300);
    assert_eq!(report.closed, 300);
    assert_eq!(fake.deletes.load(Ordering::SeqCst), 300);
    assert!(fake.sessions.lock().unwrap().is_empty());
    assert!(report.rss_before_kib.is_some() && report.rss_open_kib.is_some());
    assert!(report.bytes_per_session.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_warm_up_stops_the_run_with_the_reason() {
    let (fake, connection) = serve(Fake::default()).await;
    let options = SaturateOptions {
        concurrency: 2,
        duration: Duration::from_secs(5),
        timeout: TIMEOUT,
    };
    let spec = CallSpec::new("refused", &json!({}));
    match saturate::run(&connection, &spec, &options).await {
        Err(e @ LoadError::Tool(_)) => assert_eq!(e.kind(), "tool_error"),
        other => panic!("{other:?}"),
    }
    // The first refusal aborts the warm-up, so the other warm-up call may never go out.
    let calls = fake.calls.load(Ordering::SeqCst);
    assert!(
        (1..=2).contains(&calls),
        "only warm-ups were sent, not {calls}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_target_is_a_transport_error() {
    // Bind and drop a listener: nothing listens on that port any more.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let target = Target::Http {
        url: format!("http://{addr}/mcp"),
        token: Some("t".into()),
    };
    let connection = Connection::open(&target, TIMEOUT).await.unwrap();
    let err = connection.session(TIMEOUT).await.unwrap_err();
    assert_eq!(err.kind(), "transport", "{err}");
    let bad = Target::Http {
        url: "https://example.invalid/mcp".into(),
        token: None,
    };
    assert!(matches!(
        Connection::open(&bad, TIMEOUT).await,
        Err(LoadError::BadUrl { .. })
    ));
}
