//! Runtime settings of the authorization server, already validated by the
//! config loader (the binary) or built directly by tests.

use std::sync::Arc;

use mcpgate_jose::{KeyAlg, SigningKey};
use mcpgate_types::Secret;

/// A scope this server knows, with the description shown on the consent page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeDef {
    pub name: String,
    pub description: String,
    /// Who may be granted it (`grantable_to`); `None`: see
    /// [`AuthzSettings::grantable_by_default`].
    pub grantable_to: Option<Grantees>,
}

impl ScopeDef {
    pub fn new(name: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            grantable_to: None,
        }
    }
}

/// A protected resource this server issues tokens for (RFC 8707).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceDef {
    /// Canonical URI, exactly as published; it becomes the token's `aud`.
    pub uri: String,
    /// Human name for the consent page.
    pub name: String,
    /// Rules for tokens of this resource, by scope; they take the place of
    /// the scope's own rule.
    pub grantable_to: Vec<(String, Grantees)>,
}

impl ResourceDef {
    pub fn new(uri: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            name: name.into(),
            grantable_to: Vec::new(),
        }
    }
}

/// Who may be granted a scope: users (by id or username), members of
/// groups, and clients acting for themselves (`client_credentials`).
/// Consent is not entitlement: a user who is none of these never gets the
/// scope, whatever they approve.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grantees {
    pub users: Vec<String>,
    pub groups: Vec<String>,
    pub clients: Vec<String>,
}

/// Who a token is for.
#[derive(Debug, Clone, Copy)]
pub enum Holder<'a> {
    User(&'a mcpgate_store::UserRecord),
    /// A client acting for itself.
    Client(&'a str),
}

impl Grantees {
    fn admit(&self, h: Holder<'_>) -> bool {
        match h {
            Holder::User(u) => {
                self.users.iter().any(|x| *x == u.id || *x == u.username)
                    || u.groups.iter().any(|g| self.groups.contains(g))
            }
            Holder::Client(c) => self.clients.iter().any(|x| x == c),
        }
    }
}

#[derive(Debug, Clone)]
pub struct DcrSettings {
    pub enabled: bool,
    /// When set, registration requires `Authorization: Bearer <this>` (RFC 7591 §3).
    pub initial_access_token: Option<Secret>,
    /// Registrations allowed per client IP per hour.
    pub per_ip_per_hour: u32,
    /// Registrations allowed server-wide per hour (stored count).
    pub max_per_hour: u64,
}

#[derive(Debug, Clone)]
pub struct CimdSettings {
    pub enabled: bool,
    /// Development override: allow `http://` CIMD URLs on loopback hosts and
    /// loopback addresses. Off by default; never for production.
    pub allow_http_loopback: bool,
    /// Upper bound on how long a fetched document is trusted (seconds).
    pub max_cache_secs: i64,
    /// Lower bound, so a `no-cache` document is not fetched on every request.
    pub min_cache_secs: i64,
    /// When not empty, only documents on these hosts are used: `host` exactly
    /// or `*.domain` for any host under it.
    pub allowed_hosts: Vec<String>,
    /// Documents on these hosts are never used (same forms); wins over `allowed_hosts`.
    pub denied_hosts: Vec<String>,
    /// Outbound document fetches per host per minute.
    pub fetches_per_host_per_minute: u32,
    /// Outbound document fetches per minute in all.
    pub fetches_per_minute: u32,
}

impl CimdSettings {
    /// Whether documents on `host` may be used (the domain trust policy).
    pub fn host_trusted(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let matches = |pattern: &String| match pattern.strip_prefix("*.") {
            Some(domain) => host
                .strip_suffix(domain)
                .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1),
            None => host == *pattern,
        };
        !self.denied_hosts.iter().any(matches)
            && (self.allowed_hosts.is_empty() || self.allowed_hosts.iter().any(matches))
    }
}

#[derive(Debug, Clone)]
pub struct LoginLimits {
    /// Failed attempts per account per window.
    pub per_account: u32,
    /// Attempts per client IP per window.
    pub per_ip: u32,
    /// The window, in seconds.
    pub window_secs: u64,
    /// Password hashes (argon2id, 19 MiB each) running at once; more wait
    /// their turn, and after [`crate::password::GATE_WAIT`] get a 503.
    pub max_concurrent_hashes: usize,
}

/// One password hash per core by default.
pub fn default_concurrent_hashes() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
}

/// The largest `exp` leeway of a guard (`mcpgate_guard::config::MAX_LEEWAY_SECS`).
pub const REVOCATION_LEEWAY_SECS: i64 = 300;

#[derive(Debug, Clone)]
pub struct AuthzSettings {
    /// The issuer identifier: exactly `public_url`, byte for byte.
    pub issuer: String,
    pub scopes: Vec<ScopeDef>,
    pub resources: Vec<ResourceDef>,
    /// Access token lifetime (RFC 9068 JWT), seconds.
    pub access_token_ttl: i64,
    /// Lifetime of a refresh-token family from its authorization, seconds.
    pub refresh_token_ttl: i64,
    /// A refresh token presented again at most this many seconds after its
    /// rotation gets a sibling instead of revoking its family (concurrent
    /// refreshes, retries); `0` treats every second use as reuse.
    pub refresh_reuse_grace_secs: i64,
    /// Authorization code lifetime, seconds (at most 60).
    pub code_ttl: i64,
    /// AS browser login session lifetime, seconds.
    pub login_session_ttl: i64,
    pub signing_alg: KeyAlg,
    /// How long a rotated-out key stays published in the JWKS, seconds.
    pub key_grace_secs: i64,
    pub dcr: DcrSettings,
    pub cimd: CimdSettings,
    pub login: LoginLimits,
    /// Confidential clients allowed to call the introspection endpoint.
    pub introspection_clients: Vec<String>,
    /// Proxies whose `X-Forwarded-For` is believed (see `mcpgate_net::forwarded::client_ip`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Whether local password accounts may log in.
    pub local_login: bool,
    /// Upstream identity providers offered on the login page.
    pub identity_providers: Vec<IdentityProvider>,
    /// Whether a scope without a `grantable_to` rule may be granted to
    /// anyone (the default) or to no one.
    pub grantable_by_default: bool,
    /// Workload identity issuers whose JWTs the JWT-bearer grant takes.
    pub workload_issuers: Vec<WorkloadIssuer>,
    /// DPoP (RFC 9449 §8): token requests with a proof must carry a nonce
    /// this server issued (one more round trip; proofs made in advance stop
    /// working). Off by default: proofs are otherwise single-use already.
    pub dpop_require_nonce: bool,
}

impl AuthzSettings {
    /// Sensible defaults for an issuer; used by tests and as the base the
    /// config loader fills in.
    pub fn with_issuer(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            scopes: Vec::new(),
            resources: Vec::new(),
            access_token_ttl: 600,
            refresh_token_ttl: 30 * 24 * 3600,
            refresh_reuse_grace_secs: 5,
            dpop_require_nonce: false,
            workload_issuers: Vec::new(),
            code_ttl: 60,
            login_session_ttl: 12 * 3600,
            signing_alg: KeyAlg::Es256,
            key_grace_secs: 24 * 3600,
            dcr: DcrSettings {
                enabled: true,
                initial_access_token: None,
                per_ip_per_hour: 20,
                max_per_hour: 1000,
            },
            cimd: CimdSettings {
                enabled: true,
                allow_http_loopback: false,
                max_cache_secs: 24 * 3600,
                min_cache_secs: 60,
                allowed_hosts: Vec::new(),
                denied_hosts: Vec::new(),
                fetches_per_host_per_minute: 10,
                fetches_per_minute: 120,
            },
            login: LoginLimits {
                per_account: 5,
                per_ip: 20,
                window_secs: 60,
                max_concurrent_hashes: default_concurrent_hashes(),
            },
            introspection_clients: Vec::new(),
            trusted_proxies: Vec::new(),
            local_login: true,
            identity_providers: Vec::new(),
            grantable_by_default: true,
        }
    }

    /// How long a revocation entry must be kept: until every access token
    /// it can cover has expired at every guard, that is the access-token
    /// lifetime plus the largest clock leeway a guard accepts (300 s,
    /// `mcpgate_guard::config::MAX_LEEWAY_SECS`).
    pub fn revocation_ttl(&self) -> i64 {
        self.access_token_ttl + REVOCATION_LEEWAY_SECS
    }

    pub fn identity_provider(&self, name: &str) -> Option<&IdentityProvider> {
        self.identity_providers.iter().find(|p| p.name == name)
    }

    pub fn scope(&self, name: &str) -> Option<&ScopeDef> {
        self.scopes.iter().find(|s| s.name == name)
    }

    /// May `holder` be granted `scope` in tokens for `resource`? The
    /// resource's rule for the scope decides, else the scope's own, else
    /// [`Self::grantable_by_default`].
    pub fn grantable(&self, holder: Holder<'_>, scope: &str, resource: &str) -> bool {
        let by_resource = self
            .resources
            .iter()
            .find(|r| r.uri == resource)
            .and_then(|r| r.grantable_to.iter().find(|(s, _)| s == scope))
            .map(|(_, g)| g);
        let rule = by_resource.or_else(|| self.scope(scope).and_then(|d| d.grantable_to.as_ref()));
        match rule {
            Some(g) => g.admit(holder),
            None => self.grantable_by_default,
        }
    }

    /// The part of `scopes` that `holder` may be granted for `resource`
    /// (RFC 6749 §3.3: the server may issue fewer scopes than requested).
    pub fn entitled(
        &self,
        holder: Holder<'_>,
        scopes: &mcpgate_types::ScopeSet,
        resource: &str,
    ) -> mcpgate_types::ScopeSet {
        mcpgate_types::ScopeSet::from_iter(
            scopes
                .iter()
                .filter(|s| self.grantable(holder, s, resource))
                .map(str::to_string),
        )
    }

    pub fn resource_uris(&self) -> Vec<String> {
        self.resources.iter().map(|r| r.uri.clone()).collect()
    }

    /// `{issuer}{path}` without a doubled slash.
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.issuer.trim_end_matches('/'), path)
    }
}

/// Client authentication at the upstream token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenAuth {
    ClientSecretBasic,
    ClientSecretPost,
    /// RFC 7523 §2.2 / OIDC Core §9: a JWT client assertion signed with
    /// [`IdentityProvider::private_key`]; no client secret is sent.
    PrivateKeyJwt,
}

/// How an upstream provider publishes its endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderKind {
    /// OpenID Connect: endpoints and `jwks_uri` from discovery at
    /// `{issuer}/.well-known/openid-configuration`, the document's `issuer`
    /// checked to be exactly the configured one; identity from the ID token.
    Oidc,
    /// Plain OAuth 2.0 (GitHub style): identity from a userinfo URL called
    /// with the access token.
    OAuth2 {
        authorization_endpoint: String,
        token_endpoint: String,
        userinfo_endpoint: String,
    },
}

/// An upstream identity provider users can sign in with.
#[derive(Debug, Clone)]
pub struct IdentityProvider {
    /// Short name: `[a-z0-9-]`, used in URLs and as the linked identity's provider.
    pub name: String,
    /// Shown on the login page ("Sign in with …").
    pub display_name: String,
    /// The issuer identifier, exactly as the provider publishes it.
    pub issuer: String,
    pub kind: ProviderKind,
    pub client_id: String,
    /// Empty when `token_endpoint_auth` is [`TokenAuth::PrivateKeyJwt`].
    pub client_secret: Secret,
    /// How the client authenticates to the token endpoint.
    pub token_endpoint_auth: TokenAuth,
    /// The key signing client assertions (`private_key_jwt` only); its
    /// `kid` is the configured `private_key_id`, else the key's RFC 7638
    /// JWK thumbprint.
    pub private_key: Option<Arc<SigningKey>>,
    /// Requested scopes; `openid email profile` by default.
    pub scopes: Vec<String>,
    /// Claim holding the stable upstream subject (default `sub`).
    pub subject_claim: String,
    /// Claim holding the display name (default `name`).
    pub name_claim: String,
    /// Claim holding the email address (default `email`).
    pub email_claim: String,
    /// Claim holding the group list (default `groups`).
    pub groups_claim: String,
    /// When non-empty, only users whose (verified) email is in one of these
    /// domains may sign in.
    pub allowed_email_domains: Vec<String>,
    /// When non-empty, only users in one of these groups may sign in.
    pub allowed_groups: Vec<String>,
    /// Admit every account of the provider. Without it, a provider with no
    /// allowlist admits nobody (and its configuration is refused): a
    /// provider such as Google or GitHub has every account on the internet.
    pub allow_any_account: bool,
    /// Enterprise-managed authorization (SEP-990): take Identity Assertion
    /// JWT Authorization Grants (ID-JAGs) this provider signs, in the
    /// JWT-bearer grant, for the users linked to its accounts. OIDC only.
    pub id_jag: bool,
}

/// A workload identity issuer (SEP-1933): its JWTs, presented in the
/// JWT-bearer grant (RFC 7523 §2.1), stand for registered clients.
#[derive(Debug, Clone)]
pub struct WorkloadIssuer {
    /// The issuer identifier, exactly as its tokens carry it.
    pub issuer: String,
    /// Where its public keys are (fetched through the SSRF guard, cached).
    pub jwks_uri: String,
    /// Which client each workload (`sub`) is: only these subjects are taken.
    pub subjects: std::collections::BTreeMap<String, String>,
}

impl IdentityProvider {
    /// An OIDC provider with the default scopes and claim mapping.
    pub fn oidc(
        name: impl Into<String>,
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: Secret,
    ) -> Self {
        let name = name.into();
        Self {
            display_name: name.clone(),
            name,
            issuer: issuer.into(),
            kind: ProviderKind::Oidc,
            client_id: client_id.into(),
            client_secret,
            token_endpoint_auth: TokenAuth::ClientSecretBasic,
            private_key: None,
            scopes: vec!["openid".into(), "email".into(), "profile".into()],
            subject_claim: "sub".into(),
            name_claim: "name".into(),
            email_claim: "email".into(),
            groups_claim: "groups".into(),
            allowed_email_domains: Vec::new(),
            allowed_groups: Vec::new(),
            allow_any_account: false,
            id_jag: false,
        }
    }

    /// Whether `name` is usable as a provider name (it appears in paths).
    pub fn valid_name(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cimd_domain_policy() {
        let mut c = AuthzSettings::with_issuer("https://as.example").cimd;
        assert!(c.host_trusted("anything.example"));
        c.allowed_hosts = vec!["*.apps.example".into(), "one.example".into()];
        assert!(c.host_trusted("a.apps.example"));
        assert!(c.host_trusted("A.Apps.Example."));
        assert!(
            !c.host_trusted("apps.example"),
            "*.domain is below the domain"
        );
        assert!(
            !c.host_trusted("evilapps.example"),
            "a label boundary, not a suffix"
        );
        assert!(c.host_trusted("one.example"));
        assert!(!c.host_trusted("x.one.example"));
        c.denied_hosts = vec!["bad.apps.example".into()];
        assert!(!c.host_trusted("bad.apps.example"), "deny wins");
        assert!(c.host_trusted("good.apps.example"));
    }
}
