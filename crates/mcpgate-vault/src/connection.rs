//! What the gateway knows about the authorization server of a `user_oauth`
//! upstream: the configured client registration and where the server's
//! endpoints are (configured, discovered from its issuer by RFC 8414 /
//! OpenID Connect Discovery, or from the upstream's own protected-resource
//! metadata, RFC 9728, when the upstream is itself a protected MCP server).

use mcpgate_net::{ClientAuth, SafeFetcher};
use mcpgate_types::Secret;
use serde_json::Value;

use crate::VaultError;

/// How the gateway authenticates at the upstream's token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A public client: `client_id` alone (PKCE is what protects the code).
    None,
    ClientSecretBasic,
    ClientSecretPost,
}

/// Where the upstream's authorization server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerSource {
    /// Configured endpoints (providers without metadata, such as GitHub).
    Endpoints(Endpoints),
    /// An issuer whose metadata is fetched (RFC 8414, then OpenID Connect
    /// Discovery) and must name exactly this issuer.
    Issuer(String),
    /// The upstream's protected-resource metadata (RFC 9728) names the
    /// authorization server; its `resource` must be the upstream's URL.
    ProtectedResource,
}

/// The endpoints the connect flow and the vault use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// The issuer, when known: an authorization response's `iss` must then
    /// equal it (RFC 9207).
    pub issuer: Option<String>,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    /// RFC 7009: unlinking revokes the tokens there when it is known.
    pub revocation_endpoint: Option<String>,
    /// The server promised `iss` in every authorization response.
    pub iss_parameter_supported: bool,
}

/// One `user_oauth` upstream: the gateway as an OAuth client of the
/// upstream's authorization server.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The gateway upstream's name (`[[upstream]] name`).
    pub upstream: String,
    /// Shown to the user on the connect and connected-accounts pages.
    pub title: String,
    /// The upstream MCP server's URL.
    pub upstream_url: String,
    pub server: ServerSource,
    pub client_id: String,
    /// Empty for [`AuthMethod::None`].
    pub client_secret: Secret,
    pub auth_method: AuthMethod,
    /// Scopes asked of the upstream's authorization server.
    pub scopes: Vec<String>,
    /// The RFC 8707 `resource` sent in authorization and token requests:
    /// the upstream's URL when it was discovered from its metadata, else
    /// what is configured (none by default: not every provider takes it).
    pub resource: Option<String>,
    /// Development only: the server's URLs may be plain http on loopback
    /// (`gateway.dev_allow_http_loopback_token_url`).
    pub allow_http_loopback: bool,
}

impl Connection {
    /// The client authentication for a back-channel request.
    pub(crate) fn client_auth(&self) -> ClientAuth {
        match self.auth_method {
            AuthMethod::None => ClientAuth::none(&self.client_id),
            AuthMethod::ClientSecretBasic => {
                ClientAuth::basic(&self.client_id, &self.client_secret)
            }
            AuthMethod::ClientSecretPost => ClientAuth::post(&self.client_id, &self.client_secret),
        }
    }

    /// The `resource` to send: configured, or the upstream's URL when the
    /// server was found through the upstream's own metadata.
    pub fn resource(&self) -> Option<&str> {
        match (&self.resource, &self.server) {
            (Some(r), _) => Some(r),
            (None, ServerSource::ProtectedResource) => Some(&self.upstream_url),
            (None, _) => None,
        }
    }
}

fn string(doc: &Value, name: &str) -> Option<String> {
    doc.get(name).and_then(Value::as_str).map(str::to_owned)
}

async fn fetch_json(fetcher: &SafeFetcher, url: &str) -> Result<Option<Value>, VaultError> {
    let r = fetcher
        .get(url)
        .await
        .map_err(|e| VaultError::Upstream(format!("fetching {url}: {e}")))?;
    if r.status == 404 {
        return Ok(None);
    }
    if !r.is_success() {
        return Err(VaultError::Upstream(format!("{url} answered {}", r.status)));
    }
    r.json()
        .map(Some)
        .map_err(|e| VaultError::Upstream(format!("{url} is not JSON: {e}")))
}

/// A `.well-known` URL for `base` (RFC 8414 §3.1 / RFC 9728 §3.1: the
/// well-known segment goes between the host and the path).
fn well_known(base: &str, suffix: &str) -> Result<String, VaultError> {
    let u = url::Url::parse(base).map_err(|e| VaultError::Upstream(format!("{base}: {e}")))?;
    let path = u.path().trim_end_matches('/');
    Ok(format!(
        "{}/.well-known/{suffix}{path}",
        u.origin().ascii_serialization()
    ))
}

/// The authorization server metadata of `issuer`: RFC 8414 first, then
/// OpenID Connect Discovery; it must name exactly `issuer` and offer PKCE
/// with S256 (MCP clients refuse a server that does not say so).
pub(crate) async fn discover_issuer(
    fetcher: &SafeFetcher,
    issuer: &str,
) -> Result<Endpoints, VaultError> {
    let oidc = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let mut doc = None;
    for url in [well_known(issuer, "oauth-authorization-server")?, oidc] {
        if let Some(d) = fetch_json(fetcher, &url).await? {
            doc = Some((url, d));
            break;
        }
    }
    let Some((url, doc)) = doc else {
        return Err(VaultError::Upstream(format!(
            "{issuer} publishes no authorization server metadata"
        )));
    };
    if string(&doc, "issuer").as_deref() != Some(issuer) {
        return Err(VaultError::Upstream(format!(
            "the metadata at {url} names another issuer"
        )));
    }
    let s256 = doc
        .get("code_challenge_methods_supported")
        .and_then(Value::as_array)
        .is_some_and(|m| m.iter().any(|x| x == "S256"));
    if !s256 {
        return Err(VaultError::Upstream(format!(
            "{issuer} does not list PKCE S256 in code_challenge_methods_supported"
        )));
    }
    let need = |n: &str| {
        string(&doc, n)
            .ok_or_else(|| VaultError::Upstream(format!("the metadata at {url} lacks {n}")))
    };
    Ok(Endpoints {
        issuer: Some(issuer.to_owned()),
        authorization_endpoint: need("authorization_endpoint")?,
        token_endpoint: need("token_endpoint")?,
        revocation_endpoint: string(&doc, "revocation_endpoint"),
        iss_parameter_supported: doc
            .get("authorization_response_iss_parameter_supported")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

/// The authorization server the upstream's protected-resource metadata
/// names (the first), after checking that the metadata is about exactly
/// this upstream (RFC 9728 §3.3).
pub(crate) async fn discover_from_resource(
    fetcher: &SafeFetcher,
    upstream_url: &str,
) -> Result<Endpoints, VaultError> {
    let url = well_known(upstream_url, "oauth-protected-resource")?;
    let doc = fetch_json(fetcher, &url).await?.ok_or_else(|| {
        VaultError::Upstream(format!(
            "{upstream_url} publishes no protected-resource metadata"
        ))
    })?;
    if string(&doc, "resource").as_deref() != Some(upstream_url) {
        return Err(VaultError::Upstream(format!(
            "the metadata at {url} is about another resource"
        )));
    }
    let issuer = doc
        .get("authorization_servers")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .ok_or_else(|| {
            VaultError::Upstream(format!(
                "the metadata at {url} names no authorization server"
            ))
        })?
        .to_owned();
    discover_issuer(fetcher, &issuer).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_goes_between_host_and_path() {
        assert_eq!(
            well_known("https://as.example/tenant/", "oauth-authorization-server").unwrap(),
            "https://as.example/.well-known/oauth-authorization-server/tenant"
        );
        assert_eq!(
            well_known("https://mcp.example:8443/mcp", "oauth-protected-resource").unwrap(),
            "https://mcp.example:8443/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            well_known("https://as.example", "oauth-authorization-server").unwrap(),
            "https://as.example/.well-known/oauth-authorization-server"
        );
    }

    #[test]
    fn resource_is_sent_when_configured_or_discovered_from_the_upstream() {
        let mut c = Connection {
            upstream: "u".into(),
            title: "U".into(),
            upstream_url: "https://mcp.example/mcp".into(),
            server: ServerSource::Issuer("https://as.example".into()),
            client_id: "c".into(),
            client_secret: Secret::new(""),
            auth_method: AuthMethod::None,
            scopes: vec![],
            resource: None,
            allow_http_loopback: false,
        };
        assert_eq!(c.resource(), None);
        c.server = ServerSource::ProtectedResource;
        assert_eq!(c.resource(), Some("https://mcp.example/mcp"));
        c.resource = Some("https://api.example".into());
        assert_eq!(c.resource(), Some("https://api.example"));
    }
}
