//! A running `warden up` and a small raw HTTP/1.1 client, so tests can send exactly the bytes
//! they mean (slow drips, invalid UTF-8, forged headers).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;

use serde_json::Value;

use super::{HANG_GUARD, Setup, example_server, warden, warden_bin};

/// A running `warden up` and the tokens of its agents.
pub struct Up {
    pub child: Child,
    pub addr: SocketAddr,
    pub lines: Receiver<String>,
    pub setup: Setup,
    /// What `warden up` printed while starting.
    pub printed: Vec<String>,
}

impl Up {
    /// Waits until `warden up` prints a line containing `needle`; returns that line.
    pub fn wait_line(&self, needle: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(HANG_GUARD)
                .unwrap_or_else(|_| panic!("warden up never printed {needle:?}"));
            if line.contains(needle) {
                return line;
            }
        }
    }
}

impl Up {
    /// The line containing `needle` that `warden up` printed while starting.
    pub fn startup_line(&self, needle: &str) -> String {
        self.printed
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("warden up did not print {needle:?} while starting"))
            .clone()
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lets the agent "tester" do anything with the example server.
pub const TESTER_ALL: &str = r#"
@id("tester-all")
permit (principal == Agent::"tester", action, resource in Server::"files");
"#;

/// The example server as upstream "files", with `extra_http` in the [http] section.
pub fn files_setup(extra_http: &str) -> Setup {
    files_setup_with(&[], "", &format!("[http]\n{extra_http}"))
}

/// The example server as upstream "files" started with `server_args`, `server_keys` added to
/// its [servers.files] section, and `extra_config` (whole sections) at the end.
pub fn files_setup_with(server_args: &[&str], server_keys: &str, extra_config: &str) -> Setup {
    let s = Setup::new("", TESTER_ALL);
    let mut command = vec![
        example_server().to_string_lossy().into_owned(),
        "--root".to_owned(),
        s.path("workspace").to_string_lossy().into_owned(),
    ];
    command.extend(server_args.iter().map(|a| (*a).to_owned()));
    let config = format!(
        "[journal]\npath = \"journal.db\"\n\n[servers.files]\ncommand = {command:?}\n{server_keys}\n\n{extra_config}\n",
    );
    std::fs::write(s.config(), config).unwrap();
    s
}

/// A setup with `extra_policy` whose configuration is the journal followed by
/// `config(&setup)`, for upstreams whose commands name paths inside the setup's directory.
pub fn setup_with_config(extra_policy: &str, config: impl FnOnce(&Setup) -> String) -> Setup {
    let s = Setup::new("", extra_policy);
    let text = format!("[journal]\npath = \"journal.db\"\n\n{}\n", config(&s));
    std::fs::write(s.config(), text).unwrap();
    s
}

/// `warden agent add NAME`: the token.
pub fn add_agent(s: &Setup, name: &str) -> String {
    let cfg = s.config();
    let (status, out, err) = warden(
        &["agent", "add", name, "--config", cfg.to_str().unwrap()],
        s.dir.path(),
    );
    assert!(status.success(), "agent add failed: {err}");
    out.lines().last().unwrap().trim().to_owned()
}

/// Starts `warden up` on a free loopback port and waits until every server in `upstreams` is
/// ready.
pub fn start(s: Setup, upstreams: &[&str]) -> Up {
    let ready: Vec<String> = upstreams
        .iter()
        .map(|u| format!("upstream \"{u}\" ready"))
        .collect();
    start_until(s, &ready.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Starts `warden up` and waits until it has printed a line containing each of `wanted`.
pub fn start_until(s: Setup, wanted: &[&str]) -> Up {
    let mut child = Command::new(warden_bin())
        .args(["up", "--listen", "127.0.0.1:0", "--config"])
        .arg(s.config())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = super::lines_of(stdout);
    let mut addr = None;
    let mut printed = Vec::new();
    let mut waiting: Vec<&str> = wanted.to_vec();
    while !waiting.is_empty() {
        let line = lines
            .recv_timeout(HANG_GUARD)
            .expect("warden up printed nothing");
        if let Some(rest) = line
            .strip_prefix("warden: serving MCP at http://")
            .or_else(|| line.strip_prefix("warden: serving MCP at https://"))
        {
            addr = Some(rest.trim_end_matches("/mcp").parse().unwrap());
        }
        waiting.retain(|w| !line.contains(w));
        printed.push(line);
    }
    Up {
        child,
        addr: addr.expect("no address printed"),
        lines,
        setup: s,
        printed,
    }
}

impl Up {
    /// The MCP endpoint, as an agent's client is configured with it.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Sends raw head and body bytes; reads the whole response (the connection is closed).
pub fn exchange(addr: SocketAddr, head: &str, body: &[u8]) -> Resp {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(HANG_GUARD)).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    // A server refusing an oversize body may answer and hang up before all of it is written;
    // the answer is what the test reads.
    let _ = stream.write_all(body);
    read_response(stream)
}

pub fn read_response(stream: TcpStream) -> Resp {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status: u16 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap();
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            if n == 0 {
                break;
            }
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk).unwrap();
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        reader.read_to_end(&mut body).unwrap();
    }
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub fn post(up: &Up, token: Option<&str>, session: Option<&str>, body: &[u8]) -> Resp {
    post_with(up, token, session, body, &[])
}

pub fn post_with(
    up: &Up,
    token: Option<&str>,
    session: Option<&str>,
    body: &[u8],
    extra: &[(&str, &str)],
) -> Resp {
    let mut head = format!(
        "POST /mcp HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nConnection: close\r\nContent-Length: {}\r\n",
        up.addr,
        body.len()
    );
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(s) = session {
        head.push_str(&format!("Mcp-Session-Id: {s}\r\n"));
    }
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    exchange(up.addr, &head, body)
}

/// A response read as it arrives: an SSE stream over chunked transfer encoding.
pub struct EventStream {
    reader: BufReader<TcpStream>,
    pending: String,
    /// The response's status.
    pub status: u16,
    /// Its content type.
    pub content_type: String,
}

impl EventStream {
    /// Sends the request and reads the head of the response.
    pub fn open(addr: SocketAddr, head: &str, body: &[u8]) -> EventStream {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(HANG_GUARD)).unwrap();
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut content_type = String::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-type")
            {
                content_type = v.trim().to_owned();
            }
        }
        EventStream {
            reader,
            pending: String::new(),
            status,
            content_type,
        }
    }

    /// The next event's data as JSON; `None` when the stream ends.
    pub fn next_event(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.pending.find("\n\n") {
                let event: String = self.pending.drain(..end + 2).collect();
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                if data.is_empty() {
                    continue;
                }
                return Some(serde_json::from_str(&data.join("\n")).unwrap());
            }
            let mut size = String::new();
            if self.reader.read_line(&mut size).unwrap() == 0 {
                return None;
            }
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            if n == 0 {
                return None;
            }
            let mut chunk = vec![0; n + 2];
            self.reader.read_exact(&mut chunk).unwrap();
            self.pending
                .push_str(&String::from_utf8_lossy(&chunk[..n]).replace("\r\n", "\n"));
        }
    }
}

/// `warden user add NAME --role ROLE` in the setup: the operator's token.
pub fn add_operator(s: &Setup, name: &str, role: &str) -> String {
    let cfg = s.config();
    let (status, out, err) = warden(
        &[
            "user",
            "add",
            name,
            "--role",
            role,
            "--config",
            cfg.to_str().unwrap(),
        ],
        s.dir.path(),
    );
    assert!(status.success(), "user add failed: {err}");
    out.lines()
        .find(|l| l.starts_with("wdo_"))
        .expect("user add printed a token")
        .to_owned()
}

impl Up {
    /// Where the control plane listens, as `warden up` printed it.
    pub fn control_addr(&self) -> SocketAddr {
        self.startup_line("serving the control plane at")
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|addr| addr.parse().ok())
            .expect("a control plane address")
    }

    /// `GET path` on the control plane with `token`.
    pub fn control_get(&self, path: &str, token: &str) -> Resp {
        control_get_at(self.control_addr(), path, token)
    }
}

/// `GET path` on the control plane at `control` with `token`, on a connection of its own.
pub fn control_get_at(control: SocketAddr, path: &str, token: &str) -> Resp {
    exchange(
        control,
        &format!(
            "GET {path} HTTP/1.1\r\nhost: {control}\r\n\
             authorization: Bearer {token}\r\nconnection: close\r\n\r\n"
        ),
        b"",
    )
}

/// A JSON-RPC request's bytes.
pub fn rpc(id: u64, method: &str, params: Value) -> Vec<u8> {
    serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
        .to_string()
        .into_bytes()
}

/// Opens an MCP session for the agent with `token`; returns its id.
pub fn open_session(up: &Up, token: &str) -> String {
    let r = post(
        up,
        Some(token),
        None,
        &rpc(
            0,
            "initialize",
            serde_json::json!({"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "warden-tests", "version": "1"}}),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["result"]["serverInfo"]["name"], "warden");
    r.header("mcp-session-id")
        .expect("no session id")
        .to_owned()
}
