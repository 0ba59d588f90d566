//! rlimits: the floor under the cgroup limits, in force even where no cgroup controller is.

use crate::cgroup::Limits;

type Step<T> = Result<T, String>;

fn set(resource: libc::__rlimit_resource_t, value: u64, what: &str) -> Step<()> {
    let limit = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: `limit` is a valid rlimit.
    if unsafe { libc::setrlimit(resource, &limit) } != 0 {
        return Err(format!(
            "limiting {what}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Applies the limits to the calling process (inherited by everything it starts).
pub(crate) fn apply(limits: &Limits) -> Step<()> {
    // Counted per host user: a floor only, the cgroup's pids limit is the real one.
    set(
        libc::RLIMIT_NPROC,
        u64::from(limits.max_processes),
        "processes",
    )?;
    // Private writable memory (heap, anonymous maps): large reservations without access,
    // which some runtimes make, are not counted.
    set(libc::RLIMIT_DATA, limits.max_memory_bytes, "memory")?;
    // No core dumps: they could carry secrets out of reach of the journal.
    set(libc::RLIMIT_CORE, 0, "core dumps")?;
    set(libc::RLIMIT_NOFILE, 4096, "open files")?;
    Ok(())
}
