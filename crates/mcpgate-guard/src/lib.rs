//! Resource-server guard for MCP servers (MCP authorization §2(b), RFC 6750,
//! RFC 9068, RFC 9728): who is calling, and the challenge when they may not.
//!
//! [`Authenticate`] is the seam the gateway (or any axum MCP server) calls on
//! every request; sessions are never authentication.
//!
//! - [`Guard`]: validates the bearer token of every request for one protected resource —
//!   JWT access tokens against local or remote (cached, SSRF-safe) JWKS, opaque tokens by
//!   RFC 7662 introspection — with a bounded validated-token cache.
//! - [`challenge_response`]: 401/400/403 with the RFC 6750 `WWW-Authenticate` challenge and a
//!   JSON-RPC error body.
//! - [`prm_document`], [`prm_router`]: RFC 9728 protected resource metadata.
//! - [`GuardLayer`]: the guard as a tower layer; handlers take [`Principal`] as an extractor.
//! - [`Revocations`]: an issuer's revocation set, consulted on every request (cache hits
//!   included) so that revoked JWTs stop working before their `exp`.
//!
//! See `docs/guard.md` and `examples/protect_axum.rs`.

pub mod bearer;
mod cache;
pub mod challenge;
mod claims;
pub mod config;
mod dpop;
pub mod guard;
mod introspect;
mod jwks;
pub mod layer;
pub mod principal;
pub mod prm;
pub mod revocation;

pub use challenge::{AUTH_ERROR_CODE, challenge_response, www_authenticate};
pub use config::{
    GuardConfig, GuardConfigError, Introspection, KeySource, LocalKeys, TrustedIssuer,
};
pub use guard::{Guard, GuardStats};
pub use layer::{GuardLayer, GuardService};
pub use principal::{Authenticate, Challenge, Principal};
pub use prm::{prm_document, prm_path, prm_response, prm_router, prm_url};
pub use revocation::{RevocableToken, RevocationStatus, Revocations};

/// Compiles the code in `docs/guard.md` as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/guard.md")]
pub struct GuardGuideDoctests;
