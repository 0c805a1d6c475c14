//! Wire types and pure protocol logic shared by every mcpgate role.
//!
//! Nothing in this crate does IO. Strings that OAuth compares exactly (issuer,
//! `redirect_uri`, `resource`, `client_id`) are kept as `String`, never
//! round-tripped through a URL type.

pub mod client_metadata;
pub mod error;
pub mod log_budget;
pub mod metadata;
pub mod pkce;
pub mod redirect_uri;
pub mod resource;
pub mod scope;
pub mod secret;
pub mod time;
pub mod token;
pub mod www_authenticate;

pub use error::{OAuthError, OAuthErrorCode};
pub use scope::ScopeSet;
pub use secret::Secret;
