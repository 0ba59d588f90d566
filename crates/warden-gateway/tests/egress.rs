//! The egress proxy end to end: real sockets on 127.0.0.1, a real journal, real policies.
//! Destination servers are small hyper servers (and a TCP echo server for tunnels) that
//! record what reached them, so a test can tell that a refused request never left Warden.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Bytes, Frame, Incoming};
use hyper::header::HeaderMap;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use warden_core::{AgentId, SessionId};
use warden_gateway::Guard;
use warden_gateway::egress::{EgressOptions, EgressProxy};
use warden_journal::{Journal, JournalOptions, JournalReader, JournalRecord, Query};
use warden_policy::{PolicySet, SourceFile};

/// How long a test waits for something that should happen at once (a journal record, a
/// closed connection) before failing.
const DEADLINE: Duration = Duration::from_secs(10);

// === the proxy under test ===

struct Proxy {
    addr: SocketAddr,
    journal: std::path::PathBuf,
    stop: Option<oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

async fn start(policies: &str, options: EgressOptions) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let journal = Journal::open(&path, JournalOptions::default()).unwrap();
    let set = PolicySet::from_sources(&[SourceFile::new("egress.cedar", policies)], &[]).unwrap();
    let guard = Guard::new(
        AgentId::new("a").unwrap(),
        SessionId::from_random([1; 16]),
        Arc::new(set),
        journal,
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let proxy = EgressProxy::new(guard, options);
    let served = tokio::spawn(proxy.serve(listener, async {
        let _ = stopped.await;
    }));
    Proxy {
        addr,
        journal: path,
        stop: Some(stop),
        served: Some(served),
        _dir: dir,
    }
}

impl Proxy {
    fn records(&self) -> Vec<JournalRecord> {
        JournalReader::open(&self.journal)
            .unwrap()
            .records(&Query::default())
            .unwrap()
    }

    fn record(&self, seq: u64) -> JournalRecord {
        self.records()
            .into_iter()
            .find(|r| r.seq == seq)
            .unwrap_or_else(|| panic!("no record {seq}"))
    }

    /// The outcome record of decision `seq`, waiting for it (outcomes are queued).
    async fn outcome(&self, seq: u64) -> Value {
        let start = Instant::now();
        loop {
            if let Some(r) = self
                .records()
                .into_iter()
                .find(|r| r.kind == "outcome" && r.body["decision_seq"] == seq)
            {
                return r.body;
            }
            assert!(start.elapsed() < DEADLINE, "no outcome for decision {seq}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(mut self) {
        self.halt().await;
    }

    /// Stops the proxy and waits for it, keeping the journal readable.
    async fn halt(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            tokio::time::timeout(DEADLINE, served)
                .await
                .expect("the proxy stops")
                .unwrap()
                .unwrap();
        }
    }
}

fn loopback() -> EgressOptions {
    EgressOptions {
        allow_loopback: true,
        ..EgressOptions::default()
    }
}

const ALLOW_LOCAL: &str = r#"permit(principal == Agent::"a", action == Action::"http_request", resource == Host::"127.0.0.1");"#;

// === destinations ===

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    uri: String,
    headers: HeaderMap,
    body: Bytes,
}

/// A hyper server that records every request and answers `hello <method> <path>`, or
/// streams the chunks a test feeds it on `/stream`.
#[derive(Clone)]
struct Upstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
    stream: Arc<Mutex<Option<mpsc::Receiver<Bytes>>>>,
}

async fn upstream() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = Upstream {
        addr: listener.local_addr().unwrap(),
        seen: Arc::default(),
        connections: Arc::default(),
        stream: Arc::default(),
    };
    let state = up.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            state.connections.fetch_add(1, Ordering::SeqCst);
            let state = state.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let state = state.clone();
                    async move { Ok::<_, hyper::Error>(state.answer(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    up
}

impl Upstream {
    async fn answer(&self, req: Request<Incoming>) -> Response<TestBody> {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let path = parts.uri.path().to_owned();
        self.seen.lock().unwrap().push(Seen {
            method: parts.method.to_string(),
            uri: parts.uri.to_string(),
            headers: parts.headers,
            body,
        });
        if path == "/stream"
            && let Some(rx) = self.stream.lock().unwrap().take()
        {
            return Response::new(TestBody::Chunks(rx));
        }
        let text = format!("hello {} {path}", parts.method);
        Response::builder()
            .header("x-from", "upstream")
            .header("keep-alive", "timeout=5")
            .body(TestBody::Full(Full::new(Bytes::from(text))))
            .unwrap()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Connections accepted so far. A request made directly first makes the count exact:
    /// the listener accepts in order, so any earlier connection was accepted before it.
    async fn connections_after_direct_request(&self) -> usize {
        let answer = send(self.addr, Request::get("/direct")).await;
        assert_eq!(answer.status, StatusCode::OK);
        self.connections.load(Ordering::SeqCst) - 1
    }
}

/// A destination's response body: whole, or chunks fed by the test.
enum TestBody {
    Full(Full<Bytes>),
    Chunks(mpsc::Receiver<Bytes>),
}

impl Body for TestBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            TestBody::Full(full) => Pin::new(full).poll_frame(cx),
            TestBody::Chunks(rx) => rx.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b)))),
        }
    }
}

/// A TCP server that echoes every byte.
async fn echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

// === clients ===

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn seq(&self) -> u64 {
        self.headers["warden-journal-seq"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    }
}

/// Sends one request on a fresh connection to `to` (the proxy, or a destination directly).
async fn send(to: SocketAddr, req: hyper::http::request::Builder) -> Answer {
    send_body(to, req, Bytes::new()).await
}

async fn send_body(to: SocketAddr, req: hyper::http::request::Builder, body: Bytes) -> Answer {
    let mut sender = connect(to).await;
    let response = sender
        .send_request(req.body(Full::new(body)).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

async fn connect(to: SocketAddr) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let tcp = TcpStream::connect(to).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// Writes `bytes` raw and reads until the proxy closes the connection (or `DEADLINE`).
async fn raw(to: SocketAddr, bytes: &[u8]) -> String {
    let mut tcp = TcpStream::connect(to).await.unwrap();
    // The proxy may answer and close before reading everything: that is not a failure.
    let _ = tcp.write_all(bytes).await;
    read_to_close(&mut tcp).await
}

async fn read_to_close(tcp: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(DEADLINE, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the proxy did not close the connection"),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads a response head (up to the blank line) without waiting for the connection to end.
async fn read_head(tcp: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(DEADLINE, tcp.read(&mut byte))
            .await
            .expect("a response head")
            .unwrap();
        assert!(
            n == 1,
            "connection closed mid-head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

// === plain HTTP ===

#[tokio::test]
async fn allowed_get_is_forwarded_intact_and_journaled() {
    let up = upstream().await;
    let proxy = start(ALLOW_LOCAL, loopback()).await;
    let uri = format!("http://{}/v1/items?q=1", up.addr);
    let answer = send(proxy.addr, Request::get(&uri)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "hello GET /v1/items");
    assert_eq!(answer.headers["x-from"], "upstream");
    assert!(
        answer.headers.get("keep-alive").is_none(),
        "hop-by-hop header came back"
    );

    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].uri, "/v1/items?q=1", "forwarded in origin form");
    assert_eq!(seen[0].headers["host"], up.addr.to_string().as_str());

    let records = proxy.records();
    let decision = records.iter().find(|r| r.kind == "decision").unwrap();
    assert_eq!(decision.body["action"], "http_request");
    assert_eq!(decision.body["target"], "127.0.0.1");
    assert_eq!(decision.body["effect"], "allow");
    assert_eq!(decision.body["args"]["method"], "GET");
    assert_eq!(decision.body["args"]["port"], up.addr.port());
    assert_eq!(decision.body["args"]["path"], "/v1/items?q=1");
    let outcome = proxy.outcome(decision.seq).await;
    assert_eq!(outcome["outcome"], "ok");
    let len = "hello GET /v1/items".len();
    assert_eq!(
        outcome["detail"],
        format!("200, {len} bytes in, 0 bytes out")
    );
    proxy.stop().await;
}

#[tokio::test]
async fn request_bodies_reach_the_destination_and_are_counted() {
    let up = upstream().await;
    let proxy = start(ALLOW_LOCAL, loopback()).await;
    let uri = format!("http://{}/upload", up.addr);
    let body = Bytes::from(vec![b'x'; 100_000]);
    let answer = send_body(proxy.addr, Request::post(&uri), body.clone()).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(up.seen()[0].body, body);
    let decision = proxy.records()[0].seq;
    let outcome = proxy.outcome(decision).await;
    let detail = outcome["detail"].as_str().unwrap();
    assert!(detail.ends_with("100000 bytes out"), "{detail}");
    proxy.stop().await;
}

#[tokio::test]
async fn responses_are_streamed_not_buffered() {
    let up = upstream().await;
    let (feed, rx) = mpsc::channel(4);
    *up.stream.lock().unwrap() = Some(rx);
    let proxy = start(ALLOW_LOCAL, loopback()).await;
    let mut sender = connect(proxy.addr).await;
    let uri = format!("http://{}/stream", up.addr);
    let response = sender
        .send_request(Request::get(&uri).body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let mut body = response.into_body();
    feed.send(Bytes::from_static(b"first")).await.unwrap();
    // The first chunk arrives while the destination still holds the rest back.
    let frame = tokio::time::timeout(DEADLINE, body.frame())
        .await
        .expect("the first chunk, before the body ends")
        .unwrap()
        .unwrap();
    assert_eq!(frame.into_data().unwrap(), "first");
    feed.send(Bytes::from_static(b"second")).await.unwrap();
    drop(feed);
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(rest, "second");
    proxy.stop().await;
}

#[tokio::test]
async fn denied_get_is_refused_with_the_reason_and_never_leaves() {
    let up = upstream().await;
    let policy = r#"permit(principal == Agent::"a", action == Action::"http_request", resource == Host::"example.com");"#;
    let proxy = start(policy, loopback()).await;
    let uri = format!("http://{}/x", up.addr);
    let answer = send(proxy.addr, Request::get(&uri)).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(
        answer.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(answer.headers["warden-decision"], "deny");
    assert_eq!(
        answer.body,
        format!(
            "Warden refused GET {uri}: no policy permits agent \"a\" to http_request on \"127.0.0.1\"\n"
        )
    );
    let record = proxy.record(answer.seq());
    assert_eq!(record.kind, "decision");
    assert_eq!(record.body["effect"], "deny");
    assert_eq!(record.body["target"], "127.0.0.1");
    assert_eq!(up.connections_after_direct_request().await, 0);
    proxy.stop().await;
}

#[tokio::test]
async fn ask_is_a_refusal_that_says_approval_is_required() {
    let up = upstream().await;
    let policy = r#"@ask("new destination")
permit(principal == Agent::"a", action == Action::"http_request", resource == Host::"127.0.0.1");"#;
    let proxy = start(policy, loopback()).await;
    let answer = send(proxy.addr, Request::get(format!("http://{}/", up.addr))).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.headers["warden-decision"], "ask");
    assert!(answer.body.contains("requires approval"), "{}", answer.body);
    assert!(answer.body.contains("new destination"), "{}", answer.body);
    assert_eq!(up.connections_after_direct_request().await, 0);
    proxy.stop().await;
}

#[tokio::test]
async fn policies_see_the_path() {
    let up = upstream().await;
    let policy = r#"permit(principal == Agent::"a", action == Action::"http_request", resource == Host::"127.0.0.1")
  when { context.path like "/v1/*" };"#;
    let proxy = start(policy, loopback()).await;
    let ok = send(proxy.addr, Request::get(format!("http://{}/v1/a", up.addr))).await;
    assert_eq!(ok.status, StatusCode::OK);
    let no = send(proxy.addr, Request::get(format!("http://{}/v2/a", up.addr))).await;
    assert_eq!(no.status, StatusCode::FORBIDDEN);
    let paths: Vec<_> = up.seen().into_iter().map(|s| s.uri).collect();
    assert_eq!(paths, ["/v1/a"]);
    proxy.stop().await;
}

#[tokio::test]
async fn a_path_is_decided_in_the_form_the_destination_reads() {
    let up = upstream().await;
    let policy = r#"permit(principal == Agent::"a", action == Action::"http_request", resource == Host::"127.0.0.1")
  when { context.path like "/v1/*" };"#;
    let proxy = start(policy, loopback()).await;
    for sneaky in [
        "/v1/../v2/a",
        "/v1/%2e%2e/v2/a",
        "/v1//../v2/a",
        "/v1/.%2E/v2/a",
    ] {
        let no = send(
            proxy.addr,
            Request::get(format!("http://{}{sneaky}", up.addr)),
        )
        .await;
        assert_eq!(no.status, StatusCode::FORBIDDEN, "{sneaky}");
        assert_eq!(proxy.record(no.seq()).body["args"]["path"], "/v2/a");
    }
    for ambiguous in ["/v1/..%2fv2/a", "/v1/..%5Cv2/a", "/v1/..;/v2/a"] {
        let no = send(
            proxy.addr,
            Request::get(format!("http://{}{ambiguous}", up.addr)),
        )
        .await;
        assert_eq!(no.status, StatusCode::BAD_REQUEST, "{ambiguous}");
        let record = proxy.record(no.seq());
        assert_eq!(record.body["effect"], "deny", "{ambiguous}");
        assert_eq!(record.body["args"]["path"], ambiguous);
    }
    // What is allowed is forwarded as decided.
    let ok = send(
        proxy.addr,
        Request::get(format!("http://{}/v1/x/../%7Ea", up.addr)),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    let paths: Vec<_> = up.seen().into_iter().map(|s| s.uri).collect();
    assert_eq!(paths, ["/v1/~a"], "nothing refused reached the destination");
    proxy.stop().await;
}

#[tokio::test]
async fn policies_see_the_method() {
    let up = upstream().await;
    let policy = r#"permit(principal == Agent::"a", action == Action::"http_request", resource == Host::"127.0.0.1")
  when { context.method == "GET" };"#;
    let proxy = start(policy, loopback()).await;
    let uri = format!("http://{}/items", up.addr);
    assert_eq!(
        send(proxy.addr, Request::get(&uri)).await.status,
        StatusCode::OK
    );
    let post = send(proxy.addr, Request::post(&uri)).await;
    assert_eq!(post.status, StatusCode::FORBIDDEN);
    assert!(
        post.body
            .starts_with(&format!("Warden refused POST {uri}:")),
        "{}",
        post.body
    );
    let methods: Vec<_> = up.seen().into_iter().map(|s| s.method).collect();
    assert_eq!(methods, ["GET"]);
    proxy.stop().await;
}

#[tokio::test]
async fn proxy_credentials_and_hop_headers_are_not_forwarded() {
    let up = upstream().await;
    let proxy = start(ALLOW_LOCAL, loopback()).await;
    let req = Request::get(format!("http://{}/", up.addr))
        .header("host", "evil.example")
        .header("proxy-authorization", "Basic c2VjcmV0")
        .header("proxy-connection", "keep-alive")
        .header("connection", "x-hop")
        .header("x-hop", "1")
        .header("authorization", "Bearer for-destination");
    assert_eq!(send(proxy.addr, req).await.status, StatusCode::OK);
    let seen = &up.seen()[0].headers;
    assert!(seen.get("proxy-authorization").is_none());
    assert!(seen.get("proxy-connection").is_none());
    assert!(seen.get("x-hop").is_none());
    assert_eq!(seen["authorization"], "Bearer for-destination");
    assert_eq!(
        seen["host"],
        up.addr.to_string().as_str(),
        "Host comes from the decision"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn names_are_resolved_by_warden() {
    let up = upstream().await;
    let policy = r#"permit(principal == Agent::"a", action == Action::"http_request", resource == Host::"localhost");"#;
    let proxy = start(policy, loopback()).await;
    let answer = send(
        proxy.addr,
        Request::get(format!("http://LocalHost:{}/named", up.addr.port())),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(
        up.seen()[0].headers["host"],
        format!("localhost:{}", up.addr.port()).as_str()
    );
    proxy.stop().await;
}

// === addresses Warden never reaches ===

#[tokio::test]
async fn non_canonical_ip_literals_are_refused_and_journaled() {
    let proxy = start(ALLOW_LOCAL, loopback()).await;
    let answer = send(proxy.addr, Request::get("http://0x7f.1/")).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.body.contains("non-canonical"), "{}", answer.body);
    let record = proxy.record(answer.seq());
    assert_eq!(record.body["effect"], "deny");
    assert_eq!(record.body["target"], "0x7f.1");
    proxy.stop().await;
}

#[tokio::test]
async fn loopback_is_refused_unless_allowed() {
    let up = upstream().await;
    let proxy = start(ALLOW_LOCAL, EgressOptions::default()).await;
    let answer = send(proxy.addr, Request::get(format!("http://{}/", up.addr))).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(answer.body.contains("loopback"), "{}", answer.body);
    let record = proxy.record(answer.seq());
    assert_eq!(record.body["effect"], "deny");
    assert!(record.body["reason"].as_str().unwrap().contains("loopback"));
    assert_eq!(up.connections_after_direct_request().await, 0);
    proxy.stop().await;
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_after_its_allow() {
    let up = upstream().await;
    let policy = r#"permit(principal == Agent::"a", action == Action::"http_request", resource == Host::"localhost");"#;
    let proxy = start(policy, EgressOptions::default()).await;
    let uri = format!("http://localhost:{}/", up.addr.port());
    let answer = send(proxy.addr, Request::get(&uri)).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(
        answer.body.contains("localhost resolved to"),
        "{}",
        answer.body
    );
    let records = proxy.records();
    let allow = records
        .iter()
        .find(|r| r.body["effect"] == "allow")
        .unwrap();
    let refusal = proxy.record(answer.seq());
    assert_eq!(refusal.body["effect"], "deny");
    assert!(refusal.seq > allow.seq);
    assert_eq!(proxy.outcome(allow.seq).await["outcome"], "cancelled");
    assert_eq!(up.connections_after_direct_request().await, 0);
    proxy.stop().await;
}

#[tokio::test]
async fn a_request_for_a_listener_of_the_sandbox_itself_says_to_connect_directly() {
    let up = upstream().await;
    let options = EgressOptions {
        protected: vec![up.addr],
        own_ports: vec![up.addr.port()],
        ..loopback()
    };
    let proxy = start(ALLOW_LOCAL, options).await;
    for host in ["127.0.0.1", "localhost"] {
        let uri = format!("http://{host}:{}/mcp", up.addr.port());
        let answer = send(proxy.addr, Request::post(&uri)).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{host}");
        assert!(
            answer.body.contains("connect to it directly"),
            "{}",
            answer.body
        );
    }
    // Not an attempt on Warden: nothing decided, nothing for the detectors.
    assert!(proxy.records().is_empty(), "{:?}", proxy.records());
    assert_eq!(up.connections_after_direct_request().await, 0);
    proxy.stop().await;
}

#[tokio::test]
async fn protected_addresses_are_refused_even_with_loopback_allowed() {
    let up = upstream().await;
    let options = EgressOptions {
        protected: vec![up.addr],
        ..loopback()
    };
    let proxy = start(ALLOW_LOCAL, options).await;
    let answer = send(proxy.addr, Request::get(format!("http://{}/", up.addr))).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(
        answer.body.contains("Warden's own ports"),
        "{}",
        answer.body
    );
    assert_eq!(proxy.record(answer.seq()).body["effect"], "deny");
    assert_eq!(up.connections_after_direct_request().await, 0);
    proxy.stop().await;
}

#[tokio::test]
async fn unreachable_destination_is_a_502_with_its_outcome() {
    // A port nobody listens on: bind one, learn it, close it.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = start(ALLOW_LOCAL, loopback()).await;
    let answer = send(proxy.addr, Request::get(format!("http://{closed}/"))).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    let decision = proxy.records()[0].seq;
    assert_eq!(proxy.outcome(decision).await["outcome"], "upstream_gone");
    proxy.stop().await;
}

// === tunnels ===

#[tokio::test]
async fn allowed_connect_tunnels_bytes_both_ways() {
    let echo = echo().await;
    let proxy = start(ALLOW_LOCAL, loopback()).await;
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    tcp.write_all(format!("CONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    tcp.write_all(b"ping through the tunnel").await.unwrap();
    let mut back = [0u8; 23];
    tokio::time::timeout(DEADLINE, tcp.read_exact(&mut back))
        .await
        .expect("the echo")
        .unwrap();
    assert_eq!(&back, b"ping through the tunnel");
    tcp.shutdown().await.unwrap();
    assert_eq!(read_to_close(&mut tcp).await, "");

    let decision = proxy.records()[0].clone();
    assert_eq!(decision.body["args"]["method"], "CONNECT");
    assert!(decision.body["args"].get("path").is_none());
    let outcome = proxy.outcome(decision.seq).await;
    assert_eq!(outcome["outcome"], "ok");
    assert_eq!(
        outcome["detail"],
        "tunnel closed, 23 bytes in, 23 bytes out"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn denied_connect_is_refused() {
    let echo = echo().await;
    let policy = r#"permit(principal == Agent::"a", action == Action::"http_request", resource == Host::"127.0.0.1")
  when { context.method != "CONNECT" };"#;
    let proxy = start(policy, loopback()).await;
    let answer = raw(
        proxy.addr,
        format!("CONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("warden-decision: deny"), "{answer}");
    assert!(
        answer.contains(&format!("Warden refused CONNECT {echo}:")),
        "{answer}"
    );
    proxy.stop().await;
}

// === bad input and bounds ===

#[tokio::test]
async fn origin_form_requests_are_answered_400() {
    let proxy = start(ALLOW_LOCAL, loopback()).await;
    let answer = send(proxy.addr, Request::get("/just/a/path")).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.body.contains("names no host"), "{}", answer.body);
    assert!(
        proxy.records().is_empty(),
        "nothing to decide, nothing journaled"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn garbage_does_not_take_the_proxy_down() {
    let up = upstream().await;
    let proxy = start(ALLOW_LOCAL, loopback()).await;
    for garbage in [
        &b"\x00\xff\xfe garbage \r\n\r\n"[..],
        b"GET http://[::1/ HTTP/1.1\r\n\r\n",
        b"CONNECT :::: HTTP/1.1\r\n\r\n",
        b"GET http://127.0.0.1/ HTTP/9.9\r\n\r\n",
        &[b'A'; 70_000][..],
    ] {
        let answer = raw(proxy.addr, garbage).await;
        assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    let answer = send(
        proxy.addr,
        Request::get(format!("http://{}/after", up.addr)),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    proxy.stop().await;
}

#[tokio::test]
async fn a_slow_header_client_is_cut_off() {
    let options = EgressOptions {
        header_timeout: Duration::from_millis(200),
        ..loopback()
    };
    let proxy = start(ALLOW_LOCAL, options).await;
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    tcp.write_all(b"GET http://127.0.0.1/ HTTP/1.1\r\nHost: 127.0")
        .await
        .unwrap();
    // Never finishes its head: the proxy must close the connection on its own.
    let answer = read_to_close(&mut tcp).await;
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(proxy.records().is_empty());
    proxy.stop().await;
}

#[tokio::test]
async fn connections_over_the_limit_are_answered_503() {
    let up = upstream().await;
    let options = EgressOptions {
        max_connections: 1,
        ..loopback()
    };
    let proxy = start(ALLOW_LOCAL, options).await;
    // The first connection is served and kept open.
    let mut first = connect(proxy.addr).await;
    let response = first
        .send_request(
            Request::get(format!("http://{}/", up.addr))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.into_body().collect().await.unwrap();

    let mut second = TcpStream::connect(proxy.addr).await.unwrap();
    let answer = read_to_close(&mut second).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");

    // Once the first leaves, its slot is free again.
    drop(first);
    let start = Instant::now();
    loop {
        let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
        let request = format!(
            "GET http://{}/ HTTP/1.1\r\nConnection: close\r\n\r\n",
            up.addr
        );
        // The 503 path closes without reading: a refused write just means "try again".
        let answer = match tcp.write_all(request.as_bytes()).await {
            Ok(()) => read_to_close(&mut tcp).await,
            Err(_) => String::new(),
        };
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the slot was never freed: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.stop().await;
}

#[tokio::test]
async fn stopping_cuts_open_tunnels() {
    let echo = echo().await;
    let mut proxy = start(ALLOW_LOCAL, loopback()).await;
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    tcp.write_all(format!("CONNECT {echo} HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    assert!(read_head(&mut tcp).await.starts_with("HTTP/1.1 200"));
    let decision = proxy.records()[0].seq;
    proxy.halt().await;
    assert_eq!(read_to_close(&mut tcp).await, "");
    let outcome = proxy.outcome(decision).await;
    assert_eq!(outcome["outcome"], "cancelled");
    assert!(
        outcome["detail"]
            .as_str()
            .unwrap()
            .contains("proxy stopped")
    );
}
