//! What an agent receives when Warden refuses its `tools/call`.
//!
//! A refusal is a successful JSON-RPC response carrying a tool result with `isError: true`,
//! not a JSON-RPC error: the MCP specification reserves protocol errors for malformed requests
//! and asks servers to report failures of a call in the result, where the model can read them
//! (see docs/decisions/0002-refusal-as-tool-result.md). The text is for the model; `_meta`
//! carries the same facts for programs.

use serde_json::{Value, json};
use warden_core::{ActionKind, AgentId, Effect};

use crate::guard::{Grounds, Verdict};

/// The `_meta` key under which Warden puts its decision.
pub const META_KEY: &str = "warden/decision";

/// The JSON-RPC error code of a refused request that is not a tool call (a resource read, a
/// prompt, a completion, a server's request to the agent).
pub const REFUSED: i64 = -32010;

/// The error refusing a request that is not a tool call: code, message (the same text a
/// refused tool call carries) and `data` with `warden/decision`.
pub fn refusal_error(agent: &AgentId, verdict: &Verdict) -> (i64, String, Value) {
    let result = refusal_result(agent, verdict);
    let message = result
        .pointer("/content/0/text")
        .and_then(Value::as_str)
        .unwrap_or("Warden refused this request")
        .to_owned();
    let decision = result
        .get("_meta")
        .and_then(|m| m.get(META_KEY))
        .cloned()
        .unwrap_or(Value::Null);
    (REFUSED, message, json!({ META_KEY: decision }))
}

/// The result of a refused call.
pub fn refusal_result(agent: &AgentId, verdict: &Verdict) -> Value {
    let d = &verdict.decision;
    // Only a policy's refusal names its grounds apart: the reason of any other already says
    // who refused (a human, a quarantine, Warden).
    let grounds = match verdict.grounds {
        Grounds::Policy if d.policies.is_empty() => " (default deny)".to_owned(),
        Grounds::Policy => format!(" (policy {})", d.policies.join(", ")),
        _ => String::new(),
    };
    let next = match (d.effect, verdict.grounds) {
        (Effect::Ask, _) => "A human must approve this call; do not retry it unchanged.".to_owned(),
        _ if verdict.seq.is_none() => "Retry later; nothing was done.".to_owned(),
        (_, Grounds::Unavailable) => "Retry later; nothing was done.".to_owned(),
        (_, Grounds::Approval) => "Do not retry it unless the operator asks you to.".to_owned(),
        (_, Grounds::Quarantine) => {
            format!("Do not retry it: only an operator can release agent \"{agent}\".")
        }
        (_, Grounds::Throttle) => "Wait a second before the next action.".to_owned(),
        (_, Grounds::Detector) => {
            "Do not retry it: Warden's monitoring refused it, and reported it.".to_owned()
        }
        (_, Grounds::Undecidable) => "Do not retry it unchanged.".to_owned(),
        // A forbid (or a policy that failed to evaluate) decided: a new permit would not help.
        _ if !d.policies.is_empty() => {
            format!("Do not retry it: a policy forbids it for agent \"{agent}\".")
        }
        _ if verdict.action.is_server_initiated() => format!(
            "If it is needed, ask the operator to grant server \"{}\" {} on agent \"{agent}\" \
             in Warden's policy.",
            verdict.target, verdict.action
        ),
        _ => format!(
            "Do not retry it. If the task needs it, ask the operator to grant agent \"{agent}\" \
             {} on \"{}\" in Warden's policy.",
            verdict.action, verdict.target
        ),
    };
    let record = verdict
        .seq
        .map_or_else(String::new, |seq| format!(" Journal record #{seq}."));
    let what = match verdict.action {
        ActionKind::CallTool => "this call to",
        ActionKind::ReadResource => "reading",
        ActionKind::GetPrompt => "the prompt",
        ActionKind::Complete => "completion on",
        _ => "this request of",
    };
    let text = format!(
        "Warden refused {what} \"{}\": {}{grounds}. {next}{record}",
        verdict.target, d.reason
    );
    json!({
        "content": [{ "type": "text", "text": text }],
        "isError": true,
        "_meta": {
            META_KEY: {
                "effect": d.effect,
                "reason": d.reason,
                "policies": d.policies,
                "grounds": verdict.grounds.as_str(),
                "target": verdict.target,
                "journal_seq": verdict.seq,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_core::Decision;

    #[test]
    fn names_the_rule_and_the_way_to_access() {
        let agent = AgentId::new("rogue").unwrap();
        let verdict = Verdict {
            decision: Decision {
                effect: Effect::Deny,
                policies: vec!["no-secrets".into()],
                reason: "secrets are off limits".into(),
            },
            seq: Some(12),
            target: "files/read_file".into(),
            action: ActionKind::CallTool,
            withdrawn: None,
            grounds: Grounds::Policy,
        };
        let r = refusal_result(&agent, &verdict);
        assert_eq!(r["isError"], true);
        let text = r["content"][0]["text"].as_str().unwrap();
        assert!(text.contains("secrets are off limits"));
        assert!(text.contains("policy no-secrets"));
        assert!(text.contains("#12"));
        assert!(text.contains("agent \"rogue\""));
        assert_eq!(r["_meta"][META_KEY]["effect"], "deny");
        assert_eq!(r["_meta"][META_KEY]["journal_seq"], 12);
    }

    #[test]
    fn ask_says_approval_is_needed() {
        let agent = AgentId::new("a").unwrap();
        let verdict = Verdict {
            decision: Decision {
                effect: Effect::Ask,
                policies: vec!["big-transfers".into()],
                reason: "approval required".into(),
            },
            seq: Some(1),
            target: "bank/transfer".into(),
            action: ActionKind::CallTool,
            withdrawn: None,
            grounds: Grounds::Policy,
        };
        let r = refusal_result(&agent, &verdict);
        assert!(
            r["content"][0]["text"]
                .as_str()
                .unwrap()
                .contains("approve")
        );
        assert_eq!(r["_meta"][META_KEY]["effect"], "ask");
    }

    #[test]
    fn a_server_request_names_the_server_as_the_one_to_grant() {
        let agent = AgentId::new("alice").unwrap();
        let verdict = Verdict {
            decision: Decision::refuse("no policy permits it"),
            seq: Some(3),
            target: "wiki".into(),
            action: ActionKind::Sample,
            withdrawn: None,
            grounds: Grounds::Policy,
        };
        let (code, message, data) = refusal_error(&agent, &verdict);
        assert_eq!(code, REFUSED);
        assert!(
            message.contains("grant server \"wiki\" sample on agent \"alice\""),
            "{message}"
        );
        assert_eq!(data[META_KEY]["journal_seq"], 3);
    }

    #[test]
    fn a_human_refusal_is_not_called_default_deny() {
        let agent = AgentId::new("alice").unwrap();
        let verdict = Verdict {
            decision: Decision::refuse("a human refused this call (ana: not during the freeze)"),
            seq: Some(43),
            target: "files/write_file".into(),
            action: ActionKind::CallTool,
            withdrawn: None,
            grounds: Grounds::Approval,
        };
        let r = refusal_result(&agent, &verdict);
        let text = r["content"][0]["text"].as_str().unwrap();
        assert!(text.contains("not during the freeze"), "{text}");
        assert!(!text.contains("default deny"), "{text}");
        assert!(!text.contains("grant"), "{text}");
        assert!(text.contains("#43"), "{text}");
        assert_eq!(r["_meta"][META_KEY]["grounds"], "approval");
    }

    #[test]
    fn a_quarantine_says_only_an_operator_lifts_it() {
        let agent = AgentId::new("rogue").unwrap();
        let verdict = Verdict {
            decision: Decision::refuse("agent \"rogue\" is quarantined"),
            seq: Some(7),
            target: "files/read_file".into(),
            action: ActionKind::CallTool,
            withdrawn: None,
            grounds: Grounds::Quarantine,
        };
        let text = refusal_result(&agent, &verdict)["content"][0]["text"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(!text.contains("default deny"), "{text}");
        assert!(text.contains("only an operator can release"), "{text}");
    }

    #[test]
    fn a_throttled_agent_is_told_to_wait_not_to_give_up() {
        let agent = AgentId::new("busy").unwrap();
        let verdict = Verdict {
            decision: Decision::refuse("agent \"busy\" is throttled; slow down"),
            seq: Some(9),
            target: "files/read_file".into(),
            action: ActionKind::CallTool,
            withdrawn: None,
            grounds: Grounds::Throttle,
        };
        let r = refusal_result(&agent, &verdict);
        let text = r["content"][0]["text"].as_str().unwrap();
        assert!(text.contains("Wait a second"), "{text}");
        assert!(!text.contains("Do not retry"), "{text}");
        assert_eq!(r["_meta"][META_KEY]["grounds"], "throttle");
    }
}
