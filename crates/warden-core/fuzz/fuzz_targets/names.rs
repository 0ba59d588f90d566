//! `ToolRef::new` (tool names come from agents and upstream servers), and `AgentId::new` /
//! `ServerName::new` on the same bytes.
//!
//! Asserts for a tool name: accepted names are 1..=256 bytes without control, zero-width,
//! bidirectional or BOM characters, kept byte for byte; the id is `server/name` and splitting
//! it at the first '/' gives back the server and the name; a refused name is reported as a
//! prefix of at most 80 bytes. For agent and server names: accepted exactly when 1..=64
//! bytes of [A-Za-z0-9_.-] starting with a letter or digit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_core::{AgentId, ServerName, ToolRef};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    tool_name(text);
    agent_and_server_name(text);
});

fn tool_name(name: &str) {
    let Ok(server) = ServerName::new("files") else {
        panic!("constant server name refused");
    };
    match ToolRef::new(server.clone(), name) {
        Ok(tool) => {
            assert_eq!(tool.name, name);
            assert!(!name.is_empty() && name.len() <= warden_core::action::MAX_TOOL_NAME_LEN);
            assert!(!name.chars().any(deceptive), "accepted {name:?}");
            let id = tool.id();
            assert_eq!(id, tool.to_string());
            assert_eq!(id.split_once('/'), Some((server.as_str(), name)));
        }
        Err(e) => {
            assert!(
                name.starts_with(&e.name),
                "{:?} is not a prefix of the name",
                e.name
            );
            assert!(e.name.len() <= 80);
            assert!(
                name.is_empty()
                    || name.len() > warden_core::action::MAX_TOOL_NAME_LEN
                    || name.chars().any(deceptive),
                "refused {name:?}: {}",
                e.why
            );
        }
    }
}

/// The characters `ToolRef::new` must refuse, written independently of it.
fn deceptive(c: char) -> bool {
    c.is_control()
        || matches!(
            c as u32,
            0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x2069 | 0xFEFF
        )
}

fn agent_and_server_name(name: &str) {
    let valid = !name.is_empty()
        && name.len() <= warden_core::ids::MAX_NAME_LEN
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    let agent = AgentId::new(name);
    assert_eq!(agent.is_ok(), valid, "agent name {name:?}");
    assert_eq!(ServerName::new(name).is_ok(), valid, "server name {name:?}");
    if let Ok(agent) = agent {
        assert_eq!(agent.as_str(), name);
        // A server name holds no '/', so tool ids stay unambiguous.
        assert!(!name.contains('/'));
    }
}
