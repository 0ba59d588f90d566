//! The MCP conformance suite (`@modelcontextprotocol/conformance`, every server scenario) run
//! against our conformance target server directly and through `warden up`, by
//! `scripts/conformance`. The two runs must agree, except for the differences listed in
//! `tests/conformance/expected-differences.tsv`: a new difference fails, and so does a listed
//! one that no longer occurs. `scripts/test-deps` installs the suite; without it this test fails
//! with a message saying so. See docs/conformance.md.

use std::path::Path;
use std::process::Command;

#[test]
fn conformance_suite_agrees_directly_and_through_warden() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = repo.join("scripts/conformance");
    assert!(script.exists(), "{} is missing", script.display());

    // --no-install: a test never installs; missing dependencies fail with what to run.
    let output = Command::new("bash")
        .arg(&script)
        .arg("--no-install")
        .env("WARDEN_BIN", env!("CARGO_BIN_EXE_warden"))
        .env_remove("CONFORMANCE_OUT")
        .output()
        .expect("bash runs scripts/conformance");

    let report = format!(
        "── stdout\n{}\n── stderr\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "scripts/conformance failed ({}); if tests/conformance/node_modules is missing, run \
         scripts/test-deps\n{report}",
        output.status
    );
    // Guard against a run that succeeded without comparing anything.
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("as expected: every difference is listed"),
        "scripts/conformance succeeded without comparing the two runs\n{report}"
    );
}
