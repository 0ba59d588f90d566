//! The egress proxy's path normalization on arbitrary request targets.
//!
//! Asserts, whenever a target is accepted: the form decided on is a fixed point (normalizing it
//! again changes nothing, so the destination finds no other path in it), its path starts with
//! `/` and holds no empty, `.` or `..` segment and no backslash, and the query comes back as
//! sent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_gateway::egress::path::normalize;

fuzz_target!(|data: &[u8]| {
    let Ok(target) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(decided) = normalize(target) else {
        return;
    };
    assert_eq!(normalize(&decided).as_ref(), Ok(&decided), "not a fixed point");
    let (path, query) = match decided.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (decided.as_str(), None),
    };
    assert!(path.starts_with('/'), "{decided:?}");
    assert!(!path.contains('\\'), "{decided:?}");
    let inner = path.trim_start_matches('/').trim_end_matches('/');
    if !inner.is_empty() {
        assert!(
            inner.split('/').all(|s| !s.is_empty() && s != "." && s != ".."),
            "{decided:?}"
        );
    }
    assert_eq!(query, target.split_once('?').map(|(_, q)| q), "the query changed");
});
