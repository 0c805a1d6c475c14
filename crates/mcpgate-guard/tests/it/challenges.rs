//! Challenge responses (exact `WWW-Authenticate` strings, statuses, bodies), the tower layer
//! in an axum app, and the PRM route.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::routing::post;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use mcpgate_guard::{
    Challenge, GuardLayer, Principal, challenge_response, prm_document, prm_router,
};
use mcpgate_types::ScopeSet;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::support::*;

fn baseline() -> ScopeSet {
    ScopeSet::parse("notes:read").unwrap()
}

async fn parts(r: axum::response::Response) -> (StatusCode, String, Value, http::HeaderMap) {
    let status = r.status();
    let headers = r.headers().clone();
    let www = headers
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        www,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
        headers,
    )
}

#[tokio::test]
async fn exact_challenge_strings() {
    let cases = [
        (
            Challenge::Missing,
            401,
            format!(r#"Bearer scope="notes:read", resource_metadata="{PRM_A}""#),
            "Authentication required",
        ),
        (
            Challenge::InvalidToken("the token has expired".into()),
            401,
            format!(
                r#"Bearer error="invalid_token", error_description="the token has expired", scope="notes:read", resource_metadata="{PRM_A}""#
            ),
            "the token has expired",
        ),
        (
            Challenge::InvalidRequest("access tokens must not be sent in the query string".into()),
            400,
            format!(
                r#"Bearer error="invalid_request", error_description="access tokens must not be sent in the query string", resource_metadata="{PRM_A}""#
            ),
            "access tokens must not be sent in the query string",
        ),
        (
            Challenge::InsufficientScope {
                required: ScopeSet::parse("notes:write notes:read").unwrap(),
                description: "add_note needs notes:write".into(),
            },
            403,
            format!(
                r#"Bearer error="insufficient_scope", error_description="add_note needs notes:write", scope="notes:read notes:write", resource_metadata="{PRM_A}""#
            ),
            "add_note needs notes:write",
        ),
    ];
    for (ch, status, www, message) in cases {
        let (s, w, body, headers) = parts(challenge_response(&ch, PRM_A, &baseline())).await;
        assert_eq!(s.as_u16(), status, "{ch:?}");
        assert_eq!(w, www);
        assert_eq!(
            body,
            json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32001, "message": message}})
        );
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["cache-control"], "no-store");
    }
}

/// An axum app with one protected MCP endpoint that reports what it saw.
fn app(t: &Local) -> Router {
    let mcp = Router::new()
        .route(
            "/mcp/a",
            post(
                |principal: Principal, headers: http::HeaderMap| async move {
                    axum::Json(json!({
                        "sub": principal.subject,
                        "saw_authorization": headers.contains_key("authorization"),
                    }))
                },
            ),
        )
        .layer(GuardLayer::from_guard(t.guard.clone()));
    let doc = prm_document(RES_A, vec![ISS.into()], &baseline());
    Router::new().merge(mcp).merge(prm_router(doc))
}

fn request(uri: &str, auth: Option<&str>) -> Request<Body> {
    let mut b = Request::post(uri);
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    b.body(Body::from("{}")).unwrap()
}

#[tokio::test]
async fn the_layer_authenticates_strips_and_challenges() {
    let k = key("k1");
    let t = local_guard(RES_A, &[&k]);
    let token = sign(&k, &claims(ISS, RES_A));

    let r = app(&t)
        .oneshot(request("/mcp/a", Some(&format!("Bearer {token}"))))
        .await
        .unwrap();
    let (s, _, body, _) = parts(r).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body, json!({"sub": "user-1", "saw_authorization": false}));

    let r = app(&t).oneshot(request("/mcp/a", None)).await.unwrap();
    let (s, www, _, _) = parts(r).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        www,
        format!(r#"Bearer scope="notes:read", resource_metadata="{PRM_A}""#)
    );

    let r = app(&t)
        .oneshot(request("/mcp/a", Some("Bearer garbage")))
        .await
        .unwrap();
    let (s, www, body, _) = parts(r).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        www,
        format!(
            r#"Bearer error="invalid_token", error_description="the token is not a JWT access token", scope="notes:read", resource_metadata="{PRM_A}""#
        )
    );
    assert!(!body.to_string().contains("garbage"));

    let uri = format!("/mcp/a?access_token={token}");
    let r = app(&t)
        .oneshot(request(&uri, Some(&format!("Bearer {token}"))))
        .await
        .unwrap();
    let (s, www, body, _) = parts(r).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        www.starts_with(r#"Bearer error="invalid_request""#),
        "{www}"
    );
    assert!(!body.to_string().contains(&token));
    assert!(!www.contains(&token));

    // Token contents are never echoed, not even for a forged token.
    let b = local_guard(RES_B, &[&k]);
    let r = app(&b)
        .oneshot(request("/mcp/a", Some(&format!("Bearer {token}"))))
        .await
        .unwrap();
    let (s, www, body, _) = parts(r).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    for secret in ["user-1", "client-1", RES_A, ISS] {
        assert!(!www.replace(PRM_A, "").contains(secret), "{www}");
        assert!(!body.to_string().contains(secret), "{body}");
    }
}

#[tokio::test]
async fn keep_authorization_header_opt_out() {
    let k = key("k1");
    let t = local_guard(RES_A, &[&k]);
    let token = sign(&k, &claims(ISS, RES_A));
    let app = Router::new()
        .route(
            "/mcp/a",
            post(|headers: http::HeaderMap| async move {
                headers.contains_key("authorization").to_string()
            }),
        )
        .layer(GuardLayer::from_guard(t.guard.clone()).keep_authorization_header(true));
    let r = app
        .oneshot(request("/mcp/a", Some(&format!("Bearer {token}"))))
        .await
        .unwrap();
    assert_eq!(r.into_body().collect().await.unwrap().to_bytes(), "true");
}

#[tokio::test]
async fn principal_without_the_layer_is_a_500() {
    let app: Router = Router::new().route("/x", post(|p: Principal| async move { p.subject }));
    let r = app.oneshot(request("/x", None)).await.unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn prm_is_served_without_a_token() {
    let t = local_guard(RES_A, &[&key("k1")]);
    let r = app(&t)
        .oneshot(
            Request::get("/.well-known/oauth-protected-resource/mcp/a")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let (s, _, body, headers) = parts(r).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(
        body,
        json!({
            "resource": RES_A,
            "authorization_servers": [ISS],
            "scopes_supported": ["notes:read"],
            "bearer_methods_supported": ["header"],
            "dpop_signing_alg_values_supported": ["ES256", "EdDSA", "RS256", "PS256"],
        })
    );
    let _ = Arc::clone(&t.guard);
}
