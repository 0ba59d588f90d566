//! The operators' dashboard: one HTML page, a script and a style sheet, compiled into the
//! binary so that running Warden never needs a front-end build.
//!
//! The files hold no data and need no token: every figure on the page comes from the
//! token-protected API, called by the script with the operator's token. The headers lock the
//! page down: only its own script runs (no inline script), it talks only to its own origin,
//! and no other site may frame it.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The page's content security policy: its own files only, no inline script or style, no
/// framing, no plugins, and forms and `<base>` that cannot point elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; font-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    body: &'static str,
    content_type: &'static str,
}

const INDEX: Asset = Asset {
    body: include_str!("assets/index.html"),
    content_type: "text/html; charset=utf-8",
};

const APP_JS: Asset = Asset {
    body: include_str!("assets/app.js"),
    content_type: "text/javascript; charset=utf-8",
};

const STYLE_CSS: Asset = Asset {
    body: include_str!("assets/style.css"),
    content_type: "text/css; charset=utf-8",
};

const FAVICON: Asset = Asset {
    body: include_str!("assets/favicon.svg"),
    content_type: "image/svg+xml",
};

impl Asset {
    fn response(&self) -> Response {
        (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(self.content_type),
                ),
                // The files change with the binary: always revalidate, never serve a stale
                // script against a newer API.
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
                (
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(CONTENT_SECURITY_POLICY),
                ),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
                (
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("no-referrer"),
                ),
                // For browsers that predate frame-ancestors.
                (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            ],
            self.body,
        )
            .into_response()
    }
}

/// The dashboard's routes: `/` and `/assets/…`, no authentication (they hold no data).
pub fn routes() -> Router {
    Router::new()
        .route("/", get(|| async { INDEX.response() }))
        .route("/assets/app.js", get(|| async { APP_JS.response() }))
        .route("/assets/style.css", get(|| async { STYLE_CSS.response() }))
        .route("/assets/favicon.svg", get(|| async { FAVICON.response() }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get_path(path: &str) -> (StatusCode, axum::http::HeaderMap, String) {
        let request = Request::get(path).body(Body::empty()).unwrap();
        let response = routes().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
    }

    const ALL: [(&str, &str); 4] = [
        ("/", "text/html"),
        ("/assets/app.js", "text/javascript"),
        ("/assets/style.css", "text/css"),
        ("/assets/favicon.svg", "image/svg+xml"),
    ];

    #[tokio::test]
    async fn every_file_is_served_with_its_type_and_locked_down_headers() {
        for (path, wanted_type) in ALL {
            let (status, headers, body) = get_path(path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert!(!body.is_empty(), "{path} is empty");
            let header = |name: header::HeaderName| {
                headers
                    .get(&name)
                    .unwrap_or_else(|| panic!("{path} lacks {name}"))
                    .to_str()
                    .unwrap()
                    .to_owned()
            };
            assert!(
                header(header::CONTENT_TYPE).starts_with(wanted_type),
                "{path}"
            );
            assert_eq!(header(header::CACHE_CONTROL), "no-cache", "{path}");
            assert_eq!(header(header::X_CONTENT_TYPE_OPTIONS), "nosniff", "{path}");
            assert_eq!(header(header::REFERRER_POLICY), "no-referrer", "{path}");
            let csp = header(header::CONTENT_SECURITY_POLICY);
            assert!(csp.starts_with("default-src 'self'"), "{csp}");
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
            assert!(!csp.contains("unsafe"), "{csp}");
        }
    }

    #[tokio::test]
    async fn other_paths_are_not_found() {
        for path in [
            "/assets/",
            "/assets/app.js.map",
            "/index.html",
            "/assets/../Cargo.toml",
        ] {
            let (status, _, _) = get_path(path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        }
    }

    #[test]
    fn the_page_loads_only_served_files_and_runs_no_inline_script() {
        let html = INDEX.body;
        // Every local file the page names is one the router serves.
        for attr in ["src=\"", "href=\""] {
            for rest in html.split(attr).skip(1) {
                let target = rest.split('"').next().unwrap_or("");
                if target.starts_with('#') {
                    continue;
                }
                assert!(
                    ALL.iter().any(|(path, _)| *path == target),
                    "the page names {target}, which is not served"
                );
            }
        }
        // The CSP refuses inline script and style anyway; keep the page honest with it.
        for rest in html.split("<script").skip(1) {
            let tag = rest.split('>').next().unwrap_or("");
            assert!(tag.contains("src="), "an inline <script>: {tag}");
        }
        assert!(!html.contains(" style="), "an inline style attribute");
        assert!(!html.contains("<style"), "an inline style sheet");
        // No inline event handlers (` onclick=` and the like).
        for rest in html.split(" on").skip(1) {
            let name: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
            assert!(
                !rest[name.len()..].starts_with('='),
                "an inline event handler: on{name}"
            );
        }
    }

    #[test]
    fn the_script_never_parses_strings_as_html() {
        // Data from the server is shown with textContent only: no HTML parsing at all.
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
        ] {
            assert!(!APP_JS.body.contains(sink), "app.js uses {sink}");
        }
    }
}
