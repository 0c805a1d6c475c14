//! DPoP on the client side (RFC 9449, the MCP DPoP extension SEP-1932): whether a grant is
//! sender-constrained, the key it is bound to, the proofs that go with token requests and MCP
//! requests, and the nonces servers hand out.
//!
//! A grant is DPoP-bound when the client asked with a proof and the authorization server
//! answered `token_type: DPoP`. The key is made for that grant and stored with its tokens (the
//! token file is mode 0600), so a refresh, which the server may have bound to the same key,
//! and every later request sign with it. Nothing else ever sees the private key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mcpgate_jose::{KeyAlg, Rng, SigningKey};
use mcpgate_types::metadata::{AuthorizationServerMetadata, ProtectedResourceMetadata};

use crate::error::{ClientError, Result};

/// When the client asks for DPoP-bound tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DpopPolicy {
    /// When both sides offer it: the authorization server lists an algorithm we sign with in
    /// `dpop_signing_alg_values_supported`, and the MCP server challenges with `DPoP` or says
    /// in its metadata that it takes DPoP. A server that speaks only Bearer gets Bearer.
    #[default]
    WhenOffered,
    /// Always (`login --dpop`); an authorization server without DPoP is an error, never a
    /// silent fall back to a bearer token.
    Required,
    /// Never.
    Off,
}

/// Whether to bind the next grant, and with which algorithm. `resource_offers` is what the MCP
/// server said: a `DPoP` challenge, or DPoP in its metadata.
pub fn choose(
    policy: DpopPolicy,
    as_metadata: &AuthorizationServerMetadata,
    resource_offers: bool,
) -> Result<Option<KeyAlg>> {
    let offered = &as_metadata.dpop_signing_alg_values_supported;
    let alg = [KeyAlg::Es256, KeyAlg::EdDsa]
        .into_iter()
        .find(|a| offered.iter().any(|o| o == a.as_str()));
    match policy {
        DpopPolicy::Off => Ok(None),
        DpopPolicy::WhenOffered => Ok(alg.filter(|_| resource_offers)),
        DpopPolicy::Required => alg.map(Some).ok_or_else(|| ClientError::Dpop {
            detail: format!(
                "the authorization server {} does not offer DPoP with ES256 or EdDSA \
                 (dpop_signing_alg_values_supported: {:?}); log in without --dpop to accept \
                 a bearer token",
                as_metadata.issuer, offered
            ),
        }),
    }
}

/// Whether the protected resource's metadata says it takes DPoP (RFC 9728 §2).
pub fn resource_takes_dpop(prm: &ProtectedResourceMetadata) -> bool {
    prm.dpop_bound_access_tokens_required == Some(true)
        || !prm.dpop_signing_alg_values_supported.is_empty()
}

/// A fresh key for one grant.
pub fn new_key(alg: KeyAlg) -> Result<Arc<SigningKey>> {
    SigningKey::generate("dpop", alg)
        .map(Arc::new)
        .map_err(|e| ClientError::Dpop {
            detail: format!("making a key: {e}"),
        })
}

/// The latest nonce each server handed out (RFC 9449 §§8–9), by origin.
#[derive(Debug, Default)]
pub struct Nonces(Mutex<HashMap<String, String>>);

impl Nonces {
    /// The nonce to put in the next proof for `url`.
    pub fn for_url(&self, url: &str) -> Option<String> {
        let origin = origin(url)?;
        self.0.lock().ok()?.get(&origin).cloned()
    }

    /// Keeps the `DPoP-Nonce` of a response from `url`, if it has a usable one (RFC 9449 §8:
    /// `NQCHAR`s, here at most 512 of them). Returns whether it had one.
    pub fn remember(&self, url: &str, headers: &http::HeaderMap) -> bool {
        let Some(nonce) = headers
            .get("dpop-nonce")
            .and_then(|v| v.to_str().ok())
            .filter(|n| {
                !n.is_empty() && n.len() <= 512 && n.bytes().all(|b| (0x21..=0x7e).contains(&b))
            })
        else {
            return false;
        };
        let (Some(origin), Ok(mut map)) = (origin(url), self.0.lock()) else {
            return false;
        };
        map.insert(origin, nonce.to_owned());
        true
    }
}

fn origin(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    Some(u.origin().ascii_serialization())
}

/// What makes the proofs of one request: the grant's key, the nonces, time and randomness.
pub struct Prover<'a> {
    pub key: &'a SigningKey,
    pub nonces: &'a Nonces,
    pub now: i64,
    pub rng: &'a dyn Rng,
}

impl Prover<'_> {
    /// A proof for `htm url`, with `ath` when `access_token` goes with it and the server's
    /// latest nonce when it gave one.
    pub fn proof(&self, htm: &str, url: &str, access_token: Option<&str>) -> Result<String> {
        let nonce = self.nonces.for_url(url);
        mcpgate_jose::dpop::proof(
            self.key,
            htm,
            url,
            access_token,
            nonce.as_deref(),
            self.now,
            self.rng,
        )
        .map_err(|e| ClientError::Dpop {
            detail: format!("signing a proof: {e}"),
        })
    }
}

/// Whether a 401's `WWW-Authenticate` asks for a DPoP nonce (RFC 9449 §9).
pub fn asks_for_nonce(www_authenticate: Option<&str>) -> bool {
    www_authenticate
        .and_then(|w| mcpgate_types::www_authenticate::find_scheme(w, "dpop"))
        .is_some_and(|c| c.get("error") == Some("use_dpop_nonce"))
}

/// Serde for a grant's key in the token file: the algorithm and the PKCS#8 document.
pub(crate) mod serde_key {
    use std::sync::Arc;

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use mcpgate_jose::{KeyAlg, SigningKey};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Stored {
        alg: KeyAlg,
        pkcs8: String,
    }

    pub(crate) fn serialize<S: Serializer>(
        key: &Option<Arc<SigningKey>>,
        ser: S,
    ) -> Result<S::Ok, S::Error> {
        key.as_ref()
            .map(|k| Stored {
                alg: k.alg(),
                pkcs8: STANDARD.encode(k.pkcs8()),
            })
            .serialize(ser)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Arc<SigningKey>>, D::Error> {
        let Some(stored) = Option::<Stored>::deserialize(d)? else {
            return Ok(None);
        };
        let der = STANDARD
            .decode(stored.pkcs8)
            .map_err(|_| serde::de::Error::custom("the DPoP key is not base64"))?;
        SigningKey::from_pkcs8("dpop", stored.alg, der)
            .map(|k| Some(Arc::new(k)))
            .map_err(|_| serde::de::Error::custom("the DPoP key does not load"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_with(algs: &[&str]) -> AuthorizationServerMetadata {
        AuthorizationServerMetadata {
            issuer: "https://as.example".into(),
            dpop_signing_alg_values_supported: algs.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn dpop_only_when_both_sides_offer_it_unless_required() {
        use DpopPolicy::*;
        let es = as_with(&["RS256", "ES256"]);
        assert_eq!(choose(WhenOffered, &es, true).unwrap(), Some(KeyAlg::Es256));
        assert_eq!(choose(WhenOffered, &es, false).unwrap(), None);
        assert_eq!(
            choose(WhenOffered, &as_with(&["EdDSA"]), true).unwrap(),
            Some(KeyAlg::EdDsa)
        );
        assert_eq!(
            choose(WhenOffered, &as_with(&["RS256"]), true).unwrap(),
            None
        );
        assert_eq!(choose(Off, &es, true).unwrap(), None);
        assert_eq!(choose(Required, &es, false).unwrap(), Some(KeyAlg::Es256));
        let err = choose(Required, &as_with(&[]), true).unwrap_err();
        assert!(err.to_string().contains("without --dpop"), "{err}");
    }

    #[test]
    fn nonces_are_kept_per_origin_and_must_be_printable() {
        let n = Nonces::default();
        let mut h = http::HeaderMap::new();
        h.insert("dpop-nonce", "n1".parse().unwrap());
        assert!(n.remember("https://as.example:443/token", &h));
        assert_eq!(n.for_url("https://as.example/other").as_deref(), Some("n1"));
        assert_eq!(n.for_url("https://rs.example/mcp"), None);
        h.insert("dpop-nonce", "has space".parse().unwrap());
        assert!(!n.remember("https://as.example/token", &h));
        assert_eq!(n.for_url("https://as.example/").as_deref(), Some("n1"));
    }

    #[test]
    fn a_use_dpop_nonce_challenge_is_recognised() {
        assert!(asks_for_nonce(Some(
            r#"DPoP error="use_dpop_nonce", resource_metadata="https://x""#
        )));
        assert!(!asks_for_nonce(Some(r#"Bearer error="use_dpop_nonce""#)));
        assert!(!asks_for_nonce(Some("DPoP algs=\"ES256\"")));
        assert!(!asks_for_nonce(None));
    }
}
