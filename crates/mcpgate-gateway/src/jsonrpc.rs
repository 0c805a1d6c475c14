//! The JSON-RPC 2.0 envelope of MCP messages (MCP basic/transports,
//! checklist §2(e)): the gateway parses only what policy needs (kind, id,
//! method, tool name, the 2026-07-28 `_meta` protocol version) and forwards
//! the bytes it received. Error bodies carry no internal detail.

use bytes::Bytes;
use serde_json::{Value, json};

/// JSON-RPC error codes the gateway emits.
pub mod codes {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    /// Gateway-level refusals (authentication, policy, rate limit, session).
    pub const SERVER_ERROR: i64 = -32000;
    /// The upstream failed or is unreachable.
    pub const UPSTREAM_ERROR: i64 = -32001;
    /// 2026-07-28: an `Mcp-*` header disagrees with the body.
    pub const HEADER_MISMATCH: i64 = -32020;
    /// The requested protocol version is not supported.
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
    /// Method not found (2026-07-28 answers it with HTTP 404).
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// 2026-07-28: the request needs a client capability it did not declare.
    pub const MISSING_REQUIRED_CLIENT_CAPABILITY: i64 = -32021;
}

/// The `_meta` key 2026-07-28 clients put their protocol version under.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// The `_meta` key 2026-07-28 clients put their capabilities under.
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Notification,
    Response,
}

/// One parsed client→server message.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub kind: Kind,
    pub id: Option<Value>,
    pub method: Option<String>,
    /// `params.name` of `tools/call` and `prompts/get`, `params.uri` of
    /// `resources/read`: what `Mcp-Name` must equal.
    pub name: Option<String>,
    /// `params._meta["io.modelcontextprotocol/protocolVersion"]`.
    pub meta_version: Option<String>,
    pub value: Value,
}

impl Envelope {
    /// The tool of a `tools/call`.
    pub fn tool(&self) -> Option<&str> {
        (self.method.as_deref() == Some("tools/call"))
            .then_some(self.name.as_deref())
            .flatten()
    }

    pub fn is(&self, method: &str) -> bool {
        self.method.as_deref() == Some(method)
    }
}

/// Why a body is not one JSON-RPC message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not JSON: -32700.
    NotJson,
    /// JSON but not a single JSON-RPC 2.0 message (batches included): -32600.
    Invalid(&'static str),
}

impl ParseError {
    pub fn code(&self) -> i64 {
        match self {
            ParseError::NotJson => codes::PARSE_ERROR,
            ParseError::Invalid(_) => codes::INVALID_REQUEST,
        }
    }

    pub fn message(&self) -> &'static str {
        match self {
            ParseError::NotJson => "parse error",
            ParseError::Invalid(m) => m,
        }
    }
}

fn valid_id(id: &Value) -> bool {
    matches!(id, Value::String(_)) || id.as_i64().is_some() || id.as_u64().is_some()
}

/// Parses one message. Batches (removed in 2025-06-18) are refused.
pub fn parse(body: &[u8]) -> Result<Envelope, ParseError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| ParseError::NotJson)?;
    parse_value(value)
}

pub fn parse_value(value: Value) -> Result<Envelope, ParseError> {
    let obj = match &value {
        Value::Object(o) => o,
        Value::Array(_) => return Err(ParseError::Invalid("JSON-RPC batches are not supported")),
        _ => return Err(ParseError::Invalid("not a JSON-RPC message")),
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(ParseError::Invalid("jsonrpc must be \"2.0\""));
    }
    let id = obj.get("id").cloned();
    if let Some(i) = &id
        && !valid_id(i)
    {
        return Err(ParseError::Invalid("id must be a string or an integer"));
    }
    let method = match obj.get("method") {
        None => None,
        Some(Value::String(m)) => Some(m.clone()),
        Some(_) => return Err(ParseError::Invalid("method must be a string")),
    };
    let kind = match (&method, &id) {
        (Some(_), Some(_)) => Kind::Request,
        (Some(_), None) => Kind::Notification,
        (None, Some(_)) if obj.contains_key("result") || obj.contains_key("error") => {
            Kind::Response
        }
        _ => {
            return Err(ParseError::Invalid(
                "not a request, notification or response",
            ));
        }
    };
    let params = obj.get("params");
    if params.is_some_and(|p| !p.is_object() && !p.is_array()) {
        return Err(ParseError::Invalid("params must be an object"));
    }
    let name = match method.as_deref() {
        Some("tools/call" | "prompts/get") => match params.and_then(|p| p.get("name")) {
            Some(Value::String(n)) => Some(n.clone()),
            Some(_) => return Err(ParseError::Invalid("params.name must be a string")),
            None => None,
        },
        Some("resources/read") => params
            .and_then(|p| p.get("uri"))
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => None,
    };
    let meta_version = params
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get(META_PROTOCOL_VERSION))
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(Envelope {
        kind,
        id,
        method,
        name,
        meta_version,
        value,
    })
}

/// A JSON-RPC error object body. `id` is `null` when the request's id is
/// unknown (MCP: errors before parsing carry no id).
pub fn error_value(id: Option<&Value>, code: i64, message: &str) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id.cloned().unwrap_or(Value::Null),
        "error": { "code": code, "message": message },
    })
}

pub fn error_body(id: Option<&Value>, code: i64, message: &str) -> Bytes {
    Bytes::from(error_value(id, code, message).to_string())
}

/// Decodes an `Mcp-Name`/`Mcp-Method` header value: plain visible ASCII,
/// or the base64 sentinel form `=?base64?…?=` for values that are not
/// header-safe (2026-07-28 transports).
pub fn decode_header_value(raw: &str) -> Option<String> {
    if let Some(inner) = raw
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(inner)
            .ok()?;
        return String::from_utf8(bytes).ok();
    }
    Some(raw.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let r = parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{}}}"#).unwrap();
        assert_eq!(r.kind, Kind::Request);
        assert_eq!(r.tool(), Some("add"));
        let n = parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert_eq!(n.kind, Kind::Notification);
        let s = parse(br#"{"jsonrpc":"2.0","id":"x","result":{}}"#).unwrap();
        assert_eq!(s.kind, Kind::Response);
        assert_eq!(s.tool(), None);
    }

    #[test]
    fn rejects() {
        assert_eq!(parse(b"nope").unwrap_err(), ParseError::NotJson);
        assert!(matches!(parse(b"[]").unwrap_err(), ParseError::Invalid(_)));
        assert!(parse(br#"{"id":1,"method":"x"}"#).is_err());
        assert!(parse(br#"{"jsonrpc":"2.0","id":1.5,"method":"x"}"#).is_err());
        assert!(
            parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":3}}"#)
                .is_err()
        );
        assert!(parse(br#"{"jsonrpc":"2.0","id":1}"#).is_err());
    }

    #[test]
    fn meta_version_and_names() {
        let r = parse(
            br#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"a://b","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        )
        .unwrap();
        assert_eq!(r.meta_version.as_deref(), Some("2026-07-28"));
        assert_eq!(r.name.as_deref(), Some("a://b"));
        assert_eq!(decode_header_value("=?base64?w6k=?=").as_deref(), Some("é"));
        assert_eq!(decode_header_value("plain").as_deref(), Some("plain"));
    }

    #[test]
    fn error_shape() {
        let v = error_value(None, codes::HEADER_MISMATCH, "m");
        assert_eq!(v["id"], Value::Null);
        assert_eq!(v["error"]["code"], -32020);
    }
}
