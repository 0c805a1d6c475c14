//! The conformance fixture (`mcpgate-conformance-server`) with rmcp's client:
//! over stdio (the binary as a child process) and over Streamable HTTP
//! (in-process, `serve_conformance_http`). The official suite itself runs in
//! `ci/conformance-server.sh`; these tests keep the fixture honest in
//! `cargo test`.

use std::process::Stdio;

use mcpgate_upstreams::conformance::{WATCHED_RESOURCE, serve_conformance_http};
use rmcp::model::{
    GetPromptRequestParams, LoggingLevel, ReadResourceRequestParams, SetLevelRequestParams,
    SubscribeRequestParams,
};
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use serde_json::{Value, json};

use crate::{ANSWER, Client, TestClient, call, connect, text};

const BIN: &str = env!("CARGO_BIN_EXE_mcpgate-conformance-server");

async fn stdio(client: TestClient) -> Client {
    let mut command = tokio::process::Command::new(BIN);
    command.arg("stdio").env("RUST_LOG", "warn");
    let (transport, _stderr) = TokioChildProcess::builder(command)
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn mcpgate-conformance-server stdio");
    connect(client, transport).await
}

/// The fixture's behaviour every transport must show.
async fn exercise(client: &Client, handler: &TestClient) {
    let tools = client.list_all_tools().await.unwrap();
    for name in [
        "test_simple_text",
        "test_sampling",
        "json_schema_2020_12_tool",
    ] {
        assert!(tools.iter().any(|t| t.name == name), "{name} listed");
    }
    let schema = &tools
        .iter()
        .find(|t| t.name == "json_schema_2020_12_tool")
        .unwrap()
        .input_schema;
    assert_eq!(schema["$defs"]["address"]["$anchor"], "addressDef");

    let simple = call(client, "test_simple_text", json!({})).await;
    assert_eq!(text(&simple), "This is a simple text response for testing.");
    let failed = call(client, "test_error_handling", json!({})).await;
    assert_eq!(failed.is_error, Some(true));

    // Sampling and elicitation are real requests to this client.
    let sampled = call(client, "test_sampling", json!({ "prompt": "Who?" })).await;
    assert_eq!(text(&sampled), format!("LLM response: {ANSWER}"));
    let elicited = call(client, "test_elicitation", json!({ "message": "Name?" })).await;
    assert!(text(&elicited).contains("action=accept"), "{elicited:?}");
    assert!(text(&elicited).contains(ANSWER), "{elicited:?}");

    // Logging honours logging/setLevel.
    call(client, "test_tool_with_logging", json!({})).await;
    handler
        .wait_for_event(|e| e["kind"] == "log" && e["params"]["data"] == "Tool execution completed")
        .await;
    client
        .set_level(SetLevelRequestParams::new(LoggingLevel::Error))
        .await
        .unwrap();
    let before = handler
        .events()
        .iter()
        .filter(|e| e["kind"] == "log")
        .count();
    call(client, "test_tool_with_logging", json!({})).await;
    let after = handler
        .events()
        .iter()
        .filter(|e| e["kind"] == "log")
        .count();
    assert_eq!(before, after, "info logs are filtered at level error");

    // Resources, templates, a not-found error with the URI.
    let read = |uri: &str| client.read_resource(ReadResourceRequestParams::new(uri));
    let data = serde_json::to_value(read("test://template/42/data").await.unwrap()).unwrap();
    let body: Value = serde_json::from_str(data["contents"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(body["id"], "42");
    let missing = read("test://nope").await.unwrap_err().to_string();
    assert!(missing.contains("Resource not found"), "{missing}");

    // Subscribe, change the watched resource, hear about it.
    client
        .subscribe(SubscribeRequestParams::new(WATCHED_RESOURCE))
        .await
        .unwrap();
    let update = call(client, "update_watched_resource", json!({})).await;
    assert!(text(&update).contains("subscribed: true"), "{update:?}");
    let watched = serde_json::to_value(read(WATCHED_RESOURCE).await.unwrap()).unwrap();
    assert_eq!(
        watched["contents"][0]["text"],
        "Watched resource, revision 1."
    );

    // Prompts with arguments; a missing argument is invalid params.
    let prompt = client
        .get_prompt(
            GetPromptRequestParams::new("test_prompt_with_arguments").with_arguments(
                serde_json::from_value(json!({ "arg1": "hello", "arg2": "world" })).unwrap(),
            ),
        )
        .await
        .unwrap();
    let prompt = serde_json::to_value(prompt).unwrap();
    assert_eq!(
        prompt["messages"][0]["content"]["text"],
        "Prompt with arguments: arg1='hello', arg2='world'"
    );
    assert!(
        client
            .get_prompt(GetPromptRequestParams::new("test_prompt_with_arguments"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn fixture_over_stdio() {
    let handler = TestClient::handshake();
    let client = stdio(handler.clone()).await;
    exercise(&client, &handler).await;
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn fixture_over_http() {
    let server = serve_conformance_http(0).await.unwrap();
    let handler = TestClient::handshake();
    let client = connect(
        handler.clone(),
        StreamableHttpClientTransport::from_uri(server.url()),
    )
    .await;
    exercise(&client, &handler).await;
    client.cancel().await.unwrap();
    server.shutdown().await.unwrap();
}
