//! The dashboard in a real browser: a real `warden up` with its control plane, real agents
//! acting through its MCP gateway, and Debian's chromium driven by playwright-core
//! (tests/browser/dashboard.mjs). What the script checks is listed at its top; this test
//! starts Warden, hands the script the addresses and tokens, and requires it to pass.
//!
//! With `WARDEN_SCREENSHOTS=DIR` set (relative to the repository's root), the script saves a
//! screenshot of every page in DIR at 1366×768; docs/screenshots holds the committed ones:
//! `WARDEN_SCREENSHOTS=docs/screenshots cargo test -p warden --test browser`.

mod support;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::repo_root;
use support::up::{add_agent, add_operator, files_setup_with, start_until};

/// The whole browser session's bound: a guard against hanging the suite, not a performance
/// assertion (each step of the script has its own, shorter one).
const BROWSER_GUARD: Duration = Duration::from_secs(300);

/// `tester` may do anything with the example server, but `echo` needs a human's approval.
const ECHO_NEEDS_APPROVAL: &str = r#"
@id("echo-needs-approval")
@ask("echo needs a human's approval")
permit (principal == Agent::"tester", action == Action::"call_tool", resource == Tool::"files/echo");
"#;

/// The browser the script drives.
fn chromium() -> PathBuf {
    std::env::var_os("WARDEN_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Fails, saying how to install them, when the browser, node or playwright-core is missing.
fn require_browser_tools(browser_dir: &std::path::Path) {
    let fix =
        "run scripts/test-deps (it installs Debian's chromium and runs npm ci in tests/browser)";
    let chromium = chromium();
    assert!(
        chromium.is_file(),
        "the browser {} is missing: {fix}",
        chromium.display()
    );
    assert!(
        browser_dir
            .join("node_modules/playwright-core/package.json")
            .is_file(),
        "tests/browser/node_modules has no playwright-core: {fix}"
    );
    let node = Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node is missing: {fix}"
    );
}

#[test]
fn the_dashboard_shows_live_activity_answers_approvals_and_quarantines_in_a_real_browser() {
    let browser_dir = repo_root().join("tests/browser");
    require_browser_tools(&browser_dir);

    let s = files_setup_with(&[], "", "[control]\nlisten = \"127.0.0.1:0\"\n");
    let policies = s.path("policies/extra.cedar");
    let mut text = std::fs::read_to_string(&policies).unwrap();
    text.push_str(ECHO_NEEDS_APPROVAL);
    std::fs::write(&policies, text).unwrap();
    let admin = add_operator(&s, "ana", "admin");
    let viewer = add_operator(&s, "vic", "viewer");
    let tester = add_agent(&s, "tester");
    let mallory = add_agent(&s, "mallory");
    let up = start_until(
        s,
        &["upstream \"files\" ready", "serving the control plane at"],
    );
    let control = up
        .startup_line("serving the control plane at")
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("no control plane address printed")
        .to_owned();

    let mut node = Command::new("node");
    // Screenshots: a relative folder is taken from the repository's root (docs/screenshots).
    if let Some(dir) = std::env::var_os("WARDEN_SCREENSHOTS").filter(|d| !d.is_empty()) {
        node.env("WARDEN_SCREENSHOTS", repo_root().join(dir));
    }
    let mut child = node
        .arg("dashboard.mjs")
        .current_dir(&browser_dir)
        .env("WARDEN_DASHBOARD_URL", format!("http://{control}/"))
        .env("WARDEN_ADMIN_TOKEN", &admin)
        .env("WARDEN_VIEWER_TOKEN", &viewer)
        .env("WARDEN_MCP_URL", up.url())
        .env("WARDEN_AGENT_TOKEN", &tester)
        .env("WARDEN_ROGUE_TOKEN", &mallory)
        .env("WARDEN_CHROMIUM", chromium())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node could not be started");
    let collect = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = collect(Box::new(child.stdout.take().unwrap()));
    let stderr = collect(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + BROWSER_GUARD;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = stdout.join().unwrap();
    let err = stderr.join().unwrap();
    println!("{out}");
    if !err.is_empty() {
        eprintln!("{err}");
    }
    let status = status.unwrap_or_else(|| {
        panic!(
            "the browser session did not end within {} s:\n{out}\n{err}",
            BROWSER_GUARD.as_secs()
        )
    });
    assert!(
        status.success(),
        "the dashboard's browser checks failed ({status}):\n{out}\n{err}"
    );
}
