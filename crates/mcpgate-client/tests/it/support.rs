//! Test harness: one axum server on 127.0.0.1:0 playing a protected MCP server (RFC 9728 PRM,
//! 401/403 challenges) and its authorization server (metadata, /authorize approving at once,
//! /token with PKCE and rotating refresh tokens with reuse detection, /register), recording
//! every request. Nothing here contacts anything but 127.0.0.1.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use mcpgate_client::{Headless, McpClient, OAuthClient, OAuthConfig, TokenStore};
use mcpgate_net::{FetchPolicy, SafeFetcher};
use serde_json::{Value, json};

/// Where the AS publishes its metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsMetadataAt {
    /// RFC 8414 (path insertion when the issuer has a path).
    Oauth,
    /// OIDC path insertion.
    OidcInsert,
    /// OIDC path appending.
    OidcAppend,
}

/// What `iss` the AS puts in the redirect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssMode {
    Correct,
    Omit,
    Wrong,
    TrailingSlash,
}

#[derive(Debug, Clone)]
pub struct MockConfig {
    /// Path of the MCP endpoint ("" for the origin itself).
    pub mcp_path: &'static str,
    /// Serve PRM at the path-inserted location.
    pub prm_path_inserted: bool,
    /// Serve PRM at the root location.
    pub prm_root: bool,
    /// Serve PRM at /custom/prm.json and name it in the challenge.
    pub prm_in_header: bool,
    /// PRM `resource`; default: the MCP endpoint URL.
    pub resource: Option<String>,
    /// PRM scopes_supported.
    pub prm_scopes: Vec<String>,
    /// Scope in the 401 challenge.
    pub challenge_scope: Option<String>,
    /// Path of the issuer ("" or "/tenant1").
    pub issuer_path: &'static str,
    pub as_metadata_at: AsMetadataAt,
    /// Overrides the metadata `issuer`.
    pub metadata_issuer: Option<String>,
    /// Appends a `/` to the metadata `issuer` (a normalisation-equivalent variant).
    pub metadata_issuer_slash: bool,
    pub s256: bool,
    pub iss_supported: Option<bool>,
    pub iss_mode: IssMode,
    pub as_scopes: Vec<String>,
    /// Scope tools/call needs (403 insufficient_scope without it).
    pub call_scope: Option<String>,
    /// tools/call always answers 403 insufficient_scope.
    pub call_always_forbidden: bool,
    /// Scopes the AS never grants.
    pub deny_scopes: Vec<String>,
    pub expires_in: i64,
    /// Delay of the token endpoint (widens race windows).
    pub token_delay: Duration,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            mcp_path: "/mcp",
            prm_path_inserted: true,
            prm_root: false,
            prm_in_header: false,
            resource: None,
            prm_scopes: vec![],
            challenge_scope: None,
            issuer_path: "",
            as_metadata_at: AsMetadataAt::Oauth,
            metadata_issuer: None,
            metadata_issuer_slash: false,
            s256: true,
            iss_supported: Some(true),
            iss_mode: IssMode::Correct,
            as_scopes: vec![],
            call_scope: None,
            call_always_forbidden: false,
            deny_scopes: vec![],
            expires_in: 3600,
            token_delay: Duration::ZERO,
        }
    }
}

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: String,
    pub authorization: Option<String>,
}

impl Recorded {
    /// A form or query parameter.
    pub fn param(&self, name: &str) -> Option<String> {
        let source = if self.method == "GET" {
            &self.query
        } else {
            &self.body
        };
        url::form_urlencoded::parse(source.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

#[derive(Default)]
struct Grants {
    codes: HashMap<String, (String, String, String)>, // code -> (challenge, scope, resource)
    access: HashMap<String, String>,                  // access token -> scope
    refresh: HashMap<String, (String, bool)>,         // refresh token -> (scope, used)
}

pub struct MockState {
    pub cfg: MockConfig,
    pub base: String,
    log: Mutex<Vec<Recorded>>,
    grants: Mutex<Grants>,
    counter: AtomicUsize,
    /// Refresh tokens presented after rotation (reuse attempts).
    pub reuse: AtomicUsize,
}

pub struct Mock {
    pub base: String,
    pub state: Arc<MockState>,
}

/// Everything every test logs (TRACE and up), for the test that no secret reaches a log line.
static LOGS: std::sync::OnceLock<Arc<Mutex<Vec<u8>>>> = std::sync::OnceLock::new();

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing global subscriber (once per test binary).
pub fn capture_logs() {
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = Capture(buffer.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        buffer
    });
}

/// What was logged so far, by every test of this binary.
pub fn captured_logs() -> String {
    LOGS.get()
        .map(|b| String::from_utf8_lossy(&b.lock().unwrap()).into_owned())
        .unwrap_or_default()
}

impl Mock {
    pub async fn start(cfg: MockConfig) -> Self {
        capture_logs();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let state = Arc::new(MockState {
            cfg,
            base: base.clone(),
            log: Mutex::new(Vec::new()),
            grants: Mutex::new(Grants::default()),
            counter: AtomicUsize::new(0),
            reuse: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { base, state }
    }

    pub fn mcp_url(&self) -> String {
        format!("{}{}", self.base, self.state.cfg.mcp_path)
    }

    pub fn issuer(&self) -> String {
        format!("{}{}", self.base, self.state.cfg.issuer_path)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.log.lock().unwrap().clone()
    }

    pub fn paths(&self) -> Vec<String> {
        self.requests().into_iter().map(|r| r.path).collect()
    }

    pub fn to(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Seeds a valid refresh token (and its scope).
    pub fn seed_refresh_token(&self, token: &str, scope: &str) {
        let mut g = self.state.grants.lock().unwrap();
        g.refresh
            .insert(token.to_owned(), (scope.to_owned(), false));
    }

    /// Whether `token` is a refresh token the AS would still accept.
    pub fn refresh_token_valid(&self, token: &str) -> bool {
        matches!(
            self.state.grants.lock().unwrap().refresh.get(token),
            Some((_, false))
        )
    }

    /// Invalidates every refresh token (as a revocation would).
    pub fn revoke_all(&self) {
        self.state.grants.lock().unwrap().refresh.clear();
    }

    /// An OAuth client with the headless user agent and a store in `dir`.
    pub fn oauth(&self, dir: &std::path::Path) -> OAuthClient {
        self.oauth_with(dir, |_| {})
    }

    pub fn oauth_with(
        &self,
        dir: &std::path::Path,
        tweak: impl FnOnce(&mut OAuthConfig),
    ) -> OAuthClient {
        let mut cfg = OAuthConfig::new(self.mcp_url());
        tweak(&mut cfg);
        OAuthClient::new(
            cfg,
            SafeFetcher::new(FetchPolicy::loopback_dev()),
            TokenStore::new(dir),
            Arc::new(Headless),
        )
        .unwrap()
    }

    pub fn client(&self, oauth: OAuthClient) -> McpClient {
        McpClient::builder(self.mcp_url())
            .auth(Arc::new(oauth))
            .allow_http_loopback(true)
            .build()
            .unwrap()
    }
}

pub fn fetcher() -> SafeFetcher {
    SafeFetcher::new(FetchPolicy::loopback_dev())
}

fn json_response(status: StatusCode, v: Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}

async fn handle(
    State(st): State<Arc<MockState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let rec = Recorded {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        body: String::from_utf8_lossy(&body).into_owned(),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    st.log.lock().unwrap().push(rec.clone());
    let cfg = &st.cfg;
    let path = uri.path();
    let mcp_path = if cfg.mcp_path.is_empty() {
        "/"
    } else {
        cfg.mcp_path
    };
    let prm_inserted = format!("/.well-known/oauth-protected-resource{}", cfg.mcp_path);
    let ip = cfg.issuer_path;
    let metadata_path = match cfg.as_metadata_at {
        AsMetadataAt::Oauth => format!("/.well-known/oauth-authorization-server{ip}"),
        AsMetadataAt::OidcInsert => format!("/.well-known/openid-configuration{ip}"),
        AsMetadataAt::OidcAppend => format!("{ip}/.well-known/openid-configuration"),
    };
    match (method.as_str(), path) {
        ("GET", p)
            if (p == prm_inserted && cfg.prm_path_inserted && !cfg.mcp_path.is_empty())
                || (p == "/.well-known/oauth-protected-resource" && cfg.prm_root)
                || (p == "/custom/prm.json" && cfg.prm_in_header) =>
        {
            let resource = cfg
                .resource
                .clone()
                .unwrap_or_else(|| format!("{}{}", st.base, cfg.mcp_path));
            let mut prm = json!({"resource": resource, "authorization_servers": [format!("{}{}", st.base, ip)]});
            if !cfg.prm_scopes.is_empty() {
                prm["scopes_supported"] = json!(cfg.prm_scopes);
            }
            json_response(StatusCode::OK, prm)
        }
        ("GET", p) if p == metadata_path => {
            let slash = if cfg.metadata_issuer_slash { "/" } else { "" };
            let issuer = cfg
                .metadata_issuer
                .clone()
                .unwrap_or_else(|| format!("{}{ip}{slash}", st.base));
            let mut m = json!({
                "issuer": issuer,
                "authorization_endpoint": format!("{}/authorize", st.base),
                "token_endpoint": format!("{}/token", st.base),
                "registration_endpoint": format!("{}/register", st.base),
                "response_types_supported": ["code"],
                "code_challenge_methods_supported": if cfg.s256 { json!(["S256"]) } else { json!(["plain"]) },
                "token_endpoint_auth_methods_supported": ["none"],
            });
            if let Some(s) = cfg.iss_supported {
                m["authorization_response_iss_parameter_supported"] = json!(s);
            }
            if !cfg.as_scopes.is_empty() {
                m["scopes_supported"] = json!(cfg.as_scopes);
            }
            json_response(StatusCode::OK, m)
        }
        ("GET", "/authorize") => authorize(&st, &rec),
        ("POST", "/token") => {
            if !cfg.token_delay.is_zero() {
                tokio::time::sleep(cfg.token_delay).await;
            }
            token(&st, &rec)
        }
        ("POST", "/register") => json_response(
            StatusCode::CREATED,
            json!({"client_id": "dyn-client", "token_endpoint_auth_method": "none",
                   "redirect_uris": serde_json::from_str::<Value>(&rec.body).ok()
                       .and_then(|b| b.get("redirect_uris").cloned()).unwrap_or(json!([]))}),
        ),
        ("POST", p) if p == mcp_path => mcp(&st, &rec),
        _ => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

fn authorize(st: &MockState, rec: &Recorded) -> Response {
    let cfg = &st.cfg;
    let n = st.counter.fetch_add(1, Ordering::SeqCst);
    let code = format!("code-{n}");
    let requested = rec.param("scope").unwrap_or_default();
    let granted: Vec<&str> = requested
        .split(' ')
        .filter(|s| !s.is_empty() && !cfg.deny_scopes.iter().any(|d| d == s))
        .collect();
    st.grants.lock().unwrap().codes.insert(
        code.clone(),
        (
            rec.param("code_challenge").unwrap_or_default(),
            granted.join(" "),
            rec.param("resource").unwrap_or_default(),
        ),
    );
    let issuer = format!("{}{}", st.base, cfg.issuer_path);
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("code", &code);
    if let Some(state) = rec.param("state") {
        q.append_pair("state", &state);
    }
    match cfg.iss_mode {
        IssMode::Correct => {
            q.append_pair("iss", &issuer);
        }
        IssMode::Wrong => {
            q.append_pair("iss", "https://evil.example.com");
        }
        IssMode::TrailingSlash => {
            q.append_pair("iss", &format!("{issuer}/"));
        }
        IssMode::Omit => {}
    }
    let location = format!(
        "{}?{}",
        rec.param("redirect_uri").unwrap_or_default(),
        q.finish()
    );
    (StatusCode::FOUND, [("location", location)]).into_response()
}

fn issue(st: &MockState, g: &mut Grants, scope: &str) -> Value {
    let n = st.counter.fetch_add(1, Ordering::SeqCst);
    let (at, rt) = (format!("at-{n}"), format!("rt-{n}"));
    g.access.insert(at.clone(), scope.to_owned());
    g.refresh.insert(rt.clone(), (scope.to_owned(), false));
    let mut v = json!({"access_token": at, "token_type": "Bearer", "expires_in": st.cfg.expires_in, "refresh_token": rt});
    if !scope.is_empty() {
        v["scope"] = json!(scope);
    }
    v
}

fn token(st: &MockState, rec: &Recorded) -> Response {
    let invalid_grant =
        || json_response(StatusCode::BAD_REQUEST, json!({"error": "invalid_grant"}));
    let mut g = st.grants.lock().unwrap();
    match rec.param("grant_type").as_deref() {
        Some("authorization_code") => {
            let Some((challenge, scope, resource)) =
                g.codes.remove(&rec.param("code").unwrap_or_default())
            else {
                return invalid_grant();
            };
            let verifier = rec.param("code_verifier").unwrap_or_default();
            if mcpgate_types::pkce::s256_challenge(&verifier) != challenge
                || rec.param("resource").as_deref() != Some(resource.as_str())
            {
                return invalid_grant();
            }
            let v = issue(st, &mut g, &scope);
            json_response(StatusCode::OK, v)
        }
        Some("refresh_token") => {
            let rt = rec.param("refresh_token").unwrap_or_default();
            match g.refresh.get(&rt).cloned() {
                Some((scope, false)) => {
                    g.refresh.insert(rt, (scope.clone(), true));
                    let v = issue(st, &mut g, &scope);
                    json_response(StatusCode::OK, v)
                }
                Some((_, true)) => {
                    // Reuse of a rotated token: revoke the whole family.
                    st.reuse.fetch_add(1, Ordering::SeqCst);
                    g.refresh.clear();
                    invalid_grant()
                }
                None => invalid_grant(),
            }
        }
        _ => json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": "unsupported_grant_type"}),
        ),
    }
}

fn mcp(st: &MockState, rec: &Recorded) -> Response {
    let cfg = &st.cfg;
    let msg: Value = serde_json::from_str(&rec.body).unwrap_or(Value::Null);
    let method = msg
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let prm_url = if cfg.prm_in_header {
        Some(format!("{}/custom/prm.json", st.base))
    } else {
        None
    };
    let challenge = |error: Option<&str>, scope: Option<&str>| {
        let mut parts = Vec::new();
        if let Some(e) = error {
            parts.push(format!("error=\"{e}\""));
        }
        if let Some(s) = scope {
            parts.push(format!("scope=\"{s}\""));
        }
        if let Some(u) = &prm_url {
            parts.push(format!("resource_metadata=\"{u}\""));
        }
        if parts.is_empty() {
            "Bearer".to_owned()
        } else {
            format!("Bearer {}", parts.join(", "))
        }
    };
    let token = rec
        .authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::to_owned);
    let scope = token.and_then(|t| st.grants.lock().unwrap().access.get(&t).cloned());
    let Some(scope) = scope else {
        let c = challenge(None, cfg.challenge_scope.as_deref());
        return (StatusCode::UNAUTHORIZED, [("www-authenticate", c)], "").into_response();
    };
    if method == "tools/call" {
        let needed = cfg.call_scope.as_deref();
        let has = needed.is_none_or(|n| scope.split(' ').any(|s| s == n));
        if cfg.call_always_forbidden || !has {
            let c = challenge(Some("insufficient_scope"), needed.or(Some("admin")));
            return (StatusCode::FORBIDDEN, [("www-authenticate", c)], "").into_response();
        }
    }
    let id = msg.get("id").cloned();
    let result = match method {
        "initialize" => json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                               "serverInfo": {"name": "mock", "version": "1"}}),
        "tools/list" => json!({"tools": [{"name": "echo", "inputSchema": {"type": "object"}}]}),
        "tools/call" => json!({"content": [{"type": "text", "text": "ok"}]}),
        _ if id.is_none() => return StatusCode::ACCEPTED.into_response(),
        _ => json!({}),
    };
    json_response(
        StatusCode::OK,
        json!({"jsonrpc": "2.0", "id": id, "result": result}),
    )
}
