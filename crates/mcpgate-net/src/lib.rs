//! mcpgate-net: the SSRF-safe outbound HTTP fetcher, shared by the authorization server
//! (fetching Client ID Metadata Documents, CIMD §6) and the MCP client (PRM, AS metadata, JWKS,
//! token and registration endpoints; MCP Security Best Practices "SSRF", RFC 9728 §7.7).
//!
//! - [`ip`]: the special-purpose address table and [`ip::classify`].
//! - [`FetchPolicy`]: https only (loopback-only http as an explicit development override), size,
//!   time and redirect limits.
//! - [`Resolve`]: the DNS seam; [`SystemResolver`] uses hickory-resolver.
//! - [`vet()`]: the checks every URL and every redirect hop passes before any connection.
//! - [`SafeFetcher`]: `get`, `post_form`, `post_json`, connections pinned to vetted addresses.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mcpgate_net::FetchError> {
//! use mcpgate_net::{FetchPolicy, SafeFetcher};
//! let fetcher = SafeFetcher::new(FetchPolicy::default());
//! let doc = fetcher.get("https://client.example/metadata.json").await?;
//! let ttl = doc.cache_max_age().unwrap_or(0).min(24 * 3600);
//! # let _ = ttl; Ok(()) }
//! ```

pub mod client_auth;
pub mod error;
pub mod fetcher;
pub mod forwarded;
pub mod ip;
pub mod policy;
pub mod resolve;
pub mod response;
pub mod vet;

pub use client_auth::ClientAuth;
pub use error::FetchError;
pub use fetcher::SafeFetcher;
pub use policy::FetchPolicy;
pub use resolve::{Resolve, ResolveError, SystemResolver, is_localhost_name, is_loopback_url};
pub use response::FetchResponse;
pub use vet::{Vetted, vet, vet_url};
