//! More upstream sign-in trials against the fake provider of `idp`: a plain
//! OAuth 2.0 (GitHub-style) provider with a userinfo URL, the group
//! allowlist and groups refreshed at each sign-in, a provider's error answer, a disabled linked user, and an
//! unknown provider name.

use libtest_mimic::Trial;
use mcpgate_authz::{ProviderKind, TokenAuth};
use mcpgate_jose::Clock;
use mcpgate_testkit::Browser;
use serde_json::json;

use crate::common::*;
use crate::idp::*;

pub fn trials() -> Vec<Trial> {
    trials![
        oauth2_provider_signs_in_through_userinfo,
        group_allowlist,
        groups_from_userinfo_when_the_id_token_has_none,
        provider_error_answer_refused,
        disabled_linked_user_refused,
        unknown_provider_refused,
    ]
}

async fn oauth2_provider_signs_in_through_userinfo() {
    let idp = FakeIdp::start().await;
    let i = idp.issuer().to_string();
    let mut p = provider(&i);
    p.kind = ProviderKind::OAuth2 {
        authorization_endpoint: format!("{i}/authorize"),
        token_endpoint: format!("{i}/token"),
        userinfo_endpoint: format!("{i}/userinfo"),
    };
    p.subject_claim = "id".into();
    p.token_endpoint_auth = TokenAuth::ClientSecretPost;
    let as_ = as_with(p).await;
    let mut b = Browser::new();
    let begun = begin(&as_, &mut b, &app_request(&as_), &format!("{i}/authorize")).await;
    assert!(!begun.params.contains_key("nonce"), "no nonce without OIDC");
    idp.set_next(json!({"id": 4242, "login": "octocat", "name": "Octo Cat"}));
    // No `iss`: a plain OAuth 2.0 provider does not advertise RFC 9207.
    let back = callback(&as_, &mut b, Some(&begun.params["state"]), None).await;
    assert_eq!(back.status, 303, "{}", back.body);
    let link = as_.store.get_linked_identity("corp", "4242").await.unwrap();
    let user = as_.store.get_user(&link.user_id).await.unwrap();
    assert_eq!(user.display_name.as_deref(), Some("Octo Cat"));
    let consent = b.get(&as_.url(back.location.as_deref().unwrap())).await;
    assert!(is_consent_page(&consent), "{}", consent.body);
}

async fn group_allowlist() {
    let idp = FakeIdp::start().await;
    let mut p = provider(idp.issuer());
    p.allowed_groups = vec!["mcp-users".into()];
    let as_ = as_with(p).await;
    let auth = format!("{}/authorize", idp.issuer());
    let mut b = Browser::new();
    let begun = begin(&as_, &mut b, &app_request(&as_), &auth).await;
    let mut claims = good_claims(&as_, &idp, &begun);
    claims["groups"] = json!(["eng"]);
    idp.set_next(claims);
    let page = callback(
        &as_,
        &mut b,
        Some(&begun.params["state"]),
        Some(idp.issuer()),
    )
    .await;
    assert_refused(&as_, &b, &page, 403, "not in a group this server accepts");
    no_linked_users(&as_).await;
    let begun = begin(&as_, &mut b, &app_request(&as_), &auth).await;
    let mut claims = good_claims(&as_, &idp, &begun);
    claims["groups"] = json!(["eng", "mcp-users"]);
    idp.set_next(claims);
    let page = callback(
        &as_,
        &mut b,
        Some(&begun.params["state"]),
        Some(idp.issuer()),
    )
    .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let link = as_
        .store
        .get_linked_identity("corp", "alice-upstream-id")
        .await
        .unwrap();
    let user = as_.store.get_user(&link.user_id).await.unwrap();
    assert_eq!(user.groups, ["eng", "mcp-users"]);
    // The next sign-in brings the provider's groups of now: "eng" is gone.
    let page = sign_in_with(&as_, &idp, &mut Browser::new(), |c| {
        c["groups"] = json!(["mcp-users", "ops"]);
    })
    .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let user = as_.store.get_user(&link.user_id).await.unwrap();
    assert_eq!(user.groups, ["mcp-users", "ops"], "groups refreshed");
}

/// The ID token carries no groups: they come from the userinfo endpoint,
/// for this user only (a userinfo answer about another `sub` is refused),
/// and decide the allowlist.
async fn groups_from_userinfo_when_the_id_token_has_none() {
    let idp = FakeIdp::start().await;
    let mut p = provider(idp.issuer());
    p.allow_any_account = false;
    p.allowed_groups = vec!["mcp-users".into()];
    let as_ = as_with(p).await;
    let auth = format!("{}/authorize", idp.issuer());
    let mut b = Browser::new();
    let begun = begin(&as_, &mut b, &app_request(&as_), &auth).await;
    let claims = good_claims(&as_, &idp, &begun);
    assert!(claims.get("groups").is_none());
    let sub = claims["sub"].clone();
    idp.set_next(claims);
    idp.set_userinfo(json!({"sub": sub, "groups": ["mcp-users", "eng"]}));
    let page = callback(
        &as_,
        &mut b,
        Some(&begun.params["state"]),
        Some(idp.issuer()),
    )
    .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let link = as_
        .store
        .get_linked_identity("corp", "alice-upstream-id")
        .await
        .unwrap();
    let user = as_.store.get_user(&link.user_id).await.unwrap();
    assert_eq!(user.groups, ["mcp-users", "eng"]);
    // Userinfo about someone else is not taken.
    idp.set_userinfo(json!({"sub": "mallory", "groups": ["mcp-users"]}));
    let mut b = Browser::new();
    let page = sign_in_with(&as_, &idp, &mut b, |_| {}).await;
    assert_refused(&as_, &b, &page, 400, "");
}

async fn provider_error_answer_refused() {
    let idp = FakeIdp::start().await;
    let as_ = as_with(provider(idp.issuer())).await;
    let mut b = Browser::new();
    let begun = begin(
        &as_,
        &mut b,
        &app_request(&as_),
        &format!("{}/authorize", idp.issuer()),
    )
    .await;
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("error", "access_denied")
        .append_pair("state", &begun.params["state"])
        .append_pair("iss", idp.issuer())
        .finish();
    let page = b
        .get(&as_.url(&format!("/login/idp/corp/callback?{q}")))
        .await;
    assert_refused(&as_, &b, &page, 403, "did not sign you in");
    no_linked_users(&as_).await;
}

async fn disabled_linked_user_refused() {
    let idp = FakeIdp::start().await;
    let as_ = as_with(provider(idp.issuer())).await;
    let auth = format!("{}/authorize", idp.issuer());
    let mut b = Browser::new();
    let begun = begin(&as_, &mut b, &app_request(&as_), &auth).await;
    idp.set_next(good_claims(&as_, &idp, &begun));
    let page = callback(
        &as_,
        &mut b,
        Some(&begun.params["state"]),
        Some(idp.issuer()),
    )
    .await;
    assert_eq!(page.status, 303);
    let link = as_
        .store
        .get_linked_identity("corp", "alice-upstream-id")
        .await
        .unwrap();
    let mut user = as_.store.get_user(&link.user_id).await.unwrap();
    user.disabled = true;
    user.updated_at = as_.clock.now();
    as_.store.update_user(&user).await.unwrap();
    let mut b = Browser::new();
    let begun = begin(&as_, &mut b, &app_request(&as_), &auth).await;
    idp.set_next(good_claims(&as_, &idp, &begun));
    let page = callback(
        &as_,
        &mut b,
        Some(&begun.params["state"]),
        Some(idp.issuer()),
    )
    .await;
    assert_refused(&as_, &b, &page, 403, "disabled");
}

async fn unknown_provider_refused() {
    let idp = FakeIdp::start().await;
    let as_ = as_with(provider(idp.issuer())).await;
    let mut b = Browser::new();
    let page = b
        .post_form(&as_.url("/login/idp/nope"), &pairs(&[("csrf", "x")]))
        .await;
    assert_error_page(&page, 404);
    let page = b
        .get(&as_.url("/login/idp/nope/callback?state=x&code=y"))
        .await;
    assert_error_page(&page, 404);
}
