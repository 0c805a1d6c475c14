//! Attacks on the token endpoint, each its own trial: wrong verifier, code
//! replay (which revokes what the first use issued), a code used by another
//! client, an expired code, refresh-token reuse (the whole family dies),
//! foreign resources, scope widening, malformed requests, and client
//! authentication failures.

use libtest_mimic::Trial;
use mcpgate_testkit::{AuthRequest, Browser, TestAs};
use mcpgate_types::client_metadata::TokenEndpointAuthMethod;

use crate::common::*;

pub fn trials() -> Vec<Trial> {
    trials![
        wrong_code_verifier_is_invalid_grant,
        missing_code_verifier_is_invalid_request,
        code_replay_is_refused_and_revokes_tokens,
        code_used_by_another_client_is_invalid_grant,
        expired_code_is_invalid_grant,
        unknown_code_is_invalid_grant,
        redirect_uri_mismatch_is_invalid_grant,
        refresh_reuse_revokes_the_family,
        refresh_by_another_client_is_invalid_grant,
        refresh_cannot_widen_scope,
        foreign_resource_at_token_is_invalid_target,
        foreign_resource_at_refresh_is_invalid_target,
        wrong_content_type_is_invalid_request,
        repeated_parameters_are_invalid_request,
        unsupported_grant_type,
        client_credentials_by_public_client_is_refused,
        invalid_secret_basic_is_401_with_challenge,
        invalid_secret_post_is_invalid_client,
        confidential_client_without_secret_is_invalid_client,
        public_client_with_a_secret_is_invalid_client,
        unknown_client_is_invalid_client,
        token_responses_are_no_store,
        expired_access_token_is_rejected,
        expired_refresh_family_is_invalid_grant,
        disabled_user_cannot_refresh,
    ]
}

/// A server with "app", a signed-in browser, and a fresh code for `req`.
async fn with_code() -> (TestAs, AuthRequest, String) {
    let as_ = setup().await;
    let req = app_request(&as_);
    let code = authorize_code(&as_, &mut Browser::new(), &req, USER).await;
    (as_, req, code)
}

async fn wrong_code_verifier_is_invalid_grant() {
    let (as_, req, code) = with_code().await;
    let mut form = req.token_form(&code);
    form.retain(|(k, _)| k != "code_verifier");
    form.push(("code_verifier".into(), "x".repeat(43)));
    post_form(&as_, "/oauth/token", form, Auth::Public("app"))
        .await
        .assert_oauth_error(400, "invalid_grant");
    // The code is consumed by the failed attempt: the right verifier is too late.
    redeem(&as_, &req, &code, Auth::Public("app"))
        .await
        .assert_oauth_error(400, "invalid_grant");
}

async fn missing_code_verifier_is_invalid_request() {
    let (as_, req, code) = with_code().await;
    let mut form = req.token_form(&code);
    form.retain(|(k, _)| k != "code_verifier");
    post_form(&as_, "/oauth/token", form, Auth::Public("app"))
        .await
        .assert_oauth_error(400, "invalid_request");
}

/// OAuth 2.1 §4.1.3: the second use fails, and the refresh token the first
/// use issued is revoked.
async fn code_replay_is_refused_and_revokes_tokens() {
    let (as_, req, code) = with_code().await;
    let rs_secret = add_resource_server(&as_).await;
    let first = redeem(&as_, &req, &code, Auth::Public("app")).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let rt = first.str("refresh_token");
    redeem(&as_, &req, &code, Auth::Public("app"))
        .await
        .assert_oauth_error(400, "invalid_grant");
    assert_eq!(
        introspect(&as_, &rs_secret, &rt).await.json["active"],
        false,
        "revoked by the replay"
    );
    refresh(&as_, &rt, Auth::Public("app"))
        .await
        .assert_oauth_error(400, "invalid_grant");
}

/// A stolen code (with its verifier) is useless to another client, and
/// the theft attempt burns it.
async fn code_used_by_another_client_is_invalid_grant() {
    let (as_, req, code) = with_code().await;
    as_.add_public_client("thief", REDIRECT).await;
    redeem(&as_, &req, &code, Auth::Public("thief"))
        .await
        .assert_oauth_error(400, "invalid_grant");
    redeem(&as_, &req, &code, Auth::Public("app"))
        .await
        .assert_oauth_error(400, "invalid_grant");
}

async fn expired_code_is_invalid_grant() {
    let (as_, req, code) = with_code().await;
    as_.clock.advance(61);
    redeem(&as_, &req, &code, Auth::Public("app"))
        .await
        .assert_oauth_error(400, "invalid_grant");
}

async fn unknown_code_is_invalid_grant() {
    let (as_, req, _) = with_code().await;
    redeem(&as_, &req, "not-a-code", Auth::Public("app"))
        .await
        .assert_oauth_error(400, "invalid_grant");
}

async fn redirect_uri_mismatch_is_invalid_grant() {
    let (as_, req, code) = with_code().await;
    let mut form = req.token_form(&code);
    form.retain(|(k, _)| k != "redirect_uri");
    form.push(("redirect_uri".into(), format!("{REDIRECT}/")));
    post_form(&as_, "/oauth/token", form, Auth::Public("app"))
        .await
        .assert_oauth_error(400, "invalid_grant");
}

/// Reusing a rotated refresh token after the reuse grace interval (5 s by
/// default) fails and revokes the whole family: the successor the
/// legitimate client holds stops working too.
async fn refresh_reuse_revokes_the_family() {
    let as_ = setup().await;
    let rs_secret = add_resource_server(&as_).await;
    let t = tokens_for(&as_, &app_request(&as_), Auth::Public("app")).await;
    let r = refresh(&as_, &t.refresh, Auth::Public("app")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let successor = r.str("refresh_token");
    as_.clock.advance(6);
    refresh(&as_, &t.refresh, Auth::Public("app"))
        .await
        .assert_oauth_error(400, "invalid_grant");
    refresh(&as_, &successor, Auth::Public("app"))
        .await
        .assert_oauth_error(400, "invalid_grant");
    assert_eq!(
        introspect(&as_, &rs_secret, &successor).await.json["active"],
        false
    );
    // A separate grant of the same user and client is unaffected.
    let other = tokens_for(&as_, &app_request(&as_), Auth::Public("app")).await;
    assert_eq!(
        refresh(&as_, &other.refresh, Auth::Public("app"))
            .await
            .status,
        200
    );
}

async fn refresh_by_another_client_is_invalid_grant() {
    let as_ = setup().await;
    as_.add_public_client("thief", "https://thief.example.com/cb")
        .await;
    let t = tokens_for(&as_, &app_request(&as_), Auth::Public("app")).await;
    refresh(&as_, &t.refresh, Auth::Public("thief"))
        .await
        .assert_oauth_error(400, "invalid_grant");
}

async fn refresh_cannot_widen_scope() {
    let as_ = setup().await;
    let t = tokens_for(&as_, &app_request(&as_), Auth::Public("app")).await;
    let form = pairs(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", &t.refresh),
        ("scope", "notes:read notes:admin"),
    ]);
    post_form(&as_, "/oauth/token", form, Auth::Public("app"))
        .await
        .assert_oauth_error(400, "invalid_scope");
}

async fn foreign_resource_at_token_is_invalid_target() {
    let (as_, req, code) = with_code().await;
    let mut form = req.token_form(&code);
    form.retain(|(k, _)| k != "resource");
    form.push(("resource".into(), as_.other_resource.clone()));
    post_form(&as_, "/oauth/token", form, Auth::Public("app"))
        .await
        .assert_oauth_error(400, "invalid_target");
}

async fn foreign_resource_at_refresh_is_invalid_target() {
    let as_ = setup().await;
    let t = tokens_for(&as_, &app_request(&as_), Auth::Public("app")).await;
    for r in [as_.other_resource.as_str(), "https://evil.example.com/mcp"] {
        let form = pairs(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &t.refresh),
            ("resource", r),
        ]);
        post_form(&as_, "/oauth/token", form, Auth::Public("app"))
            .await
            .assert_oauth_error(400, "invalid_target");
    }
}

async fn wrong_content_type_is_invalid_request() {
    let (as_, req, code) = with_code().await;
    let json = serde_json::json!({"grant_type": "authorization_code", "code": code, "client_id": "app", "code_verifier": req.verifier}).to_string();
    post_raw(&as_, "/oauth/token", "application/json", json, None)
        .await
        .assert_oauth_error(400, "invalid_request");
    // The code was not consumed by the malformed request.
    assert_eq!(
        redeem(&as_, &req, &code, Auth::Public("app")).await.status,
        200
    );
}

async fn repeated_parameters_are_invalid_request() {
    let (as_, req, code) = with_code().await;
    let form = req.token_form(&code);
    let mut body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form.iter())
        .finish();
    body.push_str("&code=another");
    post_raw(
        &as_,
        "/oauth/token",
        "application/x-www-form-urlencoded",
        body.clone(),
        None,
    )
    .await
    .assert_oauth_error(400, "invalid_request");
    let body = format!(
        "{}&client_id=app",
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form.iter())
            .finish()
    );
    post_raw(
        &as_,
        "/oauth/token",
        "application/x-www-form-urlencoded",
        body,
        None,
    )
    .await
    .assert_oauth_error(400, "invalid_request");
}

async fn unsupported_grant_type() {
    let as_ = setup().await;
    for g in [
        "password",
        "implicit",
        "urn:ietf:params:oauth:grant-type:device_code",
    ] {
        let form = pairs(&[("grant_type", g), ("username", USER), ("password", "x")]);
        post_form(&as_, "/oauth/token", form, Auth::Public("app"))
            .await
            .assert_oauth_error(400, "unsupported_grant_type");
    }
}

async fn client_credentials_by_public_client_is_refused() {
    let as_ = setup().await;
    let form = pairs(&[
        ("grant_type", "client_credentials"),
        ("resource", &as_.resource),
    ]);
    let r = post_form(&as_, "/oauth/token", form, Auth::Public("app")).await;
    r.assert_oauth_error(400, "unauthorized_client");
    assert!(r.json.get("access_token").is_none());
}

async fn confidential(as_: &TestAs, method: TokenEndpointAuthMethod) -> String {
    as_.add_client(
        "conf",
        "https://conf.example.com/cb",
        method,
        &["authorization_code", "client_credentials"],
    )
    .await
    .1
    .unwrap()
}

fn cc_form(as_: &TestAs) -> Vec<(String, String)> {
    pairs(&[
        ("grant_type", "client_credentials"),
        ("resource", &as_.resource),
    ])
}

async fn invalid_secret_basic_is_401_with_challenge() {
    let as_ = TestAs::start().await;
    let secret = confidential(&as_, TokenEndpointAuthMethod::ClientSecretBasic).await;
    let r = post_form(
        &as_,
        "/oauth/token",
        cc_form(&as_),
        Auth::Basic("conf", &format!("{secret}x")),
    )
    .await;
    r.assert_oauth_error(401, "invalid_client");
    assert!(
        r.header("www-authenticate")
            .is_some_and(|h| h.starts_with("Basic")),
        "{:?}",
        r.header("www-authenticate")
    );
    // The registered method only: the right secret sent in the form is refused too.
    let r = post_form(
        &as_,
        "/oauth/token",
        cc_form(&as_),
        Auth::Post("conf", &secret),
    )
    .await;
    r.assert_oauth_error(401, "invalid_client");
    // Sanity: the right secret the right way works.
    assert_eq!(
        post_form(
            &as_,
            "/oauth/token",
            cc_form(&as_),
            Auth::Basic("conf", &secret)
        )
        .await
        .status,
        200
    );
}

async fn invalid_secret_post_is_invalid_client() {
    let as_ = TestAs::start().await;
    let secret = confidential(&as_, TokenEndpointAuthMethod::ClientSecretPost).await;
    post_form(
        &as_,
        "/oauth/token",
        cc_form(&as_),
        Auth::Post("conf", "wrong-secret-wrong-secret"),
    )
    .await
    .assert_oauth_error(401, "invalid_client");
    post_form(
        &as_,
        "/oauth/token",
        cc_form(&as_),
        Auth::Basic("conf", &secret),
    )
    .await
    .assert_oauth_error(401, "invalid_client");
    assert_eq!(
        post_form(
            &as_,
            "/oauth/token",
            cc_form(&as_),
            Auth::Post("conf", &secret)
        )
        .await
        .status,
        200
    );
}

/// A confidential client's id alone (as a public client would send it)
/// authenticates nothing.
async fn confidential_client_without_secret_is_invalid_client() {
    let as_ = TestAs::start().await;
    confidential(&as_, TokenEndpointAuthMethod::ClientSecretBasic).await;
    post_form(&as_, "/oauth/token", cc_form(&as_), Auth::Public("conf"))
        .await
        .assert_oauth_error(401, "invalid_client");
}

async fn public_client_with_a_secret_is_invalid_client() {
    let as_ = setup().await;
    let t = tokens_for(&as_, &app_request(&as_), Auth::Public("app")).await;
    refresh(&as_, &t.refresh, Auth::Post("app", "made-up-secret"))
        .await
        .assert_oauth_error(401, "invalid_client");
    refresh(&as_, &t.refresh, Auth::Basic("app", "made-up-secret"))
        .await
        .assert_oauth_error(401, "invalid_client");
}

async fn unknown_client_is_invalid_client() {
    let as_ = setup().await;
    let r = post_form(
        &as_,
        "/oauth/token",
        cc_form(&as_),
        Auth::Basic("nobody", "secret-secret-secret"),
    )
    .await;
    r.assert_oauth_error(401, "invalid_client");
    assert!(r.header("www-authenticate").is_some());
    post_form(&as_, "/oauth/token", cc_form(&as_), Auth::Public("nobody"))
        .await
        .assert_oauth_error(401, "invalid_client");
}

/// Every token endpoint answer, success or error, is `no-store`.
async fn token_responses_are_no_store() {
    let (as_, req, code) = with_code().await;
    let ok = redeem(&as_, &req, &code, Auth::Public("app")).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("cache-control"), Some("no-store"));
    assert_eq!(ok.header("pragma"), Some("no-cache"));
    let r = refresh(&as_, &ok.str("refresh_token"), Auth::Public("app")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let err = redeem(&as_, &req, &code, Auth::Public("app")).await;
    err.assert_oauth_error(400, "invalid_grant");
}

/// Access tokens are short-lived: after `exp` the published keys no longer
/// verify them and introspection says inactive.
async fn expired_access_token_is_rejected() {
    let as_ = setup().await;
    let rs_secret = add_resource_server(&as_).await;
    let t = tokens_for(&as_, &app_request(&as_), Auth::Public("app")).await;
    as_.clock.advance(600);
    let jwks = get(&as_, "/oauth/jwks.json").await;
    let verifier = mcpgate_jose::Verifier::from_jwks_json(&jwks.json).unwrap();
    let opts = mcpgate_jose::VerifyOptions {
        issuer: &as_.issuer,
        audience: Some(&as_.resource),
        typ: Some("at+jwt"),
        now: mcpgate_jose::Clock::now(&as_.clock),
        leeway: 0,
    };
    let err = verifier
        .verify::<serde_json::Value>(&t.access, &opts)
        .unwrap_err();
    assert_eq!(err, mcpgate_jose::JwtError::Expired);
    assert_eq!(
        introspect(&as_, &rs_secret, &t.access).await.json["active"],
        false
    );
    // The refresh token still works and yields a fresh access token.
    assert_eq!(
        refresh(&as_, &t.refresh, Auth::Public("app")).await.status,
        200
    );
}

async fn expired_refresh_family_is_invalid_grant() {
    let as_ = setup().await;
    let t = tokens_for(&as_, &app_request(&as_), Auth::Public("app")).await;
    as_.clock.advance(as_.state.settings().refresh_token_ttl);
    refresh(&as_, &t.refresh, Auth::Public("app"))
        .await
        .assert_oauth_error(400, "invalid_grant");
}

async fn disabled_user_cannot_refresh() {
    let as_ = setup().await;
    let t = tokens_for(&as_, &app_request(&as_), Auth::Public("app")).await;
    let mut user = as_.store.get_user_by_username(USER).await.unwrap();
    user.disabled = true;
    as_.store.update_user(&user).await.unwrap();
    refresh(&as_, &t.refresh, Auth::Public("app"))
        .await
        .assert_oauth_error(400, "invalid_grant");
}
