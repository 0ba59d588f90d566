//! Resource limits and the kill switch, through the cgroup filesystem.
//!
//! Machines differ: some mount only cgroup v2 (`/sys/fs/cgroup` is `cgroup2`), some mount the
//! v1 controllers with an empty v2 hierarchy beside them (`/sys/fs/cgroup/unified`), some only
//! v1. Limits go wherever the controllers are (`pids`, `memory`, `cpu`); the kill goes through
//! v2's `cgroup.kill` whenever any v2 hierarchy is mounted (it needs no controller), and through
//! v1's freezer otherwise (freeze, signal every task, thaw). [`Cgroups::describe`] says which.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Where cgroups are mounted; tests point this at a fake tree.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The limits applied to one sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Most processes (and threads) alive at once.
    pub max_processes: u32,
    /// Most memory, in bytes.
    pub max_memory_bytes: u64,
    /// CPU time per wall-clock second, in percent of one core (100 = one core).
    pub cpu_percent: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_processes: 256,
            max_memory_bytes: 1 << 30,
            cpu_percent: 100,
        }
    }
}

/// A cgroup operation that failed.
#[derive(Debug, thiserror::Error)]
#[error("cgroup {path}: {what}: {source}")]
pub struct CgroupError {
    /// The file or directory.
    pub path: PathBuf,
    /// What Warden was doing.
    pub what: &'static str,
    /// Why it failed.
    #[source]
    pub source: io::Error,
}

fn err<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(io::Error) -> CgroupError + 'a {
    move |source| CgroupError {
        path: path.to_owned(),
        what,
        source,
    }
}

/// The cgroup hierarchies of this machine, as found under the root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// The v2 hierarchy, if one is mounted (pure v2, or the hybrid `unified` beside v1).
    pub v2: Option<PathBuf>,
    /// Controllers the v2 hierarchy can delegate (from `cgroup.controllers`).
    pub v2_controllers: Vec<String>,
    /// v1 controller hierarchies by name (`pids`, `memory`, `cpu`, `freezer`).
    pub v1: Vec<(String, PathBuf)>,
}

impl Layout {
    /// Reads the hierarchies under `root` (normally [`CGROUP_ROOT`]).
    pub fn detect(root: &Path) -> Layout {
        let mut layout = Layout::default();
        let v2_at = |p: &Path| p.join("cgroup.controllers").is_file();
        if v2_at(root) {
            layout.v2 = Some(root.to_owned());
        } else if v2_at(&root.join("unified")) {
            layout.v2 = Some(root.join("unified"));
        }
        if let Some(v2) = &layout.v2 {
            layout.v2_controllers = fs::read_to_string(v2.join("cgroup.controllers"))
                .map(|s| s.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default();
        }
        for name in ["pids", "memory", "cpu", "freezer"] {
            let dir = root.join(name);
            // A v1 controller hierarchy has its own `tasks` file at its root.
            if dir.join("tasks").is_file() && !v2_at(&dir) {
                layout.v1.push((name.to_owned(), dir));
            }
        }
        layout
    }

    fn v1(&self, name: &str) -> Option<&Path> {
        self.v1
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.as_path())
    }

    /// Where each limit would be enforced, and how a kill would be done.
    pub fn capabilities(&self) -> Capabilities {
        let limit = |name: &str| {
            if self.v2_controllers.iter().any(|c| c == name) {
                Some(Version::V2)
            } else if self.v1(name).is_some() {
                Some(Version::V1)
            } else {
                None
            }
        };
        Capabilities {
            pids: limit("pids"),
            memory: limit("memory"),
            cpu: limit("cpu"),
            kill: if self.v2.is_some() {
                Some(KillMethod::V2Kill)
            } else if self.v1("freezer").is_some() {
                Some(KillMethod::V1Freezer)
            } else {
                None
            },
        }
    }
}

/// A cgroup version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Version {
    /// The v1 controller hierarchies.
    V1,
    /// The unified hierarchy.
    V2,
}

impl Version {
    fn as_str(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        }
    }
}

/// How the processes of a sandbox are killed all at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KillMethod {
    /// v2's `cgroup.kill`: the kernel sends SIGKILL to every process, new forks included.
    V2Kill,
    /// v1's freezer: freeze (no process can fork or run), SIGKILL each task, thaw.
    V1Freezer,
}

impl KillMethod {
    /// A short name for reports and the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            KillMethod::V2Kill => "cgroup v2 cgroup.kill",
            KillMethod::V1Freezer => "cgroup v1 freezer",
        }
    }
}

/// Which version enforces each limit, and how a kill is done; `None` where this machine has
/// no way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// The process limit.
    pub pids: Option<Version>,
    /// The memory limit.
    pub memory: Option<Version>,
    /// The CPU limit.
    pub cpu: Option<Version>,
    /// The kill.
    pub kill: Option<KillMethod>,
}

impl Capabilities {
    /// Whether every limit and the kill are available.
    pub fn complete(&self) -> bool {
        self.pids.is_some() && self.memory.is_some() && self.cpu.is_some() && self.kill.is_some()
    }

    /// E.g. `pids v1, memory v1, cpu v1, kill by cgroup v2 cgroup.kill`.
    pub fn describe(&self) -> String {
        let one = |name: &str, v: Option<Version>| match v {
            Some(v) => format!("{name} {}", v.as_str()),
            None => format!("{name} unavailable"),
        };
        format!(
            "{}, {}, {}, kill by {}",
            one("pids", self.pids),
            one("memory", self.memory),
            one("cpu", self.cpu),
            self.kill
                .map_or("no cgroup (none usable)", KillMethod::as_str)
        )
    }
}

/// The cgroups of one sandbox: one directory per hierarchy used. What [`Cgroups::create`]
/// made, [`Cgroups::remove`] removes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cgroups {
    /// The v2 directory, when a v2 hierarchy is mounted.
    pub v2: Option<PathBuf>,
    /// v1 directories, by controller.
    pub v1: Vec<(String, PathBuf)>,
    /// How to kill.
    pub kill: Option<KillMethod>,
    /// Which version enforces which limit.
    pub report: String,
}

/// How often the kernel held a sandbox to its limits (see [`Cgroups::limits_hit`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LimitsHit {
    /// Process starts refused at the process limit (`pids.events`, `max`).
    pub processes: u64,
    /// Processes killed at the memory limit (`memory.events` or `memory.oom_control`,
    /// `oom_kill`).
    pub memory: u64,
}

/// The value of `key` in a cgroup file of `key value` lines; 0 when absent.
fn counter(path: &Path, key: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let (k, v) = line.split_once(' ')?;
                (k == key).then(|| v.trim().parse().ok()).flatten()
            })
        })
        .unwrap_or(0)
}

/// `<hierarchy>/warden/<name>`.
fn group_dir(hierarchy: &Path, name: &str) -> PathBuf {
    hierarchy.join("warden").join(name)
}

impl Cgroups {
    /// Creates the cgroups named `name` under every usable hierarchy and applies `limits`.
    pub fn create(layout: &Layout, name: &str, limits: &Limits) -> Result<Cgroups, CgroupError> {
        let caps = layout.capabilities();
        let mut groups = Cgroups {
            v2: None,
            v1: Vec::new(),
            kill: caps.kill,
            report: caps.describe(),
        };
        if let Some(v2) = &layout.v2 {
            let parent = v2.join("warden");
            mkdir(&parent)?;
            // Delegate the controllers our limits use to the children of `warden/`.
            let wanted: Vec<&str> = ["pids", "memory", "cpu"]
                .into_iter()
                .filter(|c| layout.v2_controllers.iter().any(|have| have == c))
                .collect();
            for c in &wanted {
                enable_controller(v2, c)?;
                enable_controller(&parent, c)?;
            }
            let dir = group_dir(v2, name);
            mkdir(&dir)?;
            groups.v2 = Some(dir.clone());
            if caps.pids == Some(Version::V2) {
                write(&dir.join("pids.max"), &limits.max_processes.to_string())?;
            }
            if caps.memory == Some(Version::V2) {
                write(
                    &dir.join("memory.max"),
                    &limits.max_memory_bytes.to_string(),
                )?;
                // Swap would let the limit be exceeded by paging out.
                let _ = write(&dir.join("memory.swap.max"), "0");
            }
            if caps.cpu == Some(Version::V2) {
                let period = 100_000u64;
                let quota = period * u64::from(limits.cpu_percent.max(1)) / 100;
                write(&dir.join("cpu.max"), &format!("{quota} {period}"))?;
            }
        }
        for (controller, hierarchy) in &layout.v1 {
            let used = match controller.as_str() {
                "pids" => caps.pids == Some(Version::V1),
                "memory" => caps.memory == Some(Version::V1),
                "cpu" => caps.cpu == Some(Version::V1),
                "freezer" => caps.kill == Some(KillMethod::V1Freezer),
                _ => false,
            };
            if !used {
                continue;
            }
            mkdir(&hierarchy.join("warden"))?;
            let dir = group_dir(hierarchy, name);
            mkdir(&dir)?;
            match controller.as_str() {
                "pids" => write(&dir.join("pids.max"), &limits.max_processes.to_string())?,
                "memory" => {
                    write(
                        &dir.join("memory.limit_in_bytes"),
                        &limits.max_memory_bytes.to_string(),
                    )?;
                    // Not every kernel has swap accounting.
                    let _ = write(
                        &dir.join("memory.memsw.limit_in_bytes"),
                        &limits.max_memory_bytes.to_string(),
                    );
                }
                "cpu" => {
                    let period = 100_000u64;
                    let quota = period * u64::from(limits.cpu_percent.max(1)) / 100;
                    write(&dir.join("cpu.cfs_period_us"), &period.to_string())?;
                    write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
                }
                _ => {}
            }
            groups.v1.push((controller.clone(), dir));
        }
        Ok(groups)
    }

    /// Moves process `pid` (and so everything it will fork) into every cgroup.
    pub fn add(&self, pid: u32) -> Result<(), CgroupError> {
        for dir in self.dirs() {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.v2
            .iter()
            .map(PathBuf::as_path)
            .chain(self.v1.iter().map(|(_, d)| d.as_path()))
    }

    /// How often, so far, the kernel held the sandbox to its limits. Zero where it cannot tell
    /// (a controller not in use, a kernel without the counter).
    pub fn limits_hit(&self) -> LimitsHit {
        // A file of the v2 group when that controller is v2's there, else of its v1 group.
        let file = |v2_name: &str, controller: &str, v1_name: &str| {
            self.v2
                .as_ref()
                .map(|d| d.join(v2_name))
                .filter(|p| p.exists())
                .or_else(|| {
                    self.v1
                        .iter()
                        .find(|(c, _)| c == controller)
                        .map(|(_, d)| d.join(v1_name))
                })
        };
        LimitsHit {
            processes: file("pids.events", "pids", "pids.events").map_or(0, |p| counter(&p, "max")),
            memory: file("memory.events", "memory", "memory.oom_control")
                .map_or(0, |p| counter(&p, "oom_kill")),
        }
    }

    /// The processes in the sandbox, as the kill method's hierarchy lists them.
    pub fn processes(&self) -> Result<Vec<u32>, CgroupError> {
        let dir = match (self.kill, &self.v2) {
            (Some(KillMethod::V2Kill), Some(v2)) => v2.clone(),
            _ => match self.v1.iter().find(|(c, _)| c == "freezer") {
                Some((_, d)) => d.clone(),
                None => match self.dirs().next() {
                    Some(d) => d.to_owned(),
                    None => return Ok(Vec::new()),
                },
            },
        };
        read_pids(&dir.join("cgroup.procs"))
    }

    /// Kills every process of the sandbox at once and waits (at most `deadline`) until the last
    /// is gone. Returns how many processes there were and how long it took.
    pub fn kill(&self, deadline: Duration) -> Result<KillReport, KillError> {
        let start = Instant::now();
        let before = self.processes()?.len();
        let method = self.kill.ok_or(KillError::NoMethod)?;
        match method {
            KillMethod::V2Kill => {
                let dir = self.v2.as_ref().ok_or(KillError::NoMethod)?;
                write(&dir.join("cgroup.kill"), "1")?;
            }
            KillMethod::V1Freezer => {
                let (_, dir) = self
                    .v1
                    .iter()
                    .find(|(c, _)| c == "freezer")
                    .ok_or(KillError::NoMethod)?;
                write(&dir.join("freezer.state"), "FROZEN")?;
                // Frozen tasks cannot fork, so this list is complete; SIGKILL is delivered
                // as soon as they thaw.
                for pid in read_pids(&dir.join("cgroup.procs"))? {
                    if let Ok(pid) = libc::pid_t::try_from(pid) {
                        // SAFETY: kill(2) has no memory-safety preconditions.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
                write(&dir.join("freezer.state"), "THAWED")?;
            }
        }
        self.wait_empty(start + deadline)?;
        Ok(KillReport {
            processes: before,
            elapsed: start.elapsed(),
            method,
        })
    }

    /// Waits until no process is left, or fails at `deadline`. With v2, the kernel wakes us
    /// when `cgroup.events` changes; otherwise the process list is polled briefly.
    fn wait_empty(&self, deadline: Instant) -> Result<(), KillError> {
        let events = match (self.kill, &self.v2) {
            (Some(KillMethod::V2Kill), Some(v2)) => fs::File::open(v2.join("cgroup.events")).ok(),
            _ => None,
        };
        let mut pause = Duration::from_micros(20);
        loop {
            // Reading through the polled handle also tells the kernel this change was seen.
            let empty = match &events {
                Some(file) => {
                    use std::os::unix::fs::FileExt;
                    let mut buf = [0u8; 256];
                    match file.read_at(&mut buf, 0) {
                        Ok(n) => String::from_utf8_lossy(&buf[..n])
                            .lines()
                            .any(|l| l.trim() == "populated 0"),
                        Err(_) => self.is_empty()?,
                    }
                }
                None => self.is_empty()?,
            };
            if empty {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(KillError::Survivors(self.processes()?.len()));
            }
            match &events {
                Some(file) => wait_modified(file, deadline - now),
                None => {
                    // A zombie leaves the cgroup only once reaped; short pauses keep the
                    // reported time close to the real one without spinning a core.
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_micros(500));
                }
            }
        }
    }

    /// Whether no process is left: v2's `cgroup.events` says `populated 0`; v1 lists none.
    pub fn is_empty(&self) -> Result<bool, CgroupError> {
        if let (Some(KillMethod::V2Kill), Some(v2)) = (self.kill, &self.v2) {
            let path = v2.join("cgroup.events");
            return match fs::read_to_string(&path) {
                Ok(events) => Ok(events.lines().any(|l| l.trim() == "populated 0")),
                // Removed by the `warden run` that owned it, once its last process was gone.
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
                Err(e) => Err(CgroupError {
                    path,
                    what: "reading",
                    source: e,
                }),
            };
        }
        Ok(self.processes()?.is_empty())
    }

    /// Removes the cgroup directories (they must be empty of processes).
    pub fn remove(&self) -> Result<(), CgroupError> {
        let mut first = None;
        for dir in self.dirs() {
            if let Err(e) = fs::remove_dir(dir)
                && e.kind() != io::ErrorKind::NotFound
            {
                first.get_or_insert(CgroupError {
                    path: dir.to_owned(),
                    what: "removing",
                    source: e,
                });
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// Sleeps until `file` (a cgroup v2 `cgroup.events`) changes, or `timeout` passes.
fn wait_modified(file: &fs::File, timeout: Duration) {
    use std::os::fd::AsRawFd;
    let mut fd = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLPRI,
        revents: 0,
    };
    // Capped: a cgroup removed meanwhile never signals again.
    let ms = libc::c_int::try_from(timeout.as_millis().clamp(1, 5)).unwrap_or(5);
    // SAFETY: one valid pollfd. An error or a timeout just means "look again".
    unsafe { libc::poll(&mut fd, 1, ms) };
}

/// What a kill did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KillReport {
    /// Processes in the sandbox when the kill began.
    pub processes: usize,
    /// From the start of the kill until the last process was gone.
    pub elapsed: Duration,
    /// How.
    pub method: KillMethod,
}

/// Why a kill did not complete.
#[derive(Debug, thiserror::Error)]
pub enum KillError {
    /// No cgroup mechanism can kill on this machine.
    #[error("this machine offers no cgroup kill: neither cgroup v2 nor the v1 freezer")]
    NoMethod,
    /// Processes were still alive at the deadline.
    #[error("{0} processes were still alive at the deadline")]
    Survivors(usize),
    /// The cgroup files could not be used.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
}

fn mkdir(dir: &Path) -> Result<(), CgroupError> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(CgroupError {
            path: dir.to_owned(),
            what: "creating",
            source: e,
        }),
    }
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(err(path, "writing"))
}

fn enable_controller(dir: &Path, controller: &str) -> Result<(), CgroupError> {
    let path = dir.join("cgroup.subtree_control");
    let enabled = fs::read_to_string(&path).map_err(err(&path, "reading"))?;
    if enabled.split_whitespace().any(|c| c == controller) {
        return Ok(());
    }
    write(&path, &format!("+{controller}"))
}

fn read_pids(path: &Path) -> Result<Vec<u32>, CgroupError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(s.lines().filter_map(|l| l.trim().parse().ok()).collect()),
        // The directory went away with its last process.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(CgroupError {
            path: path.to_owned(),
            what: "reading",
            source: e,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path, content: &str) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    #[test]
    fn hybrid_layout_limits_by_v1_and_kills_by_v2() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        touch(&r.join("unified/cgroup.controllers"), "");
        for c in ["pids", "memory", "cpu", "freezer"] {
            touch(&r.join(c).join("tasks"), "");
        }
        let layout = Layout::detect(r);
        assert_eq!(layout.v2.as_deref(), Some(r.join("unified").as_path()));
        let caps = layout.capabilities();
        assert_eq!(caps.pids, Some(Version::V1));
        assert_eq!(caps.kill, Some(KillMethod::V2Kill));
        assert!(caps.complete());
        assert_eq!(
            caps.describe(),
            "pids v1, memory v1, cpu v1, kill by cgroup v2 cgroup.kill"
        );
    }

    #[test]
    fn pure_v2_layout_uses_its_controllers() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        touch(&r.join("cgroup.controllers"), "cpuset cpu io memory pids\n");
        let caps = Layout::detect(r).capabilities();
        assert_eq!(caps.memory, Some(Version::V2));
        assert_eq!(caps.cpu, Some(Version::V2));
        assert_eq!(caps.kill, Some(KillMethod::V2Kill));
    }

    #[test]
    fn v1_only_kills_with_the_freezer_and_reports_what_is_missing() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        touch(&r.join("pids/tasks"), "");
        touch(&r.join("freezer/tasks"), "");
        let caps = Layout::detect(r).capabilities();
        assert_eq!(caps.kill, Some(KillMethod::V1Freezer));
        assert!(!caps.complete());
        assert_eq!(
            caps.describe(),
            "pids v1, memory unavailable, cpu unavailable, kill by cgroup v1 freezer"
        );
        assert_eq!(
            Layout::default().capabilities().describe(),
            "pids unavailable, memory unavailable, cpu unavailable, kill by no cgroup (none usable)"
        );
    }

    #[test]
    fn limits_are_written_where_the_controllers_are() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        touch(&r.join("unified/cgroup.controllers"), "");
        touch(&r.join("unified/cgroup.subtree_control"), "");
        for c in ["pids", "memory", "cpu"] {
            touch(&r.join(c).join("tasks"), "");
        }
        let layout = Layout::detect(r);
        let limits = Limits {
            max_processes: 64,
            max_memory_bytes: 1 << 20,
            cpu_percent: 50,
        };
        let groups = Cgroups::create(&layout, "run1", &limits).unwrap();
        let read = |p: PathBuf| fs::read_to_string(p).unwrap();
        assert_eq!(read(r.join("pids/warden/run1/pids.max")), "64");
        assert_eq!(
            read(r.join("memory/warden/run1/memory.limit_in_bytes")),
            "1048576"
        );
        assert_eq!(read(r.join("cpu/warden/run1/cpu.cfs_quota_us")), "50000");
        assert_eq!(groups.v2, Some(r.join("unified/warden/run1")));
        assert_eq!(groups.kill, Some(KillMethod::V2Kill));

        // What the kernel counts, read from where each controller is.
        assert_eq!(groups.limits_hit(), LimitsHit::default());
        touch(&r.join("pids/warden/run1/pids.events"), "max 37\n");
        touch(
            &r.join("memory/warden/run1/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        );
        assert_eq!(
            groups.limits_hit(),
            LimitsHit {
                processes: 37,
                memory: 2
            }
        );
        // A v2 counter, once there, is the one read.
        touch(&r.join("unified/warden/run1/pids.events"), "max 5\n");
        assert_eq!(groups.limits_hit().processes, 5);
    }
}
