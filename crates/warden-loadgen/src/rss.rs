//! A process's resident memory, from `/proc/PID/status` (Linux).

use crate::error::LoadError;

/// The resident set size of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Result<u64, LoadError> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| LoadError::Rss {
        pid,
        why: format!("{path}: {e}"),
    })?;
    vm_rss_kib(&status).ok_or_else(|| LoadError::Rss {
        pid,
        why: format!("{path} has no VmRSS line"),
    })
}

/// The `VmRSS:` value of a `/proc/PID/status` text, in KiB.
pub fn vm_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let mut parts = line.split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    // The kernel always writes "kB" (meaning KiB); anything else is not a status file we know.
    (parts.next()? == "kB").then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vm_rss_line_is_read() {
        let status =
            "Name:\twarden\nVmPeak:\t  900000 kB\nVmRSS:\t   12345 kB\nRssAnon:\t    8000 kB\n";
        assert_eq!(vm_rss_kib(status), Some(12_345));
        assert_eq!(vm_rss_kib("Name:\tx\n"), None);
        assert_eq!(vm_rss_kib("VmRSS:\t12 MB\n"), None);
        assert_eq!(vm_rss_kib("VmRSS:\tlots kB\n"), None);
    }

    #[test]
    fn this_process_has_resident_memory() {
        let kib = rss_kib(std::process::id()).unwrap();
        assert!(kib > 100, "{kib} KiB");
        assert!(matches!(rss_kib(u32::MAX), Err(LoadError::Rss { .. })));
    }
}
