//! The gateway as an agent sees it: round trips of `tools/call` (the example server's `echo`)
//! sent straight to the MCP server, and the same through `warden mcp`, measured in one run on
//! the same machine. The difference is what Warden adds: parse, decide, journal (durably),
//! forward, and journal the outcome.
//!
//! `round_trip/*`: one call at a time. `pipelined_64/*`: 64 calls written back to back, then
//! their 64 answers read, reported per call.
//!
//! Needs the workspace's binaries built (`cargo build --release --workspace --bins`); run with
//! `cargo bench -p warden --bench gateway`.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;

struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    line: String,
}

impl Peer {
    fn spawn(mut cmd: Command) -> Peer {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut peer = Peer {
            child,
            stdin,
            stdout,
            line: String::new(),
        };
        peer.send(
            &json!({"jsonrpc": "2.0", "id": "init", "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "bench", "version": "1"}}})
            .to_string(),
        );
        peer.read();
        peer.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        peer
    }

    fn send(&mut self, line: &str) {
        self.stdin.write_all(line.as_bytes()).expect("write");
        self.stdin.write_all(b"\n").expect("write");
        self.stdin.flush().expect("flush");
    }

    fn read(&mut self) {
        self.line.clear();
        let n = self.stdout.read_line(&mut self.line).expect("read");
        assert!(n > 0, "peer closed");
        assert!(!self.line.contains("\"error\""), "{}", self.line);
        assert!(!self.line.contains("\"isError\":true"), "{}", self.line);
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bin(name: &str) -> PathBuf {
    let release = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/release")
        .join(name);
    assert!(
        release.exists(),
        "{} missing: cargo build --release --workspace --bins",
        release.display()
    );
    release
}

/// A `tools/call` with a fresh id: Warden refuses an id already in flight, as it should.
fn call(id: u64) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"path":"/data/reports/q3.csv","to":"team@example.com","amount":42}}}}}}"#
    )
}

fn bench_peer(c: &mut Criterion, name: &str, peer: &mut Peer) {
    let mut id = 0u64;
    let mut g = c.benchmark_group("round_trip");
    g.bench_function(name, |b| {
        b.iter(|| {
            id += 1;
            peer.send(&call(id));
            peer.read();
        })
    });
    g.finish();
    let mut g = c.benchmark_group("pipelined_64");
    g.throughput(Throughput::Elements(64));
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                for _ in 0..64 {
                    id += 1;
                    peer.send(&call(id));
                }
                for _ in 0..64 {
                    peer.read();
                }
                total += start.elapsed();
            }
            total
        })
    });
    g.finish();
}

fn gateway(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("policies")).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("root")).expect("mkdir");
    std::fs::write(
        dir.path().join("policies/bench.cedar"),
        "permit (principal == Agent::\"bench\", action == Action::\"call_tool\", resource == Tool::\"files/echo\");\n",
    )
    .expect("policy");
    let server = || {
        let mut cmd = Command::new(bin("warden-example-files"));
        cmd.arg("--root").arg(dir.path().join("root"));
        cmd
    };

    let mut direct = Peer::spawn(server());
    bench_peer(c, "direct", &mut direct);
    drop(direct);

    for sync in ["normal", "full"] {
        let config = dir.path().join(format!("warden-{sync}.toml"));
        std::fs::write(
            &config,
            format!("[journal]\npath = \"journal-{sync}.db\"\nsync = \"{sync}\"\n"),
        )
        .expect("config");
        let mut cmd = Command::new(bin("warden"));
        cmd.args(["mcp", "--agent", "bench", "--config"])
            .arg(&config)
            .args(["--server", "files", "--"])
            .arg(bin("warden-example-files"))
            .arg("--root")
            .arg(dir.path().join("root"));
        let mut through = Peer::spawn(cmd);
        bench_peer(c, &format!("through_warden_sync_{sync}"), &mut through);
    }
}

criterion_group!(benches, gateway);
criterion_main!(benches);
