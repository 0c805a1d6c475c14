//! The JSON-RPC 2.0 envelope of MCP messages (MCP basic/transports,
//! checklist §2(e)): the gateway parses each message once, strictly, reads
//! what policy needs (kind, id, method, tool name, the 2026-07-28 `_meta`
//! protocol version) and forwards that parsed message serialised again
//! ([`Envelope::to_bytes`]), never the bytes it received. Error bodies carry
//! no internal detail.
//!
//! Strict means no parser can read the message differently from us: a
//! duplicate key at any depth, two keys of one object that are equal under
//! Unicode case folding (Go's `encoding/json` matches keys that way), a key
//! that folds to a protocol member the gateway reads without being it
//! (`"Name"` for `name`), invalid UTF-8, a lone surrogate, a batch, or an id
//! that is neither a string nor an integer: each is refused, not forwarded.

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
    /// URLElicitationRequiredError (2025-11-25): a URL-mode elicitation
    /// must be completed before the request can succeed.
    pub const URL_ELICITATION_REQUIRED: i64 = -32042;
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

    /// The message the gateway decided on, serialised again: what it
    /// forwards, so the upstream reads exactly what policy saw.
    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(&self.value).expect("a JSON value serialises"))
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

/// Parses one message strictly (see the module docs). Batches (removed in
/// 2025-06-18) are refused.
pub fn parse(body: &[u8]) -> Result<Envelope, ParseError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde::de::DeserializeSeed::deserialize(strict::StrictValue, &mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| match strict::refusal(&e) {
            Some(m) => ParseError::Invalid(m),
            None => ParseError::NotJson,
        })?;
    parse_value(value)
}

/// Members of the envelope and of `params` that the gateway reads: a key
/// that folds to one of them without being it is refused.
const ENVELOPE_MEMBERS: &[&str] = &["jsonrpc", "id", "method", "params", "result", "error"];
const PARAMS_MEMBERS: &[&str] = &[
    "name",
    "uri",
    "arguments",
    "_meta",
    "ref",
    "cursor",
    "requestState",
];
/// Members of a server's `result` that the gateway filters or rewrites.
const RESULT_MEMBERS: &[&str] = &[
    "tools",
    "prompts",
    "resources",
    "resourceTemplates",
    "requestState",
];

/// A key that differs from a member only in case (Unicode simple folding).
fn near_miss(obj: &serde_json::Map<String, Value>, members: &[&str]) -> bool {
    obj.keys()
        .any(|k| !members.contains(&k.as_str()) && members.iter().any(|m| strict::fold_eq(m, k)))
}

mod strict {
    //! A `serde_json::Value` built by a visitor that refuses duplicate and
    //! case-colliding keys, since `serde_json` alone keeps the last duplicate.

    use std::collections::HashSet;
    use std::fmt;

    use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Value};

    pub const DUPLICATE: &str = "duplicate key in a JSON object";
    pub const CASE: &str = "keys of a JSON object differ only in case";

    /// The error texts this visitor raises, mapped back to refusals.
    pub fn refusal(e: &serde_json::Error) -> Option<&'static str> {
        let text = e.to_string();
        [DUPLICATE, CASE].into_iter().find(|m| text.starts_with(m))
    }

    /// Unicode simple case folding, as far as `char` offers it: `S`, `s`
    /// and `ſ` (long s), `K`, `k` and `K` (Kelvin sign) fold together.
    pub fn fold(s: &str) -> String {
        if s.is_ascii() {
            return s.to_ascii_lowercase();
        }
        s.chars()
            .flat_map(char::to_uppercase)
            .flat_map(char::to_lowercase)
            .collect()
    }

    /// `fold(a) == fold(b)`, without allocating for ASCII keys.
    pub fn fold_eq(a: &str, b: &str) -> bool {
        if a.is_ascii() && b.is_ascii() {
            a.eq_ignore_ascii_case(b)
        } else {
            fold(a) == fold(b)
        }
    }

    /// Objects up to this many keys are checked by comparing each new key
    /// with the earlier ones (no allocation); larger ones keep a set of
    /// folded keys, so a huge object costs linear time, not quadratic.
    const SMALL: usize = 16;

    pub struct StrictValue;

    impl<'de> DeserializeSeed<'de> for StrictValue {
        type Value = Value;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for StrictValue {
        type Value = Value;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
            serde_json::Number::from_f64(v)
                .map(Value::Number)
                .ok_or_else(|| E::custom("not a finite number"))
        }
        fn visit_str<E>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.to_owned()))
        }
        fn visit_string<E>(self, v: String) -> Result<Value, E> {
            Ok(Value::String(v))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_none<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut out = Vec::new();
            while let Some(v) = seq.next_element_seed(StrictValue)? {
                out.push(v);
            }
            Ok(Value::Array(out))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut out = Map::new();
            let mut folded: Option<HashSet<String>> = None;
            while let Some(k) = map.next_key::<String>()? {
                if out.contains_key(&k) {
                    return Err(A::Error::custom(DUPLICATE));
                }
                let collides = match &mut folded {
                    Some(set) => !set.insert(fold(&k)),
                    None => out.keys().any(|e| fold_eq(e, &k)),
                };
                if collides {
                    return Err(A::Error::custom(CASE));
                }
                let v = map.next_value_seed(StrictValue)?;
                out.insert(k, v);
                if folded.is_none() && out.len() >= SMALL {
                    folded = Some(out.keys().map(|k| fold(k)).collect());
                }
            }
            Ok(Value::Object(out))
        }
    }
}

pub fn parse_value(value: Value) -> Result<Envelope, ParseError> {
    let obj = match &value {
        Value::Object(o) => o,
        Value::Array(_) => return Err(ParseError::Invalid("JSON-RPC batches are not supported")),
        _ => return Err(ParseError::Invalid("not a JSON-RPC message")),
    };
    let member_of = |key: &str| obj.get(key).and_then(Value::as_object);
    if near_miss(obj, ENVELOPE_MEMBERS)
        || member_of("params").is_some_and(|p| near_miss(p, PARAMS_MEMBERS))
        || member_of("result").is_some_and(|r| near_miss(r, RESULT_MEMBERS))
    {
        return Err(ParseError::Invalid(
            "a key differs only in case from a JSON-RPC or MCP member",
        ));
    }
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

/// The id of a message that failed [`parse`], read leniently, so that the
/// request it answers can be failed instead of left waiting. Never used to
/// forward anything.
pub fn id_hint(body: &[u8]) -> Option<Value> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.get("id").filter(|i| valid_id(i)).cloned()
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

    /// Messages that two common JSON parsers read differently from each
    /// other (first duplicate wins, last wins, keys matched without regard to
    /// case) are refused, at any depth, with -32600.
    #[test]
    fn parser_differentials_are_refused() {
        let cases: &[&[u8]] = &[
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"tools/list"}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","METHOD":"tools/call"}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","Name":"b"}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"Name":"secret"}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"},"params":{"name":"b"}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"x":1,"x":2}}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"K":1,"k":2}}}"#,
            // U+017F LATIN SMALL LETTER LONG S folds to "s": Go reads "params".
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"param\u{17f}\":{\"name\":\"b\"}}".as_bytes(),
            // U+212A KELVIN SIGN folds to "k".
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":{\"\u{212a}\":1,\"k\":2}}".as_bytes(),
            br#"{"jsonrpc":"2.0","id":1,"Id":2,"method":"ping"}"#,
            // Server answers: a list or a request state under another spelling.
            br#"{"jsonrpc":"2.0","id":1,"result":{"Tools":[{"name":"secret"}]}}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[],"tools":[{"name":"secret"}]}}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":{"requeststate":"x"}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","RequestState":"x"}}"#,
        ];
        for body in cases {
            let e = parse(body).expect_err(&String::from_utf8_lossy(body));
            assert_eq!(
                e.code(),
                codes::INVALID_REQUEST,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    /// Past the small-object path, the folded-key set still catches
    /// collisions, and a large object with distinct keys passes.
    #[test]
    fn large_objects_are_checked_too() {
        let keys: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
        let ok = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":{{{}}}}}"#,
            keys.join(",")
        );
        assert!(parse(ok.as_bytes()).is_ok());
        for extra in [r#""K39":0"#, r#""k3":0"#, "\"\u{212a}20\":0"] {
            let bad = format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":{{{},{extra}}}}}"#,
                keys.join(",")
            );
            assert_eq!(
                parse(bad.as_bytes()).unwrap_err().code(),
                codes::INVALID_REQUEST,
                "{extra}"
            );
        }
    }

    #[test]
    fn malformed_text_is_a_parse_error() {
        for body in [
            &b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}"[..],
            br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"\ud800"}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"ping"} {}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":1e999}}"#,
        ] {
            assert_eq!(
                parse(body).unwrap_err(),
                ParseError::NotJson,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn what_is_forwarded_is_what_was_parsed() {
        let body = br#" { "params" : {"arguments":{"b":[1,2.5,"\u00e9"],"a":null},"name":"echo"},
            "method":"tools/call", "id":"7", "jsonrpc":"2.0" } "#;
        let env = parse(body).unwrap();
        let out = env.to_bytes();
        assert_eq!(
            &out[..],
            r#"{"id":"7","jsonrpc":"2.0","method":"tools/call","params":{"arguments":{"a":null,"b":[1,2.5,"é"]},"name":"echo"}}"#.as_bytes()
        );
        // Parsing the forwarded bytes gives the same decision.
        let again = parse(&out).unwrap();
        assert_eq!(again.value, env.value);
        assert_eq!(again.tool(), Some("echo"));
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
