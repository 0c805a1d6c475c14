//! Contract snapshots (insta): the AS metadata document, the JWKS shape,
//! and the error bodies clients parse. The random port of the test server
//! is normalised to `[issuer]` before snapshotting; key material and key
//! ids are redacted.

use libtest_mimic::Trial;
use mcpgate_testkit::TestAs;
use serde_json::{Value, json};

use crate::common::*;

pub fn trials() -> Vec<Trial> {
    trials![
        as_metadata_document,
        jwks_shape,
        token_error_invalid_grant,
        token_error_invalid_client,
        token_error_unsupported_grant_type,
        dcr_error_invalid_redirect_uri,
    ]
}

/// Replaces the server's issuer (with its random port) by a placeholder.
fn normalise(as_: &TestAs, v: &Value) -> Value {
    serde_json::from_str(&v.to_string().replace(&as_.issuer, "[issuer]")).expect("JSON")
}

fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path("snapshots");
    s.set_prepend_module_to_snapshot(false);
    s.set_omit_expression(true);
    s
}

async fn as_metadata_document() {
    let as_ = TestAs::start().await;
    let r = get(&as_, "/.well-known/oauth-authorization-server").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json["issuer"],
        as_.issuer.as_str(),
        "issuer byte-identical to public_url"
    );
    // The OIDC discovery location serves the same document.
    let oidc = get(&as_, "/.well-known/openid-configuration").await;
    assert_eq!(oidc.json, r.json);
    let doc = normalise(&as_, &r.json);
    settings().bind(|| insta::assert_json_snapshot!("as_metadata", doc));
}

async fn jwks_shape() {
    let as_ = TestAs::start().await;
    let r = get(&as_, "/oauth/jwks.json").await;
    assert_eq!(r.status, 200);
    for k in r.json["keys"].as_array().expect("keys") {
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(
                k.get(private).is_none(),
                "no private member {private:?} in the JWKS"
            );
        }
        assert!(k["kid"].as_str().is_some_and(|s| !s.is_empty()));
    }
    let doc = r.json.clone();
    settings().bind(|| {
        insta::assert_json_snapshot!("jwks", doc, {
            ".keys[].kid" => "[kid]",
            ".keys[].x" => "[x]",
            ".keys[].y" => "[y]",
        })
    });
}

async fn token_error_invalid_grant() {
    let as_ = setup().await;
    let form = pairs(&[
        ("grant_type", "authorization_code"),
        ("code", "no-such-code"),
        ("code_verifier", &"v".repeat(43)),
        ("redirect_uri", REDIRECT),
    ]);
    let r = post_form(&as_, "/oauth/token", form, Auth::Public("app")).await;
    r.assert_oauth_error(400, "invalid_grant");
    let body = r.json;
    settings().bind(|| insta::assert_json_snapshot!("token_invalid_grant", body));
}

async fn token_error_invalid_client() {
    let as_ = setup().await;
    let form = pairs(&[
        ("grant_type", "client_credentials"),
        ("resource", &as_.resource),
    ]);
    let r = post_form(
        &as_,
        "/oauth/token",
        form,
        Auth::Basic("nobody", "wrong-secret-wrong-secret"),
    )
    .await;
    r.assert_oauth_error(401, "invalid_client");
    let snap = json!({"status": r.status, "www-authenticate": r.header("www-authenticate"), "body": r.json});
    settings().bind(|| insta::assert_json_snapshot!("token_invalid_client", snap));
}

async fn token_error_unsupported_grant_type() {
    let as_ = setup().await;
    let r = post_form(
        &as_,
        "/oauth/token",
        pairs(&[
            ("grant_type", "password"),
            ("username", USER),
            ("password", "x"),
        ]),
        Auth::Public("app"),
    )
    .await;
    r.assert_oauth_error(400, "unsupported_grant_type");
    let body = r.json;
    settings().bind(|| insta::assert_json_snapshot!("token_unsupported_grant_type", body));
}

async fn dcr_error_invalid_redirect_uri() {
    let as_ = TestAs::start().await;
    let r = register(&as_, &json!({"client_name": "Evil", "redirect_uris": ["javascript:alert(1)"], "token_endpoint_auth_method": "none"})).await;
    r.assert_oauth_error(400, "invalid_redirect_uri");
    let body = r.json;
    settings().bind(|| insta::assert_json_snapshot!("dcr_invalid_redirect_uri", body));
}
