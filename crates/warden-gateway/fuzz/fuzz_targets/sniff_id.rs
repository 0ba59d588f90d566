//! `sniff_id` over the kept ends of an oversize line (arbitrary bytes).
//!
//! The input is `[cut, bytes...]`; `cut` splits the bytes into head and tail. Asserts: the
//! result is a string or a number, and only ever found where `"id"` occurs. And when the bytes
//! are themselves a JSON string or number, a line that starts `{"jsonrpc":"2.0","id": <it>`
//! gives exactly that id back, whether it is in the head or in the tail.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use warden_gateway::mcp::jsonrpc::sniff_id;

fuzz_target!(|data: &[u8]| {
    let [cut, bytes @ ..] = data else {
        return;
    };
    let at = usize::from(*cut) * bytes.len() / 255;
    let (head, tail) = bytes.split_at(at);
    if let Some(id) = sniff_id(head, tail) {
        assert!(id.is_string() || id.is_number(), "sniffed {id}");
        let has_key = |b: &[u8]| b.windows(4).any(|w| w == b"\"id\"");
        assert!(
            has_key(head) || has_key(tail),
            "an id without an \"id\" key"
        );
    }

    if let Ok(id @ (Value::String(_) | Value::Number(_))) = serde_json::from_slice::<Value>(bytes) {
        let line = format!("{{\"jsonrpc\":\"2.0\",\"id\": {id},\"params\":{{\"x\":\"");
        assert_eq!(sniff_id(line.as_bytes(), b"").as_ref(), Some(&id));
        assert_eq!(
            sniff_id(b"no key here", line.as_bytes()).as_ref(),
            Some(&id)
        );
    }
});
