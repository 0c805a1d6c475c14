//! The official Rust SDK's client (rmcp) through the gateway, with a real
//! token in `Authorization`: the handshake lifecycle (sessions) and the
//! stateless 2026-07-28 lifecycle, to a stdio child and an HTTP upstream.

// Sampling is deprecated by SEP-2577 but still part of 2025-11-25.
#![allow(deprecated)]

use std::sync::{Arc, Mutex};

use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientInfo, ElicitRequestParams, ElicitResult,
    ElicitationAction, ErrorData, LoggingMessageNotificationParam, ProgressNotificationParam,
    ProtocolVersion,
};
use rmcp::service::{NotificationContext, RequestContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, ClientLifecycleMode, ClientServiceExt, RoleClient, ServiceExt};
use serde_json::{Value, json};

use crate::harness::*;

#[derive(Clone)]
struct Handler {
    version: ProtocolVersion,
    events: Arc<Mutex<Vec<String>>>,
}

impl ClientHandler for Handler {
    fn get_info(&self) -> ClientInfo {
        let caps = ClientCapabilities::builder().enable_elicitation().build();
        ClientInfo::new(caps, rmcp::model::Implementation::new("gateway-it", "0"))
            .with_protocol_version(self.version.clone())
    }

    async fn create_elicitation(
        &self,
        _r: ElicitRequestParams,
        _c: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        self.events.lock().unwrap().push("elicitation".into());
        Ok(ElicitResult::new(ElicitationAction::Accept).with_content(json!({"answer": "Ferris"})))
    }

    async fn on_logging_message(
        &self,
        _p: LoggingMessageNotificationParam,
        _c: NotificationContext<RoleClient>,
    ) {
        self.events.lock().unwrap().push("log".into());
    }

    async fn on_progress(
        &self,
        _p: ProgressNotificationParam,
        _c: NotificationContext<RoleClient>,
    ) {
        self.events.lock().unwrap().push("progress".into());
    }
}

async fn connect(
    url: &str,
    token: &str,
    version: ProtocolVersion,
) -> (RunningService<RoleClient, Handler>, Handler) {
    let handler = Handler {
        version: version.clone(),
        events: Arc::default(),
    };
    let mut cfg = StreamableHttpClientTransportConfig::with_uri(url.to_owned());
    cfg.auth_header = Some(token.to_owned());
    let transport = StreamableHttpClientTransport::from_config(cfg);
    let client = if version.has_initialize() {
        handler
            .clone()
            .serve(transport)
            .await
            .expect("initialize through the gateway")
    } else {
        let lifecycle = ClientLifecycleMode::Discover {
            preferred_versions: vec![version],
        };
        handler
            .clone()
            .serve_with_lifecycle(transport, lifecycle)
            .await
            .expect("server/discover through the gateway")
    };
    (client, handler)
}

async fn call(
    client: &RunningService<RoleClient, Handler>,
    name: &'static str,
    args: Value,
) -> rmcp::model::CallToolResult {
    let Value::Object(args) = args else {
        unreachable!()
    };
    client
        .call_tool(CallToolRequestParams::new(name).with_arguments(args))
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmcp_client_through_the_gateway() {
    let (_, h) = mcpgate_upstreams::serve_testing_http()
        .await
        .expect("http upstream");
    let s = Stack::start(&standard_config(&h.url())).await;
    for name in ["stdio", "http"] {
        let token = s.token("alice", "notes:read notes:write", name).await;
        let (client, handler) = connect(
            &s.url(name),
            &token,
            ProtocolVersion::LATEST_WITH_INITIALIZE,
        )
        .await;
        let mut names: Vec<String> = client
            .list_all_tools()
            .await
            .expect("tools/list")
            .iter()
            .map(|t| t.name.to_string())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["ask_user", "crash", "echo", "env", "notify"],
            "{name}"
        );
        let echoed = call(&client, "echo", json!({"text": "sdk"})).await;
        assert_eq!(echoed.content[0].as_text().unwrap().text, "sdk");
        let asked = call(&client, "ask_user", json!({"question": "Name?"})).await;
        assert_eq!(
            asked.structured_content.as_ref().unwrap()["answer"],
            "Ferris",
            "{name}"
        );
        assert!(
            handler
                .events
                .lock()
                .unwrap()
                .contains(&"elicitation".to_string())
        );
        call(&client, "notify", json!({})).await;
        // A denied tool is an error, never a result.
        let denied = client
            .call_tool(
                CallToolRequestParams::new("slow")
                    .with_arguments(json!({"ms": 1}).as_object().unwrap().clone()),
            )
            .await;
        assert!(denied.is_err(), "{name}: {denied:?}");
        client.cancel().await.expect("close (DELETE)");
    }
    // Closing the clients ended their sessions.
    eventually("sessions closed", async || s.gw.session_count() == 0).await;
    eventually("children gone", async || s.gw.child_pids().is_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmcp_stateless_client_through_the_gateway() {
    let (_, h) = mcpgate_upstreams::serve_testing_http()
        .await
        .expect("http upstream");
    let s = Stack::start(&standard_config(&h.url())).await;
    for name in ["http", "stdio"] {
        let token = s.token("alice", "notes:read", name).await;
        let (client, _) = connect(&s.url(name), &token, ProtocolVersion::V_2026_07_28).await;
        let tools = client
            .list_all_tools()
            .await
            .unwrap_or_else(|e| panic!("{name}: tools/list: {e}"));
        assert!(
            tools.iter().any(|t| t.name == "echo") && !tools.iter().any(|t| t.name == "slow"),
            "{name}"
        );
        let echoed = call(&client, "echo", json!({"text": "stateless"})).await;
        assert_eq!(echoed.content[0].as_text().unwrap().text, "stateless");
        client.cancel().await.ok();
    }
    assert_eq!(s.gw.session_count(), 0, "stateless clients get no session");
}
