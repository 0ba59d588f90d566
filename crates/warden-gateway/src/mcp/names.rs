//! How one endpoint presents the tools, prompts and resources of many upstream servers
//! without collisions.
//!
//! - Tools and prompts: `<server>__<name>` (two underscores), e.g. `files__read_file`.
//! - Resources and resource templates: the server is prepended to the URI scheme with `+`,
//!   e.g. `file:///a.txt` of server `files` becomes `files+file:///a.txt` — still a valid URI,
//!   so clients that parse URIs accept it.
//!
//! One server may be configured without a namespace (`namespace = false`): its names pass
//! through unchanged, so a deployment with one upstream looks exactly like that upstream. Its
//! names that would be read as another server's (`files__x` while a server `files` exists) are
//! hidden rather than mis-routed.
//!
//! INVARIANT: an aggregated server's name is ASCII letters, digits, '-' and '.', starting with
//! a letter (see [`check_server_name`]). It then holds neither "__" nor '+', and is a valid URI
//! scheme prefix, so the first "__" or '+' always ends the server's part and two different
//! (server, name) pairs never present the same name.

use warden_core::ServerName;

/// What separates the server from a tool or prompt name.
pub const NAME_SEPARATOR: &str = "__";

/// Why a server name cannot be used behind one aggregated endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "server name {0:?} cannot be aggregated: use ASCII letters, digits, '-' and '.', starting \
     with a letter (its tools are presented as \"<server>__<tool>\" and its resources as \
     \"<server>+<uri>\")"
)]
pub struct AggregateNameError(pub String);

/// Checks that `server` can be used as a namespace (see the module invariant).
pub fn check_server_name(server: &ServerName) -> Result<(), AggregateNameError> {
    let s = server.as_str();
    let ok = s.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(AggregateNameError(s.to_owned()))
    }
}

/// The name an agent sees for tool or prompt `name` of `server`.
pub fn qualify(server: &ServerName, name: &str) -> String {
    format!("{server}{NAME_SEPARATOR}{name}")
}

/// Splits a presented tool or prompt name into (server, name).
pub fn split(presented: &str) -> Option<(&str, &str)> {
    presented
        .split_once(NAME_SEPARATOR)
        .filter(|(server, name)| !server.is_empty() && !name.is_empty())
}

/// The URI an agent sees for resource `uri` of `server`.
pub fn qualify_uri(server: &ServerName, uri: &str) -> String {
    format!("{server}+{uri}")
}

/// Splits a presented resource URI into (server, the upstream's URI).
pub fn split_uri(presented: &str) -> Option<(&str, &str)> {
    presented
        .split_once('+')
        .filter(|(server, uri)| !server.is_empty() && !uri.is_empty())
}

/// The namespaced servers and the one server (if any) presented without a namespace.
#[derive(Debug, Clone, Default)]
pub struct Namespaces {
    namespaced: std::collections::BTreeSet<ServerName>,
    plain: Option<ServerName>,
}

impl Namespaces {
    /// Every server in `servers` is namespaced except `plain`.
    pub fn new<'a>(
        servers: impl IntoIterator<Item = &'a ServerName>,
        plain: Option<ServerName>,
    ) -> Self {
        let namespaced = servers
            .into_iter()
            .filter(|s| Some(*s) != plain.as_ref())
            .cloned()
            .collect();
        Self { namespaced, plain }
    }

    fn is_plain(&self, server: &ServerName) -> bool {
        self.plain.as_ref() == Some(server)
    }

    /// The name an agent sees for tool or prompt `name` of `server`; `None` when it would be
    /// read as another server's and so is hidden.
    pub fn present(&self, server: &ServerName, name: &str) -> Option<String> {
        if !self.is_plain(server) {
            return Some(qualify(server, name));
        }
        match self.route(name) {
            Some((s, _)) if &s == server => Some(name.to_owned()),
            _ => None,
        }
    }

    /// The server and upstream name a presented tool or prompt name stands for.
    pub fn route<'a>(&self, presented: &'a str) -> Option<(ServerName, &'a str)> {
        if let Some((server, name)) = split(presented)
            && let Some(s) = self.namespaced.iter().find(|s| s.as_str() == server)
        {
            return Some((s.clone(), name));
        }
        self.plain.clone().map(|p| (p, presented))
    }

    /// The URI an agent sees for resource `uri` of `server`; `None` when hidden.
    pub fn present_uri(&self, server: &ServerName, uri: &str) -> Option<String> {
        if !self.is_plain(server) {
            return Some(qualify_uri(server, uri));
        }
        match self.route_uri(uri) {
            Some((s, _)) if &s == server => Some(uri.to_owned()),
            _ => None,
        }
    }

    /// The server and upstream URI a presented URI stands for.
    pub fn route_uri<'a>(&self, presented: &'a str) -> Option<(ServerName, &'a str)> {
        if let Some((server, uri)) = split_uri(presented)
            && let Some(s) = self.namespaced.iter().find(|s| s.as_str() == server)
        {
            return Some((s.clone(), uri));
        }
        self.plain.clone().map(|p| (p, presented))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn server(s: &str) -> ServerName {
        ServerName::new(s).unwrap()
    }

    #[test]
    fn names_round_trip() {
        let s = server("files");
        assert_eq!(qualify(&s, "read_file"), "files__read_file");
        assert_eq!(split("files__read_file"), Some(("files", "read_file")));
        assert_eq!(split("files____x"), Some(("files", "__x")));
        assert_eq!(qualify_uri(&s, "file:///a+b"), "files+file:///a+b");
        assert_eq!(
            split_uri("files+file:///a+b"),
            Some(("files", "file:///a+b"))
        );
    }

    #[test]
    fn unqualified_names_do_not_split() {
        assert_eq!(split("read_file"), None);
        assert_eq!(split("__x"), None);
        assert_eq!(split("files__"), None);
        assert_eq!(split_uri("file:///a"), None);
        assert_eq!(split_uri("+file:///a"), None);
    }

    #[test]
    fn server_names_that_could_collide_are_refused() {
        for bad in ["my_server", "a_", "9lives", "x__y"] {
            assert!(check_server_name(&server(bad)).is_err(), "{bad}");
        }
        for good in ["files", "files-2", "corp.wiki", "A1"] {
            assert!(check_server_name(&server(good)).is_ok(), "{good}");
        }
    }

    #[test]
    fn a_plain_server_keeps_its_names_unless_they_would_be_misread() {
        let files = server("files");
        let conf = server("conf");
        let ns = Namespaces::new([&files, &conf], Some(conf.clone()));
        assert_eq!(
            ns.present(&conf, "test_simple_text").as_deref(),
            Some("test_simple_text")
        );
        assert_eq!(
            ns.route("test_simple_text"),
            Some((conf.clone(), "test_simple_text"))
        );
        assert_eq!(ns.present(&files, "read").as_deref(), Some("files__read"));
        assert_eq!(ns.route("files__read"), Some((files.clone(), "read")));
        // conf's own "files__read" would be routed to files: hidden instead.
        assert_eq!(ns.present(&conf, "files__read"), None);
        // A double underscore that names no server stays conf's.
        assert_eq!(ns.present(&conf, "a__b").as_deref(), Some("a__b"));
        assert_eq!(
            ns.route_uri("test://static"),
            Some((conf.clone(), "test://static"))
        );
        assert_eq!(ns.present_uri(&conf, "files+x:y"), None);
        let strict = Namespaces::new([&files], None);
        assert_eq!(strict.route("read"), None);
    }

    proptest! {
        #[test]
        fn qualified_names_split_back(
            s in "[a-zA-Z][a-zA-Z0-9.-]{0,20}",
            name in "[^\u{0}]{1,40}",
        ) {
            let sn = server(&s);
            prop_assert!(check_server_name(&sn).is_ok());
            let q = qualify(&sn, &name);
            prop_assert_eq!(split(&q), Some((s.as_str(), name.as_str())));
            let u = qualify_uri(&sn, &name);
            prop_assert_eq!(split_uri(&u), Some((s.as_str(), name.as_str())));
        }
    }
}
