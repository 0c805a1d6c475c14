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

/// What the scripted upstream saw: the `requestState` of each retried call.
type States = Arc<Mutex<Vec<Value>>>;

/// An upstream that misbehaves on request, by tool name:
/// - `list_in_call`: a `tools/call` result that also holds a tool list;
/// - `dup_answer` / `case_answer`: answers two parsers read differently;
/// - `stateful`: a SEP-2322 result with `requestState` "S1"; the retry's
///   state is recorded;
/// - `sse_bad`: an event stream with one good notification, then an event
///   that is not strict JSON-RPC;
/// - `html`: a `text/html` answer; `plain_4xx`: a 409 with a text body;
///   `empty_json_202`: a 202 with a JSON content type and no body.
///
/// Its GET stream replays (as a resumed stream would) a `tools/list`
/// answer that names the denied tool.
async fn scripted(
    axum::extract::State(states): axum::extract::State<States>,
    method: http::Method,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let json = |v: Value| {
        (
            [
                ("content-type", "application/json"),
                ("mcp-session-id", "up-1"),
            ],
            v.to_string(),
        )
            .into_response()
    };
    let sse = |text: String| ([("content-type", "text/event-stream")], text).into_response();
    if method == http::Method::GET {
        return sse(format!(
            "id: 41\nevent: message\ndata: {}\n\n",
            json!({"jsonrpc": "2.0", "id": 2, "result": {"tools": [
                {"name": "secret_tool"}, {"name": "public_tool"}]}})
        ));
    }
    let msg: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(id) = msg.get("id").cloned() else {
        return http::StatusCode::ACCEPTED.into_response();
    };
    let ok = |result: Value| json(json!({"jsonrpc": "2.0", "id": id, "result": result}));
    if msg["method"] == "initialize" {
        return ok(json!({"protocolVersion": msg["params"]["protocolVersion"],
            "capabilities": {"tools": {}}, "serverInfo": {"name": "scripted", "version": "0"}}));
    }
    match msg["params"]["name"].as_str().unwrap_or_default() {
        "list_in_call" => ok(json!({"content": [],
            "tools": [{"name": "secret_tool"}, {"name": "public_tool"}]})),
        "dup_answer" => (
            [("content-type", "application/json")],
            format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[],"content":[{{"type":"text","text":"other"}}]}}}}"#),
        )
            .into_response(),
        "case_answer" => (
            [("content-type", "application/json")],
            format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"Tools":[{{"name":"secret_tool"}}]}}}}"#),
        )
            .into_response(),
        "stateful" => {
            match msg["params"].get("requestState") {
                None => ok(json!({"resultType": "input_required", "inputRequests": {},
                    "requestState": "S1"})),
                Some(s) => {
                    states.lock().unwrap().push(s.clone());
                    ok(json!({"content": [{"type": "text", "text": "done"}]}))
                }
            }
        }
        "sse_bad" => sse(format!(
            "data: {}\n\ndata: {{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{{}},\"result\":{{\"x\":1}}}}\n\n",
            json!({"jsonrpc": "2.0", "method": "notifications/message",
                "params": {"level": "info", "data": "hi"}}),
        )),
        "html" => ([("content-type", "text/html")], "<p>hi</p>").into_response(),
        "plain_4xx" => (
            http::StatusCode::CONFLICT,
            [("content-type", "text/plain")],
            "secret_tool is busy",
        )
            .into_response(),
        "empty_json_202" => (
            http::StatusCode::ACCEPTED,
            [("content-type", "application/json")],
            "",
        )
            .into_response(),
        _ => ok(json!({"content": []})),
    }
}

async fn start_scripted() -> (States, String) {
    let states: States = Arc::default();
    let app = axum::Router::new()
        .route("/mcp", axum::routing::post(scripted).get(scripted))
        .with_state(states.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    (states, url)
}

/// The other direction: what an upstream sends is parsed strictly and
/// decided on before any client reads it. Lists are filtered wherever they
/// appear (a resumed GET stream, another method's result), answers two
/// parsers would read differently are refused, and a `requestState` only
/// goes back to the upstream from the user it was issued to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_decides_on_what_upstreams_send() {
    let (states, url) = start_scripted().await;
    let config = format!(
        "[gateway.audit]\nstdout = false\n\n[[upstream]]\nname = \"scr\"\nhttp = {{ url = \"{url}\" }}\n\
         [upstream.tools.secret_tool]\nallow = false\n"
    );
    let s = Stack::start(&config).await;
    let alice_token = s.token("alice", "", "scr").await;
    let mut alice = s.client("scr", &alice_token);
    alice.initialize().await;

    // A resumed GET stream replays a list answer: it is filtered.
    let mut get = alice
        .request(reqwest::Method::GET)
        .header("last-event-id", "40")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    let mut buf = String::new();
    let replay = read_until(&mut get, &mut buf, |m| m.get("result").is_some()).await;
    assert_eq!(
        replay["result"]["tools"],
        json!([{"name": "public_tool"}]),
        "{buf}"
    );
    assert!(buf.starts_with("id: 41\nevent: message\ndata: "), "{buf}");

    // A list inside another method's result is filtered too.
    let r = alice.call("list_in_call", json!({})).await;
    assert_eq!(
        r.response()["result"]["tools"],
        json!([{"name": "public_tool"}]),
        "{}",
        r.text
    );

    // Answers two parsers read differently never reach the client.
    for tool in ["dup_answer", "case_answer", "html"] {
        let r = alice.call(tool, json!({})).await;
        assert_eq!(r.status, 502, "{tool}: {}", r.text);
        assert!(
            !r.text.contains("secret_tool") && !r.text.contains("other"),
            "{tool}: {}",
            r.text
        );
    }
    // An error status is relayed without a body that is no message; an
    // empty body is nothing to decide on, whatever its content type.
    let r = alice.call("plain_4xx", json!({})).await;
    assert_eq!((r.status, r.text.as_str()), (409, ""), "{r:?}");
    assert!(r.header("content-type").is_none(), "{r:?}");
    let r = alice.call("empty_json_202", json!({})).await;
    assert_eq!((r.status, r.text.as_str()), (202, ""), "{r:?}");
    // On an event stream: the good event passes, the bad one ends the
    // stream with an error answering the request.
    let r = alice.call("sse_bad", json!({})).await;
    let msgs = r.messages();
    assert_eq!(msgs.len(), 2, "{}", r.text);
    assert_eq!(msgs[0]["method"], "notifications/message");
    assert_eq!(msgs[1]["error"]["code"], -32001, "{}", r.text);
    assert!(!r.text.contains("\"x\""), "{}", r.text);

    // requestState: sealed on the way out, opened only for its owner.
    let r = alice.call("stateful", json!({})).await;
    let sealed = r.response()["result"]["requestState"].clone();
    assert!(
        sealed
            .as_str()
            .is_some_and(|s| s.starts_with("mcpgate.rs1.")),
        "{}",
        r.text
    );
    let retry = |state: Value| json!({"name": "stateful", "arguments": {}, "inputResponses": {}, "requestState": state});
    let r = alice.rpc("tools/call", retry(sealed.clone())).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(*states.lock().unwrap(), vec![json!("S1")]);

    let bob_token = s.token("bob", "", "scr").await;
    let mut bob = s.client("scr", &bob_token);
    bob.initialize().await;
    // One character of the sealed text changed: it decodes, but does not open.
    let mut tampered = sealed.as_str().unwrap().to_string();
    let c = if tampered.as_bytes()[20] == b'A' {
        "B"
    } else {
        "A"
    };
    tampered.replace_range(20..21, c);
    for (state, code_text) in [
        (sealed.clone(), "another user"),
        (json!("S1"), "not issued by this gateway"),
        (json!(tampered), "another user"),
    ] {
        let r = bob.rpc("tools/call", retry(state.clone())).await;
        assert_eq!(r.status, 400, "{state}: {}", r.text);
        let v = r.response();
        assert_eq!(v["error"]["code"], -32602, "{}", r.text);
        assert!(
            v["error"]["message"].as_str().unwrap().contains(code_text),
            "{}",
            r.text
        );
    }
    assert_eq!(
        states.lock().unwrap().len(),
        1,
        "a foreign state reached the upstream"
    );
}
