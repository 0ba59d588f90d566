//! The files a journal consists of: who may read them, and what happens when one is missing.

use std::os::unix::fs::PermissionsExt;

use warden_core::{AgentId, Event, EventBody, SessionId};
use warden_journal::{Journal, JournalError, JournalOptions, verify};

fn event() -> Event {
    Event {
        time_ms: 1,
        agent: AgentId::new("a").unwrap(),
        session: SessionId::from_raw("s"),
        body: EventBody::SessionEnded {
            detail: "done".into(),
        },
    }
}

#[test]
fn journal_files_are_private_to_wardens_user() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let journal = Journal::open(&path, JournalOptions::default()).unwrap();
    journal.append(&event()).wait().unwrap();
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
    journal.append(&event()).wait().unwrap();
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
