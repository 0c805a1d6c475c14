//! The full authorization code flow over HTTP for pre-registered clients
//! (public, `client_secret_basic`, `client_secret_post`): login, consent
//! through the real form, code (with `iss` and `state`), token (an RFC 9068
//! JWT verified with the published JWKS), refresh with rotation,
//! introspection by the listed resource server, and revocation. The CIMD
//! and DCR clients run the same [`full_flow`] in their own modules.

use libtest_mimic::Trial;
use mcpgate_store::DynStore;
use mcpgate_testkit::{AuthRequest, Browser, Options, TestAs};
use mcpgate_types::client_metadata::TokenEndpointAuthMethod;

use crate::common::*;
use crate::pg::Postgres;

pub fn trials(pg: &Postgres) -> Vec<Trial> {
    let mut t = trials![
        public_client_full_flow,
        confidential_basic_full_flow,
        confidential_post_full_flow,
        introspection_refuses_unlisted_client,
        introspection_refuses_public_client,
        revoke_by_another_client_does_nothing,
        refresh_can_narrow_scopes,
        client_credentials_for_confidential_client,
        no_refresh_token_without_offline_access_or_grant,
        state_with_special_characters_round_trips,
        key_rotation_keeps_old_tokens_valid_during_grace,
    ];
    t.push(pg.trial(
        module_path!(),
        "public_client_full_flow",
        public_client_full_flow_on,
    ));
    t
}

/// Runs the whole flow for `req` with `auth` and checks every step.
pub async fn full_flow(as_: &TestAs, req: &AuthRequest, auth: Auth<'_>) {
    let user = as_
        .store
        .get_user_by_username(USER)
        .await
        .expect("user exists");
    let rs_secret = add_resource_server(as_).await;

    // Login, then the consent page, approved through its real form.
    let mut b = Browser::new();
    let page = b
        .authorize_as(&as_.issuer, &req.url(&as_.issuer), USER)
        .await;
    assert!(
        is_consent_page(&page),
        "first authorization shows consent: {} {}",
        page.status,
        page.body
    );
    assert!(
        page.body.contains(&req.client_id),
        "consent page names the client_id"
    );
    let page = b.decide(&as_.issuer, &page, "approve").await;
    let code = code_from(as_, req, &page);
    assert!(code.len() >= 43, "codes carry at least 256 bits");

    // Token.
    let r = redeem(as_, req, &code, auth).await;
    assert_eq!(r.status, 200, "token response: {}", r.text);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.json["token_type"], "Bearer");
    assert_eq!(r.json["expires_in"], 600);
    assert_eq!(r.json["scope"], SCOPES);
    let access = r.str("access_token");
    let rt1 = r.str("refresh_token");
    assert!(rt1.len() >= 43, "refresh tokens carry at least 256 bits");
    let claims = verify_access_token(as_, &access, &as_.resource).await;
    assert_user_claims(&claims, &user.id, &req.client_id, SCOPES);

    // Introspection by the resource server: both tokens are live.
    let i = introspect(as_, &rs_secret, &access).await;
    assert_eq!(i.status, 200, "{}", i.text);
    assert_eq!(i.header("cache-control"), Some("no-store"));
    assert_eq!(i.json["active"], true, "{}", i.text);
    assert_eq!(i.json["client_id"], req.client_id.as_str());
    assert_eq!(i.json["sub"], user.id.as_str());
    assert_eq!(i.json["aud"], as_.resource.as_str());
    assert_eq!(i.json["username"], USER);
    assert_eq!(i.json["groups"], serde_json::json!(["eng", "staff"]));
    let i = introspect(as_, &rs_secret, &rt1).await;
    assert_eq!(i.json["active"], true, "{}", i.text);
    assert_eq!(i.json["token_type"], "refresh_token");

    // Refresh rotates the refresh token.
    let r = refresh(as_, &rt1, auth).await;
    assert_eq!(r.status, 200, "refresh: {}", r.text);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let rt2 = r.str("refresh_token");
    assert_ne!(rt2, rt1, "rotation issues a new refresh token");
    let access2 = r.str("access_token");
    assert_ne!(access2, access);
    let claims2 = verify_access_token(as_, &access2, &as_.resource).await;
    assert_user_claims(&claims2, &user.id, &req.client_id, SCOPES);
    assert_eq!(
        claims2.auth_time, claims.auth_time,
        "refresh keeps the original auth_time"
    );
    assert_eq!(
        introspect(as_, &rs_secret, &rt1).await.json["active"],
        false,
        "a rotated token is inactive"
    );

    // Revocation (RFC 7009) of the live refresh token: refresh fails after.
    let form = pairs(&[("token", &rt2), ("token_type_hint", "refresh_token")]);
    let rv = post_form(as_, "/oauth/revoke", form, auth).await;
    assert_eq!(rv.status, 200, "revoke: {}", rv.text);
    refresh(as_, &rt2, auth)
        .await
        .assert_oauth_error(400, "invalid_grant");
    assert_eq!(
        introspect(as_, &rs_secret, &rt2).await.json["active"],
        false,
        "revoked"
    );
    let garbage = introspect(as_, &rs_secret, "not-a-token-at-all").await;
    assert_eq!(garbage.status, 200);
    assert_eq!(
        garbage.json,
        serde_json::json!({"active": false}),
        "nothing but active=false for unknown tokens"
    );
    let forged = introspect(as_, &rs_secret, "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.").await;
    assert_eq!(
        forged.json["active"], false,
        "an unsigned JWT is not active"
    );
}

async fn public_client_full_flow() {
    let as_ = setup().await;
    full_flow(&as_, &app_request(&as_), Auth::Public("app")).await;
}

async fn public_client_full_flow_on(store: DynStore) {
    let as_ = TestAs::start_with(Options {
        store: Some(store),
        ..Default::default()
    })
    .await;
    prepare(&as_).await;
    full_flow(&as_, &app_request(&as_), Auth::Public("app")).await;
}

const CONF_REDIRECT: &str = "https://conf.example.com/oauth/cb";

async fn confidential(method: TokenEndpointAuthMethod) -> (TestAs, String) {
    let as_ = setup().await;
    let (_, secret) = as_
        .add_client(
            "conf",
            CONF_REDIRECT,
            method,
            &["authorization_code", "refresh_token"],
        )
        .await;
    (as_, secret.expect("generated secret"))
}

async fn confidential_basic_full_flow() {
    let (as_, secret) = confidential(TokenEndpointAuthMethod::ClientSecretBasic).await;
    let req = AuthRequest::new("conf", CONF_REDIRECT, SCOPES, &as_.resource);
    full_flow(&as_, &req, Auth::Basic("conf", &secret)).await;
}

async fn confidential_post_full_flow() {
    let (as_, secret) = confidential(TokenEndpointAuthMethod::ClientSecretPost).await;
    let req = AuthRequest::new("conf", CONF_REDIRECT, SCOPES, &as_.resource);
    full_flow(&as_, &req, Auth::Post("conf", &secret)).await;
}

/// A confidential client that is not in `introspection_clients` may not
/// introspect, even with valid credentials.
async fn introspection_refuses_unlisted_client() {
    let as_ = setup().await;
    let (_, secret) = as_
        .add_client(
            "other-rs",
            "",
            TokenEndpointAuthMethod::ClientSecretBasic,
            &["client_credentials"],
        )
        .await;
    let t = tokens_for(&as_, &app_request(&as_), Auth::Public("app")).await;
    let r = post_form(
        &as_,
        "/oauth/introspect",
        pairs(&[("token", &t.access)]),
        Auth::Basic("other-rs", &secret.unwrap()),
    )
    .await;
    r.assert_oauth_error(401, "invalid_client");
    assert!(
        r.json.get("active").is_none(),
        "nothing about the token leaks: {}",
        r.text
    );
}

/// A public client (no secret) may not introspect, not even its own tokens,
/// and a wrong secret for the listed resource server is refused.
async fn introspection_refuses_public_client() {
    let as_ = setup().await;
    add_resource_server(&as_).await;
    let t = tokens_for(&as_, &app_request(&as_), Auth::Public("app")).await;
    let r = post_form(
        &as_,
        "/oauth/introspect",
        pairs(&[("token", &t.access)]),
        Auth::Public("app"),
    )
    .await;
    r.assert_oauth_error(401, "invalid_client");
    let r = post_form(
        &as_,
        "/oauth/introspect",
        pairs(&[("token", &t.access)]),
        Auth::Basic("resource-server", "wrong-secret-wrong-secret"),
    )
    .await;
    r.assert_oauth_error(401, "invalid_client");
    assert!(
        r.header("www-authenticate")
            .is_some_and(|h| h.starts_with("Basic"))
    );
}

/// Revoking another client's refresh token answers 200 (RFC 7009 §2.2
/// reveals nothing) but does not revoke it.
async fn revoke_by_another_client_does_nothing() {
    let as_ = setup().await;
    as_.add_public_client("intruder", "https://intruder.example.com/cb")
        .await;
    let t = tokens_for(&as_, &app_request(&as_), Auth::Public("app")).await;
    let r = post_form(
        &as_,
        "/oauth/revoke",
        pairs(&[("token", &t.refresh)]),
        Auth::Public("intruder"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = refresh(&as_, &t.refresh, Auth::Public("app")).await;
    assert_eq!(r.status, 200, "the owner's token still works: {}", r.text);
}

/// A refresh may narrow the granted scopes (and the narrowed token keeps
/// its audience), never widen them.
async fn refresh_can_narrow_scopes() {
    let as_ = setup().await;
    let t = tokens_for(&as_, &app_request(&as_), Auth::Public("app")).await;
    let form = pairs(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", &t.refresh),
        ("scope", "notes:read"),
    ]);
    let r = post_form(&as_, "/oauth/token", form, Auth::Public("app")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["scope"], "notes:read");
    let c = verify_access_token(&as_, &r.str("access_token"), &as_.resource).await;
    assert_eq!(c.scope, "notes:read");
}

/// `client_credentials` for a confidential client: a token for the
/// requested resource, whose subject is the client, with no refresh token.
async fn client_credentials_for_confidential_client() {
    let as_ = TestAs::start().await;
    let (_, secret) = as_
        .add_client(
            "svc",
            "",
            TokenEndpointAuthMethod::ClientSecretBasic,
            &["client_credentials"],
        )
        .await;
    let form = pairs(&[
        ("grant_type", "client_credentials"),
        ("scope", "notes:read"),
        ("resource", &as_.resource),
    ]);
    let r = post_form(
        &as_,
        "/oauth/token",
        form,
        Auth::Basic("svc", &secret.unwrap()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json.get("refresh_token").is_none());
    let c = verify_access_token(&as_, &r.str("access_token"), &as_.resource).await;
    assert_eq!(c.sub, "svc");
    assert_eq!(c.client_id, "svc");
    assert_eq!(c.scope, "notes:read");
}

/// A client that neither asked for `offline_access` nor registered the
/// `refresh_token` grant gets no refresh token.
async fn no_refresh_token_without_offline_access_or_grant() {
    let as_ = setup().await;
    as_.add_client(
        "once",
        CONF_REDIRECT,
        TokenEndpointAuthMethod::None,
        &["authorization_code"],
    )
    .await;
    let req = AuthRequest::new("once", CONF_REDIRECT, "notes:read", &as_.resource);
    let mut b = Browser::new();
    let code = authorize_code(&as_, &mut b, &req, USER).await;
    let r = redeem(&as_, &req, &code, Auth::Public("once")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json.get("refresh_token").is_none(), "{}", r.text);
}

/// `state` travels through the login redirect and the consent form's hidden
/// inputs; it must come back byte for byte, whatever it contains.
async fn state_with_special_characters_round_trips() {
    let as_ = setup().await;
    let mut req = app_request(&as_);
    req.state = "a&b=c d+e%2F/?#\"<x>'é&#38;".to_string();
    let code = authorize_code(&as_, &mut Browser::new(), &req, USER).await;
    assert_eq!(
        redeem(&as_, &req, &code, Auth::Public("app")).await.status,
        200
    );
}

/// After a key rotation the JWKS publishes the new and the previous key:
/// tokens signed before still verify, new ones use the new key.
async fn key_rotation_keeps_old_tokens_valid_during_grace() {
    let as_ = setup().await;
    let before = tokens_for(&as_, &app_request(&as_), Auth::Public("app")).await;
    let kid = mcpgate_authz::admin::rotate_keys(
        &as_.admin(),
        &as_.master_key,
        mcpgate_jose::KeyAlg::Es256,
        3600,
    )
    .await
    .expect("rotate");
    as_.state.reload_keys().await.expect("reload keys");
    let jwks = get(&as_, "/oauth/jwks.json").await;
    assert_eq!(
        jwks.json["keys"].as_array().map(Vec::len),
        Some(2),
        "current and previous key published"
    );
    assert_eq!(
        jwks.json["keys"][0]["kid"],
        kid.as_str(),
        "the active key comes first"
    );
    verify_access_token(&as_, &before.access, &as_.resource).await;
    let r = refresh(&as_, &before.refresh, Auth::Public("app")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let after = r.str("access_token");
    assert_eq!(
        mcpgate_jose::Verifier::peek_kid(&after).unwrap().as_deref(),
        Some(kid.as_str())
    );
    verify_access_token(&as_, &after, &as_.resource).await;
}
