//! Parser differentials as a property (issue "the gateway decides on exactly
//! what it forwards"; `differential.rs` holds hand-written attacks). Random
//! valid requests (`tools/call`, `prompts/get`, `resources/read`,
//! `tools/list`, with random ids, arguments, extra `params` and `_meta`
//! members) are mutated the ways that make JSON parsers disagree — a key
//! twice with another value, a case or Unicode case-fold variant of a key
//! (`METHOD`, `ſ` U+017F for `s`, `K` U+212A for `k`) beside or instead of
//! it, members reordered, keys written with `\u` escapes, whitespace —
//! written out by hand (serde_json cannot write a duplicate) and posted
//! through the gateway to upstreams that read JSON the way real servers do:
//! the first duplicate wins, the last one wins, or keys match regardless of
//! case (Go's `encoding/json`: an exact match, else the last fold-equal key).
//! Each reader runs over HTTP (a recording server) and over stdio (a python3
//! child that echoes what it read in its result).
//!
//! The property: a message with two keys of one object equal under case
//! folding (a duplicate included) or a case variant of a member the gateway
//! reads is refused (400, -32600) and reaches no upstream; any other message
//! reaches the upstream as the gateway's own serialisation, which every
//! reader reads as the strict parse does; no reader is ever handed a denied
//! tool, prompt or resource. Fixed requests before and after each run show
//! that allowed ones do get through, so refusing everything cannot pass.
//!
//! 48 cases per upstream (`PROPTEST_CASES` overrides); the stack starts once.

use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::response::IntoResponse;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Value, json};

use crate::harness::*;

const PYTHON: &str = "/usr/bin/python3";

/// Every upstream's policy: one denied tool, prompt and resource.
const POLICY: &str = r#"
[upstream.tools.secret_tool]
allow = false
[upstream.prompts.internal]
allow = false
[upstream.resources."fixture://internal"]
allow = false
"#;
const TOOLS: &[&str] = &["public_tool", "other_tool", "secret_tool"];
const PROMPTS: &[&str] = &["greet", "internal"];
const URIS: &[&str] = &["fixture://readme", "fixture://internal"];
const DENIED: &[(&str, &str)] = &[
    ("tools/call", "secret_tool"),
    ("prompts/get", "internal"),
    ("resources/read", "fixture://internal"),
];
const META_KEYS: &[&str] = &["progressToken", "trace", "io.example/kind"];
const EXTRA_KEYS: &[&str] = &["extra", "tag", "notes"];
/// The members the gateway reads (jsonrpc.rs): a case variant of one is refused.
const ENVELOPE_MEMBERS: &[&str] = &["jsonrpc", "id", "method", "params", "result", "error"];
const PARAMS_MEMBERS: &[&str] = &["name", "uri", "arguments", "_meta", "ref", "cursor"];

/// The stdio reader, run as `python3 -c READER MODE`: answers `initialize`,
/// and every other request with what it read as JSON text in
/// `content[0].text`: `count` (lines received so far), `method`, `item`
/// (tool or prompt name, resource uri) and `raw` (the line itself).
const READER: &str = r#"
import json
import sys

MODE = sys.argv[1]


class Obj(list):
    """An object's members in order, duplicates kept."""


def read(obj, key):
    if not isinstance(obj, Obj):
        return None
    exact = [v for k, v in obj if k == key]
    if MODE == "first":
        return exact[0] if exact else None
    if MODE == "last" or exact:
        return exact[-1] if exact else None
    folded = [v for k, v in obj if k.casefold() == key.casefold()]
    return folded[-1] if folded else None


count = 0
while True:
    line = sys.stdin.buffer.readline()
    if not line:
        break
    count += 1
    raw = line.rstrip(b"\n").decode("utf-8")
    msg = json.loads(raw, object_pairs_hook=Obj)
    rid, method, params = read(msg, "id"), read(msg, "method"), read(msg, "params")
    if rid is None or method is None:
        continue
    if method == "initialize":
        result = {
            "protocolVersion": read(params, "protocolVersion"),
            "capabilities": {"tools": {}, "prompts": {}, "resources": {}},
            "serverInfo": {"name": "reader-" + MODE, "version": "0"},
        }
    else:
        key = "uri" if method == "resources/read" else "name"
        named = method in ("tools/call", "prompts/get", "resources/read")
        seen = {"count": count, "method": method, "raw": raw,
                "item": read(params, key) if named else None}
        result = {"content": [{"type": "text", "text": json.dumps(seen)}],
                  "tools": [], "messages": [], "contents": []}
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": rid, "result": result}) + "\n")
    sys.stdout.flush()
"#;

/// How an upstream picks a member out of an object.
#[derive(Clone, Copy, Debug)]
enum Mode {
    First,
    Last,
    Fold,
}

const MODES: [Mode; 3] = [Mode::First, Mode::Last, Mode::Fold];

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::First => "first",
            Mode::Last => "last",
            Mode::Fold => "fold",
        }
    }

    /// The member `key` of `obj` as this reader finds it (as `READER` does).
    fn read<'a>(self, obj: Option<&'a J>, key: &str) -> Option<&'a J> {
        let Some(J::Obj(ms)) = obj else { return None };
        let mut exact = ms.iter().filter(|m| m.key == key).map(|m| &m.val);
        match self {
            Mode::First => exact.next(),
            Mode::Last => exact.next_back(),
            Mode::Fold => exact.next_back().or_else(|| {
                ms.iter()
                    .rfind(|m| fold(&m.key) == fold(key))
                    .map(|m| &m.val)
            }),
        }
    }

    /// The method and the item it names, as this reader reads `msg`.
    fn interpret(self, msg: &J) -> (Option<String>, Option<String>) {
        let text = |j: Option<&J>| match j {
            Some(J::Lit(Value::String(s))) => Some(s.clone()),
            _ => None,
        };
        let method = text(self.read(Some(msg), "method"));
        let params = self.read(Some(msg), "params");
        let item = match method.as_deref() {
            Some("tools/call" | "prompts/get") => text(self.read(params, "name")),
            Some("resources/read") => text(self.read(params, "uri")),
            _ => None,
        };
        (method, item)
    }
}

/// The method and item of a message the gateway accepted, read strictly.
fn decided(v: &Value) -> (Option<String>, Option<String>) {
    let text = |v: &Value| v.as_str().map(str::to_string);
    let method = text(&v["method"]);
    let item = match method.as_deref() {
        Some("tools/call" | "prompts/get") => text(&v["params"]["name"]),
        Some("resources/read") => text(&v["params"]["uri"]),
        _ => None,
    };
    (method, item)
}

fn denied(method: &Option<String>, item: &Option<String>) -> bool {
    DENIED
        .iter()
        .any(|(m, i)| method.as_deref() == Some(*m) && item.as_deref() == Some(*i))
}

/// Unicode simple case folding as far as `char` offers it (`ſ` and `K` too).
fn fold(s: &str) -> String {
    s.chars()
        .flat_map(char::to_uppercase)
        .flat_map(char::to_lowercase)
        .collect()
}

/// JSON as written: an object's members in order, duplicates kept.
#[derive(Clone, Debug, PartialEq)]
enum J {
    Obj(Vec<Member>),
    Lit(Value),
}

#[derive(Clone, Debug, PartialEq)]
struct Member {
    key: String,
    val: J,
    /// The key's first character is written as a `\u` escape.
    escape: bool,
}

fn member(key: &str, val: J) -> Member {
    Member {
        key: key.to_string(),
        val,
        escape: false,
    }
}

fn lit(v: impl Into<Value>) -> J {
    J::Lit(v.into())
}

fn obj(pairs: &[(&str, &str)]) -> J {
    J::Obj(pairs.iter().map(|(k, v)| member(k, lit(*v))).collect())
}

#[derive(Clone, Copy, Debug)]
enum Loc {
    Top,
    Params,
    Args,
    Meta,
}

impl J {
    fn get(&self, key: &str) -> Option<&J> {
        match self {
            J::Obj(ms) => ms.iter().find(|m| m.key == key).map(|m| &m.val),
            J::Lit(_) => None,
        }
    }

    fn members_at(&mut self, loc: Loc) -> Option<&mut Vec<Member>> {
        let path: &[&str] = match loc {
            Loc::Top => &[],
            Loc::Params => &["params"],
            Loc::Args => &["params", "arguments"],
            Loc::Meta => &["params", "_meta"],
        };
        let mut j = self;
        for key in path {
            let J::Obj(ms) = j else { return None };
            j = &mut ms.iter_mut().find(|m| m.key == *key)?.val;
        }
        match j {
            J::Obj(ms) => Some(ms),
            J::Lit(_) => None,
        }
    }

    /// serde_json's reading: the last duplicate wins.
    fn to_value(&self) -> Value {
        match self {
            J::Lit(v) => v.clone(),
            J::Obj(ms) => Value::Object(
                ms.iter()
                    .map(|m| (m.key.clone(), m.val.to_value()))
                    .collect(),
            ),
        }
    }

    /// The wire text; `pretty` puts whitespace between the tokens.
    fn write(&self, pretty: bool, out: &mut String) {
        let J::Obj(ms) = self else {
            out.push_str(&self.to_value().to_string());
            return;
        };
        out.push('{');
        for (i, m) in ms.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            if pretty {
                out.push_str("\n  ");
            }
            let quoted = Value::from(m.key.as_str()).to_string();
            match m.key.chars().next() {
                Some(c) if m.escape => {
                    out.push('"');
                    for u in c.encode_utf16(&mut [0; 2]) {
                        let _ = write!(out, "\\u{u:04x}");
                    }
                    out.push_str(&quoted[1 + c.len_utf8()..]);
                }
                _ => out.push_str(&quoted),
            }
            out.push(':');
            if pretty {
                out.push(' ');
            }
            m.val.write(pretty, out);
        }
        if pretty {
            out.push('\n');
        }
        out.push('}');
    }
}

/// What the strict rule refuses: two keys of one object equal under case
/// folding (a duplicate included), at any depth, or a case variant of a
/// member the gateway reads, in the envelope or in `params`.
fn refusable(top: &J) -> bool {
    fn collides(j: &J) -> bool {
        let J::Obj(ms) = j else { return false };
        ms.iter()
            .enumerate()
            .any(|(i, a)| ms[..i].iter().any(|b| fold(&a.key) == fold(&b.key)))
            || ms.iter().any(|m| collides(&m.val))
    }
    fn near_miss(j: Option<&J>, members: &[&str]) -> bool {
        let Some(J::Obj(ms)) = j else { return false };
        ms.iter().any(|m| {
            !members.contains(&m.key.as_str()) && members.iter().any(|n| fold(n) == fold(&m.key))
        })
    }
    collides(top)
        || near_miss(Some(top), ENVELOPE_MEMBERS)
        || near_miss(top.get("params"), PARAMS_MEMBERS)
}

/// Reads JSON as written, duplicates kept: what the readers start from.
struct Loose;

impl<'de> DeserializeSeed<'de> for Loose {
    type Value = J;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<J, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Loose {
    type Value = J;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<J, E> {
        Ok(lit(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<J, E> {
        Ok(lit(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<J, E> {
        Ok(lit(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<J, E> {
        Ok(lit(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<J, E> {
        Ok(lit(v))
    }
    fn visit_unit<E>(self) -> Result<J, E> {
        Ok(lit(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<J, A::Error> {
        let mut out = Vec::new();
        while let Some(j) = seq.next_element_seed(Loose)? {
            out.push(j.to_value());
        }
        Ok(lit(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<J, A::Error> {
        let mut out = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let val = map.next_value_seed(Loose)?;
            out.push(Member {
                key,
                val,
                escape: false,
            });
        }
        Ok(J::Obj(out))
    }
}

fn loose(raw: &[u8]) -> Option<J> {
    let mut de = serde_json::Deserializer::from_slice(raw);
    let j = Loose.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(j)
}

/// One message as an upstream read it; `count` is its position.
#[derive(Clone, Debug)]
struct Seen {
    count: usize,
    raw: Vec<u8>,
    method: Option<String>,
    item: Option<String>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// An HTTP upstream reading with `mode`: logs each body and answers
/// requests with an empty result, notifications with 202.
async fn reader(
    State((mode, log)): State<(Mode, Log)>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let msg = loose(&body).unwrap_or(J::Lit(Value::Null));
    let (method, item) = mode.interpret(&msg);
    {
        let mut log = log.lock().unwrap();
        let count = log.len() + 1;
        log.push(Seen {
            count,
            raw: body.to_vec(),
            method: method.clone(),
            item,
        });
    }
    let Some(id) = mode.read(Some(&msg), "id").map(J::to_value) else {
        return http::StatusCode::ACCEPTED.into_response();
    };
    let result = if method.as_deref() == Some("initialize") {
        let params = mode.read(Some(&msg), "params").map(J::to_value);
        json!({"protocolVersion": params.unwrap_or_default()["protocolVersion"],
               "capabilities": {"tools": {}, "prompts": {}, "resources": {}},
               "serverInfo": {"name": "reader", "version": "0"}})
    } else {
        json!({"content": [], "tools": [], "messages": [], "contents": []})
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

async fn start_reader(mode: Mode) -> (Log, String) {
    let log: Log = Arc::default();
    let app = axum::Router::new()
        .route("/mcp", axum::routing::post(reader))
        .with_state((mode, log.clone()));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    (log, url)
}

/// What the stdio reader says it read, from its answer.
fn echo(answer: &Value) -> Option<Seen> {
    let text = answer["result"]["content"][0]["text"].as_str()?;
    let v: Value = serde_json::from_str(text).ok()?;
    let text = |k: &str| v[k].as_str().map(str::to_string);
    Some(Seen {
        count: usize::try_from(v["count"].as_u64()?).ok()?,
        raw: text("raw")?.into_bytes(),
        method: text("method"),
        item: text("item"),
    })
}

/// One upstream behind the gateway, with a session.
struct Target {
    name: String,
    /// The HTTP reader's log; `None` for the stdio reader, which echoes.
    log: Option<Log>,
    client: Mcp,
    /// Messages the upstream has received so far.
    reached: Cell<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Outcome {
    Refused,
    Denied,
    Reached,
}

/// A body to send, and the tree it was written from.
#[derive(Clone)]
struct Case {
    top: J,
    body: String,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.body)
    }
}

impl Case {
    fn new(top: J, pretty: bool) -> Self {
        let mut body = String::new();
        top.write(pretty, &mut body);
        Self { top, body }
    }
}

/// Posts one case and checks the property (see the module docs).
async fn check(t: &Target, case: &Case) -> Result<Outcome, TestCaseError> {
    let sent = t
        .client
        .request(reqwest::Method::POST)
        .header("content-type", "application/json")
        .body(case.body.clone())
        .send()
        .await
        .expect("POST");
    let r = into_resp(sent).await;
    let answer = r
        .messages()
        .into_iter()
        .rfind(|m| m.get("method").is_none())
        .unwrap_or_default();
    let ctx = format!(
        "{}: sent {}\nanswered {} {}",
        t.name, case.body, r.status, r.text
    );
    // What reached the upstream since the last case, as it read it.
    let before = t.reached.get();
    let (seen, total) = match &t.log {
        Some(log) => {
            let log = log.lock().unwrap();
            (log[before.min(log.len())..].to_vec(), log.len())
        }
        None => {
            let seen: Vec<Seen> = echo(&answer).into_iter().collect();
            let total = seen.first().map_or(before, |s| s.count);
            (seen, total)
        }
    };
    t.reached.set(total);
    for s in &seen {
        prop_assert!(
            !denied(&s.method, &s.item),
            "a denied item reached the upstream, read as {:?} {:?}\n{}",
            s.method,
            s.item,
            ctx
        );
    }
    if refusable(&case.top) {
        prop_assert_eq!(r.status, 400, "not refused\n{}", ctx);
        prop_assert_eq!(&answer["error"]["code"], -32600, "{}", ctx);
        prop_assert_eq!(
            total,
            before,
            "a refused message reached the upstream\n{}",
            ctx
        );
        return Ok(Outcome::Refused);
    }
    // Unambiguous: serde_json reads it as the strict parser does.
    let value: Value = serde_json::from_str(&case.body).expect("valid JSON");
    let (method, item) = decided(&value);
    if denied(&method, &item) {
        prop_assert_eq!(r.status, 403, "{}", ctx);
        prop_assert_eq!(
            total,
            before,
            "a denied message reached the upstream\n{}",
            ctx
        );
        return Ok(Outcome::Denied);
    }
    prop_assert_eq!(r.status, 200, "{}", ctx);
    prop_assert_eq!(&answer["id"], &value["id"], "{}", ctx);
    prop_assert_eq!(
        total,
        before + 1,
        "not exactly this message reached the upstream\n{}",
        ctx
    );
    let s = seen.last().expect("seen");
    prop_assert_eq!(
        (&s.method, &s.item),
        (&method, &item),
        "the upstream read another message than the gateway decided on\n{}",
        ctx
    );
    // The bytes are the gateway's serialisation (with its own id on stdio,
    // which also stands in for a progress token there).
    let mut want = value;
    if t.log.is_none() {
        let got: Value = serde_json::from_slice(&s.raw).unwrap_or_default();
        prop_assert!(
            got["id"]
                .as_str()
                .is_some_and(|i| i.starts_with("mcpgate-")),
            "{}",
            ctx
        );
        want["id"] = got["id"].clone();
        if let Some(token) = want
            .pointer_mut("/params/_meta/progressToken")
            .filter(|t| t.is_string() || t.is_number())
        {
            *token = got["id"].clone();
        }
    }
    let raw = String::from_utf8_lossy(&s.raw);
    prop_assert_eq!(
        &*raw,
        serde_json::to_string(&want).unwrap(),
        "the upstream did not get the gateway's serialisation\n{}",
        ctx
    );
    prop_assert!(
        loose(&s.raw).is_some_and(|j| !refusable(&j)),
        "a duplicate or case variant was forwarded: {}\n{}",
        raw,
        ctx
    );
    Ok(Outcome::Reached)
}

// The generators.

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e9..1e9f64).prop_map(Value::from),
        "\\PC{0,6}".prop_map(Value::from),
    ]
}

/// An object with distinct lowercase keys (no two fold together).
fn object(
    keys: impl Strategy<Value = String>,
    vals: impl Strategy<Value = J>,
    max: usize,
) -> impl Strategy<Value = J> {
    prop::collection::btree_map(keys, vals, 0..=max)
        .prop_map(|m| J::Obj(m.into_iter().map(|(k, v)| member(&k, v)).collect()))
}

/// An argument or `_meta` value: a scalar, an array or a small object.
fn leaf() -> impl Strategy<Value = J> {
    prop_oneof![
        3 => scalar().prop_map(J::Lit),
        1 => prop::collection::vec(scalar(), 0..3).prop_map(lit),
        1 => object("[a-z]{1,4}", scalar().prop_map(J::Lit), 3),
    ]
}

fn keys(from: &'static [&'static str]) -> impl Strategy<Value = String> {
    select(from).prop_map(str::to_string)
}

/// A valid request, members in canonical order.
fn request() -> impl Strategy<Value = J> {
    let id = prop_oneof![
        (0..1_000_000i64).prop_map(Value::from),
        "[a-z0-9-]{1,8}".prop_map(Value::from),
    ];
    let tool = (select(TOOLS), object("[a-z]{1,6}", leaf(), 4)).prop_map(|(n, a)| {
        (
            "tools/call",
            vec![member("name", lit(n)), member("arguments", a)],
        )
    });
    let prompt = (
        select(PROMPTS),
        prop::option::of(object("[a-z]{1,6}", "[a-z ]{0,8}".prop_map(lit), 3)),
    )
        .prop_map(|(n, a)| {
            let mut p = vec![member("name", lit(n))];
            p.extend(a.map(|a| member("arguments", a)));
            ("prompts/get", p)
        });
    let read = select(URIS).prop_map(|u| ("resources/read", vec![member("uri", lit(u))]));
    let list = prop::option::of("[a-z0-9]{1,8}").prop_map(|c| {
        (
            "tools/list",
            c.map(|c| member("cursor", lit(c))).into_iter().collect(),
        )
    });
    let meta = prop::option::of(object(keys(META_KEYS), leaf(), 2));
    let extras = prop::collection::btree_map(keys(EXTRA_KEYS), leaf(), 0..=2);
    (
        id,
        prop_oneof![tool, prompt, read, list],
        meta,
        extras,
        any::<bool>(),
    )
        .prop_map(|(id, (method, mut params), meta, extras, bare)| {
            params.extend(meta.map(|m| member("_meta", m)));
            params.extend(extras.into_iter().map(|(k, v)| member(&k, v)));
            let mut top = vec![
                member("id", J::Lit(id)),
                member("jsonrpc", lit("2.0")),
                member("method", lit(method)),
            ];
            // `params` may be left out when empty.
            if !(bare && params.is_empty()) {
                params.sort_by(|a, b| a.key.cmp(&b.key));
                top.push(member("params", J::Obj(params)));
            }
            J::Obj(top)
        })
}

#[derive(Clone, Debug)]
enum Mutation {
    /// The key at `at` once more, with another value, before or after it.
    Duplicate {
        loc: Loc,
        at: Index,
        before: bool,
        pick: usize,
    },
    /// A case or case-fold variant of the key at `at`: beside it with
    /// another value (`keep`), or instead of it.
    Variant {
        loc: Loc,
        at: Index,
        flips: u64,
        keep: bool,
        pick: usize,
    },
    /// The members in another order.
    Shuffle { loc: Loc, seed: u64 },
    /// The key at `at` written with a `\u` escape.
    Escape { loc: Loc, at: Index },
}

impl Mutation {
    fn apply(&self, top: &mut J) {
        let (Mutation::Duplicate { loc, .. }
        | Mutation::Variant { loc, .. }
        | Mutation::Shuffle { loc, .. }
        | Mutation::Escape { loc, .. }) = self;
        let Some(ms) = top.members_at(*loc).filter(|ms| !ms.is_empty()) else {
            return;
        };
        match self {
            Mutation::Duplicate {
                at, before, pick, ..
            } => {
                let i = at.index(ms.len());
                let dup = member(&ms[i].key.clone(), other_value(&ms[i], *pick));
                ms.insert(if *before { i } else { i + 1 }, dup);
            }
            Mutation::Variant {
                at,
                flips,
                keep,
                pick,
                ..
            } => {
                let i = at.index(ms.len());
                let key = variant(&ms[i].key, *flips);
                if *keep {
                    let v = other_value(&ms[i], *pick);
                    let before = flips & (1 << 63) != 0;
                    ms.insert(if before { i } else { i + 1 }, member(&key, v));
                } else {
                    ms[i].key = key;
                }
            }
            Mutation::Shuffle { seed, .. } => {
                let mut seed = *seed;
                for i in (1..ms.len()).rev() {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ms.swap(i, (seed >> 33) as usize % (i + 1));
                }
            }
            Mutation::Escape { at, .. } => {
                let i = at.index(ms.len());
                ms[i].escape = true;
            }
        }
    }
}

/// Another value for `m`, one that changes a decision where it can.
fn other_value(m: &Member, pick: usize) -> J {
    let pool: Vec<J> = match m.key.as_str() {
        "method" => ["tools/call", "prompts/get", "resources/read", "tools/list"]
            .map(lit)
            .into(),
        "name" => ["secret_tool", "internal", "public_tool", "greet"]
            .map(lit)
            .into(),
        "uri" => URIS.iter().map(|u| lit(*u)).collect(),
        "id" => vec![lit(7), lit("seven")],
        "jsonrpc" => vec![lit("2.0"), lit("1.0")],
        "params" => vec![
            obj(&[("name", "secret_tool")]),
            obj(&[("uri", "fixture://internal")]),
            obj(&[("name", "internal")]),
        ],
        _ => vec![lit("other"), lit(0), obj(&[("name", "secret_tool")])],
    };
    let start = pick % pool.len();
    (0..pool.len())
        .map(|j| &pool[(start + j) % pool.len()])
        .find(|v| **v != m.val)
        .unwrap_or(&pool[start])
        .clone()
}

/// Another spelling of `key` that folds to it: ASCII case flipped, `s` as
/// `ſ` (U+017F), `k` as `K` (U+212A KELVIN SIGN), by the bits of `flips`.
fn variant(key: &str, flips: u64) -> String {
    let bit = |n: usize| flips & (1 << (n % 62)) != 0;
    let flip = |c: char| {
        if c.is_ascii_lowercase() {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        }
    };
    let out: String = key
        .chars()
        .enumerate()
        .map(|(i, c)| match c {
            's' if bit(2 * i) && bit(2 * i + 1) => 'ſ',
            'k' if bit(2 * i) && bit(2 * i + 1) => '\u{212A}',
            c if bit(2 * i) => flip(c),
            c => c,
        })
        .collect();
    if out != key {
        return out;
    }
    // No bit took: flip the first letter.
    let i = key
        .find(|c: char| c.is_ascii_alphabetic())
        .expect("a key with a letter");
    let mut out = key.to_string();
    out.replace_range(i..=i, &flip(key.as_bytes()[i] as char).to_string());
    out
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let loc = || select(vec![Loc::Top, Loc::Params, Loc::Args, Loc::Meta]);
    prop_oneof![
        (loc(), any::<Index>(), any::<bool>(), any::<usize>()).prop_map(
            |(loc, at, before, pick)| Mutation::Duplicate {
                loc,
                at,
                before,
                pick
            }
        ),
        (
            loc(),
            any::<Index>(),
            any::<u64>(),
            any::<bool>(),
            any::<usize>()
        )
            .prop_map(|(loc, at, flips, keep, pick)| Mutation::Variant {
                loc,
                at,
                flips,
                keep,
                pick
            }),
        (loc(), any::<u64>()).prop_map(|(loc, seed)| Mutation::Shuffle { loc, seed }),
        (loc(), any::<Index>()).prop_map(|(loc, at)| Mutation::Escape { loc, at }),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let mutations = prop_oneof![
        1 => Just(Vec::new()),
        3 => prop::collection::vec(mutation(), 1..=3),
    ];
    (request(), mutations, any::<bool>()).prop_map(|(mut top, mutations, pretty)| {
        for m in &mutations {
            m.apply(&mut top);
        }
        Case::new(top, pretty)
    })
}

/// Fixed requests and what must become of them.
fn fixed() -> Vec<(Case, Outcome)> {
    let request = |method: &str, params: Option<J>| {
        let mut top = vec![
            member("jsonrpc", lit("2.0")),
            member("id", lit(1)),
            member("method", lit(method)),
        ];
        top.extend(params.map(|p| member("params", p)));
        Case::new(J::Obj(top), false)
    };
    let call = |name: &str| {
        J::Obj(vec![
            member("name", lit(name)),
            member("arguments", J::Obj(vec![])),
        ])
    };
    vec![
        (request("tools/list", None), Outcome::Reached),
        (
            request("tools/call", Some(call("public_tool"))),
            Outcome::Reached,
        ),
        (
            request("prompts/get", Some(obj(&[("name", "greet")]))),
            Outcome::Reached,
        ),
        (
            request("resources/read", Some(obj(&[("uri", "fixture://readme")]))),
            Outcome::Reached,
        ),
        (
            request("tools/call", Some(call("secret_tool"))),
            Outcome::Denied,
        ),
        (
            request("prompts/get", Some(obj(&[("name", "internal")]))),
            Outcome::Denied,
        ),
        (
            request(
                "resources/read",
                Some(obj(&[("uri", "fixture://internal")])),
            ),
            Outcome::Denied,
        ),
        (
            request(
                "tools/call",
                Some(obj(&[("name", "public_tool"), ("name", "secret_tool")])),
            ),
            Outcome::Refused,
        ),
    ]
}

fn config(readers: &[(Mode, Log, String)]) -> String {
    assert!(!READER.contains("'''"));
    let mut c = String::from("[gateway.audit]\nstdout = false\n");
    for (mode, _, url) in readers {
        let m = mode.name();
        let _ = write!(
            c,
            "\n[[upstream]]\nname = \"http-{m}\"\nhttp = {{ url = \"{url}\" }}\n{POLICY}\
             \n[[upstream]]\nname = \"stdio-{m}\"\n[upstream.stdio]\ncommand = \"{PYTHON}\"\n\
             args = [\"-c\", '''{READER}''', \"{m}\"]\n{POLICY}"
        );
    }
    c
}

async fn setup() -> (Stack, Vec<Target>) {
    let mut readers = Vec::new();
    for mode in MODES {
        let (log, url) = start_reader(mode).await;
        readers.push((mode, log, url));
    }
    let s = Stack::start(&config(&readers)).await;
    let mut targets = Vec::new();
    for (mode, log, _) in readers {
        // Two users, so that six sign-ins stay under the per-account limit.
        for (transport, user, log) in [("http", "alice", Some(log)), ("stdio", "bob", None)] {
            let name = format!("{transport}-{}", mode.name());
            let token = s.token(user, "", &name).await;
            let mut client = s.client(&name, &token);
            client.initialize().await;
            // The stdio child has read `initialize` and `notifications/initialized`.
            let reached = log.as_ref().map_or(2, |l| l.lock().unwrap().len());
            targets.push(Target {
                name,
                log,
                client,
                reached: Cell::new(reached),
            });
        }
    }
    (s, targets)
}

#[test]
fn every_reader_gets_what_the_gateway_decided_on() {
    assert!(
        std::path::Path::new(PYTHON).is_file(),
        "the test needs Debian's python3"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let _in = rt.enter();
    let (_stack, targets) = rt.block_on(setup());
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(48);
    let run_fixed = |t: &Target| {
        for (case, want) in fixed() {
            let got = rt
                .block_on(check(t, &case))
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(got, want, "{}: {case:?}", t.name);
        }
    };
    for t in &targets {
        run_fixed(t);
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            max_shrink_iters: 256,
            ..Config::default()
        });
        let tally = Cell::new([0usize; 3]);
        let result = runner.run(&case(), |c| {
            let o = rt.block_on(check(t, &c))?;
            let mut n = tally.get();
            n[o as usize] += 1;
            tally.set(n);
            Ok(())
        });
        if let Err(e) = result {
            panic!("{}: {e}", t.name);
        }
        let [refused, _, reached] = tally.get();
        assert!(
            refused > 0 && reached > 0,
            "{}: {refused} refused, {reached} reached",
            t.name
        );
        // After the run too, refused messages never reached the upstream:
        // the next one it reads is the next one sent.
        run_fixed(t);
    }
}
