//! `[gateway.limits]` (issue 15, "resource limits with defaults"): a full
//! gateway refuses with 503 and `Retry-After` before it starts anything for
//! the request, a user over their share of streams or an address over its
//! share of refused tokens gets 429, and a freed place is usable again.

use serde_json::json;

use crate::harness::*;

fn config(limits: &str) -> String {
    format!(
        r#"
[gateway.audit]
stdout = false

[gateway.limits]
{limits}

[[upstream]]
name = "a"
scopes = ["notes:read"]
stdio = {{ command = "{{bin}}", args = ["testing-stdio"] }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_gateway_starts_no_session_and_says_when_to_retry() {
    let s = Stack::start(&config("max_sessions = 1")).await;
    let token = s.token("alice", "notes:read", "a").await;
    let mut first = s.client("a", &token);
    first.initialize().await;
    assert_eq!(s.gw.child_pids().len(), 1);

    let mut second = s.client("a", &token);
    let r = second
        .rpc("initialize", json!({"protocolVersion": second.version, "capabilities": {}, "clientInfo": {"name": "it", "version": "0"}}))
        .await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.header("retry-after"), Some("5"));
    assert!(r.header("mcp-session-id").is_none());
    let body: serde_json::Value = serde_json::from_str(&r.text).unwrap();
    assert_eq!(body["error"]["code"], -32000, "{body}");
    assert_eq!(body["id"], json!(second.next_id), "{body}");
    // Nothing was started for the refused session.
    assert_eq!(s.gw.child_pids().len(), 1);

    // Ending the first session frees its place.
    assert_eq!(first.delete().await.status, 204);
    second.initialize().await;
    assert_eq!(second.rpc("tools/list", json!({})).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_more_children_than_max_children() {
    let s = Stack::start(&config("max_children = 1")).await;
    let token = s.token("alice", "notes:read", "a").await;
    let mut first = s.client("a", &token);
    first.initialize().await;
    let mut second = s.client("a", &token);
    let r = second
        .rpc("initialize", json!({"protocolVersion": second.version, "capabilities": {}, "clientInfo": {"name": "it", "version": "0"}}))
        .await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.text.contains("server processes"), "{}", r.text);
    assert_eq!(s.gw.child_pids().len(), 1);
    // The place comes back once the first child has been reaped.
    assert_eq!(first.delete().await.status, 204);
    eventually("the first child reaped and its place free", async || {
        let mut c = s.client("a", &token);
        let r = c
            .rpc("initialize", json!({"protocolVersion": c.version, "capabilities": {}, "clientInfo": {"name": "it", "version": "0"}}))
            .await;
        r.status == 200
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_limited_per_user_and_freed_when_closed() {
    let s = Stack::start(&config("max_streams_per_user = 1")).await;
    let alice = s.token("alice", "notes:read", "a").await;
    let mut a = s.client("a", &alice);
    a.initialize().await;
    let held = a.open_stream().await;
    assert_eq!(held.status(), 200);
    let refused = into_resp(a.open_stream().await).await;
    assert_eq!(refused.status, 429, "{}", refused.text);
    assert!(refused.header("retry-after").is_some());
    // Another user has a share of their own.
    let bob = s.token("bob", "notes:read", "a").await;
    let mut b = s.client("a", &bob);
    b.initialize().await;
    assert_eq!(b.open_stream().await.status(), 200);
    // Closing the stream gives the place back.
    drop(held);
    eventually("alice's stream place freed", async || {
        a.open_stream().await.status() == 200
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_presenting_bad_tokens_is_not_heard_for_a_while() {
    let s = Stack::start(&config("refused_tokens_per_ip_per_minute = 3")).await;
    let good = s.token("alice", "notes:read", "a").await;
    // A well-formed token with a signature that does not verify: each one
    // costs the gateway a signature check.
    let (head, rest) = good.split_once('.').unwrap();
    let (claims, _) = rest.split_once('.').unwrap();
    let forged = format!("{head}.{claims}.AAAA");
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let mut c = s.client("a", &forged);
        statuses.push(c.rpc("tools/list", json!({})).await.status);
    }
    assert_eq!(&statuses[..4], &[401, 401, 401, 401], "{statuses:?}");
    assert_eq!(statuses[4], 429, "{statuses:?}");
    // While benched, the address's tokens are not checked at all, good ones included.
    let mut c = s.client("a", &good);
    let r = c.rpc("tools/list", json!({})).await;
    assert_eq!(r.status, 429, "{}", r.text);
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=20).contains(&wait), "{wait}");
    // The audit names why.
    eventually("the audit record of the benched address", async || {
        let q = mcpgate_store::AuditQuery {
            decision: Some("rate_limited".into()),
            limit: 100,
            ..Default::default()
        };
        let rows = s.as_.store.query_audit(&q).await.unwrap();
        rows.iter().any(|r| r.reason == "address_refused_tokens")
    })
    .await;
}
