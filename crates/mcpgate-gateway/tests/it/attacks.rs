//! One test per attack on the protected resource (MCP authorization
//! checklist §2(b), §2(e); Security Best Practices: token passthrough,
//! session hijacking, DNS rebinding): each must be refused.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcpgate_testkit::{Options, TestAs};
use serde_json::{Value, json};

use crate::harness::*;

const CONFIG: &str = r#"
[gateway.audit]
stdout = false

[[upstream]]
name = "a"
scopes = ["notes:read"]
stdio = { command = "{bin}", args = ["testing-stdio"] }
[upstream.tools.notify]
scopes = ["notes:write", "notes:admin"]
[upstream.tools.slow]
allow = false
[upstream.tools.headers]
users = ["nobody"]
groups = ["ops"]

[[upstream]]
name = "b"
scopes = ["notes:read"]
stdio = { command = "{bin}", args = ["testing-stdio"] }
list = "granted"
[upstream.tools.notify]
scopes = ["notes:write"]

[[upstream]]
name = "limited"
scopes = ["notes:read"]
stdio = { command = "{bin}", args = ["testing-stdio"] }
shared = true
rate_limit = { per_user_per_minute = 3, per_client_per_minute = 100 }
"#;

async fn stack() -> Stack {
    Stack::start(CONFIG).await
}

fn prm(s: &Stack, name: &str) -> String {
    format!(
        "{}/.well-known/oauth-protected-resource/mcp/{name}",
        s.as_.issuer
    )
}

/// A tools/list with `token` on a fresh client (no session needed to be refused).
async fn list_with(s: &Stack, name: &str, token: Option<&str>) -> Resp {
    let mut c = s.client(name, token.unwrap_or(""));
    if token.is_none() {
        c.token = None;
    }
    c.rpc("tools/list", json!({})).await
}

#[track_caller]
fn assert_invalid_token(r: &Resp, s: &Stack, name: &str) {
    assert_eq!(r.status, 401, "{}", r.text);
    let h = r.header("www-authenticate").expect("challenge");
    assert!(h.starts_with("Bearer error=\"invalid_token\""), "{h}");
    assert!(
        h.contains(&format!("resource_metadata=\"{}\"", prm(s, name))),
        "{h}"
    );
    assert_eq!(r.response()["error"]["code"], -32001);
}

fn parts(token: &str) -> (Value, Value, String) {
    let mut it = token.split('.');
    let h = URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap();
    let p = URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap();
    (
        serde_json::from_slice(&h).unwrap(),
        serde_json::from_slice(&p).unwrap(),
        it.next().unwrap().to_string(),
    )
}

fn join(h: &Value, p: &Value, sig: &str) -> String {
    format!(
        "{}.{}.{sig}",
        URL_SAFE_NO_PAD.encode(h.to_string()),
        URL_SAFE_NO_PAD.encode(p.to_string())
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_gets_the_exact_challenge() {
    let s = stack().await;
    let r = list_with(&s, "a", None).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate").unwrap(),
        format!(
            "Bearer scope=\"notes:read\", resource_metadata=\"{}\"",
            prm(&s, "a")
        )
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.response()["id"], Value::Null);
    assert!(
        s.gw.child_pids().is_empty(),
        "nothing was started for an anonymous request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_in_query_is_refused() {
    let s = stack().await;
    let token = s.token("alice", "notes:read", "a").await;
    let mut c = s.client("a", &token);
    c.token = None;
    c.url = format!("{}?access_token={token}", c.url);
    let r = c.rpc("tools/list", json!({})).await;
    assert!(
        r.status == 400 || r.status == 401,
        "{} {}",
        r.status,
        r.text
    );
    assert!(r.header("www-authenticate").is_some());
    // Also with a valid header: a second credential in the query is refused.
    c.token = Some(token.clone());
    let r = c.rpc("tools/list", json!({})).await;
    assert!(
        r.status == 400 || r.status == 401,
        "{} {}",
        r.status,
        r.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_for_upstream_a_is_refused_on_b() {
    let s = stack().await;
    let token = s.token("alice", "notes:read", "a").await;
    assert_invalid_token(&list_with(&s, "b", Some(&token)).await, &s, "b");
    let mut c = s.client("a", &token);
    c.initialize().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_is_refused() {
    let s = stack().await;
    let token = s.token("alice", "notes:read", "a").await;
    let mut c = s.client("a", &token);
    c.initialize().await;
    // Past exp (600 s) and the leeway (60 s): the live session does not help.
    s.as_.clock.advance(700);
    let r = c.rpc("tools/list", json!({})).await;
    assert_invalid_token(&r, &s, "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_from_another_issuer_is_refused() {
    let s = stack().await;
    let resource = s.resource("a");
    let other = TestAs::start_with(Options {
        store: None,
        tweak: Box::new(move |st| {
            st.resources
                .push(mcpgate_authz::ResourceDef::new(resource, "a"))
        }),
        ..Default::default()
    })
    .await;
    other.add_user("alice", &[]).await;
    other.add_public_client("app", REDIRECT).await;
    let req = mcpgate_testkit::AuthRequest::new("app", REDIRECT, "notes:read", &s.resource("a"));
    let mut b = mcpgate_testkit::Browser::new();
    let page = b
        .authorize_as(&other.issuer, &req.url(&other.issuer), "alice")
        .await;
    let page = b.approve_if_asked(&other.issuer, page).await;
    let code = page.location_params().get("code").cloned().expect("code");
    let (_, v) = mcpgate_testkit::post_form(
        &s.http,
        &other.url("/oauth/token"),
        &req.token_form(&code),
        None,
    )
    .await;
    let foreign = v["access_token"].as_str().expect("token").to_string();
    assert_eq!(
        parts(&foreign).1["aud"],
        s.resource("a"),
        "same audience, other issuer"
    );
    assert_invalid_token(&list_with(&s, "a", Some(&foreign)).await, &s, "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tokens_are_refused() {
    let s = stack().await;
    let token = s.token("alice", "notes:read", "a").await;
    let (h, p, sig) = parts(&token);
    // alg none, no signature.
    let mut none = h.clone();
    none["alg"] = json!("none");
    assert_invalid_token(
        &list_with(&s, "a", Some(&join(&none, &p, ""))).await,
        &s,
        "a",
    );
    // A kid the issuer does not publish.
    let mut kid = h.clone();
    kid["kid"] = json!("not-a-published-kid");
    assert_invalid_token(
        &list_with(&s, "a", Some(&join(&kid, &p, &sig))).await,
        &s,
        "a",
    );
    // Tampered payload (more scope) under the original signature.
    let mut more = p.clone();
    more["scope"] = json!("notes:read notes:write notes:admin");
    assert_invalid_token(
        &list_with(&s, "a", Some(&join(&h, &more, &sig))).await,
        &s,
        "a",
    );
    // HS256 "signed" with the public key material: the key decides the algorithm.
    let mut hs = h.clone();
    hs["alg"] = json!("HS256");
    assert_invalid_token(
        &list_with(&s, "a", Some(&join(&hs, &p, &sig))).await,
        &s,
        "a",
    );
    // The original still works.
    assert_eq!(
        list_with(&s, "a", Some(&token)).await.status,
        400,
        "valid token, but no session: 400"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_scope_gets_a_step_up_with_every_needed_scope() {
    let s = stack().await;
    let token = s.token("alice", "notes:read", "a").await;
    let mut c = s.client("a", &token);
    c.initialize().await;
    let r = c.call("notify", json!({})).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(
        r.header("www-authenticate").unwrap(),
        format!(
            "Bearer error=\"insufficient_scope\", error_description=\"this tool needs more scope\", scope=\"notes:admin notes:read notes:write\", resource_metadata=\"{}\"",
            prm(&s, "a")
        )
    );
    // With the union of scopes the same call goes through.
    let better = s
        .token("alice", "notes:read notes:write notes:admin", "a")
        .await;
    let mut c = s.client("a", &better);
    c.initialize().await;
    assert_eq!(c.call("notify", json!({})).await.status, 200);
}

/// A step-up the user can never satisfy (the AS would not grant them
/// `notes:admin`) is a plain 403 naming the scope, without an
/// `insufficient_scope` challenge that would send the client round the
/// authorization loop again; a user the AS would grant it still gets the
/// challenge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_up_the_user_can_never_satisfy_is_a_plain_403() {
    let s = Stack::start_with(CONFIG, |a| {
        let admin = a.scopes.iter_mut().find(|d| d.name == "notes:admin");
        admin.expect("notes:admin").grantable_to = Some(mcpgate_authz::Grantees {
            groups: vec!["ops".into()],
            ..Default::default()
        });
    })
    .await;
    let token = s.token("alice", "notes:read", "a").await;
    let mut c = s.client("a", &token);
    c.initialize().await;
    let r = c.call("notify", json!({})).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(r.header("www-authenticate"), None, "no step-up challenge");
    assert!(
        r.text
            .contains("needs scope notes:admin, which your account cannot be granted"),
        "{}",
        r.text
    );
    // bob is in ops: he can be granted it, so he is asked to step up.
    let token = s.token("bob", "notes:read", "a").await;
    let mut c = s.client("a", &token);
    c.initialize().await;
    let r = c.call("notify", json!({})).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(challenge.contains("insufficient_scope"), "{challenge}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_tools_are_403_and_hidden() {
    let s = stack().await;
    let token = s.token("alice", "notes:read", "a").await;
    let mut c = s.client("a", &token);
    c.initialize().await;
    let list = c.rpc("tools/list", json!({})).await;
    let names = tool_names(&list);
    assert!(
        !names.contains(&"slow".into()) && !names.contains(&"headers".into()),
        "denied tools never leak: {names:?}"
    );
    assert!(
        names.contains(&"notify".into()),
        "a step-up tool stays listed: {names:?}"
    );
    for (tool, args) in [("slow", json!({"ms": 1})), ("headers", json!({}))] {
        let r = c.call(tool, args).await;
        assert_eq!(r.status, 403, "{tool}: {}", r.text);
        assert!(
            r.header("www-authenticate").is_none(),
            "no step-up for a tool one can never get"
        );
        assert!(r.response()["error"].is_object());
    }
    // The group allowlist lets bob in.
    let bob = s.token("bob", "notes:read", "a").await;
    let mut c = s.client("a", &bob);
    c.initialize().await;
    assert!(tool_names(&c.rpc("tools/list", json!({})).await).contains(&"headers".to_string()));
    // list = "granted" hides step-up tools too.
    let tb = s.token("alice", "notes:read", "b").await;
    let mut c = s.client("b", &tb);
    c.initialize().await;
    assert!(!tool_names(&c.rpc("tools/list", json!({})).await).contains(&"notify".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_session_is_404() {
    let s = stack().await;
    let alice = s.token("alice", "notes:read", "a").await;
    let bob = s.token("bob", "notes:read", "a").await;
    let other_client = s.token_for("alice", "other-app", "notes:read", "a").await;
    let mut a = s.client("a", &alice);
    a.initialize().await;
    for t in [&bob, &other_client] {
        let mut thief = s.client("a", t);
        thief.session = a.session.clone();
        let r = thief.rpc("tools/list", json!({})).await;
        assert_eq!(r.status, 404, "{}", r.text);
        assert_eq!(thief.delete().await.status, 404);
    }
    // Guessed ids look exactly the same.
    let mut guess = s.client("a", &alice);
    guess.session = Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into());
    let r = guess.rpc("tools/list", json!({})).await;
    assert_eq!(r.status, 404);
    // The owner's session still works.
    assert_eq!(a.rpc("tools/list", json!({})).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_origin_and_host_are_refused() {
    let s = stack().await;
    let token = s.token("alice", "notes:read", "a").await;
    let mut c = s.client("a", &token);
    c.extra
        .insert("origin".into(), "https://evil.example".into());
    let r = c.rpc("initialize", json!({})).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.response()["error"].is_object());
    c.extra.insert("origin".into(), s.as_.issuer.clone());
    c.initialize().await;
    assert_eq!(c.rpc("tools/list", json!({})).await.status, 200);
    // DNS rebinding: the same valid session and token, reaching the
    // loopback listener under a foreign name, is refused (421), not served.
    c.extra.remove("origin");
    c.extra.insert("host".into(), "rebind.evil.example".into());
    let r = c.rpc("tools/list", json!({})).await;
    assert_eq!(r.status, 421, "{}", r.text);
    assert!(r.response()["error"].is_object(), "{}", r.text);
    assert!(!r.text.contains("tools"), "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_is_429_with_retry_after() {
    let s = stack().await;
    let token = s.token("alice", "notes:read", "limited").await;
    let mut c = s.client("limited", &token);
    c.initialize().await;
    assert_eq!(c.rpc("tools/list", json!({})).await.status, 200);
    let mut last = None;
    for _ in 0..3 {
        last = Some(c.rpc("tools/list", json!({})).await);
    }
    let r = last.unwrap();
    assert_eq!(r.status, 429, "{}", r.text);
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    // Another user is not affected; the shared child serves both.
    let bob = s.token("bob", "notes:read", "limited").await;
    let mut b = s.client("limited", &bob);
    b.initialize().await;
    assert_eq!(b.rpc("tools/list", json!({})).await.status, 200);
    assert_eq!(s.gw.child_pids().len(), 1, "shared = true: one child");
}
