//! Response headers that protect the pages and the tokens: CSP with
//! `frame-ancestors 'none'`, `X-Frame-Options: DENY`, `Referrer-Policy:
//! no-referrer` on the login, consent and error pages; `__Host-` cookies
//! that are `Secure`, `HttpOnly`, `SameSite=Lax`; `no-store` on tokens.

use libtest_mimic::Trial;
use mcpgate_testkit::{AuthRequest, Browser, PASSWORD, Page};

use crate::common::*;

pub fn trials() -> Vec<Trial> {
    trials![
        login_page_security_headers,
        consent_page_security_headers,
        error_page_security_headers,
        session_cookie_attributes,
        code_redirect_is_not_cached,
        token_and_error_responses_are_no_store,
    ]
}

#[track_caller]
fn assert_page_headers(page: &Page) {
    let h = |n: &str| {
        page.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let csp = h("content-security-policy");
    assert!(csp.contains("frame-ancestors 'none'"), "CSP {csp:?}");
    assert!(csp.contains("default-src 'none'"), "CSP {csp:?}");
    assert!(!csp.contains("unsafe-inline"), "CSP {csp:?}");
    assert_eq!(h("x-frame-options"), "DENY");
    assert_eq!(h("referrer-policy"), "no-referrer");
    assert_eq!(h("x-content-type-options"), "nosniff");
    assert_eq!(h("cache-control"), "no-store");
}

async fn login_page_security_headers() {
    let as_ = setup().await;
    let page = Browser::new().get(&as_.url("/login")).await;
    assert_eq!(page.status, 200);
    assert_page_headers(&page);
    // A failed login re-renders the page with the same headers.
    let mut b = Browser::new();
    let form_page = b.get(&as_.url("/login")).await;
    let form = pairs(&[
        ("csrf", &form_page.input("csrf").unwrap()),
        ("username", USER),
        ("password", "wrong wrong wrong"),
    ]);
    let failed = b.post_form(&as_.url("/login"), &form).await;
    assert_eq!(failed.status, 401);
    assert_page_headers(&failed);
}

async fn consent_page_security_headers() {
    let as_ = setup().await;
    let page = Browser::new()
        .authorize_as(&as_.issuer, &app_request(&as_).url(&as_.issuer), USER)
        .await;
    assert!(is_consent_page(&page));
    assert_page_headers(&page);
}

async fn error_page_security_headers() {
    let as_ = setup().await;
    let req = AuthRequest::new("app", "https://evil.example.com/cb", SCOPES, &as_.resource);
    let page = Browser::new().get(&req.url(&as_.issuer)).await;
    assert_error_page(&page, 400);
    assert_page_headers(&page);
}

async fn session_cookie_attributes() {
    let as_ = setup().await;
    let mut b = Browser::new();
    let form_page = b.get(&as_.url("/login")).await;
    let nonce_cookie = form_page
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_string)
        .collect::<Vec<_>>();
    assert!(
        !nonce_cookie.is_empty(),
        "the login form sets its CSRF nonce cookie"
    );
    let form = pairs(&[
        ("csrf", &form_page.input("csrf").unwrap()),
        ("username", USER),
        ("password", PASSWORD),
    ]);
    let out = b.post_form(&as_.url("/login"), &form).await;
    assert_eq!(out.status, 200, "{}", out.body);
    let cookies: Vec<String> = out
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_string)
        .collect();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("__Host-mcpgate-session="))
        .expect("session cookie set");
    for c in nonce_cookie.iter().chain(cookies.iter()) {
        let attrs: Vec<&str> = c.split(';').map(str::trim).collect();
        assert!(attrs[0].starts_with("__Host-"), "{c}");
        for a in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
            assert!(
                attrs.iter().any(|x| x.eq_ignore_ascii_case(a)),
                "{a} in {c}"
            );
        }
        assert!(
            !attrs
                .iter()
                .any(|x| x.to_ascii_lowercase().starts_with("domain")),
            "__Host- cookies have no Domain: {c}"
        );
    }
    let value = session
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1;
    assert!(value.len() >= 43, "session ids carry at least 256 bits");
}

/// The redirect carrying the code must not be cached either.
async fn code_redirect_is_not_cached() {
    let as_ = setup().await;
    let mut b = Browser::new();
    let req = app_request(&as_);
    let page = b
        .authorize_as(&as_.issuer, &req.url(&as_.issuer), USER)
        .await;
    let page = b.decide(&as_.issuer, &page, "approve").await;
    code_from(&as_, &req, &page);
    assert_eq!(
        page.headers
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    assert_eq!(
        page.headers
            .get("referrer-policy")
            .and_then(|v| v.to_str().ok()),
        Some("no-referrer")
    );
}

async fn token_and_error_responses_are_no_store() {
    let as_ = setup().await;
    let t = tokens_for(&as_, &app_request(&as_), Auth::Public("app")).await;
    let r = refresh(&as_, &t.refresh, Auth::Public("app")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let e = refresh(&as_, "garbage", Auth::Public("app")).await;
    e.assert_oauth_error(400, "invalid_grant");
    let e = post_raw(&as_, "/oauth/token", "text/plain", "x", None).await;
    e.assert_oauth_error(400, "invalid_request");
}
