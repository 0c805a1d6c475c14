//! Helpers shared by the trials: the trial runner, back-channel requests,
//! the browser part of the code flow, token verification, a local server
//! for Client ID Metadata Documents, and assertions on error pages.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libtest_mimic::{Failed, Trial};
use mcpgate_jose::{Clock, Verifier, VerifyOptions};
use mcpgate_testkit::{AuthRequest, Browser, Page, TestAs};
use mcpgate_types::client_metadata::TokenEndpointAuthMethod;
use mcpgate_types::token::AccessTokenClaims;
use serde_json::Value;

/// The redirect URI of the pre-registered test client "app". It is never
/// visited: the browser follows no redirects.
pub const REDIRECT: &str = "https://app.example.com/callback";
/// The user every flow signs in as, and the groups it carries.
pub const USER: &str = "alice";
pub const GROUPS: &[&str] = &["staff", "eng"];
/// Scopes of the usual request (offline_access asks for a refresh token).
pub const SCOPES: &str = "notes:read offline_access";

/// Runs `f` on a fresh multi-thread runtime as one trial named
/// `module::name` (module without the binary's `it::` prefix).
pub fn trial<F, Fut>(module: &str, name: &str, f: F) -> Trial
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let module = module.strip_prefix("it::").unwrap_or(module);
    Trial::test(format!("{module}::{name}"), move || block_on(f()))
}

pub fn block_on<Fut: Future<Output = ()>>(f: Fut) -> Result<(), Failed> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failed::from(format!("tokio runtime: {e}")))?
        .block_on(f);
    Ok(())
}

/// A back-channel HTTP client: no redirects, no proxy.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .expect("reqwest client")
}

/// A server with user [`USER`] and the public client "app" at [`REDIRECT`].
pub async fn setup() -> TestAs {
    let as_ = TestAs::start().await;
    prepare(&as_).await;
    as_
}

/// Adds [`USER`] and the public client "app" to a running server.
pub async fn prepare(as_: &TestAs) {
    as_.add_user(USER, GROUPS).await;
    as_.add_public_client("app", REDIRECT).await;
}

/// Adds the introspection client "resource-server" (listed in the test
/// server's `introspection_clients`); returns its secret.
pub async fn add_resource_server(as_: &TestAs) -> String {
    let (_, secret) = as_
        .add_client(
            "resource-server",
            "",
            TokenEndpointAuthMethod::ClientSecretBasic,
            &["client_credentials"],
        )
        .await;
    secret.expect("confidential client secret")
}

/// The usual authorization request of client "app".
pub fn app_request(as_: &TestAs) -> AuthRequest {
    AuthRequest::new("app", REDIRECT, SCOPES, &as_.resource)
}

/// How a client authenticates at the token, revocation and introspection endpoints.
#[derive(Clone, Copy)]
pub enum Auth<'a> {
    /// Public client: `client_id` in the form.
    Public(&'a str),
    /// `client_secret_basic` (no `client_id` in the form).
    Basic(&'a str, &'a str),
    /// `client_secret_post`.
    Post(&'a str, &'a str),
}

/// A back-channel answer.
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    /// The JSON body, or `Null` when the body is not JSON.
    pub json: Value,
    pub text: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or("")
    }

    pub fn str(&self, field: &str) -> String {
        self.json[field]
            .as_str()
            .unwrap_or_else(|| panic!("no string field {field:?} in {}", self.text))
            .to_string()
    }

    /// Asserts an RFC 6749 §5.2 error: status, code, JSON, no-store.
    #[track_caller]
    pub fn assert_oauth_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "status; body: {}", self.text);
        assert_eq!(self.error(), code, "error code; body: {}", self.text);
        assert!(
            self.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "error body must be JSON: {:?}",
            self.header("content-type")
        );
        assert_eq!(self.header("cache-control"), Some("no-store"));
    }
}

pub async fn into_resp(r: reqwest::Response) -> Resp {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap_or_default();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        json,
        text,
    }
}

/// POSTs a form to `path` with the given client authentication.
pub async fn post_form(
    as_: &TestAs,
    path: &str,
    mut form: Vec<(String, String)>,
    auth: Auth<'_>,
) -> Resp {
    form.retain(|(k, _)| k != "client_id");
    let mut basic = None;
    match auth {
        Auth::Public(id) => form.push(("client_id".into(), id.into())),
        Auth::Basic(id, secret) => basic = Some((id, secret)),
        Auth::Post(id, secret) => {
            form.push(("client_id".into(), id.into()));
            form.push(("client_secret".into(), secret.into()));
        }
    }
    post_pairs(as_, path, &form, basic).await
}

/// POSTs `form` form-encoded to `path`, as it is (and optionally HTTP Basic).
pub async fn post_pairs(
    as_: &TestAs,
    path: &str,
    form: &[(String, String)],
    basic: Option<(&str, &str)>,
) -> Resp {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form.iter())
        .finish();
    post_raw(as_, path, "application/x-www-form-urlencoded", body, basic).await
}

/// POSTs a raw body with a content type (and optionally HTTP Basic).
pub async fn post_raw(
    as_: &TestAs,
    path: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
    basic: Option<(&str, &str)>,
) -> Resp {
    let mut req = http()
        .post(as_.url(path))
        .header("content-type", content_type)
        .body(body);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(form_encode(id), Some(form_encode(secret)));
    }
    into_resp(req.send().await.expect("POST")).await
}

pub async fn get(as_: &TestAs, path: &str) -> Resp {
    into_resp(http().get(as_.url(path)).send().await.expect("GET")).await
}

/// RFC 6749 §2.3.1: Basic credentials are form-urlencoded first.
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Is this the consent page (with its form), asking to approve the client?
/// (Not the confirmation a loopback redirect needs with consent on record.)
pub fn is_consent_page(page: &Page) -> bool {
    page.consent_step() == Some("consent") && page.input("csrf").is_some()
}

/// Is this the page that asks to continue to a public client's loopback
/// redirect URI, consent being on record?
pub fn is_confirm_page(page: &Page) -> bool {
    page.consent_step() == Some("confirm") && page.input("csrf").is_some()
}

/// Opens the authorization URL, signs in as `user` if needed, approves the
/// consent (or confirmation) page if one is shown, and returns the code from
/// the redirect (after checking `iss` and `state`).
pub async fn authorize_code(
    as_: &TestAs,
    b: &mut Browser,
    req: &AuthRequest,
    user: &str,
) -> String {
    let page = b
        .authorize_as(&as_.issuer, &req.url(&as_.issuer), user)
        .await;
    let page = b.approve_if_asked(&as_.issuer, page).await;
    code_from(as_, req, &page)
}

/// The code of a successful redirect back to the client; checks RFC 9207
/// `iss`, the echoed `state` and the exact redirect URI.
#[track_caller]
pub fn code_from(as_: &TestAs, req: &AuthRequest, page: &Page) -> String {
    assert_eq!(
        page.status, 303,
        "expected a redirect to the client; body: {}",
        page.body
    );
    let loc = page.location.as_deref().expect("Location");
    assert!(
        loc.starts_with(&format!("{}?", req.redirect_uri)),
        "redirect to {loc}"
    );
    let p = page.location_params();
    assert_eq!(p.get("error"), None, "unexpected error redirect: {loc}");
    assert_eq!(p.get("iss"), Some(&as_.issuer), "iss (RFC 9207)");
    assert_eq!(p.get("state"), Some(&req.state), "state echoed");
    p.get("code").cloned().expect("code in redirect")
}

/// Asserts an error redirect back to the client with `iss` and `state`.
#[track_caller]
pub fn assert_error_redirect(as_: &TestAs, req: &AuthRequest, page: &Page, code: &str) {
    assert_eq!(
        page.status, 303,
        "expected an error redirect; body: {}",
        page.body
    );
    let loc = page.location.as_deref().expect("Location");
    assert!(
        loc.starts_with(&format!("{}?", req.redirect_uri)),
        "redirect to {loc}"
    );
    let p = page.location_params();
    assert_eq!(p.get("error").map(String::as_str), Some(code), "{loc}");
    assert_eq!(
        p.get("iss"),
        Some(&as_.issuer),
        "iss on error redirects too"
    );
    assert_eq!(p.get("state"), Some(&req.state), "state echoed on errors");
    assert!(!p.contains_key("code"), "no code on an error redirect");
}

/// Asserts an HTML error page that sends the user nowhere.
#[track_caller]
pub fn assert_error_page(page: &Page, status: u16) {
    assert_eq!(page.status, status, "status; body: {}", page.body);
    assert_eq!(
        page.location, None,
        "an untrusted request must never redirect"
    );
    let ct = page
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(ct.starts_with("text/html"), "error page content type {ct}");
    assert!(!page.body.contains("code="), "no code on an error page");
}

/// Exchanges a code at the token endpoint.
pub async fn redeem(as_: &TestAs, req: &AuthRequest, code: &str, auth: Auth<'_>) -> Resp {
    post_form(as_, "/oauth/token", req.token_form(code), auth).await
}

/// Uses a refresh token.
pub async fn refresh(as_: &TestAs, refresh_token: &str, auth: Auth<'_>) -> Resp {
    let form = pairs(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
    ]);
    post_form(as_, "/oauth/token", form, auth).await
}

/// A successful token response's (access token, refresh token).
pub struct Tokens {
    pub access: String,
    pub refresh: String,
}

/// Browser flow plus code exchange for a public client; must succeed.
pub async fn tokens_for(as_: &TestAs, req: &AuthRequest, auth: Auth<'_>) -> Tokens {
    let mut b = Browser::new();
    let code = authorize_code(as_, &mut b, req, USER).await;
    let r = redeem(as_, req, &code, auth).await;
    assert_eq!(r.status, 200, "token response: {}", r.text);
    Tokens {
        access: r.str("access_token"),
        refresh: r.str("refresh_token"),
    }
}

/// Verifies an access token with the JWKS fetched from the server over
/// HTTP (RFC 9068: `typ` at+jwt, `iss`, `aud` = `resource`, signature,
/// expiry) and returns its claims.
pub async fn verify_access_token(as_: &TestAs, token: &str, resource: &str) -> AccessTokenClaims {
    let jwks = get(as_, "/oauth/jwks.json").await;
    assert_eq!(jwks.status, 200);
    let verifier = Verifier::from_jwks_json(&jwks.json).expect("JWKS parses");
    assert!(!verifier.is_empty(), "JWKS has usable keys");
    let header_b64 = token.split('.').next().expect("JWS header");
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(header_b64)
            .expect("base64url header"),
    )
    .expect("JSON header");
    assert_eq!(header["typ"], "at+jwt", "RFC 9068 §2.1 typ");
    assert_eq!(header["alg"], "ES256", "default signing algorithm");
    let opts = VerifyOptions {
        issuer: &as_.issuer,
        audience: Some(resource),
        typ: Some("at+jwt"),
        now: as_.clock.now(),
        leeway: 0,
    };
    let v = verifier
        .verify::<AccessTokenClaims>(token, &opts)
        .expect("access token verifies");
    let c = v.claims;
    assert_eq!(c.iss, as_.issuer);
    assert_eq!(c.aud, resource);
    assert!(
        c.exp > c.iat && c.exp - c.iat <= 600,
        "short-lived: iat {} exp {}",
        c.iat,
        c.exp
    );
    assert!(!c.jti.is_empty());
    c
}

/// Asserts the claims every user token of these trials carries.
#[track_caller]
pub fn assert_user_claims(c: &AccessTokenClaims, user_id: &str, client_id: &str, scope: &str) {
    assert_eq!(c.sub, user_id);
    assert_eq!(c.client_id, client_id);
    assert_eq!(c.scope, scope);
    assert_eq!(
        c.groups,
        vec!["eng".to_string(), "staff".to_string()],
        "groups claim"
    );
    assert!(c.auth_time.is_some(), "auth_time");
}

/// Introspects as "resource-server".
pub async fn introspect(as_: &TestAs, rs_secret: &str, token: &str) -> Resp {
    post_form(
        as_,
        "/oauth/introspect",
        pairs(&[("token", token)]),
        Auth::Basic("resource-server", rs_secret),
    )
    .await
}

/// Registers a client dynamically (RFC 7591).
pub async fn register(as_: &TestAs, body: &Value) -> Resp {
    post_raw(
        as_,
        "/oauth/register",
        "application/json",
        body.to_string(),
        None,
    )
    .await
}

/// A tiny HTTP server on 127.0.0.1:0 serving one Client ID Metadata
/// Document at `/client.json`, counting how often it is fetched.
pub struct DocServer {
    pub client_id: String,
    pub hits: Arc<AtomicUsize>,
    state: Arc<DocState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DocServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct DocState {
    doc: Mutex<Value>,
    cache_control: Option<String>,
    hits: Arc<AtomicUsize>,
}

impl DocServer {
    /// `make` builds the document from the URL it is served at.
    pub async fn start(make: impl FnOnce(&str) -> Value, cache_control: Option<&str>) -> Self {
        use axum::response::IntoResponse;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let client_id = format!(
            "http://{}/client.json",
            listener.local_addr().expect("addr")
        );
        let hits = Arc::new(AtomicUsize::new(0));
        let state = Arc::new(DocState {
            doc: Mutex::new(make(&client_id)),
            cache_control: cache_control.map(str::to_string),
            hits: hits.clone(),
        });
        let app = axum::Router::new()
            .route(
                "/client.json",
                axum::routing::get(
                    |axum::extract::State(s): axum::extract::State<Arc<DocState>>| async move {
                        s.hits.fetch_add(1, Ordering::SeqCst);
                        let doc = s.doc.lock().expect("doc lock").clone();
                        let mut r = axum::Json(doc).into_response();
                        if let Some(cc) = &s.cache_control {
                            r.headers_mut()
                                .insert("cache-control", cc.parse().expect("header value"));
                        }
                        r
                    },
                ),
            )
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            client_id,
            hits,
            state,
            task,
        }
    }

    /// Serves `doc` from now on.
    pub fn replace(&self, doc: Value) {
        *self.state.doc.lock().expect("doc lock") = doc;
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// The usual CIMD document for `client_id`.
pub fn cimd_doc(client_id: &str, redirect: &str) -> Value {
    serde_json::json!({
        "client_id": client_id,
        "client_name": "Metadata Document Client",
        "redirect_uris": [redirect],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "none",
    })
}
