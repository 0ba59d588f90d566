//! What the `.head` file names must already be on disk.
//!
//! With `sync = "normal"` a commit is not fsynced. If the head named records still only in
//! the page cache, a power loss would leave a head past the end of the recovered file, and
//! `warden audit verify` would report a cut-off tail that nobody cut. A power loss cannot be
//! staged here, so the test asks the kernel (`cachestat`, Linux 6.5+) whether any page of
//! the WAL, where new records are, is still waiting to be written when the head names them.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;

use warden_journal::{Journal, JournalOptions, SyncMode};

/// The kernel's `struct cachestat_range`: from `off`, `len` bytes (0: to the end).
#[repr(C)]
struct CachestatRange {
    off: u64,
    len: u64,
}

/// The kernel's `struct cachestat`, in pages.
#[repr(C)]
#[derive(Default)]
struct Cachestat {
    nr_cache: u64,
    nr_dirty: u64,
    nr_writeback: u64,
    nr_evicted: u64,
    nr_recently_evicted: u64,
}

/// The same number on every architecture (the syscall came after the tables were unified).
const SYS_CACHESTAT: libc::c_long = 451;

/// Pages of `path` not yet on disk: dirty, or being written back.
fn pages_not_on_disk(path: &Path) -> u64 {
    let file = std::fs::File::open(path).unwrap();
    let range = CachestatRange { off: 0, len: 0 };
    let mut stat = Cachestat::default();
    // SAFETY: the fd is open for the duration of the call, and both pointers are to live
    // structs laid out as the kernel expects.
    let rc = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            file.as_raw_fd(),
            &range as *const CachestatRange,
            &mut stat as *mut Cachestat,
            0,
        )
    };
    assert_eq!(
        rc,
        0,
        "cachestat failed ({}); this test needs Linux 6.5 or later",
        std::io::Error::last_os_error()
    );
    stat.nr_dirty + stat.nr_writeback
}

fn head_seq(journal: &Path) -> Option<u64> {
    let mut name = journal.as_os_str().to_owned();
    name.push(".head");
    let text = std::fs::read_to_string(name).ok()?;
    let head: serde_json::Value = serde_json::from_str(&text).ok()?;
    head["seq"].as_u64()
}

/// Opens the journal at `path` with a head for every record, appends one record, and waits
/// until the head names it. The head is written after the append is answered: with `full` by
/// the committing thread right after its commit, with `normal` by the journal's WAL thread
/// once it has synced the WAL.
fn append_and_wait_for_the_head(path: &Path, sync: SyncMode) -> (Journal, u64) {
    let journal = Journal::open(
        path,
        JournalOptions {
            sync,
            checkpoint_interval: Duration::ZERO,
            ..JournalOptions::default()
        },
    )
    .unwrap();
    let seq = journal.append(&common::event()).wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while head_seq(path) < Some(seq) {
        assert!(
            Instant::now() < deadline,
            "the head never named record {seq}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    (journal, seq)
}

/// The WAL SQLite keeps beside the database file `db`.
fn wal_of(db: &Path) -> PathBuf {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

#[test]
fn the_head_names_only_records_that_are_on_disk() {
    for sync in [SyncMode::Normal, SyncMode::Full] {
        // Beside the build, not in a temporary directory that may be in memory (tmpfs has no
        // disk to sync to, so its pages never stop being dirty).
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let path = dir.path().join("j.db");
        let (journal, seq) = append_and_wait_for_the_head(&path, sync);
        assert_eq!(
            pages_not_on_disk(&wal_of(&path)),
            0,
            "sync = {sync:?}: the head names record {seq} while the WAL holding it is not on disk"
        );
        journal.close_blocking().unwrap();
    }
}

#[test]
fn a_journal_opened_through_a_symbolic_link_syncs_the_wal_beside_its_target() {
    // SQLite keeps the WAL beside the file a link points to; syncing a WAL looked for beside
    // the link would find nothing, and the head would never name a record.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let target = dir.path().join("data").join("j.db");
    std::fs::File::create(&target).unwrap();
    let link = dir.path().join("j.db");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let (journal, _) = append_and_wait_for_the_head(&link, SyncMode::Normal);
    assert_eq!(pages_not_on_disk(&wal_of(&target)), 0);
    journal.close_blocking().unwrap();
    assert!(warden_journal::verify(&link).unwrap().is_intact());
}
