//! Resource-server guard for MCP servers (MCP authorization §2(b), RFC 6750,
//! RFC 9068, RFC 9728): who is calling, and the challenge when they may not.
//!
//! [`Authenticate`] is the seam the gateway (or any axum MCP server) calls on
//! every request; sessions are never authentication.

pub mod principal;

pub use principal::{Authenticate, Challenge, Principal};
