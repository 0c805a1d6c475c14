//! Step-up on 403 `insufficient_scope` (MCP "Scope Challenge Handling", SEP-2350): the union of
//! held and challenged scopes, at most three authorizations per operation, denied scopes
//! remembered.

use mcpgate_client::ClientError;
use serde_json::json;

use crate::support::{Mock, MockConfig};

fn scopes_of(r: &crate::support::Recorded) -> Vec<String> {
    let mut v: Vec<String> = r
        .param("scope")
        .unwrap_or_default()
        .split(' ')
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn step_up_asks_for_the_union() {
    let mock = Mock::start(MockConfig {
        challenge_scope: Some("read".into()),
        prm_scopes: vec!["profile".into()],
        call_scope: Some("write".into()),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let client = mock.client(mock.oauth(dir.path()));
    client.connect().await.unwrap();
    client.list_tools().await.unwrap();
    client.call_tool("echo", json!({})).await.unwrap();
    let auth = mock.to("/authorize");
    assert_eq!(auth.len(), 2);
    assert_eq!(
        scopes_of(&auth[0]),
        ["read"],
        "the challenge wins over scopes_supported"
    );
    assert_eq!(scopes_of(&auth[1]), ["read", "write"], "held ∪ challenged");
}

#[tokio::test]
async fn retries_stop_after_three_authorizations() {
    let mock = Mock::start(MockConfig {
        challenge_scope: Some("admin".into()),
        call_always_forbidden: true,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let client = mock.client(mock.oauth(dir.path()));
    client.connect().await.unwrap();
    let e = client.call_tool("echo", json!({})).await.unwrap_err();
    assert!(
        matches!(e, ClientError::InsufficientScope { attempts: 3, .. }),
        "{e}"
    );
    // One authorization at connect (the 401 of `initialize`), then three for the failing call:
    // each operation has its own budget of three.
    assert_eq!(mock.to("/authorize").len(), 4);
    let calls = mock
        .to("/mcp")
        .into_iter()
        .filter(|r| r.body.contains("tools/call"))
        .count();
    assert_eq!(calls, 4, "the first try and three retries");
}

#[tokio::test]
async fn denied_scopes_are_remembered() {
    let mock = Mock::start(MockConfig {
        challenge_scope: Some("read".into()),
        call_scope: Some("write".into()),
        deny_scopes: vec!["write".into()],
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let client = mock.client(mock.oauth(dir.path()));
    client.connect().await.unwrap();
    let e = client.call_tool("echo", json!({})).await.unwrap_err();
    assert!(
        matches!(e, ClientError::ScopeDenied { ref scopes } if scopes == "write"),
        "{e}"
    );
    assert_eq!(
        mock.to("/authorize").len(),
        2,
        "no third prompt for a denied scope"
    );
    let entry = mcpgate_client::TokenStore::new(dir.path())
        .list()
        .unwrap()
        .remove(0);
    assert_eq!(entry.denied_scopes, ["write"]);
    assert_eq!(entry.scope.as_deref(), Some("read"));

    // Another process (a new client on the same store) does not ask again either.
    let again = mock.client(mock.oauth(dir.path()));
    again.connect().await.unwrap();
    let e = again.call_tool("echo", json!({})).await.unwrap_err();
    assert!(matches!(e, ClientError::ScopeDenied { .. }), "{e}");
    assert_eq!(mock.to("/authorize").len(), 2);

    // Asking explicitly (`--scope write`) tries once more.
    let explicit = mock.client(mock.oauth_with(dir.path(), |c| {
        c.extra_scopes = mcpgate_types::ScopeSet::parse("write").unwrap();
    }));
    explicit.connect().await.unwrap();
    let _ = explicit.call_tool("echo", json!({})).await;
    assert_eq!(mock.to("/authorize").len(), 3);
}
