//! OpenTelemetry export from a real `warden up`: a small OTLP/HTTP collector in the test
//! receives the spans of MCP requests, while Warden runs and when it stops; a collector that
//! is missing or misconfigured never stops Warden.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError, channel};
use std::time::{Duration, Instant};

use serde_json::json;
use support::up::{add_agent, exchange, files_setup};
use support::{HANG_GUARD, Setup, warden_bin};

/// One request the collector received.
struct Export {
    method: String,
    path: String,
    content_type: String,
    body: Vec<u8>,
}

/// A minimal OTLP/HTTP collector on a free loopback port: answers every request `200` and
/// reports it.
fn collector() -> (SocketAddr, Receiver<Export>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let tx = tx.clone();
            std::thread::spawn(move || serve(stream, &tx));
        }
    });
    (addr, rx)
}

/// Serves the requests of one connection (the exporter keeps it alive between exports).
fn serve(stream: TcpStream, tx: &Sender<Export>) {
    let _ = stream.set_read_timeout(Some(HANG_GUARD));
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let (mut length, mut content_type) = (0usize, String::new());
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                } else if k.eq_ignore_ascii_case("content-type") {
                    content_type = v.trim().to_owned();
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if writer
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
        let export = Export {
            method,
            path,
            content_type,
            body,
        };
        if tx.send(export).is_err() {
            return;
        }
    }
}

/// A running `warden up` with OTLP export configured by `env`.
struct Warden {
    child: Child,
    addr: SocketAddr,
    /// Kept for its temporary directory.
    _setup: Setup,
}

impl Drop for Warden {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(setup: Setup, env: &[(&str, String)]) -> Warden {
    let mut cmd = Command::new(warden_bin());
    cmd.args(["up", "--listen", "127.0.0.1:0", "--config"])
        .arg(setup.config())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for name in OTEL_VARS {
        cmd.env_remove(name);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = support::lines_of(stdout);
    let mut addr = None;
    loop {
        let line = lines
            .recv_timeout(HANG_GUARD)
            .expect("warden up printed nothing");
        if let Some(rest) = line.strip_prefix("warden: serving MCP at http://") {
            addr = Some(rest.trim_end_matches("/mcp").parse().unwrap());
        }
        if line.contains("upstream \"files\" ready") {
            break;
        }
    }
    Warden {
        child,
        addr: addr.expect("warden up printed no address"),
        _setup: setup,
    }
}

/// Variables of the environment the test runs in that would change what it tests.
const OTEL_VARS: [&str; 8] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_TRACES_SAMPLER",
    "WARDEN_OTEL_LOG",
];

/// Opens an MCP session as `token`'s agent: one `POST /mcp`, answered 200.
fn initialize(w: &Warden, token: &str) {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "warden-tests", "version": "1"}}})
    .to_string();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nAuthorization: Bearer {token}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        w.addr,
        body.len()
    );
    let r = exchange(w.addr, &head, body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Waits for the first export (bounded), and checks it is a trace export carrying the span
/// of the MCP request.
fn first_export(exports: &Receiver<Export>, why: &str) -> Export {
    first_export_as(exports, why, "application/x-protobuf")
}

fn first_export_as(exports: &Receiver<Export>, why: &str, content_type: &str) -> Export {
    let export = match exports.recv_timeout(HANG_GUARD) {
        Ok(e) => e,
        Err(RecvTimeoutError::Timeout) => panic!("no export reached the collector {why}"),
        Err(RecvTimeoutError::Disconnected) => panic!("the collector stopped"),
    };
    assert_eq!(export.method, "POST");
    assert_eq!(export.path, "/v1/traces");
    assert_eq!(export.content_type, content_type);
    assert!(!export.body.is_empty(), "an empty export");
    let has = |needle: &[u8]| export.body.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"POST /mcp"), "the export lacks the MCP request's span");
    assert!(has(b"warden"), "the export does not name the service");
    export
}

fn terminate(w: &mut Warden) {
    let sent = Command::new("kill")
        .args(["-TERM", &w.child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        if let Some(status) = w.child.try_wait().unwrap() {
            assert!(status.success(), "warden up exited with {status}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "warden up did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn spans_are_exported_while_warden_runs() {
    let (collector, exports) = collector();
    let setup = files_setup("");
    let token = add_agent(&setup, "tester");
    let mut w = start(
        setup,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{collector}")),
            // Export each batch within a tenth of a second, not the default five.
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ],
    );
    initialize(&w, &token);
    first_export(&exports, "while warden ran");
    assert!(w.child.try_wait().unwrap().is_none(), "warden up stopped");
    terminate(&mut w);
}

#[test]
fn the_last_spans_are_flushed_when_warden_stops() {
    let (collector, exports) = collector();
    let setup = files_setup("");
    let token = add_agent(&setup, "tester");
    let mut w = start(
        setup,
        &[
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                format!("http://{collector}/v1/traces"),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
            // No scheduled export within the test: only the flush at shutdown sends spans.
            ("OTEL_BSP_SCHEDULE_DELAY", "3600000".to_owned()),
        ],
    );
    initialize(&w, &token);
    assert!(
        matches!(exports.try_recv(), Err(TryRecvError::Empty)),
        "an export was sent before the shutdown"
    );
    terminate(&mut w);
    first_export(&exports, "when warden stopped");
}

#[test]
fn spans_can_be_exported_as_json() {
    let (collector, exports) = collector();
    let setup = files_setup("");
    let token = add_agent(&setup, "tester");
    let mut w = start(
        setup,
        &[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://{collector}/"),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json".to_owned()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ],
    );
    initialize(&w, &token);
    let export = first_export_as(&exports, "as JSON", "application/json");
    let body: serde_json::Value = serde_json::from_slice(&export.body).expect("not JSON");
    assert!(body.get("resourceSpans").is_some(), "{body}");
    terminate(&mut w);
}

#[test]
fn a_collector_that_is_down_or_misconfigured_does_not_stop_warden() {
    // A port nobody listens on: its listener is closed before Warden starts.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    for (name, value) in [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{closed}")),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url".to_owned()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
    ] {
        let setup = files_setup("");
        let token = add_agent(&setup, "tester");
        let mut env = vec![(name, value.clone())];
        if name != "OTEL_EXPORTER_OTLP_ENDPOINT" {
            env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{closed}")));
        }
        env.push(("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()));
        let mut w = start(setup, &env);
        initialize(&w, &token);
        terminate(&mut w);
    }
}
