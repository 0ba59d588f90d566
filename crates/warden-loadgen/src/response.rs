//! Reading a Streamable HTTP response: a JSON body, or an event stream whose events carry
//! JSON-RPC messages; and judging the message that answers a request.

use serde_json::Value;

use crate::error::{LoadError, ResponseError};

/// Whether `message` is the response (not a request or notification) to request `id`.
pub fn answers(message: &Value, id: u64) -> bool {
    message.get("method").is_none() && message.get("id").and_then(Value::as_u64) == Some(id)
}

/// The response to request `id` in a JSON body: one message, or a batch of them.
pub fn find_in_json(body: &[u8], id: u64) -> Result<Value, ResponseError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ResponseError::NotJson(e.to_string()))?;
    match value {
        Value::Array(batch) => batch
            .into_iter()
            .find(|m| answers(m, id))
            .ok_or(ResponseError::NoMatchingId(id)),
        message if answers(&message, id) => Ok(message),
        _ => Err(ResponseError::NoMatchingId(id)),
    }
}

/// The response to request `id` among the data of server-sent events, if one is there.
/// Events that carry other messages (progress, logging, server requests) are skipped.
pub fn find_in_events(events: &[SseEvent], id: u64) -> Result<Option<Value>, ResponseError> {
    for event in events {
        if event.data.is_empty() {
            continue;
        }
        let message: Value =
            serde_json::from_str(&event.data).map_err(|e| ResponseError::NotJson(e.to_string()))?;
        if answers(&message, id) {
            return Ok(Some(message));
        }
    }
    Ok(None)
}

/// Checks a JSON-RPC response: `Ok` with its `result`, or the error it carries. For a
/// `tools/call`, a result with `isError: true` is an error too, as a refused call arrives so.
pub fn outcome(message: Value, is_tool_call: bool) -> Result<Value, LoadError> {
    let Value::Object(mut fields) = message else {
        return Err(ResponseError::NoOutcome.into());
    };
    if let Some(error) = fields.remove("error") {
        return Err(LoadError::Rpc {
            code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        });
    }
    let result = fields.remove("result").ok_or(ResponseError::NoOutcome)?;
    if is_tool_call && result.get("isError").and_then(Value::as_bool) == Some(true) {
        let text = result
            .pointer("/content/0/text")
            .and_then(Value::as_str)
            .unwrap_or("(no text)");
        return Err(LoadError::Tool(text.chars().take(200).collect()));
    }
    Ok(result)
}

/// One server-sent event: its type and its data lines joined by `\n`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; empty means the default type, "message".
    pub event: String,
    /// The `data:` lines, joined.
    pub data: String,
}

/// An incremental parser of a `text/event-stream` body: feed it chunks as they arrive, in any
/// split (even inside a line or a UTF-8 sequence); it returns each event once it is complete.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of a line not yet terminated.
    partial: Vec<u8>,
    /// The event being assembled.
    current: SseEvent,
    has_data: bool,
    /// The previous chunk ended in `\r`: a `\n` opening the next one belongs to it.
    after_cr: bool,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next chunk; returns the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        let mut rest = chunk;
        if self.after_cr {
            self.after_cr = false;
            if let Some(tail) = rest.strip_prefix(b"\n") {
                rest = tail;
            }
        }
        // Lines end in \r\n, \n or \r (the spec allows all three).
        while let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.partial.extend_from_slice(&rest[..end]);
            let line = std::mem::take(&mut self.partial);
            if let Some(event) = self.line(&line) {
                events.push(event);
            }
            let crlf = rest[end] == b'\r';
            rest = &rest[end + 1..];
            if crlf {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    None => self.after_cr = true,
                    Some(_) => {}
                }
            }
        }
        self.partial.extend_from_slice(rest);
        events
    }

    fn line(&mut self, line: &[u8]) -> Option<SseEvent> {
        if line.is_empty() {
            // A blank line dispatches the event; one without data is dropped (per the spec).
            let event = std::mem::take(&mut self.current);
            let had_data = std::mem::replace(&mut self.has_data, false);
            return had_data.then_some(event);
        }
        if line[0] == b':' {
            return None; // a comment, e.g. a keep-alive
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.current.event = value.to_owned(),
            _ => {} // id, retry and unknown fields do not matter here
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        chunks.iter().flat_map(|c| parser.push(c)).collect()
    }

    #[test]
    fn events_are_split_on_blank_lines_with_any_line_ending() {
        let body =
            b"event: message\ndata: {\"a\":1}\n\ndata: x\r\ndata: y\r\n\r\n: ping\rdata: z\r\r";
        let events = parse_all(&[body]);
        assert_eq!(
            events,
            vec![
                SseEvent {
                    event: "message".into(),
                    data: "{\"a\":1}".into()
                },
                SseEvent {
                    event: String::new(),
                    data: "x\ny".into()
                },
                SseEvent {
                    event: String::new(),
                    data: "z".into()
                },
            ]
        );
    }

    #[test]
    fn every_split_of_the_stream_gives_the_same_events() {
        let body = "event: message\r\ndata: {\"id\":1,\"result\":{\"t\":\"é\"}}\r\n\r\nid: 7\ndata:no-space\n\n";
        let bytes = body.as_bytes();
        let whole = parse_all(&[bytes]);
        assert_eq!(whole.len(), 2);
        assert_eq!(whole[1].data, "no-space");
        for cut in 0..=bytes.len() {
            let (a, b) = bytes.split_at(cut);
            assert_eq!(parse_all(&[a, b]), whole, "split at {cut}");
        }
        let single: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(parse_all(&single), whole);
    }

    #[test]
    fn an_unfinished_event_is_not_returned() {
        assert!(parse_all(&[b"data: {\"id\":1}\n"]).is_empty());
        assert!(parse_all(&[b"event: only-a-type\n\n"]).is_empty());
    }

    #[test]
    fn the_response_is_found_among_other_messages() {
        let events = parse_all(&[
            b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n",
            b"data: {\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"roots/list\"}\n\n",
            b"data: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"ok\":true}}\n\n",
        ]);
        let found = find_in_events(&events, 3).unwrap().unwrap();
        assert_eq!(found["result"]["ok"], true);
        assert_eq!(find_in_events(&events, 4).unwrap(), None);
        let bad = parse_all(&[b"data: not json\n\n"]);
        assert!(matches!(
            find_in_events(&bad, 1),
            Err(ResponseError::NotJson(_))
        ));
    }

    #[test]
    fn json_bodies_single_or_batched() {
        let one = br#"{"jsonrpc":"2.0","id":5,"result":{}}"#;
        assert_eq!(find_in_json(one, 5).unwrap()["id"], 5);
        assert_eq!(
            find_in_json(one, 6).unwrap_err(),
            ResponseError::NoMatchingId(6)
        );
        let batch = br#"[{"jsonrpc":"2.0","id":1,"result":1},{"jsonrpc":"2.0","id":2,"result":2}]"#;
        assert_eq!(find_in_json(batch, 2).unwrap()["result"], 2);
        assert!(matches!(
            find_in_json(b"<html>", 1),
            Err(ResponseError::NotJson(_))
        ));
    }

    #[test]
    fn outcomes_distinguish_results_rpc_errors_and_tool_errors() {
        let ok = json!({"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":false}});
        assert!(outcome(ok, true).is_ok());
        let rpc = json!({"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"nope"}});
        match outcome(rpc, true) {
            Err(LoadError::Rpc { code, message }) => {
                assert_eq!(code, -32601);
                assert_eq!(message, "nope");
            }
            other => panic!("{other:?}"),
        }
        let refused = json!({"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"denied by rule"}],"isError":true}});
        match outcome(refused.clone(), true) {
            Err(e @ LoadError::Tool(_)) => {
                assert_eq!(e.kind(), "tool_error");
                assert!(e.to_string().contains("denied by rule"));
            }
            other => panic!("{other:?}"),
        }
        // Outside tools/call, isError means nothing special.
        assert!(outcome(refused, false).is_ok());
        assert!(matches!(
            outcome(json!({"jsonrpc":"2.0","id":1}), false),
            Err(LoadError::BadResponse(ResponseError::NoOutcome))
        ));
    }
}
