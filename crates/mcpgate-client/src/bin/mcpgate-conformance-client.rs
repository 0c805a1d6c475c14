//! The client under test for the official MCP conformance suite
//! (`@modelcontextprotocol/conformance client --command …`), built on the mcpgate-client
//! library. The harness runs `sh -c "<command> <server-url>"` and sets
//! `MCP_CONFORMANCE_SCENARIO`, `MCP_CONFORMANCE_PROTOCOL_VERSION` (2025-11-25 and older: the
//! `initialize` lifecycle; 2026-07-28: stateless) and, for some scenarios,
//! `MCP_CONFORMANCE_CONTEXT` (JSON). The server URL is the last argument. The OAuth user agent
//! is headless (the suite's mock AS approves at once); plain http to loopback is allowed, as the
//! mocks listen on `localhost`. Exit status 0 on success, 1 on any error (including a
//! deliberate refusal, which some scenarios expect).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mcpgate_client::mcp::{RpcError, ServerHandler, elicitation_defaults};
use mcpgate_client::{
    ClientError, EnterpriseIdp, Grant, Headless, McpClient, OAuthClient, OAuthConfig,
    PreRegisteredClient, TokenStore,
};
use mcpgate_jose::SigningKey;
use mcpgate_net::{FetchPolicy, SafeFetcher};
use mcpgate_types::Secret;
use serde_json::{Value, json};

/// The client metadata document URL the suite expects for `auth/basic-cimd`.
const CIMD_URL: &str = "https://conformance-test.local/client-metadata.json";

/// Accepts elicitations with the schema's defaults (booleans without one: `true`) and answers
/// `roots/list` and `ping`.
struct ConformanceHandler;

#[async_trait]
impl ServerHandler for ConformanceHandler {
    async fn on_request(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        match method {
            "ping" => Ok(json!({})),
            "roots/list" => Ok(json!({"roots": []})),
            "elicitation/create" => {
                let mut content = elicitation_defaults(&params);
                if let Some(props) = params
                    .get("requestedSchema")
                    .and_then(|s| s.get("properties"))
                    .and_then(Value::as_object)
                {
                    for (name, schema) in props {
                        if content.get(name).is_none()
                            && schema.get("type").and_then(Value::as_str) == Some("boolean")
                        {
                            content[name] = json!(true);
                        }
                    }
                }
                Ok(json!({"action": "accept", "content": content}))
            }
            other => Err(RpcError::method_not_found(other)),
        }
    }
}

struct Run {
    scenario: String,
    version: String,
    context: Value,
    url: String,
}

impl Run {
    fn builder(&self) -> mcpgate_client::McpClientBuilder {
        McpClient::builder(self.url.clone())
            .protocol_version(self.version.clone())
            .client_info("mcpgate-conformance-client", env!("CARGO_PKG_VERSION"))
            .capabilities(json!({"elicitation": {}, "roots": {}}))
            .handler(Arc::new(ConformanceHandler))
            .allow_http_loopback(true)
    }

    fn oauth(&self, store: &TokenStore) -> Result<Arc<OAuthClient>, ClientError> {
        let text = |k: &str| self.context.get(k).and_then(Value::as_str);
        let mut config = OAuthConfig::new(self.url.clone());
        config.identity.client_name = "mcpgate-conformance-client".into();
        // Unattended: when a grant stops working (e.g. the server moved to another AS), run
        // the flow again instead of asking a person to log in.
        config.auto_reauthorize = true;
        if let Some(id) = text("client_id") {
            // `auth/client-credentials-jwt` hands over a PKCS#8 PEM key for private_key_jwt.
            let private_key = text("private_key_pem")
                .map(|pem| SigningKey::from_pkcs8_pem(pem, None).map(Arc::new))
                .transpose()
                .map_err(|detail| ClientError::NoRegistration {
                    issuer: "(conformance context)".into(),
                    detail,
                })?;
            config.pre_registered.push(PreRegisteredClient {
                issuer: None,
                client_id: id.to_owned(),
                client_secret: text("client_secret").map(Secret::new),
                token_endpoint_auth_method: None,
                private_key,
            });
        }
        if self.scenario.starts_with("auth/client-credentials") {
            config.grant = Grant::ClientCredentials;
        }
        // `auth/wif-jwt-bearer` hands over the workload's JWT, issued for the suite's AS.
        if self.scenario == "auth/wif-jwt-bearer" {
            config.grant = Grant::JwtBearer;
            config.assertion = text("valid_jwt").map(Secret::new);
        }
        // `auth/enterprise-managed-authorization` hands over the user's ID token at the
        // enterprise identity provider and that provider's token endpoint.
        if let (Some(endpoint), Some(idp_client), Some(id_token)) = (
            text("idp_token_endpoint"),
            text("idp_client_id"),
            text("idp_id_token"),
        ) {
            config.grant = Grant::EnterpriseManaged;
            config.enterprise = Some(EnterpriseIdp {
                token_endpoint: endpoint.to_owned(),
                client_id: idp_client.to_owned(),
                client_secret: text("idp_client_secret").map(Secret::new),
                subject_token: Secret::new(id_token.to_owned()),
                subject_token_type: "urn:ietf:params:oauth:token-type:id_token".into(),
            });
        }
        if self.scenario == "auth/basic-cimd" {
            config.client_metadata_url = Some(CIMD_URL.to_owned());
        }
        let fetcher = SafeFetcher::new(FetchPolicy::loopback_dev());
        Ok(Arc::new(OAuthClient::new(
            config,
            fetcher,
            store.clone(),
            Arc::new(Headless),
        )?))
    }

    async fn execute(&self) -> Result<(), ClientError> {
        let s = self.scenario.as_str();
        if s.starts_with("auth/") {
            return self.auth_flow().await;
        }
        let client = self.builder().build()?;
        client.connect().await?;
        match s {
            "initialize" | "tools_call" | "tools-call" => {
                let tools = client.list_tools().await?;
                if let Some(name) = tools
                    .first()
                    .and_then(|t| t.get("name"))
                    .and_then(Value::as_str)
                {
                    client.call_tool(name, json!({"a": 2, "b": 3})).await?;
                }
            }
            "request-metadata" | "json-schema-ref-no-deref" => {
                client.list_tools().await?;
            }
            "http-custom-headers" => {
                client.list_tools().await?;
                let calls = self
                    .context
                    .get("toolCalls")
                    .and_then(Value::as_array)
                    .cloned();
                for call in calls.unwrap_or_default() {
                    let name = call.get("name").and_then(Value::as_str).unwrap_or_default();
                    let args = call.get("arguments").cloned().unwrap_or_else(|| json!({}));
                    client.call_tool(name, args).await?;
                }
            }
            "http-standard-headers" => {
                call_every_tool(&client).await?;
                let resources = client.request("resources/list", None).await?;
                for r in resources
                    .get("resources")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
                {
                    if let Some(uri) = r.get("uri").and_then(Value::as_str) {
                        client
                            .request("resources/read", Some(json!({"uri": uri})))
                            .await?;
                    }
                }
                let prompts = client.request("prompts/list", None).await?;
                for p in prompts
                    .get("prompts")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
                {
                    if let Some(name) = p.get("name").and_then(Value::as_str) {
                        client
                            .request("prompts/get", Some(json!({"name": name})))
                            .await?;
                    }
                }
            }
            "json-schema-2020-12-preservation" => {
                let tools = client.list_tools().await?;
                let focal = tools
                    .iter()
                    .find(|t| {
                        t.get("name").and_then(Value::as_str) == Some("json_schema_2020_12_tool")
                    })
                    .and_then(|t| t.get("inputSchema").cloned())
                    .unwrap_or_else(|| json!({}));
                client
                    .call_tool("json_schema_echo", json!({"schema": focal}))
                    .await?;
            }
            // sse-retry, elicitation defaults, SEP-2322 request state, invalid tool headers:
            // every listed (and valid) tool is called with arguments its schema asks for.
            _ => call_every_tool(&client).await?,
        }
        client.close().await
    }

    async fn auth_flow(&self) -> Result<(), ClientError> {
        let dir = tempfile::tempdir().map_err(|source| ClientError::Io {
            what: "creating a temporary token store",
            source,
        })?;
        let store = TokenStore::new(dir.path());
        let client = self.builder().auth(self.oauth(&store)?).build()?;
        client.connect().await?;
        client.list_tools().await?;
        client.call_tool("test-tool", json!({})).await?;
        client.close().await
    }
}

/// Calls each tool of the listing with placeholder values for its required arguments.
async fn call_every_tool(client: &McpClient) -> Result<(), ClientError> {
    for tool in client.list_tools().await? {
        let Some(name) = tool.get("name").and_then(Value::as_str) else {
            continue;
        };
        let args = placeholder_arguments(tool.get("inputSchema").unwrap_or(&Value::Null));
        client.call_tool(name, args).await?;
    }
    Ok(())
}

fn placeholder_arguments(schema: &Value) -> Value {
    let mut args = serde_json::Map::new();
    let props = schema.get("properties").and_then(Value::as_object);
    for name in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(name) = name.as_str() else { continue };
        let kind = props
            .and_then(|p| p.get(name))
            .and_then(|p| p.get("type"))
            .and_then(Value::as_str);
        let value = match kind {
            Some("integer" | "number") => json!(1),
            Some("boolean") => json!(true),
            Some("array") => json!([]),
            Some("object") => json!({}),
            _ => json!("us-west1"),
        };
        args.insert(name.to_owned(), value);
    }
    Value::Object(args)
}

fn main() -> ExitCode {
    let filter = std::env::var("MCPGATE_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
    let Some(url) = std::env::args().skip(1).last() else {
        eprintln!("usage: MCP_CONFORMANCE_SCENARIO=<name> mcpgate-conformance-client <server-url>");
        return ExitCode::from(2);
    };
    let run = Run {
        scenario: std::env::var("MCP_CONFORMANCE_SCENARIO").unwrap_or_default(),
        version: std::env::var("MCP_CONFORMANCE_PROTOCOL_VERSION")
            .unwrap_or_else(|_| "2025-11-25".into()),
        context: std::env::var("MCP_CONFORMANCE_CONTEXT")
            .ok()
            .and_then(|c| serde_json::from_str(&c).ok())
            .unwrap_or(Value::Null),
        url,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "scenario {} at {} over {}",
        run.scenario, run.version, run.url
    );
    let outcome = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(25), run.execute()).await });
    match outcome {
        Ok(Ok(())) => {
            eprintln!("scenario {} completed", run.scenario);
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("error: the scenario did not finish within 25 s");
            ExitCode::FAILURE
        }
    }
}
