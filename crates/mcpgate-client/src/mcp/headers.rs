//! HTTP headers derived from MCP messages (SEP-2243, MCP 2026-07-28 transports, "Standard MCP
//! request headers" and "Custom headers from tool parameters"):
//!
//! - `Mcp-Method` (every POST) and `Mcp-Name` (`tools/call`, `prompts/get`: `params.name`;
//!   `resources/read`: `params.uri`);
//! - `Mcp-Param-{Name}` for each tool argument whose input-schema property carries
//!   `x-mcp-header: Name`: strings as is when they are plain printable ASCII without
//!   leading/trailing whitespace, else `=?base64?…?=`; integers and booleans as their JSON text;
//!   `null` or absent arguments send no header;
//! - tool definitions with an invalid `x-mcp-header` (empty, not an RFC 9110 token, on a
//!   property that is not `string`, `integer` or `boolean` — `number` is excluded because a
//!   float has no single text form — or a case-insensitive duplicate) are rejected: such a tool
//!   is left out of the listing, the other tools stay usable.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

/// One argument mirrored into a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamHeader {
    /// The argument (property) name.
    pub property: String,
    /// The header suffix: the header is `Mcp-Param-{name}`.
    pub name: String,
}

/// Why a tool definition was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderAnnotationError {
    /// `x-mcp-header` is not a non-empty string.
    #[error("property {0:?}: x-mcp-header must be a non-empty string")]
    Empty(String),
    /// The name has characters a header name cannot have.
    #[error(
        "property {0:?}: x-mcp-header must be an HTTP token (ASCII, no spaces, colons or controls)"
    )]
    Charset(String),
    /// The property is not a string, integer or boolean.
    #[error(
        "property {0:?}: x-mcp-header is allowed only on string, integer or boolean properties"
    )]
    NotPrimitive(String),
    /// Two properties map to the same header name.
    #[error("x-mcp-header {0:?} is used twice (names are case-insensitive)")]
    Duplicate(String),
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The `x-mcp-header` annotations of a tool's `inputSchema`, validated.
pub fn tool_param_headers(input_schema: &Value) -> Result<Vec<ParamHeader>, HeaderAnnotationError> {
    let mut out: Vec<ParamHeader> = Vec::new();
    let Some(properties) = input_schema.get("properties").and_then(Value::as_object) else {
        return Ok(out);
    };
    for (property, schema) in properties {
        let Some(annotation) = schema.get("x-mcp-header") else {
            continue;
        };
        let name = match annotation.as_str() {
            Some(n) if !n.is_empty() => n,
            _ => return Err(HeaderAnnotationError::Empty(property.clone())),
        };
        if !name.bytes().all(is_tchar) {
            return Err(HeaderAnnotationError::Charset(property.clone()));
        }
        let primitive = matches!(
            schema.get("type").and_then(Value::as_str),
            Some("string" | "integer" | "boolean")
        );
        if !primitive {
            return Err(HeaderAnnotationError::NotPrimitive(property.clone()));
        }
        if out.iter().any(|h| h.name.eq_ignore_ascii_case(name)) {
            return Err(HeaderAnnotationError::Duplicate(name.to_owned()));
        }
        out.push(ParamHeader {
            property: property.clone(),
            name: name.to_owned(),
        });
    }
    Ok(out)
}

/// Whether a string can be sent as a header value as is: printable ASCII (space allowed
/// inside) and no leading or trailing whitespace.
fn is_plain(value: &str) -> bool {
    value.bytes().all(|b| (0x20..=0x7e).contains(&b)) && value.trim() == value
}

/// Encodes one string for a header: plain when safe, else `=?base64?{base64(utf-8)}?=`.
pub fn encode_value(value: &str) -> String {
    if is_plain(value) {
        value.to_owned()
    } else {
        format!("=?base64?{}?=", STANDARD.encode(value.as_bytes()))
    }
}

/// The `Mcp-Param-*` headers for `arguments` (absent and `null` arguments send none).
pub fn param_header_values(headers: &[ParamHeader], arguments: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for h in headers {
        let text = match arguments.get(&h.property) {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) => encode_value(s),
            Some(Value::Bool(b)) => b.to_string(),
            Some(Value::Number(n)) => n.to_string(),
            // The schema said primitive; a structured value is not mirrored.
            Some(_) => continue,
        };
        out.push((format!("Mcp-Param-{}", h.name), text));
    }
    out
}

/// The `Mcp-Name` value for `method`, if that method has one.
pub fn mcp_name(method: &str, params: Option<&Value>) -> Option<String> {
    let field = match method {
        "tools/call" | "prompts/get" => "name",
        "resources/read" => "uri",
        _ => return None,
    };
    params
        .and_then(|p| p.get(field))
        .and_then(Value::as_str)
        .map(encode_value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn valid_annotations() {
        let schema = json!({"type":"object","properties":{
            "region":{"type":"string","x-mcp-header":"Region"},
            "n":{"type":"integer","x-mcp-header":"Priority"},
            "q":{"type":"string"}}});
        let h = tool_param_headers(&schema).unwrap();
        assert_eq!(h.len(), 2);
        assert!(
            h.iter()
                .any(|p| p.property == "region" && p.name == "Region")
        );
    }

    #[test]
    fn invalid_annotations_are_rejected() {
        let cases = [
            json!({"properties":{"v":{"type":"string","x-mcp-header":""}}}),
            json!({"properties":{"v":{"type":"object","x-mcp-header":"Data"}}}),
            json!({"properties":{"v":{"type":"array","x-mcp-header":"Items"}}}),
            json!({"properties":{"v":{"type":"null","x-mcp-header":"Nil"}}}),
            json!({"properties":{"v":{"type":"number","x-mcp-header":"Score"}}}),
            json!({"properties":{"a":{"type":"string","x-mcp-header":"Region"},"b":{"type":"string","x-mcp-header":"Region"}}}),
            json!({"properties":{"a":{"type":"string","x-mcp-header":"MyField"},"b":{"type":"string","x-mcp-header":"myfield"}}}),
            json!({"properties":{"v":{"type":"string","x-mcp-header":"My Region"}}}),
            json!({"properties":{"v":{"type":"string","x-mcp-header":"Region:Primary"}}}),
            json!({"properties":{"v":{"type":"string","x-mcp-header":"Région"}}}),
            json!({"properties":{"v":{"type":"string","x-mcp-header":"Region\t1"}}}),
            json!({"properties":{"v":{"type":"string","x-mcp-header":7}}}),
        ];
        for c in cases {
            assert!(tool_param_headers(&c).is_err(), "{c}");
        }
    }

    #[test]
    fn value_encoding() {
        assert_eq!(encode_value("us-west1"), "us-west1");
        assert_eq!(encode_value("us west 1"), "us west 1");
        assert_eq!(encode_value(""), "");
        assert_eq!(
            encode_value(" padded "),
            format!("=?base64?{}?=", STANDARD.encode(" padded "))
        );
        assert!(encode_value("Hello, 世界").starts_with("=?base64?"));
        assert!(encode_value("line1\nline2").starts_with("=?base64?"));
        assert!(encode_value("\tindented").starts_with("=?base64?"));
        let headers = vec![
            ParamHeader {
                property: "a".into(),
                name: "A".into(),
            },
            ParamHeader {
                property: "b".into(),
                name: "B".into(),
            },
            ParamHeader {
                property: "c".into(),
                name: "C".into(),
            },
            ParamHeader {
                property: "d".into(),
                name: "D".into(),
            },
        ];
        let v = param_header_values(&headers, &json!({"a": 42, "b": false, "c": null, "d": 3.5}));
        assert_eq!(
            v,
            vec![
                ("Mcp-Param-A".into(), "42".into()),
                ("Mcp-Param-B".into(), "false".into()),
                ("Mcp-Param-D".into(), "3.5".into())
            ]
        );
    }

    #[test]
    fn names() {
        assert_eq!(
            mcp_name("tools/call", Some(&json!({"name":"my-tool"}))).as_deref(),
            Some("my-tool")
        );
        assert_eq!(
            mcp_name("resources/read", Some(&json!({"uri":"file:///a%20b"}))).as_deref(),
            Some("file:///a%20b")
        );
        assert_eq!(mcp_name("tools/list", Some(&json!({}))), None);
    }
}
