//! `private_key_jwt` client authentication (RFC 7523 §2.2 and §3, OIDC Core
//! §9): the client signs a short-lived JWT with its private key; the AS
//! holds only the public keys, given at registration (`jwks`) or published
//! at a URL (`jwks_uri`, fetched through the SSRF guard and cached).
//!
//! An assertion is accepted when all of this holds:
//! - it is signed by a key of the client's set, with that key's algorithm
//!   (the algorithm comes from the key, never from the token header);
//! - `iss` and `sub` are the client's id;
//! - `aud` is this AS's issuer identifier, and only that (as RFC 7523bis
//!   requires): an assertion addressed to a token endpoint URL could have
//!   been made for another AS whose metadata named our endpoint as its own
//!   (the audience-injection attack), and replayed here;
//! - `exp` is present, not passed, and at most [`MAX_LIFETIME_SECS`] away
//!   (an assertion is for one request, not a credential to keep); `iat`,
//!   if present, is not in the future; `nbf` is honoured;
//! - `jti` is present and has not been seen from this client before: the
//!   first use marks it in the store (fleet-wide, one `INSERT` decides)
//!   until the assertion expires, so a captured assertion cannot be
//!   presented again at any replica.
//!
//! The replay mark is written only after the signature verified, so
//! unsigned junk cannot fill the store.

use std::collections::HashMap;
use std::sync::Arc;

use mcpgate_jose::{JwtError, Verifier, VerifyOptions};
use mcpgate_net::FetchPolicy;
use mcpgate_store::ClientRecord;
use mcpgate_types::OAuthErrorCode;
use mcpgate_types::client_metadata::TokenEndpointAuthMethod;
use serde::Deserialize;

use crate::error::ApiError;
use crate::state::AppState;

/// The longest an assertion may live, from now to its `exp` (seconds).
pub const MAX_LIFETIME_SECS: i64 = 300;
/// Clock skew allowed on `exp`, `nbf` and `iat` (seconds).
const LEEWAY_SECS: i64 = 30;
/// Longest assertion read (bytes) and longest `jti` (characters).
const MAX_ASSERTION_BYTES: usize = 8 * 1024;
const MAX_JTI_CHARS: usize = 256;
/// How long a fetched `jwks_uri` set is used before it is fetched again,
/// and how soon an assertion naming an unknown `kid` may fetch it again
/// (a client that rotated its key; bounded so that a flood of bad `kid`s
/// cannot make the AS hammer the client's host).
const JWKS_TTL_SECS: i64 = 300;
const JWKS_REFETCH_SECS: i64 = 30;
/// Cached sets at most; the cache is emptied when it is full.
const JWKS_CACHE_MAX: usize = 1024;

/// The algorithms an assertion may be signed with (metadata's
/// `token_endpoint_auth_signing_alg_values_supported`): those a client's
/// JWK can carry in [`Verifier::from_client_jwks`].
pub const SIGNING_ALGS: [&str; 8] = [
    "ES256", "EdDSA", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
];

/// `jwks_uri` sets fetched, by URL.
#[derive(Default)]
pub(crate) struct JwksCache(tokio::sync::Mutex<HashMap<String, Fetched>>);

struct Fetched {
    keys: Arc<Verifier>,
    at: i64,
}

fn refused(d: impl Into<String>) -> ApiError {
    ApiError::code(OAuthErrorCode::InvalidClient, d)
}

/// The client an assertion claims to come from (`iss`), read without
/// verifying anything: it only says whose keys to verify it with.
pub fn claimed_client_id(assertion: &str) -> Result<String, ApiError> {
    if assertion.len() > MAX_ASSERTION_BYTES {
        return Err(refused("client_assertion is too large"));
    }
    Verifier::peek_issuer(assertion)
        .filter(|i| !i.is_empty())
        .ok_or_else(|| {
            refused("client_assertion is not a well-formed JWT with an iss (the client_id)")
        })
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    aud: Option<Audience>,
    exp: i64,
    iat: Option<i64>,
    jti: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// Checks `assertion` for `client` (a `private_key_jwt` client) as the
/// module docs say, and marks its `jti` used.
pub async fn verify(
    app: &AppState,
    client: &ClientRecord,
    assertion: &str,
) -> Result<(), ApiError> {
    let now = app.now();
    let keys = keys_of(app, client, assertion, now).await?;
    let opts = VerifyOptions {
        issuer: &client.client_id,
        audience: None,
        typ: None,
        now,
        leeway: LEEWAY_SECS,
    };
    let jwt = keys
        .verify::<Claims>(assertion, &opts)
        .map_err(|e| refused(describe(&e)))?;
    let c = jwt.claims;
    if c.sub.as_deref() != Some(client.client_id.as_str()) {
        return Err(refused("client_assertion sub must be the client_id"));
    }
    let issuer = app.settings.issuer.as_str();
    let aud_ok = match &c.aud {
        Some(Audience::One(a)) => is_issuer(a, issuer),
        Some(Audience::Many(list)) => list.len() == 1 && is_issuer(&list[0], issuer),
        None => false,
    };
    if !aud_ok {
        return Err(refused(format!(
            "client_assertion aud must be this server's issuer identifier ({issuer}), alone"
        )));
    }
    if c.exp > now + MAX_LIFETIME_SECS + LEEWAY_SECS {
        return Err(refused(format!(
            "client_assertion lives too long (exp at most {MAX_LIFETIME_SECS} s away)"
        )));
    }
    if c.iat.is_some_and(|iat| iat > now + LEEWAY_SECS) {
        return Err(refused("client_assertion iat is in the future"));
    }
    let jti = c
        .jti
        .filter(|j| !j.is_empty() && j.chars().count() <= MAX_JTI_CHARS)
        .ok_or_else(|| refused("client_assertion needs a jti of at most 256 characters"))?;
    let mark = format!("mcpgate/client-assertion/v1\n{}\n{jti}", client.client_id);
    if !app.spend_once(&mark, c.exp + LEEWAY_SECS).await? {
        tracing::warn!(client_id = %client.client_id, "client assertion replayed");
        return Err(refused(
            "client_assertion was already used (jti seen before)",
        ));
    }
    Ok(())
}

/// `aud` names `issuer`: the same string, or, for an issuer without a path,
/// the same URL with its root path written out (RFC 3986 §6.2.3; clients
/// that normalize URLs add the slash).
fn is_issuer(aud: &str, issuer: &str) -> bool {
    aud == issuer
        || (aud.strip_suffix('/') == Some(issuer)
            && issuer
                .split_once("://")
                .is_some_and(|(_, rest)| !rest.contains('/')))
}

fn describe(e: &JwtError) -> String {
    match e {
        JwtError::Malformed => "client_assertion is not a well-formed signed JWT".into(),
        JwtError::UnknownKid => "client_assertion is signed by no key the client registered".into(),
        JwtError::AlgorithmNotAllowed => {
            "client_assertion alg is not the algorithm of the client's key".into()
        }
        JwtError::BadSignature => "client_assertion signature does not verify".into(),
        JwtError::WrongIssuer => "client_assertion iss must be the client_id".into(),
        JwtError::Expired => "client_assertion has expired".into(),
        JwtError::NotYetValid => "client_assertion is not valid yet (nbf)".into(),
        JwtError::MissingClaim(c) => format!("client_assertion lacks the {c} claim"),
        other => format!("client_assertion refused: {other}"),
    }
}

/// The client's public keys: its registered set, or the set at its
/// `jwks_uri` (cached; fetched again when stale, or when the assertion
/// names a `kid` the cached set lacks and the last fetch is not too recent).
async fn keys_of(
    app: &AppState,
    client: &ClientRecord,
    assertion: &str,
    now: i64,
) -> Result<Arc<Verifier>, ApiError> {
    if let Some(doc) = &client.jwks {
        let doc: serde_json::Value = serde_json::from_str(doc)
            .map_err(|e| ApiError::Internal(format!("stored jwks of {}: {e}", client.client_id)))?;
        return Verifier::from_client_jwks(&doc)
            .map(Arc::new)
            .map_err(|e| refused(format!("the client's registered keys are unusable: {e}")));
    }
    let Some(uri) = &client.jwks_uri else {
        return Err(refused("the client registered no keys (jwks or jwks_uri)"));
    };
    let kid = Verifier::peek_kid(assertion).map_err(|e| refused(describe(&e)))?;
    keys_at(app, uri, kid.as_deref(), now)
        .await
        .map_err(|e| match e {
            KeysUnavailable::Busy => ApiError::RateLimited {
                retry_after_secs: 5,
            },
            KeysUnavailable::Unusable(why) => {
                refused(format!("the client's jwks_uri could not be used: {why}"))
            }
        })
}

/// Why the key set at a URL is not to be had now.
pub(crate) enum KeysUnavailable {
    /// The URL, its answer or its keys are unusable (the reason, safe to send).
    Unusable(String),
    /// The outbound fetch limits are spent; try again in a few seconds.
    Busy,
}

/// The public keys published at `uri` (a client's `jwks_uri`, a workload
/// issuer's): from the cache for 5 minutes, fetched again sooner (at most
/// every 30 s) when a token names a `kid` the cached set lacks. Every fetch
/// goes through the SSRF guard and counts against the outbound limits.
pub(crate) async fn keys_at(
    app: &AppState,
    uri: &str,
    kid: Option<&str>,
    now: i64,
) -> Result<Arc<Verifier>, KeysUnavailable> {
    let mut cache = app.client_jwks.0.lock().await;
    if let Some(f) = cache.get(uri) {
        let fresh = now - f.at < JWKS_TTL_SECS;
        let knows = kid.is_none_or(|k| f.keys.contains(k));
        if fresh && (knows || now - f.at < JWKS_REFETCH_SECS) {
            return Ok(f.keys.clone());
        }
    }
    let keys = Arc::new(fetch(app, uri).await?);
    if cache.len() >= JWKS_CACHE_MAX {
        cache.clear();
    }
    cache.insert(
        uri.to_owned(),
        Fetched {
            keys: keys.clone(),
            at: now,
        },
    );
    Ok(keys)
}

async fn fetch(app: &AppState, uri: &str) -> Result<Verifier, KeysUnavailable> {
    let unusable = |why: String| {
        tracing::info!(jwks_uri = %uri, %why, "jwks_uri unusable");
        KeysUnavailable::Unusable(why)
    };
    if !crate::idp::acceptable_url(app, uri) {
        return Err(unusable("it is not an https URL".into()));
    }
    let host = url::Url::parse(uri)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .ok_or_else(|| unusable("it has no host".into()))?;
    if !app.limiters.may_fetch_from(&host) {
        return Err(KeysUnavailable::Busy);
    }
    let r = app
        .fetcher
        .get(uri)
        .await
        .map_err(|e| unusable(e.to_string()))?;
    if !r.is_success() {
        return Err(unusable(format!("it answered HTTP {}", r.status)));
    }
    let doc: serde_json::Value =
        serde_json::from_slice(&r.body).map_err(|_| unusable("it is not JSON".into()))?;
    Verifier::from_client_jwks(&doc).map_err(|e| unusable(e.to_string()))
}

/// Largest JWK set a client may register by value (bytes of JSON).
pub const MAX_JWKS_BYTES: usize = 16 * 1024;

/// The keys a client registers (dynamic registration, a metadata document),
/// as stored: for `private_key_jwt` exactly one of its JWK set (as JSON
/// text, checked by [`Verifier::from_client_jwks`]) and its `jwks_uri`
/// (RFC 7591 §2), for other methods nothing (no key would ever be checked).
/// The error says which rule the metadata broke.
pub fn registered_keys(
    method: TokenEndpointAuthMethod,
    jwks: Option<&serde_json::Value>,
    jwks_uri: Option<&str>,
    policy: &FetchPolicy,
) -> Result<(Option<String>, Option<String>), String> {
    if method != TokenEndpointAuthMethod::PrivateKeyJwt {
        return Ok((None, None));
    }
    match (jwks, jwks_uri) {
        (Some(_), Some(_)) => Err("give jwks or jwks_uri, not both".into()),
        (None, None) => Err("private_key_jwt needs the client's jwks or jwks_uri".into()),
        (Some(doc), None) => {
            Verifier::from_client_jwks(doc).map_err(|e| format!("jwks: {e}"))?;
            let text = doc.to_string();
            if text.len() > MAX_JWKS_BYTES {
                return Err(format!("jwks is larger than {MAX_JWKS_BYTES} bytes"));
            }
            Ok((Some(text), None))
        }
        (None, Some(uri)) => {
            if uri.len() > 2000 || !policy.admits(uri) {
                return Err("jwks_uri must be an https URL".into());
            }
            Ok((None, Some(uri.to_owned())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn jwt(payload: &str) -> String {
        format!("e30.{}.c2ln", URL_SAFE_NO_PAD.encode(payload))
    }

    #[test]
    fn aud_is_the_issuer_with_or_without_its_root_slash() {
        assert!(is_issuer("https://as.example", "https://as.example"));
        assert!(is_issuer("https://as.example/", "https://as.example"));
        assert!(is_issuer("https://as.example/t", "https://as.example/t"));
        assert!(!is_issuer("https://as.example/t/", "https://as.example/t"));
        assert!(!is_issuer("https://as.example//", "https://as.example"));
        assert!(!is_issuer(
            "https://as.example/oauth/token",
            "https://as.example"
        ));
        assert!(!is_issuer("https://as.example.evil", "https://as.example"));
    }

    #[test]
    fn the_claimed_client_is_iss() {
        assert_eq!(claimed_client_id(&jwt(r#"{"iss":"c1"}"#)).unwrap(), "c1");
        for bad in [
            jwt(r#"{"sub":"c1"}"#),
            jwt(r#"{"iss":""}"#),
            jwt(r#"{"iss":7}"#),
            jwt("not json"),
            "a.b".into(),
            "a.b.c.d".into(),
            "e30.!!!.c2ln".into(),
            format!("e30.{}.c2ln", "A".repeat(MAX_ASSERTION_BYTES)),
        ] {
            assert!(claimed_client_id(&bad).is_err(), "{bad:.40}");
        }
    }
}
