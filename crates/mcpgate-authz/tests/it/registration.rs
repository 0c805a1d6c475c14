//! Dynamic client registration (RFC 7591) over HTTP: the full flow for a
//! registered public and confidential client, the redirect URI policy
//! (never `javascript:`, `data:`, `file:`, plain http off loopback), and
//! malformed requests that must get a JSON error body, never plain text.

use libtest_mimic::Trial;
use mcpgate_testkit::{AuthRequest, TestAs};
use serde_json::json;

use crate::common::*;
use crate::flows::full_flow;

pub fn trials() -> Vec<Trial> {
    trials![
        dcr_public_client_full_flow,
        dcr_confidential_client_full_flow,
        dcr_rejects_javascript_redirect,
        dcr_rejects_data_redirect,
        dcr_rejects_file_redirect,
        dcr_rejects_http_non_loopback_redirect,
        dcr_rejects_fragment_redirect,
        dcr_rejects_missing_redirect,
        dcr_accepts_loopback_and_private_use_redirects,
        dcr_malformed_json_gets_json_error,
        dcr_wrong_content_type_gets_json_error,
        dcr_oversized_body_gets_json_error,
        dcr_refuses_client_credentials_grant,
        dcr_refuses_chosen_client_id,
        dcr_refuses_unknown_scope,
        dcr_requires_initial_access_token_when_configured,
        dcr_is_rate_limited_per_ip,
        dcr_client_name_is_escaped_on_the_consent_page,
        dcr_scope_does_not_block_step_up,
    ]
}

const DCR_REDIRECT: &str = "https://dcr.example.com/callback";

async fn dcr_public_client_full_flow() {
    let as_ = setup().await;
    let r = register(
        &as_,
        &json!({
            "client_name": "Registered Public Client",
            "redirect_uris": [DCR_REDIRECT],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
        }),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(
        r.json.get("client_secret").is_none(),
        "a public client gets no secret"
    );
    assert_eq!(r.json["redirect_uris"], json!([DCR_REDIRECT]));
    let client_id = r.str("client_id");
    let req = AuthRequest::new(&client_id, DCR_REDIRECT, SCOPES, &as_.resource);
    full_flow(&as_, &req, Auth::Public(&client_id)).await;
}

async fn dcr_confidential_client_full_flow() {
    let as_ = setup().await;
    // RFC 7591 §2: the default auth method is client_secret_basic.
    let r = register(&as_, &json!({"client_name": "Web App", "redirect_uris": [DCR_REDIRECT], "grant_types": ["authorization_code", "refresh_token"]})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["token_endpoint_auth_method"], "client_secret_basic");
    let client_id = r.str("client_id");
    let secret = r.str("client_secret");
    assert!(secret.len() >= 43);
    let req = AuthRequest::new(&client_id, DCR_REDIRECT, SCOPES, &as_.resource);
    full_flow(&as_, &req, Auth::Basic(&client_id, &secret)).await;
}

async fn refused_redirect(uri: &str) {
    let as_ = TestAs::start().await;
    let r = register(&as_, &json!({"client_name": "Evil", "redirect_uris": [uri], "token_endpoint_auth_method": "none"})).await;
    r.assert_oauth_error(400, "invalid_redirect_uri");
    assert!(
        as_.store.list_clients().await.unwrap().is_empty(),
        "nothing registered for {uri}"
    );
}

async fn dcr_rejects_javascript_redirect() {
    refused_redirect("javascript:alert(document.cookie)").await;
    refused_redirect("JavaScript://example.com/%0aalert(1)").await;
}

async fn dcr_rejects_data_redirect() {
    refused_redirect("data:text/html,<script>alert(1)</script>").await;
}

async fn dcr_rejects_file_redirect() {
    refused_redirect("file:///etc/passwd").await;
}

async fn dcr_rejects_http_non_loopback_redirect() {
    refused_redirect("http://app.example.com/callback").await;
    refused_redirect("http://10.0.0.1/callback").await;
    refused_redirect("http://localhost.example.com/callback").await;
}

async fn dcr_rejects_fragment_redirect() {
    refused_redirect("https://app.example.com/callback#x").await;
}

async fn dcr_rejects_missing_redirect() {
    let as_ = TestAs::start().await;
    let r = register(
        &as_,
        &json!({"client_name": "No redirect", "token_endpoint_auth_method": "none"}),
    )
    .await;
    r.assert_oauth_error(400, "invalid_redirect_uri");
}

/// The policy is not a blanket refusal: loopback http and reverse-DNS
/// private-use schemes (RFC 8252) are fine for native apps.
async fn dcr_accepts_loopback_and_private_use_redirects() {
    let as_ = TestAs::start().await;
    let body = json!({
        "client_name": "Native",
        "application_type": "native",
        "redirect_uris": ["http://127.0.0.1/callback", "http://[::1]:8765/cb", "com.example.app:/oauth"],
        "token_endpoint_auth_method": "none",
    });
    let r = register(&as_, &body).await;
    assert_eq!(r.status, 201, "{}", r.text);
}

async fn dcr_malformed_json_gets_json_error() {
    let as_ = TestAs::start().await;
    let r = post_raw(
        &as_,
        "/oauth/register",
        "application/json",
        "{\"redirect_uris\": [",
        None,
    )
    .await;
    r.assert_oauth_error(400, "invalid_client_metadata");
    let r = post_raw(
        &as_,
        "/oauth/register",
        "application/json",
        "{\"redirect_uris\": \"https://x.example.com/cb\"}",
        None,
    )
    .await;
    r.assert_oauth_error(400, "invalid_client_metadata");
}

async fn dcr_wrong_content_type_gets_json_error() {
    let as_ = TestAs::start().await;
    let body =
        json!({"redirect_uris": [DCR_REDIRECT], "token_endpoint_auth_method": "none"}).to_string();
    let r = post_raw(&as_, "/oauth/register", "text/plain", body.clone(), None).await;
    r.assert_oauth_error(400, "invalid_client_metadata");
    let r = post_raw(
        &as_,
        "/oauth/register",
        "application/x-www-form-urlencoded",
        "redirect_uris=https%3A%2F%2Fx",
        None,
    )
    .await;
    r.assert_oauth_error(400, "invalid_client_metadata");
    assert!(as_.store.list_clients().await.unwrap().is_empty());
}

async fn dcr_oversized_body_gets_json_error() {
    let as_ = TestAs::start().await;
    let padding = "a".repeat(70 * 1024);
    let body = json!({"client_name": padding, "redirect_uris": [DCR_REDIRECT], "token_endpoint_auth_method": "none"}).to_string();
    assert!(body.len() > 64 * 1024);
    let r = post_raw(&as_, "/oauth/register", "application/json", body, None).await;
    assert_eq!(r.status, 413, "{}", r.text);
    assert_eq!(
        r.error(),
        "invalid_request",
        "JSON error body, not plain text: {}",
        r.text
    );
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    );
    assert!(as_.store.list_clients().await.unwrap().is_empty());
}

async fn dcr_refuses_client_credentials_grant() {
    let as_ = TestAs::start().await;
    let r = register(&as_, &json!({"redirect_uris": [DCR_REDIRECT], "grant_types": ["authorization_code", "client_credentials"]})).await;
    r.assert_oauth_error(400, "invalid_client_metadata");
}

/// A registration cannot pick its own client_id (e.g. to impersonate a
/// pre-registered client).
async fn dcr_refuses_chosen_client_id() {
    let as_ = setup().await;
    let r = register(&as_, &json!({"client_id": "app", "redirect_uris": ["https://evil.example.com/cb"], "token_endpoint_auth_method": "none"})).await;
    r.assert_oauth_error(400, "invalid_client_metadata");
    let app = as_.store.get_client("app").await.unwrap();
    assert_eq!(
        app.redirect_uris,
        vec![REDIRECT.to_string()],
        "the existing client is untouched"
    );
}

async fn dcr_refuses_unknown_scope() {
    let as_ = TestAs::start().await;
    let r = register(&as_, &json!({"redirect_uris": [DCR_REDIRECT], "scope": "notes:read root", "token_endpoint_auth_method": "none"})).await;
    r.assert_oauth_error(400, "invalid_client_metadata");
}

async fn dcr_requires_initial_access_token_when_configured() {
    let as_ = TestAs::start_with(mcpgate_testkit::Options {
        store: None,
        tweak: Box::new(|s| {
            s.dcr.initial_access_token = Some(mcpgate_types::Secret::new(
                "initial-access-token-123".to_string(),
            ))
        }),
        ..Default::default()
    })
    .await;
    let body =
        json!({"redirect_uris": [DCR_REDIRECT], "token_endpoint_auth_method": "none"}).to_string();
    let r = post_raw(
        &as_,
        "/oauth/register",
        "application/json",
        body.clone(),
        None,
    )
    .await;
    r.assert_oauth_error(401, "invalid_token");
    let r = http()
        .post(as_.url("/oauth/register"))
        .header("content-type", "application/json")
        .bearer_auth("initial-access-token-123")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

async fn dcr_is_rate_limited_per_ip() {
    let as_ = TestAs::start_with(mcpgate_testkit::Options {
        store: None,
        tweak: Box::new(|s| s.dcr.per_ip_per_hour = 2),
        ..Default::default()
    })
    .await;
    let body = json!({"redirect_uris": [DCR_REDIRECT], "token_endpoint_auth_method": "none"});
    for _ in 0..2 {
        assert_eq!(register(&as_, &body).await.status, 201);
    }
    let r = register(&as_, &body).await;
    r.assert_oauth_error(429, "temporarily_unavailable");
    // The limiter's wait for one registration: 3600 s / 2, less what the
    // trial took since the first.
    let retry_after: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(
        (900..=1800).contains(&retry_after),
        "Retry-After {retry_after} is not the wait for one registration (at most 1800 s)"
    );
    assert_eq!(as_.store.list_clients().await.unwrap().len(), 2);
}

/// Registration metadata is attacker-controlled: the consent page escapes it.
async fn dcr_client_name_is_escaped_on_the_consent_page() {
    let as_ = setup().await;
    let name = "<script>alert(1)</script><img src=x onerror=alert(2)>";
    let r = register(&as_, &json!({"client_name": name, "redirect_uris": [DCR_REDIRECT], "token_endpoint_auth_method": "none"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let req = AuthRequest::new(&r.str("client_id"), DCR_REDIRECT, SCOPES, &as_.resource);
    let page = mcpgate_testkit::Browser::new()
        .authorize_as(&as_.issuer, &req.url(&as_.issuer), USER)
        .await;
    assert!(is_consent_page(&page), "{}", page.body);
    assert!(
        !page.body.contains("<script>alert(1)"),
        "client_name is HTML-escaped"
    );
    assert!(
        !page.body.contains("<img src=x"),
        "client_name is HTML-escaped"
    );
    assert!(
        page.body.contains("&lt;script&gt;") || page.body.contains("&#60;script&#62;"),
        "the escaped name is shown"
    );
}

/// A client registered with the scopes of the first challenge can later
/// ask for more (MCP step-up); the user's consent still gates each scope.
async fn dcr_scope_does_not_block_step_up() {
    let as_ = setup().await;
    let r = register(
        &as_,
        &json!({
            "client_name": "Stepping Client",
            "redirect_uris": [DCR_REDIRECT],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "scope": "notes:read",
        }),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["scope"], json!("notes:read"));
    let client_id = r.str("client_id");
    let first = AuthRequest::new(&client_id, DCR_REDIRECT, "notes:read", &as_.resource);
    let t = tokens_for(&as_, &first, Auth::Public(&client_id)).await;
    assert!(!t.access.is_empty());
    let wider = AuthRequest::new(
        &client_id,
        DCR_REDIRECT,
        "notes:read notes:write",
        &as_.resource,
    );
    let t = tokens_for(&as_, &wider, Auth::Public(&client_id)).await;
    let claims = verify_access_token(&as_, &t.access, &as_.resource).await;
    assert_eq!(claims.scope, "notes:read notes:write");
}
