//! The `testing` fixture upstream for the gateway's end-to-end tests (issue 3,
//! "Tests"): a real MCP server (official Rust SDK) whose tools let a test
//! observe what crossed the gateway.
//!
//! | tool | what it proves |
//! |---|---|
//! | `echo {text}` | a plain round trip |
//! | `env` | the stdio child's environment was cleared (a canary is absent) |
//! | `slow {ms}` | timeouts, cancellation, draining |
//! | `crash` | a child that dies mid-request fails that request and ends the session |
//! | `ask_user {question, via?}` | a server→client request (elicitation, or sampling) crosses the gateway; the result says `round_trip: "request"` or `"input_required"` |
//! | `notify {message?}` | notifications (logging, and progress when asked) stream through |
//! | `headers {all?}` | no `Authorization`/`Cookie` reached an HTTP upstream |
//!
//! It also serves the prompts [`PROMPTS`] (`prompts/list`, `prompts/get`
//! answers with one user message naming the prompt) and the resources
//! [`RESOURCES`] plus one template `fixture://notes/{id}` (`resources/list`,
//! `resources/templates/list`, `resources/read` returns `contents of {uri}`),
//! so that the gateway's prompt and resource policy can be tested.
//!
//! `ask_user` adapts to the protocol: on handshake versions (≤ 2025-11-25) it
//! sends `elicitation/create` (or `sampling/createMessage`) to the client; on
//! 2026-07-28, which forbids server→client requests, it answers with an
//! `InputRequiredResult` (SEP-2322 multi round-trip) carrying the same request.
//!
//! Served by [`run_testing_stdio`] and, on `127.0.0.1:0` at `/mcp`, by
//! [`serve_testing_http`] (in `testing/http_server.rs`).

// Sampling and logging are deprecated by SEP-2577 (2026-07-28) but remain part
// of the 2025-06-18/2025-11-25 protocols the gateway forwards, so the fixture
// exercises them on purpose.
#![allow(deprecated)]

mod http_server;

use std::sync::Arc;
use std::time::Duration;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::{InputResponses, RequestState};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResponse, CallToolResult, ContentBlock, CreateMessageRequest,
    CreateMessageRequestParams, ElicitRequest, ElicitRequestParams, GetPromptRequestParams,
    GetPromptResponse, GetPromptResult, Implementation, InputRequest, InputRequests,
    InputRequiredResult, ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult,
    LoggingLevel, LoggingMessageNotificationParam, PaginatedRequestParams,
    ProgressNotificationParam, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult,
    SamplingMessage, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{
    ErrorData, Peer, RoleServer, ServerHandler, ServiceExt, tool, tool_handler, tool_router,
};
use serde::Deserialize;
use serde_json::{Value, json};

pub use self::http_server::{
    MAX_RECORDED, MCP_PATH, RecordedHeaders, RecordedRequest, TestingHttpHandle,
    serve_testing_http, serve_testing_http_with,
};

/// Exit status of the process when the `crash` tool runs.
pub const CRASH_EXIT_CODE: i32 = 70;
/// Longest sleep `slow` accepts, in milliseconds.
pub const MAX_SLOW_MS: u64 = 10 * 60 * 1000;
/// Key of the single input request `ask_user` makes.
const ASK_KEY: &str = "answer";
/// `requestState` of the MRTR round that carries the answer.
const ASK_STATE: &str = "ask_user/1";

/// The prompts the fixture serves (`prompts/list`, `prompts/get`).
pub const PROMPTS: &[&str] = &["greet", "plan", "internal"];
/// The resources the fixture serves (`resources/list`, `resources/read`).
pub const RESOURCES: &[&str] = &["fixture://readme", "fixture://plans", "fixture://internal"];
/// The resource template the fixture serves (`resources/templates/list`);
/// `resources/read` also answers URIs under `fixture://notes/`.
pub const RESOURCE_TEMPLATE: &str = "fixture://notes/{id}";

fn from_json<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, ErrorData> {
    serde_json::from_value(v).map_err(|e| ErrorData::internal_error(e.to_string(), None))
}

/// How the fixture behaves.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct TestingOptions {
    /// Whether `crash` really exits the process. Off by default so that an
    /// in-process server ([`serve_testing_http`]) cannot kill the test
    /// harness; on for stdio and for the `mcpgate-test-upstream` binary.
    pub allow_crash: bool,
}

impl TestingOptions {
    /// Options with `crash` enabled or not.
    pub fn with_allow_crash(mut self, allow_crash: bool) -> Self {
        self.allow_crash = allow_crash;
        self
    }
}

/// Arguments of `echo`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct EchoArgs {
    /// Text returned verbatim.
    pub text: String,
}

/// Arguments of `slow`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SlowArgs {
    /// How long to sleep, in milliseconds (at most ten minutes).
    pub ms: u64,
}

/// How `ask_user` asks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AskVia {
    /// `elicitation/create`, form mode, one string field `answer`.
    #[default]
    Elicitation,
    /// `sampling/createMessage`; the answer is the reply's text.
    Sampling,
}

/// Arguments of `ask_user`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct AskArgs {
    /// The question shown to the user (or the sampling prompt).
    pub question: String,
    /// `elicitation` (default) or `sampling`.
    #[serde(default)]
    pub via: AskVia,
}

/// Arguments of `notify`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct NotifyArgs {
    /// Message carried by the notifications (default "hello").
    #[serde(default)]
    pub message: Option<String>,
}

/// Arguments of `headers`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct HeadersArgs {
    /// Also return every HTTP request this server has recorded (method, path,
    /// headers), not only the headers of the request carrying this call.
    #[serde(default)]
    pub all: bool,
}

/// The testing MCP server. Clones share options and the header recorder.
#[derive(Debug, Clone)]
pub struct TestingServer {
    options: Arc<TestingOptions>,
    recorded: Option<RecordedHeaders>,
    tool_router: ToolRouter<Self>,
}

fn text_error(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message.into())])
}

/// The elicitation or sampling request `ask_user` makes.
fn ask_request(args: &AskArgs) -> Result<InputRequest, ErrorData> {
    Ok(match args.via {
        AskVia::Elicitation => {
            let schema = serde_json::from_value(json!({
                "type": "object",
                "properties": { "answer": { "type": "string", "title": "Answer" } },
                "required": ["answer"]
            }))
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
            InputRequest::Elicitation(ElicitRequest::new(
                ElicitRequestParams::FormElicitationParams {
                    meta: None,
                    message: args.question.clone(),
                    requested_schema: schema,
                },
            ))
        }
        AskVia::Sampling => {
            InputRequest::CreateMessage(CreateMessageRequest::new(CreateMessageRequestParams::new(
                vec![SamplingMessage::user_text(args.question.clone())],
                256,
            )))
        }
    })
}

/// Ask over a server→client request (handshake protocol versions); the
/// client's result as JSON.
async fn ask_by_request(
    peer: &Peer<RoleServer>,
    request: InputRequest,
) -> Result<Value, ErrorData> {
    let failed =
        |what: &str, e: rmcp::ServiceError| ErrorData::internal_error(format!("{what}: {e}"), None);
    let value = match request {
        InputRequest::Elicitation(req) => serde_json::to_value(
            peer.create_elicitation(req.params)
                .await
                .map_err(|e| failed("elicitation", e))?,
        ),
        InputRequest::CreateMessage(req) => serde_json::to_value(
            peer.create_message(req.params)
                .await
                .map_err(|e| failed("sampling", e))?,
        ),
        _ => return Err(ErrorData::internal_error("unsupported input request", None)),
    };
    value.map_err(|e| ErrorData::internal_error(e.to_string(), None))
}

/// How the question reached the client.
#[derive(Debug, Clone, Copy)]
enum RoundTrip {
    /// A server→client JSON-RPC request (handshake protocol versions).
    Request,
    /// An `InputRequiredResult` and a retried call (2026-07-28).
    InputRequired,
}

/// The tool result for a client's answer (an `ElicitResult` or a
/// `CreateMessageResult`, as JSON).
fn ask_result(via: AskVia, round_trip: RoundTrip, response: &Value) -> CallToolResult {
    let round_trip = match round_trip {
        RoundTrip::Request => "request",
        RoundTrip::InputRequired => "input_required",
    };
    match via {
        AskVia::Elicitation => {
            let action = response["action"].as_str().unwrap_or("unknown");
            let answer = response["content"][ASK_KEY].clone();
            CallToolResult::structured(json!({
                "via": "elicitation",
                "round_trip": round_trip,
                "action": action,
                "answer": answer,
            }))
        }
        AskVia::Sampling => {
            // A `CreateMessageResult` is `{role, content, model, ...}`; its
            // `content` is one block or, since SEP-1577, possibly a list.
            let content = &response["content"];
            let block = content.get(0).unwrap_or(content);
            CallToolResult::structured(json!({
                "via": "sampling",
                "round_trip": round_trip,
                "action": "accept",
                "answer": block["text"].clone(),
                "model": response["model"].clone(),
            }))
        }
    }
}

#[tool_router]
impl TestingServer {
    /// A server with the given options and no header recorder.
    pub fn new(options: TestingOptions) -> Self {
        Self {
            options: Arc::new(options),
            recorded: None,
            tool_router: Self::tool_router(),
        }
    }

    /// The same server, reporting `recorded` from `headers {all: true}`.
    pub fn with_recorder(mut self, recorded: RecordedHeaders) -> Self {
        self.recorded = Some(recorded);
        self
    }

    #[tool(
        description = "Return the given text unchanged.",
        annotations(read_only_hint = true)
    )]
    fn echo(&self, Parameters(EchoArgs { text }): Parameters<EchoArgs>) -> CallToolResult {
        CallToolResult::success(vec![ContentBlock::text(text)])
    }

    #[tool(
        description = "Return this process's environment variables as a JSON object \
                       (values that are not UTF-8 are converted lossily).",
        annotations(read_only_hint = true)
    )]
    fn env(&self) -> CallToolResult {
        let vars: serde_json::Map<String, Value> = std::env::vars_os()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    Value::String(v.to_string_lossy().into_owned()),
                )
            })
            .collect();
        CallToolResult::structured(Value::Object(vars))
    }

    #[tool(
        description = "Sleep for `ms` milliseconds, then return. Stops early, with an \
                       error, when the request is cancelled.",
        annotations(read_only_hint = true)
    )]
    async fn slow(
        &self,
        Parameters(SlowArgs { ms }): Parameters<SlowArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        if ms > MAX_SLOW_MS {
            return Ok(text_error(format!("ms must be at most {MAX_SLOW_MS}")));
        }
        tracing::info!(ms, "slow call started");
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(ms)) => {
                Ok(CallToolResult::success(vec![ContentBlock::text(format!("slept {ms} ms"))]))
            }
            () = ctx.ct.cancelled() => {
                tracing::info!(ms, "slow call cancelled");
                Err(ErrorData::internal_error("cancelled", None))
            }
        }
    }

    #[tool(
        description = "Exit the server process abruptly, without answering this request \
                       (exit status 70). Disabled in in-process servers.",
        annotations(destructive_hint = true)
    )]
    fn crash(&self) -> CallToolResult {
        if !self.options.allow_crash {
            return text_error("crash is disabled in this server");
        }
        tracing::warn!("crash tool called: exiting now");
        std::process::exit(CRASH_EXIT_CODE);
    }

    #[tool(
        description = "Ask the user a question through the client and return the answer: \
                       an elicitation (default) or a sampling request. Uses a server->client \
                       request on handshake protocol versions and an input-required result \
                       (multi round-trip) on 2026-07-28.",
        annotations(read_only_hint = true)
    )]
    async fn ask_user(
        &self,
        Parameters(args): Parameters<AskArgs>,
        RequestState(state): RequestState,
        InputResponses(responses): InputResponses,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let request = ask_request(&args)?;
        let stateless = ctx
            .protocol_version()
            .is_some_and(|version| !version.has_initialize());
        if stateless {
            return match (state.as_deref(), responses) {
                (None, _) => {
                    let requests = InputRequests::from([(ASK_KEY.to_owned(), request)]);
                    Ok(InputRequiredResult::new(Some(requests), Some(ASK_STATE.into())).into())
                }
                (Some(ASK_STATE), Some(responses)) => match responses.get(ASK_KEY) {
                    Some(response) => {
                        Ok(ask_result(args.via, RoundTrip::InputRequired, response).into())
                    }
                    None => Err(ErrorData::invalid_params("missing input response", None)),
                },
                _ => Err(ErrorData::invalid_params("unexpected requestState", None)),
            };
        }
        let response = ask_by_request(&ctx.peer, request).await?;
        Ok(ask_result(args.via, RoundTrip::Request, &response).into())
    }

    #[tool(
        description = "Send a logging notification (and a progress notification when the \
                       call carries a progressToken), then return \"notified\".",
        annotations(read_only_hint = true)
    )]
    async fn notify(
        &self,
        Parameters(NotifyArgs { message }): Parameters<NotifyArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let message = message.unwrap_or_else(|| "hello".to_owned());
        let failed = |e: rmcp::ServiceError| ErrorData::internal_error(e.to_string(), None);
        ctx.peer
            .notify_logging_message(
                LoggingMessageNotificationParam::new(
                    LoggingLevel::Info,
                    json!({ "message": message }),
                )
                .with_logger("mcpgate-testing"),
            )
            .await
            .map_err(failed)?;
        if let Some(token) = ctx.meta.get_progress_token() {
            ctx.peer
                .notify_progress(
                    ProgressNotificationParam::new(token, 1.0)
                        .with_total(1.0)
                        .with_message(message.clone()),
                )
                .await
                .map_err(failed)?;
        }
        Ok(CallToolResult::success(vec![ContentBlock::text(
            "notified",
        )]))
    }

    #[tool(
        description = "HTTP only: return the headers of the HTTP request that carried this \
                       call as {name: [values]} (and, with all=true, every request recorded).",
        annotations(read_only_hint = true)
    )]
    fn headers(
        &self,
        Parameters(HeadersArgs { all }): Parameters<HeadersArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let Some(parts) = ctx.extensions.get::<http::request::Parts>() else {
            return text_error("headers is only available over HTTP");
        };
        let current = http_server::headers_json(&RecordedRequest::from_parts(
            &parts.method,
            &parts.uri,
            &parts.headers,
        ));
        let mut out = json!({ "headers": current });
        if all {
            let requests = self
                .recorded
                .as_ref()
                .map(RecordedHeaders::all)
                .unwrap_or_default();
            out["requests"] = requests
                .iter()
                .map(|r| json!({ "method": r.method, "path": r.path, "headers": http_server::headers_json(r) }))
                .collect();
        }
        CallToolResult::structured(out)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for TestingServer {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_prompts()
            .enable_resources()
            .enable_logging()
            .build();
        ServerConfig::new(capabilities).with_server_info(
            Implementation::new("mcpgate-testing", env!("CARGO_PKG_VERSION"))
                .with_title("mcpgate test fixture"),
        )
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let prompts: Vec<Value> = PROMPTS
            .iter()
            .map(|n| json!({ "name": n, "description": format!("the {n} prompt") }))
            .collect();
        from_json(json!({ "prompts": prompts }))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        if !PROMPTS.contains(&request.name.as_str()) {
            return Err(ErrorData::invalid_params("no such prompt", None));
        }
        let result: GetPromptResult = from_json(json!({
            "description": format!("the {} prompt", request.name),
            "messages": [{
                "role": "user",
                "content": { "type": "text", "text": format!("prompt {}", request.name) }
            }]
        }))?;
        Ok(result.into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let resources: Vec<Value> = RESOURCES
            .iter()
            .map(|u| json!({ "uri": u, "name": u.trim_start_matches("fixture://"), "mimeType": "text/plain" }))
            .collect();
        from_json(json!({ "resources": resources }))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        from_json(json!({ "resourceTemplates": [
            { "uriTemplate": RESOURCE_TEMPLATE, "name": "notes", "mimeType": "text/plain" }
        ] }))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let uri = request.uri.as_str();
        if !RESOURCES.contains(&uri) && !uri.starts_with("fixture://notes/") {
            return Err(ErrorData::resource_not_found("no such resource", None));
        }
        let result: ReadResourceResult = from_json(json!({ "contents": [
            { "uri": uri, "mimeType": "text/plain", "text": format!("contents of {uri}") }
        ] }))?;
        Ok(result.into())
    }
}

/// Serve a [`TestingServer`] (with `crash` enabled) over stdio until stdin
/// closes. Logs go to stderr only if the caller's subscriber sends them there.
pub async fn run_testing_stdio() -> anyhow::Result<()> {
    tracing::info!("testing upstream serving on stdio");
    let server = TestingServer::new(TestingOptions::default().with_allow_crash(true));
    let running = server.serve(rmcp::transport::stdio()).await?;
    let reason = running.waiting().await?;
    tracing::info!(?reason, "testing upstream stopped");
    Ok(())
}
