//! Bounds on a policy's shape, checked on its text before Cedar reads it.
//!
//! Cedar's parser, validator and evaluator go one call deeper for each level of an
//! expression: brackets inside brackets, and every `&&`, `||` or `if` of a chain. Deep enough,
//! that overflows a thread's stack, and a stack overflow aborts the whole process — the
//! agents' gateway with it. Policy text reaches Warden from files and from operators over the
//! API, so it is bounded here, far below what the stack allows (docs/policy-reference.md,
//! "Limits") and far above what a readable policy needs.

use crate::error::{Position, SourceDiagnostic};

/// Brackets (`(`, `[`, `{`) open at once, the policy's own `when { … }` included.
pub(crate) const MAX_NESTING: usize = 24;

/// Tokens in one policy (up to its `;`): names, literals, operators, brackets.
pub(crate) const MAX_TOKENS_PER_POLICY: usize = 2_000;

/// The characters of Cedar's operators.
const OPERATOR: &[u8] = b"&|=!<>+-*";

/// What is checked: policies for both bounds, schema fragments for nesting only (their
/// declarations are long lists, read without recursion).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Policy,
    Schema,
}

/// The first bound `text` crosses, as a diagnostic naming where.
pub(crate) fn check(text: &str, shown: &str, kind: Kind) -> Result<(), SourceDiagnostic> {
    let bytes = text.as_bytes();
    let too = |offset: usize, message: String, help: &str| SourceDiagnostic {
        file: shown.to_owned(),
        position: Some(Position::of_offset(text, offset)),
        message,
        help: Some(help.to_owned()),
    };
    let mut depth = 0usize;
    let mut tokens = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        let b = bytes[i];
        match b {
            b'"' => {
                // A string literal: its brackets and semicolons are text.
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                // Cedar ends a comment at a line feed or a carriage return.
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
                continue;
            }
            // `Set<Set<…>>` nests in schemas; in policies `<` and `>` compare.
            b'(' | b'[' | b'{' | b'<' if b != b'<' || kind == Kind::Schema => {
                depth += 1;
                i += 1;
                if depth > MAX_NESTING {
                    return Err(too(
                        start,
                        format!("nested more than {MAX_NESTING} brackets deep"),
                        "write it flatter, or split it into several policies",
                    ));
                }
            }
            b')' | b']' | b'}' | b'>' if b != b'>' || kind == Kind::Schema => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b';' if depth == 0 => {
                tokens = 0;
                i += 1;
                continue;
            }
            b if b.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            b if b.is_ascii_alphanumeric() || b == b'_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
            }
            b if OPERATOR.contains(&b) => {
                // `&&`, `||`, `==`, `<=`: one token each.
                while i < bytes.len() && OPERATOR.contains(&bytes[i]) {
                    i += 1;
                }
            }
            _ => i += 1,
        }
        tokens += 1;
        if kind == Kind::Policy && tokens > MAX_TOKENS_PER_POLICY {
            return Err(too(
                start,
                format!("a policy longer than {MAX_TOKENS_PER_POLICY} tokens"),
                "split it into several policies: a request is permitted when any permit \
                 matches and refused when any forbid does, so a long `||` becomes one policy \
                 per alternative",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(condition: &str) -> String {
        format!("permit(principal, action, resource) when {{ {condition} }};")
    }

    #[test]
    fn nesting_is_bounded_outside_strings_and_comments() {
        // The policy's own `when { … }` is one level.
        let deep = |n: usize| policy(&format!("{}true{}", "(".repeat(n), ")".repeat(n)));
        assert!(check(&deep(MAX_NESTING - 1), "p.cedar", Kind::Policy).is_ok());
        let err = check(&deep(MAX_NESTING), "p.cedar", Kind::Policy).unwrap_err();
        assert!(err.message.contains("brackets deep"), "{err}");
        assert_eq!(err.position.map(|p| p.line), Some(1));
        let quoted = policy(&format!(
            "resource.path like \"{}\" // {}",
            "(".repeat(100),
            "[".repeat(100)
        ));
        assert!(check(&quoted, "p.cedar", Kind::Policy).is_ok());
        let escaped = policy(r#"resource.path == "a\"(((((((((((((((((((((((((((((""#);
        assert!(check(&escaped, "p.cedar", Kind::Policy).is_ok());
        // A carriage return ends a comment for Cedar: what follows is counted.
        let hidden = policy(&format!(
            "// x\r{}true{}\n",
            "(".repeat(100),
            ")".repeat(100)
        ));
        assert!(check(&hidden, "p.cedar", Kind::Policy).is_err());
        // Schemas nest through `<…>` too.
        let sets = format!("type T = {}Long{};", "Set<".repeat(100), ">".repeat(100));
        assert!(check(&sets, "s.cedarschema", Kind::Schema).is_err());
        let ok = "type T = Set<Set<Long>>;";
        assert!(check(ok, "s.cedarschema", Kind::Schema).is_ok());
    }

    #[test]
    fn what_would_overflow_the_stack_is_refused_before_cedar_reads_it() {
        use crate::{PolicyError, PolicySet, SourceFile};
        let load = |condition: String| {
            let file = SourceFile::new("p.cedar", policy(&condition));
            // Unoptimized code needs far more stack per level than a release build, where
            // these loads fit in a default 2 MiB thread.
            std::thread::Builder::new()
                .stack_size(16 << 20)
                .spawn(move || PolicySet::from_sources(&[file], &[]).map(|set| set.len()))
                .unwrap()
                .join()
                .expect("no stack overflow")
        };
        // At the bounds: loaded.
        let parens = |n: usize| format!("{}true{}", "(".repeat(n), ")".repeat(n));
        assert_eq!(load(parens(MAX_NESTING - 1)).unwrap(), 1);
        assert_eq!(load(vec!["true"; 990].join(" && ")).unwrap(), 1);
        // Far past them (what crashed the process before): refused, with where.
        for condition in [parens(100_000), vec!["true"; 50_000].join(" && ")] {
            match load(condition) {
                Err(PolicyError::Parse(d)) => {
                    assert_eq!(d.0.len(), 1, "{d}");
                    assert!(d.0[0].help.is_some(), "{d}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn long_policies_are_bounded_one_by_one() {
        let chain = |n: usize| policy(&vec!["true"; n].join(" && "));
        // Each policy is counted from its own start.
        let two = format!("{}\n{}", chain(900), chain(900));
        assert!(check(&two, "p.cedar", Kind::Policy).is_ok());
        let err = check(&chain(1_100), "p.cedar", Kind::Policy).unwrap_err();
        assert!(err.message.contains("tokens"), "{err}");
        assert!(err.help.unwrap_or_default().contains("split it"));
        // Schemas are long lists: only their nesting is bounded.
        let entity = format!(
            "entity Big = {{ {} }};",
            (0..2_000)
                .map(|i| format!("a{i}: Long"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert!(check(&entity, "s.cedarschema", Kind::Schema).is_ok());
    }
}
