//! Parser differentials (issue "the gateway decides on exactly what it
//! forwards"): an HTTP upstream that records the raw bytes it receives. A
//! message two JSON parsers could read differently (duplicate keys, keys
//! equal under case folding, a case variant of a member) is refused before
//! it leaves the gateway; any other message arrives as the gateway's own
//! serialisation of what it decided on.

use std::sync::{Arc, Mutex};

use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::harness::*;

type Seen = Arc<Mutex<Vec<Vec<u8>>>>;

/// Answers every request with an empty result (the session id on
/// `initialize`), every notification with 202, and records the raw bodies.
async fn recorder(
    axum::extract::State(seen): axum::extract::State<Seen>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    seen.lock().unwrap().push(body.to_vec());
    // A lenient reader, like many servers: the last duplicate wins.
    let msg: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(id) = msg.get("id").cloned() else {
        return http::StatusCode::ACCEPTED.into_response();
    };
    let result = if msg["method"] == "initialize" {
        json!({"protocolVersion": msg["params"]["protocolVersion"], "capabilities": {"tools": {}},
               "serverInfo": {"name": "recorder", "version": "0"}})
    } else {
        json!({"content": [], "tools": []})
    };
    (
        [
            ("content-type", "application/json"),
            ("mcp-session-id", "up-1"),
        ],
        json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string(),
    )
        .into_response()
}

async fn start_recorder() -> (Seen, String) {
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route("/mcp", axum::routing::post(recorder))
        .with_state(seen.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    (seen, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_decided_message_reaches_an_http_upstream() {
    let (seen, url) = start_recorder().await;
    let config = format!(
        "[gateway.audit]\nstdout = false\n\n[[upstream]]\nname = \"rec\"\nhttp = {{ url = \"{url}\" }}\n\
         [upstream.tools.secret_tool]\nallow = false\n"
    );
    let s = Stack::start(&config).await;
    let token = s.token("alice", "", "rec").await;
    let mut c = s.client("rec", &token);
    c.initialize().await;
    let raw = |body: &str| {
        c.request(reqwest::Method::POST)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let before = seen.lock().unwrap().len();
    for attack in [
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list","METHOD":"tools/call","params":{"name":"secret_tool"}}"#,
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"public_tool","Name":"secret_tool"}}"#,
        r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","method":"tools/list","params":{"name":"secret_tool"}}"#,
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"secret_tool","name":"public_tool"}}"#,
        r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"public_tool"},"params":{"name":"secret_tool"}}"#,
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"Name":"secret_tool"}}"#,
        r#"[{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"secret_tool"}}]"#,
    ] {
        let r = into_resp(raw(attack).await.unwrap()).await;
        assert_eq!(r.status, 400, "{attack}: {}", r.text);
        let body: Value = serde_json::from_str(&r.text).unwrap();
        assert_eq!(body["error"]["code"], -32600, "{attack}: {}", r.text);
    }
    assert_eq!(
        seen.lock().unwrap().len(),
        before,
        "a refused message reached the upstream"
    );
    // An ordinary message, spelled oddly, arrives as the gateway's serialisation.
    let odd = r#"  { "params" : { "arguments" : {"z": 1, "a": [true, 2.5]}, "name" : "public_tool" },
        "method" : "tools/call", "id" : 9, "jsonrpc" : "2.0" }  "#;
    let r = into_resp(raw(odd).await.unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let got = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        String::from_utf8(got).unwrap(),
        r#"{"id":9,"jsonrpc":"2.0","method":"tools/call","params":{"arguments":{"a":[true,2.5],"z":1},"name":"public_tool"}}"#
    );
}
