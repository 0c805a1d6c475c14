//! End-to-end tests of the upstream servers with the official Rust SDK's
//! *client* (rmcp): stdio through the real `mcpgate-test-upstream` binary
//! (child-process transport) and Streamable HTTP (in-process server and the
//! binary's `testing-http` mode).

// Sampling and logging are deprecated by SEP-2577 but still in the 2025-11-25
// protocol these servers speak; the client handler answers them on purpose.
#![allow(deprecated)]

mod conformance;
mod notes;
mod testing_http;
mod testing_stdio;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientInfo,
    CreateMessageRequestParams, CreateMessageResult, ElicitRequestParams, ElicitResult,
    ElicitationAction, ErrorData, LoggingMessageNotificationParam, ProgressNotificationParam,
    ProtocolVersion, SamplingMessage, Tool,
};
use rmcp::service::{NotificationContext, RequestContext, RunningService};
use rmcp::transport::{IntoTransport, TokioChildProcess};
use rmcp::{ClientHandler, ClientLifecycleMode, ClientServiceExt, RoleClient, ServiceExt};
use serde_json::{Value, json};

/// The fixture binary of this package.
const BIN: &str = env!("CARGO_BIN_EXE_mcpgate-test-upstream");

/// What the test client answers to elicitation and sampling requests.
const ANSWER: &str = "Ferris";

type Client = RunningService<RoleClient, TestClient>;

/// A client that declares elicitation and sampling, answers both with
/// [`ANSWER`], and records every logging and progress notification.
#[derive(Clone)]
struct TestClient {
    version: ProtocolVersion,
    events: Arc<Mutex<Vec<Value>>>,
}

impl TestClient {
    /// A client speaking the newest protocol with an `initialize` handshake
    /// (2025-11-25): sessions, server→client requests.
    fn handshake() -> Self {
        Self::with_version(ProtocolVersion::LATEST_WITH_INITIALIZE)
    }

    /// A client speaking 2026-07-28 (`server/discover`, no handshake):
    /// stateless, multi round-trip results instead of server→client requests.
    fn stateless() -> Self {
        Self::with_version(ProtocolVersion::V_2026_07_28)
    }

    fn with_version(version: ProtocolVersion) -> Self {
        Self {
            version,
            events: Arc::default(),
        }
    }

    fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }

    /// Wait (up to 5 s) until some recorded event matches.
    async fn wait_for_event(&self, matches: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..100 {
            if let Some(event) = self.events().into_iter().find(&matches) {
                return event;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("event not received; got {:?}", self.events());
    }

    fn record(&self, event: Value) {
        self.events.lock().unwrap().push(event);
    }
}

impl ClientHandler for TestClient {
    fn get_info(&self) -> ClientInfo {
        let capabilities = ClientCapabilities::builder()
            .enable_elicitation()
            .enable_sampling()
            .build();
        ClientInfo::new(
            capabilities,
            rmcp::model::Implementation::new("mcpgate-upstreams-it", "0"),
        )
        .with_protocol_version(self.version.clone())
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        self.record(json!({ "kind": "elicitation", "request": request }));
        Ok(ElicitResult::new(ElicitationAction::Accept).with_content(json!({ "answer": ANSWER })))
    }

    async fn create_message(
        &self,
        request: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        self.record(json!({ "kind": "sampling", "request": request }));
        Ok(
            CreateMessageResult::new(SamplingMessage::assistant_text(ANSWER), "test-model".into())
                .with_stop_reason(CreateMessageResult::STOP_REASON_END_TURN),
        )
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.record(json!({ "kind": "log", "params": params }));
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.record(json!({ "kind": "progress", "params": params }));
    }
}

/// Connect `handler` over `transport`: the `initialize` handshake for
/// handshake versions, `server/discover` for 2026-07-28.
async fn connect<T, E, A>(handler: TestClient, transport: T) -> Client
where
    T: IntoTransport<RoleClient, E, A>,
    E: std::error::Error + Send + Sync + 'static,
{
    let version = handler.version.clone();
    if version.has_initialize() {
        handler.serve(transport).await.expect("initialize")
    } else {
        let lifecycle = ClientLifecycleMode::Discover {
            preferred_versions: vec![version],
        };
        handler
            .serve_with_lifecycle(transport, lifecycle)
            .await
            .expect("server/discover")
    }
}

/// Spawn `mcpgate-test-upstream <mode>` and connect `client` over stdio.
async fn stdio_client(
    mode: &str,
    client: TestClient,
    configure: impl FnOnce(&mut tokio::process::Command),
) -> Client {
    let mut command = tokio::process::Command::new(BIN);
    command.arg(mode);
    configure(&mut command);
    command.env("RUST_LOG", "warn");
    let (transport, _stderr) = TokioChildProcess::builder(command)
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the fixture binary");
    connect(client, transport).await
}

/// A `tools/call` with JSON arguments.
async fn call(client: &Client, name: &'static str, arguments: Value) -> CallToolResult {
    try_call(client, name, arguments)
        .await
        .unwrap_or_else(|e| panic!("tools/call {name}: {e}"))
}

async fn try_call(
    client: &Client,
    name: &'static str,
    arguments: Value,
) -> Result<CallToolResult, rmcp::ServiceError> {
    let Value::Object(arguments) = arguments else {
        panic!("arguments must be an object");
    };
    client
        .call_tool(CallToolRequestParams::new(name).with_arguments(arguments))
        .await
}

/// The first text block of a result.
fn text(result: &CallToolResult) -> &str {
    result.content[0]
        .as_text()
        .map(|t| t.text.as_str())
        .expect("a text block")
}

/// The structured content of a successful result.
fn structured(result: &CallToolResult) -> &Value {
    assert_eq!(result.is_error, Some(false), "{result:?}");
    result
        .structured_content
        .as_ref()
        .expect("structured content")
}

/// The tools by name, each checked to have an object input schema.
fn tool_names(tools: &[Tool]) -> Vec<String> {
    let mut names: Vec<String> = tools
        .iter()
        .map(|tool| {
            assert_eq!(
                tool.input_schema.get("type"),
                Some(&json!("object")),
                "{}",
                tool.name
            );
            assert!(
                tool.description.is_some(),
                "{} has a description",
                tool.name
            );
            tool.name.to_string()
        })
        .collect();
    names.sort();
    names
}

fn tool<'a>(tools: &'a [Tool], name: &str) -> &'a Tool {
    tools.iter().find(|t| t.name == name).expect(name)
}

#[test]
fn test_upstream_binary_locates_this_packages_binary() {
    let found = mcpgate_upstreams::test_upstream_binary();
    assert_eq!(
        found.canonicalize().unwrap(),
        std::path::Path::new(BIN).canonicalize().unwrap()
    );
}
