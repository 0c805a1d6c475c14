//! Errors of the MCP client role. One enum for the crate: each variant says what failed and,
//! where the user can do something about it, what to do. Messages never contain a token, a
//! client secret, an authorization code or a PKCE verifier.

use std::path::PathBuf;

use mcpgate_net::FetchError;

/// Everything that can go wrong while discovering, registering, authorizing, storing tokens or
/// talking MCP to a protected server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The MCP server URL given by the user is not usable.
    #[error("invalid MCP server URL {url:?}: {reason}")]
    InvalidServerUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// An OAuth or metadata fetch was refused by the SSRF guard or failed on the network.
    #[error(
        "fetching {what} from {url} failed: {source}. Check the URL and the network \
         (plain http is allowed only to loopback addresses, with the development flag \
         --allow-http-loopback)"
    )]
    Fetch {
        /// Which document or endpoint.
        what: &'static str,
        /// The URL that was fetched.
        url: String,
        /// Why it failed.
        #[source]
        source: FetchError,
    },

    /// The server names an authorization server the given client credentials
    /// are not for; they are not sent there.
    #[error(
        "the server's authorization server is {issuer}, but the client credentials given are \
         for {expected}; they are not sent there. Check --issuer, or log in without --client-id"
    )]
    ForeignIssuer {
        /// The issuer the server named.
        issuer: String,
        /// The issuers the credentials are bound to.
        expected: String,
    },

    /// DPoP (RFC 9449) could not be used as asked.
    #[error("DPoP: {detail}")]
    Dpop {
        /// What went wrong.
        detail: String,
    },

    /// No RFC 9728 protected resource metadata could be found.
    #[error(
        "no protected resource metadata for {server_url} (tried {tried}): the server does not \
         advertise OAuth per RFC 9728; check the URL or ask its operator which authorization \
         server it uses"
    )]
    NoResourceMetadata {
        /// The MCP server URL.
        server_url: String,
        /// The URLs tried, in order.
        tried: String,
    },

    /// A fetched document is not what the protocol says it must be.
    #[error("{url} returned an invalid {what}: {detail}")]
    InvalidDocument {
        /// Which document.
        what: &'static str,
        /// Where it came from.
        url: String,
        /// What is wrong with it.
        detail: String,
    },

    /// The PRM `resource` names another server (RFC 9728 §3.3).
    #[error(
        "the protected resource metadata for {server_url} names resource {resource:?}, which is \
         not this server; refusing to authorize for another server (RFC 9728 §3.3)"
    )]
    ResourceMismatch {
        /// The server we connect to.
        server_url: String,
        /// What the metadata claimed.
        resource: String,
    },

    /// No usable authorization server in the PRM.
    #[error("the protected resource metadata of {server_url} lists no authorization server")]
    NoAuthorizationServer {
        /// The MCP server URL.
        server_url: String,
    },

    /// No RFC 8414 / OIDC metadata at any of the discovery URLs.
    #[error(
        "no authorization server metadata for issuer {issuer:?} (tried {tried}); the \
         authorization server does not support RFC 8414 or OpenID Connect discovery"
    )]
    NoAuthorizationServerMetadata {
        /// The issuer from the PRM.
        issuer: String,
        /// The URLs tried, in order.
        tried: String,
    },

    /// The metadata `issuer` is not the issuer the discovery URL was built from.
    #[error(
        "authorization server metadata at {url} names issuer {found:?}, not {expected:?}; \
         refusing to use it (RFC 8414 §3.3)"
    )]
    IssuerMismatch {
        /// The metadata URL.
        url: String,
        /// The issuer we asked about.
        expected: String,
        /// The issuer the document claims.
        found: String,
    },

    /// The AS does not advertise PKCE S256.
    #[error(
        "authorization server {issuer} does not list S256 in code_challenge_methods_supported; \
         MCP requires PKCE with S256, so this client refuses to proceed"
    )]
    PkceUnsupported {
        /// The issuer.
        issuer: String,
    },

    /// The AS metadata lacks something the flow needs.
    #[error("authorization server {issuer}: {detail}")]
    BadAuthorizationServer {
        /// The issuer.
        issuer: String,
        /// What is missing or wrong.
        detail: String,
    },

    /// A server-supplied URL failed validation (scheme, host, shape).
    #[error("refusing {what} URL {url:?}: {reason}")]
    UnsafeUrl {
        /// What the URL is for.
        what: &'static str,
        /// The URL.
        url: String,
        /// Why it is refused.
        reason: &'static str,
    },

    /// No registration method is available at this authorization server.
    #[error(
        "cannot obtain a client id at {issuer}: {detail}. Pass a pre-registered client \
         (--client-id, --client-secret-file) or a client metadata document URL \
         (--client-metadata-url)"
    )]
    NoRegistration {
        /// The issuer.
        issuer: String,
        /// Why each method was not possible.
        detail: String,
    },

    /// Dynamic client registration was refused.
    #[error("dynamic client registration at {url} was rejected: {detail}")]
    RegistrationRejected {
        /// The registration endpoint.
        url: String,
        /// The AS's error, or what was wrong with its answer.
        detail: String,
    },

    /// The authorization response was discarded before the code was used.
    #[error(
        "the authorization response was rejected: {0}; the code was not used. Try again; if \
         it repeats, something may be interfering with the login (RFC 9207 mix-up defence)"
    )]
    CallbackRejected(&'static str),

    /// The authorization server answered the authorization request with an error.
    #[error("the authorization server refused the authorization: {error}{}", describe(.description))]
    AuthorizationRefused {
        /// RFC 6749 §4.1.2.1 error code.
        error: String,
        /// The AS's description, if any.
        description: Option<String>,
    },

    /// The token endpoint refused a request.
    #[error("the token endpoint {url} refused the request: {error}{}", describe(.description))]
    TokenRejected {
        /// The token endpoint.
        url: String,
        /// RFC 6749 §5.2 error code (or the HTTP status).
        error: String,
        /// The AS's description, if any.
        description: Option<String>,
    },

    /// The stored grant is no longer usable: the user must log in again.
    #[error(
        "the stored authorization for {server_url} has expired or was revoked; run \
         `mcpgate login {server_url}` again"
    )]
    ReLoginRequired {
        /// The MCP server URL.
        server_url: String,
    },

    /// The server keeps answering 403 insufficient_scope.
    #[error(
        "the server still refuses the request for lack of scope ({scopes}) after {attempts} \
         authorization attempts; ask the server's operator for access, then run \
         `mcpgate login URL --scope \"{scopes}\"`"
    )]
    InsufficientScope {
        /// The scopes the server asked for.
        scopes: String,
        /// How many authorizations were tried for this operation.
        attempts: u32,
    },

    /// The user or the AS did not grant scopes the server requires.
    #[error(
        "the authorization server did not grant scope(s) {scopes}, which the server requires; \
         this denial is remembered. Run `mcpgate login URL --scope \"{scopes}\"` to ask again"
    )]
    ScopeDenied {
        /// The denied scopes.
        scopes: String,
    },

    /// Reading or writing the token store failed.
    #[error("token store {}: {source}. Check that the directory exists and is writable by you only", path.display())]
    Store {
        /// The file or directory.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },

    /// The token store holds a file that cannot be parsed.
    #[error("token store file {} is corrupt ({detail}); remove it and log in again", path.display())]
    StoreCorrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        detail: String,
    },

    /// The browser callback never came.
    #[error(
        "no authorization response arrived at {redirect_uri} within {secs} s; open the printed \
         URL in a browser on this machine and approve the request"
    )]
    CallbackTimeout {
        /// The redirect URI we listened on.
        redirect_uri: String,
        /// How long we waited.
        secs: u64,
    },

    /// A local IO failure (listener, process spawn).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },

    /// The MCP server answered with an unexpected HTTP status.
    #[error("the MCP server {url} answered HTTP {status}{}", describe(.detail))]
    Http {
        /// The MCP endpoint.
        url: String,
        /// The status code.
        status: u16,
        /// Body excerpt or JSON-RPC error message.
        detail: Option<String>,
    },

    /// The HTTP exchange with the MCP server failed below HTTP.
    #[error("could not talk to the MCP server {url}: {detail}")]
    Transport {
        /// The MCP endpoint.
        url: String,
        /// What failed.
        detail: String,
    },

    /// The MCP server returned a JSON-RPC error.
    #[error("the MCP server returned error {code}: {message}")]
    JsonRpc {
        /// JSON-RPC error code.
        code: i64,
        /// Error message.
        message: String,
        /// Optional error data.
        data: Option<serde_json::Value>,
    },

    /// The MCP server broke the protocol.
    #[error("MCP protocol error from {url}: {detail}")]
    Protocol {
        /// The MCP endpoint.
        url: String,
        /// What was wrong.
        detail: String,
    },

    /// The server requires OAuth but the client was built without it.
    #[error("the MCP server {url} requires authorization, but no OAuth client is configured")]
    AuthRequired {
        /// The MCP endpoint.
        url: String,
    },
}

fn describe(d: &Option<String>) -> String {
    match d {
        Some(d) if !d.is_empty() => format!(" ({d})"),
        _ => String::new(),
    }
}

impl ClientError {
    /// Whether the user must run `mcpgate login` again to recover.
    pub fn needs_login(&self) -> bool {
        matches!(self, Self::ReLoginRequired { .. })
    }

    pub(crate) fn store(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Store {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn fetch(what: &'static str, url: &str, source: FetchError) -> Self {
        Self::Fetch {
            what,
            url: url.to_owned(),
            source,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_to_do() {
        let e = ClientError::ReLoginRequired {
            server_url: "https://mcp.example.com/mcp".into(),
        };
        assert!(
            e.to_string()
                .contains("mcpgate login https://mcp.example.com/mcp")
        );
        assert!(e.needs_login());
        let e = ClientError::TokenRejected {
            url: "https://as/token".into(),
            error: "invalid_client".into(),
            description: None,
        };
        assert_eq!(
            e.to_string(),
            "the token endpoint https://as/token refused the request: invalid_client"
        );
    }
}
