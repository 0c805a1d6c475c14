//! Server-to-client messages for the MCP client role: requests the server sends over a response
//! stream (2025-06-18 / 2025-11-25: `elicitation/create`, `sampling/createMessage`,
//! `roots/list`, `ping`), input requests carried in an `input_required` result (2026-07-28
//! multi-round tool requests, SEP-2322), and notifications. [`ServerHandler`] is the seam the
//! CLI and `bridge` implement; [`DefaultHandler`] answers `ping` and `roots/list` and declines
//! everything that needs a person.

use async_trait::async_trait;
use serde_json::{Value, json};

/// A JSON-RPC error to send back to the server.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    /// JSON-RPC error code.
    pub code: i64,
    /// Message.
    pub message: String,
    /// Optional data.
    pub data: Option<Value>,
}

impl RpcError {
    /// `-32601 Method not found`.
    pub fn method_not_found(method: &str) -> Self {
        Self {
            code: -32601,
            message: format!("method not supported by this client: {method}"),
            data: None,
        }
    }

    /// The JSON-RPC `error` member.
    pub fn to_value(&self) -> Value {
        let mut v = json!({"code": self.code, "message": self.message});
        if let Some(d) = &self.data {
            v["data"] = d.clone();
        }
        v
    }
}

/// Handles what the server asks of the client.
#[async_trait]
pub trait ServerHandler: Send + Sync {
    /// A request from the server; the returned value is the `result`.
    async fn on_request(&self, method: &str, params: Value) -> Result<Value, RpcError>;

    /// A notification from the server (progress, logging, list changes).
    async fn on_notification(&self, method: &str, params: Value) {
        tracing::debug!(method, %params, "server notification");
    }
}

/// Answers `ping` and `roots/list` (no roots); declines elicitation; refuses sampling.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultHandler;

#[async_trait]
impl ServerHandler for DefaultHandler {
    async fn on_request(&self, method: &str, _params: Value) -> Result<Value, RpcError> {
        match method {
            "ping" => Ok(json!({})),
            "roots/list" => Ok(json!({"roots": []})),
            "elicitation/create" => Ok(json!({"action": "decline"})),
            other => Err(RpcError::method_not_found(other)),
        }
    }
}

/// The content an elicitation form gets when the user accepts without editing: every property
/// of `requestedSchema` that declares a `default` gets it (SEP-1034).
pub fn elicitation_defaults(params: &Value) -> Value {
    let mut content = serde_json::Map::new();
    if let Some(props) = params
        .get("requestedSchema")
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
    {
        for (name, schema) in props {
            if let Some(default) = schema.get("default") {
                content.insert(name.clone(), default.clone());
            }
        }
    }
    Value::Object(content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_applied() {
        let params = json!({"requestedSchema":{"type":"object","properties":{
            "name":{"type":"string","default":"John Doe"},
            "age":{"type":"integer","default":30},
            "x":{"type":"string"}}}});
        assert_eq!(
            elicitation_defaults(&params),
            json!({"name":"John Doe","age":30})
        );
        assert_eq!(elicitation_defaults(&json!({})), json!({}));
    }

    #[tokio::test]
    async fn default_handler() {
        let h = DefaultHandler;
        assert_eq!(h.on_request("ping", json!({})).await.unwrap(), json!({}));
        assert!(
            h.on_request("sampling/createMessage", json!({}))
                .await
                .is_err()
        );
    }
}
