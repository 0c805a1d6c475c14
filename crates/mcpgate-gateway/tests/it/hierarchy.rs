//! Scope hierarchies (MCP 2026-07-28: servers must account for a broad
//! scope implying narrower ones): `scope_implies` from the config file.

use serde_json::json;

use crate::harness::*;

const CONFIG: &str = r#"
[gateway.audit]
stdout = false

[[upstream]]
name = "h"
scopes = ["notes:read"]
stdio = { command = "{bin}", args = ["testing-stdio"] }
scope_implies = { "notes:admin" = ["notes:write"], "notes:write" = ["notes:read"] }
[upstream.tools.notify]
scopes = ["notes:write"]
"#;

#[tokio::test]
async fn a_broad_scope_satisfies_the_narrower_ones_it_implies() {
    let s = Stack::start(CONFIG).await;

    // notes:admin implies notes:write, which implies notes:read (the baseline).
    let admin = s.token("alice", "notes:admin", "h").await;
    let mut c = s.client("h", &admin);
    c.initialize().await;
    let r = c.call("notify", json!({"message": "hi"})).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // The implication runs one way only: notes:read does not cover notes:write.
    let reader = s.token("bob", "notes:read", "h").await;
    let mut c = s.client("h", &reader);
    c.initialize().await;
    let r = c.call("notify", json!({"message": "hi"})).await;
    assert_eq!(r.status, 403);
    assert!(
        r.header("www-authenticate")
            .unwrap_or("")
            .contains("scope=\"notes:read notes:write\""),
        "{:?}",
        r.header("www-authenticate")
    );
}
