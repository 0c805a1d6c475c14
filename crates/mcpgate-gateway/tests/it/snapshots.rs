//! Snapshots of the contracts: the PRM documents and the challenge headers
//! (ports normalised).

use serde_json::json;

use crate::harness::*;

const CONFIG: &str = r#"
[gateway.audit]
stdout = false

[[upstream]]
name = "notes"
scopes = ["notes:read"]
stdio = { command = "{bin}", args = ["notes-stdio"] }
[upstream.tools.add_note]
scopes = ["notes:write"]
[upstream.tools.delete_note]
scopes = ["notes:admin"]
"#;

fn normalise(s: &Stack, text: &str) -> String {
    text.replace(&s.as_.issuer, "http://127.0.0.1:[PORT]")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prm_and_challenges() {
    let s = Stack::start(CONFIG).await;
    let r = s
        .http
        .get(format!(
            "{}/.well-known/oauth-protected-resource/mcp/notes",
            s.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let doc: serde_json::Value = r.json().await.unwrap();
    insta::assert_snapshot!(
        "prm_notes",
        normalise(&s, &serde_json::to_string_pretty(&doc).unwrap())
    );
    assert_eq!(
        s.http
            .get(format!(
                "{}/.well-known/oauth-protected-resource/mcp/nope",
                s.base
            ))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    let mut anon = s.client("notes", "");
    anon.token = None;
    let missing = anon.rpc("tools/list", json!({})).await;
    let mut bad = s.client("notes", "not.a.token");
    let invalid = bad.rpc("tools/list", json!({})).await;
    let token = s.token("alice", "notes:read", "notes").await;
    let mut c = s.client("notes", &token);
    c.initialize().await;
    let step_up = c.call("delete_note", json!({"id": 1})).await;
    let text = [
        ("401 no token", &missing),
        ("401 invalid token", &invalid),
        ("403 step-up", &step_up),
    ]
    .iter()
    .map(|(what, r)| {
        format!(
            "{what}: {}\nWWW-Authenticate: {}\n{}\n",
            r.status,
            r.header("www-authenticate").unwrap_or("-"),
            r.text
        )
    })
    .collect::<String>();
    insta::assert_snapshot!("challenges_notes", normalise(&s, &text));

    // The demo notes server behind the gateway works end to end.
    let add = c.call("add_note", json!({"title": "t", "body": "b"})).await;
    assert_eq!(add.status, 403);
    let list = c.rpc("tools/list", json!({})).await;
    assert_eq!(
        tool_names(&list),
        ["add_note", "delete_note", "list_notes", "read_note"]
    );
}
