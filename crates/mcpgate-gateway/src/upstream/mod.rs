//! The upstream side of the gateway (issue 3 "Upstreams and routing"):
//! stdio children, Streamable HTTP servers, and the credentials the gateway
//! presents to them.

pub mod creds;
pub mod http;
pub mod stdio;
