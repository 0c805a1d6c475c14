//! The testing fixture over Streamable HTTP: in process
//! ([`serve_testing_http`]) and as the binary's `testing-http` mode.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use mcpgate_upstreams::serve_testing_http;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::{ANSWER, BIN, Client, TestClient, call, structured, text, tool_names};

async fn http_client(
    url: &str,
    handler: TestClient,
    config: impl FnOnce(StreamableHttpClientTransportConfig) -> StreamableHttpClientTransportConfig,
) -> Client {
    let transport = StreamableHttpClientTransport::from_config(config(
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()),
    ));
    crate::connect(handler, transport).await
}

#[tokio::test]
async fn session_client_tools_elicitation_and_notifications() {
    let (addr, server) = serve_testing_http().await.unwrap();
    assert!(addr.ip().is_loopback());
    assert_eq!(server.url(), format!("http://{addr}/mcp"));
    let handler = TestClient::handshake();
    let client = http_client(&server.url(), handler.clone(), |c| c).await;
    assert_eq!(
        client
            .peer_info()
            .unwrap()
            .server_info
            .as_ref()
            .unwrap()
            .name,
        "mcpgate-testing"
    );

    let tools = client.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), 7);
    tool_names(&tools);

    let echoed = call(&client, "echo", json!({ "text": "over http" })).await;
    assert_eq!(text(&echoed), "over http");

    let asked = call(&client, "ask_user", json!({ "question": "Name?" })).await;
    assert_eq!(structured(&asked)["answer"], ANSWER);
    assert_eq!(structured(&asked)["round_trip"], "request");
    let sampled = call(
        &client,
        "ask_user",
        json!({ "question": "Name?", "via": "sampling" }),
    )
    .await;
    assert_eq!(structured(&sampled)["answer"], ANSWER);

    let notified = call(&client, "notify", json!({ "message": "over sse" })).await;
    assert_eq!(text(&notified), "notified");
    let log = handler.wait_for_event(|e| e["kind"] == "log").await;
    assert_eq!(log["params"]["data"]["message"], "over sse");
    let progress = handler.wait_for_event(|e| e["kind"] == "progress").await;
    assert_eq!(progress["params"]["message"], "over sse");

    // In process, crash is disabled: it must not kill the test harness.
    let crash = call(&client, "crash", json!({})).await;
    assert_eq!(crash.is_error, Some(true));
    let env = call(&client, "env", json!({})).await;
    assert!(structured(&env).is_object());

    client.cancel().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn headers_are_recorded_and_reported() {
    let (_, server) = serve_testing_http().await.unwrap();
    let recorded = server.recorded_headers();

    // A client that sends credentials: the recorder must see them (this is
    // what lets gateway tests assert that *no* credential reached upstream).
    let custom = HashMap::from([
        (
            HeaderName::from_static("cookie"),
            HeaderValue::from_static("sid=secret"),
        ),
        (
            HeaderName::from_static("x-test"),
            HeaderValue::from_static("1"),
        ),
    ]);
    let leaky = http_client(&server.url(), TestClient::handshake(), |c| {
        c.auth_header("token-123").custom_headers(custom)
    })
    .await;
    let seen = call(&leaky, "headers", json!({})).await;
    let headers = &structured(&seen)["headers"];
    assert_eq!(headers["authorization"], json!(["Bearer token-123"]));
    assert_eq!(headers["cookie"], json!(["sid=secret"]));
    assert_eq!(headers["x-test"], json!(["1"]));
    assert!(
        headers["host"][0]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert!(recorded.any_has("authorization") && recorded.any_has("cookie"));
    let all = recorded.all();
    assert!(all.iter().any(|r| r.method == "POST" && r.path == "/mcp"));
    assert!(
        all.iter()
            .all(|r| r.header("authorization") == Some("Bearer token-123"))
    );
    leaky.cancel().await.unwrap();

    // A clean client: nothing credential-like is recorded, and the tool's
    // `all` view agrees with the handle's.
    recorded.clear();
    let clean = http_client(&server.url(), TestClient::handshake(), |c| c).await;
    let seen = call(&clean, "headers", json!({ "all": true })).await;
    let requests = structured(&seen)["requests"].as_array().unwrap().clone();
    assert!(!requests.is_empty());
    assert!(
        requests
            .iter()
            .all(|r| r["headers"].get("authorization").is_none())
    );
    assert!(!recorded.any_has("authorization") && !recorded.any_has("cookie"));
    clean.cancel().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn stateless_client_over_http() {
    let (_, server) = serve_testing_http().await.unwrap();
    let handler = TestClient::stateless();
    let client = http_client(&server.url(), handler.clone(), |c| c).await;
    let echoed = call(&client, "echo", json!({ "text": "2026" })).await;
    assert_eq!(text(&echoed), "2026");
    let asked = call(&client, "ask_user", json!({ "question": "Name?" })).await;
    assert_eq!(structured(&asked)["answer"], ANSWER);
    assert_eq!(structured(&asked)["round_trip"], "input_required");
    handler.wait_for_event(|e| e["kind"] == "elicitation").await;
    let seen = call(&client, "headers", json!({})).await;
    assert!(structured(&seen)["headers"]["host"].is_array());
    let notified = call(&client, "notify", json!({ "message": "stateless" })).await;
    assert_eq!(text(&notified), "notified");
    handler
        .wait_for_event(|e| e["kind"] == "progress" && e["params"]["message"] == "stateless")
        .await;
    handler
        .wait_for_event(|e| e["kind"] == "log" && e["params"]["data"]["message"] == "stateless")
        .await;
    client.cancel().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn binary_http_mode_prints_its_address_and_can_crash() {
    let mut child = tokio::process::Command::new(BIN)
        .arg("testing-http")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(30), stdout.read_line(&mut line))
        .await
        .expect("LISTENING within 30 s")
        .unwrap();
    let addr = line
        .trim_end()
        .strip_prefix("LISTENING ")
        .unwrap_or_else(|| panic!("first line: {line:?}"));
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");

    let client = http_client(
        &format!("http://{addr}/mcp"),
        TestClient::handshake(),
        |c| c,
    )
    .await;
    let echoed = call(&client, "echo", json!({ "text": "child" })).await;
    assert_eq!(text(&echoed), "child");

    // The server dies without answering; the child exits with the crash code.
    let pending = tokio::spawn(async move { crate::try_call(&client, "crash", json!({})).await });
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the server exits")
        .unwrap();
    assert_eq!(
        status.code(),
        Some(mcpgate_upstreams::testing::CRASH_EXIT_CODE)
    );
    // rmcp's HTTP client may keep retrying the dead stream: it must not succeed.
    if let Ok(Ok(result)) = tokio::time::timeout(Duration::from_millis(500), pending).await {
        assert!(result.is_err(), "{result:?}");
    }
}
