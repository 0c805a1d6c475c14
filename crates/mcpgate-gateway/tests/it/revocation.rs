//! Live revocation (RFC 7009 §2, OAuth 2.1 §4.1.3, refresh-token reuse):
//! every way the authorization server revokes tokens reaches access tokens
//! already issued. For each path, a token that works at the gateway (on a
//! session, so the validated-token cache answers) gets 401 within 1 s of
//! the revocation, and introspection answers `active: false`. On SQLite the
//! operator's change goes through the same store; on PostgreSQL through a
//! second store handle (its own pool, as the CLI in another process would),
//! which the gateway's store sees through NOTIFY.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mcpgate_authz::admin;
use mcpgate_store::DynStore;
use mcpgate_testkit::{AuthRequest, Browser};
use serde_json::{Value, json};

use crate::harness::*;

const CONFIG: &str = r#"
[gateway.audit]
stdout = false

[[upstream]]
name = "a"
scopes = ["notes:read"]
stdio = { command = "{bin}", args = ["testing-stdio"] }
"#;

/// A code exchange's answer and the form that made it (to replay it).
struct Granted {
    access: String,
    refresh: Option<String>,
    form: Vec<(String, String)>,
}

async fn grant(s: &Stack, user: &str, client: &str) -> Granted {
    let req = AuthRequest::new(client, REDIRECT, "notes:read", &s.resource("a"));
    let mut b = Browser::new();
    let page = b
        .authorize_as(&s.as_.issuer, &req.url(&s.as_.issuer), user)
        .await;
    let page = b.approve_if_asked(&s.as_.issuer, page).await;
    assert_eq!(page.status, 303, "authorization: {}", page.body);
    let code = page.location_params().get("code").cloned().expect("code");
    let form = req.token_form(&code);
    let (status, v) = token_request(s, &form).await;
    assert_eq!(status, 200, "token response {v}");
    Granted {
        access: v["access_token"].as_str().expect("access_token").into(),
        refresh: v["refresh_token"].as_str().map(str::to_string),
        form,
    }
}

async fn token_request(s: &Stack, form: &[(String, String)]) -> (u16, Value) {
    mcpgate_testkit::post_form(&s.http, &s.as_.url("/oauth/token"), form, None).await
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

async fn refresh(s: &Stack, client: &str, rt: &str) -> (u16, Value) {
    let form = pairs(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", rt),
        ("client_id", client),
    ]);
    token_request(s, &form).await
}

async fn introspect(s: &Stack, token: &str) -> Value {
    let (status, v) = mcpgate_testkit::post_form(
        &s.http,
        &s.as_.url("/oauth/introspect"),
        &pairs(&[("token", token)]),
        Some((CC_CLIENT, CC_SECRET)),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    v
}

/// A token in use on a session: initialized, and a cached validation.
async fn in_use(s: &Stack, token: &str) -> Mcp {
    let mut c = s.client("a", token);
    c.initialize().await;
    let list = c.rpc("tools/list", json!({})).await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(introspect(s, token).await["active"], true);
    c
}

/// After a revocation: the session's next request gets 401 within 1 s,
/// a fresh request too, and introspection says inactive.
async fn refused(s: &Stack, c: &mut Mcp, what: &str) {
    let start = Instant::now();
    loop {
        let r = c.rpc("tools/list", json!({})).await;
        if r.status == 401 {
            assert!(
                r.header("www-authenticate")
                    .is_some_and(|h| h.contains("invalid_token")),
                "{what}: {:?}",
                r.headers
            );
            break;
        }
        assert_eq!(r.status, 200, "{what}: {}", r.text);
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{what}: the token still works 1 s after its revocation"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fresh = s.client("a", c.token.as_deref().expect("token"));
    let r = fresh
        .post(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .await;
    assert_eq!(r.status, 401, "{what}: fresh request {}", r.text);
    let v = introspect(s, c.token.as_deref().expect("token")).await;
    assert_eq!(v, json!({"active": false}), "{what}: introspection");
}

/// Every revocation path, the operator's through `ops` (a store handle
/// that may be another pool on the same database).
async fn every_path(s: &Stack, ops: &DynStore) {
    let ctx = admin::Ctx {
        store: ops,
        rng: s.as_.rng.as_ref(),
        clock: &s.as_.clock,
        revocation_ttl: s.as_.state.settings().revocation_ttl(),
        vault: None,
    };
    s.as_.add_user("carol", &[]).await;
    s.as_.add_user("dave", &[]).await;
    s.as_.add_public_client("doomed", REDIRECT).await;

    // consents revoke: alice's token for `app` stops; her `other-app` one lives.
    let mut alice = in_use(s, &grant(s, "alice", "app").await.access).await;
    let mut alice_other = in_use(s, &grant(s, "alice", "other-app").await.access).await;
    admin::revoke_consent(&ctx, "alice", "app").await.unwrap();
    refused(s, &mut alice, "consents revoke").await;
    let r = alice_other.rpc("tools/list", json!({})).await;
    assert_eq!(r.status, 200, "another client's consent is untouched");
    // A new consent after the revocation gives working tokens again (the
    // entry covers tokens issued up to the second of the revocation).
    s.as_.clock.advance(1);
    in_use(s, &grant(s, "alice", "app").await.access).await;

    // users disable, then enable lifts it.
    let token = grant(s, "bob", "app").await.access;
    let mut bob = in_use(s, &token).await;
    assert!(admin::set_disabled(&ctx, "bob", true).await.unwrap());
    refused(s, &mut bob, "users disable").await;
    assert!(admin::set_disabled(&ctx, "bob", false).await.unwrap());
    let start = Instant::now();
    loop {
        let r = s.client("a", &token).post(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "it", "version": "0"}}})).await;
        if r.status == 200 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "enable lifted within 1 s: {}",
            r.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // users remove.
    let mut carol = in_use(s, &grant(s, "carol", "app").await.access).await;
    admin::remove_user(&ctx, "carol").await.unwrap();
    refused(s, &mut carol, "users remove").await;

    // clients remove.
    let mut doomed = in_use(s, &grant(s, "dave", "doomed").await.access).await;
    admin::remove_client(&ctx, "doomed").await.unwrap();
    refused(s, &mut doomed, "clients remove").await;

    // Code replay: what the code issued is revoked.
    let g = grant(s, "dave", "app").await;
    let mut dave = in_use(s, &g.access).await;
    let (status, v) = token_request(s, &g.form).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("invalid_grant")));
    refused(s, &mut dave, "code replay").await;
    let (status, _) = refresh(s, "app", g.refresh.as_deref().expect("refresh token")).await;
    assert_eq!(status, 400, "the code's refresh family is revoked too");

    // Refresh-token reuse: every access token of the family is revoked.
    let g = grant(s, "dave", "app").await;
    let rt1 = g.refresh.clone().expect("refresh token");
    let (status, v) = refresh(s, "app", &rt1).await;
    assert_eq!(status, 200, "{v}");
    let mut first = in_use(s, &g.access).await;
    let mut second = in_use(s, v["access_token"].as_str().expect("access")).await;
    // Past the reuse grace interval (inside it, a second use gets a sibling).
    s.as_.clock.advance(6);
    let (status, _) = refresh(s, "app", &rt1).await;
    assert_eq!(status, 400, "reuse refused");
    refused(s, &mut first, "refresh reuse (first token)").await;
    refused(s, &mut second, "refresh reuse (rotated token)").await;

    // RFC 7009 on an access token: only by the client it was issued to.
    let g = grant(s, "dave", "app").await;
    let mut dave = in_use(s, &g.access).await;
    let revoke = |client: &str| {
        pairs(&[
            ("token", g.access.as_str()),
            ("token_type_hint", "access_token"),
            ("client_id", client),
        ])
    };
    let url = s.as_.url("/oauth/revoke");
    let (status, _) = mcpgate_testkit::post_form(&s.http, &url, &revoke("other-app"), None).await;
    assert_eq!(status, 200, "RFC 7009 §2.2: the same answer");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let r = dave.rpc("tools/list", json!({})).await;
    assert_eq!(r.status, 200, "another client cannot revoke it: {}", r.text);
    let (status, _) = mcpgate_testkit::post_form(&s.http, &url, &revoke("app"), None).await;
    assert_eq!(status, 200);
    refused(s, &mut dave, "RFC 7009 access token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_revocation_reaches_live_tokens_sqlite() {
    let s = Stack::start(CONFIG).await;
    let store = s.as_.store.clone();
    every_path(&s, &store).await;
}

/// The same over PostgreSQL, with the operator on a second pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_revocation_reaches_live_tokens_postgres() {
    let Some(db) = mcpgate_testkit::pg::schema_or_skip("gw_revocation").await else {
        return;
    };
    let gateway_store: DynStore = Arc::new(db.connect().await);
    let operator_store: DynStore = Arc::new(db.connect().await);
    let s = Stack::start_on(CONFIG, Some(gateway_store)).await;
    every_path(&s, &operator_store).await;
    drop(s);
    db.drop_schema().await;
}

/// Until the revocation set has loaded, the guard refuses own tokens
/// (failing closed) rather than treating them as not revoked.
#[tokio::test]
async fn nothing_loaded_refuses_own_tokens() {
    use mcpgate_guard::{RevocableToken, RevocationStatus, Revocations};
    let r = mcpgate_gateway::revocation::StoreRevocations(mcpgate_store::RevocationWatch::new());
    let t = RevocableToken {
        subject: "u",
        client_id: "c",
        grant: Some("g"),
        jti: Some("j"),
        issued_at: Some(1),
    };
    assert_eq!(r.status(&t), RevocationStatus::Unknown);
    assert_eq!(r.generation(), 0);
}
