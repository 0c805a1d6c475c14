//! Gateway configuration (issue 3 "Upstreams and routing", MCP authorization
//! checklist §2(b) policy, §2(e) sessions, §2(f) stdio): the `[gateway]`
//! table and the `[[upstream]]` entries as they appear in the TOML file
//! (`deny_unknown_fields`), and their validation into the runtime
//! [`GatewaySettings`]. Secrets (`${env:NAME}`, `${file:PATH}`) are resolved
//! by the caller's resolver, so the binary keeps one secret syntax.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use mcpgate_types::{ScopeSet, Secret};
use serde::Deserialize;

/// A configuration error naming the field (`upstream[0].stdio.command`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.into(),
    }
}

/// Resolves a secret reference: `(field, raw, plain_ok)`. `plain_ok = false`
/// refuses literal values (they must be `${env:}`/`${file:}` references).
pub type SecretResolver<'a> = &'a dyn Fn(&str, &str, bool) -> Result<Secret, ConfigError>;

// ---- the file shapes ---------------------------------------------------

/// The gateway's tables of a configuration file, `[gateway]` and
/// `[[upstream]]`, read on their own (tests, fuzzers, benches); `mcpgate`
/// reads them as part of its whole file.
#[derive(Debug, Deserialize, Default)]
pub struct GatewayTables {
    #[serde(default)]
    pub gateway: GatewayFile,
    #[serde(default)]
    pub upstream: Vec<UpstreamFile>,
}

impl GatewayTables {
    /// Reads TOML text; a syntax or shape error names `(syntax)`.
    pub fn parse(toml_text: &str) -> Result<Self, ConfigError> {
        toml::from_str(toml_text).map_err(|e| err("(syntax)", e.to_string()))
    }

    /// [`validate`]s both tables.
    pub fn validate(
        &self,
        public_url: &str,
        loopback_listener: bool,
        secret: SecretResolver<'_>,
    ) -> Result<GatewaySettings, ConfigError> {
        validate(
            public_url,
            loopback_listener,
            &self.gateway,
            &self.upstream,
            secret,
        )
    }
}

/// A [`SecretResolver`] that keeps what is written, unresolved: a
/// `${...}` reference as it is, a literal only where literals are allowed.
/// For reading a configuration without its secrets (tests, fuzzing).
pub fn secret_as_written(field: &str, raw: &str, plain_ok: bool) -> Result<Secret, ConfigError> {
    if raw.starts_with("${") || plain_ok {
        Ok(Secret::new(raw))
    } else {
        Err(err(
            field,
            "a literal secret where a ${env:} or ${file:} reference is required",
        ))
    }
}

/// `[gateway]`: settings shared by every upstream.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct GatewayFile {
    /// Seconds a session may stay unused before it ends (default 1800).
    pub session_idle_secs: Option<u64>,
    /// Live sessions one user (issuer, subject) may hold per upstream (default 16).
    pub max_sessions_per_user: Option<usize>,
    /// Largest JSON-RPC message accepted from a client or a stdio child (default 4 MiB).
    pub max_message_bytes: Option<usize>,
    /// Idle timeout of per-user stdio children of stateless (2026-07-28) clients (default 300).
    pub stateless_child_idle_secs: Option<u64>,
    /// Origins allowed for every upstream (besides the public URL's own origin).
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Development only: lets `client_credentials` token URLs use plain
    /// http on loopback addresses.
    pub dev_allow_http_loopback_token_url: Option<bool>,
    #[serde(default)]
    pub audit: AuditFile,
    /// `[[gateway.trusted_issuer]]`: external authorization servers whose
    /// access tokens the gateway accepts besides those of mcpgate's own AS.
    #[serde(default, rename = "trusted_issuer")]
    pub trusted_issuers: Vec<TrustedIssuerFile>,
    /// List mcpgate's own AS in the PRM's `authorization_servers` (default
    /// true). `false` advertises only the trusted issuers, so clients that
    /// take the first entry sign in there; own tokens are still accepted.
    pub advertise_own_issuer: Option<bool>,
    /// Requests with DPoP-bound tokens must carry a nonce the gateway issued
    /// (RFC 9449 §9; default false).
    pub dpop_require_nonce: Option<bool>,
    /// How clients authenticate: `"bearer"` (default, OAuth access tokens)
    /// or `"none"` (development and conformance testing only: loopback,
    /// plain http, every request is the anonymous principal).
    pub authentication: Option<Authentication>,
    /// `[gateway.limits]`: what the gateway holds at once, and how many
    /// refused tokens one client address may present.
    #[serde(default)]
    pub limits: LimitsFile,
}

/// `[gateway.limits]`. Every field has a default; each must be at least 1.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    /// Sessions on all upstreams together (default 10000).
    pub max_sessions: Option<usize>,
    /// stdio child processes together: per session, per user and shared (default 256).
    pub max_children: Option<usize>,
    /// Open GET streams (standalone and resumed) together (default 1000).
    pub max_streams: Option<usize>,
    /// Open GET streams of one user (issuer, subject) (default 8).
    pub max_streams_per_user: Option<usize>,
    /// Tokens the gateway may refuse from one client address per minute
    /// before it stops checking that address's tokens for a while (default 120).
    pub refused_tokens_per_ip_per_minute: Option<u32>,
}

/// `[gateway] authentication`.
#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Authentication {
    /// Every request needs an access token for its upstream (the default).
    #[default]
    Bearer,
    /// No authentication: allowed only when the listener and `public_url`
    /// are loopback over plain http. Every request runs as the fixed
    /// anonymous principal ([`ANONYMOUS_SUBJECT`]); no PRM is published and
    /// no 401 challenge is sent; policy rules that need a token are refused.
    None,
}

/// `iss` of the anonymous principal of `authentication = "none"`.
pub const ANONYMOUS_ISSUER: &str = "urn:mcpgate:no-auth";
/// `sub` (and `client_id`) of the anonymous principal of `authentication = "none"`.
pub const ANONYMOUS_SUBJECT: &str = "anonymous";

/// `[[gateway.trusted_issuer]]`: an external issuer (e.g. a company IdP).
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct TrustedIssuerFile {
    /// The issuer identifier, exactly as in its tokens' `iss`.
    pub issuer: String,
    /// Its JWKS URL; when absent, discovered from its RFC 8414 / OIDC metadata.
    pub jwks_uri: Option<String>,
    /// Require `typ: at+jwt` (RFC 9068). Default true; some issuers omit it.
    pub require_typ: Option<bool>,
    /// RFC 7662 endpoint for opaque tokens (with the two fields below).
    pub introspection_endpoint: Option<String>,
    pub introspection_client_id: Option<String>,
    /// Secret reference (`${env:..}` / `${file:..}`).
    pub introspection_client_secret: Option<String>,
    /// Development only: reach this issuer over plain http on loopback.
    pub dev_allow_http_loopback: Option<bool>,
}

/// `[gateway.audit]`.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct AuditFile {
    /// JSON lines on stdout (default true).
    pub stdout: Option<bool>,
    /// JSON lines appended to this file.
    pub file: Option<PathBuf>,
    /// Rows in the store's `audit_log` table (default true).
    pub store: Option<bool>,
    /// Days store rows are kept; older ones are purged by the gateway's
    /// housekeeping (default 90; 0 keeps them forever).
    pub retain_days: Option<u32>,
}

/// One `[[upstream]]`.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct UpstreamFile {
    pub name: String,
    /// Human name (consent page); defaults to the name.
    pub title: Option<String>,
    pub stdio: Option<StdioFile>,
    pub http: Option<HttpFile>,
    pub auth: Option<AuthFile>,
    /// Baseline scopes: every request needs them; published in the PRM.
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub tools: BTreeMap<String, ToolFile>,
    /// Policy for tools not listed under `tools` (default: allowed, baseline scopes).
    pub default_tool: Option<ToolFile>,
    /// `[upstream.prompts.NAME]`: per-prompt policy (`prompts/get`, `prompts/list`).
    #[serde(default)]
    pub prompts: BTreeMap<String, ToolFile>,
    /// Policy for prompts not listed under `prompts` (default: allowed, baseline scopes).
    pub default_prompt: Option<ToolFile>,
    /// `[upstream.resources."URI"]`: per-resource policy keyed by the exact
    /// URI (`resources/read`, `resources/list`; a template's `uriTemplate`
    /// string for `resources/templates/list`).
    #[serde(default)]
    pub resources: BTreeMap<String, ToolFile>,
    /// Policy for resources not listed under `resources` (default: allowed, baseline scopes).
    pub default_resource: Option<ToolFile>,
    /// Scope hierarchy: a granted scope implies these narrower ones, e.g.
    /// `{ "notes:admin" = ["notes:write"], "notes:write" = ["notes:read"] }`
    /// (transitive). MCP 2026-07-28 requires servers to honour hierarchies.
    #[serde(default)]
    pub scope_implies: BTreeMap<String, Vec<String>>,
    /// `"all"` (default) or `"granted"`.
    pub list: Option<String>,
    /// One stdio child for every session (stateless servers only).
    pub shared: Option<bool>,
    pub rate_limit: Option<RateLimitFile>,
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Seconds to wait for the upstream's response head (default 60).
    pub timeout_secs: Option<u64>,
    /// `[upstream.sandbox]` (stdio only): widens or switches off the sandbox
    /// every stdio child runs in (see docs/sandbox.md).
    pub sandbox: Option<mcpgate_sandbox::SandboxFile>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct StdioFile {
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    pub cwd: Option<PathBuf>,
    /// Values may be literals or `${env:NAME}` / `${file:PATH}`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct HttpFile {
    pub url: String,
    /// Extra request headers; values may be `${env:}`/`${file:}` references.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Allow a plain `http://` URL to a host that is not loopback (never with
    /// credentials or headers). Off by default.
    #[serde(default)]
    pub allow_insecure_http: bool,
}

/// `auth = { type = "…", … }`: how the gateway authenticates to the upstream.
#[derive(Debug, Deserialize, Clone)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthFile {
    None,
    Header {
        name: String,
        value: String,
    },
    ClientCredentials {
        token_url: String,
        client_id: String,
        client_secret: String,
        scope: Option<String>,
        resource: Option<String>,
    },
    /// RFC 8693: the caller's validated token is exchanged for one meant for
    /// the upstream (the caller's token itself never reaches the upstream).
    TokenExchange {
        token_url: String,
        client_id: String,
        client_secret: String,
        audience: Option<String>,
        scope: Option<String>,
        resource: Option<String>,
    },
    /// Each user's own account at the upstream: the gateway is an OAuth
    /// client of the upstream's authorization server and keeps each user's
    /// tokens in the vault (`mcpgate-vault`); a user without a connected
    /// account is sent to the connect page by a URL-mode elicitation.
    UserOauth {
        client_id: String,
        /// A reference (`${env:…}`, `${file:…}`); absent for a public client.
        client_secret: Option<String>,
        /// `client_secret_basic` (the default with a secret),
        /// `client_secret_post`, or `none` (the default without one).
        token_endpoint_auth_method: Option<String>,
        #[serde(default)]
        scopes: Vec<String>,
        /// The authorization server's issuer: its endpoints are discovered
        /// (RFC 8414, then OpenID Connect Discovery).
        issuer: Option<String>,
        /// Configured endpoints, for servers without metadata (GitHub).
        authorization_endpoint: Option<String>,
        token_endpoint: Option<String>,
        revocation_endpoint: Option<String>,
        /// The RFC 8707 `resource` to ask for; the upstream's URL when the
        /// server is discovered from the upstream's own metadata.
        resource: Option<String>,
    },
}

/// `[upstream.tools.NAME]`, `[upstream.prompts.NAME]`, `[upstream.resources."URI"]`
/// and the `default_*` tables: who may use the item and with which scopes.
#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct ToolFile {
    #[serde(default)]
    pub scopes: Vec<String>,
    pub allow: Option<bool>,
    pub users: Option<Vec<UserFile>>,
    pub groups: Option<Vec<String>>,
}

/// One entry of a `users` allowlist: a subject of mcpgate's own AS
/// (`"alice"`), or `{ issuer, subject }` for a user of a trusted issuer.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum UserFile {
    Subject(String),
    Qualified(QualifiedUserFile),
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct QualifiedUserFile {
    pub issuer: String,
    pub subject: String,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RateLimitFile {
    /// Requests per minute per user (issuer, subject).
    pub per_user_per_minute: Option<u32>,
    /// Requests per minute per OAuth client.
    pub per_client_per_minute: Option<u32>,
}

// ---- the runtime shapes --------------------------------------------------

#[derive(Debug, Clone)]
pub struct StdioConfig {
    pub command: String,
    pub args: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub env: Vec<(String, Secret)>,
    /// The sandbox the child runs in (the strict default unless widened).
    pub sandbox: mcpgate_sandbox::SandboxConfig,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub url: String,
    pub headers: Vec<(http::HeaderName, Secret)>,
}

#[derive(Debug, Clone)]
pub enum Transport {
    Stdio(StdioConfig),
    Http(HttpConfig),
}

#[derive(Debug, Clone)]
pub enum UpstreamAuth {
    None,
    Header {
        name: http::HeaderName,
        value: Secret,
    },
    ClientCredentials(ClientCredentials),
    /// RFC 8693 token exchange at `endpoint`, for `audience`.
    TokenExchange {
        endpoint: ClientCredentials,
        audience: Option<String>,
    },
    /// Each user's own token from the vault.
    UserOauth(Box<mcpgate_vault::Connection>),
}

#[derive(Debug, Clone)]
pub struct ClientCredentials {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub scope: Option<String>,
    pub resource: Option<String>,
    /// The token URL is loopback http and the dev flag is set.
    pub allow_http_loopback: bool,
}

/// Who may use a tool, prompt or resource, and with which scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolPolicy {
    /// Scopes the tool needs beyond the baseline.
    pub scopes: ScopeSet,
    pub allow: bool,
    /// Users allowed, each an (issuer, subject) pair; `None` = anyone.
    pub users: Option<Vec<UserRef>>,
    /// Groups (`groups` claim) allowed; `None` = anyone.
    pub groups: Option<Vec<String>>,
}

/// A user as tokens name them: the subject is only unique per issuer, so a
/// rule for mcpgate's own `alice` never admits another issuer's `alice`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRef {
    pub issuer: String,
    pub subject: String,
}

impl Default for ToolPolicy {
    fn default() -> Self {
        Self {
            scopes: ScopeSet::new(),
            allow: true,
            users: None,
            groups: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListMode {
    /// List every tool the user could get, stepping up where needed.
    All,
    /// List only tools the current token can call.
    Granted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_user_per_minute: u32,
    pub per_client_per_minute: u32,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub name: String,
    pub title: String,
    /// Canonical resource URI `{public_url}/mcp/{name}`: the token audience.
    pub resource: String,
    pub transport: Transport,
    pub auth: UpstreamAuth,
    pub scopes: ScopeSet,
    pub tools: BTreeMap<String, ToolPolicy>,
    pub default_tool: ToolPolicy,
    /// Per-prompt policy, by prompt name.
    pub prompts: BTreeMap<String, ToolPolicy>,
    pub default_prompt: ToolPolicy,
    /// Per-resource policy, by exact URI (or `uriTemplate`).
    pub resources: BTreeMap<String, ToolPolicy>,
    /// The canonical form of each `resources` key ([`crate::uri::canonical`])
    /// → the key, so every spelling of a configured URI finds its entry.
    pub resource_aliases: BTreeMap<String, String>,
    pub default_resource: ToolPolicy,
    /// Scope → the narrower scopes it implies (see [`UpstreamFile::scope_implies`]).
    pub scope_implies: BTreeMap<String, ScopeSet>,
    pub list: ListMode,
    pub shared: bool,
    /// Per user and per client; [`DEFAULT_RATE_LIMIT`] unless configured.
    pub rate_limit: RateLimit,
    pub allowed_origins: Vec<String>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct AuditConfig {
    pub stdout: bool,
    pub file: Option<PathBuf>,
    pub store: bool,
    /// How long store rows are kept; `None` keeps them forever.
    pub retain: Option<Duration>,
}

/// `[gateway.limits]`, validated. Over a limit the gateway refuses: 503
/// with `Retry-After` when the gateway as a whole is full, 429 with
/// `Retry-After` when one user or one address has had its share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceLimits {
    pub max_sessions: usize,
    pub max_children: usize,
    pub max_streams: usize,
    pub max_streams_per_user: usize,
    pub refused_tokens_per_ip_per_minute: u32,
}

impl Default for ResourceLimits {
    fn default() -> Self {
        Self {
            max_sessions: 10_000,
            max_children: 256,
            max_streams: 1000,
            max_streams_per_user: 8,
            refused_tokens_per_ip_per_minute: 120,
        }
    }
}

/// The rate limit of an upstream without a `rate_limit` table: limits are on
/// unless the operator widens them.
pub const DEFAULT_RATE_LIMIT: RateLimit = RateLimit {
    per_user_per_minute: 600,
    per_client_per_minute: 6000,
};

/// Default `[gateway.audit] retain_days`.
pub const DEFAULT_AUDIT_RETAIN_DAYS: u32 = 90;

fn retain_days(days: u32) -> Option<Duration> {
    (days > 0).then(|| Duration::from_secs(u64::from(days) * 86_400))
}

/// The validated gateway configuration.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// `public_url`, exactly (the issuer of mcpgate's own AS).
    pub public_url: String,
    /// The listener is a loopback address: `Host` must then be loopback
    /// (or the public URL's host), against DNS rebinding.
    pub loopback_listener: bool,
    pub session_idle: Duration,
    pub max_sessions_per_user: usize,
    pub max_message_bytes: usize,
    pub stateless_child_idle: Duration,
    pub allowed_origins: Vec<String>,
    pub audit: AuditConfig,
    pub upstreams: Vec<UpstreamConfig>,
    /// External issuers trusted besides mcpgate's own AS.
    pub trusted_issuers: Vec<ExternalIssuer>,
    /// Whether PRM documents list mcpgate's own AS (first) besides the
    /// trusted issuers (`gateway.advertise_own_issuer`, default true).
    pub advertise_own_issuer: bool,
    /// `gateway.dpop_require_nonce` (default false).
    pub dpop_require_nonce: bool,
    /// `gateway.authentication` (default [`Authentication::Bearer`]).
    pub authentication: Authentication,
    /// Paths no stdio child's sandbox may open (mcpgate's data dir, database,
    /// config file); a rule that contains one refuses to start.
    pub protected_paths: Vec<PathBuf>,
    /// `[gateway.limits]`.
    pub limits: ResourceLimits,
    /// Proxies whose `X-Forwarded-For` names the client address for the
    /// per-address limit (`authorization_server.trusted_proxies`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// A validated `[[gateway.trusted_issuer]]`.
#[derive(Debug, Clone)]
pub struct ExternalIssuer {
    pub issuer: String,
    pub jwks_uri: Option<String>,
    /// `Some("at+jwt")` unless `require_typ = false`.
    pub typ: Option<String>,
    /// (endpoint, client_id, client_secret)
    pub introspection: Option<(String, String, Secret)>,
    pub allow_http_loopback: bool,
}

impl GatewaySettings {
    /// Settings with defaults and no upstreams.
    pub fn new(public_url: impl Into<String>, loopback_listener: bool) -> Self {
        Self {
            public_url: public_url.into(),
            loopback_listener,
            session_idle: Duration::from_secs(1800),
            max_sessions_per_user: 16,
            max_message_bytes: 4 * 1024 * 1024,
            stateless_child_idle: Duration::from_secs(300),
            allowed_origins: Vec::new(),
            audit: AuditConfig {
                stdout: true,
                file: None,
                store: true,
                retain: retain_days(DEFAULT_AUDIT_RETAIN_DAYS),
            },
            upstreams: Vec::new(),
            trusted_issuers: Vec::new(),
            advertise_own_issuer: true,
            dpop_require_nonce: false,
            authentication: Authentication::Bearer,
            protected_paths: Vec::new(),
            limits: ResourceLimits::default(),
            trusted_proxies: Vec::new(),
        }
    }

    pub fn upstream(&self, name: &str) -> Option<&UpstreamConfig> {
        self.upstreams.iter().find(|u| u.name == name)
    }
}

/// `[gateway.limits]`: defaults for what is not set; zero is refused.
fn limits(l: &LimitsFile) -> Result<ResourceLimits, ConfigError> {
    let d = ResourceLimits::default();
    Ok(ResourceLimits {
        max_sessions: at_least_one("max_sessions", l.max_sessions, d.max_sessions)?,
        max_children: at_least_one("max_children", l.max_children, d.max_children)?,
        max_streams: at_least_one("max_streams", l.max_streams, d.max_streams)?,
        max_streams_per_user: at_least_one(
            "max_streams_per_user",
            l.max_streams_per_user,
            d.max_streams_per_user,
        )?,
        refused_tokens_per_ip_per_minute: at_least_one(
            "refused_tokens_per_ip_per_minute",
            l.refused_tokens_per_ip_per_minute,
            d.refused_tokens_per_ip_per_minute,
        )?,
    })
}

/// One `[gateway.limits]` field: its default when unset, refused when zero.
fn at_least_one<T: From<u8> + PartialEq>(
    field: &str,
    v: Option<T>,
    default: T,
) -> Result<T, ConfigError> {
    match v {
        Some(v) if v == T::from(0) => Err(err(
            format!("gateway.limits.{field}"),
            "must be at least 1 (raise it to widen the limit)",
        )),
        Some(v) => Ok(v),
        None => Ok(default),
    }
}

/// `{public_url}/mcp/{name}`.
pub fn resource_uri(public_url: &str, name: &str) -> String {
    format!("{}/mcp/{name}", public_url.trim_end_matches('/'))
}

/// Upstream names become URL path segments: `[a-z0-9_-]`, 1 to 64 characters.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Does an environment variable or header of this name carry a credential
/// (`GITHUB_TOKEN`, `OPENAI_API_KEY`, `X-Api-Key`, `DB_PASSWORD`, …)? Its
/// value must then be a `${env:}`/`${file:}` reference, never a literal in
/// the config file; other values are configuration and may be literals.
pub fn names_a_secret(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "token",
        "secret",
        "password",
        "passwd",
        "apikey",
        "api_key",
        "api-key",
        "credential",
        "private",
        "auth",
        "cookie",
        "session",
    ]
    .iter()
    .any(|w| n.contains(w))
        || n.ends_with("_key")
        || n.ends_with("-key")
        || n == "key"
}

/// Plain `http://` reaches a loopback host only, unless the operator sets
/// `allow_insecure_http = true`; and even then no credential (auth or a
/// configured header) travels in the clear to another host.
fn plain_http_rule(
    field: &str,
    h: &HttpConfig,
    allow_insecure_http: bool,
    auth: &UpstreamAuth,
) -> Result<(), ConfigError> {
    let Ok(u) = url::Url::parse(&h.url) else {
        return Ok(());
    };
    if u.scheme() != "http" || mcpgate_net::is_loopback_url(&u) {
        return Ok(());
    }
    if !allow_insecure_http {
        return Err(err(
            field,
            format!(
                "{:?} is plain http to a host that is not loopback: use https, or set \
                 allow_insecure_http = true in this upstream's http table (then without auth or headers)",
                h.url
            ),
        ));
    }
    if !matches!(auth, UpstreamAuth::None) || !h.headers.is_empty() {
        return Err(err(
            field,
            "credentials (auth, headers) never travel over plain http to another host: use https",
        ));
    }
    Ok(())
}

fn scopes(field: &str, list: &[String]) -> Result<ScopeSet, ConfigError> {
    let mut s = ScopeSet::new();
    for v in list {
        if !mcpgate_types::scope::is_scope_token(v) {
            return Err(err(
                field,
                format!("{v:?} is not a valid scope token (RFC 6749 §3.3)"),
            ));
        }
        if v == "offline_access" {
            return Err(err(
                field,
                "offline_access is not a resource scope (SEP-2207)",
            ));
        }
        s.insert(v.clone());
    }
    Ok(s)
}

/// A policy table. Bare `users` entries are subjects of mcpgate's own AS
/// (`own_issuer`); qualified ones must name that issuer or a trusted one.
fn tool_policy(
    field: &str,
    t: &ToolFile,
    own_issuer: &str,
    trusted: &[ExternalIssuer],
) -> Result<ToolPolicy, ConfigError> {
    let users = t
        .users
        .as_ref()
        .map(|list| {
            list.iter()
                .map(|u| user_ref(&format!("{field}.users"), u, own_issuer, trusted))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    Ok(ToolPolicy {
        scopes: scopes(&format!("{field}.scopes"), &t.scopes)?,
        allow: t.allow.unwrap_or(true),
        users,
        groups: t.groups.clone(),
    })
}

/// One `users` entry as (issuer, subject).
fn user_ref(
    field: &str,
    u: &UserFile,
    own_issuer: &str,
    trusted: &[ExternalIssuer],
) -> Result<UserRef, ConfigError> {
    let (issuer, subject) = match u {
        UserFile::Subject(s) => (own_issuer, s),
        UserFile::Qualified(q) => (q.issuer.as_str(), &q.subject),
    };
    if issuer != own_issuer && !trusted.iter().any(|t| t.issuer == issuer) {
        return Err(err(
            field,
            format!(
                "issuer {issuer:?} is neither mcpgate's own ({own_issuer:?}) nor a [[gateway.trusted_issuer]]"
            ),
        ));
    }
    Ok(UserRef {
        issuer: issuer.to_string(),
        subject: subject.clone(),
    })
}

fn header_name(field: &str, name: &str) -> Result<http::HeaderName, ConfigError> {
    let h = http::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| err(field, format!("{name:?} is not a header name")))?;
    const RESERVED: &[&str] = &[
        "host",
        "connection",
        "content-length",
        "transfer-encoding",
        "mcp-session-id",
        "mcp-protocol-version",
        "content-type",
        "accept",
        "cookie",
        "upgrade",
        "te",
        "trailer",
        "keep-alive",
        "proxy-authorization",
    ];
    if RESERVED.contains(&h.as_str()) {
        return Err(err(
            field,
            format!("{name:?} is set by the gateway and cannot be configured"),
        ));
    }
    Ok(h)
}

/// The rule for every URL of an authorization server the gateway talks to:
/// https, or plain http on loopback with the development flag. Returns
/// whether the URL needs the loopback allowance.
fn back_channel_url(field: &str, url: &str, dev_http: bool) -> Result<bool, ConfigError> {
    let u = url::Url::parse(url).map_err(|_| err(field, "not an absolute URL"))?;
    match u.scheme() {
        "https" => Ok(dev_http && mcpgate_net::is_loopback_url(&u)),
        "http" if dev_http && mcpgate_net::is_loopback_url(&u) => Ok(true),
        _ => Err(err(
            field,
            "must be https (plain http only on loopback with gateway.dev_allow_http_loopback_token_url = true)",
        )),
    }
}

/// `auth = { type = "user_oauth", … }` for the HTTP upstream `name` at
/// `upstream_url`.
#[allow(clippy::too_many_arguments)]
fn user_oauth(
    f: &dyn Fn(&str) -> String,
    dev_http: bool,
    name: &str,
    title: &str,
    upstream_url: &str,
    file: &AuthFile,
    secret: SecretResolver<'_>,
) -> Result<mcpgate_vault::Connection, ConfigError> {
    use mcpgate_vault::{AuthMethod, Endpoints, ServerSource};
    let AuthFile::UserOauth {
        client_id,
        client_secret,
        token_endpoint_auth_method,
        scopes,
        issuer,
        authorization_endpoint,
        token_endpoint,
        revocation_endpoint,
        resource,
    } = file
    else {
        unreachable!("called for user_oauth only")
    };
    if client_id.is_empty() {
        return Err(err(f("auth.client_id"), "must not be empty"));
    }
    let auth_method = match (token_endpoint_auth_method.as_deref(), client_secret) {
        (None | Some("client_secret_basic"), Some(_)) => AuthMethod::ClientSecretBasic,
        (Some("client_secret_post"), Some(_)) => AuthMethod::ClientSecretPost,
        (None | Some("none"), None) => AuthMethod::None,
        (Some("none"), Some(_)) => {
            return Err(err(
                f("auth.client_secret"),
                "a public client (token_endpoint_auth_method = \"none\") has no secret",
            ));
        }
        (Some("client_secret_basic" | "client_secret_post"), None) => {
            return Err(err(
                f("auth.client_secret"),
                "this method needs client_secret",
            ));
        }
        (Some(other), _) => {
            return Err(err(
                f("auth.token_endpoint_auth_method"),
                format!("{other:?} is not client_secret_basic, client_secret_post or none"),
            ));
        }
    };
    let client_secret = match client_secret {
        Some(s) => secret(&f("auth.client_secret"), s, false)?,
        None => Secret::new(""),
    };
    for s in scopes {
        if !mcpgate_types::scope::is_scope_token(s) {
            return Err(err(
                f("auth.scopes"),
                format!("{s:?} is not a valid scope token (RFC 6749 §3.3)"),
            ));
        }
    }
    let checked = |field: &str, u: &Option<String>| -> Result<(), ConfigError> {
        match u {
            Some(u) => back_channel_url(&f(field), u, dev_http).map(|_| ()),
            None => Ok(()),
        }
    };
    checked("auth.issuer", issuer)?;
    checked("auth.authorization_endpoint", authorization_endpoint)?;
    checked("auth.token_endpoint", token_endpoint)?;
    checked("auth.revocation_endpoint", revocation_endpoint)?;
    if let Some(r) = resource {
        mcpgate_types::resource::validate(r).map_err(|e| err(f("auth.resource"), e.to_string()))?;
    }
    let server = match (authorization_endpoint, token_endpoint) {
        (Some(a), Some(t)) => ServerSource::Endpoints(Endpoints {
            issuer: issuer.clone(),
            authorization_endpoint: a.clone(),
            token_endpoint: t.clone(),
            revocation_endpoint: revocation_endpoint.clone(),
            iss_parameter_supported: false,
        }),
        (None, None) if revocation_endpoint.is_some() => {
            return Err(err(
                f("auth.revocation_endpoint"),
                "with discovered endpoints the revocation endpoint is discovered too",
            ));
        }
        (None, None) => match issuer {
            Some(i) => ServerSource::Issuer(i.clone()),
            None => {
                back_channel_url(&f("http.url"), upstream_url, dev_http).map_err(|_| {
                    err(
                        f("auth"),
                        "without issuer or endpoints, the authorization server is discovered from \
                         the upstream's own metadata, which needs an https upstream URL",
                    )
                })?;
                ServerSource::ProtectedResource
            }
        },
        _ => {
            return Err(err(
                f("auth"),
                "set both authorization_endpoint and token_endpoint, or neither (then issuer, or \
                 discovery from the upstream's metadata)",
            ));
        }
    };
    Ok(mcpgate_vault::Connection {
        upstream: name.to_owned(),
        title: title.to_owned(),
        upstream_url: upstream_url.to_owned(),
        server,
        client_id: client_id.clone(),
        client_secret,
        auth_method,
        scopes: scopes.clone(),
        resource: resource.clone(),
        allow_http_loopback: dev_http,
    })
}

/// Validates the token endpoint of an `auth` table (client credentials,
/// token exchange): `[token_url, client_id, client_secret]`.
fn endpoint(
    f: &dyn Fn(&str) -> String,
    dev_http: bool,
    [token_url, client_id, client_secret]: [&String; 3],
    scope: &Option<String>,
    resource: &Option<String>,
    secret: SecretResolver<'_>,
) -> Result<ClientCredentials, ConfigError> {
    let allow_http_loopback = back_channel_url(&f("auth.token_url"), token_url, dev_http)?;
    if let Some(sc) = scope {
        ScopeSet::parse(sc).map_err(|e| err(f("auth.scope"), e.to_string()))?;
    }
    if let Some(r) = resource {
        mcpgate_types::resource::validate(r).map_err(|e| err(f("auth.resource"), e.to_string()))?;
    }
    Ok(ClientCredentials {
        token_url: token_url.clone(),
        client_id: client_id.clone(),
        client_secret: secret(&f("auth.client_secret"), client_secret, false)?,
        scope: scope.clone(),
        resource: resource.clone(),
        allow_http_loopback,
    })
}

/// Validates `[gateway]` and every `[[upstream]]` against `public_url`.
pub fn validate(
    public_url: &str,
    loopback_listener: bool,
    g: &GatewayFile,
    ups: &[UpstreamFile],
    secret: SecretResolver<'_>,
) -> Result<GatewaySettings, ConfigError> {
    let mut s = GatewaySettings::new(public_url, loopback_listener);
    if let Some(v) = g.session_idle_secs {
        if v == 0 {
            return Err(err("gateway.session_idle_secs", "must be at least 1"));
        }
        s.session_idle = Duration::from_secs(v);
    }
    if let Some(v) = g.max_sessions_per_user {
        if v == 0 {
            return Err(err("gateway.max_sessions_per_user", "must be at least 1"));
        }
        s.max_sessions_per_user = v;
    }
    s.limits = limits(&g.limits)?;
    if let Some(v) = g.max_message_bytes {
        if !(1024..=64 * 1024 * 1024).contains(&v) {
            return Err(err(
                "gateway.max_message_bytes",
                "must be between 1024 and 67108864",
            ));
        }
        s.max_message_bytes = v;
    }
    if let Some(v) = g.stateless_child_idle_secs {
        s.stateless_child_idle = Duration::from_secs(v.max(1));
    }
    s.allowed_origins = origins("gateway.allowed_origins", &g.allowed_origins)?;
    s.audit = AuditConfig {
        stdout: g.audit.stdout.unwrap_or(true),
        file: g.audit.file.clone(),
        store: g.audit.store.unwrap_or(true),
        retain: retain_days(g.audit.retain_days.unwrap_or(DEFAULT_AUDIT_RETAIN_DAYS)),
    };
    for (i, t) in g.trusted_issuers.iter().enumerate() {
        let f = |n: &str| format!("gateway.trusted_issuer[{i}].{n}");
        if mcpgate_types::resource::validate(&t.issuer).is_err() {
            return Err(err(
                f("issuer"),
                "must be an absolute http(s) URL, exactly as the issuer publishes it",
            ));
        }
        if t.issuer == public_url
            || s.trusted_issuers
                .iter()
                .any(|x: &ExternalIssuer| x.issuer == t.issuer)
        {
            return Err(err(
                f("issuer"),
                format!(
                    "{:?} is listed twice (mcpgate's own AS is always trusted)",
                    t.issuer
                ),
            ));
        }
        for (name, v) in [
            ("jwks_uri", &t.jwks_uri),
            ("introspection_endpoint", &t.introspection_endpoint),
        ] {
            if let Some(u) = v
                && mcpgate_types::resource::validate(u).is_err()
            {
                return Err(err(f(name), "must be an absolute http(s) URL"));
            }
        }
        let introspection = match (
            &t.introspection_endpoint,
            &t.introspection_client_id,
            &t.introspection_client_secret,
        ) {
            (None, None, None) => None,
            (Some(e), Some(id), Some(sec)) => Some((
                e.clone(),
                id.clone(),
                secret(&f("introspection_client_secret"), sec, false)?,
            )),
            _ => {
                return Err(err(
                    f("introspection_endpoint"),
                    "introspection_endpoint, introspection_client_id and introspection_client_secret go together",
                ));
            }
        };
        s.trusted_issuers.push(ExternalIssuer {
            issuer: t.issuer.clone(),
            jwks_uri: t.jwks_uri.clone(),
            typ: t.require_typ.unwrap_or(true).then(|| "at+jwt".to_string()),
            introspection,
            allow_http_loopback: t.dev_allow_http_loopback.unwrap_or(false),
        });
    }
    s.advertise_own_issuer = g.advertise_own_issuer.unwrap_or(true);
    s.dpop_require_nonce = g.dpop_require_nonce.unwrap_or(false);
    if !s.advertise_own_issuer && s.trusted_issuers.is_empty() {
        return Err(err(
            "gateway.advertise_own_issuer",
            "false needs at least one [[gateway.trusted_issuer]] to advertise",
        ));
    }
    let dev_http = g.dev_allow_http_loopback_token_url.unwrap_or(false);
    for (i, u) in ups.iter().enumerate() {
        let f = |n: &str| format!("upstream[{i}].{n}");
        if !valid_name(&u.name) {
            return Err(err(
                f("name"),
                format!("{:?}: use 1-64 characters of a-z, 0-9, - and _", u.name),
            ));
        }
        if s.upstreams.iter().any(|x| x.name == u.name) {
            return Err(err(
                f("name"),
                format!("{:?} is used by two upstreams", u.name),
            ));
        }
        let transport = match (&u.stdio, &u.http) {
            (Some(st), None) => {
                if st.command.trim().is_empty() {
                    return Err(err(f("stdio.command"), "must not be empty"));
                }
                let mut env = Vec::new();
                for (k, v) in &st.env {
                    if k.is_empty() || k.contains('=') || k.contains('\0') {
                        return Err(err(f("stdio.env"), format!("{k:?} is not a variable name")));
                    }
                    let field = f(&format!("stdio.env.{k}"));
                    env.push((k.clone(), secret(&field, v, !names_a_secret(k))?));
                }
                if let Some(c) = &st.cwd
                    && !c.is_absolute()
                {
                    return Err(err(f("stdio.cwd"), "must be an absolute path"));
                }
                let sandbox = u
                    .sandbox
                    .clone()
                    .unwrap_or_default()
                    .validate()
                    .map_err(|e| err(f(&format!("sandbox.{}", e.field)), e.message))?;
                Transport::Stdio(StdioConfig {
                    command: st.command.clone(),
                    args: st.args.clone(),
                    cwd: st.cwd.clone(),
                    env,
                    sandbox,
                })
            }
            (None, Some(h)) => {
                if u.sandbox.is_some() {
                    return Err(err(
                        f("sandbox"),
                        "only stdio upstreams run as child processes; an http upstream has no sandbox",
                    ));
                }
                let parsed = url::Url::parse(&h.url).map_err(|_| {
                    err(f("http.url"), format!("{:?} is not an absolute URL", h.url))
                })?;
                if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                    return Err(err(f("http.url"), "must be an http(s) URL"));
                }
                if !parsed.username().is_empty() || parsed.password().is_some() {
                    return Err(err(
                        f("http.url"),
                        "put credentials in auth, not in the URL",
                    ));
                }
                let mut headers = Vec::new();
                for (k, v) in &h.headers {
                    let name = header_name(&f(&format!("http.headers.{k}")), k)?;
                    let field = f(&format!("http.headers.{k}"));
                    headers.push((name, secret(&field, v, !names_a_secret(k))?));
                }
                Transport::Http(HttpConfig {
                    url: h.url.clone(),
                    headers,
                })
            }
            (Some(_), Some(_)) => {
                return Err(err(
                    f("stdio"),
                    "an upstream is either stdio or http, not both",
                ));
            }
            (None, None) => {
                return Err(err(
                    f("stdio"),
                    "set stdio = { command = … } or http = { url = … }",
                ));
            }
        };
        let auth = match &u.auth {
            None | Some(AuthFile::None) => UpstreamAuth::None,
            Some(AuthFile::Header { name, value }) => UpstreamAuth::Header {
                name: header_name(&f("auth.name"), name)?,
                value: secret(&f("auth.value"), value, false)?,
            },
            Some(AuthFile::ClientCredentials {
                token_url,
                client_id,
                client_secret,
                scope,
                resource,
            }) => UpstreamAuth::ClientCredentials(endpoint(
                &f,
                dev_http,
                [token_url, client_id, client_secret],
                scope,
                resource,
                secret,
            )?),
            Some(AuthFile::TokenExchange {
                token_url,
                client_id,
                client_secret,
                audience,
                scope,
                resource,
            }) => UpstreamAuth::TokenExchange {
                endpoint: endpoint(
                    &f,
                    dev_http,
                    [token_url, client_id, client_secret],
                    scope,
                    resource,
                    secret,
                )?,
                audience: audience.clone(),
            },
            Some(file @ AuthFile::UserOauth { .. }) => {
                let Transport::Http(h) = &transport else {
                    return Err(err(
                        f("auth"),
                        "user_oauth is for http upstreams (a stdio server has no credentials)",
                    ));
                };
                let title = u.title.clone().unwrap_or_else(|| u.name.clone());
                UpstreamAuth::UserOauth(Box::new(user_oauth(
                    &f, dev_http, &u.name, &title, &h.url, file, secret,
                )?))
            }
        };
        if let (Transport::Http(h), Some(file)) = (&transport, &u.http) {
            plain_http_rule(&f("http.url"), h, file.allow_insecure_http, &auth)?;
        }
        if matches!(transport, Transport::Stdio(_)) && !matches!(auth, UpstreamAuth::None) {
            return Err(err(
                f("auth"),
                "stdio upstreams take credentials from stdio.env (MCP: stdio servers read credentials from their environment)",
            ));
        }
        let items = |what: &str, m: &BTreeMap<String, ToolFile>| {
            m.iter()
                .map(|(name, t)| {
                    let field = f(&format!("{what}.{name}"));
                    Ok((
                        name.clone(),
                        tool_policy(&field, t, public_url, &s.trusted_issuers)?,
                    ))
                })
                .collect::<Result<BTreeMap<_, _>, ConfigError>>()
        };
        let default = |what: &str, t: &Option<ToolFile>| match t {
            Some(t) => tool_policy(&f(what), t, public_url, &s.trusted_issuers),
            None => Ok(ToolPolicy::default()),
        };
        let tools = items("tools", &u.tools)?;
        let prompts = items("prompts", &u.prompts)?;
        let resources = items("resources", &u.resources)?;
        let mut resource_aliases = BTreeMap::new();
        for key in resources.keys() {
            if let Some(other) = resource_aliases.insert(crate::uri::canonical(key), key.clone()) {
                return Err(err(
                    f(&format!("resources.{key}")),
                    format!(
                        "{other:?} and {key:?} are spellings of the same URI (RFC 3986 §6.2.2)"
                    ),
                ));
            }
        }
        let mut scope_implies = BTreeMap::new();
        for (broad, narrower) in &u.scope_implies {
            let field = f(&format!("scope_implies.{broad}"));
            let b = scopes(&field, std::slice::from_ref(broad))?;
            if b.len() != 1 {
                return Err(err(field, "the key must be one scope"));
            }
            scope_implies.insert(broad.clone(), scopes(&field, narrower)?);
        }
        let list = match u.list.as_deref().unwrap_or("all") {
            "all" => ListMode::All,
            "granted" => ListMode::Granted,
            other => {
                return Err(err(
                    f("list"),
                    format!("{other:?} is not \"all\" or \"granted\""),
                ));
            }
        };
        let rate_limit = match &u.rate_limit {
            None => DEFAULT_RATE_LIMIT,
            Some(r) => {
                let pu = r
                    .per_user_per_minute
                    .unwrap_or(DEFAULT_RATE_LIMIT.per_user_per_minute);
                let pc = r
                    .per_client_per_minute
                    .unwrap_or(DEFAULT_RATE_LIMIT.per_client_per_minute);
                if pu == 0 || pc == 0 {
                    return Err(err(
                        f("rate_limit"),
                        "limits must be at least 1 per minute (raise them to widen)",
                    ));
                }
                RateLimit {
                    per_user_per_minute: pu,
                    per_client_per_minute: pc,
                }
            }
        };
        s.upstreams.push(UpstreamConfig {
            name: u.name.clone(),
            title: u.title.clone().unwrap_or_else(|| u.name.clone()),
            resource: resource_uri(public_url, &u.name),
            transport,
            auth,
            scopes: scopes(&f("scopes"), &u.scopes)?,
            tools,
            default_tool: default("default_tool", &u.default_tool)?,
            prompts,
            default_prompt: default("default_prompt", &u.default_prompt)?,
            resources,
            resource_aliases,
            default_resource: default("default_resource", &u.default_resource)?,
            scope_implies,
            list,
            shared: u.shared.unwrap_or(false),
            rate_limit,
            allowed_origins: origins(&f("allowed_origins"), &u.allowed_origins)?,
            timeout: Duration::from_secs(u.timeout_secs.unwrap_or(60).max(1)),
        });
    }
    s.authentication = g.authentication.unwrap_or_default();
    if s.authentication == Authentication::None {
        check_no_auth(&s)?;
    }
    Ok(s)
}

/// `authentication = "none"` is for loopback development and conformance
/// runs only, and nothing in the configuration may depend on a token.
fn check_no_auth(s: &GatewaySettings) -> Result<(), ConfigError> {
    const FIELD: &str = "gateway.authentication";
    let loopback_http = url::Url::parse(&s.public_url)
        .is_ok_and(|u| u.scheme() == "http" && mcpgate_net::is_loopback_url(&u));
    if !s.loopback_listener || !loopback_http {
        return Err(err(
            FIELD,
            format!(
                "\"none\" is allowed only when listen is a loopback address and public_url is \
                 plain http on a loopback host (public_url is {:?})",
                s.public_url
            ),
        ));
    }
    if !s.trusted_issuers.is_empty() {
        return Err(err(
            "gateway.trusted_issuer",
            "trusted issuers make no sense with authentication = \"none\" (no token is read)",
        ));
    }
    for (i, u) in s.upstreams.iter().enumerate() {
        let f = |n: &str| format!("upstream[{i}].{n}");
        if !u.scopes.is_empty() {
            return Err(err(
                f("scopes"),
                "scopes need an access token; with authentication = \"none\" leave them out",
            ));
        }
        if matches!(u.auth, UpstreamAuth::TokenExchange { .. }) {
            return Err(err(
                f("auth"),
                "token_exchange exchanges the caller's token; authentication = \"none\" has none",
            ));
        }
        if matches!(u.auth, UpstreamAuth::UserOauth(_)) {
            return Err(err(
                f("auth"),
                "user_oauth keeps each user's own account; authentication = \"none\" has no users",
            ));
        }
        let rules = [
            ("tools", &u.tools, &u.default_tool, "default_tool"),
            ("prompts", &u.prompts, &u.default_prompt, "default_prompt"),
            (
                "resources",
                &u.resources,
                &u.default_resource,
                "default_resource",
            ),
        ];
        for (what, items, default, default_name) in rules {
            let named = items
                .iter()
                .map(|(name, p)| (format!("{what}.{name}"), p))
                .chain(std::iter::once((default_name.to_string(), default)));
            for (field, p) in named {
                let needs_token = if !p.scopes.is_empty() {
                    Some("scopes")
                } else if p.users.is_some() {
                    Some("users")
                } else if p.groups.is_some() {
                    Some("groups")
                } else {
                    None
                };
                if let Some(key) = needs_token {
                    return Err(err(
                        f(&format!("{field}.{key}")),
                        format!(
                            "{key} need an access token; with authentication = \"none\" \
                             only allow = true/false is possible"
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Origins are `scheme://host[:port]`, compared exactly (lower-cased).
fn origins(field: &str, list: &[String]) -> Result<Vec<String>, ConfigError> {
    list.iter()
        .map(|o| {
            let u =
                url::Url::parse(o).map_err(|_| err(field, format!("{o:?} is not an origin")))?;
            if u.host().is_none() || u.path() != "/" || o.ends_with('/') || u.query().is_some() {
                return Err(err(
                    field,
                    format!("{o:?}: an origin is scheme://host[:port] with nothing after it"),
                ));
            }
            Ok(u.origin().ascii_serialization())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<GatewaySettings, ConfigError> {
        GatewayTables::parse(toml_text)?.validate("http://127.0.0.1:8080", true, &secret_as_written)
    }

    #[test]
    fn authentication_none_is_opt_in_loopback_only_and_token_free() {
        let up = "[[upstream]]\nname = \"t\"\nstdio = { command = \"x\" }\n";
        // Not the default.
        assert_eq!(parse(up).unwrap().authentication, Authentication::Bearer);
        let none = format!("[gateway]\nauthentication = \"none\"\n{up}");
        assert_eq!(parse(&none).unwrap().authentication, Authentication::None);
        // Refused unless the listener and public_url are loopback over http.
        let f: toml::Table = toml::from_str(&none).unwrap();
        let g: GatewayFile = f["gateway"].clone().try_into().unwrap();
        let ups: Vec<UpstreamFile> = f["upstream"].clone().try_into().unwrap();
        for (public_url, loopback) in [
            ("http://127.0.0.1:8080", false),
            ("https://127.0.0.1:8080", true),
            ("http://mcp.example.com", true),
        ] {
            let e = validate(public_url, loopback, &g, &ups, &secret_as_written).unwrap_err();
            assert_eq!(e.field, "gateway.authentication", "{public_url} {loopback}");
            assert!(e.message.contains("loopback"), "{}", e.message);
        }
        assert!(validate("http://localhost:9", true, &g, &ups, &secret_as_written).is_ok());
        // Rules that need a token are configuration errors.
        for (extra, field) in [
            ("scopes = [\"a\"]\n", "upstream[0].scopes"),
            (
                "[upstream.tools.x]\nscopes = [\"a\"]\n",
                "upstream[0].tools.x.scopes",
            ),
            (
                "[upstream.prompts.p]\ngroups = [\"g\"]\n",
                "upstream[0].prompts.p.groups",
            ),
            (
                "[upstream.default_resource]\nusers = [\"u\"]\n",
                "upstream[0].default_resource.users",
            ),
        ] {
            let e = parse(&format!("{none}{extra}")).unwrap_err();
            assert_eq!(e.field, field, "{extra}");
        }
        let trusted = "[[gateway.trusted_issuer]]\nissuer = \"https://idp.example\"\n";
        let e = parse(&format!("{none}{trusted}")).unwrap_err();
        assert_eq!(e.field, "gateway.trusted_issuer");
        // allow = true/false is fine.
        assert!(parse(&format!("{none}[upstream.tools.x]\nallow = false\n")).is_ok());
        assert!(parse("[gateway]\nauthentication = \"off\"\n").is_err());
    }

    /// A bare `users` entry is a subject of mcpgate's own AS; another
    /// issuer's user is named with its issuer, which must be trusted.
    #[test]
    fn users_are_issuer_and_subject() {
        let trusted = "[[gateway.trusted_issuer]]\nissuer = \"https://idp.example\"\njwks_uri = \"https://idp.example/jwks\"\n";
        let up = "[[upstream]]\nname = \"t\"\nstdio = { command = \"x\" }\n[upstream.tools.x]\n";
        let s = parse(&format!(
            "{trusted}{up}users = [\"alice\", {{ issuer = \"https://idp.example\", subject = \"u-1\" }}]\n"
        ))
        .unwrap();
        let users = s.upstreams[0].tools["x"].users.clone().unwrap();
        assert_eq!(
            users,
            [
                UserRef {
                    issuer: "http://127.0.0.1:8080".into(),
                    subject: "alice".into()
                },
                UserRef {
                    issuer: "https://idp.example".into(),
                    subject: "u-1".into()
                },
            ]
        );
        let e = parse(&format!(
            "{trusted}{up}users = [{{ issuer = \"https://other.example\", subject = \"u-1\" }}]\n"
        ))
        .unwrap_err();
        assert_eq!(e.field, "upstream[0].tools.x.users");
        assert!(e.message.contains("trusted_issuer"), "{}", e.message);
    }

    #[test]
    fn two_spellings_of_one_resource_are_refused() {
        let up = "[[upstream]]\nname = \"t\"\nstdio = { command = \"x\" }\n";
        let e = parse(&format!(
            "{up}[upstream.resources.\"file:///srv/a\"]\nallow = false\n\
             [upstream.resources.\"FILE:///srv/./a\"]\nallow = true\n"
        ))
        .unwrap_err();
        assert!(e.field.starts_with("upstream[0].resources."), "{e}");
        assert!(e.message.contains("same URI"), "{e}");
        let ok = parse(&format!(
            "{up}[upstream.resources.\"file:///srv/a\"]\nallow = false\n"
        ))
        .unwrap();
        assert_eq!(
            ok.upstreams[0]
                .resource_aliases
                .get("file:///srv/a")
                .map(String::as_str),
            Some("file:///srv/a")
        );
    }

    #[test]
    fn advertise_own_issuer() {
        let ext = "[[gateway.trusted_issuer]]\nissuer = \"https://idp.example\"\n";
        let s = parse(ext).unwrap();
        assert!(s.advertise_own_issuer);
        assert_eq!(
            crate::authorization_servers(&s, "http://127.0.0.1:8080"),
            ["http://127.0.0.1:8080", "https://idp.example"]
        );
        let s = parse(&format!("[gateway]\nadvertise_own_issuer = false\n{ext}")).unwrap();
        assert!(!s.advertise_own_issuer);
        assert_eq!(
            crate::authorization_servers(&s, "http://127.0.0.1:8080"),
            ["https://idp.example"]
        );
        let e = parse("[gateway]\nadvertise_own_issuer = false\n").unwrap_err();
        assert_eq!(e.field, "gateway.advertise_own_issuer");
        assert!(e.message.contains("trusted_issuer"), "{}", e.message);
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_name("notes_2-x"));
        assert!(!valid_name("Notes"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(""));
        let e = parse("[[upstream]]\nname = \"A\"\nstdio = { command = \"x\" }\n").unwrap_err();
        assert_eq!(e.field, "upstream[0].name");
        let e = parse("[[upstream]]\nname = \"a\"\nstdio = { command = \"x\" }\n[[upstream]]\nname = \"a\"\nstdio = { command = \"y\" }\n").unwrap_err();
        assert_eq!(e.field, "upstream[1].name");
    }

    #[test]
    fn full_upstream() {
        let s = parse(
            r#"
[gateway]
session_idle_secs = 60
allowed_origins = ["https://app.example"]
[[upstream]]
name = "notes"
scopes = ["notes:read"]
list = "granted"
stdio = { command = "/bin/notes", args = ["-v"], env = { TOKEN = "${env:T}" } }
[upstream.tools.add_note]
scopes = ["notes:write"]
[upstream.tools.drop]
allow = false
[upstream.prompts.plan]
scopes = ["notes:write"]
[upstream.resources."notes://all"]
groups = ["ops"]
[upstream.default_resource]
allow = false
[[upstream]]
name = "web"
http = { url = "http://127.0.0.1:9000/mcp" }
auth = { type = "header", name = "X-Api-Key", value = "${env:K}" }
rate_limit = { per_user_per_minute = 10 }
"#,
        )
        .unwrap();
        let n = s.upstream("notes").unwrap();
        assert_eq!(n.resource, "http://127.0.0.1:8080/mcp/notes");
        assert_eq!(n.list, ListMode::Granted);
        assert!(!n.tools["drop"].allow);
        assert_eq!(n.tools["add_note"].scopes.to_string(), "notes:write");
        assert_eq!(n.prompts["plan"].scopes.to_string(), "notes:write");
        assert_eq!(n.resources["notes://all"].groups, Some(vec!["ops".into()]));
        assert!(!n.default_resource.allow);
        assert!(n.default_prompt.allow);
        let e = parse("[[upstream]]\nname = \"a\"\nstdio = { command = \"x\" }\n[upstream.prompts.p]\nscopes = [\"offline_access\"]\n").unwrap_err();
        assert_eq!(e.field, "upstream[0].prompts.p.scopes");
        let w = s.upstream("web").unwrap();
        assert!(matches!(w.auth, UpstreamAuth::Header { .. }));
        assert_eq!(w.rate_limit.per_user_per_minute, 10);
        assert_eq!(w.rate_limit.per_client_per_minute, 6000);
        // Limits are on without a table.
        assert_eq!(n.rate_limit, DEFAULT_RATE_LIMIT);
        assert_eq!(s.limits, ResourceLimits::default());
        assert_eq!(s.allowed_origins, vec!["https://app.example".to_string()]);
        assert_eq!(s.audit.retain, Some(Duration::from_secs(90 * 86_400)));
        let s = parse("[gateway.audit]\nretain_days = 0\n").unwrap();
        assert_eq!(s.audit.retain, None);
        let s = parse("[gateway.audit]\nretain_days = 7\n").unwrap();
        assert_eq!(s.audit.retain, Some(Duration::from_secs(7 * 86_400)));
    }

    #[test]
    fn limits_default_widen_and_refuse_zero() {
        let s = parse("[gateway.limits]\nmax_sessions = 3\nmax_streams_per_user = 2\n").unwrap();
        assert_eq!(s.limits.max_sessions, 3);
        assert_eq!(s.limits.max_streams_per_user, 2);
        assert_eq!(
            s.limits.max_children,
            ResourceLimits::default().max_children
        );
        for field in [
            "max_sessions",
            "max_children",
            "max_streams",
            "max_streams_per_user",
            "refused_tokens_per_ip_per_minute",
        ] {
            let e = parse(&format!("[gateway.limits]\n{field} = 0\n")).unwrap_err();
            assert_eq!(e.field, format!("gateway.limits.{field}"));
            assert!(e.message.contains("raise it"), "{}", e.message);
        }
        let e = parse("[gateway.limits]\nmax_session = 3\n").unwrap_err();
        assert!(e.message.contains("unknown field"), "{}", e.message);
        let e = parse("[[upstream]]\nname = \"a\"\nstdio = { command = \"x\" }\nrate_limit = { per_user_per_minute = 0 }\n").unwrap_err();
        assert_eq!(e.field, "upstream[0].rate_limit");
    }

    #[test]
    fn token_exchange() {
        let s = parse(
            "[[upstream]]\nname = \"a\"\nhttp = { url = \"https://x/mcp\" }\nauth = { type = \"token_exchange\", token_url = \"https://as.example/token\", client_id = \"gw\", client_secret = \"${env:S}\", audience = \"https://x\" }\n",
        )
        .unwrap();
        match &s.upstreams[0].auth {
            UpstreamAuth::TokenExchange { endpoint, audience } => {
                assert_eq!(endpoint.token_url, "https://as.example/token");
                assert_eq!(audience.as_deref(), Some("https://x"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn user_oauth_server_sources_and_client_authentication() {
        use mcpgate_vault::{AuthMethod, ServerSource};
        let conn = |auth: &str| {
            let s = parse(&format!(
                "[[upstream]]\nname = \"gh\"\ntitle = \"GitHub\"\nhttp = {{ url = \"https://api.example/mcp\" }}\nauth = {{ type = \"user_oauth\", {auth} }}\n"
            ))
            .unwrap();
            match &s.upstreams[0].auth {
                UpstreamAuth::UserOauth(c) => (**c).clone(),
                other => panic!("{other:?}"),
            }
        };
        // Configured endpoints, a confidential client (Basic by default).
        let c = conn(
            r#"client_id = "gw", client_secret = "${env:S}", authorization_endpoint = "https://as.example/authorize", token_endpoint = "https://as.example/token", revocation_endpoint = "https://as.example/revoke", scopes = ["repo", "read:org"]"#,
        );
        assert_eq!((c.upstream.as_str(), c.title.as_str()), ("gh", "GitHub"));
        assert_eq!(c.auth_method, AuthMethod::ClientSecretBasic);
        assert_eq!(c.scopes, ["repo", "read:org"]);
        let ServerSource::Endpoints(e) = &c.server else {
            panic!("{:?}", c.server)
        };
        assert_eq!(
            e.revocation_endpoint.as_deref(),
            Some("https://as.example/revoke")
        );
        assert_eq!(c.resource(), None);
        // An issuer to discover; a public client; post.
        let c = conn(r#"client_id = "gw", issuer = "https://login.example""#);
        assert_eq!(
            c.server,
            ServerSource::Issuer("https://login.example".into())
        );
        assert_eq!(c.auth_method, AuthMethod::None);
        let c = conn(
            r#"client_id = "gw", client_secret = "${env:S}", token_endpoint_auth_method = "client_secret_post", issuer = "https://login.example""#,
        );
        assert_eq!(c.auth_method, AuthMethod::ClientSecretPost);
        // Nothing configured: the upstream's own metadata, and its URL as `resource`.
        let c = conn(r#"client_id = "gw""#);
        assert_eq!(c.server, ServerSource::ProtectedResource);
        assert_eq!(c.resource(), Some("https://api.example/mcp"));
    }

    #[test]
    fn user_oauth_refusals_name_their_field() {
        let field = |up: &str, auth: &str| {
            parse(&format!(
                "{up}\nauth = {{ type = \"user_oauth\", {auth} }}\n"
            ))
            .unwrap_err()
            .field
        };
        let http = "[[upstream]]\nname = \"gh\"\nhttp = { url = \"https://api.example/mcp\" }";
        let cases = [
            (r#"client_id = """#, "upstream[0].auth.client_id"),
            (
                r#"client_id = "gw", client_secret = "${env:S}", token_endpoint_auth_method = "none""#,
                "upstream[0].auth.client_secret",
            ),
            (
                r#"client_id = "gw", token_endpoint_auth_method = "client_secret_basic""#,
                "upstream[0].auth.client_secret",
            ),
            (
                r#"client_id = "gw", client_secret = "${env:S}", token_endpoint_auth_method = "private_key_jwt""#,
                "upstream[0].auth.token_endpoint_auth_method",
            ),
            (
                r#"client_id = "gw", client_secret = "a literal""#,
                "upstream[0].auth.client_secret",
            ),
            (
                r#"client_id = "gw", scopes = ["two words"]"#,
                "upstream[0].auth.scopes",
            ),
            (
                r#"client_id = "gw", issuer = "http://login.example""#,
                "upstream[0].auth.issuer",
            ),
            (
                r#"client_id = "gw", token_endpoint = "https://as.example/token""#,
                "upstream[0].auth",
            ),
            (
                r#"client_id = "gw", revocation_endpoint = "https://as.example/revoke""#,
                "upstream[0].auth.revocation_endpoint",
            ),
            (
                r#"client_id = "gw", resource = "not a uri""#,
                "upstream[0].auth.resource",
            ),
        ];
        for (auth, want) in cases {
            assert_eq!(field(http, auth), want, "{auth}");
        }
        // Discovery from an upstream on plain http (not loopback) is refused.
        let plain = "[[upstream]]\nname = \"gh\"\nhttp = { url = \"http://api.example/mcp\", allow_insecure_http = true }";
        assert!(
            parse(&format!(
                "{plain}\nauth = {{ type = \"user_oauth\", client_id = \"gw\" }}\n"
            ))
            .is_err()
        );
        // Not on a stdio upstream, nor without users.
        let stdio = "[[upstream]]\nname = \"gh\"\nstdio = { command = \"x\" }";
        assert_eq!(field(stdio, r#"client_id = "gw""#), "upstream[0].auth");
        let none = format!(
            "[gateway]\nauthentication = \"none\"\n{http}\nauth = {{ type = \"user_oauth\", client_id = \"gw\", issuer = \"https://login.example\" }}\n"
        );
        assert_eq!(parse(&none).unwrap_err().field, "upstream[0].auth");
        // Loopback http needs the development flag.
        let lo = "[[upstream]]\nname = \"gh\"\nhttp = { url = \"http://127.0.0.1:9/mcp\" }";
        assert_eq!(
            field(lo, r#"client_id = "gw", issuer = "http://127.0.0.1:8/""#),
            "upstream[0].auth.issuer"
        );
        assert!(
            parse(&format!(
                "[gateway]\ndev_allow_http_loopback_token_url = true\n{lo}\nauth = {{ type = \"user_oauth\", client_id = \"gw\", issuer = \"http://127.0.0.1:8/\" }}\n"
            ))
            .is_ok()
        );
    }

    #[test]
    fn bad_shapes() {
        assert!(parse("[[upstream]]\nname = \"a\"\n").is_err());
        assert!(parse("[[upstream]]\nname = \"a\"\nhttp = { url = \"ftp://x\" }\n").is_err());
        assert!(parse("[[upstream]]\nname = \"a\"\nhttp = { url = \"http://x\" }\nauth = { type = \"header\", name = \"X\", value = \"plain\" }\n").is_err());
        let e = parse("[[upstream]]\nname = \"a\"\nhttp = { url = \"http://x\" }\nauth = { type = \"client_credentials\", token_url = \"http://127.0.0.1:1/t\", client_id = \"c\", client_secret = \"${env:S}\" }\n").unwrap_err();
        assert_eq!(e.field, "upstream[0].auth.token_url");
        assert!(parse("[gateway]\ndev_allow_http_loopback_token_url = true\n[[upstream]]\nname = \"a\"\nhttp = { url = \"https://x\" }\nauth = { type = \"client_credentials\", token_url = \"http://127.0.0.1:1/t\", client_id = \"c\", client_secret = \"${env:S}\" }\n").is_ok());
        assert!(parse("[[upstream]]\nname = \"a\"\nstdio = { command = \"x\" }\nscopes = [\"offline_access\"]\n").is_err());
        assert!(
            parse("[[upstream]]\nname = \"a\"\nstdio = { command = \"x\" }\nlist = \"some\"\n")
                .is_err()
        );
        assert!(
            parse("[[upstream]]\nname = \"a\"\nstdio = { command = \"x\" }\nbogus = 1\n").is_err()
        );
        assert!(parse("[[upstream]]\nname = \"a\"\nhttp = { url = \"http://x\", headers = { Cookie = \"a\" } }\n").is_err());
        assert!(parse("[gateway]\nallowed_origins = [\"https://x/\"]\n").is_err());
    }

    #[test]
    fn credential_names_need_secret_references() {
        for name in [
            "GITHUB_TOKEN",
            "OPENAI_API_KEY",
            "DB_PASSWORD",
            "AWS_SECRET_ACCESS_KEY",
            "SIGNING_KEY",
            "X-Api-Key",
            "x-auth",
        ] {
            assert!(names_a_secret(name), "{name}");
        }
        for name in [
            "LOG_LEVEL",
            "HOME_DIR",
            "X-Team",
            "KEYBOARD_LAYOUT",
            "MONKEY",
        ] {
            assert!(!names_a_secret(name), "{name}");
        }
        let e = parse(
            "[[upstream]]\nname = \"a\"\nstdio = { command = \"x\", env = { GITHUB_TOKEN = \"ghp_literal\" } }\n",
        )
        .unwrap_err();
        assert_eq!(e.field, "upstream[0].stdio.env.GITHUB_TOKEN");
        assert!(
            parse("[[upstream]]\nname = \"a\"\nstdio = { command = \"x\", env = { GITHUB_TOKEN = \"${env:T}\", LOG_LEVEL = \"debug\" } }\n")
                .is_ok()
        );
        let e = parse(
            "[[upstream]]\nname = \"a\"\nhttp = { url = \"https://x/mcp\", headers = { X-Api-Key = \"literal\" } }\n",
        )
        .unwrap_err();
        assert_eq!(e.field, "upstream[0].http.headers.X-Api-Key");
    }

    #[test]
    fn plain_http_only_to_loopback_and_never_with_credentials() {
        let up = |http: &str, rest: &str| {
            parse(&format!(
                "[[upstream]]\nname = \"a\"\nhttp = {{ {http} }}\n{rest}"
            ))
        };
        for ok in [
            "url = \"http://127.0.0.1:9/mcp\"",
            "url = \"http://[::1]:9/mcp\"",
            "url = \"http://localhost:9/mcp\"",
            "url = \"https://mcp.example.com/mcp\"",
            "url = \"http://mcp.internal/mcp\", allow_insecure_http = true",
        ] {
            assert!(up(ok, "").is_ok(), "{ok}");
        }
        let e = up("url = \"http://mcp.internal/mcp\"", "").unwrap_err();
        assert_eq!(e.field, "upstream[0].http.url");
        assert!(
            e.message.contains("allow_insecure_http = true"),
            "{}",
            e.message
        );
        // Opened explicitly, still no credential in the clear.
        let e = up(
            "url = \"http://mcp.internal/mcp\", allow_insecure_http = true",
            "auth = { type = \"header\", name = \"X-Key\", value = \"${env:S}\" }\n",
        )
        .unwrap_err();
        assert!(
            e.message.contains("never travel over plain http"),
            "{}",
            e.message
        );
        let e = up(
            "url = \"http://mcp.internal/mcp\", allow_insecure_http = true, headers = { X-Team = \"${env:S}\" }",
            "",
        )
        .unwrap_err();
        assert!(
            e.message.contains("never travel over plain http"),
            "{}",
            e.message
        );
        // Credentials to a loopback upstream over http are fine.
        assert!(
            up(
                "url = \"http://127.0.0.1:9/mcp\"",
                "auth = { type = \"header\", name = \"X-Key\", value = \"${env:S}\" }\n"
            )
            .is_ok()
        );
    }
}
