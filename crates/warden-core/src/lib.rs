//! Warden's domain vocabulary, shared by every stage of an action's path.
//!
//! An agent attempts an [`Action`]; the policy stage turns it into a [`Decision`]; the journal
//! records an [`Event`] for the decision and another for the outcome. This crate owns those
//! types and the pure functions over them (name validation, argument redaction, canonical
//! digests). It must never do I/O: every other crate depends on it, and it stays cheap to test.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod action;
pub mod decision;
pub mod event;
pub mod ids;
pub mod redact;
pub mod scan;

/// `s` with every character that could hide or rearrange text on a terminal (see
/// [`action::is_deceptive_char`]) written as a `\u{…}` escape. For text from agents and
/// servers shown to humans.
pub fn escape_for_display(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(action::is_deceptive_char) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if action::is_deceptive_char(c) {
            out.push_str(&format!("\\u{{{:04x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

pub use action::{
    Action, ActionKind, CompletionRef, HostRef, ProgramRef, PromptRef, ResourceRef,
    TargetNameError, ToolRef,
};
pub use decision::{Decision, Effect};
pub use event::{ApprovalAnswer, Event, EventBody, Outcome, Severity};
pub use ids::{AgentId, NameError, ServerName, SessionId};

#[cfg(test)]
mod tests {
    use super::escape_for_display;

    #[test]
    fn escapes_what_could_fool_a_terminal() {
        assert_eq!(escape_for_display("plain text"), "plain text");
        assert_eq!(
            escape_for_display("a\nb\u{1b}[31m\u{202e}c"),
            "a\\u{000a}b\\u{001b}[31m\\u{202e}c"
        );
    }
}
