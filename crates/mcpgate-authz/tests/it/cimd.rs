//! Client ID Metadata Documents: the document is served by a local server
//! on 127.0.0.1:0 (the test AS has the loopback development override on),
//! so `http://127.0.0.1:PORT/client.json` is the client_id. The SSRF trials
//! name private addresses as client_id; the server must refuse them before
//! connecting, so no traffic ever leaves loopback.

use std::time::Duration;

use libtest_mimic::Trial;
use mcpgate_testkit::{AuthRequest, Browser, Options, TestAs};

use crate::common::*;
use crate::flows::full_flow;

pub fn trials() -> Vec<Trial> {
    trials![
        cimd_client_full_flow,
        cimd_consent_page_shows_the_document_host,
        cimd_document_client_id_mismatch_is_an_error_page,
        cimd_redirect_uri_not_in_document_is_an_error_page,
        cimd_document_with_javascript_redirect_is_an_error_page,
        cimd_document_with_secret_auth_is_refused,
        cimd_private_address_10_refused_without_traffic,
        cimd_metadata_address_169_254_refused_without_traffic,
        cimd_loopback_address_refused_and_no_connection_arrives,
        cimd_http_off_loopback_is_not_a_cimd_client,
        cimd_document_is_cached_then_refetched,
        cimd_disabled_override_refuses_http_loopback,
        cimd_document_is_fetched_only_after_sign_in,
        cimd_token_endpoint_never_fetches,
        cimd_domain_policy_refuses_cached_and_new_documents,
        cimd_fetches_are_rate_limited_per_host,
    ]
}

const CIMD_REDIRECT: &str = "https://cimd.example.com/callback";

async fn cimd_client_full_flow() {
    let as_ = setup().await;
    let doc = DocServer::start(|id| cimd_doc(id, CIMD_REDIRECT), None).await;
    let req = AuthRequest::new(&doc.client_id, CIMD_REDIRECT, SCOPES, &as_.resource);
    full_flow(&as_, &req, Auth::Public(&doc.client_id)).await;
    assert!(doc.hits() >= 1, "the document was fetched");
}

async fn cimd_consent_page_shows_the_document_host() {
    let as_ = setup().await;
    let doc = DocServer::start(|id| cimd_doc(id, CIMD_REDIRECT), None).await;
    let req = AuthRequest::new(&doc.client_id, CIMD_REDIRECT, SCOPES, &as_.resource);
    let page = Browser::new()
        .authorize_as(&as_.issuer, &req.url(&as_.issuer), USER)
        .await;
    assert!(is_consent_page(&page), "{} {}", page.status, page.body);
    let host = doc
        .client_id
        .trim_start_matches("http://")
        .trim_end_matches("/client.json");
    assert!(
        page.body.contains(&format!("from {host}")),
        "the client's host is shown prominently"
    );
    assert!(page.body.contains("Metadata Document Client"));
    assert!(
        page.body.contains("cimd.example.com"),
        "redirect host shown"
    );
}

/// The document's `client_id` must equal its URL exactly; a document
/// claiming to be another client is refused with an error page.
async fn cimd_document_client_id_mismatch_is_an_error_page() {
    let as_ = setup().await;
    let doc = DocServer::start(|id| cimd_doc(&format!("{id}?x"), CIMD_REDIRECT), None).await;
    let req = AuthRequest::new(&doc.client_id, CIMD_REDIRECT, SCOPES, &as_.resource);
    let page = Browser::new()
        .authorize_as(&as_.issuer, &req.url(&as_.issuer), USER)
        .await;
    assert_error_page(&page, 400);
    assert!(
        page.body.contains("client_id does not equal its URL"),
        "{}",
        page.body
    );
    assert_eq!(doc.hits(), 1);
    let doc2 = DocServer::start(
        |_| cimd_doc("https://trusted.example.com/client.json", CIMD_REDIRECT),
        None,
    )
    .await;
    let req = AuthRequest::new(&doc2.client_id, CIMD_REDIRECT, SCOPES, &as_.resource);
    assert_error_page(
        &Browser::new()
            .authorize_as(&as_.issuer, &req.url(&as_.issuer), USER)
            .await,
        400,
    );
    assert!(
        as_.store
            .get_client("https://trusted.example.com/client.json")
            .await
            .is_err(),
        "nothing cached under the claimed id"
    );
}

async fn cimd_redirect_uri_not_in_document_is_an_error_page() {
    let as_ = setup().await;
    let doc = DocServer::start(|id| cimd_doc(id, CIMD_REDIRECT), None).await;
    let req = AuthRequest::new(
        &doc.client_id,
        "https://evil.example.com/callback",
        SCOPES,
        &as_.resource,
    );
    let page = Browser::new()
        .authorize_as(&as_.issuer, &req.url(&as_.issuer), USER)
        .await;
    assert_error_page(&page, 400);
}

async fn cimd_document_with_javascript_redirect_is_an_error_page() {
    let as_ = setup().await;
    let doc = DocServer::start(|id| cimd_doc(id, "javascript:alert(1)"), None).await;
    let req = AuthRequest::new(&doc.client_id, "javascript:alert(1)", SCOPES, &as_.resource);
    assert_error_page(
        &Browser::new()
            .authorize_as(&as_.issuer, &req.url(&as_.issuer), USER)
            .await,
        400,
    );
}

/// A public document cannot carry a shared secret: only `none` is accepted.
async fn cimd_document_with_secret_auth_is_refused() {
    let as_ = setup().await;
    let doc = DocServer::start(
        |id| {
            let mut d = cimd_doc(id, CIMD_REDIRECT);
            d["token_endpoint_auth_method"] = "client_secret_basic".into();
            d
        },
        None,
    )
    .await;
    let req = AuthRequest::new(&doc.client_id, CIMD_REDIRECT, SCOPES, &as_.resource);
    assert_error_page(
        &Browser::new()
            .authorize_as(&as_.issuer, &req.url(&as_.issuer), USER)
            .await,
        400,
    );
}

/// A token request from `client_id` (a public client): `invalid_client`.
async fn token_request_refused(as_: &TestAs, client_id: &str) {
    let r = post_form(
        as_,
        "/oauth/token",
        pairs(&[
            ("grant_type", "authorization_code"),
            ("code", "x"),
            ("code_verifier", &"a".repeat(43)),
        ]),
        Auth::Public(client_id),
    )
    .await;
    r.assert_oauth_error(401, "invalid_client");
}

/// A client_id naming a private address is refused with an error page, at
/// once, and never fetched (the fetcher refuses before connecting).
async fn refused_without_traffic(client_id: &str) {
    let as_ = setup().await;
    let req = AuthRequest::new(client_id, CIMD_REDIRECT, SCOPES, &as_.resource);
    let page = Browser::new()
        .authorize_as(&as_.issuer, &req.url(&as_.issuer), USER)
        .await;
    assert_error_page(&page, 400);
    assert!(
        as_.store.get_client(client_id).await.is_err(),
        "nothing cached"
    );
    // Also at the token endpoint, where the client authenticates by id.
    token_request_refused(&as_, client_id).await;
}

async fn cimd_private_address_10_refused_without_traffic() {
    refused_without_traffic("http://10.0.0.1/x.json").await;
    refused_without_traffic("https://10.0.0.1/x.json").await;
}

async fn cimd_metadata_address_169_254_refused_without_traffic() {
    refused_without_traffic("https://169.254.169.254/c.json").await;
}

/// Plain http off loopback is not even treated as a metadata document URL.
async fn cimd_http_off_loopback_is_not_a_cimd_client() {
    let as_ = setup().await;
    let req = AuthRequest::new(
        "http://example.com/client.json",
        CIMD_REDIRECT,
        SCOPES,
        &as_.resource,
    );
    let page = Browser::new().get(&req.url(&as_.issuer)).await;
    assert_error_page(&page, 400);
    assert!(page.body.contains("not registered"), "{}", page.body);
}

/// The document is cached per its `Cache-Control` (clamped), then fetched again.
async fn cimd_document_is_cached_then_refetched() {
    let as_ = setup().await;
    let doc = DocServer::start(|id| cimd_doc(id, CIMD_REDIRECT), Some("max-age=300")).await;
    let req = AuthRequest::new(&doc.client_id, CIMD_REDIRECT, SCOPES, &as_.resource);
    let mut b = Browser::new();
    authorize_code(&as_, &mut b, &req, USER).await;
    let req2 = AuthRequest::new(&doc.client_id, CIMD_REDIRECT, SCOPES, &as_.resource);
    code_from(&as_, &req2, &b.get(&req2.url(&as_.issuer)).await);
    assert_eq!(doc.hits(), 1, "served from the cache");
    as_.clock.advance(301);
    let req3 = AuthRequest::new(&doc.client_id, CIMD_REDIRECT, SCOPES, &as_.resource);
    code_from(&as_, &req3, &b.get(&req3.url(&as_.issuer)).await);
    assert_eq!(doc.hits(), 2, "fetched again after max-age");
}

/// Without the development override, an http loopback URL is no client.
async fn cimd_disabled_override_refuses_http_loopback() {
    let as_ = TestAs::start_with(Options {
        store: None,
        tweak: Box::new(|s| s.cimd.allow_http_loopback = false),
        ..Default::default()
    })
    .await;
    prepare(&as_).await;
    let doc = DocServer::start(|id| cimd_doc(id, CIMD_REDIRECT), None).await;
    let req = AuthRequest::new(&doc.client_id, CIMD_REDIRECT, SCOPES, &as_.resource);
    assert_error_page(&Browser::new().get(&req.url(&as_.issuer)).await, 400);
    assert_eq!(doc.hits(), 0, "never fetched");
}

/// An anonymous authorization request cannot make the server fetch: the
/// user signs in first, and only then is the document fetched.
async fn cimd_document_is_fetched_only_after_sign_in() {
    let as_ = setup().await;
    let doc = DocServer::start(|id| cimd_doc(id, CIMD_REDIRECT), None).await;
    let req = AuthRequest::new(&doc.client_id, CIMD_REDIRECT, SCOPES, &as_.resource);
    let page = Browser::new().get(&req.url(&as_.issuer)).await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert!(
        page.location
            .as_deref()
            .is_some_and(|l| l.starts_with("/login")),
        "{:?}",
        page.location
    );
    assert_eq!(doc.hits(), 0, "nothing fetched for an anonymous request");
    let page = Browser::new()
        .authorize_as(&as_.issuer, &req.url(&as_.issuer), USER)
        .await;
    assert!(is_consent_page(&page), "{} {}", page.status, page.body);
    assert_eq!(doc.hits(), 1, "fetched once the user signed in");
}

/// The token endpoint authenticates metadata-document clients from the
/// cache only: an id never seen at /oauth/authorize is no client there.
async fn cimd_token_endpoint_never_fetches() {
    let as_ = setup().await;
    let doc = DocServer::start(|id| cimd_doc(id, CIMD_REDIRECT), None).await;
    token_request_refused(&as_, &doc.client_id).await;
    assert_eq!(doc.hits(), 0);
}

/// `denied_hosts` wins, `allowed_hosts` narrows, and the policy holds for a
/// document already cached.
async fn cimd_domain_policy_refuses_cached_and_new_documents() {
    let doc = DocServer::start(|id| cimd_doc(id, CIMD_REDIRECT), None).await;
    let denied = TestAs::start_with(Options {
        store: None,
        tweak: Box::new(|s| s.cimd.denied_hosts = vec!["127.0.0.1".into()]),
        ..Default::default()
    })
    .await;
    prepare(&denied).await;
    // Cached before the operator denied its host.
    denied
        .store
        .upsert_client(&mcpgate_store::ClientRecord {
            client_id: doc.client_id.clone(),
            kind: mcpgate_store::ClientKind::Cimd,
            client_name: Some("cached".into()),
            client_secret_hash: None,
            token_endpoint_auth_method: "none".into(),
            redirect_uris: vec![CIMD_REDIRECT.into()],
            grant_types: vec!["authorization_code".into()],
            allowed_scopes: vec![],
            application_type: None,
            client_uri: None,
            logo_uri: None,
            created_at: 0,
            expires_at: Some(i64::MAX),
            jwks: None,
            jwks_uri: None,
        })
        .await
        .unwrap();
    let req = AuthRequest::new(&doc.client_id, CIMD_REDIRECT, SCOPES, &denied.resource);
    let page = Browser::new()
        .authorize_as(&denied.issuer, &req.url(&denied.issuer), USER)
        .await;
    assert_error_page(&page, 400);
    assert!(page.body.contains("does not accept"), "{}", page.body);

    let elsewhere = TestAs::start_with(Options {
        store: None,
        tweak: Box::new(|s| s.cimd.allowed_hosts = vec!["*.example.com".into()]),
        ..Default::default()
    })
    .await;
    prepare(&elsewhere).await;
    let req = AuthRequest::new(&doc.client_id, CIMD_REDIRECT, SCOPES, &elsewhere.resource);
    let page = Browser::new()
        .authorize_as(&elsewhere.issuer, &req.url(&elsewhere.issuer), USER)
        .await;
    assert_error_page(&page, 400);
    assert_eq!(doc.hits(), 0, "a refused host is never fetched");
}

/// One host gets `fetches_per_host_per_minute` fetches; the next is a 429
/// page and no request reaches it.
async fn cimd_fetches_are_rate_limited_per_host() {
    let as_ = TestAs::start_with(Options {
        store: None,
        tweak: Box::new(|s| s.cimd.fetches_per_host_per_minute = 1),
        ..Default::default()
    })
    .await;
    prepare(&as_).await;
    let first = DocServer::start(|id| cimd_doc(id, CIMD_REDIRECT), None).await;
    let second = DocServer::start(|id| cimd_doc(id, CIMD_REDIRECT), None).await;
    let req = AuthRequest::new(&first.client_id, CIMD_REDIRECT, SCOPES, &as_.resource);
    let page = Browser::new()
        .authorize_as(&as_.issuer, &req.url(&as_.issuer), USER)
        .await;
    assert!(is_consent_page(&page), "{} {}", page.status, page.body);
    let req = AuthRequest::new(&second.client_id, CIMD_REDIRECT, SCOPES, &as_.resource);
    let page = Browser::new()
        .authorize_as(&as_.issuer, &req.url(&as_.issuer), USER)
        .await;
    assert_error_page(&page, 429);
    assert_eq!(second.hits(), 0, "over the limit, nothing is fetched");
}

/// "No traffic", shown by the listener itself: a document URL naming a
/// loopback address (with the development override off) is refused, and a
/// listener on that very address and port never sees a connection.
async fn cimd_loopback_address_refused_and_no_connection_arrives() {
    let as_ = TestAs::start_with(Options {
        store: None,
        tweak: Box::new(|s| s.cimd.allow_http_loopback = false),
        ..Default::default()
    })
    .await;
    prepare(&as_).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let client_id = format!("https://127.0.0.1:{port}/client.json");
    let req = AuthRequest::new(&client_id, CIMD_REDIRECT, SCOPES, &as_.resource);
    let page = Browser::new()
        .authorize_as(&as_.issuer, &req.url(&as_.issuer), USER)
        .await;
    assert_error_page(&page, 400);
    token_request_refused(&as_, &client_id).await;
    // Everything the server did for these requests is done; had it
    // connected, the connection would be waiting in the accept queue.
    let accepted = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
    assert!(
        accepted.is_err(),
        "the server connected to the refused address"
    );
}
