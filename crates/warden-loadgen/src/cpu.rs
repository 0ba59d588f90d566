//! The CPU time processes spend during a run, from `/proc/PID/stat` (Linux).
//!
//! On a machine where the load generator, the gateway and the upstream share the cores,
//! throughput moves with whatever else the host runs; the CPU time each process spends per
//! call moves much less, so it is what tells one build from another.

use serde::Serialize;

/// Clock ticks per second of `/proc/PID/stat`'s times: `USER_HZ`, fixed at 100 in Linux's
/// interface to user space whatever the kernel's own tick rate.
const TICKS_PER_S: u64 = 100;

/// The CPU time (user and system) of one process, and of all its descendants alive at the
/// moment it is read, in clock ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ticks {
    /// The process itself.
    pub own: u64,
    /// Its descendants (children, their children, …).
    pub descendants: u64,
}

/// The CPU time a process and its descendants spent between two readings, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spent {
    /// The process id.
    pub pid: u32,
    /// The process itself, ms.
    pub own_ms: u64,
    /// Its descendants, ms (those alive at both readings).
    pub descendants_ms: u64,
}

/// Reads `pid`'s ticks and its descendants'; `None` if `pid` is not running.
pub fn ticks(pid: u32) -> Option<Ticks> {
    let own = own_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    let table = process_table();
    let mut descendants = 0;
    let mut parents = vec![pid];
    while let Some(parent) = parents.pop() {
        for &(child, ppid, t) in &table {
            if ppid == parent {
                descendants += t;
                parents.push(child);
            }
        }
    }
    Some(Ticks { own, descendants })
}

/// What `pid` spent from `before` to `after`.
pub fn spent(pid: u32, before: Ticks, after: Ticks) -> Spent {
    let ms = |ticks: u64| ticks * 1000 / TICKS_PER_S;
    Spent {
        pid,
        own_ms: ms(after.own.saturating_sub(before.own)),
        descendants_ms: ms(after.descendants.saturating_sub(before.descendants)),
    }
}

/// Every process: (pid, parent pid, ticks).
fn process_table() -> Vec<(u32, u32, u64)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            Some((pid, parent(&stat)?, own_ticks(&stat)?))
        })
        .collect()
}

/// The fields after the command name, which is in parentheses and may itself hold spaces
/// and parentheses: the last `)` ends it.
fn fields(stat: &str) -> Option<Vec<&str>> {
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_ascii_whitespace().collect())
}

/// Field 4 of `stat`: the parent's pid.
fn parent(stat: &str) -> Option<u32> {
    fields(stat)?.get(1)?.parse().ok()
}

/// Fields 14 and 15 of `stat`: user and system time, in ticks.
fn own_ticks(stat: &str) -> Option<u64> {
    let fields = fields(stat)?;
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some(user + system)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (a (tricky) name) S 17 4242 4242 0 -1 4194560 1500 0 0 0 \
                        250 75 0 0 20 0 9 0 12345 1000000 500 18446744073709551615";

    #[test]
    fn the_fields_after_a_command_with_parentheses_are_read() {
        assert_eq!(parent(STAT), Some(17));
        assert_eq!(own_ticks(STAT), Some(325));
        assert_eq!(own_ticks("4242 (cut short) S 17"), None);
        assert_eq!(parent("no parentheses at all"), None);
    }

    #[test]
    fn time_spent_is_the_difference_in_milliseconds() {
        let before = Ticks {
            own: 100,
            descendants: 40,
        };
        let after = Ticks {
            own: 350,
            descendants: 30,
        };
        // A descendant that exited takes its ticks with it: never a negative figure.
        assert_eq!(
            spent(7, before, after),
            Spent {
                pid: 7,
                own_ms: 2500,
                descendants_ms: 0
            }
        );
    }

    #[test]
    fn this_process_and_a_child_are_read() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep runs");
        let me = ticks(std::process::id()).expect("this process is running");
        let table = process_table();
        assert!(
            table
                .iter()
                .any(|&(pid, ppid, _)| pid == child.id() && ppid == std::process::id()),
            "the child is found under this process"
        );
        child.kill().ok();
        child.wait().ok();
        // Ticks only grow; a process that does not exist has none.
        assert!(ticks(std::process::id()).expect("still running").own >= me.own);
        assert_eq!(ticks(u32::MAX), None);
    }
}
