//! POST requests: form bodies with RFC 6749 §2.3.1 client authentication, JSON bodies, and
//! redirects that are returned instead of followed.

use std::sync::Arc;

use mcpgate_net::{FetchError, FetchPolicy};

use crate::support::{FakeResolver, Server, fetcher, json, redirect, response};

#[tokio::test]
async fn post_form_sends_an_encoded_body_and_basic_auth() {
    let server = Server::start(|_| json(r#"{"access_token":"t"}"#)).await;
    let f = fetcher(FetchPolicy::loopback_dev(), &Arc::new(FakeResolver::new()));
    let r = f
        .post_form(
            &server.url("/token"),
            &[("grant_type", "authorization_code"), ("code", "a b&c")],
            Some(("my client", "s3cr:t")),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let req = &server.requests()[0];
    assert_eq!(req.method, "POST");
    assert_eq!(
        req.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        String::from_utf8_lossy(&req.body),
        "grant_type=authorization_code&code=a+b%26c"
    );
    // base64("my+client:s3cr%3At"): each part form-urlencoded first (RFC 6749 §2.3.1).
    let auth = req.header("authorization").unwrap();
    let encoded = auth.strip_prefix("Basic ").unwrap();
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    assert_eq!(String::from_utf8(decoded).unwrap(), "my+client:s3cr%3At");
}

#[tokio::test]
async fn post_json_sends_json() {
    let server = Server::start(|_| json(r#"{"client_id":"x"}"#)).await;
    let f = fetcher(FetchPolicy::loopback_dev(), &Arc::new(FakeResolver::new()));
    let body = serde_json::json!({"redirect_uris": ["http://127.0.0.1:1/cb"]});
    let r = f.post_json(&server.url("/register"), &body).await.unwrap();
    assert_eq!(r.status, 200);
    let req = &server.requests()[0];
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("authorization"), None);
    let sent: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(sent, body);
}

#[tokio::test]
async fn post_redirects_are_returned_not_followed() {
    let target = Server::counting().await;
    let location = target.url("/elsewhere");
    let server = Server::start(move |_| redirect(307, &location)).await;
    let f = fetcher(FetchPolicy::loopback_dev(), &Arc::new(FakeResolver::new()));
    let r = f
        .post_form(&server.url("/token"), &[("a", "b")], Some(("id", "secret")))
        .await
        .unwrap();
    assert_eq!(r.status, 307);
    let r = f
        .post_json(&server.url("/register"), &serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(r.status, 307);
    assert_eq!(
        target.accepts(),
        0,
        "the POST was not replayed to the redirect target"
    );
}

#[tokio::test]
async fn post_destinations_are_vetted() {
    let resolver = Arc::new(FakeResolver::new().with("internal.test", &["10.0.0.1"]));
    let f = fetcher(FetchPolicy::default(), &resolver);
    assert!(matches!(
        f.post_form("https://internal.test/token", &[], None).await,
        Err(FetchError::Forbidden { .. })
    ));
    assert!(matches!(
        f.post_json("https://169.254.169.254/", &serde_json::json!({}))
            .await,
        Err(FetchError::Forbidden { .. })
    ));
    assert_eq!(
        f.post_form("http://public.test/token", &[], None)
            .await
            .unwrap_err(),
        FetchError::InsecureScheme
    );
}

#[tokio::test]
async fn bearer_get_sends_the_header_and_never_follows_a_redirect() {
    let target = Server::counting().await;
    let location = target.url("/elsewhere");
    let server = Server::start(move |req| {
        if req.header("authorization") == Some("Bearer tok-123") {
            redirect(302, &location)
        } else {
            response(401, &[], b"")
        }
    })
    .await;
    let f = fetcher(FetchPolicy::loopback_dev(), &Arc::new(FakeResolver::new()));
    let r = f
        .get_with_bearer(&server.url("/userinfo"), "tok-123")
        .await
        .unwrap();
    assert_eq!(r.status, 302, "the token reached the server in the header");
    assert_eq!(
        target.accepts(),
        0,
        "the token was not carried to the redirect target"
    );
}
