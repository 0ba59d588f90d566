//! Events and journals for tests.

use std::path::Path;

use serde_json::json;
use warden_core::{ActionKind, AgentId, Effect, Event, EventBody, SessionId};

use crate::{Journal, JournalOptions, SyncMode};

/// A realistic decision event (~250 bytes of canonical JSON).
pub(crate) fn decision(agent: &str, i: u64) -> Event {
    Event {
        time_ms: 1_700_000_000_000 + i as i64,
        agent: AgentId::new(agent).unwrap(),
        session: SessionId::from_raw(format!("{agent}-session")),
        body: EventBody::Decision {
            action: ActionKind::CallTool,
            target: "fs/read_file".into(),
            args_digest: format!("sha256:{:064x}", i),
            args: json!({"path": format!("/srv/data/report-{i}.csv"), "max_bytes": 65536}),
            effect: if i.is_multiple_of(3) {
                Effect::Deny
            } else {
                Effect::Allow
            },
            policies: vec!["read-reports".into()],
            reason: "permitted by policy read-reports".into(),
        },
    }
}

/// Options for fast tests: NORMAL sync (tests do not survive power loss anyway).
pub(crate) fn fast_options() -> JournalOptions {
    JournalOptions {
        sync: SyncMode::Normal,
        ..JournalOptions::default()
    }
}

/// Appends `n` decisions one after another and returns the journal.
pub(crate) fn journal_with(path: &Path, n: u64, options: JournalOptions) -> Journal {
    let journal = Journal::open(path, options).unwrap();
    let pending: Vec<_> = (1..=n)
        .map(|i| journal.append(&decision("alice", i)))
        .collect();
    for p in pending {
        p.wait().unwrap();
    }
    journal
}
