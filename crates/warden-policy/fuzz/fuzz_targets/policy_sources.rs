//! `PolicySet::from_sources` over arbitrary policy and schema text.
//!
//! The input (read as UTF-8, lossily) is split at NUL characters into files: even pieces are
//! `*.cedar` policy files, odd pieces `*.cedarschema` fragments. Asserts: loading never
//! panics; a loaded set's ids are unique, and deciding a call with it never
//! panics, agrees with plain Cedar over the whole set (`decide_unsliced`), and never permits
//! (allow or ask) what `may_call` rules out; nor does deciding a resource read, a prompt or a
//! server's sampling request; a refused load reports at least one diagnostic,
//! each naming one of the given files (or the base schema) at a line and column counted from 1.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use warden_core::{Action, AgentId, Effect, PromptRef, ResourceRef, ServerName, ToolRef};
use warden_policy::{PolicyError, PolicySet, SourceFile};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut policies = Vec::new();
    let mut schemas = Vec::new();
    for (i, piece) in text.split('\0').take(6).enumerate() {
        if i % 2 == 0 {
            policies.push(SourceFile::new(format!("p{i}.cedar"), piece));
        } else {
            schemas.push(SourceFile::new(format!("s{i}.cedarschema"), piece));
        }
    }
    match PolicySet::from_sources(&policies, &schemas) {
        Ok(set) => loaded(&set),
        Err(e) => refused(&e, &policies, &schemas),
    }
});

fn loaded(set: &PolicySet) {
    // `is_empty` documents that a loaded set always holds a policy, but files holding only
    // comments load as an empty set (which denies everything). Reported, not asserted; see
    // seeds/policy_sources/regression-comment-only.
    assert_eq!(set.is_empty(), set.len() == 0);
    let ids: Vec<&str> = set.ids().collect();
    assert_eq!(ids.len(), set.len());
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        ids.len(),
        "duplicate ids"
    );
    for (agent, server, tool, arguments) in [
        (
            "alice",
            "files",
            "read_file",
            json!({ "path": "/home/alice/notes.txt" }),
        ),
        (
            "bob",
            "mail",
            "send",
            json!({ "to": ["a@example.com"], "n": 3, "x": 1.5 }),
        ),
    ] {
        let (Ok(agent), Ok(server)) = (AgentId::new(agent), ServerName::new(server)) else {
            panic!("constant names refused");
        };
        let Ok(tool) = ToolRef::new(server.clone(), tool) else {
            panic!("constant tool name refused");
        };
        let serde_json::Value::Object(arguments) = arguments else {
            panic!("constant arguments are not an object");
        };
        let (Ok(resource), Ok(prompt)) = (
            ResourceRef::new(server.clone(), format!("file:///{}", tool.name)),
            PromptRef::new(server.clone(), tool.name.clone()),
        ) else {
            panic!("constant resource or prompt refused");
        };
        // Each action with what its listing filter says (`None`: not listed).
        let requests = [
            (
                Some(set.may_call(&agent, &tool)),
                Action::CallTool {
                    tool,
                    arguments: arguments.clone(),
                },
            ),
            (
                Some(set.may_read(&agent, &resource)),
                Action::ReadResource { resource },
            ),
            (
                Some(set.may_get_prompt(&agent, &prompt)),
                Action::GetPrompt { prompt, arguments },
            ),
            (None, Action::Sample { server }),
        ];
        for (listed, action) in requests {
            let decision = set.decide(&agent, &action);
            assert_eq!(
                decision,
                set.decide_unsliced(&agent, &action),
                "slicing changed the decision"
            );
            if decision.effect != Effect::Deny {
                assert!(
                    listed != Some(false),
                    "{:?} although the listing hides it",
                    decision.effect
                );
                assert!(decision.policies.iter().all(|p| ids.contains(&p.as_str())));
            }
        }
    }
}

fn refused(e: &PolicyError, policies: &[SourceFile], schemas: &[SourceFile]) {
    let _ = e.to_string();
    let diagnostics = match e {
        PolicyError::Parse(d) | PolicyError::Schema(d) | PolicyError::Validation(d) => d,
        _ => return,
    };
    assert!(
        !diagnostics.0.is_empty(),
        "an error without diagnostics: {e}"
    );
    for d in &diagnostics.0 {
        if let Some(p) = d.position {
            assert!(p.line >= 1 && p.column >= 1, "{p:?}");
        }
        if matches!(e, PolicyError::Parse(_)) {
            let known = policies.iter().chain(schemas).any(|f| f.name == d.file)
                || d.file == "<warden base schema>";
            assert!(known, "a diagnostic names an unknown file {:?}", d.file);
        }
    }
}
