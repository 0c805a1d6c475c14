//! mcpgate as a library: what the `mcpgate` binary runs, for tests and
//! benchmarks that start whole stacks ([`serve::Stack`]: the store, the
//! authorization server, the gateway and the listeners) in their own
//! process, one or several replicas sharing a database.

pub mod admin_cli;
pub mod bridge;
pub mod client_cli;
pub mod config;
pub mod serve;
