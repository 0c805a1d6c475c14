//! [`Guard`]: access-token validation for one protected resource (MCP authorization §2(b);
//! RFC 6750 §2-3, RFC 9068 §4, RFC 8725 §3, RFC 7662, RFC 8707).
//!
//! Every request: the token comes only from the `Authorization` header ([`crate::bearer`]); a
//! repeat is answered from the validated-token cache (`cache` module) after checking that its
//! signing key is still published; otherwise a compact JWS is verified in full with the keys of
//! the issuer its (unverified) `iss` names — signature with the algorithm of the key, never of
//! the header; `iss` exact; `aud` containing this resource exactly; `exp`/`nbf` with the
//! bounded leeway; `typ` — and anything else goes to introspection, if one issuer offers it.
//! A JWT of an issuer with [`crate::Revocations`] is then checked against them, on a cache
//! hit too (asking again only when their generation moved since the token was last checked).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use http::request::Parts;
use mcpgate_jose::{Clock, JwtError, Verifier, VerifyOptions};

use crate::bearer::Scheme;
use crate::cache::{JwtFacts, Origin, TokenCache, TokenKey};
use crate::claims::{AccessClaims, into_principal, is_jws};
use crate::config::{GuardConfig, GuardConfigError, KeySource, LocalKeys};
use crate::introspect::Introspector;
use crate::jwks::RemoteKeys;
use crate::principal::{Authenticate, Challenge, Principal};
use crate::revocation::{RevocableToken, RevocationStatus, Revocations};

enum Keys {
    Local(Arc<dyn LocalKeys>),
    Remote(Arc<RemoteKeys>),
}

struct Issuer {
    issuer: String,
    typ: Option<String>,
    keys: Keys,
    revocations: Option<Arc<dyn Revocations>>,
}

/// Counters for metrics and tests (monotonic since the guard was built).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuardStats {
    /// Requests answered from the validated-token cache.
    pub cache_hits: u64,
    /// Signature verifications performed.
    pub verifications: u64,
    /// Introspection requests sent.
    pub introspections: u64,
    /// HTTP requests made for remote keys (discovery and JWKS).
    pub key_fetches: u64,
}

#[derive(Default)]
struct Counters {
    cache_hits: AtomicU64,
    verifications: AtomicU64,
    introspections: AtomicU64,
}

/// Validates the access tokens of one protected resource. Cheap to share (`Arc<Guard>`).
pub struct Guard {
    resource: String,
    resource_metadata_url: String,
    baseline: mcpgate_types::ScopeSet,
    issuers: Vec<Issuer>,
    introspector: Option<Introspector>,
    leeway: i64,
    clock: Arc<dyn Clock>,
    cache: TokenCache,
    counters: Counters,
    dpop: crate::dpop::DpopCheck,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("resource", &self.resource)
            .field(
                "issuers",
                &self.issuers.iter().map(|i| &i.issuer).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// What went wrong, as a description safe to send in `error_description`.
fn describe(e: &JwtError) -> &'static str {
    match e {
        JwtError::Malformed => "the token is malformed",
        JwtError::UnknownKid => "the token is signed with an unknown key",
        JwtError::AlgorithmNotAllowed => "the token algorithm is not allowed",
        JwtError::BadSignature => "the token signature is invalid",
        JwtError::WrongType => "the token is not an access token (typ)",
        JwtError::WrongIssuer => "the token issuer is not trusted",
        JwtError::WrongAudience => "the token was not issued for this resource",
        JwtError::Expired => "the token has expired",
        JwtError::NotYetValid => "the token is not valid yet",
        JwtError::MissingClaim("exp") => "the token has no exp claim",
        JwtError::MissingClaim("aud") => "the token has no aud claim",
        JwtError::MissingClaim("iss") => "the token has no iss claim",
        JwtError::MissingClaim(_) => "the token lacks a required claim",
        JwtError::Key(_) => "the token could not be validated",
    }
}

fn invalid(description: &str) -> Challenge {
    Challenge::InvalidToken(description.to_owned())
}

impl Guard {
    /// Builds a guard; fails on an invalid configuration (see [`GuardConfig::validate`]).
    /// Remote keys are fetched on first use, or by [`Guard::prefetch_keys`].
    pub fn new(config: GuardConfig) -> Result<Self, GuardConfigError> {
        config.validate()?;
        let mut introspector = None;
        let mut issuers = Vec::with_capacity(config.issuers.len());
        for t in config.issuers {
            if let Some(i) = t.introspection {
                introspector = Some(Introspector {
                    issuer: t.issuer.clone(),
                    endpoint: i.endpoint,
                    client_id: i.client_id,
                    client_secret: i.client_secret,
                    cache_secs: i64::try_from(i.cache_secs).unwrap_or(0),
                    fetcher: i.fetcher,
                });
            }
            let keys = match t.keys {
                KeySource::Local(k) => Keys::Local(k),
                KeySource::Remote { jwks_uri, fetcher } => Keys::Remote(Arc::new(RemoteKeys::new(
                    t.issuer.clone(),
                    jwks_uri,
                    fetcher,
                    config.jwks_refetch_interval_secs,
                    config.jwks_max_age_secs,
                ))),
            };
            issuers.push(Issuer {
                issuer: t.issuer,
                typ: t.typ,
                keys,
                revocations: t.revocations,
            });
        }
        let dpop = crate::dpop::DpopCheck::new(&config.resource, config.dpop_nonce_key.as_deref());
        Ok(Self {
            dpop,
            resource: config.resource,
            resource_metadata_url: config.resource_metadata_url,
            baseline: config.baseline_scopes,
            issuers,
            introspector,
            leeway: config.leeway_secs,
            clock: config.clock,
            cache: TokenCache::new(config.cache_capacity),
            counters: Counters::default(),
        })
    }

    /// The canonical resource URI this guard protects.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The URL of this resource's protected resource metadata.
    pub fn resource_metadata_url(&self) -> &str {
        &self.resource_metadata_url
    }

    /// The baseline scopes (401 challenge `scope`, PRM `scopes_supported`).
    pub fn baseline_scopes(&self) -> &mcpgate_types::ScopeSet {
        &self.baseline
    }

    /// The 401/400/403 response for a challenge of this resource.
    pub fn challenge_response(&self, challenge: &Challenge) -> axum::response::Response {
        crate::challenge::challenge_response(challenge, &self.resource_metadata_url, &self.baseline)
    }

    /// Counters since the guard was built.
    pub fn stats(&self) -> GuardStats {
        GuardStats {
            cache_hits: self.counters.cache_hits.load(Ordering::Relaxed),
            verifications: self.counters.verifications.load(Ordering::Relaxed),
            introspections: self.counters.introspections.load(Ordering::Relaxed),
            key_fetches: self
                .issuers
                .iter()
                .map(|i| match &i.keys {
                    Keys::Remote(r) => r.fetches(),
                    Keys::Local(_) => 0,
                })
                .sum(),
        }
    }

    /// Number of validated tokens currently cached.
    pub fn cached_tokens(&self) -> usize {
        self.cache.len()
    }

    /// Forgets every validated token (e.g. after an emergency key removal or a revocation).
    pub fn clear_cache(&self) {
        self.cache.clear();
    }

    /// Fetches the keys of every remote issuer now (start-up warm-up, `check-config`). Returns
    /// the issuers for which no key set could be obtained.
    pub async fn prefetch_keys(&self) -> Vec<String> {
        let now = self.clock.now();
        let mut failed = Vec::new();
        for issuer in &self.issuers {
            if let Keys::Remote(r) = &issuer.keys
                && !r.prefetch(now).await
            {
                failed.push(issuer.issuer.clone());
            }
        }
        failed
    }

    /// Validates `token` (already taken from the header), using and filling the cache.
    pub async fn validate_token(&self, token: &str) -> Result<Principal, Challenge> {
        let now = self.clock.now();
        let key = TokenKey::of(token);
        if let Some(hit) = self.cache.get(&key, now) {
            if self.origin_still_valid(&hit.origin, now).await {
                if let Some((revocations, facts)) = self.revocations_of(&hit.origin)
                    && revocations.generation() != hit.checked
                {
                    match check_revocation(revocations, facts, &hit.principal) {
                        Ok(generation) => self.cache.set_checked(&key, generation),
                        Err(refused) => {
                            self.cache.remove(&key);
                            return Err(refused);
                        }
                    }
                }
                self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                return Ok(Principal::clone(&hit.principal));
            }
            self.cache.remove(&key);
        }
        let (principal, origin, until) = if is_jws(token) {
            self.verify_jwt(token, now).await?
        } else {
            self.introspect(token, now).await?
        };
        let checked = match self.revocations_of(&origin) {
            Some((revocations, facts)) => check_revocation(revocations, facts, &principal)?,
            None => 0,
        };
        let principal = Arc::new(principal);
        self.cache
            .insert(key, principal.clone(), origin, until, now, checked);
        Ok(Arc::unwrap_or_clone(principal))
    }

    /// The revocations that apply to a token of this origin, with its ids.
    fn revocations_of<'a>(
        &'a self,
        origin: &'a Origin,
    ) -> Option<(&'a dyn Revocations, &'a JwtFacts)> {
        match origin {
            Origin::Jwt { issuer, facts } => {
                let r = self.issuers.get(*issuer)?.revocations.as_deref()?;
                Some((r, facts))
            }
            Origin::Introspection => None,
        }
    }

    /// A cached JWT stays good only while its signing key is still published.
    async fn origin_still_valid(&self, origin: &Origin, now: i64) -> bool {
        match origin {
            Origin::Introspection => true,
            Origin::Jwt { issuer, facts } => match self.issuers.get(*issuer).map(|i| &i.keys) {
                Some(Keys::Local(local)) => local.verifier().contains(&facts.kid),
                Some(Keys::Remote(remote)) => remote
                    .keys_for(&facts.kid, now)
                    .await
                    .is_some_and(|v| v.contains(&facts.kid)),
                None => false,
            },
        }
    }

    async fn verify_jwt(
        &self,
        token: &str,
        now: i64,
    ) -> Result<(Principal, Origin, i64), Challenge> {
        let iss =
            Verifier::peek_issuer(token).ok_or_else(|| invalid(describe(&JwtError::Malformed)))?;
        let (index, issuer) = self
            .issuers
            .iter()
            .enumerate()
            .find(|(_, i)| i.issuer == iss)
            .ok_or_else(|| invalid(describe(&JwtError::WrongIssuer)))?;
        let verifier: Arc<Verifier> = match &issuer.keys {
            Keys::Local(local) => local.verifier(),
            Keys::Remote(remote) => {
                let kid = Verifier::peek_kid(token)
                    .map_err(|e| invalid(describe(&e)))?
                    .ok_or_else(|| invalid(describe(&JwtError::UnknownKid)))?;
                remote
                    .keys_for(&kid, now)
                    .await
                    .ok_or_else(|| invalid("the token issuer's keys are unavailable"))?
            }
        };
        let opts = VerifyOptions {
            issuer: &issuer.issuer,
            audience: Some(&self.resource),
            typ: issuer.typ.as_deref(),
            now,
            leeway: self.leeway,
        };
        self.counters.verifications.fetch_add(1, Ordering::Relaxed);
        let verified = verifier.verify::<AccessClaims>(token, &opts).map_err(|e| {
            tracing::debug!(issuer = %issuer.issuer, error = %e, "access token refused");
            invalid(describe(&e))
        })?;
        let mut claims = verified.claims;
        let exp = claims
            .exp
            .ok_or_else(|| invalid(describe(&JwtError::MissingClaim("exp"))))?;
        let facts = JwtFacts {
            kid: verified.kid,
            grant: claims.grant.take(),
            jti: claims.jti.take(),
            iat: claims.iat,
        };
        let principal = into_principal(claims, &issuer.issuer, exp).map_err(invalid)?;
        let origin = Origin::Jwt {
            issuer: index,
            facts: Arc::new(facts),
        };
        Ok((principal, origin, exp))
    }

    async fn introspect(
        &self,
        token: &str,
        now: i64,
    ) -> Result<(Principal, Origin, i64), Challenge> {
        let Some(intro) = &self.introspector else {
            return Err(invalid("the token is not a JWT access token"));
        };
        self.counters.introspections.fetch_add(1, Ordering::Relaxed);
        let (principal, until) = intro
            .introspect(token, &self.resource, now, self.leeway)
            .await
            .map_err(|why| {
                tracing::debug!(issuer = %intro.issuer, why, "opaque token refused");
                invalid(why)
            })?;
        Ok((principal, Origin::Introspection, until))
    }
}

/// Asks `revocations` about a validated token; on `Live`, returns the generation it was
/// asked at (read first, so a change during the question is asked about again).
fn check_revocation(
    revocations: &dyn Revocations,
    facts: &JwtFacts,
    principal: &Principal,
) -> Result<u64, Challenge> {
    let generation = revocations.generation();
    let token = RevocableToken {
        subject: &principal.subject,
        client_id: &principal.client_id,
        grant: facts.grant.as_deref(),
        jti: facts.jti.as_deref(),
        issued_at: facts.iat,
    };
    match revocations.status(&token) {
        RevocationStatus::Live => Ok(generation),
        RevocationStatus::Revoked => Err(invalid("the token has been revoked")),
        RevocationStatus::Unknown => {
            tracing::warn!("token refused: the issuer's revocation set has not loaded");
            Err(invalid("the token's revocation status is unavailable"))
        }
    }
}

#[async_trait]
impl Authenticate for Guard {
    async fn authenticate(&self, request: &Parts) -> Result<Principal, Challenge> {
        let (scheme, token) = crate::bearer::credential(&request.headers, request.uri.query())?;
        let principal = self.validate_token(token).await?;
        // RFC 9449 §7: a bound token only with its proof, a bearer token only as one.
        match (scheme, principal.dpop_jkt.as_deref()) {
            (Scheme::Bearer, None) => Ok(principal),
            (Scheme::Bearer, Some(_)) => Err(invalid(
                "the token is DPoP-bound: send it with the DPoP scheme and a proof",
            )),
            (Scheme::Dpop, None) => Err(invalid(
                "the token is not DPoP-bound: send it with the Bearer scheme",
            )),
            (Scheme::Dpop, Some(jkt)) => {
                self.dpop.check(request, token, jkt, self.clock.now())?;
                Ok(principal)
            }
        }
    }
}
