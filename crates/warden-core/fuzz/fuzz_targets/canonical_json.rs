//! `canonical_json` and `digest` over any JSON an agent can send as arguments.
//!
//! Asserts: the canonical text parses back to an equal value; it is a fixed point
//! (canonicalizing the parsed text gives the same bytes); every object's keys are in strictly
//! increasing byte order; it has no insignificant whitespace (it equals serde_json's compact
//! output of the re-parsed, key-ordered value); key order of the input does not change it or
//! the digest; and the digest is `sha256:` with 64 lowercase hex digits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use warden_core::redact::{canonical_json, digest, digest_object};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let text = canonical_json(&value);
    let back: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => panic!("canonical JSON {text:?} does not parse: {e}"),
    };
    assert_eq!(back, value, "canonical JSON does not round-trip: {text}");
    assert_eq!(
        canonical_json(&back),
        text,
        "canonical JSON is not a fixed point"
    );
    keys_sorted(&back);
    // `back` holds its keys in canonical order (maps keep insertion order in Warden's build),
    // so compact serialization must give the canonical bytes exactly.
    assert_eq!(
        serde_json::to_string(&back).ok().as_deref(),
        Some(text.as_str())
    );

    let reversed = reverse_keys(&value);
    assert_eq!(
        canonical_json(&reversed),
        text,
        "key order leaked into canonical JSON"
    );

    let d = digest(&value);
    let hex = d.strip_prefix("sha256:").unwrap_or_default();
    assert!(hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
    assert_eq!(digest(&back), d);
    assert_eq!(digest(&reversed), d);
    if let Value::Object(map) = &value {
        assert_eq!(digest_object(map), d);
    }
});

fn keys_sorted(v: &Value) {
    match v {
        Value::Object(map) => {
            let keys: Vec<&String> = map.keys().collect();
            assert!(keys.windows(2).all(|w| w[0] < w[1]), "keys out of order");
            map.values().for_each(keys_sorted);
        }
        Value::Array(items) => items.iter().for_each(keys_sorted),
        _ => {}
    }
}

/// The same value with every object's keys inserted in reverse order.
fn reverse_keys(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map.iter().rev() {
                out.insert(k.clone(), reverse_keys(v));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(reverse_keys).collect()),
        other => other.clone(),
    }
}
