//! The consent registry and the consent page: a second authorization for
//! the same client, scopes and resource skips the page; new scopes or a new
//! resource ask again; `prompt=consent` forces it; deny sends
//! `access_denied` with `state` and `iss`; the page shows who is asking.

use libtest_mimic::Trial;
use mcpgate_store::StoreError;
use mcpgate_testkit::{AuthRequest, Browser};

use crate::common::*;

pub fn trials() -> Vec<Trial> {
    trials![
        second_authorization_skips_consent,
        second_login_skips_consent,
        new_scope_asks_again,
        new_resource_asks_again,
        prompt_consent_forces_the_page,
        deny_sends_access_denied_with_state_and_iss,
        consent_page_shows_client_redirect_host_and_scopes,
        consent_page_warns_about_localhost_redirects,
        prompt_none_without_session_is_login_required,
        prompt_none_without_consent_is_consent_required,
        revoked_consent_revokes_tokens_and_asks_again,
    ]
}

async fn second_authorization_skips_consent() {
    let as_ = setup().await;
    let mut b = Browser::new();
    let first = app_request(&as_);
    authorize_code(&as_, &mut b, &first, USER).await;
    // Same browser session, same client, scopes and resource: straight back with a code.
    let second = app_request(&as_);
    let page = b.get(&second.url(&as_.issuer)).await;
    let code = code_from(&as_, &second, &page);
    let r = redeem(&as_, &second, &code, Auth::Public("app")).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

/// The registry is server-side: a new login in another browser needs no
/// new consent either.
async fn second_login_skips_consent() {
    let as_ = setup().await;
    authorize_code(&as_, &mut Browser::new(), &app_request(&as_), USER).await;
    let req = AuthRequest::new("app", REDIRECT, "notes:read", &as_.resource);
    let page = Browser::new()
        .authorize_as(&as_.issuer, &req.url(&as_.issuer), USER)
        .await;
    code_from(&as_, &req, &page);
}

async fn new_scope_asks_again() {
    let as_ = setup().await;
    let mut b = Browser::new();
    authorize_code(&as_, &mut b, &app_request(&as_), USER).await;
    let wider = AuthRequest::new("app", REDIRECT, "notes:read notes:write", &as_.resource);
    let page = b.get(&wider.url(&as_.issuer)).await;
    assert!(
        is_consent_page(&page),
        "a new scope asks again: {} {}",
        page.status,
        page.body
    );
    assert!(page.body.contains("notes:write"));
    assert!(
        page.body.contains("class=\"tag new\""),
        "the new scope is marked new"
    );
    let page = b.decide(&as_.issuer, &page, "approve").await;
    let code = code_from(&as_, &wider, &page);
    let r = redeem(&as_, &wider, &code, Auth::Public("app")).await;
    assert_eq!(r.json["scope"], "notes:read notes:write", "{}", r.text);
    let user = as_.store.get_user_by_username(USER).await.unwrap();
    let consent = as_
        .store
        .get_consent(&user.id, "app")
        .await
        .expect("consent recorded");
    assert_eq!(
        consent.scopes,
        vec!["notes:read", "notes:write", "offline_access"],
        "the registry holds the union"
    );
}

async fn new_resource_asks_again() {
    let as_ = setup().await;
    let mut b = Browser::new();
    authorize_code(&as_, &mut b, &app_request(&as_), USER).await;
    let other = AuthRequest::new("app", REDIRECT, SCOPES, &as_.other_resource);
    let page = b.get(&other.url(&as_.issuer)).await;
    assert!(
        is_consent_page(&page),
        "a new resource asks again: {}",
        page.status
    );
    assert!(page.body.contains(&as_.other_resource));
}

async fn prompt_consent_forces_the_page() {
    let as_ = setup().await;
    let mut b = Browser::new();
    authorize_code(&as_, &mut b, &app_request(&as_), USER).await;
    let req = app_request(&as_);
    let page = b
        .get(&req.url_with(&as_.issuer, &[("prompt", Some("consent"))]))
        .await;
    assert!(
        is_consent_page(&page),
        "prompt=consent shows the page: {} {:?}",
        page.status,
        page.location
    );
    let page = b.decide(&as_.issuer, &page, "approve").await;
    code_from(&as_, &req, &page);
}

async fn deny_sends_access_denied_with_state_and_iss() {
    let as_ = setup().await;
    let mut b = Browser::new();
    let req = app_request(&as_);
    let page = b
        .authorize_as(&as_.issuer, &req.url(&as_.issuer), USER)
        .await;
    assert!(is_consent_page(&page));
    let page = b.decide(&as_.issuer, &page, "deny").await;
    assert_error_redirect(&as_, &req, &page, "access_denied");
    let user = as_.store.get_user_by_username(USER).await.unwrap();
    assert!(
        matches!(
            as_.store.get_consent(&user.id, "app").await,
            Err(StoreError::NotFound)
        ),
        "deny records nothing"
    );
    // And the next request asks again.
    let page = b.get(&app_request(&as_).url(&as_.issuer)).await;
    assert!(is_consent_page(&page));
}

async fn consent_page_shows_client_redirect_host_and_scopes() {
    let as_ = setup().await;
    let req = AuthRequest::new("app", REDIRECT, "notes:read notes:admin", &as_.resource);
    let page = Browser::new()
        .authorize_as(&as_.issuer, &req.url(&as_.issuer), USER)
        .await;
    assert!(is_consent_page(&page));
    for needle in [
        "Test client app",
        "<code class=\"client-id\">app</code>",
        "<strong class=\"redirect-host\">app.example.com</strong>",
        "Read your notes",
        "Delete notes",
        "Notes",
        as_.resource.as_str(),
    ] {
        assert!(page.body.contains(needle), "consent page shows {needle:?}");
    }
    assert!(
        !page.body.contains("your own computer"),
        "no localhost warning for a web redirect"
    );
}

async fn consent_page_warns_about_localhost_redirects() {
    let as_ = setup().await;
    as_.add_public_client("native", "http://127.0.0.1/callback")
        .await;
    let req = AuthRequest::new(
        "native",
        "http://127.0.0.1:49152/callback",
        "notes:read",
        &as_.resource,
    );
    let page = Browser::new()
        .authorize_as(&as_.issuer, &req.url(&as_.issuer), USER)
        .await;
    assert!(is_consent_page(&page), "{} {}", page.status, page.body);
    assert!(
        page.body.contains("your own computer"),
        "localhost-only redirect gets a warning"
    );
}

async fn prompt_none_without_session_is_login_required() {
    let as_ = setup().await;
    let req = app_request(&as_);
    let page = Browser::new()
        .get(&req.url_with(&as_.issuer, &[("prompt", Some("none"))]))
        .await;
    assert_error_redirect(&as_, &req, &page, "login_required");
}

async fn prompt_none_without_consent_is_consent_required() {
    let as_ = setup().await;
    let mut b = Browser::new();
    // Sign in (the consent page that follows is left unanswered).
    let page = b
        .authorize_as(&as_.issuer, &app_request(&as_).url(&as_.issuer), USER)
        .await;
    assert!(is_consent_page(&page));
    let req = app_request(&as_);
    let page = b
        .get(&req.url_with(&as_.issuer, &[("prompt", Some("none"))]))
        .await;
    assert_error_redirect(&as_, &req, &page, "consent_required");
}

/// Revoking a consent (what `mcpgate consents revoke` does) revokes the
/// client's refresh tokens for that user, and the next request asks again.
async fn revoked_consent_revokes_tokens_and_asks_again() {
    let as_ = setup().await;
    let mut b = Browser::new();
    let req = app_request(&as_);
    let code = authorize_code(&as_, &mut b, &req, USER).await;
    let r = redeem(&as_, &req, &code, Auth::Public("app")).await;
    let rt = r.str("refresh_token");
    let user = as_.store.get_user_by_username(USER).await.unwrap();
    as_.store
        .revoke_consent(
            &user.id,
            "app",
            mcpgate_store::RevokeAt {
                now: mcpgate_jose::Clock::now(&as_.clock),
                until: i64::MAX,
            },
        )
        .await
        .unwrap();
    refresh(&as_, &rt, Auth::Public("app"))
        .await
        .assert_oauth_error(400, "invalid_grant");
    assert!(is_consent_page(
        &b.get(&app_request(&as_).url(&as_.issuer)).await
    ));
}
