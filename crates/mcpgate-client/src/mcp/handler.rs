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

/// URLElicitationRequiredError (MCP 2025-11-25 elicitation): the request
/// can succeed only after the user completes the URL-mode elicitations in
/// the error's `data`.
pub const URL_ELICITATION_REQUIRED: i64 = -32042;

/// One URL-mode elicitation the user must complete in their browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlElicitation {
    pub url: String,
    pub message: String,
}

/// The URL-mode elicitations of a URLElicitationRequiredError's `data`, only
/// those with an http(s) URL (a client must not open another scheme).
pub fn url_elicitations(error_data: &Value) -> Vec<UrlElicitation> {
    let Some(list) = error_data.get("elicitations").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .filter(|e| e.get("mode").and_then(Value::as_str) == Some("url"))
        .filter_map(|e| {
            let url = e.get("url")?.as_str()?;
            let scheme = url::Url::parse(url).ok()?.scheme().to_owned();
            matches!(scheme.as_str(), "https" | "http").then(|| UrlElicitation {
                url: url.to_owned(),
                message: e
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            })
        })
        .collect()
}

/// How a URL elicitation is shown to a person (stderr of the CLI and the
/// bridge): the message, then the full URL, which nothing opens unasked.
pub fn describe_url_elicitation(e: &UrlElicitation) -> String {
    let mut out = String::new();
    if !e.message.is_empty() {
        out.push_str(&e.message);
        out.push('\n');
    }
    out.push_str(
        "Open this address in your browser, signed in as yourself (it works for nobody else):\n  ",
    );
    out.push_str(&e.url);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_elicitations_keep_http_urls_only() {
        let data = json!({"elicitations": [
            {"mode": "url", "elicitationId": "a", "url": "https://gw.example/connect/x?elicitation=a", "message": "Connect X."},
            {"mode": "url", "elicitationId": "b", "url": "javascript:alert(1)", "message": "no"},
            {"mode": "url", "elicitationId": "c", "url": "file:///etc/passwd", "message": "no"},
            {"mode": "form", "message": "not a url one"},
        ]});
        let got = url_elicitations(&data);
        assert_eq!(
            got,
            [UrlElicitation {
                url: "https://gw.example/connect/x?elicitation=a".into(),
                message: "Connect X.".into()
            }]
        );
        assert!(
            describe_url_elicitation(&got[0])
                .ends_with("\n  https://gw.example/connect/x?elicitation=a")
        );
        assert!(url_elicitations(&json!({})).is_empty());
    }

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
