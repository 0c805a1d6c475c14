//! DPoP-bound access tokens at the resource (RFC 9449 §7): a token whose
//! `cnf.jkt` names a key is accepted only with the `DPoP` scheme and a proof,
//! made with that key, for this request's method and URI, with the token's
//! hash as `ath`, an `iat` within a minute, a `jti` not seen before by this
//! guard, and (when the guard is given a nonce key) a nonce it issued.
//!
//! The replay cache is this process's: on a fleet, a proof replayed to
//! another replica within its minute is not caught by it. Nonces narrow that
//! window to the nonce's age on every replica alike (the key is derived from
//! the deployment's secret), and the proof still only works for the request
//! it was made for, with the token it names.

use std::collections::HashMap;
use std::sync::Mutex;

use http::request::Parts;
use mcpgate_jose::dpop::{self, DEFAULT_IAT_WINDOW_SECS, NonceKey, ProofCheck};

use crate::principal::Challenge;

/// How many unexpired proofs the replay cache holds before it refuses new ones.
pub const REPLAY_CACHE_CAPACITY: usize = 1 << 18;
/// How long a nonce this guard issues stays good (seconds).
pub const NONCE_MAX_AGE_SECS: i64 = 300;

/// The DPoP side of one guard.
pub(crate) struct DpopCheck {
    /// `scheme://authority` of the resource: with the request's path, the `htu` a proof must
    /// name (the public URI clients use, not the Host header a proxy may rewrite).
    origin: String,
    nonce: Option<NonceKey>,
    seen: Mutex<HashMap<[u8; 32], i64>>,
}

fn refused(description: impl Into<String>) -> Challenge {
    Challenge::InvalidDpopProof(description.into())
}

impl DpopCheck {
    /// `nonce_secret`: nonces are required, made with a key derived from it for this
    /// resource's origin (clients keep one nonce per origin; the resources of one gateway
    /// share theirs).
    pub(crate) fn new(resource: &str, nonce_secret: Option<&[u8; 32]>) -> Self {
        let origin = url::Url::parse(resource)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default();
        Self {
            nonce: nonce_secret.map(|s| NonceKey::derive(s, &origin)),
            origin,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Checks the proof of `request`, which presents `token`, bound to `jkt`.
    pub(crate) fn check(
        &self,
        request: &Parts,
        token: &str,
        jkt: &str,
        now: i64,
    ) -> Result<(), Challenge> {
        let mut values = request.headers.get_all("dpop").iter();
        let (Some(proof), None) = (values.next(), values.next()) else {
            return Err(refused("the request needs exactly one DPoP proof header"));
        };
        let proof = proof
            .to_str()
            .map_err(|_| refused("the DPoP header is not ASCII"))?;
        // Behind axum's `nest`, the path as the client sent it.
        let path = request
            .extensions
            .get::<axum::extract::OriginalUri>()
            .map_or_else(|| request.uri.path(), |u| u.0.path());
        let htu = format!("{}{path}", self.origin);
        let checked = dpop::check(
            proof,
            &ProofCheck {
                htm: request.method.as_str(),
                htu: &htu,
                access_token: Some(token),
                jkt: Some(jkt),
                now,
                iat_window: DEFAULT_IAT_WINDOW_SECS,
            },
        )
        .map_err(|e| refused(e.to_string()))?;
        if let Some(key) = &self.nonce
            && !checked
                .nonce
                .as_deref()
                .is_some_and(|n| key.accepts(n, now, NONCE_MAX_AGE_SECS))
        {
            return Err(Challenge::UseDpopNonce {
                nonce: key.issue(now),
            });
        }
        self.spend(&checked.jkt, &checked.jti, checked.iat, now)
    }

    /// Records a proof's `jti` until its `iat` leaves the window; a second use is refused.
    fn spend(&self, jkt: &str, jti: &str, iat: i64, now: i64) -> Result<(), Challenge> {
        let digest = aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            format!("{jkt}\n{jti}").as_bytes(),
        );
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        let until = iat.saturating_add(DEFAULT_IAT_WINDOW_SECS);
        let mut seen = self
            .seen
            .lock()
            .map_err(|_| refused("the DPoP proof could not be checked"))?;
        if seen.len() >= REPLAY_CACHE_CAPACITY {
            seen.retain(|_, t| *t >= now);
            if seen.len() >= REPLAY_CACHE_CAPACITY {
                tracing::warn!("DPoP replay cache full; refusing proofs until entries expire");
                return Err(refused("too many DPoP proofs at once; retry shortly"));
            }
        }
        match seen.get(&key) {
            Some(t) if *t >= now => Err(refused("the DPoP proof was already used")),
            _ => {
                seen.insert(key, until);
                Ok(())
            }
        }
    }
}
