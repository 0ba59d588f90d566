//! Response-side inspection: the text of every result an agent receives passes the secret
//! scanner. Labels are journaled with the outcome, so detectors can follow what an agent has
//! read; with redaction on, the secrets themselves never reach the agent.

use std::collections::BTreeSet;

use serde_json::Value;
use warden_core::scan::{redact_findings, scan_text};

/// Scans every string in `result` (binary `blob`s and `_meta` aside); redacts what it finds
/// when `redact` is set. Returns the labels found, sorted and without repeats.
pub fn inspect(result: &mut Value, redact: bool) -> Vec<String> {
    let mut labels = BTreeSet::new();
    walk(result, redact, &mut labels);
    labels.into_iter().map(str::to_owned).collect()
}

fn walk(value: &mut Value, redact: bool, labels: &mut BTreeSet<&'static str>) {
    match value {
        Value::String(text) => {
            let found = scan_text(text);
            if found.is_empty() {
                return;
            }
            labels.extend(found.iter().map(|f| f.label));
            if redact {
                *text = redact_findings(text, &found);
            }
        }
        Value::Array(items) => {
            for item in items {
                walk(item, redact, labels);
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                if key != "blob" && key != "_meta" {
                    walk(item, redact, labels);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn labels_and_redacts_text_anywhere_in_a_result() {
        let mut result = json!({
            "content": [
                {"type": "text", "text": "creds: AKIAABCDEFGHIJKLMNOP"},
                {"type": "resource", "resource": {"uri": "file:///k", "text": "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----"}},
                {"type": "image", "data": "aGVsbG8=", "mimeType": "image/png"}
            ],
            "structuredContent": {"env": {"line": "password=fixture-not-real"}},
            "_meta": {"note": "AKIAABCDEFGHIJKLMNOP"}
        });
        let labels = inspect(&mut result, true);
        assert_eq!(
            labels,
            ["aws-access-key", "credential-assignment", "private-key"]
        );
        assert_eq!(
            result["content"][0]["text"],
            "creds: [REDACTED:aws-access-key]"
        );
        assert_eq!(
            result["content"][1]["resource"]["text"],
            "[REDACTED:private-key]"
        );
        assert_eq!(
            result["_meta"]["note"], "AKIAABCDEFGHIJKLMNOP",
            "_meta is Warden's and the server's, not content"
        );
    }

    #[test]
    fn without_redaction_the_result_is_untouched_but_labelled() {
        let original = json!({"content": [{"type": "text", "text": "AKIAABCDEFGHIJKLMNOP"}]});
        let mut result = original.clone();
        assert_eq!(inspect(&mut result, false), ["aws-access-key"]);
        assert_eq!(result, original);
    }
}
