//! When the journal cannot record, nothing happens: the call is refused, not forwarded.

mod support;

use std::process::Command;

use serde_json::json;
use support::*;

#[test]
fn a_locked_journal_refuses_calls_until_it_is_released() {
    let setup = Setup::new("busy_timeout_ms = 200\n", "");
    let mut s = setup.start("alice", &[]);
    s.initialize();
    let ok = s.call(
        json!(1),
        "send_message",
        json!({"to": "team@example.com", "body": "one"}),
    );
    assert_eq!(refusal_effect(&ok), None, "{ok}");

    // Another process takes the journal's write lock and holds it.
    let lock = rusqlite::Connection::open(setup.path("journal.db")).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let r = s.call(
        json!(2),
        "send_message",
        json!({"to": "team@example.com", "body": "two"}),
    );
    assert_eq!(refusal_effect(&r).as_deref(), Some("deny"), "{r}");
    assert!(result_text(&r).contains("journal could not record"), "{r}");
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);

    let r = s.call(
        json!(3),
        "send_message",
        json!({"to": "team@example.com", "body": "three"}),
    );
    assert_eq!(refusal_effect(&r), None, "{r}");
    let (status, stderr) = s.finish();
    assert!(status.success(), "{stderr}");

    let bodies: Vec<String> = setup
        .outbox()
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        bodies,
        ["one", "three"],
        "the unrecorded call must not take effect"
    );
    let (status, out, _) = warden(
        &["audit", "verify", "--journal", "journal.db"],
        setup.dir.path(),
    );
    assert!(status.success(), "{out}");
}

#[test]
fn a_journal_that_cannot_be_opened_stops_warden_before_the_upstream_starts() {
    let setup = Setup::new("", "");
    std::fs::write(setup.path("not-a-dir"), "x").unwrap();
    let config = "[journal]\npath = \"not-a-dir/journal.db\"\n";
    std::fs::write(setup.config(), config).unwrap();
    let mut s = setup.start("alice", &[]);
    s.send(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}));
    let (status, stderr) = s.finish();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("opening the journal"), "{stderr}");
}

/// A real full disk: the journal lives on a 512 KiB tmpfs mounted in a private user and mount
/// namespace, so the test needs no privileges beyond unprivileged user namespaces.
#[test]
fn a_full_disk_refuses_calls_and_loses_no_record() {
    let setup = Setup::new("", "");
    let small = journal_in_own_folder(&setup, "small");
    let verify_out = setup.path("verify.txt");
    let script = r#"
        set -e
        small="$1"; out="$2"; shift 2
        mount -t tmpfs -o size=512k tmpfs "$small"
        set +e
        "$@"
        status=$?
        "$WARDEN" audit verify --journal "$small/journal.db" > "$out" 2>&1
        echo "verify exit $?" >> "$out"
        exit $status
    "#;
    let mut cmd = in_private_mounts(&setup, script, &[&small, &verify_out]);
    cmd.env("WARDEN", warden_bin());
    let mut s = Session::spawn(cmd);
    s.initialize();
    let body = "y".repeat(16 * 1024);
    let mut allowed = 0;
    let mut refused = 0;
    for i in 0..200 {
        let r = s.call(
            json!(i),
            "send_message",
            json!({"to": "team@example.com", "body": body}),
        );
        match refusal_effect(&r) {
            None => allowed += 1,
            Some(_) => {
                assert!(result_text(&r).contains("journal could not record"), "{r}");
                refused += 1;
                if refused == 3 {
                    break;
                }
            }
        }
    }
    let (_status, stderr) = s.finish();
    assert!(refused > 0, "the disk never filled: {stderr}");
    assert!(
        allowed > 0,
        "nothing was allowed before the disk filled: {stderr}"
    );
    assert_eq!(
        setup.outbox().len(),
        allowed,
        "every delivered message has a durable decision, and no refused one was delivered"
    );
    let verify = std::fs::read_to_string(&verify_out).unwrap();
    assert!(verify.contains("intact"), "{verify}");
    assert!(verify.contains("verify exit 0"), "{verify}");
}

/// A journal on a file system that became read-only: Warden refuses to start rather than run
/// without a record.
#[test]
fn a_read_only_journal_stops_warden_before_any_call() {
    let setup = Setup::new("", "");
    let ro = journal_in_own_folder(&setup, "ro");
    // First session writes the journal; then the mount turns read-only and a second session
    // is attempted. Its stderr and status are what the test reads.
    let script = r#"
        set -e
        ro="$1"; shift
        mount -t tmpfs -o size=4m tmpfs "$ro"
        printf '' | "$@" >/dev/null 2>&1
        mount -o remount,ro "$ro"
        printf '{"jsonrpc":"2.0","id":1,"method":"ping"}\n' | "$@"
    "#;
    let out = in_private_mounts(&setup, script, &[&ro]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("opening the journal"), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "nothing may be answered: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Points the setup's journal at `<dir>/journal.db` in a folder of its own, for a test to mount
/// a file system on.
fn journal_in_own_folder(setup: &Setup, dir: &str) -> std::path::PathBuf {
    let folder = setup.path(dir);
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        setup.config(),
        format!("[journal]\npath = \"{}/journal.db\"\n", folder.display()),
    )
    .unwrap();
    folder
}

/// `sh -c script sh ARGS… warden mcp …` in a private user and mount namespace, so the script
/// can mount file systems without privileges. The `warden mcp` command line is "$@" once the
/// script has shifted its own arguments away.
fn in_private_mounts(setup: &Setup, script: &str, script_args: &[&std::path::Path]) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--user",
        "--map-root-user",
        "--mount",
        "sh",
        "-c",
        script,
        "sh",
    ])
    .args(script_args)
    .arg(warden_bin())
    .args(["mcp", "--agent", "alice", "--config"])
    .arg(setup.config())
    .args(["--server", "files", "--"])
    .arg(example_server())
    .arg("--root")
    .arg(setup.path("workspace"));
    cmd
}
