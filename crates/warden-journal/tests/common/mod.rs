//! What the journal's integration tests share.

use warden_core::{AgentId, Event, EventBody, SessionId};

/// A small event to append.
pub fn event() -> Event {
    Event {
        time_ms: 1,
        agent: AgentId::new("a").unwrap(),
        session: SessionId::from_raw("s"),
        body: EventBody::SessionEnded {
            detail: "done".into(),
        },
    }
}
