//! Real MCP servers built on the official Rust SDK ([`rmcp`]), used as
//! upstreams behind the mcpgate gateway.
//!
//! - [`notes`]: the demo upstream behind `mcpgate demo-upstream` and
//!   `serve --demo` — a small in-memory notes service whose tools describe the
//!   scopes the gateway enforces (`notes:read`, `notes:write`, `notes:admin`).
//!   This crate enforces nothing: scopes are the gateway's job.
//! - [`testing`] (feature `testing`, on by default): a fixture server for the
//!   gateway's end-to-end tests, servable over stdio and Streamable HTTP. It
//!   echoes, dumps its environment, sleeps, crashes on purpose, asks the user
//!   (elicitation or sampling), emits notifications and reports the HTTP
//!   headers it received.
//!
//! # The `mcpgate-test-upstream` binary
//!
//! With the `testing` feature this package builds `mcpgate-test-upstream`:
//!
//! ```text
//! mcpgate-test-upstream notes-stdio     # the notes demo over stdio
//! mcpgate-test-upstream testing-stdio   # the testing fixture over stdio
//! mcpgate-test-upstream testing-http    # the testing fixture on 127.0.0.1:0;
//!                                       # first stdout line: LISTENING <addr>
//! ```
//!
//! Tests in *this* package find it with `env!("CARGO_BIN_EXE_mcpgate-test-upstream")`.
//! Tests in *other* packages cannot (Cargo sets `CARGO_BIN_EXE_*` only for the
//! package's own binaries) and Cargo does not build a dependency's binaries.
//! They call [`test_upstream_binary`], which looks next to the running test
//! executable (`target/<profile>/deps/<test>` → `target/<profile>/mcpgate-test-upstream`)
//! and builds nothing. The binary exists after `cargo test --workspace` (this
//! package's own tests need it) or after
//! `cargo build -p mcpgate-upstreams --bin mcpgate-test-upstream`; run that first
//! when testing a single package (`cargo test -p mcpgate-gateway`). Set
//! `MCPGATE_TEST_UPSTREAM_BIN` to point somewhere else.

#[cfg(feature = "testing")]
pub mod conformance;
pub mod notes;
#[cfg(feature = "testing")]
pub mod testing;

pub use notes::{NOTES_TOOL_SCOPES, NotesServer, run_notes_stdio};
#[cfg(feature = "testing")]
pub use testing::{
    RecordedHeaders, RecordedRequest, TestingHttpHandle, TestingOptions, TestingServer,
    run_testing_stdio, serve_testing_http, serve_testing_http_with,
};

use std::path::PathBuf;

/// Name of the fixture binary (without the platform's executable suffix).
pub const TEST_UPSTREAM_BIN_NAME: &str = "mcpgate-test-upstream";

/// Environment variable that overrides where [`test_upstream_binary`] looks.
pub const TEST_UPSTREAM_BIN_ENV: &str = "MCPGATE_TEST_UPSTREAM_BIN";

/// Path of the `mcpgate-test-upstream` binary, for tests of other packages.
///
/// Order: `$MCPGATE_TEST_UPSTREAM_BIN` if set; otherwise the binary in the
/// target profile directory of the running executable (a test binary lives in
/// `target/<profile>/deps/`, the binary one level up). Builds nothing.
///
/// # Panics
///
/// When the binary does not exist, with the command that builds it — a test
/// that needs it cannot run without it.
pub fn test_upstream_binary() -> PathBuf {
    if let Some(path) = std::env::var_os(TEST_UPSTREAM_BIN_ENV) {
        return PathBuf::from(path);
    }
    let file = format!("{TEST_UPSTREAM_BIN_NAME}{}", std::env::consts::EXE_SUFFIX);
    let exe = std::env::current_exe().expect("current_exe is known");
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(&file))
        .collect();
    candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "{TEST_UPSTREAM_BIN_NAME} not found (looked at {candidates:?}); build it with \
                 `cargo build -p mcpgate-upstreams --bin {TEST_UPSTREAM_BIN_NAME}` \
                 or set {TEST_UPSTREAM_BIN_ENV}"
            )
        })
}
