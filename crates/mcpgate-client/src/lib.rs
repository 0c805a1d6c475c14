//! mcpgate-client: the MCP client role — an OAuth 2.1 client for MCP servers and a Streamable
//! HTTP MCP client, built on the SSRF-safe fetcher ([`mcpgate_net::SafeFetcher`]).
//!
//! Modules, in the order a connection uses them:
//!
//! - [`discovery`]: PRM (RFC 9728) and AS metadata (RFC 8414 / OIDC) in the spec's order, with
//!   the `resource`, `issuer` and PKCE checks;
//! - [`registration`]: pre-registered → CIMD → DCR, credentials bound to one issuer;
//! - [`authorize`]: PKCE S256, `state`, exact `resource`, RFC 9207 `iss`;
//! - [`user_agent`]: the loopback callback listener, interactive and headless user agents;
//! - [`token`]: code and refresh grants with the registered client authentication;
//! - [`dpop`]: DPoP-bound grants (RFC 9449): when to ask, the key, proofs and nonces;
//! - [`store`]: 0600 JSON files per (issuer, resource), atomic writes, a lock across refresh;
//! - [`scope`]: scope selection, step-up union, `offline_access`;
//! - [`oauth`]: [`OAuthClient`], which puts the above together for one MCP server;
//! - [`mcp`]: [`McpClient`], the Streamable HTTP client that calls it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mcpgate_client::ClientError> {
//! use std::sync::Arc;
//! use mcpgate_client::{McpClient, OAuthClient, OAuthConfig, TokenStore, user_agent::Interactive};
//! use mcpgate_net::{FetchPolicy, SafeFetcher};
//!
//! let url = "https://mcp.example.com/mcp";
//! let store = TokenStore::new(TokenStore::default_dir().expect("a data directory"));
//! let oauth = OAuthClient::new(
//!     OAuthConfig::new(url),
//!     SafeFetcher::new(FetchPolicy::default()),
//!     store,
//!     Arc::new(Interactive::default()),
//! )?;
//! let client = McpClient::builder(url).auth(Arc::new(oauth)).build()?;
//! client.connect().await?;
//! let tools = client.list_tools().await?;
//! let result = client.call_tool("echo", serde_json::json!({"text": "hi"})).await?;
//! client.close().await?;
//! # let _ = (tools, result); Ok(()) }
//! ```

pub mod authorize;
pub mod discovery;
pub mod dpop;
pub mod error;
pub mod mcp;
pub mod oauth;
pub mod registration;
pub mod scope;
pub mod store;
pub mod token;
pub mod user_agent;

pub use dpop::DpopPolicy;
pub use error::{ClientError, Result};
pub use mcp::{McpClient, McpClientBuilder, ServerHandler};
pub use oauth::{AccessToken, EnterpriseIdp, Grant, OAuthClient, OAuthConfig};
pub use registration::{ClientCredentials, ClientIdentity, PreRegisteredClient};
pub use store::{TokenEntry, TokenStore, TokenSummary};
pub use user_agent::{Headless, Interactive, UserAgent};
