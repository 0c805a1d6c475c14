//! Shared fixtures: keys, tokens, a counting local key source, guards on a fixed clock, and a
//! tiny authorization server on 127.0.0.1:0 (JWKS, metadata, introspection) that counts requests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use mcpgate_guard::{Guard, GuardConfig, LocalKeys, TrustedIssuer};
use mcpgate_jose::{FixedClock, KeyAlg, PublicJwks, SigningKey, Verifier};
use mcpgate_types::ScopeSet;
use serde_json::{Value, json};

pub const NOW: i64 = 1_800_000_000;
pub const ISS: &str = "https://as.example";
pub const RES_A: &str = "https://gw.example/mcp/a";
pub const RES_B: &str = "https://gw.example/mcp/b";
pub const PRM_A: &str = "https://gw.example/.well-known/oauth-protected-resource/mcp/a";

pub fn key(kid: &str) -> SigningKey {
    SigningKey::generate(kid, KeyAlg::Es256).unwrap()
}

pub fn ed_key(kid: &str) -> SigningKey {
    SigningKey::generate(kid, KeyAlg::EdDsa).unwrap()
}

pub fn jwks(keys: &[&SigningKey]) -> PublicJwks {
    PublicJwks {
        keys: keys.iter().map(|k| k.public_jwk().clone()).collect(),
    }
}

/// RFC 9068 claims as mcpgate's AS signs them.
pub fn claims(iss: &str, aud: &str) -> Value {
    json!({
        "iss": iss, "sub": "user-1", "aud": aud, "client_id": "client-1",
        "scope": "notes:read notes:write", "groups": ["staff"],
        "exp": NOW + 600, "iat": NOW, "jti": "j1",
    })
}

pub fn sign(k: &SigningKey, c: &Value) -> String {
    k.sign("at+jwt", c).unwrap()
}

/// A `POST /mcp/a` (with `query`, if any) carrying `headers`, as the guard receives it.
pub fn req(headers: &HeaderMap, query: Option<&str>) -> http::request::Parts {
    let uri = match query {
        Some(q) => format!("/mcp/a?{q}"),
        None => "/mcp/a".to_owned(),
    };
    let (mut parts, ()) = http::Request::post(uri).body(()).unwrap().into_parts();
    parts.headers = headers.clone();
    parts
}

pub fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("authorization", format!("Bearer {token}").parse().unwrap());
    h
}

/// A local key source that counts how often the guard asks for keys.
pub struct CountingKeys {
    verifier: RwLock<Arc<Verifier>>,
    pub calls: AtomicUsize,
}

impl CountingKeys {
    pub fn new(keys: &[&SigningKey]) -> Arc<Self> {
        Arc::new(Self {
            verifier: RwLock::new(Arc::new(Verifier::from_public_jwks(&jwks(keys)).unwrap())),
            calls: AtomicUsize::new(0),
        })
    }

    pub fn set(&self, keys: &[&SigningKey]) {
        *self.verifier.write().unwrap() =
            Arc::new(Verifier::from_public_jwks(&jwks(keys)).unwrap());
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl LocalKeys for CountingKeys {
    fn verifier(&self) -> Arc<Verifier> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.verifier.read().unwrap().clone()
    }
}

pub struct Local {
    pub guard: Arc<Guard>,
    pub clock: FixedClock,
    pub keys: Arc<CountingKeys>,
}

pub fn config(resource: &str, clock: &FixedClock) -> GuardConfig {
    GuardConfig::new(resource, mcpgate_guard::prm_url(resource).unwrap())
        .with_baseline(ScopeSet::parse("notes:read").unwrap())
        .with_clock(Arc::new(clock.clone()))
}

/// A guard for `resource` trusting [`ISS`] with `keys` held locally.
pub fn local_guard(resource: &str, keys: &[&SigningKey]) -> Local {
    local_guard_with(resource, keys, |i| i)
}

pub fn local_guard_with(
    resource: &str,
    keys: &[&SigningKey],
    tweak: impl FnOnce(TrustedIssuer) -> TrustedIssuer,
) -> Local {
    let clock = FixedClock::new(NOW);
    let counting = CountingKeys::new(keys);
    let issuer = tweak(TrustedIssuer::local(ISS, counting.clone()));
    let guard = Guard::new(config(resource, &clock).with_issuer(issuer)).unwrap();
    Local {
        guard: Arc::new(guard),
        clock,
        keys: counting,
    }
}

/// What the test authorization server serves and has seen.
#[derive(Default)]
pub struct AsState {
    pub jwks: Mutex<Value>,
    /// The `issuer` its metadata claims (defaults to its own base URL).
    pub metadata_issuer: Mutex<Option<String>>,
    /// Introspection answers by token; unknown tokens are inactive.
    pub introspection: Mutex<HashMap<String, Value>>,
    pub jwks_hits: AtomicUsize,
    pub metadata_hits: AtomicUsize,
    pub introspection_hits: AtomicUsize,
    /// `Authorization` headers the introspection endpoint received.
    pub introspection_auth: Mutex<Vec<String>>,
    pub base: Mutex<String>,
}

pub struct TestAs {
    pub base: String,
    pub state: Arc<AsState>,
}

impl TestAs {
    pub async fn start() -> Self {
        let state = Arc::new(AsState::default());
        let app = Router::new()
            .route("/jwks", get(serve_jwks))
            .route(
                "/.well-known/oauth-authorization-server",
                get(serve_metadata),
            )
            .route("/introspect", post(serve_introspection))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        *state.base.lock().unwrap() = base.clone();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { base, state }
    }

    pub fn set_jwks(&self, keys: &[&SigningKey]) {
        *self.state.jwks.lock().unwrap() = serde_json::to_value(jwks(keys)).unwrap();
    }

    pub fn jwks_hits(&self) -> usize {
        self.state.jwks_hits.load(Ordering::SeqCst)
    }

    pub fn introspection_hits(&self) -> usize {
        self.state.introspection_hits.load(Ordering::SeqCst)
    }

    pub fn answer(&self, token: &str, answer: Value) {
        self.state
            .introspection
            .lock()
            .unwrap()
            .insert(token.into(), answer);
    }
}

async fn serve_jwks(State(s): State<Arc<AsState>>) -> impl IntoResponse {
    s.jwks_hits.fetch_add(1, Ordering::SeqCst);
    // Slow enough that concurrent requests overlap with the fetch.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    axum::Json(s.jwks.lock().unwrap().clone())
}

async fn serve_metadata(State(s): State<Arc<AsState>>) -> impl IntoResponse {
    s.metadata_hits.fetch_add(1, Ordering::SeqCst);
    let base = s.base.lock().unwrap().clone();
    let issuer = s
        .metadata_issuer
        .lock()
        .unwrap()
        .clone()
        .unwrap_or_else(|| base.clone());
    axum::Json(json!({"issuer": issuer, "jwks_uri": format!("{base}/jwks")}))
}

async fn serve_introspection(
    State(s): State<Arc<AsState>>,
    headers: HeaderMap,
    body: String,
) -> impl IntoResponse {
    s.introspection_hits.fetch_add(1, Ordering::SeqCst);
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    s.introspection_auth.lock().unwrap().push(auth);
    let token = url::form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let answer = s
        .introspection
        .lock()
        .unwrap()
        .get(&token)
        .cloned()
        .unwrap_or_else(|| json!({"active": false}));
    (StatusCode::OK, axum::Json(answer))
}
