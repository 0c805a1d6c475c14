//! The test stack: mcpgate's real authorization server (testkit) issuing
//! real tokens, the gateway on its own `127.0.0.1:0` listener with
//! `public_url` = the AS issuer (so resources are `{issuer}/mcp/{name}`),
//! the fixture upstreams of `mcpgate-upstreams`, and a small Streamable
//! HTTP client speaking raw HTTP.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use mcpgate_authz::ResourceDef;
use mcpgate_gateway::config::{ConfigError, GatewayTables};
use mcpgate_gateway::revocation::StoreRevocations;
use mcpgate_gateway::{Gateway, GatewayDeps};
use mcpgate_jose::SystemRng;
use mcpgate_testkit::{AuthRequest, Browser, Options, TestAs};
use mcpgate_types::Secret;
use serde_json::{Value, json};

pub const REDIRECT: &str = "http://127.0.0.1:9/cb";
/// The gateway's confidential client at the test AS (`client_credentials`).
pub const CC_CLIENT: &str = "gateway-cc";
pub const CC_SECRET: &str = "gateway-cc-secret-0123456789";
/// Set by cargo in the test process's environment, so in the gateway's: must never reach a child.
pub const CANARY: &str = "CARGO_MANIFEST_DIR";

/// The fixture binary, built on first use when a single-package test run
/// has not built it yet.
pub fn upstream_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let found = std::panic::catch_unwind(mcpgate_upstreams::test_upstream_binary);
        if let Ok(p) = found {
            return p;
        }
        let status = std::process::Command::new(env!("CARGO"))
            .args([
                "build",
                "-p",
                "mcpgate-upstreams",
                "--bin",
                "mcpgate-test-upstream",
            ])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building mcpgate-test-upstream failed");
        mcpgate_upstreams::test_upstream_binary()
    })
    .clone()
}

/// The local keys of the test AS, as the gateway's guards see them.
struct AsKeys(mcpgate_authz::AppState);

impl mcpgate_guard::LocalKeys for AsKeys {
    fn verifier(&self) -> Arc<mcpgate_jose::Verifier> {
        self.0.current_verifier()
    }
}

/// The AS's entitlements, as `mcpgate serve` gives them to the gateway.
struct AsEntitlements(mcpgate_authz::AppState);

#[async_trait::async_trait]
impl mcpgate_gateway::Entitlements for AsEntitlements {
    async fn withheld(
        &self,
        p: &mcpgate_guard::Principal,
        resource: &str,
        scopes: &mcpgate_types::ScopeSet,
    ) -> mcpgate_types::ScopeSet {
        let (iss, sub, client) = (&p.issuer, &p.subject, &p.client_id);
        self.0.withheld(iss, sub, client, resource, scopes).await
    }
}

/// Test configurations carry literal secrets anywhere, and `${env:NAME}`.
fn resolve(_field: &str, raw: &str, _plain_ok: bool) -> Result<Secret, ConfigError> {
    match raw.strip_prefix("${env:").and_then(|r| r.strip_suffix('}')) {
        Some(name) => std::env::var(name)
            .map(Secret::new)
            .map_err(|_| ConfigError {
                field: "env".into(),
                message: name.into(),
            }),
        None => Ok(Secret::new(raw)),
    }
}

pub struct Stack {
    pub as_: TestAs,
    pub gw: Gateway,
    /// `http://127.0.0.1:PORT` of the gateway listener.
    pub base: String,
    pub http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Stack {
    /// `config` is the `[gateway]`/`[[upstream]]` TOML; `{bin}` in it is
    /// replaced by the fixture binary's path, `{issuer}` by the AS issuer.
    pub async fn start(config: &str) -> Self {
        Self::start_full(config, None, |_| {}).await
    }

    /// [`Stack::start`] with the AS settings changed by `tweak` (after the
    /// upstreams' resources are added).
    pub async fn start_with(
        config: &str,
        tweak: impl FnOnce(&mut mcpgate_authz::AuthzSettings) + Send + 'static,
    ) -> Self {
        Self::start_full(config, None, tweak).await
    }

    /// [`start`](Self::start) on a given store (`None`: a fresh SQLite one).
    pub async fn start_on(config: &str, store: Option<mcpgate_store::DynStore>) -> Self {
        Self::start_full(config, store, |_| {}).await
    }

    async fn start_full(
        config: &str,
        store: Option<mcpgate_store::DynStore>,
        tweak: impl FnOnce(&mut mcpgate_authz::AuthzSettings) + Send + 'static,
    ) -> Self {
        let bin = upstream_bin();
        let text = config.replace("{bin}", &bin.display().to_string());
        let files = GatewayTables::parse(&text).expect("test config parses");
        let names: Vec<String> = files.upstream.iter().map(|u| u.name.clone()).collect();
        let for_vault = text.clone();
        let as_ = TestAs::start_with(Options {
            // The `user_oauth` upstreams' connections, as `serve` gives them
            // to the AS and the gateway.
            connections: Box::new(move |issuer| {
                GatewayTables::parse(&for_vault.replace("{issuer}", issuer))
                    .expect("test config parses")
                    .validate(issuer, true, &resolve)
                    .expect("gateway config")
                    .upstreams
                    .iter()
                    .filter_map(|u| match &u.auth {
                        mcpgate_gateway::config::UpstreamAuth::UserOauth(c) => Some((**c).clone()),
                        _ => None,
                    })
                    .collect()
            }),
            store,
            tweak: Box::new(move |s| {
                // The gateway's client may introspect (tests of revocation).
                s.introspection_clients.push(CC_CLIENT.into());
                for n in names {
                    let uri = format!("{}/mcp/{n}", s.issuer);
                    if !s.resources.iter().any(|r| r.uri == uri) {
                        s.resources.push(ResourceDef::new(uri, n.clone()));
                    }
                }
                tweak(s);
            }),
            ..Default::default()
        })
        .await;
        as_.add_user("alice", &[]).await;
        as_.add_user("bob", &["ops"]).await;
        as_.add_public_client("app", REDIRECT).await;
        as_.add_public_client("other-app", REDIRECT).await;
        // The gateway's own client at the AS, for `client_credentials` upstream auth.
        let spec = mcpgate_authz::admin::ClientSpec {
            client_id: Some(CC_CLIENT.into()),
            name: "gateway".into(),
            redirect_uris: vec![],
            auth_method: mcpgate_types::client_metadata::TokenEndpointAuthMethod::ClientSecretBasic,
            grant_types: vec!["client_credentials".into()],
            scopes: vec![],
            secret: Some(CC_SECRET.into()),
            jwks: None,
            jwks_uri: None,
        };
        mcpgate_authz::admin::create_client(&as_.admin(), &spec, false)
            .await
            .expect("cc client");
        let settings = GatewayTables::parse(&text.replace("{issuer}", &as_.issuer))
            .expect("test config parses")
            .validate(&as_.issuer, true, &resolve)
            .expect("gateway config");
        let (revocations, first) = StoreRevocations::start(as_.store.clone()).await;
        first.expect("revocation set loads");
        let authenticators = mcpgate_gateway::guards(
            &settings,
            &as_.issuer,
            Arc::new(AsKeys(as_.state.clone())),
            Some(Arc::new(revocations)),
            Arc::new(as_.clock.clone()),
            [7u8; 32],
        )
        .expect("guards");
        let audit_store: Arc<dyn mcpgate_store::AuditStore> = as_.store.clone();
        let authorization_servers = mcpgate_gateway::authorization_servers(&settings, &as_.issuer);
        let gw = Gateway::new(
            settings,
            GatewayDeps {
                authenticators,
                authorization_servers,
                audit_store: Some(audit_store),
                rng: Arc::new(SystemRng::new()),
                clock: Arc::new(mcpgate_jose::SystemClock),
                entitlements: Some(Arc::new(AsEntitlements(as_.state.clone()))),
                request_state_key: None,
                shared_sessions: None,
                replica: None,
                vault: as_.vault.clone(),
            },
        )
        .expect("gateway");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let app = gw
            .router()
            .merge(gw.ops_router(mcpgate_gateway::MetricsAccess::Open));
        // With the peer address, as `mcpgate serve` gives it (per-address limits).
        let server = tokio::spawn(async move {
            let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
            let _ = axum::serve(listener, app).await;
        });
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Self {
            as_,
            gw,
            base,
            http,
            server,
        }
    }

    pub fn url(&self, name: &str) -> String {
        format!("{}/mcp/{name}", self.base)
    }

    /// The canonical resource (token audience) of an upstream.
    pub fn resource(&self, name: &str) -> String {
        format!("{}/mcp/{name}", self.as_.issuer)
    }

    /// A real access token: login as `user`, consent, code exchange.
    pub async fn token_for(&self, user: &str, client: &str, scope: &str, upstream: &str) -> String {
        let req = AuthRequest::new(client, REDIRECT, scope, &self.resource(upstream));
        let mut b = Browser::new();
        let page = b
            .authorize_as(&self.as_.issuer, &req.url(&self.as_.issuer), user)
            .await;
        let page = b.approve_if_asked(&self.as_.issuer, page).await;
        assert_eq!(page.status, 303, "authorization: {}", page.body);
        let code = page.location_params().get("code").cloned().expect("code");
        let (status, v) = mcpgate_testkit::post_form(
            &self.http,
            &self.as_.url("/oauth/token"),
            &req.token_form(&code),
            None,
        )
        .await;
        assert_eq!(status, 200, "token response {v}");
        v["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    pub async fn token(&self, user: &str, scope: &str, upstream: &str) -> String {
        self.token_for(user, "app", scope, upstream).await
    }

    pub fn client(&self, name: &str, token: &str) -> Mcp {
        Mcp {
            http: self.http.clone(),
            url: self.url(name),
            token: Some(token.to_string()),
            session: None,
            version: "2025-11-25",
            next_id: 1,
            extra: HashMap::new(),
        }
    }
}

/// A raw response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every JSON-RPC message of the body (JSON or SSE).
    pub fn messages(&self) -> Vec<Value> {
        if self
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream"))
        {
            sse_messages(&self.text)
        } else {
            serde_json::from_str(&self.text)
                .map(|v| vec![v])
                .unwrap_or_default()
        }
    }

    /// The final response message (the one without `method`).
    pub fn response(&self) -> Value {
        self.messages()
            .into_iter()
            .rfind(|m| m.get("method").is_none())
            .unwrap_or_else(|| panic!("no response in {} body: {}", self.status, self.text))
    }
}

pub fn sse_messages(text: &str) -> Vec<Value> {
    let text = text.replace("\r\n", "\n");
    text.split("\n\n")
        .filter_map(|block| {
            let data: Vec<&str> = block
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if data.is_empty() {
                None
            } else {
                serde_json::from_str(&data.join("\n")).ok()
            }
        })
        .collect()
}

/// A Streamable HTTP client that speaks raw HTTP (so that tests control
/// every header).
pub struct Mcp {
    pub http: reqwest::Client,
    pub url: String,
    pub token: Option<String>,
    pub session: Option<String>,
    pub version: &'static str,
    pub next_id: i64,
    pub extra: HashMap<String, String>,
}

impl Mcp {
    pub fn request(&self, method: reqwest::Method) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .request(method, &self.url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", self.version);
        if let Some(t) = &self.token {
            r = r.header("authorization", format!("Bearer {t}"));
        }
        if let Some(s) = &self.session {
            r = r.header("mcp-session-id", s);
        }
        for (k, v) in &self.extra {
            r = r.header(k.as_str(), v.as_str());
        }
        r
    }

    pub async fn send(&self, body: &Value) -> reqwest::Response {
        self.request(reqwest::Method::POST)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("POST")
    }

    pub async fn post(&self, body: &Value) -> Resp {
        into_resp(self.send(body).await).await
    }

    pub fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    pub async fn rpc(&mut self, method: &str, params: Value) -> Resp {
        let id = self.id();
        self.post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await
    }

    pub async fn notify(&self, method: &str) -> Resp {
        self.post(&json!({"jsonrpc": "2.0", "method": method}))
            .await
    }

    /// initialize + notifications/initialized; keeps the session id.
    pub async fn initialize(&mut self) -> Resp {
        let r = self
            .rpc("initialize", json!({"protocolVersion": self.version, "capabilities": {"elicitation": {}, "sampling": {}}, "clientInfo": {"name": "it", "version": "0"}}))
            .await;
        assert_eq!(r.status, 200, "initialize: {}", r.text);
        self.session = r.header("mcp-session-id").map(str::to_string);
        let n = self.notify("notifications/initialized").await;
        assert_eq!(n.status, 202, "initialized: {}", n.text);
        r
    }

    pub async fn call(&mut self, tool: &str, args: Value) -> Resp {
        self.rpc("tools/call", json!({"name": tool, "arguments": args}))
            .await
    }

    /// GET with `Accept: text/event-stream`: the session's standalone stream.
    pub async fn open_stream(&self) -> reqwest::Response {
        tokio::time::timeout(
            Duration::from_secs(10),
            self.request(reqwest::Method::GET)
                .header("accept", "text/event-stream")
                .send(),
        )
        .await
        .expect("GET in time")
        .expect("GET")
    }

    pub async fn delete(&self) -> Resp {
        into_resp(
            self.request(reqwest::Method::DELETE)
                .send()
                .await
                .expect("DELETE"),
        )
        .await
    }
}

pub async fn into_resp(r: reqwest::Response) -> Resp {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = tokio::time::timeout(Duration::from_secs(30), r.text())
        .await
        .expect("body in time")
        .unwrap_or_default();
    Resp {
        status,
        headers,
        text,
    }
}

/// The tool names of a `tools/list` answer.
pub fn tool_names(r: &Resp) -> Vec<String> {
    let v = r.response();
    let mut names: Vec<String> = v["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("tools in {v}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap_or("").to_string())
        .collect();
    names.sort();
    names
}

/// Reads SSE messages from a streaming response until `pred` matches one.
pub async fn read_until(
    resp: &mut reqwest::Response,
    buf: &mut String,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(m) = sse_messages(buf).into_iter().find(|m| pred(m)) {
            return m;
        }
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .expect("SSE message in time")
            .expect("read chunk");
        let Some(chunk) = chunk else {
            panic!("stream ended; got: {buf}")
        };
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// Waits until `f` holds (or panics after 10 s).
pub async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The standard configuration: a stdio and an HTTP upstream of the testing
/// fixture, with tool policies for the policy tests.
pub fn standard_config(http_url: &str) -> String {
    let policy = r#"
scopes = ["notes:read"]
[upstream.tools.notify]
scopes = ["notes:write"]
[upstream.tools.slow]
allow = false
[upstream.tools.headers]
groups = ["ops"]
"#;
    format!(
        r#"
[gateway]
session_idle_secs = 300
max_sessions_per_user = 4
[gateway.audit]
stdout = false

[[upstream]]
name = "stdio"
stdio = {{ command = "{{bin}}", args = ["testing-stdio"], env = {{ DECLARED_VAR = "declared-value" }} }}
{policy}

[[upstream]]
name = "http"
http = {{ url = "{http_url}" }}
auth = {{ type = "header", name = "X-Upstream-Key", value = "${{env:CARGO_PKG_NAME}}" }}
{policy}
"#
    )
}
