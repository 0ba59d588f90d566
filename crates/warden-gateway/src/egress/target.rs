//! What an agent's request names: the destination a policy decides on, read from the request
//! line alone (never from the `Host` header, which the agent could set to anything).

use hyper::Method;
use hyper::http::uri::Authority;
use serde_json::{Map, Value};
use warden_core::{Action, HostRef, TargetNameError};

use super::path::{PathError, normalize};

/// The longest request line shown back to the agent or written in a message, in bytes.
const MAX_SHOWN: usize = 300;

/// A destination the proxy may be asked to reach, and the action that decides it.
#[derive(Debug, Clone)]
pub(super) struct Destination {
    /// The host, normalized as policy sees it.
    pub host: HostRef,
    /// The port (80 when a plain-HTTP URI names none).
    pub port: u16,
    /// The method, as sent.
    pub method: String,
    /// Path and query of a plain-HTTP request, normalized (`path.rs`); `None` for a tunnel.
    pub path: Option<String>,
    /// The `Host` header sent upstream: the normalized host, and the port when one was named.
    pub host_header: String,
    /// The request as shown in messages (`GET http://host/path`, `CONNECT host:443`).
    pub shown: String,
}

/// Why a request names no destination Warden can decide.
#[derive(Debug, thiserror::Error)]
pub(super) enum TargetError {
    /// A request in origin form (`GET /path`): a forward proxy needs the absolute URI.
    #[error(
        "Warden's egress proxy needs the full address in the request line \
         (`{method} http://host/path`, or `CONNECT host:port` for TLS); `{shown}` names no host"
    )]
    OriginForm {
        /// The method.
        method: String,
        /// The request line as received.
        shown: String,
    },
    /// An absolute URI with a scheme other than `http`.
    #[error(
        "Warden's egress proxy forwards plain `http://` requests; for `{scheme}://` open a \
         tunnel with `CONNECT host:port` (`{shown}`)"
    )]
    Scheme {
        /// The scheme given.
        scheme: String,
        /// The request line as received.
        shown: String,
    },
    /// `CONNECT` without a port.
    #[error("`CONNECT` needs `host:port`; `{shown}` names no port")]
    MissingPort {
        /// The request line as received.
        shown: String,
    },
    /// A host no policy can be written for (see [`HostRef::new`]).
    #[error("Warden refused {}: {}", .0.shown, .0.source)]
    Host(Box<BadHost>),
    /// A path no policy can be decided on (see [`super::path::normalize`]).
    #[error("Warden refused {}: {}", .0.shown, .0.source)]
    Path(Box<BadPath>),
}

/// A request whose path [`super::path::normalize`] refused.
#[derive(Debug)]
pub(super) struct BadPath {
    /// The host, as policy names it.
    host: HostRef,
    /// The port named or implied.
    port: u16,
    /// The method.
    method: String,
    /// The path as sent, bounded for the journal.
    path: String,
    /// The request line as received.
    shown: String,
    /// Why the path was refused.
    source: PathError,
}

/// A request whose host [`HostRef::new`] refused.
#[derive(Debug)]
pub(super) struct BadHost {
    /// The host as written, bounded for the journal.
    raw: String,
    /// The port named or implied.
    port: u16,
    /// The method.
    method: String,
    /// The path, for a plain-HTTP request.
    path: Option<String>,
    /// The request line as received.
    shown: String,
    /// Why the host was refused.
    source: TargetNameError,
}

impl TargetError {
    /// The arguments journaled with the refusal of a malformed host.
    pub fn arguments(&self) -> Option<(String, Map<String, Value>)> {
        match self {
            TargetError::Host(bad) => Some((
                bad.raw.clone(),
                arguments(bad.port, &bad.method, bad.path.as_deref()),
            )),
            TargetError::Path(bad) => Some((
                bad.host.to_string(),
                arguments(bad.port, &bad.method, Some(&bad.path)),
            )),
            _ => None,
        }
    }
}

impl Destination {
    /// Reads the destination from a request line: absolute form for plain HTTP, authority
    /// form for `CONNECT`.
    pub fn from_request<B>(req: &hyper::Request<B>) -> Result<Self, TargetError> {
        let uri = req.uri();
        let method = req.method().as_str().to_owned();
        let shown = bounded(&format!("{method} {uri}"));
        let is_connect = req.method() == Method::CONNECT;
        let Some(authority) = uri.authority() else {
            return Err(TargetError::OriginForm { method, shown });
        };
        let (port, path) = if is_connect {
            let Some(port) = authority.port_u16() else {
                return Err(TargetError::MissingPort { shown });
            };
            (port, None)
        } else {
            match uri.scheme_str() {
                Some(s) if s.eq_ignore_ascii_case("http") => {}
                Some(s) => {
                    return Err(TargetError::Scheme {
                        scheme: bounded(s),
                        shown,
                    });
                }
                None => return Err(TargetError::OriginForm { method, shown }),
            }
            let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
            (authority.port_u16().unwrap_or(80), Some(path))
        };
        let host = HostRef::new(authority.host()).map_err(|source| {
            TargetError::Host(Box::new(BadHost {
                raw: bounded(authority.host()),
                port,
                method: method.clone(),
                path: path.clone(),
                shown: shown.clone(),
                source,
            }))
        })?;
        // Decided, journaled and forwarded in the form the destination will read.
        let path = match path.map(|p| normalize(&p).map_err(|e| (p, e))).transpose() {
            Ok(path) => path,
            Err((raw, source)) => {
                return Err(TargetError::Path(Box::new(BadPath {
                    host,
                    port,
                    method,
                    path: bounded(&raw),
                    shown,
                    source,
                })));
            }
        };
        Ok(Self {
            host_header: host_header(&host, authority),
            host,
            port,
            method,
            path,
            shown,
        })
    }

    /// The action a policy decides.
    pub fn action(&self) -> Action {
        Action::HttpRequest {
            host: self.host.clone(),
            port: self.port,
            method: self.method.clone(),
            path: self.path.clone(),
        }
    }

    /// The arguments journaled with a refusal Warden makes itself (same shape as the
    /// decision records of [`Destination::action`]).
    pub fn arguments(&self) -> Map<String, Value> {
        arguments(self.port, &self.method, self.path.as_deref())
    }

    /// Whether this is a `CONNECT` tunnel.
    pub fn is_tunnel(&self) -> bool {
        self.path.is_none()
    }
}

fn arguments(port: u16, method: &str, path: Option<&str>) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("port".into(), Value::from(port));
    map.insert("method".into(), Value::String(method.to_owned()));
    if let Some(path) = path {
        map.insert("path".into(), Value::String(path.to_owned()));
    }
    map
}

/// The host as decided, bracketed when it is an IPv6 address, with the port when the URI
/// named one.
fn host_header(host: &HostRef, authority: &Authority) -> String {
    let name = match host.ip() {
        Some(std::net::IpAddr::V6(v6)) => format!("[{v6}]"),
        _ => host.as_str().to_owned(),
    };
    match authority.port_u16() {
        Some(port) => format!("{name}:{port}"),
        None => name,
    }
}

/// `text`, cut to [`MAX_SHOWN`] bytes on a character boundary.
fn bounded(text: &str) -> String {
    if text.len() <= MAX_SHOWN {
        return text.to_owned();
    }
    let mut cut = text[..text.floor_char_boundary(MAX_SHOWN)].to_owned();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, uri: &str) -> hyper::Request<()> {
        hyper::Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .unwrap()
    }

    #[test]
    fn absolute_form_names_host_port_and_path() {
        let d =
            Destination::from_request(&request("GET", "http://API.Example.com/v1/x?q=1")).unwrap();
        assert_eq!(d.host.as_str(), "api.example.com");
        assert_eq!(d.port, 80);
        assert_eq!(d.path.as_deref(), Some("/v1/x?q=1"));
        assert_eq!(d.host_header, "api.example.com");
        assert_eq!(d.shown, "GET http://API.Example.com/v1/x?q=1");
        let d = Destination::from_request(&request("POST", "http://[::1]:8080")).unwrap();
        assert_eq!((d.host.as_str(), d.port), ("::1", 8080));
        assert_eq!(d.path.as_deref(), Some("/"));
        assert_eq!(d.host_header, "[::1]:8080");
    }

    #[test]
    fn connect_needs_a_port_and_has_no_path() {
        let d = Destination::from_request(&request("CONNECT", "example.com:443")).unwrap();
        assert!(d.is_tunnel());
        assert_eq!((d.host.as_str(), d.port), ("example.com", 443));
        assert!(matches!(
            Destination::from_request(&request("CONNECT", "example.com")),
            Err(TargetError::MissingPort { .. })
        ));
    }

    #[test]
    fn refuses_what_names_no_decidable_host() {
        assert!(matches!(
            Destination::from_request(&request("GET", "/x")),
            Err(TargetError::OriginForm { .. })
        ));
        assert!(matches!(
            Destination::from_request(&request("GET", "https://example.com/")),
            Err(TargetError::Scheme { .. })
        ));
        let err = Destination::from_request(&request("GET", "http://0x7f.1/a")).unwrap_err();
        let (raw, args) = err.arguments().unwrap();
        assert_eq!(raw, "0x7f.1");
        assert_eq!(args["path"], "/a");
        assert!(err.to_string().contains("non-canonical"), "{err}");
    }

    #[test]
    fn the_path_decided_is_the_path_forwarded() {
        let d = Destination::from_request(&request(
            "GET",
            "http://127.0.0.1:8765/data/%2e%2e/admin.html?x=1",
        ))
        .unwrap();
        assert_eq!(d.path.as_deref(), Some("/admin.html?x=1"));
        assert_eq!(
            d.action(),
            Action::HttpRequest {
                host: d.host.clone(),
                port: 8765,
                method: "GET".into(),
                path: Some("/admin.html?x=1".into()),
            }
        );
        let err = Destination::from_request(&request("GET", "http://example.com/data/..%2fadmin"))
            .unwrap_err();
        let (host, args) = err.arguments().unwrap();
        assert_eq!(host, "example.com");
        assert_eq!(args["path"], "/data/..%2fadmin");
        assert!(err.to_string().contains("%2F"), "{err}");
    }

    #[test]
    fn long_request_lines_are_cut_for_display() {
        let uri = format!("http://example.com/{}", "é".repeat(400));
        let shown = bounded(&uri);
        assert!(shown.len() <= MAX_SHOWN + '…'.len_utf8());
        assert!(shown.ends_with('…'));
    }
}
