//! The conformance fixture server: a real MCP server (official Rust SDK)
//! implementing the fixed-name tools, resources and prompts that the official
//! MCP conformance suite (`@modelcontextprotocol/conformance`, server side)
//! calls. `ci/conformance-server.sh` runs the suite against it directly and
//! through `mcpgate serve` (see `docs/conformance.md`).
//!
//! Everything is done for real with rmcp's peer: logging notifications honour
//! `logging/setLevel` (and, on 2026-07-28, `_meta` `logLevel`), progress
//! notifications follow the request's `progressToken`, sampling and
//! elicitation are server→client requests, `resources/subscribe` is tracked
//! and `update_watched_resource` changes `test://watched-resource` and sends
//! `notifications/resources/updated` to a subscribed session, completion
//! filters candidate values by the typed prefix.
//!
//! Served over stdio ([`run_conformance_stdio`]) and Streamable HTTP
//! ([`serve_conformance_http`], `127.0.0.1`, endpoint `/mcp`, loopback
//! `Host`/`Origin` checks on) by the `mcpgate-conformance-server` binary.

// Sampling, logging and resources/subscribe are deprecated by 2026-07-28 but
// are what the 2025-11-25 scenarios test.
#![allow(deprecated)]

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::SubscriptionFilter;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestParams, CompleteResult,
    CreateMessageRequestParams, ElicitRequestParams, ErrorCode, GetPromptRequestParams,
    GetPromptResponse, GetPromptResult, InputRequiredResult, InputResponses, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, LoggingLevel,
    LoggingMessageNotificationParam, PaginatedRequestParams, ProgressNotificationParam,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, RequestStateCodec,
    ResourceUpdatedNotificationParam, ServerConfig, SetLevelRequestParams, SubscribeRequestParams,
    UnsubscribeRequestParams,
};
use rmcp::service::{RequestContext, SubscriptionContext, SubscriptionSendError};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

/// Path of the MCP endpoint of the HTTP fixture.
pub const CONFORMANCE_MCP_PATH: &str = "/mcp";
/// The resource whose changes subscribers hear about.
pub const WATCHED_RESOURCE: &str = "test://watched-resource";

/// A 1x1 red PNG.
const PNG_BASE64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC";
/// A WAV file: 8 kHz, 16-bit mono, four samples of silence.
const WAV_BASE64: &str = "UklGRiwAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQgAAAAAAAAAAAAAAA==";
const TEMPLATE: &str = "test://template/{id}/data";
const STATIC_TEXT: &str = "test://static-text";
const STATIC_BINARY: &str = "test://static-binary";
const JSON_SCHEMA_TOOL: &str = "json_schema_2020_12_tool";

fn from_json<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, ErrorData> {
    serde_json::from_value(v).map_err(|e| ErrorData::internal_error(e.to_string(), None))
}

/// A result (an object) marked `resultType: "complete"` as 2026-07-28 requires;
/// rmcp removes the field again for peers on older versions.
fn complete<T: serde::de::DeserializeOwned>(mut v: Value) -> Result<T, ErrorData> {
    if let Some(o) = v.as_object_mut() {
        o.insert("resultType".into(), json!("complete"));
    }
    from_json(v)
}

fn text(s: impl Into<String>) -> Value {
    json!({ "type": "text", "text": s.into() })
}

fn tool_result(content: Vec<Value>) -> Result<CallToolResponse, ErrorData> {
    let r: CallToolResult = complete(json!({ "content": content }))?;
    Ok(r.into())
}

fn tool_error(message: impl Into<String>) -> Result<CallToolResponse, ErrorData> {
    let r: CallToolResult = complete(json!({ "content": [text(message)], "isError": true }))?;
    Ok(r.into())
}

/// Severity rank of a logging level (RFC 5424 order, debug lowest).
fn rank(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

/// Per-connection state (one server value per MCP session or stdio process).
#[derive(Debug, Default)]
struct State {
    /// `logging/setLevel`; `None` = everything is sent.
    level: Option<LoggingLevel>,
    /// URIs this session subscribed to.
    subscriptions: BTreeSet<String>,
    /// Revision of [`WATCHED_RESOURCE`], bumped by `update_watched_resource`.
    watched_revision: u64,
    /// Change-feed receivers taken when a `subscriptions/listen` filter is
    /// accepted — before rmcp sends the acknowledgment — so that no change
    /// made right after the client sees the acknowledgment is missed.
    listens: std::collections::VecDeque<tokio::sync::broadcast::Receiver<Change>>,
}

/// A change that `subscriptions/listen` streams (2026-07-28) hear about.
#[derive(Debug, Clone)]
enum Change {
    Tools,
    Prompts,
    ResourceUpdated(String),
}

/// What every connection of one server process shares: the dynamic parts of
/// the tool and prompt lists and the change feed of listen streams.
#[derive(Debug)]
struct Shared {
    /// `test_trigger_tool_change` toggles the tool `test_dynamic_tool`.
    dynamic_tool: std::sync::atomic::AtomicBool,
    /// `test_trigger_prompt_change` toggles the prompt `test_dynamic_prompt`.
    dynamic_prompt: std::sync::atomic::AtomicBool,
    changes: tokio::sync::broadcast::Sender<Change>,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            dynamic_tool: Default::default(),
            dynamic_prompt: Default::default(),
            changes: tokio::sync::broadcast::channel(64).0,
        }
    }
}

/// The conformance fixture server. Each value is one client's connection;
/// connections of one process share [`Shared`].
#[derive(Debug, Clone, Default)]
pub struct ConformanceServer {
    state: Arc<Mutex<State>>,
    shared: Arc<Shared>,
}

/// The tools, in the order `tools/list` returns them.
fn tools() -> Value {
    let none = json!({ "type": "object", "properties": {} });
    let simple = |name: &str, description: &str| json!({ "name": name, "description": description, "inputSchema": none });
    json!([
        simple("test_simple_text", "Returns one text block."),
        simple("test_image_content", "Returns a 1x1 PNG image."),
        simple("test_audio_content", "Returns a short WAV clip."),
        simple("test_embedded_resource", "Returns an embedded text resource."),
        simple("test_multiple_content_types", "Returns text, an image and a resource."),
        simple("test_tool_with_logging", "Sends three info log notifications while it runs."),
        simple("test_logging_tool", "Alias of test_tool_with_logging."),
        simple("test_tool_with_progress", "Reports progress 0, 50 and 100 of 100."),
        simple("test_error_handling", "Always fails with a tool error (isError)."),
        {
            "name": "test_sampling",
            "description": "Asks the client's LLM (sampling/createMessage) and returns its answer.",
            "inputSchema": {
                "type": "object",
                "properties": { "prompt": { "type": "string", "description": "The prompt to send" } },
                "required": ["prompt"]
            }
        },
        {
            "name": "test_elicitation",
            "description": "Asks the user (elicitation/create) for a username and an email.",
            "inputSchema": {
                "type": "object",
                "properties": { "message": { "type": "string", "description": "Message shown to the user" } },
                "required": ["message"]
            }
        },
        simple("test_elicitation_sep1034_defaults", "Elicitation whose fields have defaults (SEP-1034)."),
        simple("test_elicitation_sep1330_enums", "Elicitation with the five enum forms (SEP-1330)."),
        simple("test_missing_capability", "Needs the client's sampling capability; -32021 without it."),
        simple("update_watched_resource", "Changes test://watched-resource and notifies subscribers."),
        simple("test_trigger_tool_change", "Adds or removes test_dynamic_tool; announces the change."),
        simple("test_trigger_prompt_change", "Adds or removes test_dynamic_prompt; announces the change."),
        simple("test_input_required_result_elicitation", "SEP-2322: asks for a name (elicitation)."),
        simple("test_input_required_result_sampling", "SEP-2322: asks the client's LLM (sampling)."),
        simple("test_input_required_result_list_roots", "SEP-2322: asks for the client's roots."),
        simple("test_input_required_result_request_state", "SEP-2322: round-trips a sealed requestState."),
        simple("test_input_required_result_multiple_inputs", "SEP-2322: three input requests at once."),
        simple("test_input_required_result_multi_round", "SEP-2322: two rounds of input."),
        simple("test_input_required_result_tampered_state", "SEP-2322: refuses a tampered requestState."),
        simple("test_input_required_result_capabilities", "SEP-2322: asks only what the client declared."),
        simple("test_streaming_elicitation", "SEP-2322: an elicitation as an input-required result."),
        {
            "name": JSON_SCHEMA_TOOL,
            "description": "Tool with JSON Schema 2020-12 features",
            "inputSchema": {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "$defs": {
                    "address": {
                        "$anchor": "addressDef",
                        "type": "object",
                        "properties": { "street": { "type": "string" }, "city": { "type": "string" } }
                    }
                },
                "properties": {
                    "name": { "type": "string" },
                    "address": { "$ref": "#/$defs/address" },
                    "contactMethod": { "type": "string", "enum": ["phone", "email"] },
                    "phone": { "type": "string" },
                    "email": { "type": "string" }
                },
                "allOf": [ { "anyOf": [ { "required": ["phone"] }, { "required": ["email"] } ] } ],
                "if": { "properties": { "contactMethod": { "const": "phone" } }, "required": ["contactMethod"] },
                "then": { "required": ["phone"] },
                "else": { "required": ["email"] },
                "additionalProperties": false
            }
        }
    ])
}

fn resources() -> Value {
    json!([
        { "uri": STATIC_TEXT, "name": "static-text", "description": "A static text resource",
          "mimeType": "text/plain" },
        { "uri": STATIC_BINARY, "name": "static-binary", "description": "A static PNG image",
          "mimeType": "image/png" },
        { "uri": WATCHED_RESOURCE, "name": "watched-resource",
          "description": "A resource that changes (update_watched_resource); subscribe to hear about it",
          "mimeType": "text/plain" }
    ])
}

fn prompts() -> Value {
    let arg = |name: &str, description: &str| json!({ "name": name, "description": description, "required": true });
    json!([
        { "name": "test_simple_prompt", "description": "A simple prompt without arguments" },
        { "name": "test_prompt_with_arguments", "description": "A prompt with two arguments",
          "arguments": [arg("arg1", "First test argument"), arg("arg2", "Second test argument")] },
        { "name": "test_prompt_with_embedded_resource", "description": "A prompt embedding a resource",
          "arguments": [arg("resourceUri", "URI of the resource to embed")] },
        { "name": "test_prompt_with_image", "description": "A prompt with an image" },
        { "name": "test_input_required_result_prompt",
          "description": "SEP-2322: asks for context (elicitation) before answering" }
    ])
}

/// Candidate completions for (reference, argument).
fn completion_candidates(reference: &Value, argument: &str) -> &'static [&'static str] {
    match (reference["type"].as_str(), argument) {
        (Some("ref/prompt"), "arg1") if reference["name"] == "test_prompt_with_arguments" => {
            &["paris", "park", "party", "hello"]
        }
        (Some("ref/prompt"), "arg2") if reference["name"] == "test_prompt_with_arguments" => {
            &["world", "wonder", "work"]
        }
        (Some("ref/prompt"), "resourceUri") => &[STATIC_TEXT, STATIC_BINARY, WATCHED_RESOURCE],
        (Some("ref/resource"), "id") if reference["uri"] == TEMPLATE => &["1", "2", "3", "123"],
        _ => &[],
    }
}

/// `test://template/{id}/data` → `id`.
fn template_id(uri: &str) -> Option<&str> {
    let id = uri
        .strip_prefix("test://template/")?
        .strip_suffix("/data")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

fn arg<'a>(args: &'a Map<String, Value>, name: &str) -> Result<&'a str, ErrorData> {
    args.get(name).and_then(Value::as_str).ok_or_else(|| {
        ErrorData::invalid_params(format!("missing required string argument {name:?}"), None)
    })
}

impl ConformanceServer {
    /// A fresh connection's server.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new connection sharing `other`'s process-wide state.
    fn sibling(other: &Self) -> Self {
        Self {
            state: Arc::default(),
            shared: other.shared.clone(),
        }
    }

    async fn trigger(
        &self,
        ctx: &RequestContext<RoleServer>,
        prompts: bool,
    ) -> Result<CallToolResponse, ErrorData> {
        use std::sync::atomic::Ordering;
        let (flag, change, what) = if prompts {
            (
                &self.shared.dynamic_prompt,
                Change::Prompts,
                "prompt test_dynamic_prompt",
            )
        } else {
            (
                &self.shared.dynamic_tool,
                Change::Tools,
                "tool test_dynamic_tool",
            )
        };
        let now = !flag.fetch_xor(true, Ordering::SeqCst);
        let _ = self.shared.changes.send(change);
        let stateless = ctx.protocol_version().is_some_and(|v| !v.has_initialize());
        if !stateless {
            let sent = if prompts {
                ctx.peer.notify_prompt_list_changed().await
            } else {
                ctx.peer.notify_tool_list_changed().await
            };
            sent.map_err(|e| ErrorData::internal_error(format!("list_changed: {e}"), None))?;
        }
        let state = if now { "added" } else { "removed" };
        tool_result(vec![text(format!("{what} {state}"))])
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a log message at `level` may be sent for this request: on
    /// 2026-07-28 only when `_meta` carries a `logLevel` it reaches; before,
    /// unless `logging/setLevel` set a higher threshold.
    fn may_log(&self, ctx: &RequestContext<RoleServer>, level: LoggingLevel) -> bool {
        let stateless = ctx.protocol_version().is_some_and(|v| !v.has_initialize());
        let threshold = if stateless {
            match ctx.meta.log_level() {
                Some(l) => Some(l),
                None => return false,
            }
        } else {
            self.lock().level
        };
        threshold.is_none_or(|t| rank(level) >= rank(t))
    }

    async fn log(
        &self,
        ctx: &RequestContext<RoleServer>,
        level: LoggingLevel,
        message: &str,
    ) -> Result<(), ErrorData> {
        if !self.may_log(ctx, level) {
            return Ok(());
        }
        ctx.peer
            .notify_logging_message(
                LoggingMessageNotificationParam::new(level, json!(message))
                    .with_logger("conformance-fixture"),
            )
            .await
            .map_err(|e| ErrorData::internal_error(format!("log notification: {e}"), None))
    }

    async fn with_logging(
        &self,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.log(ctx, LoggingLevel::Info, "Tool execution started")
            .await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.log(ctx, LoggingLevel::Info, "Tool processing data")
            .await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.log(ctx, LoggingLevel::Info, "Tool execution completed")
            .await?;
        tool_result(vec![text("Tool with logging executed successfully")])
    }

    async fn with_progress(
        &self,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let token = ctx.meta.get_progress_token();
        for (i, progress) in [0.0, 50.0, 100.0].into_iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if let Some(token) = &token {
                ctx.peer
                    .notify_progress(
                        ProgressNotificationParam::new(token.clone(), progress)
                            .with_total(100.0)
                            .with_message(format!("{progress}/100")),
                    )
                    .await
                    .map_err(|e| ErrorData::internal_error(format!("progress: {e}"), None))?;
            }
        }
        tool_result(vec![text("Tool with progress executed successfully")])
    }

    async fn sampling(
        &self,
        ctx: &RequestContext<RoleServer>,
        args: &Map<String, Value>,
    ) -> Result<CallToolResponse, ErrorData> {
        let prompt = arg(args, "prompt")?;
        if ctx.client_capabilities().and_then(|c| c.sampling).is_none() {
            return tool_error("the client did not declare the sampling capability");
        }
        let params: CreateMessageRequestParams = from_json(json!({
            "messages": [ { "role": "user", "content": text(prompt) } ],
            "maxTokens": 100
        }))?;
        let answer = match ctx.peer.create_message(params).await {
            Ok(r) => serde_json::to_value(r).unwrap_or_default(),
            Err(e) => return tool_error(format!("sampling failed: {e}")),
        };
        let content = &answer["content"];
        let block = content.get(0).unwrap_or(content);
        let reply = block["text"].as_str().unwrap_or_default();
        tool_result(vec![text(format!("LLM response: {reply}"))])
    }

    async fn elicit(
        &self,
        ctx: &RequestContext<RoleServer>,
        message: &str,
        schema: Value,
        prefix: &str,
    ) -> Result<CallToolResponse, ErrorData> {
        if ctx
            .client_capabilities()
            .and_then(|c| c.elicitation)
            .is_none()
        {
            return tool_error("the client did not declare the elicitation capability");
        }
        let params: ElicitRequestParams = from_json(json!({
            "mode": "form",
            "message": message,
            "requestedSchema": schema
        }))?;
        let result = match ctx.peer.create_elicitation(params).await {
            Ok(r) => serde_json::to_value(r).unwrap_or_default(),
            Err(e) => return tool_error(format!("elicitation failed: {e}")),
        };
        let action = result["action"].as_str().unwrap_or("unknown");
        let content = result.get("content").cloned().unwrap_or(json!({}));
        tool_result(vec![text(format!(
            "{prefix}action={action}, content={content}"
        ))])
    }

    async fn update_watched(
        &self,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let (revision, subscribed) = {
            let mut st = self.lock();
            st.watched_revision += 1;
            (
                st.watched_revision,
                st.subscriptions.contains(WATCHED_RESOURCE),
            )
        };
        let _ = self
            .shared
            .changes
            .send(Change::ResourceUpdated(WATCHED_RESOURCE.to_owned()));
        if subscribed {
            ctx.peer
                .notify_resource_updated(ResourceUpdatedNotificationParam::new(WATCHED_RESOURCE))
                .await
                .map_err(|e| ErrorData::internal_error(format!("updated: {e}"), None))?;
        }
        tool_result(vec![text(format!(
            "{WATCHED_RESOURCE} is now at revision {revision} (subscribed: {subscribed})"
        ))])
    }
}

/// One step of a SEP-2322 multi round-trip tool.
enum Step {
    /// Ask the client (an `InputRequiredResult`).
    Ask(InputRequiredResult),
    /// Finish with this text.
    Done(String),
}

fn elicit_request(message: &str, field: &str) -> Value {
    json!({ "method": "elicitation/create", "params": {
        "mode": "form",
        "message": message,
        "requestedSchema": { "type": "object",
            "properties": { field: { "type": "string" } }, "required": [field] }
    } })
}

fn sampling_request(prompt: &str, max_tokens: u32) -> Value {
    json!({ "method": "sampling/createMessage", "params": {
        "messages": [ { "role": "user", "content": text(prompt) } ],
        "maxTokens": max_tokens
    } })
}

fn roots_request() -> Value {
    json!({ "method": "roots/list", "params": {} })
}

fn input_required(
    requests: Value,
    state: Option<String>,
) -> Result<InputRequiredResult, ErrorData> {
    let mut v = json!({ "resultType": "input_required", "inputRequests": requests });
    if let Some(state) = state {
        v["requestState"] = json!(state);
    }
    from_json(v)
}

fn invalid(message: impl Into<String>) -> ErrorData {
    ErrorData::invalid_params(message.into(), None)
}

/// The accepted elicitation answer's `field` in `responses[key]`.
fn accepted(responses: &InputResponses, key: &str, field: &str) -> Result<String, ErrorData> {
    let r = responses
        .get(key)
        .ok_or_else(|| invalid(format!("inputResponses lacks {key:?}")))?;
    let action = r
        .get("action")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("inputResponses.{key} is not an elicitation result")))?;
    if action != "accept" {
        return Ok(format!("({action})"));
    }
    Ok(r["content"][field]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| r["content"][field].to_string()))
}

/// The text of a sampling result in `responses[key]`.
fn sampled(responses: &InputResponses, key: &str) -> Result<String, ErrorData> {
    let r = responses
        .get(key)
        .ok_or_else(|| invalid(format!("inputResponses lacks {key:?}")))?;
    let content = &r["content"];
    let block = content.get(0).unwrap_or(content);
    block["text"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| invalid(format!("inputResponses.{key} is not a sampling result")))
}

/// The root URIs of a `roots/list` result in `responses[key]`.
fn roots(responses: &InputResponses, key: &str) -> Result<String, ErrorData> {
    let r = responses
        .get(key)
        .ok_or_else(|| invalid(format!("inputResponses lacks {key:?}")))?;
    let list = r["roots"]
        .as_array()
        .ok_or_else(|| invalid(format!("inputResponses.{key} is not a roots/list result")))?;
    Ok(list
        .iter()
        .filter_map(|root| root["uri"].as_str())
        .collect::<Vec<_>>()
        .join(", "))
}

/// The per-process key that seals `requestState` (HMAC, rmcp's codec).
fn state_codec() -> &'static RequestStateCodec {
    static CODEC: std::sync::OnceLock<RequestStateCodec> = std::sync::OnceLock::new();
    CODEC.get_or_init(|| {
        let mut key = vec![0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut key))
            .expect("read /dev/urandom");
        RequestStateCodec::new(key)
    })
}

impl ConformanceServer {
    /// The SEP-2322 tools: ask with an `InputRequiredResult`, finish when
    /// the retried call carries the answers (and, where used, a sealed
    /// `requestState` naming this tool and round).
    fn mrtr(
        &self,
        ctx: &RequestContext<RoleServer>,
        tool: &str,
        responses: &Option<InputResponses>,
        state: &Option<String>,
    ) -> Result<Step, ErrorData> {
        let seal = |round: u32| {
            state_codec()
                .seal_json(&json!({ "tool": tool, "round": round }))
                .map_err(|e| ErrorData::internal_error(e.to_string(), None))
        };
        // The round a valid state says, or an error for a tampered one.
        let round = match state {
            None => None,
            Some(s) => {
                let v: Value = state_codec()
                    .open_json(s)
                    .map_err(|_| invalid("requestState failed its integrity check"))?;
                if v["tool"] != tool {
                    return Err(invalid("requestState belongs to another request"));
                }
                v["round"].as_u64()
            }
        };
        let ask = |requests: Value, state: Option<String>| {
            Ok(Step::Ask(input_required(requests, state)?))
        };
        let Some(responses) = responses.as_ref() else {
            return match tool {
                "test_input_required_result_elicitation" | "test_streaming_elicitation" => ask(
                    json!({ "user_name": elicit_request("What is your name?", "name") }),
                    None,
                ),
                "test_input_required_result_sampling" => ask(
                    json!({ "capital_question": sampling_request("What is the capital of France?", 100) }),
                    None,
                ),
                "test_input_required_result_list_roots" => {
                    ask(json!({ "client_roots": roots_request() }), None)
                }
                "test_input_required_result_request_state"
                | "test_input_required_result_tampered_state" => {
                    let confirm = json!({ "method": "elicitation/create", "params": {
                        "mode": "form", "message": "Please confirm",
                        "requestedSchema": { "type": "object",
                            "properties": { "ok": { "type": "boolean" } }, "required": ["ok"] } } });
                    ask(json!({ "confirm": confirm }), Some(seal(1)?))
                }
                "test_input_required_result_multiple_inputs" => ask(
                    json!({
                        "user_name": elicit_request("What is your name?", "name"),
                        "greeting": sampling_request("Generate a greeting", 50),
                        "client_roots": roots_request(),
                    }),
                    Some(seal(1)?),
                ),
                "test_input_required_result_multi_round" => ask(
                    json!({ "step1": elicit_request("Step 1: What is your name?", "name") }),
                    Some(seal(1)?),
                ),
                "test_input_required_result_capabilities" => {
                    let caps = ctx.client_capabilities().unwrap_or_default();
                    let mut requests = Map::new();
                    if caps.elicitation.is_some() {
                        requests.insert(
                            "user_name".into(),
                            elicit_request("What is your name?", "name"),
                        );
                    }
                    if caps.sampling.is_some() {
                        requests.insert(
                            "greeting".into(),
                            sampling_request("Generate a greeting", 50),
                        );
                    }
                    if caps.roots.is_some() {
                        requests.insert("client_roots".into(), roots_request());
                    }
                    if requests.is_empty() {
                        return Ok(Step::Done(
                            "the client declared no capability to ask with".into(),
                        ));
                    }
                    ask(Value::Object(requests), Some(seal(1)?))
                }
                other => Err(invalid(format!("unknown tool {other:?}"))),
            };
        };
        match tool {
            "test_input_required_result_elicitation" | "test_streaming_elicitation" => {
                if !responses.contains_key("user_name") {
                    // Re-request what is missing rather than failing (SEP-2322 SHOULD).
                    return ask(
                        json!({ "user_name": elicit_request("What is your name?", "name") }),
                        None,
                    );
                }
                Ok(Step::Done(format!(
                    "Hello, {}!",
                    accepted(responses, "user_name", "name")?
                )))
            }
            "test_input_required_result_sampling" => Ok(Step::Done(format!(
                "Sampling answer: {}",
                sampled(responses, "capital_question")?
            ))),
            "test_input_required_result_list_roots" => Ok(Step::Done(format!(
                "Client roots: {}",
                roots(responses, "client_roots")?
            ))),
            "test_input_required_result_request_state"
            | "test_input_required_result_tampered_state" => {
                if round != Some(1) {
                    return Err(invalid("missing or wrong requestState"));
                }
                let ok = &responses
                    .get("confirm")
                    .ok_or_else(|| invalid("inputResponses lacks \"confirm\""))?["content"]["ok"];
                Ok(Step::Done(format!("state-ok: confirmed={ok}")))
            }
            "test_input_required_result_multiple_inputs" => {
                if round != Some(1) {
                    return Err(invalid("missing or wrong requestState"));
                }
                Ok(Step::Done(format!(
                    "name={}, greeting={}, roots={}",
                    accepted(responses, "user_name", "name")?,
                    sampled(responses, "greeting")?,
                    roots(responses, "client_roots")?
                )))
            }
            "test_input_required_result_multi_round" => match round {
                Some(1) => {
                    accepted(responses, "step1", "name")?;
                    ask(
                        json!({ "step2": elicit_request("Step 2: What is your favorite color?", "color") }),
                        Some(seal(2)?),
                    )
                }
                Some(2) => Ok(Step::Done(format!(
                    "favorite color: {}",
                    accepted(responses, "step2", "color")?
                ))),
                _ => Err(invalid("missing or wrong requestState")),
            },
            "test_input_required_result_capabilities" => {
                if round != Some(1) {
                    return Err(invalid("missing or wrong requestState"));
                }
                Ok(Step::Done(format!(
                    "answered: {}",
                    responses.keys().cloned().collect::<Vec<_>>().join(", ")
                )))
            }
            other => Err(invalid(format!("unknown tool {other:?}"))),
        }
    }
}

impl ServerHandler for ConformanceServer {
    fn get_info(&self) -> ServerConfig {
        let mut info: ServerConfig = serde_json::from_value(json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {
                "tools": { "listChanged": true },
                "prompts": { "listChanged": true },
                "resources": { "subscribe": true },
                "logging": {},
                "completions": {}
            },
            "serverInfo": { "name": "mcpgate-conformance-fixture", "version": env!("CARGO_PKG_VERSION") }
        }))
        .expect("static server info");
        info.instructions = Some("Fixture for the MCP conformance suite (server side).".into());
        info
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        // rmcp narrows this to what was requested and what get_info advertises.
        let receiver = self.shared.changes.subscribe();
        self.lock().listens.push_back(receiver);
        Some(requested.clone())
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let taken = self.lock().listens.pop_front();
        let mut changes = taken.unwrap_or_else(|| self.shared.changes.subscribe());
        loop {
            let change = tokio::select! {
                () = context.cancelled() => return Ok(()),
                c = changes.recv() => c,
            };
            let sink = context.sink();
            let sent = match change {
                Ok(Change::Tools) => sink.notify_tool_list_changed().await,
                Ok(Change::Prompts) => sink.notify_prompt_list_changed().await,
                Ok(Change::ResourceUpdated(uri)) => sink.notify_resource_updated(uri).await,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
            };
            match sent {
                Ok(()) | Err(SubscriptionSendError::NotificationNotAccepted(_)) => {}
                Err(_) => return Ok(()),
            }
        }
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let mut list = tools();
        if self
            .shared
            .dynamic_tool
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            list.as_array_mut().expect("tools() is an array").push(json!({
                "name": "test_dynamic_tool", "description": "Present after an odd number of test_trigger_tool_change calls.",
                "inputSchema": { "type": "object", "properties": {} } }));
        }
        complete(json!({ "tools": list }))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = request.arguments.clone().unwrap_or_default();
        match request.name.as_ref() {
            "test_simple_text" => {
                tool_result(vec![text("This is a simple text response for testing.")])
            }
            "test_image_content" => tool_result(vec![
                json!({ "type": "image", "data": PNG_BASE64, "mimeType": "image/png" }),
            ]),
            "test_audio_content" => tool_result(vec![
                json!({ "type": "audio", "data": WAV_BASE64, "mimeType": "audio/wav" }),
            ]),
            "test_embedded_resource" => tool_result(vec![json!({
                "type": "resource",
                "resource": { "uri": "test://embedded-resource", "mimeType": "text/plain",
                              "text": "This is an embedded resource content." }
            })]),
            "test_multiple_content_types" => tool_result(vec![
                text("Multiple content types test:"),
                json!({ "type": "image", "data": PNG_BASE64, "mimeType": "image/png" }),
                json!({
                    "type": "resource",
                    "resource": { "uri": "test://mixed-content-resource", "mimeType": "application/json",
                                  "text": "{\"test\":\"data\",\"value\":123}" }
                }),
            ]),
            "test_tool_with_logging" | "test_logging_tool" => self.with_logging(&ctx).await,
            "test_tool_with_progress" => self.with_progress(&ctx).await,
            "test_error_handling" => {
                tool_error("This tool intentionally returns an error for testing")
            }
            "test_sampling" => self.sampling(&ctx, &args).await,
            "test_elicitation" => {
                let message = arg(&args, "message")?;
                let schema = json!({
                    "type": "object",
                    "properties": {
                        "username": { "type": "string", "description": "User's response" },
                        "email": { "type": "string", "description": "User's email address" }
                    },
                    "required": ["username", "email"]
                });
                self.elicit(&ctx, message, schema, "User response: ").await
            }
            "test_elicitation_sep1034_defaults" => {
                let schema = json!({
                    "type": "object",
                    "properties": {
                        "name": { "type": "string", "description": "Your name", "default": "John Doe" },
                        "age": { "type": "integer", "description": "Your age", "default": 30 },
                        "score": { "type": "number", "description": "Your score", "default": 95.5 },
                        "status": { "type": "string", "description": "Status",
                                    "enum": ["active", "inactive", "pending"], "default": "active" },
                        "verified": { "type": "boolean", "description": "Verified", "default": true }
                    }
                });
                self.elicit(
                    &ctx,
                    "Please confirm or change the defaults",
                    schema,
                    "Elicitation completed: ",
                )
                .await
            }
            "test_elicitation_sep1330_enums" => {
                let schema = json!({
                    "type": "object",
                    "properties": {
                        "untitledSingle": { "type": "string", "title": "Untitled single",
                                            "enum": ["option1", "option2", "option3"] },
                        "titledSingle": { "type": "string", "title": "Titled single", "oneOf": [
                            { "const": "value1", "title": "First Option" },
                            { "const": "value2", "title": "Second Option" },
                            { "const": "value3", "title": "Third Option" } ] },
                        "legacyEnum": { "type": "string", "title": "Legacy titled",
                                        "enum": ["opt1", "opt2", "opt3"],
                                        "enumNames": ["Option One", "Option Two", "Option Three"] },
                        "untitledMulti": { "type": "array", "title": "Untitled multi",
                                           "items": { "type": "string", "enum": ["option1", "option2", "option3"] } },
                        "titledMulti": { "type": "array", "title": "Titled multi", "items": { "anyOf": [
                            { "const": "value1", "title": "First Choice" },
                            { "const": "value2", "title": "Second Choice" },
                            { "const": "value3", "title": "Third Choice" } ] } }
                    }
                });
                self.elicit(&ctx, "Pick some options", schema, "Elicitation completed: ")
                    .await
            }
            "test_missing_capability" => {
                if ctx.client_capabilities().and_then(|c| c.sampling).is_none() {
                    return Err(ErrorData::new(
                        ErrorCode(-32021),
                        "this tool needs the client's sampling capability",
                        Some(json!({ "requiredCapabilities": { "sampling": {} } })),
                    ));
                }
                tool_result(vec![text("the client declared sampling")])
            }
            "update_watched_resource" => self.update_watched(&ctx).await,
            "test_trigger_tool_change" => self.trigger(&ctx, false).await,
            "test_trigger_prompt_change" => self.trigger(&ctx, true).await,
            "test_dynamic_tool" => tool_result(vec![text("the dynamic tool ran")]),
            name if name.starts_with("test_input_required_result_")
                || name == "test_streaming_elicitation" =>
            {
                if ctx.protocol_version().is_none_or(|v| v.has_initialize()) {
                    return tool_error(
                        "input-required results (SEP-2322) need protocol version 2026-07-28",
                    );
                }
                let name = name.to_owned();
                match self.mrtr(
                    &ctx,
                    &name,
                    &request.input_responses,
                    &request.request_state,
                )? {
                    Step::Ask(irr) => Ok(irr.into()),
                    Step::Done(text_out) => tool_result(vec![text(text_out)]),
                }
            }
            JSON_SCHEMA_TOOL => tool_result(vec![text("ok")]),
            other => Err(ErrorData::invalid_params(
                format!("unknown tool {other:?}"),
                None,
            )),
        }
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        complete(json!({ "resources": resources() }))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        complete(json!({ "resourceTemplates": [ {
            "uriTemplate": TEMPLATE, "name": "template-data",
            "description": "JSON data for an id", "mimeType": "application/json"
        } ] }))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let uri = request.uri.as_str();
        let content = match uri {
            STATIC_TEXT => json!({ "uri": uri, "mimeType": "text/plain",
                                   "text": "This is the content of the static text resource." }),
            STATIC_BINARY => json!({ "uri": uri, "mimeType": "image/png", "blob": PNG_BASE64 }),
            WATCHED_RESOURCE => {
                let revision = self.lock().watched_revision;
                json!({ "uri": uri, "mimeType": "text/plain",
                        "text": format!("Watched resource, revision {revision}.") })
            }
            _ => match template_id(uri) {
                Some(id) => {
                    let body = json!({ "id": id, "templateTest": true, "data": format!("Data for ID: {id}") });
                    json!({ "uri": uri, "mimeType": "application/json", "text": body.to_string() })
                }
                None => {
                    return Err(ErrorData::invalid_params(
                        "Resource not found",
                        Some(json!({ "uri": uri })),
                    ));
                }
            },
        };
        let result: ReadResourceResult = complete(json!({ "contents": [content] }))?;
        Ok(result.into())
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let uri = request.uri.as_str();
        if ![STATIC_TEXT, STATIC_BINARY, WATCHED_RESOURCE].contains(&uri)
            && template_id(uri).is_none()
        {
            return Err(ErrorData::invalid_params(
                "Resource not found",
                Some(json!({ "uri": uri })),
            ));
        }
        self.lock().subscriptions.insert(uri.to_owned());
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.lock().subscriptions.remove(request.uri.as_str());
        Ok(())
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.lock().level = Some(request.level);
        Ok(())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let mut list = prompts();
        if self
            .shared
            .dynamic_prompt
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            list.as_array_mut().expect("prompts() is an array").push(json!({
                "name": "test_dynamic_prompt",
                "description": "Present after an odd number of test_trigger_prompt_change calls." }));
        }
        complete(json!({ "prompts": list }))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let args = request.arguments.clone().unwrap_or_default();
        let user = |content: Value| json!({ "role": "user", "content": content });
        let messages = match request.name.as_str() {
            "test_simple_prompt" => vec![user(text("This is a simple prompt for testing."))],
            "test_dynamic_prompt"
                if self
                    .shared
                    .dynamic_prompt
                    .load(std::sync::atomic::Ordering::SeqCst) =>
            {
                vec![user(text("This prompt comes and goes."))]
            }
            "test_prompt_with_arguments" => {
                let (a1, a2) = (arg(&args, "arg1")?, arg(&args, "arg2")?);
                vec![user(text(format!(
                    "Prompt with arguments: arg1='{a1}', arg2='{a2}'"
                )))]
            }
            "test_prompt_with_embedded_resource" => {
                let uri = arg(&args, "resourceUri")?;
                vec![
                    user(json!({ "type": "resource", "resource": {
                        "uri": uri, "mimeType": "text/plain",
                        "text": "Embedded resource content for testing." } })),
                    user(text("Please process the embedded resource above.")),
                ]
            }
            "test_input_required_result_prompt" => {
                let need = json!({ "user_context": elicit_request(
                    "What context should the prompt use?", "context") });
                match request
                    .input_responses
                    .as_ref()
                    .map(|r| accepted(r, "user_context", "context"))
                {
                    Some(Ok(context)) => {
                        vec![user(text(format!("Answer using this context: {context}")))]
                    }
                    Some(Err(e)) => return Err(e),
                    None => return Ok(input_required(need, None)?.into()),
                }
            }
            "test_prompt_with_image" => vec![
                user(json!({ "type": "image", "data": PNG_BASE64, "mimeType": "image/png" })),
                user(text("Please analyze the image above.")),
            ],
            other => {
                return Err(ErrorData::invalid_params(
                    format!("unknown prompt {other:?}"),
                    None,
                ));
            }
        };
        let result: GetPromptResult = complete(json!({ "messages": messages }))?;
        Ok(result.into())
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let req = serde_json::to_value(&request)
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        let name = req["argument"]["name"].as_str().unwrap_or_default();
        let typed = req["argument"]["value"].as_str().unwrap_or_default();
        let values: Vec<&str> = completion_candidates(&req["ref"], name)
            .iter()
            .copied()
            .filter(|v| v.starts_with(typed))
            .collect();
        complete(json!({ "completion": {
            "values": values, "total": values.len(), "hasMore": false
        } }))
    }
}

/// Serve a [`ConformanceServer`] over stdio until stdin closes.
pub async fn run_conformance_stdio() -> anyhow::Result<()> {
    let running = ConformanceServer::new()
        .serve(rmcp::transport::stdio())
        .await?;
    let reason = running.waiting().await?;
    tracing::info!(?reason, "conformance fixture stopped");
    Ok(())
}

/// A running HTTP conformance fixture; dropping it stops the server.
#[derive(Debug)]
pub struct ConformanceHttpHandle {
    addr: SocketAddr,
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl ConformanceHttpHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>/mcp`.
    pub fn url(&self) -> String {
        format!("http://{}{CONFORMANCE_MCP_PATH}", self.addr)
    }

    /// Stop and wait for the server task.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.cancel.cancel();
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        match tokio::time::timeout(Duration::from_secs(5), task).await {
            Ok(joined) => Ok(joined??),
            Err(_) => Ok(()),
        }
    }
}

impl Drop for ConformanceHttpHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Serve the fixture over Streamable HTTP on `127.0.0.1:port` (0 = any free
/// port) at `/mcp`, one [`ConformanceServer`] per session. rmcp's DNS
/// rebinding checks are on: `Host` must be `127.0.0.1`, `localhost` or `::1`
/// and a present `Origin` must be `http://` one of those.
pub async fn serve_conformance_http(port: u16) -> anyhow::Result<ConformanceHttpHandle> {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await?;
    let addr = listener.local_addr()?;
    let cancel = CancellationToken::new();
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(["127.0.0.1", "localhost", "::1"])
        .with_allowed_origins(["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"])
        .with_cancellation_token(cancel.child_token());
    let first = ConformanceServer::new();
    let service = StreamableHttpService::new(
        move || Ok(ConformanceServer::sibling(&first)),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let router = axum::Router::new().nest_service(CONFORMANCE_MCP_PATH, service);
    let stop = cancel.clone();
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
    });
    Ok(ConformanceHttpHandle {
        addr,
        cancel,
        task: Some(task),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_lists_parse_into_rmcp_types() {
        let tools: ListToolsResult = from_json(json!({ "tools": tools() })).unwrap();
        assert!(tools.tools.iter().any(|t| t.name == "test_simple_text"));
        let _: ListResourcesResult = from_json(json!({ "resources": resources() })).unwrap();
        let _: ListPromptsResult = from_json(json!({ "prompts": prompts() })).unwrap();
        let _ = ConformanceServer::new().get_info();
    }

    #[test]
    fn template_ids_and_completions() {
        assert_eq!(template_id("test://template/123/data"), Some("123"));
        assert_eq!(template_id("test://template//data"), None);
        assert_eq!(template_id("test://template/1/2/data"), None);
        let r = json!({ "type": "ref/prompt", "name": "test_prompt_with_arguments" });
        assert!(completion_candidates(&r, "arg1").contains(&"paris"));
        assert!(completion_candidates(&r, "nope").is_empty());
    }

    #[test]
    fn log_levels_are_ordered() {
        assert!(rank(LoggingLevel::Debug) < rank(LoggingLevel::Info));
        assert!(rank(LoggingLevel::Error) < rank(LoggingLevel::Emergency));
    }
}
