//! What an agent reads: finding secrets in the text that tool results and resources carry.
//!
//! The scanner labels each secret it finds ("private-key", "aws-access-key", …) with its byte
//! range, so the gateway can journal the labels (detectors follow what an agent has read) and,
//! when configured to, replace exactly those ranges before the agent sees them. Patterns are
//! deliberately specific: a false label costs a confused operator, a missed one a leaked key.

use std::ops::Range;

use crate::redact::token_kind;

/// One secret found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What kind of secret.
    pub label: &'static str,
    /// Where, in bytes.
    pub span: Range<usize>,
}

/// Every secret found in `text`, in order, without overlaps.
pub fn scan_text(text: &str) -> Vec<Finding> {
    let mut found = private_keys(text);
    found.extend(words(text).filter_map(|(span, word)| {
        let label = token_kind(word)?;
        Some(Finding { label, span })
    }));
    found.extend(url_passwords(text));
    found.extend(assignments(text));
    found.sort_by_key(|f| (f.span.start, std::cmp::Reverse(f.span.end)));
    // Keep the first of overlapping findings: a token inside a private key is the key.
    let mut out: Vec<Finding> = Vec::with_capacity(found.len());
    for f in found {
        if out.last().is_none_or(|last| f.span.start >= last.span.end) {
            out.push(f);
        }
    }
    out
}

/// `text` with each finding replaced by `[REDACTED:label]`.
pub fn redact_findings(text: &str, findings: &[Finding]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for f in findings {
        out.push_str(&text[at..f.span.start]);
        out.push_str("[REDACTED:");
        out.push_str(f.label);
        out.push(']');
        at = f.span.end;
    }
    out.push_str(&text[at..]);
    out
}

/// PEM private key blocks, from BEGIN to the matching END (or the end of the text).
fn private_keys(text: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find("-----BEGIN ") {
        let start = from + at;
        let header_end = text[start + 11..].find("-----").map(|i| start + 11 + i + 5);
        let Some(header_end) = header_end else { break };
        if !text[start..header_end].contains("PRIVATE KEY") {
            from = header_end;
            continue;
        }
        let end = text[header_end..]
            .find("-----END ")
            .and_then(|i| {
                let end_at = header_end + i + 9;
                text[end_at..].find("-----").map(|j| end_at + j + 5)
            })
            .unwrap_or(text.len());
        out.push(Finding {
            label: "private-key",
            span: start..end,
        });
        from = end;
    }
    out
}

/// The password of `scheme://user:password@host`.
fn url_passwords(text: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    for (at, _) in text.match_indices("://") {
        let rest_start = at + 3;
        let rest = &text[rest_start..];
        let authority_len = rest
            .find(|c: char| c == '/' || c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(rest.len());
        let authority = &rest[..authority_len];
        if let Some(at_sign) = authority.rfind('@')
            && let Some(colon) = authority[..at_sign].find(':')
            && colon + 1 < at_sign
        {
            out.push(Finding {
                label: "url-credentials",
                span: rest_start + colon + 1..rest_start + at_sign,
            });
        }
    }
    out
}

/// `NAME=value` or `NAME: value` where NAME says it holds a secret, e.g.
/// `AWS_SECRET_ACCESS_KEY=…`, `"password": "…"`. Only values of 6 characters or more, so
/// that "token: 12" stays.
fn assignments(text: &str) -> Vec<Finding> {
    const NAMES: &[&str] = &[
        "secret", "password", "passwd", "pwd", "api_key", "apikey", "token",
    ];
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b != b'=' && b != b':' {
            continue;
        }
        // The name: word characters (and quotes) right before the separator.
        let before = text[..i].trim_end_matches(['"', '\'', ' ']);
        let name_start = before
            .char_indices()
            .rev()
            .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .map_or(0, |(p, c)| p + c.len_utf8());
        let name = text[name_start..i].trim_end_matches(['"', '\'', ' ']);
        let folded = name.to_ascii_lowercase();
        if name.is_empty() || !NAMES.iter().any(|n| folded.contains(n)) {
            continue;
        }
        let value_start =
            i + 1 + text[i + 1..].len() - text[i + 1..].trim_start_matches([' ', '"', '\'']).len();
        let value_len = text[value_start..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | ';' | '}' | '&'))
            .unwrap_or(text.len() - value_start);
        if value_len >= 6 {
            out.push(Finding {
                label: "credential-assignment",
                span: value_start..value_start + value_len,
            });
        }
    }
    out
}

/// Whether `c` ends a word that could be a credential (quotes, separators of assignments,
/// URLs, paths and markup).
pub(crate) fn is_word_separator(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '"' | '\''
                | '='
                | ':'
                | ','
                | '/'
                | ';'
                | '&'
                | '?'
                | '@'
                | '('
                | ')'
                | '['
                | ']'
                | '<'
                | '>'
                | '{'
                | '}'
                | '`'
        )
}

/// The words of `text` with their byte ranges, split where credentials end.
fn words(text: &str) -> impl Iterator<Item = (Range<usize>, &str)> {
    let is_sep = is_word_separator;
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (is_sep(c), start) {
            (true, Some(s)) => {
                out.push((s..i, &text[s..i]));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s..text.len(), &text[s..]));
    }
    out.into_iter()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn labels(text: &str) -> Vec<&'static str> {
        scan_text(text).into_iter().map(|f| f.label).collect()
    }

    // Test fixtures: shaped like credentials, valid for nothing.
    const PEM: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIIEfixture\n-----END RSA PRIVATE KEY-----";

    #[test]
    fn finds_each_kind_and_redacts_only_the_secret() {
        let text = format!("key:\n{PEM}\nbye");
        let found = scan_text(&text);
        assert_eq!(labels(&text), ["private-key"]);
        assert_eq!(
            redact_findings(&text, &found),
            "key:\n[REDACTED:private-key]\nbye"
        );

        let text = "id AKIAABCDEFGHIJKLMNOP in config";
        assert_eq!(
            redact_findings(text, &scan_text(text)),
            "id [REDACTED:aws-access-key] in config"
        );
        let text = "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMIfixtureEXAMPLEKEY";
        assert_eq!(labels(text), ["credential-assignment"]);
        assert_eq!(
            redact_findings(text, &scan_text(text)),
            "AWS_SECRET_ACCESS_KEY=[REDACTED:credential-assignment]"
        );
        let text = r#"{"password": "hunter2-fixture"}"#;
        assert_eq!(
            redact_findings(text, &scan_text(text)),
            r#"{"password": "[REDACTED:credential-assignment]"}"#
        );
        let text = "db at postgres://app:s3cretfixture@db.internal/prod";
        assert_eq!(
            redact_findings(text, &scan_text(text)),
            "db at postgres://app:[REDACTED:url-credentials]@db.internal/prod"
        );
        assert_eq!(
            labels("token ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
            ["github-token"]
        );
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        assert_eq!(labels("password=hunter2"), ["credential-assignment"]);
        assert_eq!(labels("DB_PASSWORD=letmein"), ["credential-assignment"]);
        assert_eq!(labels("pwd=Sup3rS3cret!"), ["credential-assignment"]);
        for text in [
            "the notes\n",
            "password: abc",
            "see https://example.com/a:b@c",
            "-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----",
            "token count: 12",
        ] {
            assert_eq!(labels(text), Vec::<&str>::new(), "{text}");
        }
    }

    #[test]
    fn an_unterminated_key_is_redacted_to_the_end() {
        let text = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk";
        assert_eq!(
            redact_findings(text, &scan_text(text)),
            "[REDACTED:private-key]"
        );
    }

    proptest! {
        #[test]
        fn spans_are_ordered_disjoint_char_boundaries(text in "\\PC{0,200}") {
            let found = scan_text(&text);
            let mut end = 0;
            for f in &found {
                prop_assert!(f.span.start >= end && f.span.start < f.span.end);
                prop_assert!(text.is_char_boundary(f.span.start) && text.is_char_boundary(f.span.end));
                end = f.span.end;
            }
            let _ = redact_findings(&text, &found);
        }

        #[test]
        fn redaction_removes_what_was_found(prefix in "[a-z ]{0,20}", suffix in "[a-z ]{0,20}") {
            let text = format!("{prefix} AKIAABCDEFGHIJKLMNOP {suffix}");
            let redacted = redact_findings(&text, &scan_text(&text));
            prop_assert!(!redacted.contains("AKIA"));
            prop_assert!(scan_text(&redacted).is_empty());
        }
    }
}
