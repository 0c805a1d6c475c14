//! The MCP client role over Streamable HTTP: [`McpClient`] (method-level API), the transport
//! (sessions, stateless 2026-07-28, SSE, OAuth hooks), server-to-client handling
//! ([`ServerHandler`]), SEP-2243 headers and an SSE parser.

pub mod client;
pub mod handler;
pub mod headers;
pub mod sse;
pub mod transport;

pub use client::{McpClient, McpClientBuilder};
pub use handler::{
    DefaultHandler, RpcError, ServerHandler, URL_ELICITATION_REQUIRED, UrlElicitation,
    describe_url_elicitation, elicitation_defaults, url_elicitations,
};
pub use transport::{STATEFUL_VERSIONS, STATELESS_VERSIONS, TransportConfig, is_stateless};
