//! Integration tests for mcpgate-client: a mock MCP server and authorization server on
//! 127.0.0.1:0 (see `support`), the SSRF-safe fetcher with the loopback development policy.
//! No test contacts any address other than 127.0.0.1.

mod discovery;
mod flow;
mod refresh;
mod step_up;
mod support;
