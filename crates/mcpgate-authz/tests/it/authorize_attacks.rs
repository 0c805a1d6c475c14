//! Attacks on the front channel, each its own trial: changed or repeated
//! `redirect_uri` (an error page, never a redirect), PKCE downgrades,
//! foreign resources and unknown scopes (error redirects with `iss`),
//! forged, tampered and replayed consent forms, and login brute force.

use libtest_mimic::Trial;
use mcpgate_store::StoreError;
use mcpgate_testkit::{AuthRequest, Browser, Options, PASSWORD, Page, TestAs};

use crate::common::*;

pub fn trials() -> Vec<Trial> {
    trials![
        redirect_uri_unregistered,
        redirect_uri_prefix,
        redirect_uri_suffix,
        redirect_uri_host_suffix,
        redirect_uri_case_changed_in_path,
        redirect_uri_case_changed_in_host,
        redirect_uri_trailing_slash,
        redirect_uri_query_added,
        redirect_uri_fragment,
        redirect_uri_userinfo,
        redirect_uri_percent_encoded,
        redirect_uri_checked_before_anything_else,
        redirect_uri_missing_with_two_registered,
        repeated_redirect_uri_is_an_error_page,
        repeated_client_id_is_an_error_page,
        unknown_client_is_an_error_page,
        missing_code_challenge_is_invalid_request,
        plain_pkce_is_invalid_request,
        missing_code_challenge_method_is_invalid_request,
        malformed_code_challenge_is_invalid_request,
        foreign_resource_is_invalid_target,
        missing_resource_is_invalid_target,
        unknown_scope_is_invalid_scope,
        self_registered_client_errors_are_pages_until_approved,
        token_response_type_is_refused,
        repeated_scope_is_invalid_request,
        consent_post_without_csrf_is_refused,
        consent_form_replayed_for_another_client_is_refused,
        consent_form_with_escalated_scope_is_refused,
        consent_form_replayed_in_another_session_is_refused,
        consent_form_expires,
        login_brute_force_hits_account_limit,
        login_per_ip_limit,
        login_without_csrf_is_refused,
        login_return_to_offsite_is_ignored,
    ]
}

/// A browser that is signed in and has approved "app", so a valid request
/// would come straight back with a code.
async fn consented_browser(as_: &TestAs) -> Browser {
    let mut b = Browser::new();
    authorize_code(as_, &mut b, &app_request(as_), USER).await;
    b
}

/// The attack URL must give a 400 error page that redirects nowhere.
async fn refused_redirect(uri: &str) {
    let as_ = setup().await;
    let mut b = consented_browser(&as_).await;
    let req = AuthRequest::new("app", uri, SCOPES, &as_.resource);
    let page = b.get(&req.url(&as_.issuer)).await;
    assert_error_page(&page, 400);
    assert!(
        !page.body.contains(uri),
        "the page does not link to the unverified URI"
    );
    // Nor with a fresh browser (before login).
    assert_error_page(&Browser::new().get(&req.url(&as_.issuer)).await, 400);
}

async fn redirect_uri_unregistered() {
    refused_redirect("https://evil.example.com/callback").await;
}

async fn redirect_uri_prefix() {
    refused_redirect("https://app.example.com/call").await;
}

async fn redirect_uri_suffix() {
    refused_redirect("https://app.example.com/callback/evil").await;
    refused_redirect("https://app.example.com/callback2").await;
}

async fn redirect_uri_host_suffix() {
    refused_redirect("https://app.example.com.evil.example/callback").await;
}

async fn redirect_uri_case_changed_in_path() {
    refused_redirect("https://app.example.com/Callback").await;
}

async fn redirect_uri_case_changed_in_host() {
    refused_redirect("https://APP.example.com/callback").await;
}

async fn redirect_uri_trailing_slash() {
    refused_redirect("https://app.example.com/callback/").await;
}

async fn redirect_uri_query_added() {
    refused_redirect("https://app.example.com/callback?next=https://evil.example.com").await;
}

async fn redirect_uri_fragment() {
    refused_redirect("https://app.example.com/callback#x").await;
}

async fn redirect_uri_userinfo() {
    refused_redirect("https://app.example.com@evil.example.com/callback").await;
}

async fn redirect_uri_percent_encoded() {
    refused_redirect("https://app.example.com/%63allback").await;
}

/// A bad redirect URI wins over every other error: even with PKCE missing
/// the answer is the page, not an error redirect to the attacker.
async fn redirect_uri_checked_before_anything_else() {
    let as_ = setup().await;
    let req = AuthRequest::new(
        "app",
        "https://evil.example.com/cb",
        "nope",
        "https://evil.example.com/",
    );
    let url = req.url_with(
        &as_.issuer,
        &[("code_challenge", None), ("response_type", Some("token"))],
    );
    assert_error_page(&Browser::new().get(&url).await, 400);
}

async fn redirect_uri_missing_with_two_registered() {
    let as_ = setup().await;
    as_.add_public_client("two", "https://two.example.com/a")
        .await;
    let mut c = as_.store.get_client("two").await.unwrap();
    c.redirect_uris.push("https://two.example.com/b".into());
    as_.store.upsert_client(&c).await.unwrap();
    let req = AuthRequest::new("two", "https://two.example.com/a", SCOPES, &as_.resource);
    assert_error_page(
        &Browser::new()
            .get(&req.url_with(&as_.issuer, &[("redirect_uri", None)]))
            .await,
        400,
    );
}

fn with_extra(url: &str, name: &str, value: &str) -> String {
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair(name, value)
        .finish();
    format!("{url}&{q}")
}

async fn repeated_redirect_uri_is_an_error_page() {
    let as_ = setup().await;
    let mut b = consented_browser(&as_).await;
    let req = app_request(&as_);
    let url = with_extra(
        &req.url(&as_.issuer),
        "redirect_uri",
        "https://evil.example.com/cb",
    );
    assert_error_page(&b.get(&url).await, 400);
    // Even two copies of the registered value.
    let url = with_extra(&req.url(&as_.issuer), "redirect_uri", REDIRECT);
    assert_error_page(&b.get(&url).await, 400);
}

async fn repeated_client_id_is_an_error_page() {
    let as_ = setup().await;
    as_.add_public_client("evil", "https://evil.example.com/cb")
        .await;
    let mut b = consented_browser(&as_).await;
    let url = with_extra(&app_request(&as_).url(&as_.issuer), "client_id", "evil");
    assert_error_page(&b.get(&url).await, 400);
}

async fn unknown_client_is_an_error_page() {
    let as_ = setup().await;
    let req = AuthRequest::new("nobody", REDIRECT, SCOPES, &as_.resource);
    let page = Browser::new().get(&req.url(&as_.issuer)).await;
    assert_error_page(&page, 400);
    let page = Browser::new()
        .get(&req.url_with(&as_.issuer, &[("client_id", None)]))
        .await;
    assert_error_page(&page, 400);
}

/// The request is sent by a consented, signed-in browser, so only the
/// parameter check stands between it and a code.
async fn error_redirect(changes: &[(&str, Option<&str>)], code: &str) -> (TestAs, Page) {
    let as_ = setup().await;
    let mut b = consented_browser(&as_).await;
    let req = app_request(&as_);
    let page = b.get(&req.url_with(&as_.issuer, changes)).await;
    assert_error_redirect(&as_, &req, &page, code);
    (as_, page)
}

async fn missing_code_challenge_is_invalid_request() {
    error_redirect(&[("code_challenge", None)], "invalid_request").await;
}

async fn plain_pkce_is_invalid_request() {
    let verifier = "a".repeat(43);
    error_redirect(
        &[
            ("code_challenge", Some(&verifier)),
            ("code_challenge_method", Some("plain")),
        ],
        "invalid_request",
    )
    .await;
}

/// OAuth 2.1 §4.1.1: an absent method means `plain`, which is refused.
async fn missing_code_challenge_method_is_invalid_request() {
    error_redirect(&[("code_challenge_method", None)], "invalid_request").await;
}

async fn malformed_code_challenge_is_invalid_request() {
    error_redirect(&[("code_challenge", Some("short"))], "invalid_request").await;
}

async fn foreign_resource_is_invalid_target() {
    error_redirect(
        &[("resource", Some("https://other-server.example.com/mcp"))],
        "invalid_target",
    )
    .await;
    // A path prefix or extension of a real resource is foreign too.
    let as_ = setup().await;
    let mut b = consented_browser(&as_).await;
    let req = app_request(&as_);
    for r in [
        format!("{}/admin", as_.resource),
        format!("{}/mcp", as_.issuer),
    ] {
        let page = b
            .get(&req.url_with(&as_.issuer, &[("resource", Some(&r))]))
            .await;
        assert_error_redirect(&as_, &req, &page, "invalid_target");
    }
}

async fn missing_resource_is_invalid_target() {
    error_redirect(&[("resource", None)], "invalid_target").await;
}

async fn unknown_scope_is_invalid_scope() {
    error_redirect(
        &[("scope", Some("notes:read notes:everything"))],
        "invalid_scope",
    )
    .await;
}

/// Not an open redirector (RFC 9700 §4.11.2): anyone may register
/// `https://evil.example/cb`, so a self-registered client's errors are shown
/// on a page, never redirected, until the signed-in user has approved that
/// client; then they go back to it like a pre-registered client's.
async fn self_registered_client_errors_are_pages_until_approved() {
    let as_ = setup().await;
    let evil = "https://evil.example/cb";
    let r = register(
        &as_,
        &serde_json::json!({
            "client_name": "Totally legit",
            "redirect_uris": [evil],
            "token_endpoint_auth_method": "none",
        }),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let client_id = r.str("client_id");
    let req = AuthRequest::new(&client_id, evil, SCOPES, &as_.resource);
    let bad_scope = req.url_with(&as_.issuer, &[("scope", Some("notes:everything"))]);
    let silent = req.url_with(&as_.issuer, &[("prompt", Some("none"))]);
    // Nobody signed in: an invalid request, and prompt=none.
    for url in [&bad_scope, &silent] {
        let page = Browser::new().get(url).await;
        assert_error_page(&page, 400);
    }
    // Signed in, not approved: still a page, for every kind of error.
    let mut b = Browser::new();
    let page = b
        .authorize_as(&as_.issuer, &req.url(&as_.issuer), USER)
        .await;
    assert!(is_consent_page(&page), "{}", page.body);
    assert_error_page(&b.get(&bad_scope).await, 400);
    assert_error_page(&b.get(&silent).await, 400);
    // Approved: its errors go back to it.
    let page = b.decide(&as_.issuer, &page, "approve").await;
    code_from(&as_, &req, &page);
    let page = b.get(&bad_scope).await;
    assert_error_redirect(&as_, &req, &page, "invalid_scope");
}

async fn token_response_type_is_refused() {
    error_redirect(
        &[("response_type", Some("token"))],
        "unsupported_response_type",
    )
    .await;
}

async fn repeated_scope_is_invalid_request() {
    let as_ = setup().await;
    let mut b = consented_browser(&as_).await;
    let req = app_request(&as_);
    let page = b
        .get(&with_extra(&req.url(&as_.issuer), "scope", "notes:admin"))
        .await;
    assert_error_redirect(&as_, &req, &page, "invalid_request");
}

/// Signs in and returns the browser and the consent page for `req`.
async fn consent_page_for(as_: &TestAs, req: &AuthRequest) -> (Browser, Page) {
    let mut b = Browser::new();
    let page = b
        .authorize_as(&as_.issuer, &req.url(&as_.issuer), USER)
        .await;
    assert!(is_consent_page(&page), "{} {}", page.status, page.body);
    (b, page)
}

/// The form was refused: 403 page, no redirect, nothing recorded for `client_id`.
async fn assert_consent_refused(as_: &TestAs, page: &Page, client_id: &str) {
    assert_error_page(page, 403);
    let user = as_.store.get_user_by_username(USER).await.unwrap();
    assert!(
        matches!(
            as_.store.get_consent(&user.id, client_id).await,
            Err(StoreError::NotFound)
        ),
        "no consent recorded for {client_id}"
    );
}

fn form_with(page: &Page, changes: &[(&str, Option<&str>)]) -> Vec<(String, String)> {
    let mut form = page.hidden_inputs();
    form.push(("decision".into(), "approve".into()));
    for (k, v) in changes {
        form.retain(|(fk, _)| fk != k);
        if let Some(v) = v {
            form.push((k.to_string(), v.to_string()));
        }
    }
    form
}

async fn consent_post_without_csrf_is_refused() {
    let as_ = setup().await;
    let (mut b, page) = consent_page_for(&as_, &app_request(&as_)).await;
    let out = b
        .post_form(&as_.url("/consent"), &form_with(&page, &[("csrf", None)]))
        .await;
    assert_consent_refused(&as_, &out, "app").await;
    let out = b
        .post_form(
            &as_.url("/consent"),
            &form_with(&page, &[("csrf", Some("9999999999.AAAA"))]),
        )
        .await;
    assert_consent_refused(&as_, &out, "app").await;
}

/// The CSRF token of client A's form is bound to A's request: posting the
/// same form with client B's id (same redirect URI, so only the binding
/// stands in the way) is refused, and B gets no consent and no code.
async fn consent_form_replayed_for_another_client_is_refused() {
    let as_ = setup().await;
    as_.add_public_client("app-b", REDIRECT).await;
    let (mut b, page) = consent_page_for(&as_, &app_request(&as_)).await;
    let out = b
        .post_form(
            &as_.url("/consent"),
            &form_with(&page, &[("client_id", Some("app-b"))]),
        )
        .await;
    assert_consent_refused(&as_, &out, "app-b").await;
    // B still needs its own consent.
    let req_b = AuthRequest::new("app-b", REDIRECT, SCOPES, &as_.resource);
    assert!(is_consent_page(&b.get(&req_b.url(&as_.issuer)).await));
}

async fn consent_form_with_escalated_scope_is_refused() {
    let as_ = setup().await;
    let (mut b, page) = consent_page_for(&as_, &app_request(&as_)).await;
    let out = b
        .post_form(
            &as_.url("/consent"),
            &form_with(
                &page,
                &[("scope", Some("notes:read notes:admin offline_access"))],
            ),
        )
        .await;
    assert_consent_refused(&as_, &out, "app").await;
    let out = b
        .post_form(
            &as_.url("/consent"),
            &form_with(&page, &[("resource", Some(&as_.other_resource))]),
        )
        .await;
    assert_consent_refused(&as_, &out, "app").await;
}

/// A victim's consent form posted from an attacker's own signed-in session
/// (or with no session at all) is refused.
async fn consent_form_replayed_in_another_session_is_refused() {
    let as_ = setup().await;
    as_.add_user("mallory", &[]).await;
    let (_victim, page) = consent_page_for(&as_, &app_request(&as_)).await;
    let mut attacker = Browser::new();
    let other = AuthRequest::new("app", REDIRECT, "notes:read", &as_.resource);
    attacker
        .authorize_as(&as_.issuer, &other.url(&as_.issuer), "mallory")
        .await;
    let out = attacker
        .post_form(&as_.url("/consent"), &form_with(&page, &[]))
        .await;
    assert_consent_refused(&as_, &out, "app").await;
    let out = Browser::new()
        .post_form(&as_.url("/consent"), &form_with(&page, &[]))
        .await;
    assert_consent_refused(&as_, &out, "app").await;
}

async fn consent_form_expires() {
    let as_ = setup().await;
    let (mut b, page) = consent_page_for(&as_, &app_request(&as_)).await;
    as_.clock.advance(601);
    let out = b
        .post_form(&as_.url("/consent"), &form_with(&page, &[]))
        .await;
    assert_consent_refused(&as_, &out, "app").await;
}

/// GETs the login page (for its CSRF token and nonce cookie) and posts it.
async fn login(as_: &TestAs, b: &mut Browser, username: &str, password: &str) -> Page {
    let form_page = b.get(&as_.url("/login")).await;
    let form = pairs(&[
        ("csrf", &form_page.input("csrf").expect("login csrf")),
        ("return_to", ""),
        ("username", username),
        ("password", password),
    ]);
    b.post_form(&as_.url("/login"), &form).await
}

/// The `Retry-After` of an answer, in seconds.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> u64 {
    headers
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("whole seconds")
}

fn limits(per_account: u32, per_ip: u32) -> Options {
    Options {
        store: None,
        tweak: Box::new(move |s| {
            s.login.per_account = per_account;
            s.login.per_ip = per_ip;
            // A long window, so no token refills while the trial runs.
            s.login.window_secs = 3600;
        }),
        ..Default::default()
    }
}

/// Repeated wrong passwords for one account hit the per-account limit:
/// then even the right password gets 429 and no session. Another account
/// from the same address is unaffected.
async fn login_brute_force_hits_account_limit() {
    let as_ = TestAs::start_with(limits(3, 100)).await;
    prepare(&as_).await;
    as_.add_user("bob", &[]).await;
    let mut b = Browser::new();
    for _ in 0..3 {
        let p = login(&as_, &mut b, USER, "wrong password guess").await;
        assert_eq!(p.status, 401, "{}", p.body);
        assert_eq!(b.cookie("__Host-mcpgate-session"), None);
    }
    let p = login(&as_, &mut b, USER, PASSWORD).await;
    assert_eq!(p.status, 429, "the right password is refused once limited");
    // The limiter's own wait: one attempt comes back every 3600 s / 3, less
    // what the trial has taken since the first guess (far under 600 s).
    let retry_after = retry_after(&p.headers);
    assert!(
        (600..=1200).contains(&retry_after),
        "Retry-After {retry_after} is not the wait for one attempt (at most 1200 s)"
    );
    assert_eq!(
        b.cookie("__Host-mcpgate-session"),
        None,
        "no session while limited"
    );
    let mut other = Browser::new();
    let p = login(&as_, &mut other, "bob", PASSWORD).await;
    assert_eq!(p.status, 200, "another account still signs in: {}", p.body);
    assert!(other.cookie("__Host-mcpgate-session").is_some());
}

/// Guessing across many accounts from one address hits the per-IP limit.
async fn login_per_ip_limit() {
    let as_ = TestAs::start_with(limits(100, 3)).await;
    prepare(&as_).await;
    let mut b = Browser::new();
    for name in ["carol", "dave", "erin"] {
        assert_eq!(
            login(&as_, &mut b, name, "guess guess guess").await.status,
            401
        );
    }
    let p = login(&as_, &mut b, USER, PASSWORD).await;
    assert_eq!(p.status, 429);
    assert_eq!(b.cookie("__Host-mcpgate-session"), None);
}

/// Login CSRF: a form without the token (or from another browser) fails.
async fn login_without_csrf_is_refused() {
    let as_ = setup().await;
    let mut b = Browser::new();
    b.get(&as_.url("/login")).await;
    let p = b
        .post_form(
            &as_.url("/login"),
            &pairs(&[("username", USER), ("password", PASSWORD)]),
        )
        .await;
    assert_eq!(p.status, 403);
    assert_eq!(b.cookie("__Host-mcpgate-session"), None);
    // A valid token from the attacker's page, posted from the victim's browser.
    let attacker_page = Browser::new().get(&as_.url("/login")).await;
    let mut victim = Browser::new();
    victim.get(&as_.url("/login")).await;
    let form = pairs(&[
        ("csrf", &attacker_page.input("csrf").unwrap()),
        ("username", USER),
        ("password", PASSWORD),
    ]);
    assert_eq!(
        victim.post_form(&as_.url("/login"), &form).await.status,
        403
    );
    assert_eq!(victim.cookie("__Host-mcpgate-session"), None);
}

/// After login the user returns only to our own authorization endpoint,
/// never to an absolute or protocol-relative URL.
async fn login_return_to_offsite_is_ignored() {
    let as_ = setup().await;
    for target in [
        "https://evil.example.com/",
        "//evil.example.com/oauth/authorize?x",
        "/\\evil.example.com",
        "/oauth/authorize?x#\\@evil",
    ] {
        let mut b = Browser::new();
        let q = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("return_to", target)
            .finish();
        let page = b.get(&as_.url(&format!("/login?{q}"))).await;
        let form = pairs(&[
            ("csrf", &page.input("csrf").unwrap()),
            ("return_to", target),
            ("username", USER),
            ("password", PASSWORD),
        ]);
        let out = b.post_form(&as_.url("/login"), &form).await;
        assert_eq!(
            out.status, 200,
            "signed in without a redirect for {target:?}: {:?}",
            out.location
        );
        assert_eq!(out.location, None);
    }
}
