//! Per-prompt and per-resource policy (issue 3 "Policy": "The same for
//! prompts and resources where configured"; checklist §2(b)): denied items
//! never appear in `prompts/list`, `resources/list` or
//! `resources/templates/list` and are 403 on use; items that only need more
//! scope stay listed and answer a 403 step-up with every needed scope; every
//! decision is audited. Over a stdio child (SSE answers) and an HTTP
//! upstream (buffered and filtered bodies).

use serde_json::{Value, json};

use crate::harness::*;

const POLICY: &str = r#"
scopes = ["notes:read"]
[upstream.prompts.plan]
scopes = ["notes:write"]
[upstream.prompts.internal]
allow = false
[upstream.resources."fixture://plans"]
scopes = ["notes:write"]
[upstream.resources."fixture://internal"]
groups = ["ops"]
[upstream.resources."fixture://notes/{id}"]
users = ["nobody"]
"#;

fn config(http_url: &str) -> String {
    format!(
        r#"
[gateway.audit]
stdout = false

[[upstream]]
name = "items"
stdio = {{ command = "{{bin}}", args = ["testing-stdio"] }}
{POLICY}

[[upstream]]
name = "granted"
list = "granted"
stdio = {{ command = "{{bin}}", args = ["testing-stdio"] }}
{POLICY}

[[upstream]]
name = "web"
http = {{ url = "{http_url}" }}
{POLICY}
"#
    )
}

async fn stack() -> (Stack, mcpgate_upstreams::TestingHttpHandle) {
    let (_, handle) = mcpgate_upstreams::serve_testing_http()
        .await
        .expect("testing http upstream");
    let stack = Stack::start(&config(&handle.url())).await;
    (stack, handle)
}

fn prm(s: &Stack, name: &str) -> String {
    format!(
        "{}/.well-known/oauth-protected-resource/mcp/{name}",
        s.as_.issuer
    )
}

/// The `key` of every member of `result[array]`, sorted.
fn ids(r: &Resp, array: &str, key: &str) -> Vec<String> {
    let v = r.response();
    let mut out: Vec<String> = v["result"][array]
        .as_array()
        .unwrap_or_else(|| panic!("{array} in {v}"))
        .iter()
        .map(|t| t[key].as_str().unwrap_or("").to_string())
        .collect();
    out.sort();
    out
}

async fn prompts(c: &mut Mcp) -> Vec<String> {
    ids(&c.rpc("prompts/list", json!({})).await, "prompts", "name")
}

async fn resources(c: &mut Mcp) -> Vec<String> {
    ids(
        &c.rpc("resources/list", json!({})).await,
        "resources",
        "uri",
    )
}

async fn templates(c: &mut Mcp) -> Vec<String> {
    ids(
        &c.rpc("resources/templates/list", json!({})).await,
        "resourceTemplates",
        "uriTemplate",
    )
}

async fn get_prompt(c: &mut Mcp, name: &str) -> Resp {
    c.rpc("prompts/get", json!({"name": name})).await
}

async fn read(c: &mut Mcp, uri: &str) -> Resp {
    c.rpc("resources/read", json!({"uri": uri})).await
}

#[track_caller]
fn assert_step_up(r: &Resp, s: &Stack, name: &str, noun: &str) {
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(
        r.header("www-authenticate").expect("challenge"),
        format!(
            "Bearer error=\"insufficient_scope\", error_description=\"this {noun} needs more scope\", scope=\"notes:read notes:write\", resource_metadata=\"{}\"",
            prm(s, name)
        )
    );
}

#[track_caller]
fn assert_denied(r: &Resp) {
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(
        r.header("www-authenticate").is_none(),
        "no step-up for an item one can never get"
    );
    assert!(r.response()["error"].is_object(), "{}", r.text);
}

/// Lists hide denied items and keep step-up ones; uses are 403 (deny or
/// step-up with the exact `scope=`), 200 with the scope.
async fn policy_on(s: &Stack, name: &str) {
    let token = s.token("alice", "notes:read", name).await;
    let mut c = s.client(name, &token);
    c.initialize().await;
    assert_eq!(prompts(&mut c).await, ["greet", "plan"]);
    assert_eq!(
        resources(&mut c).await,
        ["fixture://plans", "fixture://readme"]
    );
    assert!(
        templates(&mut c).await.is_empty(),
        "a template denied to this user is hidden"
    );

    let r = get_prompt(&mut c, "greet").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.response()["result"]["messages"][0]["content"]["text"],
        "prompt greet"
    );
    assert_step_up(&get_prompt(&mut c, "plan").await, s, name, "prompt");
    assert_denied(&get_prompt(&mut c, "internal").await);

    let r = read(&mut c, "fixture://readme").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_step_up(&read(&mut c, "fixture://plans").await, s, name, "resource");
    assert_denied(&read(&mut c, "fixture://internal").await);
    // Another spelling of the same URI (RFC 3986 §6.2.2) is the same resource.
    for spelling in [
        "FIXTURE://internal",
        "fixture://INTERNAL",
        "fixture://%69nternal",
    ] {
        assert_denied(&read(&mut c, spelling).await);
    }
    assert_step_up(&read(&mut c, "Fixture://plans").await, s, name, "resource");

    // Every other way to reach an item is decided the same way: subscribing
    // to a resource, and completing an argument of a prompt or a template.
    let subscribe = |uri: &str| json!({"uri": uri});
    assert_denied(
        &c.rpc("resources/subscribe", subscribe("fixture://internal"))
            .await,
    );
    assert_step_up(
        &c.rpc("resources/subscribe", subscribe("fixture://plans"))
            .await,
        s,
        name,
        "resource",
    );
    let complete = |kind: &str, key: &str, id: &str| json!({"ref": {"type": kind, key: id}, "argument": {"name": "x", "value": ""}});
    assert_denied(
        &c.rpc(
            "completion/complete",
            complete("ref/prompt", "name", "internal"),
        )
        .await,
    );
    assert_step_up(
        &c.rpc(
            "completion/complete",
            complete("ref/prompt", "name", "plan"),
        )
        .await,
        s,
        name,
        "prompt",
    );
    assert_denied(
        &c.rpc(
            "completion/complete",
            complete("ref/resource", "uri", "fixture://notes/{id}"),
        )
        .await,
    );
    for (method, params) in [
        ("resources/subscribe", subscribe("fixture://readme")),
        (
            "completion/complete",
            complete("ref/prompt", "name", "greet"),
        ),
    ] {
        let r = c.rpc(method, params).await;
        assert_eq!(r.status, 200, "{method} of an allowed item: {}", r.text);
    }
    let r = c
        .rpc(
            "completion/complete",
            json!({"ref": {"type": "ref/unknown"}}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);

    // With the union of scopes the step-up items go through.
    let better = s.token("alice", "notes:read notes:write", name).await;
    let mut c = s.client(name, &better);
    c.initialize().await;
    let r = get_prompt(&mut c, "plan").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.response()["result"]["messages"][0]["content"]["text"],
        "prompt plan"
    );
    let r = read(&mut c, "fixture://plans").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.response()["result"]["contents"][0]["text"],
        "contents of fixture://plans"
    );
    // More scope never reveals a denied item.
    assert_denied(&get_prompt(&mut c, "internal").await);
    assert!(!prompts(&mut c).await.contains(&"internal".to_string()));

    // The group allowlist lets bob read the internal resource.
    let bob = s.token("bob", "notes:read", name).await;
    let mut b = s.client(name, &bob);
    b.initialize().await;
    assert!(
        resources(&mut b)
            .await
            .contains(&"fixture://internal".into())
    );
    assert_eq!(read(&mut b, "fixture://internal").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_and_resources_over_stdio() {
    let (s, _h) = stack().await;
    policy_on(&s, "items").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_and_resources_over_http() {
    let (s, _h) = stack().await;
    policy_on(&s, "web").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granted_lists_hide_step_up_items() {
    let (s, _h) = stack().await;
    let token = s.token("alice", "notes:read", "granted").await;
    let mut c = s.client("granted", &token);
    c.initialize().await;
    assert_eq!(prompts(&mut c).await, ["greet"]);
    assert_eq!(resources(&mut c).await, ["fixture://readme"]);
    let better = s.token("alice", "notes:read notes:write", "granted").await;
    let mut c = s.client("granted", &better);
    c.initialize().await;
    assert_eq!(prompts(&mut c).await, ["greet", "plan"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_and_resource_decisions_are_audited() {
    let (s, _h) = stack().await;
    let token = s.token("alice", "notes:read", "items").await;
    let mut c = s.client("items", &token);
    c.initialize().await;
    assert_eq!(get_prompt(&mut c, "greet").await.status, 200);
    assert_eq!(get_prompt(&mut c, "plan").await.status, 403);
    assert_eq!(get_prompt(&mut c, "internal").await.status, 403);
    assert_eq!(read(&mut c, "fixture://readme").await.status, 200);
    assert_eq!(read(&mut c, "fixture://plans").await.status, 403);
    assert_eq!(read(&mut c, "fixture://internal").await.status, 403);
    let store = s.as_.store.clone();
    let wanted: [(&str, &str, &str, &str, i64); 6] = [
        ("prompts/get", "greet", "allow", "allowed", 200),
        ("prompts/get", "plan", "step_up", "insufficient_scope", 403),
        ("prompts/get", "internal", "deny", "prompt_disabled", 403),
        (
            "resources/read",
            "fixture://readme",
            "allow",
            "allowed",
            200,
        ),
        (
            "resources/read",
            "fixture://plans",
            "step_up",
            "insufficient_scope",
            403,
        ),
        (
            "resources/read",
            "fixture://internal",
            "deny",
            "not_in_allowlist",
            403,
        ),
    ];
    let found = |rows: &[mcpgate_store::AuditRecord], w: &(&str, &str, &str, &str, i64)| {
        rows.iter().any(|r| {
            r.method.as_deref() == Some(w.0)
                && r.tool.as_deref() == Some(w.1)
                && r.decision == w.2
                && r.reason == w.3
                && r.status == w.4
                && r.client_id.as_deref() == Some("app")
        })
    };
    eventually("prompt and resource audit rows", async || {
        let rows = store.list_audit(0, 1000).await.unwrap();
        wanted.iter().all(|w| found(&rows, w))
    })
    .await;
    let rows = store.list_audit(0, 1000).await.unwrap();
    let subjects: Vec<_> = rows
        .iter()
        .filter(|r| r.method.as_deref() == Some("prompts/get"))
        .map(|r| r.subject.clone())
        .collect();
    assert!(
        subjects.iter().all(|x| x.is_some() && x == &subjects[0]),
        "one user: {subjects:?}"
    );
    let text: Value = serde_json::to_value(&rows).unwrap();
    assert!(
        !text.to_string().contains(&token),
        "audit rows never hold tokens"
    );
}
