//! The notes demo over stdio (`mcpgate-test-upstream notes-stdio`, the same
//! function `mcpgate demo-upstream` runs).

use mcpgate_upstreams::NOTES_TOOL_SCOPES;
use serde_json::json;

use crate::{TestClient, call, stdio_client, structured, text, tool, tool_names};

#[tokio::test]
async fn notes_over_stdio_initialize_list_and_crud() {
    let client = stdio_client("notes-stdio", TestClient::handshake(), |_| {}).await;

    let info = client.peer_info().expect("initialize result");
    assert_eq!(info.server_info.as_ref().unwrap().name, "mcpgate-notes");
    assert!(info.capabilities.tools.is_some());

    let tools = client.list_all_tools().await.unwrap();
    assert_eq!(
        tool_names(&tools),
        ["add_note", "delete_note", "list_notes", "read_note"]
    );
    for (name, scope) in NOTES_TOOL_SCOPES {
        let description = tool(&tools, name).description.as_deref().unwrap();
        assert!(description.contains(scope), "{name}: {description}");
    }
    let add = &tool(&tools, "add_note").input_schema;
    assert_eq!(add["required"], json!(["title", "body"]));
    assert_eq!(add["properties"]["title"]["type"], "string");
    let read = &tool(&tools, "read_note").input_schema;
    assert_eq!(read["required"], json!(["id"]));
    assert_eq!(read["properties"]["id"]["type"], "integer");

    let listed = call(&client, "list_notes", json!({})).await;
    assert_eq!(
        structured(&listed)["notes"],
        json!([{ "id": 1, "title": "Welcome" }])
    );

    let added = call(
        &client,
        "add_note",
        json!({ "title": "Groceries", "body": "milk, eggs" }),
    )
    .await;
    assert_eq!(
        structured(&added),
        &json!({ "id": 2, "title": "Groceries", "body": "milk, eggs" })
    );

    let listed = call(&client, "list_notes", json!({})).await;
    assert_eq!(
        structured(&listed)["notes"],
        json!([{ "id": 1, "title": "Welcome" }, { "id": 2, "title": "Groceries" }])
    );

    let read = call(&client, "read_note", json!({ "id": 2 })).await;
    assert_eq!(structured(&read)["body"], "milk, eggs");

    let deleted = call(&client, "delete_note", json!({ "id": 2 })).await;
    assert_eq!(structured(&deleted), &json!({ "deleted": 2 }));

    let gone = call(&client, "read_note", json!({ "id": 2 })).await;
    assert_eq!(gone.is_error, Some(true));
    assert_eq!(text(&gone), "no note with id 2");

    let listed = call(&client, "list_notes", json!({})).await;
    assert_eq!(structured(&listed)["notes"].as_array().unwrap().len(), 1);

    // Bad arguments are an error result, not a crash.
    let bad = call(&client, "read_note", json!({ "id": "x" })).await;
    assert_eq!(bad.is_error, Some(true));
    assert!(text(&bad).contains("failed to deserialize parameters"));

    client.cancel().await.unwrap();
}

#[tokio::test]
async fn each_stdio_process_has_its_own_notebook() {
    let first = stdio_client("notes-stdio", TestClient::handshake(), |_| {}).await;
    let second = stdio_client("notes-stdio", TestClient::handshake(), |_| {}).await;
    call(&first, "add_note", json!({ "title": "mine", "body": "" })).await;
    let listed = call(&second, "list_notes", json!({})).await;
    assert_eq!(structured(&listed)["notes"].as_array().unwrap().len(), 1);
    first.cancel().await.unwrap();
    second.cancel().await.unwrap();
}
