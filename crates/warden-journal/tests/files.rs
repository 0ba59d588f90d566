//! The files a journal consists of: who may read them, and what happens when one is missing.

use std::os::unix::fs::PermissionsExt;

mod common;

use warden_journal::{Journal, JournalError, JournalOptions, verify};

#[test]
fn journal_files_are_private_to_wardens_user() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let journal = Journal::open(&path, JournalOptions::default()).unwrap();
    journal.append(&common::event()).wait().unwrap();
    journal.close_blocking().unwrap();
    for file in ["j.db", "j.db.key"] {
        let mode = std::fs::metadata(dir.path().join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{file} is readable by others: {mode:o}");
    }
}

#[test]
fn a_missing_key_is_an_error_and_no_new_key_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let journal = Journal::open(&path, JournalOptions::default()).unwrap();
    journal.append(&common::event()).wait().unwrap();
    journal.close_blocking().unwrap();
    drop(journal);
    std::fs::remove_file(dir.path().join("j.db.key")).unwrap();
    let err = Journal::open(&path, JournalOptions::default())
        .err()
        .unwrap();
    assert!(matches!(err, JournalError::Key(_)), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
    assert!(!dir.path().join("j.db.key").exists());
    // The journal itself still verifies: the key is needed to write, not to read.
    assert!(verify(&path).unwrap().breach.is_none());
}

#[test]
fn a_quiet_journal_is_checkpointed_after_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let journal = Journal::open(
        &path,
        JournalOptions {
            checkpoint_interval: std::time::Duration::from_millis(50),
            ..JournalOptions::default()
        },
    )
    .unwrap();
    journal.append(&common::event()).wait().unwrap();
    // No close: the writer must checkpoint on its own. Poll the head (bounded), no fixed sleep.
    let mut covered = false;
    for _ in 0..200 {
        if verify(&path).unwrap().head_seq == Some(1) {
            covered = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    assert!(covered, "record 1 was never covered by a checkpoint");
    journal.close_blocking().unwrap();
}

#[test]
fn deleting_the_checkpoints_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let journal = Journal::open(&path, JournalOptions::default()).unwrap();
    for _ in 0..3 {
        journal.append(&common::event()).wait().unwrap();
    }
    journal.close_blocking().unwrap();
    drop(journal);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("DELETE FROM checkpoints", []).unwrap();
    drop(conn);
    let breach = verify(&path).unwrap().breach.expect("a breach");
    assert_eq!(breach.seq, 3);
    assert_eq!(breach.kind.to_string(), "checkpoint missing");
}
