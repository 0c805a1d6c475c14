//! Test harness for mcpgate: spawn a whole authorization server on
//! `127.0.0.1:0` (SQLite in a temp dir, or a given store), with a clock the
//! test moves, and drive its real login and consent pages with a headless
//! user agent that follows no redirects on its own.
//!
//! Without the default `server` feature only the user agent is built (the
//! interop drivers use it without compiling the authorization server).

mod browser;
pub use browser::*;

#[cfg(feature = "server")]
pub mod haproxy;
#[cfg(feature = "server")]
pub mod pg;
#[cfg(feature = "server")]
mod server;
#[cfg(feature = "server")]
pub use mcpgate_types::pkce;
#[cfg(feature = "server")]
pub use server::*;

/// The password every test user gets.
pub const PASSWORD: &str = "correct horse battery staple";

/// `MCPGATE_TEST_REQUIRE` is set (`.ci/run` sets it): trials that need
/// PostgreSQL or Node fail when those are missing, instead of being
/// reported as ignored.
pub fn required_by_ci() -> bool {
    std::env::var_os(REQUIRE_ENV).is_some()
}

/// See [`required_by_ci`].
pub const REQUIRE_ENV: &str = "MCPGATE_TEST_REQUIRE";
