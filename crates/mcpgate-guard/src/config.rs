//! Guard configuration (protected resource role; MCP authorization §2(b)): the one resource a
//! [`crate::Guard`] protects, the issuers it trusts (RFC 9068 JWT access tokens verified with
//! local or remote JWKS, RFC 7662 introspection for opaque tokens) and the cache and leeway
//! bounds. Every string OAuth compares (resource, issuer) is kept exactly as configured.

use std::sync::Arc;

use mcpgate_jose::{Clock, SystemClock, Verifier};
use mcpgate_net::SafeFetcher;
use mcpgate_types::{ScopeSet, Secret};

use crate::revocation::Revocations;

/// Default clock-skew allowance for `exp` and `nbf`, seconds.
pub const DEFAULT_LEEWAY_SECS: i64 = 60;
/// Largest accepted leeway, seconds: more would keep expired tokens alive.
pub const MAX_LEEWAY_SECS: i64 = 300;
/// Default validated-token cache size (entries).
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;
/// Default minimum interval between two fetches of one issuer's JWKS, seconds.
pub const DEFAULT_JWKS_REFETCH_SECS: i64 = 30;
/// Default age after which a fetched JWKS is refreshed, seconds.
pub const DEFAULT_JWKS_MAX_AGE_SECS: i64 = 300;
/// Largest accepted introspection cache lifetime, seconds ("a short cache").
pub const MAX_INTROSPECTION_CACHE_SECS: u64 = 300;

/// Everything a [`crate::Guard`] needs for one protected resource.
#[derive(Clone)]
pub struct GuardConfig {
    /// The canonical resource URI: the only accepted `aud`, compared exactly.
    pub resource: String,
    /// The URL of this resource's RFC 9728 metadata, sent in every challenge.
    pub resource_metadata_url: String,
    /// Scopes every caller needs for basic use; the `scope` of 401 challenges.
    pub baseline_scopes: ScopeSet,
    /// The issuers whose tokens are accepted, each matched by its exact `iss`.
    pub issuers: Vec<TrustedIssuer>,
    /// Clock-skew allowance for `exp`/`nbf`, 0..=[`MAX_LEEWAY_SECS`].
    pub leeway_secs: i64,
    /// Source of the current time (tests use `FixedClock`).
    pub clock: Arc<dyn Clock>,
    /// Maximum validated tokens kept; 0 disables the cache.
    pub cache_capacity: usize,
    /// Minimum seconds between two JWKS fetches for one remote issuer (an unknown `kid` or a
    /// failed fetch retries no sooner). Added to the brief's shape.
    pub jwks_refetch_interval_secs: i64,
    /// Seconds after which a remote JWKS is refreshed (a `Cache-Control: max-age` from the
    /// issuer can shorten it, never below the refetch interval). Added to the brief's shape.
    pub jwks_max_age_secs: i64,
    /// Requests with DPoP-bound tokens must carry a nonce made with this key (RFC 9449 §9),
    /// which the guard hands out in `use_dpop_nonce` challenges. `None`: no nonces.
    pub dpop_nonce_key: Option<Arc<[u8; 32]>>,
}

impl std::fmt::Debug for GuardConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardConfig")
            .field("resource", &self.resource)
            .field("resource_metadata_url", &self.resource_metadata_url)
            .field("baseline_scopes", &self.baseline_scopes)
            .field("issuers", &self.issuers)
            .field("leeway_secs", &self.leeway_secs)
            .field("cache_capacity", &self.cache_capacity)
            .finish_non_exhaustive()
    }
}

impl GuardConfig {
    /// A configuration with the defaults: no issuers yet, 60 s leeway, the system clock, a
    /// 10 000-entry cache, JWKS refetched at most every 30 s and refreshed every 5 min.
    pub fn new(resource: impl Into<String>, resource_metadata_url: impl Into<String>) -> Self {
        Self {
            resource: resource.into(),
            resource_metadata_url: resource_metadata_url.into(),
            baseline_scopes: ScopeSet::new(),
            issuers: Vec::new(),
            leeway_secs: DEFAULT_LEEWAY_SECS,
            clock: Arc::new(SystemClock),
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            jwks_refetch_interval_secs: DEFAULT_JWKS_REFETCH_SECS,
            jwks_max_age_secs: DEFAULT_JWKS_MAX_AGE_SECS,
            dpop_nonce_key: None,
        }
    }

    /// Requires DPoP nonces made with `secret` (shared by every replica of the resource).
    pub fn with_dpop_nonces(mut self, secret: [u8; 32]) -> Self {
        self.dpop_nonce_key = Some(Arc::new(secret));
        self
    }

    /// Sets the baseline scopes.
    pub fn with_baseline(mut self, scopes: ScopeSet) -> Self {
        self.baseline_scopes = scopes;
        self
    }

    /// Adds a trusted issuer.
    pub fn with_issuer(mut self, issuer: TrustedIssuer) -> Self {
        self.issuers.push(issuer);
        self
    }

    /// Sets the clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
}

/// Where a guard gets the verification keys of the mcpgate authorization server it runs
/// beside. The gateway adapts its key ring to this; the guard calls it on every verification
/// and on every cache hit (to refuse tokens whose key has been retired), so it must be cheap.
pub trait LocalKeys: Send + Sync + 'static {
    /// The current verification keys.
    fn verifier(&self) -> Arc<Verifier>;
}

/// A fixed key set (tests, or a server that loads a JWKS file at start).
impl LocalKeys for Arc<Verifier> {
    fn verifier(&self) -> Arc<Verifier> {
        self.clone()
    }
}

/// How an issuer's signing keys are found.
#[derive(Clone)]
pub enum KeySource {
    /// Keys held in this process.
    Local(Arc<dyn LocalKeys>),
    /// Keys fetched from the issuer's `jwks_uri` through the SSRF-safe fetcher. With `jwks_uri`
    /// `None`, it is discovered from RFC 8414 metadata (path-inserted well-known URL), then
    /// OpenID Connect discovery; the document's `issuer` must equal the configured one exactly.
    Remote {
        jwks_uri: Option<String>,
        fetcher: SafeFetcher,
    },
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(_) => f.write_str("Local"),
            Self::Remote { jwks_uri, .. } => f
                .debug_struct("Remote")
                .field("jwks_uri", jwks_uri)
                .finish_non_exhaustive(),
        }
    }
}

/// RFC 7662 introspection for opaque (non-JWT) tokens from one issuer, authenticated with
/// `client_secret_basic`.
#[derive(Clone)]
pub struct Introspection {
    /// The issuer's introspection endpoint.
    pub endpoint: String,
    /// This resource server's client id at the issuer.
    pub client_id: String,
    /// Its client secret.
    pub client_secret: Secret,
    /// How long an active answer is reused, at most [`MAX_INTROSPECTION_CACHE_SECS`] (and
    /// never past the token's `exp`).
    pub cache_secs: u64,
    /// The fetcher used to reach the endpoint.
    pub fetcher: SafeFetcher,
}

impl std::fmt::Debug for Introspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Introspection")
            .field("endpoint", &self.endpoint)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("cache_secs", &self.cache_secs)
            .finish_non_exhaustive()
    }
}

/// An authorization server whose tokens this resource accepts.
#[derive(Debug, Clone)]
pub struct TrustedIssuer {
    /// The exact `iss` value.
    pub issuer: String,
    /// Where its keys come from.
    pub keys: KeySource,
    /// The required JWT `typ` header (RFC 9068 §2.1: `at+jwt`); `None` for external issuers
    /// that omit it.
    pub typ: Option<String>,
    /// Introspection for its opaque tokens. At most one issuer of a guard may have it (an
    /// opaque token names no issuer, and it must never be sent to several).
    pub introspection: Option<Introspection>,
    /// The issuer's revocations, asked about each of its JWTs on every request.
    pub revocations: Option<Arc<dyn Revocations>>,
}

impl TrustedIssuer {
    /// An issuer whose keys this process holds; `typ` `at+jwt` required.
    pub fn local(issuer: impl Into<String>, keys: Arc<dyn LocalKeys>) -> Self {
        Self {
            issuer: issuer.into(),
            keys: KeySource::Local(keys),
            typ: Some("at+jwt".into()),
            introspection: None,
            revocations: None,
        }
    }

    /// An issuer whose keys are fetched; `typ` `at+jwt` required.
    pub fn remote(
        issuer: impl Into<String>,
        jwks_uri: Option<String>,
        fetcher: SafeFetcher,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            keys: KeySource::Remote { jwks_uri, fetcher },
            typ: Some("at+jwt".into()),
            introspection: None,
            revocations: None,
        }
    }

    /// Refuses the issuer's JWTs that `revocations` reports revoked, or unknown (see
    /// [`crate::revocation`]).
    pub fn with_revocations(mut self, revocations: Arc<dyn Revocations>) -> Self {
        self.revocations = Some(revocations);
        self
    }

    /// Sets the required `typ` (`None`: not checked).
    pub fn with_typ(mut self, typ: Option<String>) -> Self {
        self.typ = typ;
        self
    }

    /// Enables introspection of opaque tokens.
    pub fn with_introspection(mut self, introspection: Introspection) -> Self {
        self.introspection = Some(introspection);
        self
    }
}

/// A configuration the guard refuses to run with; each names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardConfigError {
    #[error("resource: {0}")]
    Resource(String),
    #[error("resource_metadata_url must be an absolute http(s) URL")]
    ResourceMetadataUrl,
    #[error("issuers: at least one trusted issuer is required")]
    NoIssuers,
    #[error("issuers: {0:?} is listed twice")]
    DuplicateIssuer(String),
    #[error("issuers: an issuer must be a non-empty URL")]
    EmptyIssuer,
    #[error("leeway_secs must be between 0 and {MAX_LEEWAY_SECS}")]
    Leeway,
    #[error("jwks_refetch_interval_secs must be at least 1 and at most jwks_max_age_secs")]
    JwksIntervals,
    #[error("issuers: only one issuer may use introspection (opaque tokens name no issuer)")]
    MultipleIntrospection,
    #[error("issuers[{0}].introspection: {1}")]
    Introspection(String, &'static str),
}

impl GuardConfig {
    /// Checks the configuration; [`crate::Guard::new`] calls this.
    pub fn validate(&self) -> Result<(), GuardConfigError> {
        mcpgate_types::resource::validate(&self.resource)
            .map_err(|e| GuardConfigError::Resource(e.to_string()))?;
        if mcpgate_types::resource::validate(&self.resource_metadata_url).is_err() {
            return Err(GuardConfigError::ResourceMetadataUrl);
        }
        if self.issuers.is_empty() {
            return Err(GuardConfigError::NoIssuers);
        }
        if !(0..=MAX_LEEWAY_SECS).contains(&self.leeway_secs) {
            return Err(GuardConfigError::Leeway);
        }
        if self.jwks_refetch_interval_secs < 1
            || self.jwks_max_age_secs < self.jwks_refetch_interval_secs
        {
            return Err(GuardConfigError::JwksIntervals);
        }
        let mut introspecting = 0;
        for (i, issuer) in self.issuers.iter().enumerate() {
            if issuer.issuer.is_empty() {
                return Err(GuardConfigError::EmptyIssuer);
            }
            if self.issuers[..i].iter().any(|o| o.issuer == issuer.issuer) {
                return Err(GuardConfigError::DuplicateIssuer(issuer.issuer.clone()));
            }
            if let Some(intro) = &issuer.introspection {
                introspecting += 1;
                let name = || issuer.issuer.clone();
                if mcpgate_types::resource::validate(&intro.endpoint).is_err() {
                    return Err(GuardConfigError::Introspection(
                        name(),
                        "endpoint must be an absolute URL",
                    ));
                }
                if intro.client_id.is_empty() || intro.client_secret.is_empty() {
                    return Err(GuardConfigError::Introspection(
                        name(),
                        "client_id and client_secret are required",
                    ));
                }
                if intro.cache_secs > MAX_INTROSPECTION_CACHE_SECS {
                    return Err(GuardConfigError::Introspection(
                        name(),
                        "cache_secs must be at most 300",
                    ));
                }
            }
        }
        if introspecting > 1 {
            return Err(GuardConfigError::MultipleIntrospection);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpgate_net::FetchPolicy;

    fn base() -> GuardConfig {
        GuardConfig::new(
            "https://gw.example/mcp/a",
            "https://gw.example/.well-known/oauth-protected-resource/mcp/a",
        )
        .with_issuer(TrustedIssuer::local(
            "https://as.example",
            Arc::new(Arc::new(Verifier::new())),
        ))
    }

    fn intro() -> Introspection {
        Introspection {
            endpoint: "https://as.example/introspect".into(),
            client_id: "rs".into(),
            client_secret: Secret::new("s"),
            cache_secs: 30,
            fetcher: SafeFetcher::new(FetchPolicy::default()),
        }
    }

    #[test]
    fn validation_names_the_field() {
        assert_eq!(base().validate(), Ok(()));
        let mut c = base();
        c.leeway_secs = 301;
        assert_eq!(c.validate(), Err(GuardConfigError::Leeway));
        c.leeway_secs = -1;
        assert_eq!(c.validate(), Err(GuardConfigError::Leeway));
        let mut c = base();
        c.resource = "https://gw.example/mcp#a".into();
        assert!(matches!(c.validate(), Err(GuardConfigError::Resource(_))));
        let mut c = base();
        c.issuers.clear();
        assert_eq!(c.validate(), Err(GuardConfigError::NoIssuers));
        let c = base().with_issuer(base().issuers[0].clone());
        assert!(matches!(
            c.validate(),
            Err(GuardConfigError::DuplicateIssuer(_))
        ));
        let mut c = base();
        c.jwks_refetch_interval_secs = 0;
        assert_eq!(c.validate(), Err(GuardConfigError::JwksIntervals));
        let mut c = base();
        c.issuers[0].introspection = Some(Introspection {
            cache_secs: 301,
            ..intro()
        });
        assert!(matches!(
            c.validate(),
            Err(GuardConfigError::Introspection(_, _))
        ));
        let mut c = base();
        c.issuers[0].introspection = Some(intro());
        let mut other = c.issuers[0].clone();
        other.issuer = "https://other.example".into();
        let c = c.with_issuer(other);
        assert_eq!(c.validate(), Err(GuardConfigError::MultipleIntrospection));
    }

    #[test]
    fn debug_hides_the_secret() {
        let s = format!("{:?}", intro());
        assert!(!s.contains("\"s\""));
        assert!(s.contains("redacted"));
    }
}
