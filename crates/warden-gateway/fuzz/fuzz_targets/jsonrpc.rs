//! `classify` and `RequestId::from_value` over any JSON a peer can send, and the error
//! answers built from what they return.
//!
//! Asserts: a `Request` is a "2.0" object whose id is a string or a number, whose key is
//! `RequestId::from_value(id)`, whose method is the object's string "method", and whose
//! params (if any) are an object; a `Notification` has no "id"; a `Response` has no "method",
//! exactly one of "result" and "error", and a key unless its id is null and it is an error; a
//! refusal carries the message's id only when that id is a string or a number. Every answer
//! Warden would send (`error_line`, `result_line`) is one line that Warden itself classifies as
//! a response to the same key. The string "1" and the number 1 never share a key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Number, Value, json};
use warden_gateway::mcp::jsonrpc::{Message, RequestId, classify, code, error_line, result_line};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let obj = value.as_object();
    let field = |k: &str| obj.and_then(|o| o.get(k));
    match classify(&value) {
        Ok(Message::Request { id, key, method }) => {
            assert_eq!(field("jsonrpc"), Some(&json!("2.0")));
            assert_eq!(field("id"), Some(&id));
            assert!(id.is_string() || id.is_number(), "request id {id}");
            assert_eq!(RequestId::from_value(&id).as_ref(), Some(&key));
            assert_eq!(field("method"), Some(&Value::String(method)));
            assert!(field("params").is_none_or(Value::is_object));
            distinct_kinds(&id, &key);
            answered(
                Some(&id),
                Some(&key),
                error_line(Some(&id), code::INTERNAL_ERROR, "x", None),
            );
            answered(
                Some(&id),
                Some(&key),
                result_line(&id, json!({ "content": [] })),
            );
        }
        Ok(Message::Notification { method }) => {
            assert_eq!(field("jsonrpc"), Some(&json!("2.0")));
            assert!(field("id").is_none());
            assert_eq!(field("method"), Some(&Value::String(method)));
            assert!(field("params").is_none_or(Value::is_object));
        }
        Ok(Message::Response { id, key }) => {
            assert_eq!(field("jsonrpc"), Some(&json!("2.0")));
            assert_eq!(field("id"), Some(&id));
            assert!(field("method").is_none());
            assert!(field("result").is_some() != field("error").is_some());
            assert_eq!(RequestId::from_value(&id), key);
            if key.is_none() {
                assert!(id.is_null() && field("error").is_some());
            }
        }
        Err(e) => {
            if let Some(id) = &e.id {
                assert!(id.is_string() || id.is_number(), "refusal id {id}");
                assert_eq!(field("id"), Some(id));
            }
            let key = e.id.as_ref().and_then(RequestId::from_value);
            let line = error_line(e.id.as_ref(), code::INVALID_REQUEST, &e.why, None);
            answered(e.id.as_ref(), key.as_ref(), line);
        }
    }
});

/// `line` is one newline-terminated JSON-RPC response to `id`, with key `key`.
fn answered(id: Option<&Value>, key: Option<&RequestId>, line: Vec<u8>) {
    let Some((b'\n', body)) = line.split_last() else {
        panic!("answer does not end with a newline");
    };
    assert!(!body.contains(&b'\n'), "answer spans lines");
    let parsed: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => panic!("answer is not JSON: {e}"),
    };
    match classify(&parsed) {
        Ok(Message::Response {
            id: got,
            key: got_key,
        }) => {
            assert_eq!(&got, id.unwrap_or(&Value::Null));
            assert_eq!(got_key.as_ref(), key);
        }
        other => panic!("answer is not a response: {other:?}"),
    }
}

/// A string id and a number id never share a key, even when they are written alike.
fn distinct_kinds(id: &Value, key: &RequestId) {
    let twin = match id {
        Value::String(s) => s.parse::<Number>().ok().map(Value::Number),
        Value::Number(n) => Some(Value::String(n.to_string())),
        _ => None,
    };
    if let Some(twin) = twin {
        assert_ne!(
            RequestId::from_value(&twin).as_ref(),
            Some(key),
            "{id} and {twin}"
        );
    }
}
