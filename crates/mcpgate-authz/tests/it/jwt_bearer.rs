//! The JWT-bearer grant at our AS (RFC 7523 §2.1): ID-JAGs from a trusted
//! enterprise identity provider (SEP-990; the fake OIDC provider of `idp`
//! signs them) and workload JWTs from a configured workload issuer (SEP-1933;
//! its keys served on 127.0.0.1:0). Every trial that refuses something first
//! shows the good assertion work, so a refusal is the rule at work.

use libtest_mimic::Trial;
use mcpgate_authz::WorkloadIssuer;
use mcpgate_jose::{Clock, KeyAlg, SigningKey};
use mcpgate_store::{LinkedIdentityRecord, UserRecord};
use mcpgate_testkit::{Options, TestAs};
use mcpgate_types::client_metadata::{JWT_BEARER_GRANT, TokenEndpointAuthMethod};
use serde_json::{Value, json};

use crate::common::*;
use crate::idp::{FakeIdp, provider};

pub fn trials() -> Vec<Trial> {
    trials![
        id_jag_gives_the_linked_user_a_token,
        id_jag_attacks_are_refused,
        id_jag_from_an_untrusted_issuer_is_refused,
        workload_jwt_gives_its_client_a_token,
        workload_attacks_are_refused,
    ]
}

const AGENT: &str = "agent";
const UPSTREAM_SUB: &str = "alice@corp";

/// An AS trusting `idp` for ID-JAGs, with a user linked to [`UPSTREAM_SUB`] there and the
/// public client [`AGENT`] allowed the JWT-bearer grant. Returns the local user id.
async fn id_jag_as(idp: &FakeIdp) -> (TestAs, String) {
    let mut p = provider(idp.issuer());
    p.id_jag = true;
    let as_ = TestAs::start_with(Options {
        tweak: Box::new(move |s| s.identity_providers.push(p)),
        ..Default::default()
    })
    .await;
    prepare(&as_).await;
    as_.add_client(
        AGENT,
        "",
        TokenEndpointAuthMethod::None,
        &[JWT_BEARER_GRANT],
    )
    .await;
    let now = as_.clock.now();
    let user = UserRecord {
        id: "u-corp-alice".into(),
        username: "corp-alice".into(),
        display_name: None,
        password_hash: None,
        groups: vec!["staff".into()],
        must_change_password: false,
        disabled: false,
        created_at: now,
        updated_at: now,
    };
    let link = LinkedIdentityRecord {
        provider: "corp".into(),
        subject: UPSTREAM_SUB.into(),
        user_id: user.id.clone(),
        email: None,
        created_at: now,
    };
    as_.store.create_linked_user(&user, &link).await.unwrap();
    (as_, user.id)
}

fn jti() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "jti-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The claims of a good ID-JAG from `idp` for [`AGENT`] at `as_`.
fn id_jag_claims(as_: &TestAs, idp: &FakeIdp) -> Value {
    let now = as_.clock.now();
    json!({
        "iss": idp.issuer(), "sub": UPSTREAM_SUB, "aud": as_.issuer,
        "client_id": AGENT, "jti": jti(), "iat": now, "exp": now + 300,
        "resource": as_.resource, "scope": "notes:read",
    })
}

async fn jwt_bearer(as_: &TestAs, assertion: &str, client: &str, extra: &[(&str, &str)]) -> Resp {
    let mut form = pairs(&[
        ("grant_type", JWT_BEARER_GRANT),
        ("assertion", assertion),
        ("client_id", client),
    ]);
    form.extend(pairs(extra));
    post_pairs(as_, "/oauth/token", &form, None).await
}

async fn id_jag_gives_the_linked_user_a_token() {
    let idp = FakeIdp::start().await;
    let (as_, user_id) = id_jag_as(&idp).await;
    let m = get(&as_, "/.well-known/oauth-authorization-server").await;
    assert!(
        m.json["grant_types_supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == JWT_BEARER_GRANT)
    );
    let jag = idp.sign("oauth-id-jag+jwt", &id_jag_claims(&as_, &idp));
    let r = jwt_bearer(&as_, &jag, AGENT, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json.get("refresh_token").is_none(), "no refresh token");
    let at = verify_access_token(&as_, &r.str("access_token"), &as_.resource).await;
    assert_eq!(
        (at.sub.as_str(), at.client_id.as_str()),
        (user_id.as_str(), AGENT)
    );
    assert_eq!(at.scope, "notes:read");
    assert_eq!(at.groups, vec!["staff".to_string()]);
}

async fn id_jag_attacks_are_refused() {
    let idp = FakeIdp::start().await;
    let (as_, _) = id_jag_as(&idp).await;
    let good = id_jag_claims(&as_, &idp);
    let now = as_.clock.now();
    // Replayed: works once.
    let jag = idp.sign("oauth-id-jag+jwt", &good);
    assert_eq!(jwt_bearer(&as_, &jag, AGENT, &[]).await.status, 200);
    jwt_bearer(&as_, &jag, AGENT, &[])
        .await
        .assert_oauth_error(400, "invalid_grant");
    // Claims that do not hold.
    let bad = |edit: &dyn Fn(&mut Value)| {
        let mut c = id_jag_claims(&as_, &idp);
        edit(&mut c);
        idp.sign("oauth-id-jag+jwt", &c)
    };
    let cases = [
        (
            "for another client",
            bad(&|c| c["client_id"] = json!("app")),
        ),
        (
            "for the token endpoint",
            bad(&|c| c["aud"] = json!(as_.url("/oauth/token"))),
        ),
        (
            "for another AS",
            bad(&|c| c["aud"] = json!("https://other-as.example")),
        ),
        (
            "expired",
            bad(&|c| {
                c["iat"] = json!(now - 400);
                c["exp"] = json!(now - 100);
            }),
        ),
        ("living an hour", bad(&|c| c["exp"] = json!(now + 3600))),
        (
            "without jti",
            bad(&|c| {
                c.as_object_mut().unwrap().remove("jti");
            }),
        ),
        (
            "for a user nobody linked",
            bad(&|c| c["sub"] = json!("mallory@corp")),
        ),
        (
            "as a plain JWT",
            idp.sign("JWT", &id_jag_claims(&as_, &idp)),
        ),
    ];
    for (what, jag) in cases {
        let r = jwt_bearer(&as_, &jag, AGENT, &[]).await;
        r.assert_oauth_error(400, "invalid_grant");
        assert!(
            r.json["error_description"].is_string(),
            "{what}: {}",
            r.text
        );
    }
    // Signed by another key under the provider's kid: a forgery.
    let forger = SigningKey::generate("idp-key-1", KeyAlg::Es256).unwrap();
    let forged = forger
        .sign("oauth-id-jag+jwt", &id_jag_claims(&as_, &idp))
        .unwrap();
    jwt_bearer(&as_, &forged, AGENT, &[])
        .await
        .assert_oauth_error(400, "invalid_grant");
    // Scopes or a resource beyond the grant.
    let jag = idp.sign("oauth-id-jag+jwt", &id_jag_claims(&as_, &idp));
    let r = jwt_bearer(&as_, &jag, AGENT, &[("scope", "notes:read notes:write")]).await;
    r.assert_oauth_error(400, "invalid_scope");
    let jag = idp.sign("oauth-id-jag+jwt", &id_jag_claims(&as_, &idp));
    let r = jwt_bearer(
        &as_,
        &jag,
        AGENT,
        &[("resource", "https://elsewhere.example/mcp")],
    )
    .await;
    r.assert_oauth_error(400, "invalid_target");
    // A client not allowed the grant, presenting an ID-JAG issued to it.
    let jag = bad(&|c| c["client_id"] = json!("app"));
    let r = jwt_bearer(&as_, &jag, "app", &[]).await;
    r.assert_oauth_error(400, "unauthorized_client");
}

async fn id_jag_from_an_untrusted_issuer_is_refused() {
    let trusted = FakeIdp::start().await;
    let (as_, _) = id_jag_as(&trusted).await;
    // Another provider nobody configured, signing a perfect ID-JAG.
    let stranger = FakeIdp::start().await;
    let mut c = id_jag_claims(&as_, &stranger);
    c["iss"] = json!(stranger.issuer());
    let r = jwt_bearer(&as_, &stranger.sign("oauth-id-jag+jwt", &c), AGENT, &[]).await;
    r.assert_oauth_error(400, "invalid_grant");
    assert!(r.text.contains("not trusted"), "{}", r.text);
    // The stranger's key under the trusted issuer's name: the signature fails.
    let mut c = id_jag_claims(&as_, &trusted);
    c["jti"] = json!(jti());
    let r = jwt_bearer(&as_, &stranger.sign("oauth-id-jag+jwt", &c), AGENT, &[]).await;
    r.assert_oauth_error(400, "invalid_grant");
    // A provider configured for sign-in only (no id_jag) is not trusted for ID-JAGs.
    let signin_only = FakeIdp::start().await;
    let as2 = TestAs::start_with(Options {
        tweak: Box::new({
            let p = provider(signin_only.issuer());
            move |s| s.identity_providers.push(p)
        }),
        ..Default::default()
    })
    .await;
    as2.add_client(
        AGENT,
        "",
        TokenEndpointAuthMethod::None,
        &[JWT_BEARER_GRANT],
    )
    .await;
    let c = id_jag_claims(&as2, &signin_only);
    let r = jwt_bearer(&as2, &signin_only.sign("oauth-id-jag+jwt", &c), AGENT, &[]).await;
    r.assert_oauth_error(400, "invalid_grant");
}

const WL_ISSUER: &str = "https://workloads.example";
const WL_SUB: &str = "spiffe://prod/ns/app/sa/agent";
const WL_CLIENT: &str = "wl-agent";

/// An AS trusting a workload issuer whose keys `doc` serves, mapping [`WL_SUB`] to
/// [`WL_CLIENT`] (public, allowed the grant) and `spiffe://prod/other` to "app".
async fn workload_as(key: &SigningKey) -> (TestAs, DocServer) {
    let jwks = json!({"keys": [key.public_jwk()]});
    let doc = DocServer::start(|_| jwks, None).await;
    let w = WorkloadIssuer {
        issuer: WL_ISSUER.into(),
        jwks_uri: doc.client_id.clone(),
        subjects: [
            (WL_SUB.to_string(), WL_CLIENT.to_string()),
            ("spiffe://prod/other".to_string(), "app".to_string()),
        ]
        .into(),
    };
    let as_ = TestAs::start_with(Options {
        tweak: Box::new(move |s| s.workload_issuers.push(w)),
        ..Default::default()
    })
    .await;
    prepare(&as_).await;
    as_.add_client(
        WL_CLIENT,
        "",
        TokenEndpointAuthMethod::None,
        &[JWT_BEARER_GRANT],
    )
    .await;
    (as_, doc)
}

fn workload_claims(as_: &TestAs) -> Value {
    let now = as_.clock.now();
    json!({"iss": WL_ISSUER, "sub": WL_SUB, "aud": as_.issuer, "iat": now, "exp": now + 600,
        "jti": jti()})
}

async fn workload_jwt_gives_its_client_a_token() {
    let key = SigningKey::generate("wl-1", KeyAlg::Es256).unwrap();
    let (as_, _doc) = workload_as(&key).await;
    let jwt = key.sign("JWT", &workload_claims(&as_)).unwrap();
    let resource = as_.resource.clone();
    let r = jwt_bearer(
        &as_,
        &jwt,
        WL_CLIENT,
        &[("resource", &resource), ("scope", "notes:read")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let at = verify_access_token(&as_, &r.str("access_token"), &as_.resource).await;
    assert_eq!(
        (at.sub.as_str(), at.client_id.as_str()),
        (WL_CLIENT, WL_CLIENT)
    );
}

async fn workload_attacks_are_refused() {
    let key = SigningKey::generate("wl-1", KeyAlg::Es256).unwrap();
    let (as_, _doc) = workload_as(&key).await;
    let resource = as_.resource.clone();
    let send = |jwt: String, client: &'static str| {
        let as_ = &as_;
        let resource = resource.clone();
        async move { jwt_bearer(as_, &jwt, client, &[("resource", &resource)]).await }
    };
    let good = workload_claims(&as_);
    let jwt = key.sign("JWT", &good).unwrap();
    assert_eq!(send(jwt.clone(), WL_CLIENT).await.status, 200);
    send(jwt, WL_CLIENT)
        .await
        .assert_oauth_error(400, "invalid_grant");
    let now = as_.clock.now();
    let bad = |edit: &dyn Fn(&mut Value)| {
        let mut c = workload_claims(&as_);
        edit(&mut c);
        key.sign("JWT", &c).unwrap()
    };
    for (what, jwt) in [
        (
            "an unmapped workload",
            bad(&|c| c["sub"] = json!("spiffe://prod/ns/evil")),
        ),
        (
            "another client's workload",
            bad(&|c| c["sub"] = json!("spiffe://prod/other")),
        ),
        (
            "for another audience",
            bad(&|c| c["aud"] = json!("https://other-as.example")),
        ),
        (
            "expired",
            bad(&|c| {
                c["iat"] = json!(now - 700);
                c["exp"] = json!(now - 100);
            }),
        ),
        ("living a day", bad(&|c| c["exp"] = json!(now + 86_400))),
    ] {
        let r = send(jwt, WL_CLIENT).await;
        assert_eq!(r.error(), "invalid_grant", "{what}: {}", r.text);
    }
    let stranger = SigningKey::generate("wl-1", KeyAlg::Es256).unwrap();
    let forged = stranger.sign("JWT", &workload_claims(&as_)).unwrap();
    send(forged, WL_CLIENT)
        .await
        .assert_oauth_error(400, "invalid_grant");
}
