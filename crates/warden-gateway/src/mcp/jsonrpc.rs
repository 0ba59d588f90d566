//! Just enough JSON-RPC 2.0 to route MCP messages: tell requests, notifications and responses
//! apart, keep ids exactly as sent, and build error responses.

use serde_json::{Map, Value, json};

/// JSON-RPC error codes Warden answers with.
pub mod code {
    /// The bytes were not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// JSON, but not a JSON-RPC 2.0 message Warden accepts.
    pub const INVALID_REQUEST: i64 = -32600;
    /// The method is not one this endpoint offers.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// The method's parameters are malformed.
    pub const INVALID_PARAMS: i64 = -32602;
    /// Warden failed internally.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// The upstream server did not answer in time.
    pub const UPSTREAM_TIMEOUT: i64 = -32001;
    /// The upstream server is not running.
    pub const UPSTREAM_GONE: i64 = -32002;
    /// The message is larger than Warden accepts.
    pub const TOO_LARGE: i64 = -32003;
    /// Too many requests of this agent are in flight.
    pub const OVERLOADED: i64 = -32004;
}

/// A request id as the peer sent it (a string or a number), with a key for maps.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    /// The id, if `value` is a valid JSON-RPC id (MCP forbids null ids).
    pub fn from_value(value: &Value) -> Option<Self> {
        match value {
            // Tag the kind so that 1 and "1" stay distinct, as JSON-RPC requires.
            Value::String(s) => Some(Self(format!("s{s}"))),
            Value::Number(n) => Some(Self(format!("n{n}"))),
            _ => None,
        }
    }
}

/// What kind of message a line holds.
#[derive(Debug)]
pub enum Message {
    /// A request: it has a method and an id, and expects a response.
    Request {
        /// The id, as sent.
        id: Value,
        /// The id as a map key.
        key: RequestId,
        /// The method.
        method: String,
    },
    /// A notification: a method without an id.
    Notification {
        /// The method.
        method: String,
    },
    /// A response to a request of the other side.
    Response {
        /// The id, as sent.
        id: Value,
        /// The id as a map key; `None` for an error answering a message whose id could not be
        /// read (JSON-RPC answers those with a null id).
        key: Option<RequestId>,
    },
}

/// Why a JSON value is not a message Warden accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{why}")]
pub struct InvalidMessageError {
    /// The id, when one could be read, so the sender can be answered.
    pub id: Option<Value>,
    /// What is wrong.
    pub why: String,
}

/// Classifies a parsed JSON value.
pub fn classify(value: &Value) -> Result<Message, InvalidMessageError> {
    let invalid = |id: Option<&Value>, why: &str| InvalidMessageError {
        id: id.filter(|v| RequestId::from_value(v).is_some()).cloned(),
        why: why.to_owned(),
    };
    let obj = match value {
        Value::Object(obj) => obj,
        Value::Array(_) => {
            return Err(invalid(
                None,
                "JSON-RPC batches are not accepted; send one message per line",
            ));
        }
        _ => return Err(invalid(None, "a JSON-RPC message must be a JSON object")),
    };
    let id = obj.get("id");
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(invalid(id, "missing or wrong \"jsonrpc\": \"2.0\""));
    }
    match (obj.get("method"), id) {
        (Some(Value::String(method)), Some(id)) => {
            let key = RequestId::from_value(id)
                .ok_or_else(|| invalid(None, "a request id must be a string or a number"))?;
            check_params(obj, Some(id))?;
            Ok(Message::Request {
                id: id.clone(),
                key,
                method: method.clone(),
            })
        }
        (Some(Value::String(method)), None) => {
            check_params(obj, None)?;
            Ok(Message::Notification {
                method: method.clone(),
            })
        }
        (Some(_), _) => Err(invalid(id, "\"method\" must be a string")),
        (None, Some(id)) => {
            let key = RequestId::from_value(id);
            if key.is_none() && !(id.is_null() && obj.contains_key("error")) {
                return Err(invalid(None, "a response id must be a string or a number"));
            }
            if obj.contains_key("result") == obj.contains_key("error") {
                return Err(invalid(
                    Some(id),
                    "a response must have exactly one of \"result\" and \"error\"",
                ));
            }
            Ok(Message::Response {
                id: id.clone(),
                key,
            })
        }
        (None, None) => Err(invalid(
            None,
            "neither a request, a notification nor a response",
        )),
    }
}

fn check_params(obj: &Map<String, Value>, id: Option<&Value>) -> Result<(), InvalidMessageError> {
    match obj.get("params") {
        None | Some(Value::Object(_)) => Ok(()),
        Some(_) => Err(InvalidMessageError {
            id: id.cloned(),
            why: "\"params\" must be an object".to_owned(),
        }),
    }
}

/// Whether some JSON object in `bytes` (already known to be valid JSON) repeats a key.
///
/// serde_json keeps the last of repeated keys; another parser may keep the first. A message
/// with repeated keys could then be decided on one set of arguments and run with another, so
/// Warden refuses it instead of guessing.
pub fn has_duplicate_keys(bytes: &[u8]) -> bool {
    serde_json::from_slice::<UniqueKeys>(bytes).is_err()
}

/// Deserializes any JSON, failing on a repeated object key.
struct UniqueKeys;

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueKeysVisitor)
    }
}

struct UniqueKeysVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueKeysVisitor {
    type Value = UniqueKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<UniqueKeys, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if !seen.insert(key) {
                return Err(serde::de::Error::custom("repeated object key"));
            }
            map.next_value::<UniqueKeys>()?;
        }
        Ok(UniqueKeys)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueKeys, A::Error> {
        while seq.next_element::<UniqueKeys>()?.is_some() {}
        Ok(UniqueKeys)
    }

    fn visit_bool<E>(self, _: bool) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_i64<E>(self, _: i64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_u64<E>(self, _: u64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_f64<E>(self, _: f64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_str<E>(self, _: &str) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_unit<E>(self) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
}

/// Serializes a JSON-RPC error response as one line (with its newline).
pub fn error_line(id: Option<&Value>, code: i64, message: &str, data: Option<Value>) -> Vec<u8> {
    let mut error = json!({ "code": code, "message": message });
    if let Some(data) = data {
        error["data"] = data;
    }
    line(&json!({
        "jsonrpc": "2.0",
        "id": id.cloned().unwrap_or(Value::Null),
        "error": error,
    }))
}

/// Serializes a JSON-RPC result response as one line.
pub fn result_line(id: &Value, result: Value) -> Vec<u8> {
    line(&json!({ "jsonrpc": "2.0", "id": id, "result": result }))
}

/// Serializes any JSON value as one line. serde_json never emits raw newlines, so the
/// framing holds.
pub fn line(value: &Value) -> Vec<u8> {
    let mut out = value.to_string().into_bytes();
    out.push(b'\n');
    out
}

/// Finds a plausible top-level `"id"` in the kept ends of a message too large to parse, so its
/// sender can still be answered. A wrong guess only misroutes an error about an oversize
/// message, never a decision.
pub fn sniff_id(head: &[u8], tail: &[u8]) -> Option<Value> {
    [head, tail].into_iter().find_map(sniff_in)
}

fn sniff_in(bytes: &[u8]) -> Option<Value> {
    let text = String::from_utf8_lossy(bytes);
    let mut rest: &str = &text;
    while let Some(at) = rest.find("\"id\"") {
        let after = rest[at + 4..].trim_start();
        if let Some(value) = after.strip_prefix(':') {
            let value = value.trim_start();
            let mut stream = serde_json::Deserializer::from_str(value).into_iter::<Value>();
            if let Some(Ok(v @ (Value::String(_) | Value::Number(_)))) = stream.next() {
                return Some(v);
            }
        }
        rest = &rest[at + 4..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(text: &str) -> Result<Message, InvalidMessageError> {
        classify(&serde_json::from_str(text).unwrap())
    }

    #[test]
    fn classifies_the_three_kinds() {
        assert!(matches!(
            c(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
            Ok(Message::Request { method, .. }) if method == "ping"
        ));
        assert!(matches!(
            c(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Ok(Message::Notification { .. })
        ));
        assert!(matches!(
            c(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#),
            Ok(Message::Response { key: Some(_), .. })
        ));
        assert!(matches!(
            c(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#),
            Ok(Message::Response { key: None, .. })
        ));
    }

    #[test]
    fn refuses_what_is_not_json_rpc() {
        for bad in [
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
            r#"{"id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":7}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{}}"#,
            r#"{"jsonrpc":"2.0","id":null,"result":{}}"#,
            r#"{"jsonrpc":"2.0"}"#,
            r#""text""#,
        ] {
            assert!(c(bad).is_err(), "{bad}");
        }
        let err = c(r#"{"jsonrpc":"1.0","id":9,"method":"ping"}"#).unwrap_err();
        assert_eq!(err.id, Some(json!(9)));
    }

    #[test]
    fn repeated_keys_are_found_at_any_depth() {
        assert!(!has_duplicate_keys(
            br#"{"a":1,"b":{"a":2},"c":[{"a":3},{"a":4}]}"#
        ));
        assert!(has_duplicate_keys(br#"{"a":1,"a":2}"#));
        assert!(has_duplicate_keys(
            br#"{"params":{"arguments":{"to":"team","to":"evil"}}}"#
        ));
        assert!(has_duplicate_keys(br#"[1,{"x":{"y":1,"y":1}}]"#));
        // Escapes that spell the same key are the same key.
        assert!(has_duplicate_keys(br#"{"to":1,"to":2}"#));
    }

    #[test]
    fn ids_of_different_types_stay_distinct() {
        assert_ne!(
            RequestId::from_value(&json!(1)),
            RequestId::from_value(&json!("1"))
        );
    }

    #[test]
    fn sniffs_ids_from_either_end() {
        assert_eq!(
            sniff_id(br#"{"jsonrpc":"2.0","id": 42,"params":{"x":"#, b""),
            Some(json!(42))
        );
        assert_eq!(sniff_id(b"xxxx", br#""}},"id":"abc"}"#), Some(json!("abc")));
        assert_eq!(sniff_id(b"no id here", b"nor here"), None);
    }
}

#[cfg(test)]
mod number_id_tests {
    use super::*;

    #[test]
    fn numeric_response_id_from_bytes() {
        let bytes = br#"{"id":1,"jsonrpc":"2.0","result":{"capabilities":{}}}"#;
        let v: Value = serde_json::from_slice(bytes).unwrap();
        assert!(
            matches!(classify(&v), Ok(Message::Response { .. })),
            "{:?}",
            classify(&v)
        );
    }
}
