//! Who may talk to the HTTP endpoint at all: the Host and Origin checks that defeat DNS
//! rebinding, and the bearer token that names the agent.

use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, HOST, ORIGIN};

/// The Host and Origin values the endpoint accepts.
#[derive(Debug, Clone, Default)]
pub struct AllowedPeers {
    hosts: Vec<String>,
    origins: Vec<String>,
}

/// Why a request was refused before authentication.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// No Host header (HTTP/1.1 requires one).
    #[error("the request has no Host header")]
    NoHost,
    /// A Host that is not this Warden's: a DNS-rebinding attempt or a misconfigured proxy.
    #[error(
        "Host {0:?} is not one this Warden answers to; add it to [http] allowed_hosts if it is"
    )]
    Host(String),
    /// A browser page from another origin.
    #[error("Origin {0:?} is not allowed; add it to [http] allowed_origins if it should be")]
    Origin(String),
}

impl AllowedPeers {
    /// Accepts the loopback names of `port` and the configured `hosts` (`name:port` or
    /// `name`) and `origins` (`scheme://name[:port]`).
    pub fn new(port: u16, hosts: &[String], origins: &[String]) -> Self {
        let mut all_hosts: Vec<String> = ["127.0.0.1", "localhost", "[::1]"]
            .iter()
            .map(|h| format!("{h}:{port}"))
            .collect();
        all_hosts.extend(hosts.iter().map(|h| h.to_ascii_lowercase()));
        let mut all_origins: Vec<String> = Vec::new();
        for host in &all_hosts {
            all_origins.push(format!("http://{host}"));
            all_origins.push(format!("https://{host}"));
        }
        all_origins.extend(
            origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase()),
        );
        Self {
            hosts: all_hosts,
            origins: all_origins,
        }
    }

    /// Checks a request's Host and Origin headers.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), PeerError> {
        let host = headers
            .get(HOST)
            .ok_or(PeerError::NoHost)?
            .to_str()
            .map_err(|_| PeerError::Host("(not ASCII)".into()))?
            .to_ascii_lowercase();
        if !self.hosts.contains(&host) {
            return Err(PeerError::Host(shorten(&host)));
        }
        if let Some(origin) = headers.get(ORIGIN) {
            let origin = origin
                .to_str()
                .map_err(|_| PeerError::Origin("(not ASCII)".into()))?
                .to_ascii_lowercase();
            if !self.origins.contains(&origin) {
                return Err(PeerError::Origin(shorten(&origin)));
            }
        }
        Ok(())
    }
}

/// The bearer token of a request, if it carries one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn shorten(s: &str) -> String {
    let mut s: String = s.chars().filter(|c| !c.is_control()).collect();
    s.truncate(s.floor_char_boundary(100));
    s
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn loopback_hosts_of_the_port_are_accepted() {
        let peers = AllowedPeers::new(7777, &[], &[]);
        assert!(peers.check(&headers(&[("host", "127.0.0.1:7777")])).is_ok());
        assert!(peers.check(&headers(&[("host", "LOCALHOST:7777")])).is_ok());
        assert!(peers.check(&headers(&[("host", "[::1]:7777")])).is_ok());
    }

    #[test]
    fn rebinding_hosts_and_foreign_origins_are_refused() {
        let peers = AllowedPeers::new(7777, &[], &[]);
        assert!(matches!(
            peers.check(&headers(&[("host", "evil.example:7777")])),
            Err(PeerError::Host(_))
        ));
        assert!(matches!(
            peers.check(&headers(&[("host", "127.0.0.1:8888")])),
            Err(PeerError::Host(_))
        ));
        assert_eq!(peers.check(&HeaderMap::new()), Err(PeerError::NoHost));
        assert!(matches!(
            peers.check(&headers(&[
                ("host", "127.0.0.1:7777"),
                ("origin", "http://evil.example")
            ])),
            Err(PeerError::Origin(_))
        ));
        assert!(
            peers
                .check(&headers(&[
                    ("host", "127.0.0.1:7777"),
                    ("origin", "http://localhost:7777")
                ]))
                .is_ok()
        );
    }

    #[test]
    fn configured_hosts_and_origins_are_accepted() {
        let peers = AllowedPeers::new(
            443,
            &["warden.internal".into()],
            &["https://console.internal/".into()],
        );
        assert!(
            peers
                .check(&headers(&[("host", "warden.internal")]))
                .is_ok()
        );
        assert!(
            peers
                .check(&headers(&[
                    ("host", "warden.internal"),
                    ("origin", "https://console.internal")
                ]))
                .is_ok()
        );
    }

    #[test]
    fn bearer_tokens_are_read_case_insensitively() {
        assert_eq!(
            bearer(&headers(&[("authorization", "Bearer abc")])),
            Some("abc")
        );
        assert_eq!(
            bearer(&headers(&[("authorization", "bearer  abc ")])),
            Some("abc")
        );
        assert_eq!(bearer(&headers(&[("authorization", "Basic abc")])), None);
        assert_eq!(bearer(&headers(&[("authorization", "Bearer ")])), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }
}
