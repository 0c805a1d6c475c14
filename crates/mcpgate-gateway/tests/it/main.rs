//! End-to-end tests of the gateway: the real authorization server issues
//! real tokens; the gateway fronts the `mcpgate-upstreams` fixtures over
//! stdio (a child process) and Streamable HTTP (127.0.0.1:0).

mod attacks;
mod audit_purge;
mod differential;
mod e2e;
mod external;
mod fleet_limits;
mod fleet_sweep;
mod harness;
mod hierarchy;
mod limits;
mod parser_props;
mod policy_items;
mod revocation;
mod sdk;
mod snapshots;
mod user_oauth;
