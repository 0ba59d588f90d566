//! The kill switch against the real cgroup hierarchies of this machine: every way it can kill
//! that the machine offers, on real process trees. Needs root (writable cgroups), as CI has.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use warden_contain::cgroup::{CGROUP_ROOT, Cgroups, KillMethod, Layout, Limits};

/// A shell that starts `n` sleepers and waits; returns once all are in `groups`.
fn populate(groups: &Cgroups, n: usize) -> std::process::Child {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "read _; i=0; while [ $i -lt {n} ]; do sleep 600 & i=$((i+1)); done; wait"
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Joined before it forks anything: the sleepers are born inside.
    groups.add(child.id()).unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while groups.processes().unwrap().len() < n + 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the tree never filled up"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

fn kill_with(layout: &Layout, name: &str, expected: KillMethod) {
    let groups = Cgroups::create(layout, name, &Limits::default()).unwrap();
    assert_eq!(groups.kill, Some(expected), "{}", groups.report);
    let mut child = populate(&groups, 20);
    let report = groups.kill(Duration::from_secs(10)).unwrap();
    assert_eq!(report.method, expected);
    assert!(report.processes >= 21, "{report:?}");
    assert!(groups.is_empty().unwrap());
    let status = child.wait().unwrap();
    assert!(!status.success(), "the shell was killed");
    groups.remove().unwrap();
}

#[test]
fn the_kill_switch_empties_a_tree_by_every_method_this_machine_has() {
    let layout = Layout::detect(Path::new(CGROUP_ROOT));
    let mut tried = 0;
    if layout.v2.is_some() {
        kill_with(
            &layout,
            &format!("test-v2-{}", std::process::id()),
            KillMethod::V2Kill,
        );
        tried += 1;
    }
    if layout.v1.iter().any(|(c, _)| c == "freezer") {
        // The same machine without its v2 hierarchy: the v1 freezer does the kill.
        let v1_only = Layout {
            v2: None,
            v2_controllers: Vec::new(),
            v1: layout.v1.clone(),
        };
        kill_with(
            &v1_only,
            &format!("test-v1-{}", std::process::id()),
            KillMethod::V1Freezer,
        );
        tried += 1;
    }
    assert!(tried > 0, "this machine offers no cgroup kill at all");
}
