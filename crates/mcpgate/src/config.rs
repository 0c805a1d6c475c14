//! Configuration: one TOML file (`deny_unknown_fields`), validated into the
//! runtime [`Config`]. Secrets are `${env:NAME}` or `${file:PATH}`
//! references and never printed. Without a file, embedded defaults apply:
//! SQLite in the data directory, `http://127.0.0.1:8080`, the demo scopes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use mcpgate_authz::{AuthzSettings, Grantees, ResourceDef, ScopeDef};
use mcpgate_jose::KeyAlg;
use mcpgate_store::SqliteDurability;
use mcpgate_types::Secret;
use mcpgate_types::client_metadata::TokenEndpointAuthMethod;
use serde::Deserialize;

/// A configuration error, naming the file, the field and (where known) the line.
#[derive(Debug, thiserror::Error)]
#[error("{location}: {field}: {message}")]
pub struct ConfigError {
    pub location: String,
    pub field: String,
    pub message: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub public_url: Option<toml::Spanned<String>>,
    pub listen: Option<toml::Spanned<String>>,
    /// Client connections served at once on the main listener (default 10000);
    /// more wait in the kernel's accept queue.
    pub max_connections: Option<usize>,
    /// Seconds between SIGTERM and closing the listener, `/readyz` 503.
    pub shutdown_delay_secs: Option<u64>,
    pub data_dir: Option<PathBuf>,
    pub trust_forwarded_proto: Option<bool>,
    pub master_key: Option<String>,
    pub log_format: Option<String>,
    #[serde(default)]
    pub tls: TlsFile,
    #[serde(default)]
    pub metrics: MetricsFile,
    #[serde(default)]
    pub store: StoreFile,
    #[serde(default)]
    pub authorization_server: AsFile,
    #[serde(default, rename = "client")]
    pub clients: Vec<ClientFile>,
    /// `[gateway]`: settings shared by every upstream.
    #[serde(default)]
    pub gateway: mcpgate_gateway::config::GatewayFile,
    /// `[[upstream]]`: MCP servers the gateway protects, each at `{public_url}/mcp/{name}`.
    #[serde(default, rename = "upstream")]
    pub upstreams: Vec<mcpgate_gateway::config::UpstreamFile>,
    /// `[[identity_provider]]`: upstream sign-in (see docs/identity-providers.md).
    #[serde(default, rename = "identity_provider")]
    pub identity_providers: Vec<mcpgate_authz::IdentityProviderFile>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub self_signed: Option<bool>,
}

/// `[metrics]`: where `/metrics` is served and who may read it.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MetricsFile {
    /// A listener of its own (`IP:port`) for `/metrics`, `/healthz` and `/readyz`.
    pub listen: Option<String>,
    /// Require `Authorization: Bearer <this>` (a secret reference).
    pub bearer_token: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StoreFile {
    pub backend: Option<String>,
    pub sqlite_path: Option<PathBuf>,
    pub sqlite_synchronous: Option<String>,
    pub postgres_url: Option<String>,
}

/// One `[[authorization_server.workload_issuer]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadIssuerFile {
    /// The issuer identifier, exactly as its JWTs carry it.
    pub issuer: String,
    /// Where its public keys are published.
    pub jwks_uri: String,
    /// Workload (`sub`) → the client id it stands for.
    pub subjects: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AsFile {
    pub scopes: Option<BTreeMap<String, String>>,
    /// Who may be granted each scope (scope → grantees).
    pub grantable_to: Option<BTreeMap<String, GranteesFile>>,
    /// Whether a scope without a rule may be granted to anyone (default) or to no one.
    pub grantable_by_default: Option<bool>,
    pub resources: Option<Vec<ResourceFile>>,
    pub access_token_ttl_secs: Option<i64>,
    pub refresh_token_ttl_secs: Option<i64>,
    pub refresh_reuse_grace_secs: Option<i64>,
    /// DPoP token requests must carry a nonce of this server (RFC 9449 §8).
    pub dpop_require_nonce: Option<bool>,
    /// `[[authorization_server.workload_issuer]]`: workload identity issuers
    /// whose JWTs the JWT-bearer grant takes (SEP-1933).
    #[serde(default, rename = "workload_issuer")]
    pub workload_issuers: Vec<WorkloadIssuerFile>,
    pub login_session_ttl_secs: Option<i64>,
    pub signing_alg: Option<String>,
    pub key_grace_secs: Option<i64>,
    pub introspection_clients: Option<Vec<String>>,
    /// Replaced by `trusted_proxies`; `true` is refused with directions.
    pub trust_forwarded_for: Option<bool>,
    /// Proxies (addresses or CIDR ranges) whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Option<Vec<String>>,
    pub local_login: Option<bool>,
    #[serde(default)]
    pub dcr: DcrFile,
    #[serde(default)]
    pub cimd: CimdFile,
    #[serde(default)]
    pub login: LoginFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceFile {
    pub uri: String,
    pub name: Option<String>,
    /// Rules for tokens of this resource, in place of the scopes' own.
    pub grantable_to: Option<BTreeMap<String, GranteesFile>>,
}

/// `{ users = [...], groups = [...], clients = [...] }`: who may be granted a scope.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct GranteesFile {
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub clients: Vec<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DcrFile {
    pub enabled: Option<bool>,
    pub initial_access_token: Option<String>,
    pub per_ip_per_hour: Option<u32>,
    pub max_per_hour: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CimdFile {
    pub enabled: Option<bool>,
    pub allow_http_loopback: Option<bool>,
    pub max_cache_secs: Option<i64>,
    pub min_cache_secs: Option<i64>,
    /// Only documents on these hosts (`host` or `*.domain`).
    pub allowed_hosts: Option<Vec<String>>,
    /// Never documents on these hosts (same forms).
    pub denied_hosts: Option<Vec<String>>,
    pub fetches_per_host_per_minute: Option<u32>,
    pub fetches_per_minute: Option<u32>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LoginFile {
    pub per_account: Option<u32>,
    pub per_ip: Option<u32>,
    pub window_secs: Option<u64>,
    /// Password hashes at once (default: one per core).
    pub max_concurrent_hashes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientFile {
    pub client_id: String,
    pub name: String,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    pub auth_method: Option<String>,
    pub client_secret: Option<String>,
    pub grant_types: Option<Vec<String>>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// `private_key_jwt`: where the client publishes its public keys, or
    /// (exclusive) a file holding its public JWK set.
    pub jwks_uri: Option<String>,
    pub jwks_file: Option<PathBuf>,
}

/// Reads a client's public JWK set (JSON) from `path`.
pub fn read_jwks_file(path: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read the JWK set {}: {e}", path.display()))?;
    serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("the JWK set {} is not JSON: {e}", path.display()))
}

/// Which database.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    Sqlite(PathBuf, SqliteDurability),
    Postgres(Secret),
}

#[derive(Debug, Clone)]
pub enum TlsConfig {
    None,
    Files { cert: PathBuf, key: PathBuf },
    SelfSigned,
}

/// Where `/metrics` is served.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// Its own listener; `None`: the main one.
    pub listen: Option<SocketAddr>,
    /// The bearer token it requires, if any.
    pub token: Option<Secret>,
    /// Served at all: with a listener or a token of its own, or on a
    /// loopback main listener. Off otherwise (counts and upstream names
    /// are not for the Internet).
    pub served: bool,
}

/// Where the master key comes from.
#[derive(Debug, Clone)]
pub enum MasterKeySource {
    /// Resolved from `${env:}`/`${file:}`.
    Configured(Secret),
    /// `{data_dir}/master.key`, generated with mode 0600 when absent.
    DataDirFile(PathBuf),
}

/// A client declared in the config file (upserted at start).
#[derive(Debug, Clone)]
pub struct ConfigClient {
    pub spec: mcpgate_authz::admin::ClientSpec,
}

/// Default `max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Largest `shutdown_delay_secs`.
pub const MAX_SHUTDOWN_DELAY_SECS: u64 = 300;

/// The validated runtime configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: String,
    pub listen: SocketAddr,
    /// Connections served at once (`max_connections`).
    pub max_connections: usize,
    /// After SIGTERM, how long `/readyz` answers 503 while the listener
    /// still serves, before it closes (`shutdown_delay_secs`).
    pub shutdown_delay: std::time::Duration,
    pub data_dir: PathBuf,
    pub tls: TlsConfig,
    pub trust_forwarded_proto: bool,
    pub metrics: MetricsConfig,
    pub store: StoreConfig,
    pub master_key: MasterKeySource,
    pub log_json: bool,
    pub authz: AuthzSettings,
    pub clients: Vec<ConfigClient>,
    /// The gateway: its upstreams are also resources of `authz`.
    pub gateway: mcpgate_gateway::GatewaySettings,
}

/// Command-line overrides that take part in validation.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub tls_self_signed: bool,
}

/// Finds the config file: `--config`, else `./mcpgate.toml`, else
/// `$XDG_CONFIG_HOME/mcpgate/mcpgate.toml`; `None` means embedded defaults.
pub fn find(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    let local = PathBuf::from("mcpgate.toml");
    if local.is_file() {
        return Some(local);
    }
    let xdg = dirs::config_dir()?.join("mcpgate").join("mcpgate.toml");
    xdg.is_file().then_some(xdg)
}

pub fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .map(|d| d.join("mcpgate"))
        .unwrap_or_else(|| PathBuf::from(".mcpgate"))
}

/// Loads and validates. `path = None` gives the embedded defaults.
pub fn load(path: Option<&Path>, ov: &Overrides) -> Result<Config, ConfigError> {
    let (text, source) = match path {
        Some(p) => {
            let t = std::fs::read_to_string(p).map_err(|e| ConfigError {
                location: p.display().to_string(),
                field: "(file)".into(),
                message: format!("cannot read: {e}"),
            })?;
            (t, p.display().to_string())
        }
        None => (String::new(), EMBEDDED.to_string()),
    };
    from_text(&text, &source, ov)
}

/// Parses and validates the text of a configuration file read from `source`.
fn from_text(text: &str, source: &str, ov: &Overrides) -> Result<Config, ConfigError> {
    let file: FileConfig = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        ConfigError {
            location: match line {
                Some(l) => format!("{source}:{l}"),
                None => source.to_string(),
            },
            field: "(syntax)".into(),
            message: e.message().to_string(),
        }
    })?;
    Validator {
        text,
        source,
        secret_files: std::cell::RefCell::new(Vec::new()),
    }
    .validate(file, ov)
}

/// The `source` of a configuration built from the embedded defaults.
const EMBEDDED: &str = "embedded defaults";

/// The demo upstream of the embedded defaults: this binary's `demo-upstream`
/// (the notes server) over stdio, one child shared by every session, as
/// `/mcp/notes`, with the baseline
/// `notes:read`, `add_note` needing `notes:write` and `delete_note`
/// `notes:admin`.
fn demo_upstream() -> mcpgate_gateway::config::UpstreamFile {
    use mcpgate_gateway::config::{StdioFile, ToolFile, UpstreamFile};
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "mcpgate".into());
    let tool = |scope: &str| ToolFile {
        scopes: vec![scope.to_string()],
        ..ToolFile::default()
    };
    UpstreamFile {
        name: "notes".into(),
        title: Some("Notes (demo)".into()),
        stdio: Some(StdioFile {
            command: exe,
            args: vec!["demo-upstream".into()],
            cwd: None,
            env: BTreeMap::new(),
        }),
        http: None,
        auth: None,
        scopes: vec!["notes:read".into()],
        tools: BTreeMap::from([
            ("add_note".to_string(), tool("notes:write")),
            ("delete_note".to_string(), tool("notes:admin")),
        ]),
        default_tool: None,
        prompts: BTreeMap::new(),
        default_prompt: None,
        resources: BTreeMap::new(),
        default_resource: None,
        scope_implies: BTreeMap::from([
            ("notes:admin".to_string(), vec!["notes:write".to_string()]),
            ("notes:write".to_string(), vec!["notes:read".to_string()]),
        ]),
        list: None,
        // One child for every session, so that a note added by one
        // `mcpgate call` is there for the next (each call is a session).
        shared: Some(true),
        rate_limit: None,
        allowed_origins: Vec::new(),
        timeout_secs: None,
        sandbox: None,
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

struct Validator<'a> {
    text: &'a str,
    source: &'a str,
    /// Every file a `${file:PATH}` secret was read from: no stdio child's
    /// sandbox may open them.
    secret_files: std::cell::RefCell<Vec<PathBuf>>,
}

impl Validator<'_> {
    /// An error for `field`, with the line of `key =` in the file if found.
    fn err(&self, field: &str, message: impl Into<String>) -> ConfigError {
        let key = field.rsplit('.').next().unwrap_or(field);
        let line = self.text.lines().position(|l| {
            let t = l.trim_start();
            t.starts_with(key) && t[key.len()..].trim_start().starts_with('=')
        });
        ConfigError {
            location: match line {
                Some(l) => format!("{}:{}", self.source, l + 1),
                None => self.source.to_string(),
            },
            field: field.to_string(),
            message: message.into(),
        }
    }

    fn err_at(
        &self,
        field: &str,
        span: std::ops::Range<usize>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            location: format!("{}:{}", self.source, line_of(self.text, span.start)),
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// Resolves `${env:NAME}` / `${file:PATH}`. Plain values are refused for
    /// fields that must never sit in the file (`plain_ok = false`).
    fn metrics(&self, m: &MetricsFile, main: SocketAddr) -> Result<MetricsConfig, ConfigError> {
        let listen = match &m.listen {
            Some(l) => {
                let a: SocketAddr = l.parse().map_err(|_| {
                    self.err("metrics.listen", format!("{l:?} is not an IP:port address"))
                })?;
                if a == main {
                    return Err(self.err(
                        "metrics.listen",
                        "must differ from listen (leave it out to serve /metrics there)",
                    ));
                }
                Some(a)
            }
            None => None,
        };
        let token = match &m.bearer_token {
            Some(t) => {
                let s = self.secret("metrics.bearer_token", t, false)?;
                // Read back with the guard's bearer parser: a token68 value.
                if s.expose().len() < 16 || !mcpgate_guard::bearer::is_token68(s.expose()) {
                    return Err(self.err(
                        "metrics.bearer_token",
                        "must be at least 16 characters of A-Z a-z 0-9 - . _ ~ + / (then =)",
                    ));
                }
                Some(s)
            }
            None => None,
        };
        let served = listen.is_some() || token.is_some() || main.ip().is_loopback();
        Ok(MetricsConfig {
            listen,
            token,
            served,
        })
    }

    fn secret(&self, field: &str, raw: &str, plain_ok: bool) -> Result<Secret, ConfigError> {
        if let Some(name) = raw.strip_prefix("${env:").and_then(|r| r.strip_suffix('}')) {
            return std::env::var(name)
                .map(Secret::new)
                .map_err(|_| self.err(field, format!("environment variable {name} is not set")));
        }
        if let Some(path) = raw
            .strip_prefix("${file:")
            .and_then(|r| r.strip_suffix('}'))
        {
            let secret = std::fs::read_to_string(path)
                .map(|s| Secret::new(s.trim_end_matches(['\n', '\r']).to_string()))
                .map_err(|e| self.err(field, format!("cannot read secret file {path}: {e}")))?;
            self.secret_files.borrow_mut().push(PathBuf::from(path));
            return Ok(secret);
        }
        if raw.starts_with("${") {
            return Err(self.err(field, "secret references are ${env:NAME} or ${file:PATH}"));
        }
        if plain_ok {
            Ok(Secret::new(raw))
        } else {
            Err(self.err(field, "secrets must not be written in the config file: use \"${env:NAME}\" or \"${file:PATH}\""))
        }
    }

    fn validate(&self, f: FileConfig, ov: &Overrides) -> Result<Config, ConfigError> {
        // Listener and issuer.
        let (listen_raw, listen_span) = match (&ov.listen, &f.listen) {
            (Some(l), _) => (l.clone(), None),
            (None, Some(s)) => (s.get_ref().clone(), Some(s.span())),
            (None, None) => ("127.0.0.1:8080".to_string(), None),
        };
        let listen: SocketAddr = listen_raw.parse().map_err(|_| {
            let m = format!("{listen_raw:?} is not an IP:port address (e.g. 127.0.0.1:8080)");
            match listen_span.clone() {
                Some(s) => self.err_at("listen", s, m),
                None => self.err("listen", m),
            }
        })?;
        let (public_url, pu_span) = match &f.public_url {
            Some(s) => (s.get_ref().clone(), Some(s.span())),
            None if f.listen.is_none() && ov.listen.is_none() => {
                ("http://127.0.0.1:8080".to_string(), None)
            }
            None => (format!("http://{listen}"), None),
        };
        let pu_err = |m: String| match pu_span.clone() {
            Some(s) => self.err_at("public_url", s, m),
            None => self.err("public_url", m),
        };
        let parsed = url::Url::parse(&public_url)
            .map_err(|_| pu_err(format!("{public_url:?} is not an absolute URL")))?;
        if parsed.query().is_some() || parsed.fragment().is_some() || !parsed.username().is_empty()
        {
            return Err(pu_err(
                "the issuer URL must not have a query, fragment or user info (RFC 8414 §2)".into(),
            ));
        }
        if public_url.ends_with('/') {
            return Err(pu_err(
                "leave off the trailing slash: the issuer is compared byte for byte".into(),
            ));
        }
        let tls = match (
            &f.tls.cert,
            &f.tls.key,
            ov.tls_self_signed || f.tls.self_signed.unwrap_or(false),
        ) {
            (Some(c), Some(k), false) => TlsConfig::Files {
                cert: c.clone(),
                key: k.clone(),
            },
            (None, None, true) => TlsConfig::SelfSigned,
            (None, None, false) => TlsConfig::None,
            (Some(_), Some(_), true) => {
                return Err(self.err(
                    "tls.self_signed",
                    "choose certificate files or a self-signed certificate, not both",
                ));
            }
            _ => return Err(self.err("tls.cert", "tls.cert and tls.key go together")),
        };
        let trust_forwarded_proto = f.trust_forwarded_proto.unwrap_or(false);
        match parsed.scheme() {
            "http" => {
                let host_loopback = mcpgate_types::redirect_uri::is_loopback_host(&parsed);
                if !(host_loopback && listen.ip().is_loopback()) {
                    return Err(pu_err(format!(
                        "plain http is allowed only when public_url and listen are both loopback (listen is {listen}). \
                         Use an https public_url with tls.cert/tls.key (or --tls-self-signed for local testing), \
                         or set trust_forwarded_proto = true behind a TLS-terminating proxy"
                    )));
                }
                if !matches!(tls, TlsConfig::None) {
                    return Err(pu_err(
                        "TLS is configured, so public_url must start with https://".into(),
                    ));
                }
            }
            "https" => {
                if matches!(tls, TlsConfig::None) && !trust_forwarded_proto {
                    return Err(pu_err(
                        "an https public_url needs TLS here: set tls.cert and tls.key, use --tls-self-signed for local testing, \
                         or set trust_forwarded_proto = true if a TLS-terminating proxy sits in front"
                            .into(),
                    ));
                }
            }
            other => return Err(pu_err(format!("scheme {other:?} is not http or https"))),
        }

        let metrics = self.metrics(&f.metrics, listen)?;
        let data_dir = ov
            .data_dir
            .clone()
            .or(f.data_dir.clone())
            .unwrap_or_else(default_data_dir);
        let store = match f.store.backend.as_deref().unwrap_or("sqlite") {
            "sqlite" => StoreConfig::Sqlite(
                f.store
                    .sqlite_path
                    .clone()
                    .unwrap_or_else(|| data_dir.join("mcpgate.db")),
                match f.store.sqlite_synchronous.as_deref() {
                    None | Some("full") => SqliteDurability::Full,
                    Some("normal") => SqliteDurability::Normal,
                    Some(other) => {
                        return Err(self.err(
                            "store.sqlite_synchronous",
                            format!("{other:?} is not \"full\" or \"normal\""),
                        ));
                    }
                },
            ),
            "postgres" if f.store.sqlite_synchronous.is_some() => {
                return Err(self.err(
                    "store.sqlite_synchronous",
                    "only applies to store.backend = \"sqlite\"",
                ));
            }
            "postgres" => {
                let raw = f.store.postgres_url.as_deref().ok_or_else(|| {
                    self.err(
                        "store.postgres_url",
                        "required when store.backend = \"postgres\"",
                    )
                })?;
                StoreConfig::Postgres(self.secret("store.postgres_url", raw, true)?)
            }
            other => {
                return Err(self.err(
                    "store.backend",
                    format!("{other:?} is not \"sqlite\" or \"postgres\""),
                ));
            }
        };
        let master_key = match &f.master_key {
            Some(raw) => MasterKeySource::Configured(self.secret("master_key", raw, false)?),
            None => MasterKeySource::DataDirFile(data_dir.join("master.key")),
        };
        let log_json = match f.log_format.as_deref().unwrap_or("text") {
            "text" => false,
            "json" => true,
            other => {
                return Err(self.err(
                    "log_format",
                    format!("{other:?} is not \"text\" or \"json\""),
                ));
            }
        };

        let mut authz = self.authz(&f.authorization_server, &public_url)?;
        authz.identity_providers = mcpgate_authz::idp_file::providers(
            &f.identity_providers,
            |field, raw| self.secret(field, raw, false),
            |field, m| self.err(field, m),
        )?;
        let mut gateway = self.gateway(&f, &public_url, listen.ip().is_loopback(), &mut authz)?;
        let mut clients = Vec::new();
        for (i, c) in f.clients.iter().enumerate() {
            let field = |n: &str| format!("client[{i}].{n}");
            let auth_method = match c.auth_method.as_deref() {
                None => {
                    if c.client_secret.is_some() {
                        TokenEndpointAuthMethod::ClientSecretBasic
                    } else {
                        TokenEndpointAuthMethod::None
                    }
                }
                Some(m) => TokenEndpointAuthMethod::parse(m).ok_or_else(|| {
                    self.err(
                        &field("auth_method"),
                        format!("{m:?} is not none, client_secret_basic, client_secret_post or private_key_jwt"),
                    )
                })?,
            };
            let secret = c
                .client_secret
                .as_deref()
                .map(|s| self.secret(&field("client_secret"), s, false))
                .transpose()?;
            let keyed = auth_method == TokenEndpointAuthMethod::PrivateKeyJwt;
            match (keyed, &c.jwks_uri, &c.jwks_file, &c.client_secret) {
                (true, None, None, _) => {
                    return Err(self.err(
                        &field("jwks_uri"),
                        "auth_method = \"private_key_jwt\" needs jwks_uri or jwks_file (the client's public keys)",
                    ));
                }
                (true, Some(_), Some(_), _) => {
                    return Err(
                        self.err(&field("jwks_file"), "give jwks_uri or jwks_file, not both")
                    );
                }
                (true, _, _, Some(_)) => {
                    return Err(self.err(
                        &field("client_secret"),
                        "not used with auth_method = \"private_key_jwt\"; remove it",
                    ));
                }
                (false, Some(_), _, _) | (false, _, Some(_), _) => {
                    return Err(self.err(
                        &field("jwks_uri"),
                        "jwks_uri and jwks_file are only used with auth_method = \"private_key_jwt\"",
                    ));
                }
                _ => {}
            }
            let jwks = c
                .jwks_file
                .as_deref()
                .map(read_jwks_file)
                .transpose()
                .map_err(|e| self.err(&field("jwks_file"), e.to_string()))?;
            if auth_method.uses_secret() && secret.is_none() {
                return Err(self.err(&field("client_secret"), "a confidential client in the config file needs client_secret = \"${env:...}\" or \"${file:...}\""));
            }
            clients.push(ConfigClient {
                spec: mcpgate_authz::admin::ClientSpec {
                    client_id: Some(c.client_id.clone()),
                    name: c.name.clone(),
                    redirect_uris: c.redirect_uris.clone(),
                    auth_method,
                    grant_types: c.grant_types.clone().unwrap_or_else(|| {
                        vec!["authorization_code".into(), "refresh_token".into()]
                    }),
                    scopes: c.scopes.clone(),
                    secret: secret.map(|s| s.expose().to_string()),
                    jwks,
                    jwks_uri: c.jwks_uri.clone(),
                },
            });
        }
        // One listener, one notion of who the client is.
        gateway.trusted_proxies = authz.trusted_proxies.clone();
        // What no stdio child's sandbox may open: mcpgate's own files.
        gateway.protected_paths.push(data_dir.clone());
        if let StoreConfig::Sqlite(p, _) = &store {
            gateway.protected_paths.push(p.clone());
        }
        if let MasterKeySource::DataDirFile(p) = &master_key {
            gateway.protected_paths.push(p.clone());
        }
        if let TlsConfig::Files { key, .. } = &tls {
            gateway.protected_paths.push(key.clone());
        }
        if self.source != EMBEDDED {
            gateway.protected_paths.push(PathBuf::from(self.source));
        }
        // The files `${file:PATH}` secrets came from (all are resolved by now:
        // store, master key, clients, identity providers, upstreams, metrics).
        for p in self.secret_files.take() {
            if !gateway.protected_paths.contains(&p) {
                gateway.protected_paths.push(p);
            }
        }
        let max_connections = match f.max_connections {
            Some(0) => return Err(self.err("max_connections", "must be at least 1")),
            Some(n) => n,
            None => DEFAULT_MAX_CONNECTIONS,
        };
        let shutdown_delay = match f.shutdown_delay_secs {
            Some(n) if n > MAX_SHUTDOWN_DELAY_SECS => {
                return Err(self.err(
                    "shutdown_delay_secs",
                    format!("at most {MAX_SHUTDOWN_DELAY_SECS}"),
                ));
            }
            n => std::time::Duration::from_secs(n.unwrap_or(0)),
        };
        Ok(Config {
            source: self.source.to_string(),
            listen,
            max_connections,
            shutdown_delay,
            data_dir,
            tls,
            trust_forwarded_proto,
            metrics,
            store,
            master_key,
            log_json,
            authz,
            clients,
            gateway,
        })
    }

    /// Validates `[gateway]` and `[[upstream]]`; every upstream's resource
    /// `{public_url}/mcp/{name}` is added to the authorization server's
    /// resources. Without a config file, the demo `notes` upstream (this
    /// binary's `demo-upstream` subcommand over stdio) is configured.
    fn gateway(
        &self,
        f: &FileConfig,
        public_url: &str,
        loopback_listener: bool,
        authz: &mut AuthzSettings,
    ) -> Result<mcpgate_gateway::GatewaySettings, ConfigError> {
        use mcpgate_gateway::config as gw;
        let mut upstreams = f.upstreams.clone();
        if self.source == EMBEDDED && upstreams.is_empty() {
            upstreams.push(demo_upstream());
        }
        let resolve = |field: &str, raw: &str, plain_ok: bool| {
            self.secret(field, raw, plain_ok)
                .map_err(|e| gw::ConfigError {
                    field: e.field,
                    message: e.message,
                })
        };
        let settings = gw::validate(
            public_url,
            loopback_listener,
            &f.gateway,
            &upstreams,
            &resolve,
        )
        .map_err(|e| self.err(&e.field, e.message))?;
        for u in &settings.upstreams {
            if !authz.resources.iter().any(|r| r.uri == u.resource) {
                authz
                    .resources
                    .push(ResourceDef::new(u.resource.clone(), u.title.clone()));
            }
        }
        Ok(settings)
    }

    /// `grantable_to` rules, each for a configured scope.
    fn grantees(
        &self,
        field: &str,
        s: &AuthzSettings,
        rules: &BTreeMap<String, GranteesFile>,
    ) -> Result<Vec<(String, Grantees)>, ConfigError> {
        let mut out = Vec::new();
        for (scope, g) in rules {
            if s.scope(scope).is_none() {
                return Err(self.err(
                    field,
                    format!("{scope:?} is not one of authorization_server.scopes"),
                ));
            }
            out.push((
                scope.clone(),
                Grantees {
                    users: g.users.clone(),
                    groups: g.groups.clone(),
                    clients: g.clients.clone(),
                },
            ));
        }
        Ok(out)
    }

    fn authz(&self, a: &AsFile, issuer: &str) -> Result<AuthzSettings, ConfigError> {
        let mut s = AuthzSettings::with_issuer(issuer);
        let scopes = a.scopes.clone().unwrap_or_else(|| {
            BTreeMap::from([
                ("notes:read".to_string(), "Read your notes".to_string()),
                ("notes:write".to_string(), "Add notes".to_string()),
                ("notes:admin".to_string(), "Delete notes".to_string()),
                (
                    "offline_access".to_string(),
                    "Stay connected when you are away (refresh tokens)".to_string(),
                ),
            ])
        });
        let embedded = a.scopes.is_none();
        for (name, description) in scopes {
            if !mcpgate_types::scope::is_scope_token(&name) {
                return Err(self.err(
                    "authorization_server.scopes",
                    format!("{name:?} is not a valid scope token (RFC 6749 §3.3)"),
                ));
            }
            s.scopes.push(ScopeDef::new(name, description));
        }
        // The demo's notes:admin is for the demo's admins only.
        let rules = match (&a.grantable_to, embedded) {
            (Some(r), _) => r.clone(),
            (None, true) => BTreeMap::from([(
                "notes:admin".to_string(),
                GranteesFile {
                    groups: vec!["admins".into()],
                    ..Default::default()
                },
            )]),
            (None, false) => BTreeMap::new(),
        };
        for (scope, rule) in self.grantees("authorization_server.grantable_to", &s, &rules)? {
            if let Some(d) = s.scopes.iter_mut().find(|d| d.name == scope) {
                d.grantable_to = Some(rule);
            }
        }
        s.grantable_by_default = a.grantable_by_default.unwrap_or(true);
        let resources = match &a.resources {
            Some(r) => r
                .iter()
                .map(|r| (r.uri.clone(), r.name.clone(), r.grantable_to.clone()))
                .collect(),
            None => vec![(
                format!("{issuer}/mcp/notes"),
                Some("Notes (demo)".to_string()),
                None,
            )],
        };
        for (uri, name, rules) in resources {
            mcpgate_types::resource::validate(&uri)
                .map_err(|e| self.err("authorization_server.resources", format!("{uri:?}: {e}")))?;
            if uri.ends_with('/') {
                return Err(self.err(
                    "authorization_server.resources",
                    format!("{uri:?}: leave off the trailing slash (canonical resource URI)"),
                ));
            }
            let name = name.unwrap_or_else(|| uri.clone());
            let field = "authorization_server.resources.grantable_to";
            let rules = self.grantees(field, &s, &rules.unwrap_or_default())?;
            s.resources.push(ResourceDef {
                grantable_to: rules,
                ..ResourceDef::new(uri, name)
            });
        }
        let pos =
            |field: &str, v: Option<i64>, default: i64, max: i64| -> Result<i64, ConfigError> {
                let v = v.unwrap_or(default);
                if v <= 0 || v > max {
                    return Err(self.err(field, format!("must be between 1 and {max} seconds")));
                }
                Ok(v)
            };
        s.access_token_ttl = pos(
            "authorization_server.access_token_ttl_secs",
            a.access_token_ttl_secs,
            600,
            24 * 3600,
        )?;
        s.refresh_token_ttl = pos(
            "authorization_server.refresh_token_ttl_secs",
            a.refresh_token_ttl_secs,
            30 * 24 * 3600,
            365 * 24 * 3600,
        )?;
        s.refresh_reuse_grace_secs = match a.refresh_reuse_grace_secs {
            None => 5,
            Some(g) if (0..=60).contains(&g) => g,
            Some(_) => {
                return Err(self.err(
                    "authorization_server.refresh_reuse_grace_secs",
                    "must be between 0 (off) and 60 seconds",
                ));
            }
        };
        s.dpop_require_nonce = a.dpop_require_nonce.unwrap_or(false);
        for (i, w) in a.workload_issuers.iter().enumerate() {
            let field = |n: &str| format!("authorization_server.workload_issuer[{i}].{n}");
            if w.issuer.is_empty() {
                return Err(self.err(&field("issuer"), "the issuer identifier is required"));
            }
            if a.workload_issuers[..i].iter().any(|o| o.issuer == w.issuer) {
                return Err(self.err(&field("issuer"), "this issuer is listed twice"));
            }
            let uri_ok = url::Url::parse(&w.jwks_uri)
                .is_ok_and(|u| matches!(u.scheme(), "https" | "http") && u.host().is_some());
            if !uri_ok {
                return Err(self.err(
                    &field("jwks_uri"),
                    "must be the https URL of the issuer's JWK set",
                ));
            }
            if w.subjects.is_empty() || w.subjects.iter().any(|(s, c)| s.is_empty() || c.is_empty())
            {
                return Err(self.err(
                    &field("subjects"),
                    "map each workload (sub) to the client id it stands for, e.g. \
                     subjects = { \"spiffe://prod/ns/app\" = \"app-client\" }",
                ));
            }
            s.workload_issuers.push(mcpgate_authz::WorkloadIssuer {
                issuer: w.issuer.clone(),
                jwks_uri: w.jwks_uri.clone(),
                subjects: w.subjects.clone(),
            });
        }
        s.login_session_ttl = pos(
            "authorization_server.login_session_ttl_secs",
            a.login_session_ttl_secs,
            12 * 3600,
            30 * 24 * 3600,
        )?;
        s.key_grace_secs = pos(
            "authorization_server.key_grace_secs",
            a.key_grace_secs,
            24 * 3600,
            365 * 24 * 3600,
        )?;
        if s.key_grace_secs < s.access_token_ttl {
            return Err(self.err("authorization_server.key_grace_secs", "must be at least access_token_ttl_secs, or rotated keys would invalidate live tokens"));
        }
        s.signing_alg = match a.signing_alg.as_deref() {
            None => KeyAlg::Es256,
            Some(x) => KeyAlg::parse(x).ok_or_else(|| {
                self.err(
                    "authorization_server.signing_alg",
                    format!("{x:?} is not ES256 or EdDSA"),
                )
            })?,
        };
        s.introspection_clients = a.introspection_clients.clone().unwrap_or_default();
        if a.trust_forwarded_for == Some(true) {
            return Err(self.err(
                "authorization_server.trust_forwarded_for",
                "replaced by trusted_proxies: list your proxies' addresses or ranges, e.g. trusted_proxies = [\"10.0.0.0/8\"]",
            ));
        }
        for p in a.trusted_proxies.iter().flatten() {
            let net = p
                .parse::<ipnet::IpNet>()
                .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    self.err(
                        "authorization_server.trusted_proxies",
                        format!("{p:?} is not an IP address or CIDR range"),
                    )
                })?;
            s.trusted_proxies.push(net);
        }
        s.local_login = a.local_login.unwrap_or(true);
        s.dcr.enabled = a.dcr.enabled.unwrap_or(true);
        s.dcr.initial_access_token = a
            .dcr
            .initial_access_token
            .as_deref()
            .map(|t| self.secret("authorization_server.dcr.initial_access_token", t, false))
            .transpose()?;
        s.dcr.per_ip_per_hour = a.dcr.per_ip_per_hour.unwrap_or(20);
        s.dcr.max_per_hour = a.dcr.max_per_hour.unwrap_or(1000);
        s.cimd.enabled = a.cimd.enabled.unwrap_or(true);
        s.cimd.allow_http_loopback = a.cimd.allow_http_loopback.unwrap_or(false);
        s.cimd.max_cache_secs = pos(
            "authorization_server.cimd.max_cache_secs",
            a.cimd.max_cache_secs,
            24 * 3600,
            24 * 3600,
        )?;
        s.cimd.min_cache_secs = pos(
            "authorization_server.cimd.min_cache_secs",
            a.cimd.min_cache_secs,
            60,
            24 * 3600,
        )?
        .min(s.cimd.max_cache_secs);
        for (field, list, out) in [
            (
                "allowed_hosts",
                &a.cimd.allowed_hosts,
                &mut s.cimd.allowed_hosts,
            ),
            (
                "denied_hosts",
                &a.cimd.denied_hosts,
                &mut s.cimd.denied_hosts,
            ),
        ] {
            for h in list.iter().flatten() {
                let bare = h.strip_prefix("*.").unwrap_or(h);
                let ok = !bare.is_empty()
                    && bare.len() <= 253
                    && !bare.starts_with('.')
                    && !bare.ends_with('.')
                    && bare
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
                if !ok {
                    return Err(self.err(
                        &format!("authorization_server.cimd.{field}"),
                        format!("{h:?} is not a host name or *.domain (letters, digits, - and ., no scheme or port)"),
                    ));
                }
                out.push(h.to_ascii_lowercase());
            }
        }
        for (field, v, out) in [
            (
                "fetches_per_host_per_minute",
                a.cimd.fetches_per_host_per_minute,
                &mut s.cimd.fetches_per_host_per_minute,
            ),
            (
                "fetches_per_minute",
                a.cimd.fetches_per_minute,
                &mut s.cimd.fetches_per_minute,
            ),
        ] {
            match v {
                Some(0) => {
                    return Err(self.err(
                        &format!("authorization_server.cimd.{field}"),
                        "must be at least 1 (set enabled = false to turn documents off)",
                    ));
                }
                Some(n) => *out = n,
                None => {}
            }
        }
        s.login.per_account = a.login.per_account.unwrap_or(5).max(1);
        s.login.per_ip = a.login.per_ip.unwrap_or(20).max(1);
        s.login.window_secs = a.login.window_secs.unwrap_or(60).max(1);
        if let Some(n) = a.login.max_concurrent_hashes {
            if n == 0 {
                return Err(self.err(
                    "authorization_server.login.max_concurrent_hashes",
                    "must be at least 1",
                ));
            }
            s.login.max_concurrent_hashes = n;
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(s: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("mcpgate.toml");
        std::fs::write(&p, s).unwrap();
        load(Some(&p), &Overrides::default())
    }

    #[test]
    fn embedded_defaults_are_loopback_sqlite() {
        let c = load(None, &Overrides::default()).unwrap();
        assert_eq!(c.authz.issuer, "http://127.0.0.1:8080");
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert!(matches!(
            c.store,
            StoreConfig::Sqlite(_, SqliteDurability::Full)
        ));
        assert_eq!(c.authz.resources[0].uri, "http://127.0.0.1:8080/mcp/notes");
    }

    #[test]
    fn sqlite_synchronous_is_full_unless_set_to_normal() {
        let c = load_str("[store]\nsqlite_synchronous = \"normal\"\n").unwrap();
        assert!(matches!(
            c.store,
            StoreConfig::Sqlite(_, SqliteDurability::Normal)
        ));
        let c = load_str("[store]\nsqlite_synchronous = \"full\"\n").unwrap();
        assert!(matches!(
            c.store,
            StoreConfig::Sqlite(_, SqliteDurability::Full)
        ));
        for bad in ["\"off\"", "\"FULL\"", "\"\""] {
            let e = load_str(&format!("[store]\nsqlite_synchronous = {bad}\n")).unwrap_err();
            assert!(
                e.to_string().contains("store.sqlite_synchronous"),
                "{bad}: {e}"
            );
        }
        // Not a string: refused by type, with the line.
        let e = load_str("[store]\nsqlite_synchronous = 1\n").unwrap_err();
        assert!(e.to_string().contains(":2"), "{e}");
        let e = load_str(
            "[store]\nbackend = \"postgres\"\npostgres_url = \"postgres://u@127.0.0.1/db\"\nsqlite_synchronous = \"normal\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("store.sqlite_synchronous"), "{e}");
    }

    #[test]
    fn unknown_fields_are_refused_with_a_line() {
        let e = load_str(
            "public_url = \"http://127.0.0.1:8080\"\nlisten = \"127.0.0.1:8080\"\nbogus = 1\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains(":3"), "{e}");
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    #[test]
    fn plain_http_off_loopback_is_refused() {
        let e = load_str("public_url = \"http://gw.example.com\"\nlisten = \"0.0.0.0:8080\"\n")
            .unwrap_err();
        assert_eq!(e.field, "public_url");
        assert!(e.location.ends_with(":1"), "{e}");
        assert!(e.message.contains("trust_forwarded_proto"), "{e}");
        let e = load_str("public_url = \"http://127.0.0.1:8080\"\nlisten = \"0.0.0.0:8080\"\n")
            .unwrap_err();
        assert_eq!(e.field, "public_url");
    }

    #[test]
    fn https_needs_tls_or_proxy() {
        assert!(
            load_str("public_url = \"https://gw.example.com\"\nlisten = \"0.0.0.0:8443\"\n")
                .is_err()
        );
        assert!(load_str("public_url = \"https://gw.example.com\"\nlisten = \"0.0.0.0:8443\"\ntrust_forwarded_proto = true\n").is_ok());
        assert!(load_str("public_url = \"https://gw.example.com\"\nlisten = \"0.0.0.0:8443\"\n[tls]\nself_signed = true\n").is_ok());
    }

    #[test]
    fn secrets_must_be_references() {
        let e = load_str("master_key = \"c2VjcmV0\"\n").unwrap_err();
        assert_eq!(e.field, "master_key");
        assert!(!e.to_string().contains("c2VjcmV0"));
        let e = load_str("master_key = \"${env:MCPGATE_TEST_UNSET_VAR_XYZ}\"\n").unwrap_err();
        assert!(e.message.contains("MCPGATE_TEST_UNSET_VAR_XYZ"));
    }

    #[test]
    fn key_clients_read_their_jwks_file_and_take_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let jwks = dir.path().join("svc.jwks.json");
        std::fs::write(&jwks, r#"{"keys": []}"#).unwrap();
        let client = |extra: &str| {
            format!(
                "[[client]]\nclient_id = \"svc\"\nname = \"Service\"\nauth_method = \"private_key_jwt\"\ngrant_types = [\"client_credentials\"]\n{extra}"
            )
        };
        let c = load_str(&client(&format!("jwks_file = \"{}\"\n", jwks.display()))).unwrap();
        let spec = &c.clients[0].spec;
        assert_eq!(spec.auth_method, TokenEndpointAuthMethod::PrivateKeyJwt);
        assert_eq!(spec.jwks, Some(serde_json::json!({"keys": []})));
        assert!(spec.secret.is_none());
        let c = load_str(&client("jwks_uri = \"https://svc.example/jwks\"\n")).unwrap();
        assert_eq!(
            c.clients[0].spec.jwks_uri.as_deref(),
            Some("https://svc.example/jwks")
        );
        // A file that is missing or not JSON names the field.
        std::fs::write(&jwks, "not json").unwrap();
        let e = load_str(&client(&format!("jwks_file = \"{}\"\n", jwks.display()))).unwrap_err();
        assert_eq!(e.field, "client[0].jwks_file");
        let e = load_str(&client("jwks_file = \"/nonexistent/jwks.json\"\n")).unwrap_err();
        assert_eq!(e.field, "client[0].jwks_file");
        // No keys, both kinds, a secret beside the keys, keys for another method.
        assert_eq!(
            load_str(&client("")).unwrap_err().field,
            "client[0].jwks_uri"
        );
        let both = "jwks_uri = \"https://svc.example/jwks\"\njwks_file = \"/x.json\"\n";
        assert_eq!(
            load_str(&client(both)).unwrap_err().field,
            "client[0].jwks_file"
        );
        let secret = "jwks_uri = \"https://svc.example/jwks\"\nclient_secret = \"${env:X}\"\n";
        assert_eq!(
            load_str(&client(secret)).unwrap_err().field,
            "client[0].client_secret"
        );
        let other = client("jwks_uri = \"https://svc.example/jwks\"\n")
            .replace("private_key_jwt", "none")
            .replace("client_credentials", "authorization_code");
        assert_eq!(load_str(&other).unwrap_err().field, "client[0].jwks_uri");
    }

    #[test]
    fn trailing_slash_issuer_is_refused() {
        let e = load_str("public_url = \"http://127.0.0.1:8080/\"\n").unwrap_err();
        assert_eq!(e.field, "public_url");
    }

    #[test]
    fn bad_scope_and_resource() {
        assert!(load_str("[authorization_server]\nscopes = { \"a b\" = \"x\" }\n").is_err());
        assert!(
            load_str("[authorization_server]\nresources = [{ uri = \"https://x/mcp#f\" }]\n")
                .is_err()
        );
        assert!(load_str("[authorization_server]\naccess_token_ttl_secs = 0\n").is_err());
    }

    /// A stdio child's sandbox must not open the files mcpgate's secrets
    /// are read from, wherever they are and whatever field names them.
    #[test]
    fn secret_files_are_protected_from_stdio_children() {
        let dir = tempfile::tempdir().unwrap();
        let (_, master) = mcpgate_jose::MasterKey::generate(&mcpgate_jose::SystemRng::new());
        let key = dir.path().join("master.key");
        std::fs::write(&key, master).unwrap();
        let metrics = dir.path().join("metrics-token");
        std::fs::write(&metrics, "0123456789abcdef-metrics\n").unwrap();
        let child = dir.path().join("child-token");
        std::fs::write(&child, "for the child\n").unwrap();
        let c = load_str(&format!(
            "master_key = \"${{file:{}}}\"\n[metrics]\nbearer_token = \"${{file:{}}}\"\n\
             [[upstream]]\nname = \"n\"\n\
             stdio = {{ command = \"/bin/true\", env = {{ API_TOKEN = \"${{file:{}}}\" }} }}\n",
            key.display(),
            metrics.display(),
            child.display(),
        ))
        .unwrap();
        for f in [&key, &metrics, &child] {
            assert!(
                c.gateway.protected_paths.contains(f),
                "{} is not protected: {:?}",
                f.display(),
                c.gateway.protected_paths
            );
        }
    }

    #[test]
    fn metrics_are_served_only_where_asked_or_on_loopback() {
        let c = load(None, &Overrides::default()).unwrap();
        assert!(c.metrics.served && c.metrics.listen.is_none() && c.metrics.token.is_none());
        // Off a loopback listener, not served unless configured.
        let public = "public_url = \"https://gw.example.com\"\nlisten = \"0.0.0.0:8443\"\ntrust_forwarded_proto = true\n";
        assert!(!load_str(public).unwrap().metrics.served);
        let c = load_str(&format!("{public}[metrics]\nlisten = \"127.0.0.1:9464\"\n")).unwrap();
        assert!(c.metrics.served);
        assert_eq!(c.metrics.listen, Some("127.0.0.1:9464".parse().unwrap()));
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("metrics-token");
        std::fs::write(&token, "0123456789abcdef-metrics\n").unwrap();
        let c = load_str(&format!(
            "{public}[metrics]\nbearer_token = \"${{file:{}}}\"\n",
            token.display()
        ))
        .unwrap();
        assert!(c.metrics.served && c.metrics.token.is_some());
        // Not a bearer credential the guard's parser reads back: refused.
        std::fs::write(&token, "0123456789abcdef metrics\n").unwrap();
        let e = load_str(&format!(
            "{public}[metrics]\nbearer_token = \"${{file:{}}}\"\n",
            token.display()
        ))
        .unwrap_err();
        assert_eq!(e.field, "metrics.bearer_token");
        for (bad, field) in [
            (
                "[metrics]\nbearer_token = \"literal-token-0123456789\"\n",
                "metrics.bearer_token",
            ),
            ("[metrics]\nlisten = \"nowhere\"\n", "metrics.listen"),
            (
                "listen = \"127.0.0.1:8080\"\n[metrics]\nlisten = \"127.0.0.1:8080\"\n",
                "metrics.listen",
            ),
        ] {
            assert_eq!(load_str(bad).unwrap_err().field, field, "{bad}");
        }
    }

    #[test]
    fn limits_have_defaults_and_refuse_zero() {
        let c = load_str("").unwrap();
        assert_eq!(c.max_connections, DEFAULT_MAX_CONNECTIONS);
        assert!(c.authz.login.max_concurrent_hashes >= 1);
        assert_eq!(c.authz.cimd.fetches_per_host_per_minute, 10);
        let c = load_str(
            "max_connections = 50
[authorization_server.login]
max_concurrent_hashes = 3
[authorization_server.cimd]
allowed_hosts = [\"*.Apps.example\"]
denied_hosts = [\"bad.apps.example\"]
fetches_per_minute = 7
",
        )
        .unwrap();
        assert_eq!(c.max_connections, 50);
        assert_eq!(c.authz.login.max_concurrent_hashes, 3);
        assert_eq!(c.authz.cimd.allowed_hosts, ["*.apps.example"]);
        assert_eq!(c.authz.cimd.fetches_per_minute, 7);
        for (toml, field) in [
            ("max_connections = 0\n", "max_connections"),
            (
                "[authorization_server.login]\nmax_concurrent_hashes = 0\n",
                "authorization_server.login.max_concurrent_hashes",
            ),
            (
                "[authorization_server.cimd]\nfetches_per_host_per_minute = 0\n",
                "authorization_server.cimd.fetches_per_host_per_minute",
            ),
            (
                "[authorization_server.cimd]\nallowed_hosts = [\"https://x.example\"]\n",
                "authorization_server.cimd.allowed_hosts",
            ),
            (
                "[authorization_server.cimd]\ndenied_hosts = [\"*.\"]\n",
                "authorization_server.cimd.denied_hosts",
            ),
        ] {
            let e = load_str(toml).unwrap_err();
            assert_eq!(e.field, field, "{toml}: {e}");
        }
    }

    #[test]
    fn trusted_proxies() {
        let c = load_str(
            "[authorization_server]\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\", \"::1\"]\n",
        )
        .unwrap();
        let nets: Vec<String> = c
            .authz
            .trusted_proxies
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(nets, ["10.0.0.0/8", "192.0.2.7/32", "::1/128"]);
        // The gateway counts clients by the same proxies.
        assert_eq!(c.gateway.trusted_proxies, c.authz.trusted_proxies);
        let e =
            load_str("[authorization_server]\ntrusted_proxies = [\"10.0.0.0/33\"]\n").unwrap_err();
        assert_eq!(e.field, "authorization_server.trusted_proxies");
        let e = load_str("[authorization_server]\ntrust_forwarded_for = true\n").unwrap_err();
        assert!(e.message.contains("trusted_proxies"), "{e}");
    }

    #[test]
    fn workload_issuers_and_dpop_nonces() {
        let c = load_str(
            "[authorization_server]\ndpop_require_nonce = true\n\
             [[authorization_server.workload_issuer]]\nissuer = \"https://wl.example\"\n\
             jwks_uri = \"https://wl.example/jwks\"\nsubjects = { \"spiffe://p/app\" = \"app\" }\n",
        )
        .unwrap();
        assert!(c.authz.dpop_require_nonce);
        assert_eq!(
            c.authz.workload_issuers[0].subjects["spiffe://p/app"],
            "app"
        );
        let base = "[[authorization_server.workload_issuer]]\nissuer = \"https://wl.example\"\n";
        for (extra, field) in [
            (
                "jwks_uri = \"not a url\"\nsubjects = { a = \"b\" }\n",
                "jwks_uri",
            ),
            (
                "jwks_uri = \"https://wl.example/j\"\nsubjects = {}\n",
                "subjects",
            ),
            (
                "jwks_uri = \"https://wl.example/j\"\nsubjects = { a = \"\" }\n",
                "subjects",
            ),
        ] {
            let e = load_str(&format!("{base}{extra}")).unwrap_err();
            assert_eq!(
                e.field,
                format!("authorization_server.workload_issuer[0].{field}")
            );
        }
        let twice =
            format!("{base}jwks_uri = \"https://wl.example/j\"\nsubjects = {{ a = \"b\" }}\n");
        let e = load_str(&format!("{twice}{twice}")).unwrap_err();
        assert_eq!(e.field, "authorization_server.workload_issuer[1].issuer");
    }

    #[test]
    fn grantable_to_rules() {
        // The demo's notes:admin is for its admins; the other scopes are open.
        let c = load(None, &Overrides::default()).unwrap();
        let admin = c.authz.scope("notes:admin").unwrap();
        assert_eq!(admin.grantable_to.as_ref().unwrap().groups, ["admins"]);
        assert!(c.authz.scope("notes:read").unwrap().grantable_to.is_none());
        assert!(c.authz.grantable_by_default);
        let c = load_str(
            r#"
[authorization_server]
scopes = { "a" = "A", "b" = "B" }
grantable_by_default = false
resources = [{ uri = "https://r.example/mcp", grantable_to = { "b" = { clients = ["svc"] } } }]
[authorization_server.grantable_to]
"a" = { users = ["alice"], groups = ["staff"] }
"#,
        )
        .unwrap();
        let a = c.authz.scope("a").unwrap().grantable_to.clone().unwrap();
        assert_eq!(
            (a.users, a.groups),
            (vec!["alice".into()], vec!["staff".into()])
        );
        assert!(!c.authz.grantable_by_default);
        let r = &c.authz.resources[0];
        assert_eq!(r.grantable_to[0].0, "b");
        assert_eq!(r.grantable_to[0].1.clients, ["svc"]);
        // A rule for a scope that does not exist, or a misspelt field, is refused.
        let e = load_str(
            "[authorization_server]\nscopes = { \"a\" = \"A\" }\ngrantable_to = { \"nope\" = { users = [\"x\"] } }\n",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("not one of authorization_server.scopes"),
            "{e}"
        );
        assert!(
            load_str("[authorization_server]\nscopes = { \"a\" = \"A\" }\ngrantable_to = { \"a\" = { user = [\"x\"] } }\n")
                .is_err()
        );
    }
}

/// Fuzzing (issue 15): any text gives a configuration or an error with a location and a
/// field, never a panic.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    const SAMPLE: &str = r#"
public_url = "http://127.0.0.1:8080"
listen = "127.0.0.1:8080"
log_format = "json"

[store]
sqlite_synchronous = "normal"

[gateway]
session_idle_secs = 600

[[upstream]]
name = "notes"
stdio = { command = "/bin/true" }
scopes = ["notes:read"]

[upstream.tools.delete]
allow = false
"#;

    fn check(text: &str) -> Result<(), TestCaseError> {
        if let Err(e) = from_text(text, "fuzz.toml", &Overrides::default()) {
            prop_assert!(e.location.starts_with("fuzz.toml"), "{}", e);
            prop_assert!(!e.field.is_empty() && !e.message.is_empty(), "{}", e);
        }
        Ok(())
    }

    /// Key/value lines under the file's tables, values of every TOML type.
    fn toml_text() -> impl Strategy<Value = String> {
        let table = proptest::sample::select(vec![
            "",
            "[store]",
            "[tls]",
            "[metrics]",
            "[authorization_server]",
            "[[authorization_server.resource]]",
            "[authorization_server.dcr]",
            "[authorization_server.cimd]",
            "[authorization_server.login]",
            "[[client]]",
            "[gateway]",
            "[[upstream]]",
            "[upstream.tools.t]",
            "[[identity_provider]]",
        ]);
        let key = proptest::sample::select(vec![
            "public_url",
            "listen",
            "log_format",
            "trust_forwarded_proto",
            "sqlite_synchronous",
            "url",
            "uri",
            "scopes",
            "name",
            "client_id",
            "redirect_uris",
            "enabled",
            "access_token_ttl_secs",
            "min_cache_secs",
            "max_cache_secs",
            "per_account",
            "bearer_token",
            "issuer",
            "stdio",
            "allow",
            "kind",
            "unknown",
        ]);
        let value = prop_oneof![
            "\"[ -!#-\\[\\]-~]{0,12}\"",
            Just("\"http://127.0.0.1:8080\"".to_string()),
            Just("\"https://gw.example\"".to_string()),
            Just("\"0.0.0.0:0\"".to_string()),
            Just("\"${env:MCPGATE_FUZZ_UNSET}\"".to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<bool>().prop_map(|b| b.to_string()),
            Just("[\"a\", 1]".to_string()),
            Just("{ command = \"x\" }".to_string()),
            Just("1e400".to_string()),
            Just("\"\u{e9}\u{212a}\"".to_string()),
        ];
        proptest::collection::vec((table, proptest::collection::vec((key, value), 0..4)), 0..5)
            .prop_map(|tables| {
                let mut out = String::new();
                for (t, kvs) in tables {
                    out.push_str(t);
                    out.push('\n');
                    let mut seen = Vec::new();
                    for (k, v) in kvs {
                        if !seen.contains(&k) {
                            seen.push(k);
                            out.push_str(&format!("{k} = {v}\n"));
                        }
                    }
                }
                out
            })
    }

    /// `SAMPLE` with a piece inserted, a span cut out, or truncated, at char boundaries.
    fn mutated_sample() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("\"".to_string()),
            Just("[".to_string()),
            Just("]".to_string()),
            Just("=".to_string()),
            Just("\n".to_string()),
            Just("#".to_string()),
            Just("\\".to_string()),
            Just("'''".to_string()),
            Just("\u{0}".to_string()),
            Just("\u{e9}".to_string()),
            Just("\u{1f600}".to_string()),
            Just("\r".to_string()),
            "\\PC{1,3}",
        ];
        (any::<usize>(), any::<usize>(), 0u8..3, piece).prop_map(|(a, b, how, piece)| {
            let at = |i: usize| {
                let mut i = i % (SAMPLE.len() + 1);
                while !SAMPLE.is_char_boundary(i) {
                    i -= 1;
                }
                i
            };
            let (a, b) = (at(a).min(at(b)), at(a).max(at(b)));
            match how {
                0 => format!("{}{piece}{}", &SAMPLE[..a], &SAMPLE[a..]),
                1 => format!("{}{}", &SAMPLE[..a], &SAMPLE[b..]),
                _ => SAMPLE[..a].to_string(),
            }
        })
    }

    #[test]
    fn sample_is_valid() {
        from_text(SAMPLE, "fuzz.toml", &Overrides::default()).unwrap();
    }

    proptest! {
        #![proptest_config(mcpgate_fuzzkit::config(512))]

        #[test]
        fn errors_name_a_location_and_a_field(text in prop_oneof![
            toml_text(),
            mutated_sample(),
            ".{0,64}",
        ]) {
            check(&text)?;
        }
    }
}
