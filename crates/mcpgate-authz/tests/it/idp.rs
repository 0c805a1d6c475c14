//! Upstream sign-in against a small fake OIDC provider served by the test
//! on 127.0.0.1:0 (discovery, JWKS, token endpoint; its ID tokens signed
//! with `mcpgate_jose::SigningKey` and shaped per trial): the ordering
//! (consent before code, upstream state cookie only on the redirect to the
//! provider), PKCE S256, every state attack, every ID token attack, RFC
//! 9207 `iss`, and the allowlist. The real provider (npm `oidc-provider`)
//! drives the whole flow and the confused-deputy attack in `idp_real`.

use std::sync::{Arc, Mutex};

use libtest_mimic::Trial;
use mcpgate_authz::IdentityProvider;
use mcpgate_jose::{Clock, KeyAlg, SigningKey};
use mcpgate_testkit::{AuthRequest, Browser, Options, Page, TestAs};
use mcpgate_types::Secret;
use serde_json::{Value, json};

use crate::common::*;

pub fn trials() -> Vec<Trial> {
    trials![
        sign_in_then_consent_then_code,
        state_cookie_only_on_redirect_to_provider,
        session_user_never_goes_upstream,
        callback_without_state_refused,
        callback_without_cookie_refused,
        reused_state_refused,
        another_users_state_refused,
        expired_state_refused,
        id_token_wrong_aud_refused,
        id_token_wrong_iss_refused,
        id_token_bad_signature_refused,
        id_token_expired_refused,
        id_token_wrong_nonce_refused,
        id_token_extra_audience_refused,
        iss_parameter_mismatch_refused,
        iss_parameter_missing_refused,
        discovery_issuer_mismatch_refused,
        allowlist_refuses_outsider,
        no_allowlist_admits_nobody,
        login_csrf_required_to_start,
    ]
}

pub const CLIENT_ID: &str = "mcpgate-at-corp";
pub const CLIENT_SECRET: &str = "corp-secret-0123456789abcdef";
pub const UPSTREAM_COOKIE: &str = "__Host-mcpgate-upstream";
pub const SESSION_COOKIE: &str = "__Host-mcpgate-session";

/// A token request as the fake provider received it: (form, Authorization).
type TokenRequest = (Vec<(String, String)>, String);

struct FakeState {
    issuer: String,
    /// The `issuer` the discovery document claims (normally `issuer`).
    discovery_issuer: Mutex<String>,
    key: SigningKey,
    /// Signs the next ID token instead of `key` (same kid: a forgery).
    forger: Mutex<Option<SigningKey>>,
    /// Claims of the next ID token.
    next: Mutex<Value>,
    /// The last token request: (form, Authorization header).
    last: Mutex<Option<TokenRequest>>,
    /// `token_endpoint_auth_methods_supported` in discovery, when set.
    auth_methods: Mutex<Option<Value>>,
    /// What `/userinfo` answers, when set; else the ID token's claims.
    userinfo: Mutex<Option<Value>>,
}

/// A minimal OIDC provider: enough to drive mcpgate's callback.
pub struct FakeIdp {
    s: Arc<FakeState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeIdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeIdp {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let s = Arc::new(FakeState {
            discovery_issuer: Mutex::new(issuer.clone()),
            issuer,
            key: SigningKey::generate("idp-key-1", KeyAlg::Es256).unwrap(),
            forger: Mutex::new(None),
            next: Mutex::new(Value::Null),
            last: Mutex::new(None),
            auth_methods: Mutex::new(None),
            userinfo: Mutex::new(None),
        });
        use axum::extract::State;
        use axum::response::IntoResponse;
        use axum::routing::{get, post};
        type S = State<Arc<FakeState>>;
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(|State(s): S| async move {
                    let i = &s.issuer;
                    let mut doc = json!({
                        "issuer": *s.discovery_issuer.lock().unwrap(),
                        "authorization_endpoint": format!("{i}/authorize"),
                        "token_endpoint": format!("{i}/token"),
                        "jwks_uri": format!("{i}/jwks"),
                        "userinfo_endpoint": format!("{i}/userinfo"),
                        "response_types_supported": ["code"],
                        "code_challenge_methods_supported": ["S256"],
                        "authorization_response_iss_parameter_supported": true,
                    });
                    if let Some(m) = s.auth_methods.lock().unwrap().clone() {
                        doc["token_endpoint_auth_methods_supported"] = m;
                    }
                    axum::Json(doc)
                }),
            )
            .route(
                "/jwks",
                get(|State(s): S| async move {
                    axum::Json(json!({"keys": [s.key.public_jwk()]}))
                }),
            )
            .route(
                "/token",
                post(
                    |State(s): S, headers: axum::http::HeaderMap, body: axum::body::Bytes| async move {
                        let form: Vec<(String, String)> =
                            url::form_urlencoded::parse(&body).into_owned().collect();
                        let auth = headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        *s.last.lock().unwrap() = Some((form, auth));
                        let claims = s.next.lock().unwrap().clone();
                        let key = s.forger.lock().unwrap().clone().unwrap_or(s.key.clone());
                        let id_token = key.sign("JWT", &claims).unwrap();
                        axum::Json(json!({
                            "access_token": "upstream-access-token",
                            "token_type": "Bearer",
                            "expires_in": 300,
                            "id_token": id_token,
                        }))
                    },
                ),
            )
            .route(
                "/userinfo",
                get(|State(s): S, headers: axum::http::HeaderMap| async move {
                    // As GitHub: the token only in the Authorization header.
                    let ok = headers
                        .get(axum::http::header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        == Some("Bearer upstream-access-token");
                    if !ok {
                        return axum::http::StatusCode::UNAUTHORIZED.into_response();
                    }
                    let info = s.userinfo.lock().unwrap().clone();
                    axum::Json(info.unwrap_or_else(|| s.next.lock().unwrap().clone()))
                        .into_response()
                }),
            )
            .with_state(s.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { s, task }
    }

    pub fn issuer(&self) -> &str {
        &self.s.issuer
    }

    /// Signs `claims` with the provider's key (the one its JWKS publishes).
    pub fn sign(&self, typ: &str, claims: &Value) -> String {
        self.s.key.sign(typ, claims).unwrap()
    }

    pub fn set_next(&self, claims: Value) {
        *self.s.next.lock().unwrap() = claims;
    }

    /// What `/userinfo` answers from now on.
    pub fn set_userinfo(&self, claims: Value) {
        *self.s.userinfo.lock().unwrap() = Some(claims);
    }

    /// Lists `methods` as `token_endpoint_auth_methods_supported`.
    pub fn set_auth_methods(&self, methods: Value) {
        *self.s.auth_methods.lock().unwrap() = Some(methods);
    }

    /// The last token request: (form, Authorization header).
    pub fn last_token_request(&self) -> Option<(Vec<(String, String)>, String)> {
        self.s.last.lock().unwrap().clone()
    }
}

/// The provider settings for issuer `issuer`.
pub fn provider(issuer: &str) -> IdentityProvider {
    let mut p = IdentityProvider::oidc("corp", issuer, CLIENT_ID, Secret::new(CLIENT_SECRET));
    p.display_name = "Corp SSO".into();
    p.allow_any_account = true;
    p
}

/// An AS with the provider `p`, user-less, with client "app".
pub async fn as_with(p: IdentityProvider) -> TestAs {
    let as_ = TestAs::start_with(Options {
        store: None,
        tweak: Box::new(move |s| s.identity_providers.push(p)),
        ..Default::default()
    })
    .await;
    as_.add_public_client("app", REDIRECT).await;
    as_
}

/// The redirect to the provider, and what it carried.
pub struct Begun {
    /// The provider authorization URL mcpgate redirected to.
    pub location: String,
    pub params: std::collections::BTreeMap<String, String>,
}

fn set_cookie_names(page: &Page) -> Vec<String> {
    page.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|s| s.to_string())
        .collect()
}

/// The upstream state cookie set by `page`, if any (not a deletion).
pub fn upstream_cookie_set(page: &Page) -> Option<String> {
    set_cookie_names(page)
        .into_iter()
        .find(|c| c.starts_with(&format!("{UPSTREAM_COOKIE}=")) && !c.contains("Max-Age=0"))
}

/// Opens `req` without a session, and on the login page chooses the
/// provider. Asserts that no upstream state cookie appears before the
/// choice, and that it appears (with its attributes) on the redirect.
pub async fn begin(as_: &TestAs, b: &mut Browser, req: &AuthRequest, provider_auth: &str) -> Begun {
    let first = b.get(&req.url(&as_.issuer)).await;
    assert_eq!(first.status, 303, "{}", first.body);
    assert!(
        upstream_cookie_set(&first).is_none(),
        "state cookie before the user chose"
    );
    let loc = first.location.clone().unwrap();
    assert!(loc.starts_with("/login?"), "{loc}");
    let login = b.get(&as_.url(&loc)).await;
    assert_eq!(login.status, 200);
    assert!(
        login.body.contains("Sign in with Corp SSO"),
        "{}",
        login.body
    );
    assert!(
        upstream_cookie_set(&login).is_none(),
        "state cookie on the login page"
    );
    let form = pairs(&[
        ("csrf", &login.input("csrf").unwrap()),
        ("return_to", &login.input("return_to").unwrap()),
    ]);
    let go = b.post_form(&as_.url("/login/idp/corp"), &form).await;
    assert_eq!(go.status, 303, "{}", go.body);
    let to = go.location.clone().unwrap();
    assert!(to.starts_with(&format!("{provider_auth}?")), "{to}");
    let cookie = upstream_cookie_set(&go).expect("state cookie on the redirect to the provider");
    for attr in [
        "Path=/",
        "Secure",
        "HttpOnly",
        "SameSite=Lax",
        "Max-Age=600",
    ] {
        assert!(cookie.contains(attr), "{attr} in {cookie}");
    }
    assert!(!cookie.contains("Domain"), "{cookie}");
    let params = go.location_params();
    assert_eq!(
        params.get("code_challenge_method").map(String::as_str),
        Some("S256")
    );
    assert_eq!(
        params.get("response_type").map(String::as_str),
        Some("code")
    );
    assert_eq!(params.get("client_id").map(String::as_str), Some(CLIENT_ID));
    assert_eq!(
        params.get("redirect_uri"),
        Some(&as_.url("/login/idp/corp/callback"))
    );
    assert_eq!(
        params.get("scope").map(String::as_str),
        Some("openid email profile")
    );
    assert!(params.get("state").is_some_and(|s| s.len() >= 40));
    Begun {
        location: to,
        params,
    }
}

/// Good ID token claims for `begun`.
pub fn good_claims(as_: &TestAs, idp: &FakeIdp, begun: &Begun) -> Value {
    let now = as_.clock.now();
    json!({
        "iss": idp.issuer(),
        "sub": "alice-upstream-id",
        "aud": CLIENT_ID,
        "iat": now,
        "exp": now + 300,
        "nonce": begun.params["nonce"],
        "email": "alice@corp.example",
        "email_verified": true,
        "name": "Alice Upstream",
    })
}

/// The provider's redirect back to mcpgate, as a browser would follow it.
/// One whole sign-in through the fake provider in browser `b`: begin,
/// the provider answers with good claims changed by `tweak`, callback.
pub async fn sign_in_with(
    as_: &TestAs,
    idp: &FakeIdp,
    b: &mut Browser,
    tweak: impl FnOnce(&mut Value),
) -> Page {
    let auth = format!("{}/authorize", idp.issuer());
    let begun = begin(as_, b, &app_request(as_), &auth).await;
    let mut claims = good_claims(as_, idp, &begun);
    tweak(&mut claims);
    idp.set_next(claims);
    callback(as_, b, Some(&begun.params["state"]), Some(idp.issuer())).await
}

pub async fn callback(
    as_: &TestAs,
    b: &mut Browser,
    state: Option<&str>,
    iss: Option<&str>,
) -> Page {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    ser.append_pair("code", "upstream-code");
    if let Some(s) = state {
        ser.append_pair("state", s);
    }
    if let Some(i) = iss {
        ser.append_pair("iss", i);
    }
    b.get(&as_.url(&format!("/login/idp/corp/callback?{}", ser.finish())))
        .await
}

/// A refused callback: an HTML page that goes nowhere, no session, no user.
#[track_caller]
pub fn assert_refused(as_: &TestAs, b: &Browser, page: &Page, status: u16, says: &str) {
    assert_error_page(page, status);
    assert!(
        page.body.contains(says),
        "page should say {says:?}: {}",
        page.body
    );
    assert!(
        b.cookie(SESSION_COOKIE).is_none(),
        "no session after a refused sign-in"
    );
    let _ = as_;
}

pub async fn no_linked_users(as_: &TestAs) {
    let users = as_.store.list_users().await.unwrap();
    assert!(users.is_empty(), "no user may be created: {users:?}");
}

async fn sign_in_then_consent_then_code() {
    let idp = FakeIdp::start().await;
    let as_ = as_with(provider(idp.issuer())).await;
    let req = app_request(&as_);
    let mut b = Browser::new();
    let begun = begin(&as_, &mut b, &req, &format!("{}/authorize", idp.issuer())).await;
    assert!(begun.params.get("nonce").is_some_and(|s| s.len() >= 40));
    idp.set_next(good_claims(&as_, &idp, &begun));
    let back = callback(
        &as_,
        &mut b,
        Some(&begun.params["state"]),
        Some(idp.issuer()),
    )
    .await;
    // Signed in, sent back to the bound authorization request, not to the client.
    assert_eq!(back.status, 303, "{}", back.body);
    let loc = back.location.clone().unwrap();
    assert!(loc.starts_with("/oauth/authorize?"), "{loc}");
    assert!(loc.contains("client_id=app"), "{loc}");
    assert!(b.cookie(SESSION_COOKIE).is_some());
    assert!(b.cookie(UPSTREAM_COOKIE).is_none(), "state cookie cleared");
    // The upstream token request used PKCE S256 and client_secret_basic.
    let (form, auth) = idp.s.last.lock().unwrap().clone().unwrap();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let verifier = get("code_verifier").expect("code_verifier sent");
    assert_eq!(
        mcpgate_testkit::pkce::s256_challenge(&verifier),
        begun.params["code_challenge"]
    );
    assert_eq!(
        get("redirect_uri"),
        Some(as_.url("/login/idp/corp/callback"))
    );
    assert!(auth.starts_with("Basic "), "client_secret_basic: {auth}");
    // The user exists, linked to the upstream subject.
    let link = as_
        .store
        .get_linked_identity("corp", "alice-upstream-id")
        .await
        .unwrap();
    let user = as_.store.get_user(&link.user_id).await.unwrap();
    assert_eq!(user.display_name.as_deref(), Some("Alice Upstream"));
    assert_eq!(user.password_hash, None);
    // mcpgate's own consent comes next; never a code before it.
    let consent = b.get(&as_.url(&loc)).await;
    assert!(is_consent_page(&consent), "{}", consent.body);
    assert!(upstream_cookie_set(&consent).is_none());
    let done = b.decide(&as_.issuer, &consent, "approve").await;
    let code = code_from(&as_, &req, &done);
    let r = redeem(&as_, &req, &code, Auth::Public("app")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let claims = verify_access_token(&as_, &r.str("access_token"), &as_.resource).await;
    assert_eq!(claims.sub, user.id);
    // A second sign-in through the provider finds the same user.
    b.clear_cookies();
    let begun = begin(&as_, &mut b, &req, &format!("{}/authorize", idp.issuer())).await;
    idp.set_next(good_claims(&as_, &idp, &begun));
    let back = callback(
        &as_,
        &mut b,
        Some(&begun.params["state"]),
        Some(idp.issuer()),
    )
    .await;
    assert_eq!(back.status, 303);
    assert_eq!(as_.store.list_users().await.unwrap().len(), 1);
    // Consent is remembered for "app": the code follows directly.
    let again = b.get(&as_.url(back.location.as_deref().unwrap())).await;
    code_from(&as_, &req, &again);
}

async fn state_cookie_only_on_redirect_to_provider() {
    let idp = FakeIdp::start().await;
    let as_ = as_with(provider(idp.issuer())).await;
    let req = app_request(&as_);
    let mut b = Browser::new();
    // `begin` asserts: none on /authorize, none on the login page, set on
    // the redirect that follows the user's choice.
    begin(&as_, &mut b, &req, &format!("{}/authorize", idp.issuer())).await;
    assert!(b.cookie(UPSTREAM_COOKIE).is_some());
    // A GET of the start URL is not a way to start (no state created).
    let g = b.get(&as_.url("/login/idp/corp")).await;
    assert!(upstream_cookie_set(&g).is_none());
    assert_ne!(g.status, 303);
}

async fn session_user_never_goes_upstream() {
    let idp = FakeIdp::start().await;
    let as_ = as_with(provider(idp.issuer())).await;
    as_.add_public_client("other", "https://other.example/cb")
        .await;
    let req = app_request(&as_);
    let mut b = Browser::new();
    let begun = begin(&as_, &mut b, &req, &format!("{}/authorize", idp.issuer())).await;
    idp.set_next(good_claims(&as_, &idp, &begun));
    let back = callback(
        &as_,
        &mut b,
        Some(&begun.params["state"]),
        Some(idp.issuer()),
    )
    .await;
    assert_eq!(back.status, 303);
    // With a session, another client's request shows mcpgate's consent
    // page at once: no redirect to the provider, no state cookie.
    let other = AuthRequest::new("other", "https://other.example/cb", SCOPES, &as_.resource);
    let page = b.get(&other.url(&as_.issuer)).await;
    assert!(is_consent_page(&page), "{}", page.body);
    assert!(page.body.contains("other.example"));
    assert!(upstream_cookie_set(&page).is_none());
}

async fn callback_without_state_refused() {
    let idp = FakeIdp::start().await;
    let as_ = as_with(provider(idp.issuer())).await;
    let mut b = Browser::new();
    let begun = begin(
        &as_,
        &mut b,
        &app_request(&as_),
        &format!("{}/authorize", idp.issuer()),
    )
    .await;
    idp.set_next(good_claims(&as_, &idp, &begun));
    let page = callback(&as_, &mut b, None, Some(idp.issuer())).await;
    assert_refused(&as_, &b, &page, 400, "no state");
    // An empty state is no state.
    let page = callback(&as_, &mut b, Some(""), Some(idp.issuer())).await;
    assert_refused(&as_, &b, &page, 400, "no state");
    no_linked_users(&as_).await;
}

async fn callback_without_cookie_refused() {
    let idp = FakeIdp::start().await;
    let as_ = as_with(provider(idp.issuer())).await;
    let mut b = Browser::new();
    let begun = begin(
        &as_,
        &mut b,
        &app_request(&as_),
        &format!("{}/authorize", idp.issuer()),
    )
    .await;
    idp.set_next(good_claims(&as_, &idp, &begun));
    b.remove_cookie(UPSTREAM_COOKIE);
    let page = callback(
        &as_,
        &mut b,
        Some(&begun.params["state"]),
        Some(idp.issuer()),
    )
    .await;
    assert_refused(&as_, &b, &page, 400, "did not start this sign-in");
    no_linked_users(&as_).await;
}

async fn reused_state_refused() {
    let idp = FakeIdp::start().await;
    let as_ = as_with(provider(idp.issuer())).await;
    let mut b = Browser::new();
    let begun = begin(
        &as_,
        &mut b,
        &app_request(&as_),
        &format!("{}/authorize", idp.issuer()),
    )
    .await;
    idp.set_next(good_claims(&as_, &idp, &begun));
    let cookie = b.cookie(UPSTREAM_COOKIE).unwrap().to_string();
    let ok = callback(
        &as_,
        &mut b,
        Some(&begun.params["state"]),
        Some(idp.issuer()),
    )
    .await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    // Replay the same callback, cookie and all, in a fresh browser.
    let mut replay = Browser::new();
    replay.set_cookie(UPSTREAM_COOKIE, &cookie);
    let page = callback(
        &as_,
        &mut replay,
        Some(&begun.params["state"]),
        Some(idp.issuer()),
    )
    .await;
    assert_refused(&as_, &replay, &page, 400, "already used");
}

async fn another_users_state_refused() {
    let idp = FakeIdp::start().await;
    let as_ = as_with(provider(idp.issuer())).await;
    let auth = format!("{}/authorize", idp.issuer());
    // The attacker starts a sign-in and keeps its state...
    let mut attacker = Browser::new();
    let theirs = begin(&as_, &mut attacker, &app_request(&as_), &auth).await;
    // ...the victim has started one of their own...
    let mut victim = Browser::new();
    let _mine = begin(&as_, &mut victim, &app_request(&as_), &auth).await;
    idp.set_next(json!({
        "iss": idp.issuer(), "sub": "mallory", "aud": CLIENT_ID,
        "exp": as_.clock.now() + 300, "nonce": theirs.params["nonce"],
    }));
    // ...and is lured to a callback carrying the attacker's state (login CSRF).
    let page = callback(
        &as_,
        &mut victim,
        Some(&theirs.params["state"]),
        Some(idp.issuer()),
    )
    .await;
    assert_refused(&as_, &victim, &page, 400, "another browser");
    // A browser with no sign-in at all is refused too.
    let mut bystander = Browser::new();
    let page = callback(
        &as_,
        &mut bystander,
        Some(&theirs.params["state"]),
        Some(idp.issuer()),
    )
    .await;
    assert_refused(&as_, &bystander, &page, 400, "did not start");
    no_linked_users(&as_).await;
    // The refused attempts did not consume the attacker's own record.
    let page = callback(
        &as_,
        &mut attacker,
        Some(&theirs.params["state"]),
        Some(idp.issuer()),
    )
    .await;
    assert_eq!(page.status, 303, "{}", page.body);
}

async fn expired_state_refused() {
    let idp = FakeIdp::start().await;
    let as_ = as_with(provider(idp.issuer())).await;
    let mut b = Browser::new();
    let begun = begin(
        &as_,
        &mut b,
        &app_request(&as_),
        &format!("{}/authorize", idp.issuer()),
    )
    .await;
    as_.clock.advance(601);
    idp.set_next(good_claims(&as_, &idp, &begun));
    let page = callback(
        &as_,
        &mut b,
        Some(&begun.params["state"]),
        Some(idp.issuer()),
    )
    .await;
    assert_refused(&as_, &b, &page, 400, "expired");
    no_linked_users(&as_).await;
}

/// Runs a sign-in whose ID token is `good_claims` changed by `f`; it must
/// be refused as unverifiable, with no session and no user.
async fn id_token_attack(f: impl FnOnce(&mut Value, &FakeIdp)) {
    let idp = FakeIdp::start().await;
    let as_ = as_with(provider(idp.issuer())).await;
    let mut b = Browser::new();
    let begun = begin(
        &as_,
        &mut b,
        &app_request(&as_),
        &format!("{}/authorize", idp.issuer()),
    )
    .await;
    let mut claims = good_claims(&as_, &idp, &begun);
    f(&mut claims, &idp);
    idp.set_next(claims);
    let page = callback(
        &as_,
        &mut b,
        Some(&begun.params["state"]),
        Some(idp.issuer()),
    )
    .await;
    assert_refused(&as_, &b, &page, 400, "could not be verified");
    no_linked_users(&as_).await;
}

async fn id_token_wrong_aud_refused() {
    id_token_attack(|c, _| c["aud"] = json!("some-other-client")).await;
}

async fn id_token_extra_audience_refused() {
    id_token_attack(|c, _| c["aud"] = json!([CLIENT_ID, "some-other-client"])).await;
}

async fn id_token_wrong_iss_refused() {
    id_token_attack(|c, _| c["iss"] = json!("http://127.0.0.1:1")).await;
}

async fn id_token_bad_signature_refused() {
    id_token_attack(|_, idp| {
        // Another key under the provider's kid: the signature cannot verify.
        *idp.s.forger.lock().unwrap() =
            Some(SigningKey::generate("idp-key-1", KeyAlg::Es256).unwrap());
    })
    .await;
}

async fn id_token_expired_refused() {
    id_token_attack(|c, _| {
        let exp = c["iat"].as_i64().unwrap() - 120;
        c["exp"] = json!(exp);
    })
    .await;
}

async fn id_token_wrong_nonce_refused() {
    id_token_attack(|c, _| c["nonce"] = json!("not-the-nonce-that-was-sent")).await;
}

async fn iss_parameter_mismatch_refused() {
    let idp = FakeIdp::start().await;
    let as_ = as_with(provider(idp.issuer())).await;
    let mut b = Browser::new();
    let begun = begin(
        &as_,
        &mut b,
        &app_request(&as_),
        &format!("{}/authorize", idp.issuer()),
    )
    .await;
    idp.set_next(good_claims(&as_, &idp, &begun));
    let other = format!("{}/", idp.issuer());
    let page = callback(&as_, &mut b, Some(&begun.params["state"]), Some(&other)).await;
    assert_refused(&as_, &b, &page, 400, "another issuer");
    no_linked_users(&as_).await;
}

async fn iss_parameter_missing_refused() {
    let idp = FakeIdp::start().await;
    let as_ = as_with(provider(idp.issuer())).await;
    let mut b = Browser::new();
    let begun = begin(
        &as_,
        &mut b,
        &app_request(&as_),
        &format!("{}/authorize", idp.issuer()),
    )
    .await;
    idp.set_next(good_claims(&as_, &idp, &begun));
    let page = callback(&as_, &mut b, Some(&begun.params["state"]), None).await;
    assert_refused(&as_, &b, &page, 400, "lacks its issuer");
    no_linked_users(&as_).await;
}

async fn discovery_issuer_mismatch_refused() {
    let idp = FakeIdp::start().await;
    *idp.s.discovery_issuer.lock().unwrap() = format!("{}/", idp.issuer());
    let as_ = as_with(provider(idp.issuer())).await;
    let req = app_request(&as_);
    let mut b = Browser::new();
    let first = b.get(&req.url(&as_.issuer)).await;
    let login = b.get(&as_.url(first.location.as_deref().unwrap())).await;
    let form = pairs(&[
        ("csrf", &login.input("csrf").unwrap()),
        ("return_to", &login.input("return_to").unwrap()),
    ]);
    let go = b.post_form(&as_.url("/login/idp/corp"), &form).await;
    assert_error_page(&go, 400);
    assert!(upstream_cookie_set(&go).is_none());
}

/// A provider built in code without an allowlist and without
/// `allow_any_account` admits nobody (the configuration file refuses it
/// before this; this is the rule at sign-in).
async fn no_allowlist_admits_nobody() {
    let idp = FakeIdp::start().await;
    let mut p = provider(idp.issuer());
    p.allow_any_account = false;
    let as_ = as_with(p).await;
    let mut b = Browser::new();
    let page = sign_in_with(&as_, &idp, &mut b, |_| {}).await;
    assert_refused(&as_, &b, &page, 403, "accepts no account of this provider");
    no_linked_users(&as_).await;
}

async fn allowlist_refuses_outsider() {
    let idp = FakeIdp::start().await;
    let mut p = provider(idp.issuer());
    p.allowed_email_domains = vec!["corp.example".into()];
    let as_ = as_with(p).await;
    let mut b = Browser::new();
    let begun = begin(
        &as_,
        &mut b,
        &app_request(&as_),
        &format!("{}/authorize", idp.issuer()),
    )
    .await;
    let mut claims = good_claims(&as_, &idp, &begun);
    claims["email"] = json!("eve@elsewhere.example");
    idp.set_next(claims);
    let page = callback(
        &as_,
        &mut b,
        Some(&begun.params["state"]),
        Some(idp.issuer()),
    )
    .await;
    assert_refused(&as_, &b, &page, 403, "not in a domain this server accepts");
    no_linked_users(&as_).await;
    // An unverified address in the right domain does not pass either.
    let begun = begin(
        &as_,
        &mut b,
        &app_request(&as_),
        &format!("{}/authorize", idp.issuer()),
    )
    .await;
    let mut claims = good_claims(&as_, &idp, &begun);
    claims["email_verified"] = json!(false);
    idp.set_next(claims);
    let page = callback(
        &as_,
        &mut b,
        Some(&begun.params["state"]),
        Some(idp.issuer()),
    )
    .await;
    assert_refused(&as_, &b, &page, 403, "not in a domain");
    no_linked_users(&as_).await;
}

async fn login_csrf_required_to_start() {
    let idp = FakeIdp::start().await;
    let as_ = as_with(provider(idp.issuer())).await;
    // A cross-site form post (no login nonce cookie, no valid token).
    let mut b = Browser::new();
    let go = b
        .post_form(
            &as_.url("/login/idp/corp"),
            &pairs(&[("csrf", "x"), ("return_to", "")]),
        )
        .await;
    assert_error_page(&go, 403);
    assert!(upstream_cookie_set(&go).is_none());
}
