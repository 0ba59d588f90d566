//! JSON-RPC 2.0 messages as the MCP transports carry them: one JSON object per stdio line or
//! per HTTP body.

use serde_json::{Map, Value, json};

/// Error codes from the JSON-RPC 2.0 specification that this server sends.
pub mod codes {
    /// The line is not valid JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON is not a valid JSON-RPC 2.0 message.
    pub const INVALID_REQUEST: i64 = -32600;
    /// The method is unknown.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// The method is known but its parameters are wrong (including an unknown tool).
    pub const INVALID_PARAMS: i64 = -32602;
    /// The server failed while handling the request.
    pub const INTERNAL_ERROR: i64 = -32603;
}

/// One message received from the client.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A request: the client expects a response with the same id.
    Request {
        /// The request id (a string or an integer).
        id: Value,
        /// The method name.
        method: String,
        /// The parameters, if any (an object or an array).
        params: Option<Value>,
    },
    /// A notification: no response is expected.
    Notification {
        /// The method name.
        method: String,
        /// The parameters, if any.
        params: Option<Value>,
    },
    /// The client's response to a request this server sent.
    Response {
        /// The id of the server's request.
        id: Value,
        /// `Ok(result)` or `Err(error object)`.
        outcome: Result<Value, Value>,
    },
}

/// Why a received line is not a JSON-RPC message this server can act on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The line is not JSON (or not UTF-8).
    #[error("parse error: {detail}")]
    Parse {
        /// What the parser said.
        detail: String,
    },
    /// The line is JSON but not a valid JSON-RPC 2.0 message.
    #[error("invalid request: {detail}")]
    Invalid {
        /// The message's id when it had a usable one, else null.
        id: Value,
        /// What is wrong with it.
        detail: String,
    },
}

impl MessageError {
    /// The JSON-RPC error code to answer with.
    pub fn code(&self) -> i64 {
        match self {
            Self::Parse { .. } => codes::PARSE_ERROR,
            Self::Invalid { .. } => codes::INVALID_REQUEST,
        }
    }

    /// The id to answer with (null when the message had none that can be used).
    pub fn id(&self) -> Value {
        match self {
            Self::Parse { .. } => Value::Null,
            Self::Invalid { id, .. } => id.clone(),
        }
    }
}

/// Whether `id` is one MCP allows: a string or an integer (never null).
pub fn is_valid_id(id: &Value) -> bool {
    match id {
        Value::String(_) => true,
        Value::Number(n) => n.is_i64() || n.is_u64(),
        _ => false,
    }
}

/// A stable key for an id, so ids can index maps (`1` and `"1"` stay distinct).
pub fn id_key(id: &Value) -> String {
    id.to_string()
}

/// Classifies one received line.
pub fn parse_line(line: &[u8]) -> Result<Incoming, MessageError> {
    let value: Value = serde_json::from_slice(line).map_err(|e| MessageError::Parse {
        detail: e.to_string(),
    })?;
    let Value::Object(mut object) = value else {
        return Err(invalid(Value::Null, "a message must be a JSON object"));
    };
    let id = object.remove("id");
    let usable_id = id.clone().filter(is_valid_id).unwrap_or(Value::Null);
    if object.get("jsonrpc") != Some(&Value::String("2.0".to_owned())) {
        return Err(invalid(usable_id, "\"jsonrpc\" must be \"2.0\""));
    }
    match object.remove("method") {
        Some(Value::String(method)) => {
            let params = take_params(&mut object, &usable_id)?;
            match id {
                None => Ok(Incoming::Notification { method, params }),
                Some(id) if is_valid_id(&id) => Ok(Incoming::Request { id, method, params }),
                Some(_) => Err(invalid(
                    Value::Null,
                    "\"id\" must be a string or an integer",
                )),
            }
        }
        Some(_) => Err(invalid(usable_id, "\"method\" must be a string")),
        None => response(object, id, usable_id),
    }
}

fn take_params(object: &mut Map<String, Value>, id: &Value) -> Result<Option<Value>, MessageError> {
    match object.remove("params") {
        None => Ok(None),
        Some(params @ (Value::Object(_) | Value::Array(_))) => Ok(Some(params)),
        Some(_) => Err(invalid(
            id.clone(),
            "\"params\" must be an object or an array",
        )),
    }
}

fn response(
    mut object: Map<String, Value>,
    id: Option<Value>,
    usable_id: Value,
) -> Result<Incoming, MessageError> {
    let Some(id) = id.filter(is_valid_id) else {
        return Err(invalid(
            usable_id,
            "a message needs a \"method\" or an \"id\"",
        ));
    };
    match (object.remove("result"), object.remove("error")) {
        (Some(result), None) => Ok(Incoming::Response {
            id,
            outcome: Ok(result),
        }),
        (None, Some(error)) => Ok(Incoming::Response {
            id,
            outcome: Err(error),
        }),
        _ => Err(invalid(
            id,
            "a response needs exactly one of \"result\" and \"error\"",
        )),
    }
}

fn invalid(id: Value, detail: &str) -> MessageError {
    MessageError::Invalid {
        id,
        detail: detail.to_owned(),
    }
}

/// A successful response.
pub fn result(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// An error response.
pub fn error(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// A request this server sends to the client.
pub fn request(id: &Value, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// A notification this server sends to the client.
pub fn notification(method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "method": method, "params": params})
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn classifies_requests_notifications_and_responses() {
        assert_eq!(
            parse_line(br#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#),
            Ok(Incoming::Request {
                id: json!(7),
                method: "ping".into(),
                params: None
            })
        );
        assert_eq!(
            parse_line(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Ok(Incoming::Notification {
                method: "notifications/initialized".into(),
                params: None
            })
        );
        assert_eq!(
            parse_line(br#"{"jsonrpc":"2.0","id":"r1","result":{"roots":[]}}"#),
            Ok(Incoming::Response {
                id: json!("r1"),
                outcome: Ok(json!({"roots": []}))
            })
        );
        assert_eq!(
            parse_line(br#"{"jsonrpc":"2.0","id":"r1","error":{"code":-1,"message":"no"}}"#),
            Ok(Incoming::Response {
                id: json!("r1"),
                outcome: Err(json!({"code": -1, "message": "no"}))
            })
        );
    }

    #[test]
    fn rejects_what_is_not_json_rpc() {
        let code = |line: &[u8]| parse_line(line).unwrap_err().code();
        assert_eq!(code(b"{not json"), codes::PARSE_ERROR);
        assert_eq!(code(b"\xff\xfe"), codes::PARSE_ERROR);
        assert_eq!(code(b"[1,2]"), codes::INVALID_REQUEST);
        assert_eq!(code(br#"{"id":1,"method":"ping"}"#), codes::INVALID_REQUEST);
        assert_eq!(
            code(br#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#),
            codes::INVALID_REQUEST
        );
        assert_eq!(
            code(br#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#),
            codes::INVALID_REQUEST
        );
        assert_eq!(
            code(br#"{"jsonrpc":"2.0","id":1,"method":"x","params":3}"#),
            codes::INVALID_REQUEST
        );
        assert_eq!(code(br#"{"jsonrpc":"2.0","id":1}"#), codes::INVALID_REQUEST);
        assert_eq!(
            parse_line(br#"{"jsonrpc":"1.0","id":4,"method":"ping"}"#)
                .unwrap_err()
                .id(),
            json!(4)
        );
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_line(&bytes);
        }

        #[test]
        fn string_ids_round_trip(id in "[a-z0-9/-]{1,12}", method in "[a-z/]{1,12}") {
            let line = serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": id, "method": method})).unwrap();
            prop_assert_eq!(
                parse_line(&line),
                Ok(Incoming::Request { id: json!(id), method, params: None })
            );
        }
    }
}
