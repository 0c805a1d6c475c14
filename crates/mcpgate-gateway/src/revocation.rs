//! The store's revocation set as the guards see it (protected resource
//! role; RFC 7009 §2): a [`RevocationWatch`] follows the store (revision
//! polled every 250 ms; PostgreSQL `LISTEN/NOTIFY` for other processes) and
//! answers each guard from memory. It applies to tokens of mcpgate's own
//! issuer only: external issuers revoke their tokens themselves.
//!
//! Failing closed: until a first snapshot has loaded, own tokens are
//! refused (401, logged). When a later refresh fails, the last good
//! snapshot stays in use and every failed attempt is logged as an error:
//! refusing every token on a database hiccup would take the gateway down
//! with the store, while revocations made during the outage are enforced
//! as soon as the store answers again.

use std::sync::Arc;

use mcpgate_guard::{RevocableToken, RevocationStatus, Revocations};
use mcpgate_store::{RevocationStore, RevocationWatch, StoreResult, revocation};

/// A [`RevocationWatch`] as a guard's [`Revocations`].
#[derive(Debug, Clone)]
pub struct StoreRevocations(pub RevocationWatch);

impl StoreRevocations {
    /// Loads the set from `store` and follows it from a background task
    /// (ended when the last clone is dropped). The result says whether the
    /// first load worked; if not, own tokens are refused until one does.
    pub async fn start(store: Arc<dyn RevocationStore>) -> (Self, StoreResult<()>) {
        let (watch, first) = RevocationWatch::start(store, revocation::POLL_INTERVAL).await;
        (Self(watch), first)
    }
}

impl Revocations for StoreRevocations {
    fn generation(&self) -> u64 {
        self.0.generation()
    }

    fn status(&self, t: &RevocableToken<'_>) -> RevocationStatus {
        match self.0.covers(t) {
            None => RevocationStatus::Unknown,
            Some(true) => RevocationStatus::Revoked,
            Some(false) => RevocationStatus::Live,
        }
    }
}
