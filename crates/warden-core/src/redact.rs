//! Arguments as the journal keeps them: a digest of exactly what was sent, and a copy with
//! secrets taken out, so the journal proves what happened without becoming a store of
//! credentials.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// What replaces a redacted value.
pub const REDACTED: &str = "[REDACTED]";

/// Object keys whose values are always redacted (compared lowercase, without '_' and '-').
const SENSITIVE_KEY_PARTS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "apikey",
    "accesskey",
    "privatekey",
    "credential",
    "authorization",
    "cookie",
];

/// Returns `value` with the values of sensitive keys, and strings that look like credentials,
/// replaced by a marker.
pub fn redact(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if is_sensitive_key(k) && !v.is_null() {
                        Value::String(REDACTED.to_owned())
                    } else {
                        redact(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        Value::String(s) => match credential_kind(s) {
            Some(kind) => Value::String(format!("[REDACTED:{kind}]")),
            // Secrets inside longer text ("password=…" in a command line): only they go.
            None => {
                let found = crate::scan::scan_text(s);
                if found.is_empty() {
                    value.clone()
                } else {
                    Value::String(crate::scan::redact_findings(s, &found))
                }
            }
        },
        other => other.clone(),
    }
}

/// Short key names that are sensitive only as the whole key ("pw", not "upward").
const SENSITIVE_KEYS: &[&str] = &["pw", "pwd", "pass", "auth", "bearer", "sig", "signature"];

fn is_sensitive_key(key: &str) -> bool {
    let folded: String = key
        .chars()
        .filter(|c| !matches!(c, '_' | '-'))
        .flat_map(char::to_lowercase)
        .collect();
    SENSITIVE_KEY_PARTS.iter().any(|part| folded.contains(part))
        || SENSITIVE_KEYS.contains(&folded.as_str())
}

/// `text` unchanged, or a marker in its place if it contains a credential. For free text
/// such as error messages, which may echo what an agent sent.
pub fn redact_text(text: &str) -> String {
    match credential_kind(text) {
        Some(kind) => format!("[REDACTED:{kind}: text withheld]"),
        None => text.to_owned(),
    }
}

/// Names the kind of credential `s` contains, if it visibly contains one.
pub fn credential_kind(s: &str) -> Option<&'static str> {
    if s.contains("-----BEGIN") && s.contains("PRIVATE KEY-----") {
        return Some("private-key");
    }
    if has_url_credentials(s) {
        return Some("url-credentials");
    }
    let mut words = s
        .split(crate::scan::is_word_separator)
        .filter(|w| !w.is_empty())
        .peekable();
    while let Some(word) = words.next() {
        if let Some(kind) = token_kind(word) {
            return Some(kind);
        }
        if word.eq_ignore_ascii_case("bearer") && words.peek().is_some_and(|t| t.len() >= 16) {
            return Some("bearer-token");
        }
    }
    None
}

/// `scheme://user:password@host`: a password inside a URL.
fn has_url_credentials(s: &str) -> bool {
    s.match_indices("://").any(|(at, _)| {
        let rest = &s[at + 3..];
        let authority = rest
            .split(|c: char| c == '/' || c.is_whitespace())
            .next()
            .unwrap_or("");
        authority.rsplit_once('@').is_some_and(|(userinfo, _)| {
            userinfo.split_once(':').is_some_and(|(_, p)| !p.is_empty())
        })
    })
}

pub(crate) fn token_kind(w: &str) -> Option<&'static str> {
    // Punctuation glued to a token (the end of a sentence, `**bold**`, a table's `|`) is not
    // part of it; no token shape below begins or ends with any (but an unsigned JWT ends
    // with its `.`, so that one is looked for in the word as it came too).
    let raw = w;
    let w = w.trim_matches(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'));
    let tail_ok = |prefix: &str, min: usize| {
        w.strip_prefix(prefix).is_some_and(|t| {
            t.len() >= min
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
    };
    if (w.starts_with("AKIA") || w.starts_with("ASIA"))
        && w.len() == 20
        && w.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return Some("aws-access-key");
    }
    if ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]
        .iter()
        .any(|p| tail_ok(p, 30))
        || tail_ok("github_pat_", 30)
    {
        return Some("github-token");
    }
    if ["xoxb-", "xoxp-", "xoxa-", "xoxs-"]
        .iter()
        .any(|p| tail_ok(p, 10))
    {
        return Some("slack-token");
    }
    if tail_ok("sk-", 32) || tail_ok("sk_live_", 16) {
        return Some("api-key");
    }
    if tail_ok("AIza", 35) {
        return Some("google-api-key");
    }
    // Warden's own: agent tokens (`wdn_`) and operator tokens (`wdo_`), 43 characters of
    // base64url after the prefix, whatever punctuation follows (the end of a sentence, `**`).
    // One agent must not read another's from the journal.
    let warden = |prefix: &str| {
        w.strip_prefix(prefix).is_some_and(|t| {
            t.len() >= 43
                && t.as_bytes()[..43]
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
    };
    if warden("wdn_") || warden("wdo_") {
        return Some("warden-token");
    }
    let jwt = |w: &str| w.starts_with("eyJ") && w.split('.').count() == 3 && w.len() > 40;
    if jwt(w) || jwt(raw) {
        return Some("jwt");
    }
    None
}

/// [`redact`] for a JSON object, such as a tool call's arguments.
pub fn redact_object(map: &Map<String, Value>) -> Value {
    redact(&Value::Object(map.clone()))
}

/// [`digest`] for a JSON object, such as a tool call's arguments.
pub fn digest_object(map: &Map<String, Value>) -> String {
    let mut out = Vec::new();
    write_object(map, &mut out);
    format!("sha256:{}", hex::encode(Sha256::digest(&out)))
}

/// Serializes `value` as canonical JSON: object keys sorted, no insignificant whitespace.
/// Equal values always give equal bytes, whatever order their keys arrived in.
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    // serde_json writes only UTF-8; the lossy path is never taken.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

// Scalars and keys are written by serde_json straight into the buffer: this runs for every
// journal record and every call's argument digest, so no string per scalar or key.
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => write_object(map, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        scalar => write_json(scalar, out),
    }
}

fn write_object(map: &Map<String, Value>, out: &mut Vec<u8>) {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json(k.as_str(), out);
        out.push(b':');
        write_canonical(v, out);
    }
    out.push(b'}');
}

fn write_json<T: serde::Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    // Writing a string, number, bool or null into memory cannot fail.
    let _ = serde_json::to_writer(out, value);
}

/// `sha256:` followed by the hex SHA-256 of the canonical JSON of `value`.
pub fn digest(value: &Value) -> String {
    let hash = Sha256::digest(canonical_json(value).as_bytes());
    format!("sha256:{}", hex::encode(hash))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn redacts_sensitive_keys_at_any_depth() {
        let v = json!({"path": "/a", "settings": {"api_key": "abc", "Password": "p"}, "list": [{"token": 1}]});
        let r = redact(&v);
        assert_eq!(r["path"], "/a");
        assert_eq!(r["settings"]["api_key"], REDACTED);
        assert_eq!(r["settings"]["Password"], REDACTED);
        assert_eq!(r["list"][0]["token"], REDACTED);
    }

    #[test]
    fn redacts_secrets_assigned_inside_longer_text() {
        let v = json!({"command": "mysql -u app password=hunter22 -h db", "n": "token count: 12"});
        let r = redact(&v);
        assert_eq!(
            r["command"],
            "mysql -u app password=[REDACTED:credential-assignment] -h db"
        );
        assert_eq!(r["n"], "token count: 12");
        let aws = json!({"env": "aws_secret_access_key=wJalrXUtnFEMIfixtureEXAMPLEKEY"});
        assert!(!redact(&aws).to_string().contains("wJalr"));
    }

    #[test]
    fn redacts_credentials_inside_strings() {
        let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----";
        assert_eq!(redact(&json!(key)), json!("[REDACTED:private-key]"));
        assert_eq!(
            redact(&json!("id=AKIAIOSFODNN7EXAMPLE")),
            json!("[REDACTED:aws-access-key]")
        );
        assert_eq!(
            redact(&json!(format!("token ghp_{}", "a".repeat(36)))),
            json!("[REDACTED:github-token]")
        );
        assert_eq!(redact(&json!("hello world")), json!("hello world"));
        for (text, kind) in [
            (
                "postgres://admin:SuperSecret123@db:5432/x",
                "url-credentials",
            ),
            (
                "Authorization: Bearer abcdef0123456789abcdef",
                "bearer-token",
            ),
            ("/docs/sk_live_51Habcdefghijklmnop-x", "api-key"),
            (&format!("key=AIza{}", "S".repeat(35)), "google-api-key"),
            // Test fixtures in the shape of Warden's own tokens.
            (
                &format!("use wdn_{} instead", "Ab3-_".repeat(9)),
                "warden-token",
            ),
            (&format!("wdo_{}", "x".repeat(43)), "warden-token"),
            (&format!("see wdn_{}.", "y".repeat(43)), "warden-token"),
            (&format!("**wdo_{}**|", "z".repeat(43)), "warden-token"),
            (&format!("see ghp_{}.", "a".repeat(36)), "github-token"),
            ("**AKIAIOSFODNN7EXAMPLE**", "aws-access-key"),
        ] {
            assert_eq!(credential_kind(text), Some(kind), "{text}");
        }
        for plain in [
            "https://example.com/a:b",
            "user@example.com",
            "a bearer of news",
        ] {
            assert_eq!(credential_kind(plain), None, "{plain}");
        }
        let r = redact(&json!({"pw": "hunter2", "auth": "basic abc", "upward": 1}));
        assert_eq!(r["pw"], REDACTED);
        assert_eq!(r["auth"], REDACTED);
        assert_eq!(r["upward"], 1);
        assert_eq!(
            redact_text("open 'x sk_live_51Habcdefghijklmnop y' failed"),
            "[REDACTED:api-key: text withheld]"
        );
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":{"d":[1,2],"c":null}}"#).unwrap();
        assert_eq!(canonical_json(&a), r#"{"a":{"c":null,"d":[1,2]},"b":1}"#);
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(".{0,8}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// The canonical form spelled out plainly, one string per scalar and key: what journals
    /// and digests were written with before the writer above, which must give the same bytes.
    fn reference_canonical(value: &Value) -> String {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                let inner: Vec<String> = entries
                    .into_iter()
                    .map(|(k, v)| {
                        format!("{}:{}", Value::String(k.clone()), reference_canonical(v))
                    })
                    .collect();
                format!("{{{}}}", inner.join(","))
            }
            Value::Array(items) => {
                let inner: Vec<String> = items.iter().map(reference_canonical).collect();
                format!("[{}]", inner.join(","))
            }
            scalar => scalar.to_string(),
        }
    }

    proptest! {
        #[test]
        fn canonical_json_gives_the_bytes_it_always_gave(
            v in arb_json(),
            x in any::<f64>().prop_filter("finite", |x| x.is_finite()),
        ) {
            prop_assert_eq!(canonical_json(&v), reference_canonical(&v));
            let with_float = json!({"f": x, "v": v, "s": "quote \" and \\ and \u{1}"});
            prop_assert_eq!(canonical_json(&with_float), reference_canonical(&with_float));
        }

        #[test]
        fn canonical_json_round_trips(v in arb_json()) {
            let text = canonical_json(&v);
            let back: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(&back, &v);
            prop_assert_eq!(canonical_json(&back), text);
        }

        #[test]
        fn redaction_keeps_shape(v in arb_json()) {
            let r = redact(&v);
            prop_assert_eq!(std::mem::discriminant(&r), std::mem::discriminant(&v));
            // Redacting twice changes nothing more.
            prop_assert_eq!(redact(&r), r);
        }
    }
}
