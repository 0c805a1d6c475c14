//! `auth = { type = "user_oauth" }`: each user's own account at an upstream
//! that has its own authorization server. The third party here is a second,
//! independent mcpgate authorization server (real code flow, PKCE, consent,
//! refresh, RFC 7009), with its own users; the upstream is the HTTP testing
//! fixture, which reports the headers that reached it.
//!
//! Shown: a user without a connected account gets the URL-elicitation-required
//! error; the connect page needs that same user signed in; the tokens that
//! reach the upstream are that user's own third-party tokens for the
//! upstream's audience (never the MCP token); two users, two identities;
//! refresh, unlink (revoked at the third party) and mcpgate-side revocation.
//! Attacks: another user or nobody opening a connect link, a tampered link,
//! a replayed or swapped `state`, another browser's callback, a third-party
//! code injected into another user's flow.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use mcpgate_authz::ResourceDef;
use mcpgate_authz::admin::{self, ClientSpec};
use mcpgate_testkit::{Browser, Options, Page, TestAs};
use mcpgate_types::client_metadata::TokenEndpointAuthMethod;
use serde_json::{Value, json};

use crate::harness::{Mcp, Resp, Stack};

const GW_CLIENT: &str = "mcpgate-gateway";
const GW_SECRET: &str = "gateway-at-upstream-secret-0123456789";

struct World {
    /// The third party's authorization server ("Upstream Co").
    tp: TestAs,
    s: Stack,
    upstream: mcpgate_upstreams::TestingHttpHandle,
    /// With [`world_behind_refuser`]: the bearer tokens the upstream answers 401 to.
    refused: Refused,
    /// The upstream's URL as the gateway knows it: the third party's audience.
    audience: String,
}

type Refused = Arc<Mutex<HashSet<String>>>;

async fn world() -> World {
    world_with(false).await
}

/// The upstream behind a proxy that answers 401 to the tokens in
/// [`World::refused`] (revoked or expired early at the third party) and
/// forwards everything else.
async fn world_behind_refuser() -> World {
    world_with(true).await
}

/// Forwards to `target` unless the request's bearer token is refused.
async fn refuser(target: String, refused: Refused) -> String {
    use axum::response::IntoResponse;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let handler = move |req: axum::extract::Request| {
        let (http, target, refused) = (http.clone(), target.clone(), refused.clone());
        async move {
            let auth = req
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("")
                .to_string();
            if refused.lock().unwrap().contains(&auth) {
                return (
                    http::StatusCode::UNAUTHORIZED,
                    [(
                        http::header::WWW_AUTHENTICATE,
                        "Bearer error=\"invalid_token\"",
                    )],
                )
                    .into_response();
            }
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            let mut out = http.request(parts.method, &target).body(body);
            for (k, v) in &parts.headers {
                if k != http::header::HOST && k != http::header::CONTENT_LENGTH {
                    out = out.header(k, v);
                }
            }
            let resp = out.send().await.unwrap();
            let mut answer = axum::response::Response::builder().status(resp.status());
            for (k, v) in resp.headers() {
                if k != http::header::TRANSFER_ENCODING && k != http::header::CONTENT_LENGTH {
                    answer = answer.header(k, v);
                }
            }
            answer
                .body(axum::body::Body::from(resp.bytes().await.unwrap()))
                .unwrap()
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, axum::Router::new().fallback(handler))
            .await
            .ok();
    });
    format!("http://{addr}/mcp")
}

async fn world_with(refusing: bool) -> World {
    let (_, upstream) = mcpgate_upstreams::serve_testing_http()
        .await
        .expect("testing upstream");
    let refused = Refused::default();
    let up_url = if refusing {
        refuser(upstream.url(), refused.clone()).await
    } else {
        upstream.url()
    };
    let audience = up_url.clone();
    let tp = TestAs::start_with(Options {
        tweak: Box::new(move |s| {
            s.resources = vec![ResourceDef::new(audience, "Upstream Co MCP")];
        }),
        ..Default::default()
    })
    .await;
    tp.add_user("alice-at-up", &[]).await;
    tp.add_user("bob-at-up", &[]).await;
    let config = format!(
        r#"
[gateway]
dev_allow_http_loopback_token_url = true
[gateway.audit]
stdout = false

[[upstream]]
name = "up"
title = "Upstream Co"
http = {{ url = "{up_url}" }}
auth = {{ type = "user_oauth", issuer = "{tp}", client_id = "{GW_CLIENT}", client_secret = "{GW_SECRET}", scopes = ["notes:read", "offline_access"], resource = "{up_url}" }}
"#,
        tp = tp.issuer
    );
    let s = Stack::start(&config).await;
    // The gateway's registration at the third party names its callback.
    let spec = ClientSpec {
        client_id: Some(GW_CLIENT.into()),
        name: "mcpgate gateway".into(),
        redirect_uris: vec![format!("{}/connect/up/callback", s.as_.issuer)],
        auth_method: TokenEndpointAuthMethod::ClientSecretBasic,
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        scopes: vec![],
        secret: Some(GW_SECRET.into()),
        jwks: None,
        jwks_uri: None,
    };
    admin::create_client(&tp.admin(), &spec, false)
        .await
        .expect("gateway client at the third party");
    World {
        tp,
        s,
        upstream,
        refused,
        audience: up_url,
    }
}

/// `name`'s id at the third party.
async fn tp_user_id(w: &World, name: &str) -> String {
    w.tp.store.get_user_by_username(name).await.unwrap().id
}

/// The vaulted grants of our user `name`.
async fn grants(w: &World, name: &str) -> Vec<mcpgate_store::UpstreamGrantRecord> {
    let id = w.s.as_.store.get_user_by_username(name).await.unwrap().id;
    w.s.as_.store.list_upstream_grants(&id).await.unwrap()
}

/// Our `user` with their account connected as `tp_user` (through the
/// URL-elicitation error of a first request): their MCP token, and the
/// browser they connected with (signed in here).
async fn connected_user(w: &World, user: &str, tp_user: &str) -> (String, Browser) {
    let token = w.s.token(user, "notes:read", "up").await;
    let mut c = w.s.client("up", &token);
    let url = elicitation_url(&initialize(&mut c).await, &w.s.as_.issuer);
    let mut b = Browser::new();
    let done = connect(w, &mut b, &url, user, tp_user).await;
    assert!(done.body.contains("is connected"), "{}", done.body);
    (token, b)
}

/// `initialize` without the helper's assertions.
async fn initialize(c: &mut Mcp) -> Resp {
    let r = c
        .rpc(
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {"elicitation": {"url": {}}}, "clientInfo": {"name": "it", "version": "0"}}),
        )
        .await;
    c.session = r.header("mcp-session-id").map(str::to_string);
    r
}

/// The connect URL of a URL-elicitation-required answer (after checking
/// its shape).
fn elicitation_url(r: &Resp, issuer: &str) -> String {
    assert_eq!(r.status, 200, "{}", r.text);
    let m = r.response();
    assert_eq!(m["error"]["code"], -32042, "{m}");
    let e = &m["error"]["data"]["elicitations"][0];
    assert_eq!(e["mode"], "url", "{m}");
    let url = e["url"].as_str().expect("url").to_string();
    let id = e["elicitationId"].as_str().expect("elicitationId");
    assert_eq!(url, format!("{issuer}/connect/up?elicitation={id}"));
    assert!(
        e["message"].as_str().unwrap().contains("Upstream Co"),
        "{m}"
    );
    url
}

/// Signs in at `issuer` if the page sends there, then returns the page
/// that follows.
async fn signed_in(b: &mut Browser, issuer: &str, url: &str, user: &str) -> Page {
    b.authorize_as(issuer, url, user).await
}

/// On the connect page: clicks Continue; returns the redirect to the third
/// party's authorization endpoint.
async fn continue_to_third_party(b: &mut Browser, issuer: &str, page: &Page) -> String {
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("data-step=\"connect\""), "{}", page.body);
    let after = b
        .post_form(&format!("{issuer}/connect/up"), &page.hidden_inputs())
        .await;
    assert_eq!(after.status, 303, "{}", after.body);
    after.location.clone().expect("to the third party")
}

/// At the third party: signs in as `user` and approves; returns the
/// callback URL (to our AS) with code, state and iss.
async fn third_party_approves(tp: &TestAs, authorize_url: &str, user: &str) -> String {
    let mut b = Browser::new();
    let page = b.authorize_as(&tp.issuer, authorize_url, user).await;
    let page = b.approve_if_asked(&tp.issuer, page).await;
    assert_eq!(page.status, 303, "{}", page.body);
    page.location.clone().expect("callback")
}

/// The whole connect flow for `user` (ours) as `tp_user` (theirs), from the
/// elicitation URL; returns the final page.
async fn connect(w: &World, b: &mut Browser, url: &str, user: &str, tp_user: &str) -> Page {
    let page = signed_in(b, &w.s.as_.issuer, url, user).await;
    let to_tp = continue_to_third_party(b, &w.s.as_.issuer, &page).await;
    assert!(
        to_tp.starts_with(&format!("{}/oauth/authorize?", w.tp.issuer)),
        "{to_tp}"
    );
    assert!(to_tp.contains("code_challenge_method=S256"), "{to_tp}");
    let back = third_party_approves(&w.tp, &to_tp, tp_user).await;
    b.get(&back).await
}

/// The bearer token the upstream saw on its last request.
fn last_upstream_token(w: &World) -> String {
    let all = w.upstream.recorded_headers().all();
    let last = all.last().expect("a request reached the upstream");
    let auth = last
        .header("authorization")
        .expect("an Authorization header");
    auth.strip_prefix("Bearer ").expect("bearer").to_string()
}

/// A token of the third party for the upstream's audience, and its subject.
fn third_party_subject(w: &World, token: &str) -> String {
    let v =
        w.tp.state
            .current_verifier()
            .verify::<Value>(
                token,
                &mcpgate_jose::VerifyOptions {
                    issuer: &w.tp.issuer,
                    audience: Some(&w.audience),
                    typ: None,
                    now: mcpgate_jose::Clock::now(&w.tp.clock),
                    leeway: 0,
                },
            )
            .expect("a valid third-party token for the upstream");
    v.claims["sub"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn each_user_connects_their_own_account_and_only_they_can() {
    let w = world().await;
    let issuer = w.s.as_.issuer.clone();
    let alice_token = w.s.token("alice", "notes:read", "up").await;
    let mut alice = w.s.client("up", &alice_token);

    // 1. Not connected: the URL-elicitation-required error; nothing reached the upstream.
    let r = initialize(&mut alice).await;
    let url = elicitation_url(&r, &issuer);
    assert!(w.upstream.recorded_headers().is_empty());
    assert!(
        !url.contains(&alice_token) && !url.contains("alice"),
        "{url}"
    );

    // 2. Attacks on the link before alice uses it.
    //    Nobody signed in: the login page, nothing else.
    let mut nobody = Browser::new();
    let p = nobody.get(&url).await;
    assert_eq!(p.status, 303);
    assert!(
        p.location
            .as_deref()
            .unwrap()
            .starts_with("/login?return_to="),
        "{:?}",
        p.location
    );
    //    Bob signed in: refused, and no form to continue.
    let mut bob_b = Browser::new();
    let p = signed_in(&mut bob_b, &issuer, &url, "bob").await;
    assert_eq!(p.status, 403, "{}", p.body);
    assert!(!p.body.contains("data-step=\"connect\""));
    //    A tampered id: refused.
    let mut tampered = url.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let mut alice_b = Browser::new();
    let p = signed_in(&mut alice_b, &issuer, &tampered, "alice").await;
    assert_eq!(p.status, 400, "{}", p.body);

    // 3. Alice connects as alice-at-up.
    let done = connect(&w, &mut alice_b, &url, "alice", "alice-at-up").await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("is connected"), "{}", done.body);
    assert!(alice_b.cookie("__Host-mcpgate-connect").is_none());

    // 4. Now the call goes through, with alice's own token at the upstream.
    let r = initialize(&mut alice).await;
    assert!(r.response()["result"].is_object(), "{}", r.text);
    let n = alice.notify("notifications/initialized").await;
    assert_eq!(n.status, 202);
    let r = alice.call("echo", json!({"text": "hi"})).await;
    assert!(r.response()["result"].is_object(), "{}", r.text);
    let seen = last_upstream_token(&w);
    assert_ne!(
        seen, alice_token,
        "the MCP token must never reach the upstream"
    );
    let alice_up = tp_user_id(&w, "alice-at-up").await;
    assert_eq!(third_party_subject(&w, &seen), alice_up);
    assert!(w.upstream.recorded_headers().all().iter().all(|r| {
        !r.header("authorization")
            .unwrap_or("")
            .contains(&alice_token)
    }));

    // 5. Bob is not connected; he connects as bob-at-up: another identity.
    let bob_token = w.s.token("bob", "notes:read", "up").await;
    let mut bob = w.s.client("up", &bob_token);
    let r = initialize(&mut bob).await;
    let bob_url = elicitation_url(&r, &issuer);
    assert_ne!(bob_url, url);
    let done = connect(&w, &mut bob_b, &bob_url, "bob", "bob-at-up").await;
    assert_eq!(done.status, 200, "{}", done.body);
    let r = initialize(&mut bob).await;
    assert!(r.response()["result"].is_object(), "{}", r.text);
    bob.notify("notifications/initialized").await;
    bob.call("echo", json!({"text": "hi"})).await;
    let bob_up = tp_user_id(&w, "bob-at-up").await;
    assert_eq!(third_party_subject(&w, &last_upstream_token(&w)), bob_up);
    assert_ne!(alice_up, bob_up);

    // 6. The vault holds sealed bytes only: neither token appears in the store rows.
    for user in ["alice", "bob"] {
        let rows = grants(&w, user).await;
        assert_eq!(rows.len(), 1);
        let raw = String::from_utf8_lossy(&rows[0].sealed_tokens).to_string();
        assert!(!raw.contains("eyJ"), "a token in the clear: {raw}");
    }
}

#[tokio::test]
async fn a_state_works_once_in_the_browser_and_for_the_user_that_started_it() {
    let w = world().await;
    let issuer = w.s.as_.issuer.clone();
    let alice_token = w.s.token("alice", "notes:read", "up").await;
    let mut alice = w.s.client("up", &alice_token);
    let url = elicitation_url(&initialize(&mut alice).await, &issuer);

    // Alice starts and the third party answers; the answer is then sent...
    let mut alice_b = Browser::new();
    let page = signed_in(&mut alice_b, &issuer, &url, "alice").await;
    let to_tp = continue_to_third_party(&mut alice_b, &issuer, &page).await;
    let back = third_party_approves(&w.tp, &to_tp, "alice-at-up").await;

    // ...to a browser that did not start it (no binding cookie): refused.
    let mut bob_b = Browser::new();
    let p = signed_in(
        &mut bob_b,
        &issuer,
        &format!("{issuer}/account/connections"),
        "bob",
    )
    .await;
    assert_eq!(p.status, 200, "{}", p.body);
    let p = bob_b.get(&back).await;
    assert_eq!(p.status, 400, "{}", p.body);

    // ...with alice's binding cookie copied, but bob signed in: refused (a code
    // injected into another user's flow), and the state is spent.
    let binding = alice_b
        .cookie("__Host-mcpgate-connect")
        .unwrap()
        .to_string();
    bob_b.set_cookie("__Host-mcpgate-connect", &binding);
    let p = bob_b.get(&back).await;
    assert_eq!(p.status, 403, "{}", p.body);
    let p = alice_b.get(&back).await;
    assert_eq!(p.status, 400, "a spent state: {}", p.body);
    for user in ["alice", "bob"] {
        assert!(grants(&w, user).await.is_empty());
    }

    // A state swapped for another flow's: each state needs its own cookie.
    let page = signed_in(&mut alice_b, &issuer, &url, "alice").await;
    let first = continue_to_third_party(&mut alice_b, &issuer, &page).await;
    let page = alice_b.get(&url).await;
    continue_to_third_party(&mut alice_b, &issuer, &page).await;
    let back_first = third_party_approves(&w.tp, &first, "alice-at-up").await;
    // The cookie now binds the second flow: the first flow's answer is refused.
    let p = alice_b.get(&back_first).await;
    assert_eq!(p.status, 400, "{}", p.body);

    // A forged answer without a state, or with an unknown one.
    let p = alice_b
        .get(&format!("{issuer}/connect/up/callback?code=x"))
        .await;
    assert_eq!(p.status, 400);
    let p = alice_b
        .get(&format!(
            "{issuer}/connect/up/callback?code=x&state=made-up"
        ))
        .await;
    assert_eq!(p.status, 400);
    // A repeated parameter.
    let p = alice_b
        .get(&format!("{issuer}/connect/up/callback?state=a&state=b"))
        .await;
    assert_eq!(p.status, 400);
    // A connect form replayed: answered once.
    let page = alice_b.get(&url).await;
    let form = page.hidden_inputs();
    let first = alice_b
        .post_form(&format!("{issuer}/connect/up"), &form)
        .await;
    assert_eq!(first.status, 303);
    let again = alice_b
        .post_form(&format!("{issuer}/connect/up"), &form)
        .await;
    assert_eq!(again.status, 409, "{}", again.body);
    // A form shown to alice, posted from bob's session: refused.
    let page = alice_b.get(&url).await;
    let p = bob_b
        .post_form(&format!("{issuer}/connect/up"), &page.hidden_inputs())
        .await;
    assert_eq!(p.status, 403, "{}", p.body);
}

#[tokio::test]
async fn refresh_unlink_and_revocation() {
    let w = world().await;
    let issuer = w.s.as_.issuer.clone();
    let (alice_token, mut alice_b) = connected_user(&w, "alice", "alice-at-up").await;
    let mut alice = w.s.client("up", &alice_token);
    let r = initialize(&mut alice).await;
    assert!(r.response()["result"].is_object(), "{}", r.text);
    alice.notify("notifications/initialized").await;
    alice.call("echo", json!({"text": "1"})).await;
    let first = last_upstream_token(&w);

    // Refresh: the vault's clock passes the access token's expiry; the next
    // call refreshes at the third party first (one refresh, a new token).
    w.s.as_.clock.advance(3600);
    let alice_token = w.s.token("alice", "notes:read", "up").await;
    let mut alice = w.s.client("up", &alice_token);
    let r = initialize(&mut alice).await;
    assert!(r.response()["result"].is_object(), "{}", r.text);
    alice.notify("notifications/initialized").await;
    alice.call("echo", json!({"text": "2"})).await;
    let second = last_upstream_token(&w);
    assert_ne!(first, second, "a refreshed token");
    let alice_up = tp_user_id(&w, "alice-at-up").await;
    assert_eq!(third_party_subject(&w, &second), alice_up);

    // The connected-accounts page lists it; disconnecting deletes the grant
    // and revokes it at the third party (RFC 7009).
    let p = alice_b.get(&format!("{issuer}/account/connections")).await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(
        p.body.contains("Upstream Co") && p.body.contains("notes:read"),
        "{}",
        p.body
    );
    let csrf = p.input("csrf").expect("unlink form");
    let revoked_before = w.tp.store.list_revocations().await.unwrap().1.len();
    let gone = alice_b
        .post_form(
            &format!("{issuer}/account/connections/up/unlink"),
            &[("csrf".into(), csrf.clone())],
        )
        .await;
    assert_eq!(gone.status, 200, "{}", gone.body);
    assert!(grants(&w, "alice").await.is_empty());
    assert!(
        w.tp.store.list_revocations().await.unwrap().1.len() > revoked_before,
        "the third party was told"
    );
    // The next call asks to connect again.
    let r = alice.call("echo", json!({"text": "3"})).await;
    elicitation_url(&r, &issuer);
    // An unlink form from another session: refused.
    let mut bob_b = Browser::new();
    signed_in(
        &mut bob_b,
        &issuer,
        &format!("{issuer}/account/connections"),
        "bob",
    )
    .await;
    let p = bob_b
        .post_form(
            &format!("{issuer}/account/connections/up/unlink"),
            &[("csrf".into(), csrf)],
        )
        .await;
    assert_eq!(p.status, 403);

    // mcpgate-side revocation: disabling bob deletes his connected account.
    let url = {
        let bob_token = w.s.token("bob", "notes:read", "up").await;
        let mut bob = w.s.client("up", &bob_token);
        elicitation_url(&initialize(&mut bob).await, &issuer)
    };
    connect(&w, &mut bob_b, &url, "bob", "bob-at-up").await;
    assert_eq!(grants(&w, "bob").await.len(), 1);
    admin::set_disabled(&w.s.as_.admin(), "bob", true)
        .await
        .unwrap();
    assert!(grants(&w, "bob").await.is_empty());
}

#[tokio::test]
async fn a_token_the_upstream_refuses_is_refreshed_once_or_the_user_asked_again() {
    let w = world_behind_refuser().await;
    let issuer = w.s.as_.issuer.clone();
    let (alice_token, _) = connected_user(&w, "alice", "alice-at-up").await;
    let mut alice = w.s.client("up", &alice_token);
    let r = initialize(&mut alice).await;
    assert!(r.response()["result"].is_object(), "{}", r.text);
    alice.notify("notifications/initialized").await;
    let first = last_upstream_token(&w);

    // Revoked early at the third party: the upstream answers 401; the gateway
    // refreshes and sends the call again, which the user never notices.
    w.refused.lock().unwrap().insert(first.clone());
    let r = alice.call("echo", json!({"text": "after a refusal"})).await;
    assert!(r.response()["result"].is_object(), "{}", r.text);
    let second = last_upstream_token(&w);
    assert_ne!(first, second, "a refreshed token");
    let alice_up = tp_user_id(&w, "alice-at-up").await;
    assert_eq!(third_party_subject(&w, &second), alice_up);

    // The grant itself is gone at the third party (the consent revoked there):
    // the refused token cannot be refreshed, and the user is asked to connect again.
    admin::revoke_consent(&w.tp.admin(), "alice-at-up", GW_CLIENT)
        .await
        .unwrap();
    w.refused.lock().unwrap().insert(second);
    let r = alice.call("echo", json!({"text": "again"})).await;
    elicitation_url(&r, &issuer);
    assert!(grants(&w, "alice").await.is_empty());
}

/// A stateless (2026-07-28) request with this `_meta` and its headers.
async fn stateless_call(c: &Mcp, params: Value, capabilities: Value) -> Resp {
    let mut params = params;
    params["_meta"] = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": capabilities});
    let body = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": params});
    let r = c
        .request(reqwest::Method::POST)
        .header("content-type", "application/json")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "echo")
        .body(body.to_string())
        .send()
        .await
        .expect("POST");
    crate::harness::into_resp(r).await
}

#[tokio::test]
async fn stateless_clients_get_the_elicitation_as_an_input_required_result() {
    let w = world().await;
    let issuer = w.s.as_.issuer.clone();
    let alice_token = w.s.token("alice", "notes:read", "up").await;
    let mut alice = w.s.client("up", &alice_token);
    alice.version = "2026-07-28";
    let echo = json!({"name": "echo", "arguments": {"text": "stateless"}});
    let url_mode = json!({"elicitation": {"url": {}}});

    // A client that declared no URL-mode elicitation cannot be asked: -32021.
    let r = stateless_call(&alice, echo.clone(), json!({"elicitation": {}})).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.response()["error"]["code"], -32021, "{}", r.text);

    // One that did: an InputRequiredResult with the URL and a sealed state.
    let r = stateless_call(&alice, echo.clone(), url_mode.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let result = r.response()["result"].clone();
    assert_eq!(result["resultType"], "input_required", "{result}");
    let ask = &result["inputRequests"]["mcpgate-connect"];
    assert_eq!(ask["method"], "elicitation/create");
    assert_eq!(ask["params"]["mode"], "url");
    let url = ask["params"]["url"].as_str().unwrap().to_string();
    assert!(
        url.starts_with(&format!("{issuer}/connect/up?elicitation=")),
        "{url}"
    );
    let state = result["requestState"].as_str().unwrap().to_string();
    assert!(
        w.upstream.recorded_headers().is_empty(),
        "nothing reached the upstream"
    );

    // Declined: the request ends there.
    let mut retry = echo.clone();
    retry["requestState"] = json!(state);
    retry["inputResponses"] = json!({"mcpgate-connect": {"action": "decline"}});
    let r = stateless_call(&alice, retry, url_mode.clone()).await;
    assert_eq!(r.status, 403, "{}", r.text);

    // Accepted but not connected yet: asked again.
    let mut retry = echo.clone();
    retry["requestState"] = json!(state);
    retry["inputResponses"] = json!({"mcpgate-connect": {"action": "accept"}});
    let r = stateless_call(&alice, retry.clone(), url_mode.clone()).await;
    assert_eq!(
        r.response()["result"]["resultType"],
        "input_required",
        "{}",
        r.text
    );

    // Connected: the retry goes through, the gateway's state and answer stripped.
    let mut b = Browser::new();
    connect(&w, &mut b, &url, "alice", "alice-at-up").await;
    let r = stateless_call(&alice, retry.clone(), url_mode.clone()).await;
    assert!(r.response()["result"]["content"].is_array(), "{}", r.text);
    let alice_up = tp_user_id(&w, "alice-at-up").await;
    assert_eq!(third_party_subject(&w, &last_upstream_token(&w)), alice_up);

    // Bob cannot use alice's state: it is sealed to her.
    let bob_token = w.s.token("bob", "notes:read", "up").await;
    let mut bob = w.s.client("up", &bob_token);
    bob.version = "2026-07-28";
    let r = stateless_call(&bob, retry, url_mode).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.response()["error"]["code"], -32602, "{}", r.text);
}

#[tokio::test]
async fn concurrent_requests_share_one_refresh() {
    let w = world().await;
    let (alice_token, _) = connected_user(&w, "alice", "alice-at-up").await;
    let url_mode = json!({"elicitation": {"url": {}}});
    let echo = json!({"name": "echo", "arguments": {"text": "before"}});
    let mut c = w.s.client("up", &alice_token);
    c.version = "2026-07-28";
    let r = stateless_call(&c, echo.clone(), url_mode.clone()).await;
    assert!(r.response()["result"]["content"].is_array(), "{}", r.text);
    let before = last_upstream_token(&w);

    // The access token is due: eight requests at once need it refreshed, and
    // the lease lets one of them refresh while the others wait for its result.
    w.s.as_.clock.advance(3600);
    let token = w.s.token("alice", "notes:read", "up").await;
    let mut c = w.s.client("up", &token);
    c.version = "2026-07-28";
    let seen_before = w.upstream.recorded_headers().len();
    let calls = (0..8).map(|_| stateless_call(&c, echo.clone(), url_mode.clone()));
    for r in futures_util::future::join_all(calls).await {
        assert!(r.response()["result"]["content"].is_array(), "{}", r.text);
    }
    let used: HashSet<String> = w.upstream.recorded_headers().all()[seen_before..]
        .iter()
        .filter_map(|r| r.header("authorization").map(str::to_string))
        .collect();
    assert_eq!(used.len(), 1, "one refreshed token for all: {used:?}");
    assert!(!used.contains(&format!("Bearer {before}")), "refreshed");
}
