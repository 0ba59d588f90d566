//! The answers Warden writes itself: refusals, malformed requests and unreachable
//! destinations, each a short `text/plain` sentence the agent can read.

use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use warden_core::Effect;

use super::exchange::ProxyBody;
use crate::guard::Verdict;

/// The header naming the decision (`deny` or `ask`) on a refusal.
pub const DECISION_HEADER: &str = "warden-decision";
/// The header carrying the journal sequence number of the refusal's decision record.
pub const SEQ_HEADER: &str = "warden-journal-seq";

/// The raw answer to a connection over the limit, written before any request is read.
pub(super) const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n\
connection: close\r\ncontent-length: 59\r\n\r\n\
Warden's egress proxy has too many open connections: retry\n";

/// `403 Forbidden` for a decision that does not let the request through.
pub(super) fn refused(shown: &str, verdict: &Verdict) -> Response<ProxyBody> {
    let reason = &verdict.decision.reason;
    let text = match verdict.decision.effect {
        Effect::Ask => format!(
            "Warden refused {shown}: it requires approval, which the egress proxy cannot ask \
             for yet ({reason})\n"
        ),
        _ => format!("Warden refused {shown}: {reason}\n"),
    };
    with_decision(StatusCode::FORBIDDEN, text, verdict)
}

/// `400 Bad Request` for a host no policy can be written for; the refusal is journaled.
pub(super) fn bad_host(text: String, verdict: &Verdict) -> Response<ProxyBody> {
    with_decision(StatusCode::BAD_REQUEST, format!("{text}\n"), verdict)
}

/// `400 Bad Request` for a request that names no destination.
pub(super) fn bad_request(text: String) -> Response<ProxyBody> {
    plain(StatusCode::BAD_REQUEST, format!("{text}\n"))
}

/// `502 Bad Gateway`: the destination could not be reached or broke off.
pub(super) fn unreachable(shown: &str, why: &str) -> Response<ProxyBody> {
    plain(
        StatusCode::BAD_GATEWAY,
        format!("Warden allowed {shown}, but the destination could not be reached: {why}\n"),
    )
}

/// `504 Gateway Timeout`: no connection within the time allowed.
pub(super) fn timed_out(shown: &str, why: &str) -> Response<ProxyBody> {
    plain(
        StatusCode::GATEWAY_TIMEOUT,
        format!("Warden allowed {shown}, but {why}\n"),
    )
}

fn with_decision(status: StatusCode, text: String, verdict: &Verdict) -> Response<ProxyBody> {
    let mut response = plain(status, text);
    let headers = response.headers_mut();
    let effect = match verdict.decision.effect {
        Effect::Ask => "ask",
        _ => "deny",
    };
    headers.insert(DECISION_HEADER, HeaderValue::from_static(effect));
    if let Some(seq) = verdict.seq {
        headers.insert(SEQ_HEADER, HeaderValue::from(seq));
    }
    response
}

fn plain(status: StatusCode, text: String) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::message(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_answer_declares_its_length() {
        let text = std::str::from_utf8(BUSY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }
}
