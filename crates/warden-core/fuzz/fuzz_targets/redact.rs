//! `redact` over any JSON an agent can send as arguments.
//!
//! Asserts: redaction is idempotent; it keeps the shape (same keys in the same order, same
//! array lengths, same kinds of values); the value of a sensitive key is replaced whole by
//! `[REDACTED]` (unless null); a string is replaced exactly when `credential_kind` names a
//! credential in it; and no string of the result still looks like a credential. For each
//! string, `redact_text` (free text such as error messages) gives it back unchanged or its
//! marker, and is idempotent too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use warden_core::redact::{REDACTED, credential_kind, redact, redact_object, redact_text};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let once = redact(&value);
    assert_eq!(redact(&once), once, "redaction is not idempotent");
    check(&value, &once);
    no_credential_left(&once);
    if let Value::Object(map) = &value {
        assert_eq!(redact_object(map), once);
    }
});

/// Whether `redact` treats `key` as sensitive, asked of `redact` itself with a harmless value.
fn is_sensitive(key: &str) -> bool {
    redact(&json!({ key: "x" }))[key] == REDACTED
}

fn check(before: &Value, after: &Value) {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            assert!(b.keys().eq(a.keys()), "keys changed");
            for ((key, bv), av) in b.iter().zip(a.values()) {
                if is_sensitive(key) && !bv.is_null() {
                    assert_eq!(av, REDACTED, "value of sensitive key {key:?} kept");
                } else {
                    check(bv, av);
                }
            }
        }
        (Value::Array(b), Value::Array(a)) => {
            assert_eq!(b.len(), a.len(), "array length changed");
            for (bv, av) in b.iter().zip(a) {
                check(bv, av);
            }
        }
        (Value::String(b), Value::String(a)) => {
            let text = redact_text(b);
            match credential_kind(b) {
                Some(kind) => {
                    assert_eq!(a, &format!("[REDACTED:{kind}]"));
                    assert_eq!(text, format!("[REDACTED:{kind}: text withheld]"));
                }
                None => {
                    assert_eq!(a, b, "a harmless string was changed");
                    assert_eq!(&text, b, "harmless text was changed");
                }
            }
            assert_eq!(redact_text(&text), text, "redact_text is not idempotent");
        }
        (b, a) => assert_eq!(a, b, "a scalar was changed"),
    }
}

fn no_credential_left(v: &Value) {
    match v {
        Value::Object(map) => map.values().for_each(no_credential_left),
        Value::Array(items) => items.iter().for_each(no_credential_left),
        Value::String(s) => assert_eq!(credential_kind(s), None, "credential left in {s:?}"),
        _ => {}
    }
}
