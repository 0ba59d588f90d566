//! Plain HTTP: the agent's request sent on to the destination in origin form, the response
//! streamed back. Nothing that belongs to the hop between the agent and Warden crosses over.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{CONNECTION, HOST, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, Uri, Version};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use warden_core::Outcome;

use super::answer;
use super::exchange::{Exchange, Outbound, ProxyBody};
use super::target::Destination;

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1), besides those the
/// `Connection` header names and every `Proxy-*` header.
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Sends `req` over `upstream` and answers with the destination's response.
pub(super) async fn forward(
    req: Request<Incoming>,
    upstream: TcpStream,
    dest: &Destination,
    exchange: Arc<Exchange>,
) -> Response<ProxyBody> {
    let (mut sender, connection) =
        match hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await {
            Ok(pair) => pair,
            Err(err) => return broken(dest, &exchange, &err),
        };
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(%err, "egress upstream connection ended with an error");
        }
    });

    let (mut parts, body) = req.into_parts();
    let path = dest.path.as_deref().unwrap_or("/");
    parts.uri = match Uri::try_from(path) {
        Ok(uri) => uri,
        Err(err) => return answer::bad_request(format!("bad path in {}: {err}", dest.shown)),
    };
    parts.version = Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers);
    // The decision was made on the request line's host: the destination sees that host, not
    // whatever `Host` header the agent wrote (RFC 9112 §3.2.2).
    match HeaderValue::from_str(&dest.host_header) {
        Ok(host) => {
            parts.headers.insert(HOST, host);
        }
        Err(err) => return answer::bad_request(format!("bad host in {}: {err}", dest.shown)),
    }
    let outbound = Request::from_parts(parts, Outbound::new(body, exchange.clone()));

    match sender.send_request(outbound).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            let status = parts.status.as_u16();
            Response::from_parts(parts, ProxyBody::upstream(body, exchange, status))
        }
        Err(err) => broken(dest, &exchange, &err),
    }
}

fn broken(dest: &Destination, exchange: &Exchange, err: &hyper::Error) -> Response<ProxyBody> {
    let why = format!("the destination broke off the exchange: {err}");
    exchange.finish(
        Outcome::UpstreamGone,
        format!("{why}, {}", exchange.volume()),
    );
    answer::unreachable(&dest.shown, &why)
}

/// Removes the hop-by-hop headers, those `Connection` names, and every `Proxy-*` header
/// (credentials for Warden are never passed on).
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    let proxy: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for name in proxy {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_headers_and_proxy_credentials_do_not_cross() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic c2VjcmV0"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("authorization", "Bearer for-the-destination"),
            ("content-length", "3"),
        ] {
            h.append(k, HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["authorization", "content-length"]);
    }
}
