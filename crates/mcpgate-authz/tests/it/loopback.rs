//! Localhost impersonation (RFC 8252 §7.3, RFC 9700 §4.1.1): a loopback
//! redirect URI may use any port, and a public client has no secret, so any
//! program on the user's machine can start an authorization with a known
//! public `client_id` and `http://127.0.0.1:<its own port>/…`. Consent on
//! record must not send it a code silently: every such request waits for a
//! click in this browser on a page that names the full redirect URI and its
//! port, with a form bound to that one request and good for one answer.
//! Confidential clients and other redirect URIs keep skipping the page.

use libtest_mimic::Trial;
use mcpgate_testkit::{AuthRequest, Browser, Page, TestAs, html_unescape};
use mcpgate_types::client_metadata::TokenEndpointAuthMethod;
use serde_json::json;

use crate::common::*;

pub fn trials() -> Vec<Trial> {
    trials![
        approved_loopback_client_gets_no_code_without_a_click,
        every_loopback_spelling_needs_the_click,
        registered_and_metadata_document_clients_need_the_click,
        prompt_none_never_skips_the_click,
        click_for_one_request_cannot_approve_another,
        hostile_confirm_forms_are_refused_and_change_nothing,
        confidential_loopback_client_with_consent_skips_the_page,
        public_web_client_with_consent_skips_the_page,
        consent_page_shows_the_full_redirect_uri_escaped,
    ]
}

/// The public native client "native", registered without a port.
const NATIVE: &str = "http://127.0.0.1/callback";

fn native_request(as_: &TestAs, port: u16) -> AuthRequest {
    AuthRequest::new(
        "native",
        &format!("http://127.0.0.1:{port}/callback"),
        SCOPES,
        &as_.resource,
    )
}

/// A server with "native", and a browser in which the user approved it once
/// (for port 49152).
async fn approved_native() -> (TestAs, Browser) {
    let as_ = setup().await;
    as_.add_public_client("native", NATIVE).await;
    let mut b = Browser::new();
    let first = native_request(&as_, 49152);
    let page = b
        .authorize_as(&as_.issuer, &first.url(&as_.issuer), USER)
        .await;
    assert!(is_consent_page(&page), "{} {}", page.status, page.body);
    let page = b.decide(&as_.issuer, &page, "approve").await;
    code_from(&as_, &first, &page);
    (as_, b)
}

/// The page sent no one anywhere and carries no code.
#[track_caller]
fn assert_no_code(page: &Page) {
    assert_eq!(page.location, None, "no redirect without the click");
    assert!(!page.body.contains("code="), "no code in the page");
}

/// The page names this exact redirect URI and its port.
#[track_caller]
fn assert_names_redirect(page: &Page, redirect_uri: &str, port: u16) {
    assert_eq!(shown_redirect_uri(page).as_deref(), Some(redirect_uri));
    assert!(
        page.body.contains(&format!(
            "<strong class=\"redirect-port\">port {port}</strong>"
        )),
        "the port is named: {}",
        page.body
    );
}

/// The text of the page's `<code class="redirect-uri">`, unescaped.
fn shown_redirect_uri(page: &Page) -> Option<String> {
    let needle = "<code class=\"redirect-uri\">";
    let start = page.body.find(needle)? + needle.len();
    let end = page.body[start..].find("</code>")? + start;
    Some(html_unescape(&page.body[start..end]))
}

/// The attack: the user approved "native" once; a local program starts a
/// new authorization for it with its own port. The AS answers with a page
/// that asks, naming the attacker's URI and port; the code goes out only
/// when the user clicks, and a new request on the first port asks again.
async fn approved_loopback_client_gets_no_code_without_a_click() {
    let (as_, mut b) = approved_native().await;
    let attacker = native_request(&as_, 50001);
    let page = b.get(&attacker.url(&as_.issuer)).await;
    assert_no_code(&page);
    assert!(is_confirm_page(&page), "{} {}", page.status, page.body);
    assert_names_redirect(&page, &attacker.redirect_uri, 50001);
    assert!(page.body.contains("your own computer"));
    // Never silently, not even on the port approved before.
    let again = native_request(&as_, 49152);
    let page2 = b.get(&again.url(&as_.issuer)).await;
    assert_no_code(&page2);
    assert!(is_confirm_page(&page2), "{}", page2.body);
    // The user's click sends the code to the URI the page named.
    let done = b.decide(&as_.issuer, &page, "approve").await;
    let code = code_from(&as_, &attacker, &done);
    let r = redeem(&as_, &attacker, &code, Auth::Public("native")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Cancel on the confirmation is access_denied, and keeps the consent.
    let done = b.decide(&as_.issuer, &page2, "deny").await;
    assert_error_redirect(&as_, &again, &done, "access_denied");
    let user = as_.store.get_user_by_username(USER).await.unwrap();
    as_.store.get_consent(&user.id, "native").await.unwrap();
}

/// `[::1]` with the port relaxation, and `localhost` (an exact string): each
/// approved once, each asked again.
async fn every_loopback_spelling_needs_the_click() {
    let as_ = setup().await;
    as_.add_public_client("v6", "http://[::1]/cb").await;
    as_.add_public_client("named", "http://localhost:8765/cb")
        .await;
    for (client, uri, port) in [
        ("v6", "http://[::1]:51000/cb", 51000),
        ("named", "http://localhost:8765/cb", 8765),
    ] {
        let mut b = Browser::new();
        let first = AuthRequest::new(client, uri, SCOPES, &as_.resource);
        authorize_code(&as_, &mut b, &first, USER).await;
        let second = AuthRequest::new(client, uri, SCOPES, &as_.resource);
        let page = b.get(&second.url(&as_.issuer)).await;
        assert_no_code(&page);
        assert!(is_confirm_page(&page), "{client}: {}", page.body);
        assert_names_redirect(&page, uri, port);
        let done = b.decide(&as_.issuer, &page, "approve").await;
        code_from(&as_, &second, &done);
    }
}

/// The rule is about the class, not the registration path: a dynamically
/// registered `none` client and a metadata-document client get the same page.
async fn registered_and_metadata_document_clients_need_the_click() {
    let as_ = setup().await;
    let r = register(
        &as_,
        &json!({
            "client_name": "Registered Native App",
            "redirect_uris": [NATIVE],
            "token_endpoint_auth_method": "none",
        }),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let dcr = r.str("client_id");
    let doc = DocServer::start(|id| cimd_doc(id, NATIVE), None).await;
    for client in [dcr.as_str(), doc.client_id.as_str()] {
        let mut b = Browser::new();
        let first = AuthRequest::new(
            client,
            "http://127.0.0.1:49152/callback",
            SCOPES,
            &as_.resource,
        );
        authorize_code(&as_, &mut b, &first, USER).await;
        let attacker = AuthRequest::new(
            client,
            "http://127.0.0.1:50001/callback",
            SCOPES,
            &as_.resource,
        );
        let page = b.get(&attacker.url(&as_.issuer)).await;
        assert_no_code(&page);
        assert!(is_confirm_page(&page), "{client}: {}", page.body);
        assert_names_redirect(&page, &attacker.redirect_uri, 50001);
    }
}

/// `prompt=none` cannot click: it is `consent_required` (the client was
/// approved, so the error may go back to it), never a code.
async fn prompt_none_never_skips_the_click() {
    let (as_, mut b) = approved_native().await;
    let req = native_request(&as_, 50001);
    let page = b
        .get(&req.url_with(&as_.issuer, &[("prompt", Some("none"))]))
        .await;
    assert_error_redirect(&as_, &req, &page, "consent_required");
}

/// The confirmation form of request A is bound to A: with B's port, `state`
/// or PKCE challenge it approves nothing; B still waits for its own click.
async fn click_for_one_request_cannot_approve_another() {
    let (as_, mut b) = approved_native().await;
    let a = native_request(&as_, 50001);
    let page_a = b.get(&a.url(&as_.issuer)).await;
    assert!(is_confirm_page(&page_a), "{}", page_a.body);
    let req_b = native_request(&as_, 50002);
    let page_b = b.get(&req_b.url(&as_.issuer)).await;
    assert!(is_confirm_page(&page_b), "{}", page_b.body);
    for (k, v) in [
        ("redirect_uri", req_b.redirect_uri.clone()),
        ("state", req_b.state.clone()),
        ("code_challenge", req_b.challenge()),
    ] {
        let mut form = approve_form(&page_a);
        set(&mut form, k, Some(&v));
        let out = b.post_form(&as_.url("/consent"), &form).await;
        assert_error_page(&out, 403);
        assert!(
            out.body.contains("not the one shown to you"),
            "{k}: {}",
            out.body
        );
    }
    // B's form with A's form id (and A's token) is refused too.
    let mut form = approve_form(&page_b);
    set(&mut form, "form", page_a.input("form").as_deref());
    set(&mut form, "csrf", page_a.input("csrf").as_deref());
    assert_error_page(&b.post_form(&as_.url("/consent"), &form).await, 403);
    // Each form still approves its own request, and only that one.
    let done = b.decide(&as_.issuer, &page_b, "approve").await;
    code_from(&as_, &req_b, &done);
    let done = b.decide(&as_.issuer, &page_a, "approve").await;
    code_from(&as_, &a, &done);
}

/// Missing or forged fields and a replayed POST: each gets its own error
/// page, redirects nowhere, issues no code and leaves the consent record as
/// it was (its `updated_at` would move if anything were recorded).
async fn hostile_confirm_forms_are_refused_and_change_nothing() {
    let (as_, mut b) = approved_native().await;
    let user = as_.store.get_user_by_username(USER).await.unwrap();
    let req = native_request(&as_, 50001);
    let page = b.get(&req.url(&as_.issuer)).await;
    assert!(is_confirm_page(&page), "{}", page.body);
    as_.clock.advance(5);
    let before = as_.store.get_consent(&user.id, "native").await.unwrap();
    for (field, value, status, says) in [
        ("form", None, 400, "it has no form id"),
        ("form", Some(""), 400, "it has no form id"),
        ("form", Some("forged"), 403, "not the one shown to you"),
        ("csrf", None, 403, "not the one shown to you"),
        ("decision", None, 400, "Choose Allow or Deny"),
        ("decision", Some("allow-all"), 400, "Choose Allow or Deny"),
    ] {
        let mut form = approve_form(&page);
        set(&mut form, field, value);
        let out = b.post_form(&as_.url("/consent"), &form).await;
        assert_error_page(&out, status);
        assert!(out.body.contains(says), "{field}={value:?}: {}", out.body);
    }
    // A repeated form id is malformed.
    let mut doubled = approve_form(&page);
    doubled.push(("form".into(), page.input("form").unwrap()));
    let out = b.post_form(&as_.url("/consent"), &doubled).await;
    assert_error_page(&out, 400);
    assert_eq!(
        as_.store.get_consent(&user.id, "native").await.unwrap(),
        before
    );
    // The genuine click works once; the same POST again (a replay, or a
    // double click) is 409 and records nothing.
    let form = approve_form(&page);
    let done = b.post_form(&as_.url("/consent"), &form).await;
    code_from(&as_, &req, &done);
    let after_click = as_.store.get_consent(&user.id, "native").await.unwrap();
    as_.clock.advance(5);
    for decision in ["approve", "deny"] {
        let mut replay = form.clone();
        set(&mut replay, "decision", Some(decision));
        let out = b.post_form(&as_.url("/consent"), &replay).await;
        assert_error_page(&out, 409);
        assert!(out.body.contains("already answered"), "{}", out.body);
    }
    assert_eq!(
        as_.store.get_consent(&user.id, "native").await.unwrap(),
        after_click,
        "a replay records nothing"
    );
}

/// A confidential client proves itself at the token endpoint: with consent
/// on record it skips the page, on any loopback port, as before.
async fn confidential_loopback_client_with_consent_skips_the_page() {
    let as_ = setup().await;
    let (id, secret) = as_
        .add_client(
            "confidential",
            NATIVE,
            TokenEndpointAuthMethod::ClientSecretBasic,
            &["authorization_code"],
        )
        .await;
    let secret = secret.expect("secret");
    let mut b = Browser::new();
    let first = AuthRequest::new(
        &id,
        "http://127.0.0.1:49152/callback",
        SCOPES,
        &as_.resource,
    );
    authorize_code(&as_, &mut b, &first, USER).await;
    let second = AuthRequest::new(
        &id,
        "http://127.0.0.1:50001/callback",
        SCOPES,
        &as_.resource,
    );
    let page = b.get(&second.url(&as_.issuer)).await;
    let code = code_from(&as_, &second, &page);
    let r = redeem(&as_, &second, &code, Auth::Basic(&id, &secret)).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

/// A public client with an `https` redirect URI (an exact registered
/// string) keeps skipping the page once approved.
async fn public_web_client_with_consent_skips_the_page() {
    let as_ = setup().await;
    let mut b = Browser::new();
    authorize_code(&as_, &mut b, &app_request(&as_), USER).await;
    let second = app_request(&as_);
    let page = b.get(&second.url(&as_.issuer)).await;
    code_from(&as_, &second, &page);
}

/// Every consent page shows the full redirect URI, escaped by the template
/// engine (the URI is the client's to choose).
async fn consent_page_shows_the_full_redirect_uri_escaped() {
    let as_ = setup().await;
    let uri = "https://app.example.com/cb?next=<b>x</b>&q=\"'";
    as_.add_public_client("web", uri).await;
    let req = AuthRequest::new("web", uri, SCOPES, &as_.resource);
    let page = b_authorize(&as_, &req).await;
    assert!(is_consent_page(&page), "{}", page.body);
    assert_eq!(shown_redirect_uri(&page).as_deref(), Some(uri));
    assert!(!page.body.contains("<b>x</b>"), "the URI is escaped");
    assert!(
        !page.body.contains("redirect-port"),
        "a web redirect has no port warning"
    );
}

async fn b_authorize(as_: &TestAs, req: &AuthRequest) -> Page {
    Browser::new()
        .authorize_as(&as_.issuer, &req.url(&as_.issuer), USER)
        .await
}

fn approve_form(page: &Page) -> Vec<(String, String)> {
    let mut form = page.hidden_inputs();
    form.push(("decision".into(), "approve".into()));
    form
}

/// Replaces (or with `None` removes) one field of a form.
fn set(form: &mut Vec<(String, String)>, key: &str, value: Option<&str>) {
    form.retain(|(k, _)| k != key);
    if let Some(v) = value {
        form.push((key.to_string(), v.to_string()));
    }
}
