//! The revocation hook (protected resource role; RFC 7009 §2 seen from the
//! resource server): a JWT access token stays valid by its signature until
//! `exp`, so an issuer that revokes tokens early must tell its guards. A
//! [`Revocations`] attached to a [`crate::TrustedIssuer`] is asked about
//! every token of that issuer after signature and claims validation,
//! including tokens answered from the validated-token cache.
//!
//! It must be cheap and never block: it answers from an in-memory snapshot
//! that something else keeps up to date (mcpgate's gateway follows the
//! store's revocation set). [`Revocations::generation`] lets the guard skip
//! the question on a cache hit when nothing changed since it last asked.

use std::sync::Arc;

pub use mcpgate_types::token::RevocableToken;

/// The answer of a [`Revocations`] about one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationStatus {
    /// Not revoked (as of the snapshot's generation).
    Live,
    /// Revoked: the guard answers 401 `invalid_token`.
    Revoked,
    /// Nothing is known yet (no snapshot has ever loaded): the guard refuses
    /// the token, failing closed, with 401 `invalid_token`.
    Unknown,
}

/// An issuer's revocations, as the guard consults them on every request.
pub trait Revocations: Send + Sync + 'static {
    /// A number that changes whenever the answer of [`status`](Self::status)
    /// may have changed for some token. A cached token checked at
    /// generation N is not asked about again while this stays N.
    fn generation(&self) -> u64;
    /// Whether `token` is revoked. Called on the request path: no IO.
    fn status(&self, token: &RevocableToken<'_>) -> RevocationStatus;
}

impl std::fmt::Debug for dyn Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocations")
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

/// A fixed answer for every token, at a fixed generation (tests, benches).
impl Revocations for Arc<dyn Fn(&RevocableToken<'_>) -> RevocationStatus + Send + Sync> {
    fn generation(&self) -> u64 {
        1
    }
    fn status(&self, token: &RevocableToken<'_>) -> RevocationStatus {
        self(token)
    }
}
