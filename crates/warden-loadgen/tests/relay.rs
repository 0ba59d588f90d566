//! The do-nothing relay in front of the example MCP server, over both of its transports: calls
//! come back with the server's own answers, sessions pass through (HTTP), and what the relay
//! cannot relay is refused with a status, not dropped.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::example_server;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use warden_loadgen::relay::{Relay, RelayOptions};
use warden_loadgen::saturate::{self, SaturateOptions};
use warden_loadgen::{CallSpec, Connection, Target};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A relay serving in the background, and how to stop it.
struct Running {
    address: SocketAddr,
    stop: oneshot::Sender<()>,
    served: JoinHandle<()>,
}

impl Running {
    async fn start(upstream: Target) -> Self {
        let relay = Relay::bind(&RelayOptions {
            listen: "127.0.0.1:0".into(),
            upstream,
            timeout: TIMEOUT,
        })
        .await
        .unwrap();
        let address = relay.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(relay.serve(async move {
            let _ = stopped.await;
        }));
        Self {
            address,
            stop,
            served,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/mcp", self.address)
    }

    async fn stop(self) {
        self.stop.send(()).unwrap();
        tokio::time::timeout(TIMEOUT, self.served)
            .await
            .expect("the relay stops when told")
            .unwrap();
    }
}

/// A client of the relay at `url`.
async fn connect(url: &str) -> Connection {
    let target = Target::Http {
        url: url.to_owned(),
        token: None,
    };
    Connection::open(&target, TIMEOUT).await.unwrap()
}

/// One `echo` through the relay, and what came back.
async fn echo_through(url: &str, text: &str) -> Value {
    let connection = connect(url).await;
    let mut session = connection.session(TIMEOUT).await.unwrap();
    let params = json!({"name": "echo", "arguments": {"text": text}}).to_string();
    let result = session
        .request("tools/call", &params, TIMEOUT)
        .await
        .unwrap();
    if session.is_named() {
        session.close(TIMEOUT).await.unwrap();
    }
    let text = result
        .pointer("/content/0/text")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no text in {result}"));
    serde_json::from_str(text).unwrap()
}

async fn saturate_through(url: &str) -> saturate::SaturateReport {
    let connection = connect(url).await;
    let options = SaturateOptions {
        concurrency: 4,
        duration: Duration::from_millis(300),
        timeout: TIMEOUT,
    };
    let spec = CallSpec::new("echo", &json!({"text": "load"}));
    saturate::run(&connection, &spec, &options).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_to_a_stdio_server() {
    let root = tempfile::tempdir().unwrap();
    let relay = Running::start(stdio_server(root.path())).await;
    let echoed = echo_through(&relay.url(), "through the relay").await;
    assert_eq!(echoed["arguments"], json!({"text": "through the relay"}));

    // Many sessions at once share the one server: every call is answered, to its own caller.
    let report = saturate_through(&relay.url()).await;
    assert!(report.tally.errors.is_empty(), "{:?}", report.tally);
    assert!(report.tally.ok > 0);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_to_an_http_server_with_its_sessions() {
    let root = tempfile::tempdir().unwrap();
    let (server, url) = http_server(root.path());
    let relay = Running::start(Target::Http { url, token: None }).await;
    let echoed = echo_through(&relay.url(), "over HTTP").await;
    assert_eq!(echoed["arguments"], json!({"text": "over HTTP"}));

    // The server names each session and requires its id on every later request, and
    // `saturate` ends each with DELETE: all of that went through the relay.
    let report = saturate_through(&relay.url()).await;
    assert!(report.tally.errors.is_empty(), "{:?}", report.tally);
    assert!(report.tally.ok > 0);
    assert_eq!(report.close_failures, 0);
    relay.stop().await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_stdio_relay_cannot_relay_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let relay = Running::start(stdio_server(root.path())).await;
    let address = relay.address;
    let answers = tokio::task::spawn_blocking(move || {
        [
            raw(address, "GET", ""),
            raw(address, "POST", "{not json"),
            raw(
                address,
                "POST",
                r#"{"jsonrpc":"2.0","method":"notifications/x"}"#,
            ),
        ]
    })
    .await
    .unwrap();
    assert!(answers[0].starts_with("HTTP/1.1 405"), "{}", answers[0]);
    assert!(answers[1].starts_with("HTTP/1.1 400"), "{}", answers[1]);
    assert!(answers[2].starts_with("HTTP/1.1 202"), "{}", answers[2]);
    relay.stop().await;
}

#[tokio::test]
async fn an_upstream_that_is_not_http_is_refused_at_start() {
    let bound = Relay::bind(&RelayOptions {
        listen: "127.0.0.1:0".into(),
        upstream: Target::Http {
            url: "https://127.0.0.1:1/mcp".into(),
            token: None,
        },
        timeout: TIMEOUT,
    })
    .await;
    assert!(bound.is_err());
}

/// The example server over stdio, serving `root`.
fn stdio_server(root: &std::path::Path) -> Target {
    Target::Stdio {
        command: vec![
            example_server().display().to_string(),
            "--root".into(),
            root.display().to_string(),
        ],
    }
}

/// A child process killed when dropped, so that a failing test leaves nothing running.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The example server's Streamable HTTP endpoint, and its URL.
fn http_server(root: &std::path::Path) -> (KillOnDrop, String) {
    let mut child = KillOnDrop(
        Command::new(example_server())
            .arg("--root")
            .arg(root)
            .args(["--http", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, url)
}

/// One HTTP/1.1 request on its own connection; the whole answer as text.
fn raw(address: SocketAddr, method: &str, body: &str) -> String {
    let mut tcp = TcpStream::connect(address).unwrap();
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(
        tcp,
        "{method} /mcp HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    answer
}
