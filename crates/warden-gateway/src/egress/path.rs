//! The path a policy decides on is the path the destination serves.
//!
//! A policy reads `context.path like "/data/*"` as text. A server reads `/data/../admin` or
//! `/data/%2e%2e/admin` as `/admin`. So the proxy decides on, journals and forwards one
//! normalized form in which no server can find another path: percent-encoded unreserved
//! characters decoded (RFC 3986 §6.2.2.2), repeated slashes collapsed, `.` and `..` segments
//! resolved (§5.2.4). What would still mean different things to different servers — an
//! encoded `/` or `\`, a backslash, a NUL, a `;` (Java servers drop `;params` from each
//! segment, so `/admin;x/` is `/admin/` to them and not to a policy), an escaped `%` (`%252e`
//! is `.` to a server that decodes twice) — is refused, not guessed at.
//! The query is left as sent: it is not a path, and servers read it as they please.

/// Why a path cannot be decided on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Something in the path means a separator to some servers and not to others.
    #[error("the path holds {what}, which servers read in different ways; send the path plainly")]
    Ambiguous {
        /// What was found, for the message.
        what: &'static str,
    },
    /// A `%` not followed by two hexadecimal digits.
    #[error("the path holds a `%` that is not followed by two hexadecimal digits")]
    BadEscape,
}

/// The normalized form of an origin-form target (`/path?query`).
pub fn normalize(target: &str) -> Result<String, PathError> {
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let decoded = decode_unreserved(path)?;
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/').filter(|s| !s.is_empty()) {
        match segment {
            "." => {}
            ".." => {
                segments.pop();
            }
            s if s.contains(';') => {
                return Err(PathError::Ambiguous {
                    what: "a `;` (segment parameters, which some servers drop)",
                });
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(target.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    // A trailing slash names a directory; keep it (`/docs/` and `/docs` may differ).
    if out.is_empty() || (decoded.ends_with('/') || ends_in_dot_segment(&decoded)) {
        out.push('/');
    }
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    Ok(out)
}

/// Whether the path's last segment is `.` or `..` (which name a directory).
fn ends_in_dot_segment(path: &str) -> bool {
    matches!(path.rsplit('/').next(), Some(".") | Some(".."))
}

/// Decodes `%XX` of unreserved characters; keeps other escapes, in upper case. Refuses the
/// escapes of `/`, `\` and NUL, and a literal backslash.
fn decode_unreserved(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let (Some(&hi), Some(&lo)) = (bytes.get(i + 1), bytes.get(i + 2)) else {
                    return Err(PathError::BadEscape);
                };
                let (Some(h), Some(l)) = (hex(hi), hex(lo)) else {
                    return Err(PathError::BadEscape);
                };
                let byte = h << 4 | l;
                match byte {
                    b'/' => {
                        return Err(PathError::Ambiguous {
                            what: "`%2F` (an encoded `/`)",
                        });
                    }
                    b'\\' => {
                        return Err(PathError::Ambiguous {
                            what: "`%5C` (an encoded `\\`)",
                        });
                    }
                    0 => {
                        return Err(PathError::Ambiguous {
                            what: "`%00` (an encoded NUL)",
                        });
                    }
                    b'%' => {
                        return Err(PathError::Ambiguous {
                            what: "`%25` (an encoded `%`, decoded twice by some servers)",
                        });
                    }
                    b if b.is_ascii_alphanumeric() || b"-._~".contains(&b) => out.push(b as char),
                    b => {
                        out.push('%');
                        out.push(char::from(HEX_UPPER[usize::from(b >> 4)]));
                        out.push(char::from(HEX_UPPER[usize::from(b & 0xf)]));
                    }
                }
                i += 3;
            }
            b'\\' => {
                return Err(PathError::Ambiguous {
                    what: "a backslash",
                });
            }
            _ => {
                // The request line was parsed by hyper: ASCII. Copy a whole character anyway,
                // so that nothing here can split one.
                let ch = path[i..].chars().next().unwrap_or('\u{fffd}');
                out.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    Ok(out)
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn hex(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn dot_segments_and_their_encodings_resolve_before_the_decision() {
        for (sent, decided) in [
            ("/data/../admin.html", "/admin.html"),
            ("/data/%2e%2e/admin.html", "/admin.html"),
            ("/data/%2E%2E/admin.html", "/admin.html"),
            ("/data/.%2e/admin.html", "/admin.html"),
            ("/data//../admin.html", "/admin.html"),
            ("/data/./x", "/data/x"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/data/sub/..", "/data/"),
            ("/data/.", "/data/"),
            ("", "/"),
            ("/", "/"),
            ("//", "/"),
            ("/docs/", "/docs/"),
            ("/a%7Eb", "/a~b"),
            ("/a%20b", "/a%20b"),
            ("/a%c3%a9", "/a%C3%A9"),
            ("/v1/x?q=1&p=../..", "/v1/x?q=1&p=../.."),
            ("/data/../admin?x=%2f", "/admin?x=%2f"),
        ] {
            assert_eq!(normalize(sent).as_deref(), Ok(decided), "{sent}");
        }
    }

    #[test]
    fn what_servers_read_differently_is_refused() {
        for sent in [
            "/data/..%2fadmin.html",
            "/data/..%2Fadmin.html",
            "/data/..%5cadmin.html",
            "/data\\..\\admin.html",
            "/data/%00",
            "/data/..;/admin.html",
            "/data/.;x/admin.html",
            "/admin;x/users",
            "/v1/%252e%252e/admin",
        ] {
            assert!(
                matches!(normalize(sent), Err(PathError::Ambiguous { .. })),
                "{sent}: {:?}",
                normalize(sent)
            );
        }
        for sent in ["/a%", "/a%2", "/a%zz"] {
            assert_eq!(normalize(sent), Err(PathError::BadEscape), "{sent}");
        }
    }

    proptest! {
        /// The form decided on is a fixed point: a server normalizing it again finds the same
        /// path, and it never climbs out of the root or holds a dot segment.
        #[test]
        fn the_normalized_form_is_stable(path in "(/[a-z.%2eE/]{0,6}){0,6}(\\?[a-z./]{0,8})?") {
            if let Ok(once) = normalize(&path) {
                prop_assert_eq!(normalize(&once), Ok(once.clone()));
                let path_only = once.split('?').next().unwrap_or("");
                prop_assert!(path_only.starts_with('/'));
                prop_assert!(!path_only.contains("//"));
                prop_assert!(path_only.split('/').all(|s| s != "." && s != ".."), "{}", once);
            }
        }
    }
}
