//! Integration tests for mcpgate-net: real local servers on 127.0.0.1:0 and a fake resolver.
//! No test contacts any address other than 127.0.0.1.

mod allowed;
mod limits;
mod post;
mod rebinding;
mod redirects;
mod ssrf_matrix;
mod support;
mod tls;
