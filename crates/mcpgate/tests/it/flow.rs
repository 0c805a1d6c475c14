//! The OAuth steps a client and a user take, against a running server:
//! sign-in (through the one-time-password page when asked), consent, code,
//! token, refresh, and local verification of access tokens.

use mcpgate_jose::{JwtError, VerifiedJwt, Verifier, VerifyOptions};
use mcpgate_testkit::{AuthRequest, Browser, Page, post_form};
use serde_json::Value;

use crate::harness::Front;

/// The redirect URI every test client registers (nothing listens there).
pub const REDIRECT: &str = "http://127.0.0.1:9/cb";
pub const SCOPE: &str = "notes:read offline_access";

/// Opens `authorize_url`; if sent to the login page, signs in as
/// `username`/`password` and, when the server asks for a new password (a
/// one-time password was used), sets `new_password`. Returns the page that
/// follows: the consent page, the redirect to the client, or a failed login.
pub async fn sign_in(
    b: &mut Browser,
    srv: &Front,
    authorize_url: &str,
    username: &str,
    password: &str,
    new_password: Option<&str>,
) -> Page {
    let page = b.get(authorize_url).await;
    let Some(loc) = page.location.clone().filter(|l| l.starts_with("/login")) else {
        return page;
    };
    let login = b.get(&srv.url(&loc)).await;
    assert_eq!(login.status, 200, "login page: {}", login.body);
    let return_to = login.input("return_to").unwrap_or_default();
    assert!(
        !return_to.is_empty(),
        "the login page lost the authorization request"
    );
    let after = login_post(b, srv, &login, username, password, new_password).await;
    follow(b, srv, after).await
}

/// Submits the login form of `login` (and the password-change form if it follows).
pub async fn login_post(
    b: &mut Browser,
    srv: &Front,
    login: &Page,
    username: &str,
    password: &str,
    new_password: Option<&str>,
) -> Page {
    let form = vec![
        ("csrf".to_string(), login.input("csrf").expect("login csrf")),
        (
            "return_to".to_string(),
            login.input("return_to").unwrap_or_default(),
        ),
        ("username".to_string(), username.to_string()),
        ("password".to_string(), password.to_string()),
    ];
    let after = b.post_form(&srv.url("/login"), &form).await;
    match after.input("ticket") {
        Some(ticket) if after.status == 200 => {
            assert!(
                after.body.contains("Choose a new password"),
                "{}",
                after.body
            );
            let new = new_password.unwrap_or_else(|| {
                panic!("{username} must choose a new password, but the test gave none")
            });
            let form = vec![
                ("ticket".to_string(), ticket),
                (
                    "return_to".to_string(),
                    after.input("return_to").unwrap_or_default(),
                ),
                ("new_password".to_string(), new.to_string()),
                ("confirm".to_string(), new.to_string()),
            ];
            b.post_form(&srv.url("/login/password"), &form).await
        }
        _ => {
            assert!(
                new_password.is_none(),
                "expected the password-change page, got {}: {}",
                after.status,
                after.body
            );
            after
        }
    }
}

/// Follows one 303 back to a relative location on the server.
async fn follow(b: &mut Browser, srv: &Front, page: Page) -> Page {
    match page.location.clone() {
        Some(back) if page.status == 303 && back.starts_with('/') => b.get(&srv.url(&back)).await,
        _ => page,
    }
}

/// The consent page: approve a client, its scopes and resource.
pub fn is_consent_page(p: &Page) -> bool {
    p.consent_step() == Some("consent")
}

/// Consent is on record, and the page asks for the click that sends a
/// public client's code to its loopback redirect URI.
pub fn is_confirm_page(p: &Page) -> bool {
    p.consent_step() == Some("confirm")
}

/// Approves the consent page.
pub async fn approve(b: &mut Browser, srv: &Front, page: &Page) -> Page {
    assert!(
        is_consent_page(page),
        "expected the consent page, got {}: {}",
        page.status,
        page.body
    );
    b.decide(&srv.base, page, "approve").await
}

/// The code from the redirect to the client, after checking `state` and `iss`.
pub fn code_from(srv: &Front, req: &AuthRequest, page: &Page) -> String {
    assert_eq!(
        page.status, 303,
        "expected the redirect to the client, got {}: {}",
        page.status, page.body
    );
    let loc = page.location.as_deref().unwrap_or("");
    assert!(
        loc.starts_with(&format!("{}?", req.redirect_uri)),
        "redirected to {loc}"
    );
    let q = page.location_params();
    assert_eq!(q.get("state"), Some(&req.state), "{loc}");
    assert_eq!(q.get("iss"), Some(&srv.issuer), "{loc}");
    q.get("code")
        .cloned()
        .unwrap_or_else(|| panic!("no code in {loc}"))
}

/// Sign-in, consent or the loopback confirmation (if asked) and the code, in one.
pub async fn authorize(
    b: &mut Browser,
    srv: &Front,
    req: &AuthRequest,
    username: &str,
    password: &str,
) -> String {
    let page = sign_in(b, srv, &req.url(&srv.base), username, password, None).await;
    let page = b.approve_if_asked(&srv.base, page).await;
    code_from(srv, req, &page)
}

/// Tokens from a token response.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: String,
    pub refresh: Option<String>,
    pub json: Value,
}

impl Tokens {
    fn from_json(status: u16, v: Value) -> Self {
        assert_eq!(status, 200, "token endpoint: {v}");
        assert_eq!(
            v["token_type"]
                .as_str()
                .map(str::to_ascii_lowercase)
                .as_deref(),
            Some("bearer"),
            "{v}"
        );
        Self {
            access: v["access_token"]
                .as_str()
                .expect("access_token")
                .to_string(),
            refresh: v["refresh_token"].as_str().map(str::to_string),
            json: v,
        }
    }

    pub fn refresh(&self) -> &str {
        self.refresh.as_deref().expect("a refresh token")
    }
}

/// Redeems a code; `basic` authenticates a confidential client.
pub async fn redeem(
    srv: &Front,
    req: &AuthRequest,
    code: &str,
    basic: Option<(&str, &str)>,
) -> Tokens {
    let (status, v) = post_form(
        &srv.http,
        &srv.url("/oauth/token"),
        &req.token_form(code),
        basic,
    )
    .await;
    Tokens::from_json(status, v)
}

/// A refresh request; returns the raw status and body.
pub async fn refresh_raw(
    srv: &Front,
    client_id: &str,
    refresh_token: &str,
    basic: Option<(&str, &str)>,
) -> (u16, Value) {
    let form = vec![
        ("grant_type".to_string(), "refresh_token".to_string()),
        ("refresh_token".to_string(), refresh_token.to_string()),
        ("client_id".to_string(), client_id.to_string()),
    ];
    post_form(&srv.http, &srv.url("/oauth/token"), &form, basic).await
}

pub async fn refresh(
    srv: &Front,
    client_id: &str,
    refresh_token: &str,
    basic: Option<(&str, &str)>,
) -> Tokens {
    let (status, v) = refresh_raw(srv, client_id, refresh_token, basic).await;
    Tokens::from_json(status, v)
}

/// The published JWKS and a verifier built from it.
pub async fn jwks(srv: &Front) -> (Value, Verifier) {
    let doc = srv.get_json("/oauth/jwks.json").await;
    let v = Verifier::from_jwks_json(&doc).expect("a usable JWK set");
    (doc, v)
}

pub fn kids(doc: &Value) -> Vec<String> {
    doc["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_string())
        .collect()
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs() as i64
}

/// Verifies an access token as a resource server would (RFC 9068).
pub fn verify(v: &Verifier, srv: &Front, token: &str) -> Result<VerifiedJwt<Value>, JwtError> {
    v.verify(
        token,
        &VerifyOptions {
            issuer: &srv.issuer,
            audience: Some(&srv.resource),
            typ: Some("at+jwt"),
            now: now(),
            leeway: 5,
        },
    )
}

/// An authorization request for the default resource and scopes.
pub fn request(srv: &Front, client_id: &str) -> AuthRequest {
    AuthRequest::new(client_id, REDIRECT, SCOPE, &srv.resource)
}
