//! Which addresses the proxy connects to, and the connection itself.
//!
//! Policy decides on the name the agent asked for; this stage decides on the address Warden
//! resolved for it, once, and then connects to exactly that address. An agent cannot point
//! an allowed name at Warden's own ports, at the host's loopback services or at a cloud
//! metadata endpoint (DNS rebinding), because no second lookup happens after the check.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpStream;
use warden_core::HostRef;

/// The addresses the proxy refuses whatever the policy says.
#[derive(Debug, Clone)]
pub(super) struct AddressRules {
    /// Whether loopback addresses may be reached (tests; a proxy for local development).
    pub allow_loopback: bool,
    /// Warden's own listening addresses: always refused.
    pub protected: Vec<SocketAddr>,
}

/// Why no connection was made.
#[derive(Debug, thiserror::Error)]
pub(super) enum DialError {
    /// The address is one Warden never connects an agent to.
    #[error("{0}")]
    Refused(String),
    /// The name did not resolve.
    #[error("{host} could not be resolved: {source}")]
    Unresolved {
        /// The name.
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// Every resolved address refused the connection.
    #[error("could not connect to {host}:{port}: {source}")]
    Failed {
        /// The name.
        host: String,
        /// The port.
        port: u16,
        /// The last connection error.
        source: io::Error,
    },
    /// Resolution and connection took longer than allowed.
    #[error("no connection to {host}:{port} within {after:?}")]
    TimedOut {
        /// The name.
        host: String,
        /// The port.
        port: u16,
        /// The time allowed.
        after: Duration,
    },
}

impl AddressRules {
    /// Checks one address; the error is a sentence saying why it is refused.
    pub fn check(&self, addr: SocketAddr) -> Result<(), String> {
        let ip = canonical(addr.ip());
        let port = addr.port();
        if self.protected.iter().any(|p| is_protected(*p, ip, port)) {
            return Err(format!(
                "{} is one of Warden's own ports, which agents never reach",
                SocketAddr::new(ip, port)
            ));
        }
        match category(ip) {
            Some(Category::Loopback) if self.allow_loopback => Ok(()),
            Some(category) => Err(format!(
                "{ip} is {}, which agents never reach through the egress proxy",
                category.describe()
            )),
            None => Ok(()),
        }
    }

    /// Resolves `host` (once; an IP literal is not looked up), checks every address, and
    /// connects to the first that accepts, all within `timeout`.
    ///
    /// If any resolved address is refused the whole name is: a name that points inside
    /// the host is not one to half-trust.
    pub async fn dial(
        &self,
        host: &HostRef,
        port: u16,
        timeout: Duration,
    ) -> Result<(TcpStream, SocketAddr), DialError> {
        let attempt = async {
            let addrs: Vec<SocketAddr> = match host.ip() {
                Some(ip) => vec![SocketAddr::new(ip, port)],
                None => tokio::net::lookup_host((host.as_str(), port))
                    .await
                    .map_err(|source| DialError::Unresolved {
                        host: host.to_string(),
                        source,
                    })?
                    .collect(),
            };
            if addrs.is_empty() {
                return Err(DialError::Unresolved {
                    host: host.to_string(),
                    source: io::Error::new(io::ErrorKind::NotFound, "no address"),
                });
            }
            for addr in &addrs {
                self.check(*addr).map_err(|why| {
                    DialError::Refused(match host.ip() {
                        Some(_) => why,
                        None => format!("{host} resolved to {}: {why}", addr.ip()),
                    })
                })?;
            }
            let mut last = None;
            for addr in addrs {
                match TcpStream::connect(addr).await {
                    Ok(stream) => {
                        // Small request heads and tunnel records should not wait for Nagle.
                        let _ = stream.set_nodelay(true);
                        return Ok((stream, addr));
                    }
                    Err(err) => last = Some(err),
                }
            }
            Err(DialError::Failed {
                host: host.to_string(),
                port,
                source: last.unwrap_or_else(|| io::Error::other("no address to try")),
            })
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(DialError::TimedOut {
                    host: host.to_string(),
                    port,
                    after: timeout,
                })
            })
    }
}

/// Kinds of address an agent never reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Category {
    Loopback,
    Unspecified,
    LinkLocal,
    Multicast,
    Broadcast,
}

impl Category {
    fn describe(self) -> &'static str {
        match self {
            Category::Loopback => "a loopback address",
            Category::Unspecified => "an unspecified address (it reaches the host itself)",
            Category::LinkLocal => "a link-local address (where cloud metadata services answer)",
            Category::Multicast => "a multicast address",
            Category::Broadcast => "a broadcast address",
        }
    }
}

/// An IPv4 address written as IPv6 (`::ffff:a.b.c.d`) is judged as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn category(ip: IpAddr) -> Option<Category> {
    match ip {
        IpAddr::V4(v4) => {
            if v4.is_loopback() {
                Some(Category::Loopback)
            } else if v4.octets()[0] == 0 {
                // 0.0.0.0/8: "this network"; 0.0.0.0 itself connects to the local host.
                Some(Category::Unspecified)
            } else if v4.is_link_local() {
                Some(Category::LinkLocal)
            } else if v4.is_multicast() {
                Some(Category::Multicast)
            } else if v4.is_broadcast() {
                Some(Category::Broadcast)
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if v6.is_loopback() {
                Some(Category::Loopback)
            } else if v6.is_unspecified() {
                Some(Category::Unspecified)
            } else if v6.is_unicast_link_local() {
                Some(Category::LinkLocal)
            } else if v6.is_multicast() {
                Some(Category::Multicast)
            } else {
                None
            }
        }
    }
}

/// A protected address with an unspecified IP (`0.0.0.0:8080`, a server listening on every
/// address) protects its port on every address that reaches the local host that way.
fn is_protected(protected: SocketAddr, ip: IpAddr, port: u16) -> bool {
    if protected.port() != port {
        return false;
    }
    let p = canonical(protected.ip());
    if p.is_unspecified() {
        matches!(
            category(ip),
            Some(Category::Loopback | Category::Unspecified)
        )
    } else {
        p == ip
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allow_loopback: bool, protected: &[&str]) -> AddressRules {
        AddressRules {
            allow_loopback,
            protected: protected.iter().map(|p| p.parse().unwrap()).collect(),
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn refuses_addresses_inside_the_host_and_metadata() {
        let strict = rules(false, &[]);
        for bad in [
            "127.0.0.1:80",
            "127.8.9.10:80",
            "[::1]:80",
            "[::ffff:127.0.0.1]:80",
            "0.0.0.0:80",
            "[::]:80",
            "169.254.169.254:80",
            "[fe80::1]:80",
            "224.0.0.1:80",
            "[ff02::1]:80",
            "255.255.255.255:80",
        ] {
            assert!(strict.check(addr(bad)).is_err(), "{bad}");
        }
        for good in ["93.184.216.34:80", "10.0.0.1:443", "[2001:db8::1]:443"] {
            assert_eq!(strict.check(addr(good)), Ok(()), "{good}");
        }
        let why = strict.check(addr("169.254.169.254:80")).unwrap_err();
        assert!(why.contains("metadata"), "{why}");
    }

    #[test]
    fn allow_loopback_lifts_loopback_only() {
        let lax = rules(true, &[]);
        assert_eq!(lax.check(addr("127.0.0.1:80")), Ok(()));
        assert_eq!(lax.check(addr("[::1]:80")), Ok(()));
        assert!(lax.check(addr("169.254.169.254:80")).is_err());
        assert!(lax.check(addr("0.0.0.0:80")).is_err());
    }

    #[test]
    fn protected_ports_are_refused_whatever_the_flags() {
        let r = rules(true, &["127.0.0.1:7070", "0.0.0.0:9090"]);
        let why = r.check(addr("127.0.0.1:7070")).unwrap_err();
        assert!(why.contains("Warden's own"), "{why}");
        assert!(r.check(addr("[::ffff:127.0.0.1]:7070")).is_err());
        assert_eq!(r.check(addr("127.0.0.1:7071")), Ok(()));
        assert!(r.check(addr("127.0.0.2:9090")).is_err());
        assert!(r.check(addr("[::1]:9090")).is_err());
        assert_eq!(r.check(addr("10.0.0.1:9090")), Ok(()));
    }
}
