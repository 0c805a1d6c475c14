//! The testing fixture over stdio (`mcpgate-test-upstream testing-stdio`).

use std::time::Duration;

use serde_json::json;

use crate::{ANSWER, TestClient, call, stdio_client, structured, text, tool, tool_names, try_call};

const TOOLS: [&str; 7] = [
    "ask_user", "crash", "echo", "env", "headers", "notify", "slow",
];

#[tokio::test]
async fn lists_tools_with_schemas_and_echoes() {
    let client = stdio_client("testing-stdio", TestClient::handshake(), |_| {}).await;
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
    assert_eq!(tool_names(&tools), TOOLS);
    let echo = &tool(&tools, "echo").input_schema;
    assert_eq!(echo["required"], json!(["text"]));
    let slow = &tool(&tools, "slow").input_schema;
    assert_eq!(slow["required"], json!(["ms"]));
    let ask = &tool(&tools, "ask_user").input_schema;
    assert_eq!(ask["required"], json!(["question"]));

    let echoed = call(&client, "echo", json!({ "text": "hé \n \"quoted\"" })).await;
    assert_eq!(text(&echoed), "hé \n \"quoted\"");

    let headers = call(&client, "headers", json!({})).await;
    assert_eq!(headers.is_error, Some(true), "headers is HTTP-only");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn env_reports_exactly_the_childs_environment() {
    let cleared = stdio_client("testing-stdio", TestClient::handshake(), |cmd| {
        cmd.env_clear().env("MCPGATE_DECLARED", "yes");
    })
    .await;
    let env = call(&cleared, "env", json!({})).await;
    assert_eq!(
        structured(&env),
        &json!({ "MCPGATE_DECLARED": "yes", "RUST_LOG": "warn" })
    );
    cleared.cancel().await.unwrap();

    // Without clearing, the child inherits the test's environment (Cargo sets
    // CARGO_MANIFEST_DIR for test processes): the tool really reports it.
    let inherited = stdio_client("testing-stdio", TestClient::handshake(), |_| {}).await;
    let env = call(&inherited, "env", json!({})).await;
    assert_eq!(
        structured(&env)["CARGO_MANIFEST_DIR"],
        env!("CARGO_MANIFEST_DIR")
    );
    inherited.cancel().await.unwrap();
}

#[tokio::test]
async fn slow_sleeps_and_bounds_its_argument() {
    let client = stdio_client("testing-stdio", TestClient::handshake(), |_| {}).await;
    let started = std::time::Instant::now();
    let slept = call(&client, "slow", json!({ "ms": 200 })).await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(text(&slept), "slept 200 ms");
    let too_long = call(&client, "slow", json!({ "ms": u64::MAX })).await;
    assert_eq!(too_long.is_error, Some(true));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn crash_kills_the_child_mid_request() {
    let client = stdio_client("testing-stdio", TestClient::handshake(), |_| {}).await;
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        try_call(&client, "crash", json!({})),
    )
    .await
    .expect("the call ends when the child dies");
    assert!(result.is_err(), "no answer from a dead child: {result:?}");
    let next = tokio::time::timeout(
        Duration::from_secs(10),
        try_call(&client, "echo", json!({ "text": "x" })),
    )
    .await
    .expect("later calls fail fast");
    assert!(next.is_err());
}

#[tokio::test]
async fn ask_user_elicitation_and_sampling_round_trip() {
    let handler = TestClient::handshake();
    let client = stdio_client("testing-stdio", handler.clone(), |_| {}).await;

    let asked = call(&client, "ask_user", json!({ "question": "Your name?" })).await;
    assert_eq!(
        structured(&asked),
        &json!({
            "via": "elicitation",
            "round_trip": "request",
            "action": "accept",
            "answer": ANSWER
        })
    );
    let request = handler.wait_for_event(|e| e["kind"] == "elicitation").await;
    assert_eq!(request["request"]["message"], "Your name?");
    assert_eq!(
        request["request"]["requestedSchema"]["required"],
        json!(["answer"])
    );

    let sampled = call(
        &client,
        "ask_user",
        json!({ "question": "Capital of France?", "via": "sampling" }),
    )
    .await;
    assert_eq!(structured(&sampled)["answer"], ANSWER);
    assert_eq!(structured(&sampled)["model"], "test-model");
    assert_eq!(structured(&sampled)["round_trip"], "request");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn notify_sends_logging_and_progress_notifications() {
    let handler = TestClient::handshake();
    let client = stdio_client("testing-stdio", handler.clone(), |_| {}).await;
    // rmcp's client puts a progressToken on every request, so the tool also
    // sends a progress notification.
    let result = call(&client, "notify", json!({ "message": "tick" })).await;
    assert_eq!(text(&result), "notified");

    let log = handler.wait_for_event(|e| e["kind"] == "log").await;
    assert_eq!(log["params"]["data"], json!({ "message": "tick" }));
    assert_eq!(log["params"]["logger"], "mcpgate-testing");
    let progress = handler.wait_for_event(|e| e["kind"] == "progress").await;
    assert!(!progress["params"]["progressToken"].is_null());
    assert_eq!(progress["params"]["message"], "tick");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn stateless_protocol_uses_input_required_results() {
    let handler = TestClient::stateless();
    let client = stdio_client("testing-stdio", handler.clone(), |_| {}).await;
    let echoed = call(&client, "echo", json!({ "text": "stateless" })).await;
    assert_eq!(text(&echoed), "stateless");
    // rmcp's client fulfils the InputRequiredResult and retries by itself.
    let asked = call(&client, "ask_user", json!({ "question": "Name?" })).await;
    assert_eq!(structured(&asked)["answer"], ANSWER);
    assert_eq!(structured(&asked)["round_trip"], "input_required");
    let sampled = call(
        &client,
        "ask_user",
        json!({ "question": "Name?", "via": "sampling" }),
    )
    .await;
    assert_eq!(structured(&sampled)["answer"], ANSWER);
    assert_eq!(structured(&sampled)["round_trip"], "input_required");
    handler.wait_for_event(|e| e["kind"] == "elicitation").await;
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn serves_prompts_and_resources() {
    use mcpgate_upstreams::testing::{PROMPTS, RESOURCE_TEMPLATE, RESOURCES};
    use rmcp::model::{GetPromptRequestParams, ReadResourceRequestParams};

    let client = stdio_client("testing-stdio", TestClient::handshake(), |_| {}).await;
    let prompts = client.list_all_prompts().await.unwrap();
    let names: Vec<&str> = prompts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, PROMPTS);
    let got = client
        .get_prompt(GetPromptRequestParams::new("plan"))
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&got).unwrap()["messages"][0]["content"]["text"],
        "prompt plan"
    );
    assert!(
        client
            .get_prompt(GetPromptRequestParams::new("nope"))
            .await
            .is_err()
    );

    let resources = client.list_all_resources().await.unwrap();
    let uris: Vec<&str> = resources.iter().map(|r| r.uri.as_str()).collect();
    assert_eq!(uris, RESOURCES);
    let templates = client.list_all_resource_templates().await.unwrap();
    assert_eq!(
        serde_json::to_value(&templates).unwrap()[0]["uriTemplate"],
        RESOURCE_TEMPLATE
    );
    for uri in ["fixture://readme", "fixture://notes/7"] {
        let read = client
            .read_resource(ReadResourceRequestParams::new(uri))
            .await
            .unwrap();
        assert_eq!(
            serde_json::to_value(&read).unwrap()["contents"][0]["text"],
            format!("contents of {uri}")
        );
    }
    assert!(
        client
            .read_resource(ReadResourceRequestParams::new("fixture://nope"))
            .await
            .is_err()
    );
    client.cancel().await.unwrap();
}
