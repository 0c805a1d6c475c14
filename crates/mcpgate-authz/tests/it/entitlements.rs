//! Entitlements (`grantable_to`): consent is not entitlement. A user who is
//! not named by a scope's rule (by id or username, or through a group) is
//! never granted it, by whatever route: the consent page does not offer
//! it, approving a wider request grants only the entitled part, a request
//! with nothing left is `access_denied`, a refresh drops what the user lost,
//! and `client_credentials` needs a rule naming the client.

use libtest_mimic::Trial;
use mcpgate_authz::Grantees;
use mcpgate_testkit::{AuthRequest, Browser, Options, TestAs};
use mcpgate_types::client_metadata::TokenEndpointAuthMethod;

use crate::common::*;

pub fn trials() -> Vec<Trial> {
    trials![
        the_consent_page_offers_only_grantable_scopes,
        nothing_grantable_is_access_denied,
        named_users_and_group_members_get_the_scope,
        a_resource_rule_replaces_the_scope_rule,
        a_refresh_withholds_a_scope_the_user_lost,
        client_credentials_need_a_rule_naming_the_client,
        closed_by_default_grants_only_what_a_rule_names,
    ]
}

/// `notes:admin` for the group `admins` and the user `bob`; `svc-admin`
/// may hold it through `client_credentials`.
fn admin_rule() -> Grantees {
    Grantees {
        users: vec!["bob".into()],
        groups: vec!["admins".into()],
        clients: vec!["svc-admin".into()],
    }
}

async fn server(tweak: impl FnOnce(&mut mcpgate_authz::AuthzSettings) + Send + 'static) -> TestAs {
    let as_ = TestAs::start_with(Options {
        store: None,
        tweak: Box::new(tweak),
        ..Default::default()
    })
    .await;
    prepare(&as_).await;
    as_
}

async fn ruled() -> TestAs {
    server(|s| {
        let admin = s.scopes.iter_mut().find(|d| d.name == "notes:admin");
        admin.expect("notes:admin").grantable_to = Some(admin_rule());
    })
    .await
}

/// Signs in as `user`, approves, redeems: the granted scope string.
async fn granted(as_: &TestAs, user: &str, scope: &str, resource: &str) -> String {
    let req = AuthRequest::new("app", REDIRECT, scope, resource);
    let code = authorize_code(as_, &mut Browser::new(), &req, user).await;
    let r = redeem(as_, &req, &code, Auth::Public("app")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let c = verify_access_token(as_, &r.str("access_token"), resource).await;
    assert_eq!(
        c.scope,
        r.str("scope"),
        "the token holds what the response says"
    );
    c.scope
}

async fn the_consent_page_offers_only_grantable_scopes() {
    let as_ = ruled().await;
    let req = AuthRequest::new("app", REDIRECT, "notes:read notes:admin", &as_.resource);
    let mut b = Browser::new();
    let page = b
        .authorize_as(&as_.issuer, &req.url(&as_.issuer), USER)
        .await;
    assert!(is_consent_page(&page), "{}", page.body);
    assert!(page.body.contains("Read your notes"));
    assert!(
        !page.body.contains("Delete notes"),
        "a scope the user may not hold is not offered"
    );
    // Approving the form of the wider request grants the entitled part only.
    let page = b.decide(&as_.issuer, &page, "approve").await;
    let code = code_from(&as_, &req, &page);
    let r = redeem(&as_, &req, &code, Auth::Public("app")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["scope"], "notes:read");
    let user = as_.store.get_user_by_username(USER).await.unwrap();
    let consent = as_.store.get_consent(&user.id, "app").await.unwrap();
    assert_eq!(
        consent.scopes,
        ["notes:read"],
        "only the entitled part is recorded"
    );
}

async fn nothing_grantable_is_access_denied() {
    let as_ = ruled().await;
    let req = AuthRequest::new("app", REDIRECT, "notes:admin", &as_.resource);
    let page = Browser::new()
        .authorize_as(&as_.issuer, &req.url(&as_.issuer), USER)
        .await;
    assert_error_redirect(&as_, &req, &page, "access_denied");
    let desc = page
        .location_params()
        .remove("error_description")
        .unwrap_or_default();
    assert!(
        desc.contains("notes:admin"),
        "the description names the scope: {desc}"
    );
}

async fn named_users_and_group_members_get_the_scope() {
    let as_ = ruled().await;
    as_.add_user("bob", &[]).await;
    as_.add_user("carol", &["admins"]).await;
    let want = "notes:admin notes:read";
    assert_eq!(granted(&as_, "bob", want, &as_.resource).await, want);
    assert_eq!(granted(&as_, "carol", want, &as_.resource).await, want);
    assert_eq!(granted(&as_, USER, want, &as_.resource).await, "notes:read");
}

async fn a_resource_rule_replaces_the_scope_rule() {
    let as_ = server(|s| {
        let admin = s.scopes.iter_mut().find(|d| d.name == "notes:admin");
        admin.expect("notes:admin").grantable_to = Some(admin_rule());
        let other = format!("{}/mcp/other", s.issuer);
        let r = s.resources.iter_mut().find(|r| r.uri == other);
        r.expect("other resource").grantable_to = vec![(
            "notes:admin".into(),
            Grantees {
                groups: vec!["staff".into()],
                ..Default::default()
            },
        )];
    })
    .await;
    let want = "notes:admin notes:read";
    // alice is staff: notes:admin on the other resource, not on notes.
    assert_eq!(granted(&as_, USER, want, &as_.other_resource).await, want);
    assert_eq!(granted(&as_, USER, want, &as_.resource).await, "notes:read");
}

async fn a_refresh_withholds_a_scope_the_user_lost() {
    let as_ = ruled().await;
    let mut carol = as_.add_user("carol", &["admins"]).await;
    let req = AuthRequest::new(
        "app",
        REDIRECT,
        "notes:read notes:admin offline_access",
        &as_.resource,
    );
    let code = authorize_code(&as_, &mut Browser::new(), &req, "carol").await;
    let r = redeem(&as_, &req, &code, Auth::Public("app")).await;
    assert_eq!(r.json["scope"], "notes:admin notes:read offline_access");
    // carol leaves the admins group.
    carol.groups.clear();
    as_.store.update_user(&carol).await.unwrap();
    let r = refresh(&as_, &r.str("refresh_token"), Auth::Public("app")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["scope"], "notes:read offline_access");
    let c = verify_access_token(&as_, &r.str("access_token"), &as_.resource).await;
    assert_eq!(c.scope, "notes:read offline_access");
    // Asking for it back on the next refresh is not a way in either.
    let form = pairs(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", &r.str("refresh_token")),
        ("scope", "notes:admin"),
    ]);
    let r = post_form(&as_, "/oauth/token", form, Auth::Public("app")).await;
    r.assert_oauth_error(400, "invalid_scope");
}

async fn client_credentials_need_a_rule_naming_the_client() {
    let as_ = ruled().await;
    let mut secrets = Vec::new();
    for id in ["svc", "svc-admin"] {
        let (_, s) = as_
            .add_client(
                id,
                "",
                TokenEndpointAuthMethod::ClientSecretBasic,
                &["client_credentials"],
            )
            .await;
        secrets.push(s.expect("secret"));
    }
    let ask = |scope: &'static str| {
        pairs(&[
            ("grant_type", "client_credentials"),
            ("scope", scope),
            ("resource", &as_.resource),
        ])
    };
    let r = post_form(
        &as_,
        "/oauth/token",
        ask("notes:admin"),
        Auth::Basic("svc", &secrets[0]),
    )
    .await;
    r.assert_oauth_error(400, "invalid_scope");
    let r = post_form(
        &as_,
        "/oauth/token",
        ask("notes:read notes:admin"),
        Auth::Basic("svc", &secrets[0]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["scope"], "notes:read");
    let r = post_form(
        &as_,
        "/oauth/token",
        ask("notes:admin"),
        Auth::Basic("svc-admin", &secrets[1]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["scope"], "notes:admin");
}

async fn closed_by_default_grants_only_what_a_rule_names() {
    let as_ = server(|s| {
        s.grantable_by_default = false;
        let read = s.scopes.iter_mut().find(|d| d.name == "notes:read");
        read.expect("notes:read").grantable_to = Some(Grantees {
            groups: vec!["staff".into()],
            ..Default::default()
        });
    })
    .await;
    let got = granted(&as_, USER, "notes:read notes:write", &as_.resource).await;
    assert_eq!(
        got, "notes:read",
        "notes:write has no rule and the default is closed"
    );
}
