//! What the integration tests share.

use std::path::PathBuf;

/// The example server, built next to this crate's binary by `cargo build --workspace --bins`.
pub fn example_server() -> PathBuf {
    let path =
        PathBuf::from(env!("CARGO_BIN_EXE_warden-loadgen")).with_file_name("warden-example-files");
    assert!(
        path.exists(),
        "{} is missing: build the workspace's binaries first (`cargo build --workspace --bins`)",
        path.display()
    );
    path
}
