//! Discovery for the MCP client role: protected resource metadata (RFC 9728 §3, MCP
//! "Authorization Server Discovery") and authorization server metadata (RFC 8414 §3, OpenID
//! Connect Discovery 1.0 §4), in the order the MCP specification prescribes.
//!
//! - PRM: the `resource_metadata` URL from the 401 challenge when present; otherwise the
//!   path-inserted well-known URL, then the root one (never the root first).
//! - The PRM `resource` must name this server: the identical string, or the same origin with a
//!   path that is a segment prefix of the server's path (a PRM published at the root for the
//!   whole origin). Anything else — another host, a sibling path — is refused.
//! - AS metadata: for an issuer with a path, RFC 8414 path insertion, OIDC path insertion, OIDC
//!   path appending; without a path, `oauth-authorization-server` then `openid-configuration`.
//!   The document's `issuer` must be byte-identical to the issuer the URL was built from, and
//!   `code_challenge_methods_supported` must list `S256`.
//!
//! Every fetch goes through the SSRF-safe [`SafeFetcher`]. Strings that OAuth compares exactly
//! (server URL, `resource`, issuer) are kept as the strings that were given or published.

use mcpgate_net::SafeFetcher;
use mcpgate_types::metadata::{
    AuthorizationServerMetadata, ProtectedResourceMetadata, well_known_insert,
};
use url::Url;

use crate::error::{ClientError, Result};

/// Everything discovery learnt about one protected MCP server and the authorization server
/// chosen for it.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// The MCP server URL, exactly as given.
    pub server_url: String,
    /// Where the PRM was found.
    pub prm_url: String,
    /// The protected resource metadata.
    pub prm: ProtectedResourceMetadata,
    /// The issuer chosen from `authorization_servers` (exact string).
    pub issuer: String,
    /// Where the AS metadata was found.
    pub as_metadata_url: String,
    /// The validated AS metadata.
    pub as_metadata: AuthorizationServerMetadata,
}

impl Discovery {
    /// The RFC 8707 `resource` value: the PRM's `resource` string, byte for byte.
    pub fn resource(&self) -> &str {
        &self.prm.resource
    }

    /// The authorization endpoint (validated during discovery).
    pub fn authorization_endpoint(&self) -> &str {
        self.as_metadata
            .authorization_endpoint
            .as_deref()
            .unwrap_or_default()
    }

    /// The token endpoint (validated during discovery).
    pub fn token_endpoint(&self) -> &str {
        self.as_metadata
            .token_endpoint
            .as_deref()
            .unwrap_or_default()
    }
}

/// `scheme://authority` of an absolute URL string, without touching the rest.
pub(crate) fn origin_of(url: &str) -> Option<&str> {
    let scheme_end = url.find("://")? + 3;
    let rest = &url[scheme_end..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    (end > 0).then(|| &url[..scheme_end + end])
}

/// The path of an absolute URL string (without query or fragment), as written.
fn path_of(url: &str) -> &str {
    let Some(origin) = origin_of(url) else {
        return "";
    };
    let rest = &url[origin.len()..];
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    &rest[..end]
}

/// Checks an MCP server URL (or any server-supplied OAuth URL) before use: absolute `https`, or
/// `http` to a loopback host only when `allow_http_loopback` is on; no userinfo, no fragment.
/// Everything else — `javascript:`, `data:`, `file:`, `vbscript:` and any other scheme — is
/// refused (MCP Security Best Practices, "OAuth authorization URL validation").
pub fn validate_url(what: &'static str, url: &str, allow_http_loopback: bool) -> Result<Url> {
    let refuse = |reason| ClientError::UnsafeUrl {
        what,
        url: url.to_owned(),
        reason,
    };
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(refuse("it contains whitespace or control characters"));
    }
    let parsed = Url::parse(url).map_err(|_| refuse("it is not an absolute URL"))?;
    match parsed.scheme() {
        "https" => {}
        "http" if allow_http_loopback && mcpgate_net::is_loopback_url(&parsed) => {}
        "http" if allow_http_loopback => {
            return Err(refuse("plain http is allowed only to loopback hosts"));
        }
        "http" => {
            return Err(refuse(
                "plain http is not allowed (use https, or --allow-http-loopback for a local \
                 development server)",
            ));
        }
        _ => return Err(refuse("only https URLs are allowed")),
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(refuse("it has no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(refuse("it contains user information"));
    }
    if url.contains('#') {
        return Err(refuse("it contains a fragment"));
    }
    Ok(parsed)
}

/// The PRM URLs to try, in order: the challenge's `resource_metadata` (if any), then the
/// path-inserted well-known URL (only when the server URL has a path), then the root one.
pub fn prm_candidates(server_url: &str, resource_metadata: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |u: String| {
        if !out.contains(&u) {
            out.push(u);
        }
    };
    if let Some(rm) = resource_metadata {
        push(rm.to_owned());
    }
    if let Some(inserted) = well_known_insert(server_url, "oauth-protected-resource") {
        push(inserted);
    }
    if let Some(origin) = origin_of(server_url) {
        push(format!("{origin}/.well-known/oauth-protected-resource"));
    }
    out
}

/// The AS metadata URLs for `issuer`, in the MCP specification's priority order.
pub fn as_metadata_candidates(issuer: &str) -> Vec<String> {
    let Some(origin) = origin_of(issuer) else {
        return Vec::new();
    };
    let path = path_of(issuer).trim_end_matches('/');
    if path.is_empty() {
        vec![
            format!("{origin}/.well-known/oauth-authorization-server"),
            format!("{origin}/.well-known/openid-configuration"),
        ]
    } else {
        vec![
            format!("{origin}/.well-known/oauth-authorization-server{path}"),
            format!("{origin}/.well-known/openid-configuration{path}"),
            format!("{origin}{path}/.well-known/openid-configuration"),
        ]
    }
}

/// Checks that the PRM `resource` names this server (RFC 9728 §3.3): the identical string, or
/// the same origin (scheme, host, port) with a path that is a whole-segment prefix of the
/// server's path. A query or fragment on the resource, another origin, or a sibling path is a
/// mismatch.
pub fn check_resource(server_url: &str, resource: &str) -> Result<()> {
    if resource == server_url {
        return Ok(());
    }
    let mismatch = || ClientError::ResourceMismatch {
        server_url: server_url.to_owned(),
        resource: resource.to_owned(),
    };
    if resource.contains(['?', '#']) {
        return Err(mismatch());
    }
    let (Ok(s), Ok(r)) = (Url::parse(server_url), Url::parse(resource)) else {
        return Err(mismatch());
    };
    let same_origin = s.scheme() == r.scheme()
        && s.host() == r.host()
        && s.port_or_known_default() == r.port_or_known_default()
        && r.username().is_empty()
        && r.password().is_none();
    if !same_origin {
        return Err(mismatch());
    }
    let covers = |rp: &str, sp: &str| {
        let rp = rp.trim_end_matches('/');
        rp.is_empty()
            || sp == rp
            || sp
                .strip_prefix(rp)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    // The path as written and the path as the URL parser reads it must both be covered: they
    // differ when the parser rewrites the string (`\` read as `/`, tabs dropped, dot segments
    // resolved), and `https:\//host/other` has no written path at all, which read as the root.
    let covered = origin_of(resource).is_some()
        && covers(path_of(resource), path_of(server_url))
        && covers(r.path(), s.path());
    if covered { Ok(()) } else { Err(mismatch()) }
}

/// Fetches the PRM in the prescribed order and checks its `resource`. A PRM that names
/// another server stops discovery (the next candidate is not tried).
pub async fn fetch_prm(
    fetcher: &SafeFetcher,
    server_url: &str,
    resource_metadata: Option<&str>,
) -> Result<(String, ProtectedResourceMetadata)> {
    let candidates = prm_candidates(server_url, resource_metadata);
    let mut last_fetch_error = None;
    for url in &candidates {
        let response = match fetcher.get(url).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(url, error = %e, "PRM fetch failed");
                last_fetch_error = Some(ClientError::fetch("protected resource metadata", url, e));
                continue;
            }
        };
        if !response.is_success() {
            tracing::debug!(url, status = response.status, "no PRM here");
            continue;
        }
        let prm: ProtectedResourceMetadata =
            response.json().map_err(|e| ClientError::InvalidDocument {
                what: "protected resource metadata",
                url: url.clone(),
                detail: e.to_string(),
            })?;
        check_resource(server_url, &prm.resource)?;
        mcpgate_types::resource::validate(&prm.resource).map_err(|e| {
            ClientError::InvalidDocument {
                what: "protected resource metadata",
                url: url.clone(),
                detail: format!("resource {:?}: {e}", prm.resource),
            }
        })?;
        return Ok((url.clone(), prm));
    }
    Err(
        last_fetch_error.unwrap_or_else(|| ClientError::NoResourceMetadata {
            server_url: server_url.to_owned(),
            tried: candidates.join(", "),
        }),
    )
}

/// Fetches and validates the metadata of `issuer`: discovery order, byte-identical `issuer`,
/// `S256` in `code_challenge_methods_supported`, and usable endpoints.
pub async fn fetch_as_metadata(
    fetcher: &SafeFetcher,
    issuer: &str,
) -> Result<(String, AuthorizationServerMetadata)> {
    let allow_http = fetcher.policy().allow_http_loopback;
    validate_url("issuer", issuer, allow_http)?;
    if issuer.contains('?') {
        return Err(ClientError::UnsafeUrl {
            what: "issuer",
            url: issuer.to_owned(),
            reason: "an issuer has no query component (RFC 8414 §2)",
        });
    }
    let candidates = as_metadata_candidates(issuer);
    let mut last_fetch_error = None;
    for url in &candidates {
        let response = match fetcher.get(url).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(url, error = %e, "AS metadata fetch failed");
                last_fetch_error =
                    Some(ClientError::fetch("authorization server metadata", url, e));
                continue;
            }
        };
        if !response.is_success() {
            tracing::debug!(url, status = response.status, "no AS metadata here");
            continue;
        }
        let metadata: AuthorizationServerMetadata =
            response.json().map_err(|e| ClientError::InvalidDocument {
                what: "authorization server metadata",
                url: url.clone(),
                detail: e.to_string(),
            })?;
        validate_as_metadata(issuer, url, &metadata, allow_http)?;
        return Ok((url.clone(), metadata));
    }
    Err(
        last_fetch_error.unwrap_or_else(|| ClientError::NoAuthorizationServerMetadata {
            issuer: issuer.to_owned(),
            tried: candidates.join(", "),
        }),
    )
}

/// The checks applied to a fetched AS metadata document before any of it is used.
pub fn validate_as_metadata(
    issuer: &str,
    url: &str,
    metadata: &AuthorizationServerMetadata,
    allow_http_loopback: bool,
) -> Result<()> {
    if metadata.issuer != issuer {
        return Err(ClientError::IssuerMismatch {
            url: url.to_owned(),
            expected: issuer.to_owned(),
            found: metadata.issuer.clone(),
        });
    }
    if !metadata
        .code_challenge_methods_supported
        .iter()
        .any(|m| m == "S256")
    {
        return Err(ClientError::PkceUnsupported {
            issuer: issuer.to_owned(),
        });
    }
    let bad = |detail: &str| ClientError::BadAuthorizationServer {
        issuer: issuer.to_owned(),
        detail: detail.to_owned(),
    };
    let authorization = metadata
        .authorization_endpoint
        .as_deref()
        .ok_or_else(|| bad("its metadata has no authorization_endpoint"))?;
    let token = metadata
        .token_endpoint
        .as_deref()
        .ok_or_else(|| bad("its metadata has no token_endpoint"))?;
    validate_url("authorization endpoint", authorization, allow_http_loopback)?;
    validate_url("token endpoint", token, allow_http_loopback)?;
    if let Some(registration) = metadata.registration_endpoint.as_deref() {
        validate_url("registration endpoint", registration, allow_http_loopback)?;
    }
    if !metadata.response_types_supported.is_empty()
        && !metadata
            .response_types_supported
            .iter()
            .any(|t| t == "code")
    {
        return Err(bad("it does not support response_type=code"));
    }
    Ok(())
}

/// Full discovery for `server_url`: PRM (using the challenge's `resource_metadata` if any),
/// then the first authorization server in `authorization_servers` whose metadata validates.
/// When every listed AS fails, the first failure is returned.
pub async fn discover(
    fetcher: &SafeFetcher,
    server_url: &str,
    resource_metadata: Option<&str>,
) -> Result<Discovery> {
    let (prm_url, prm) = fetch_prm(fetcher, server_url, resource_metadata).await?;
    if prm.authorization_servers.is_empty() {
        return Err(ClientError::NoAuthorizationServer {
            server_url: server_url.to_owned(),
        });
    }
    let mut first_error = None;
    for issuer in &prm.authorization_servers {
        match fetch_as_metadata(fetcher, issuer).await {
            Ok((as_metadata_url, as_metadata)) => {
                return Ok(Discovery {
                    server_url: server_url.to_owned(),
                    prm_url,
                    issuer: issuer.clone(),
                    as_metadata_url,
                    as_metadata,
                    prm,
                });
            }
            Err(e) => {
                tracing::warn!(issuer, error = %e, "authorization server unusable");
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or(ClientError::NoAuthorizationServer {
        server_url: server_url.to_owned(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prm_order_is_header_then_path_then_root() {
        assert_eq!(
            prm_candidates("https://mcp.example.com/mcp", None),
            vec![
                "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
                "https://mcp.example.com/.well-known/oauth-protected-resource",
            ]
        );
        assert_eq!(
            prm_candidates(
                "https://mcp.example.com/mcp",
                Some("https://mcp.example.com/x.json")
            ),
            vec![
                "https://mcp.example.com/x.json",
                "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
                "https://mcp.example.com/.well-known/oauth-protected-resource",
            ]
        );
        // No path: only the root (never twice).
        assert_eq!(
            prm_candidates("https://mcp.example.com", None),
            vec!["https://mcp.example.com/.well-known/oauth-protected-resource"]
        );
        assert_eq!(
            prm_candidates("http://127.0.0.1:8080/", None),
            vec!["http://127.0.0.1:8080/.well-known/oauth-protected-resource"]
        );
    }

    #[test]
    fn as_metadata_order_follows_the_spec() {
        assert_eq!(
            as_metadata_candidates("https://auth.example.com/tenant1"),
            vec![
                "https://auth.example.com/.well-known/oauth-authorization-server/tenant1",
                "https://auth.example.com/.well-known/openid-configuration/tenant1",
                "https://auth.example.com/tenant1/.well-known/openid-configuration",
            ]
        );
        assert_eq!(
            as_metadata_candidates("https://auth.example.com"),
            vec![
                "https://auth.example.com/.well-known/oauth-authorization-server",
                "https://auth.example.com/.well-known/openid-configuration",
            ]
        );
        assert_eq!(
            as_metadata_candidates("https://auth.example.com/"),
            as_metadata_candidates("https://auth.example.com")
        );
    }

    #[test]
    fn resource_must_name_this_server() {
        let s = "https://mcp.example.com/mcp";
        assert!(check_resource(s, "https://mcp.example.com/mcp").is_ok());
        // A PRM at the root may describe the whole origin.
        assert!(check_resource(s, "https://mcp.example.com").is_ok());
        assert!(check_resource(s, "https://mcp.example.com/").is_ok());
        assert!(
            check_resource(
                "https://gw.example.com/mcp/notes",
                "https://gw.example.com/mcp"
            )
            .is_ok()
        );
        for bad in [
            "https://evil.example.com/mcp",
            "https://mcp.example.com/mcp2",
            "https://mcp.example.com/other",
            "https://mcp.example.com/mcp/sub",
            "http://mcp.example.com/mcp",
            "https://mcp.example.com:8443/mcp",
            "https://mcp.example.com/mcp?x=1",
            "https://mcp.example.com/mcp#f",
            "https://user@mcp.example.com/mcp",
            "not a url",
        ] {
            assert!(
                matches!(
                    check_resource(s, bad),
                    Err(ClientError::ResourceMismatch { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn url_validation_refuses_dangerous_schemes() {
        for bad in [
            "javascript:alert(1)",
            "data:text/html,<script>x</script>",
            "file:///etc/passwd",
            "vbscript:msgbox",
            "ftp://as.example.com/authorize",
            "http://as.example.com/authorize",
            "https://user:pw@as.example.com/authorize",
            "https://as.example.com/authorize#frag",
            "https://as.example.com/auth orize",
            "/relative",
        ] {
            assert!(
                validate_url("authorization endpoint", bad, true).is_err(),
                "{bad}"
            );
        }
        assert!(validate_url("x", "https://as.example.com/authorize?a=b", false).is_ok());
        assert!(validate_url("x", "http://127.0.0.1:9/authorize", true).is_ok());
        assert!(validate_url("x", "http://localhost:9/authorize", true).is_ok());
        assert!(validate_url("x", "http://[::1]:9/authorize", true).is_ok());
        assert!(validate_url("x", "http://127.0.0.1:9/authorize", false).is_err());
    }

    #[test]
    fn metadata_checks() {
        let mut m = AuthorizationServerMetadata {
            issuer: "https://as.example.com".into(),
            authorization_endpoint: Some("https://as.example.com/authorize".into()),
            token_endpoint: Some("https://as.example.com/token".into()),
            code_challenge_methods_supported: vec!["S256".into()],
            ..Default::default()
        };
        let url = "https://as.example.com/.well-known/oauth-authorization-server";
        assert!(validate_as_metadata("https://as.example.com", url, &m, false).is_ok());
        // Trailing slash, case: byte-identical or nothing.
        for other in [
            "https://as.example.com/",
            "https://AS.example.com",
            "https://as.example.com:443",
        ] {
            assert!(matches!(
                validate_as_metadata(other, url, &m, false),
                Err(ClientError::IssuerMismatch { .. })
            ));
        }
        m.code_challenge_methods_supported = vec!["plain".into()];
        assert!(matches!(
            validate_as_metadata("https://as.example.com", url, &m, false),
            Err(ClientError::PkceUnsupported { .. })
        ));
        m.code_challenge_methods_supported = vec![];
        assert!(matches!(
            validate_as_metadata("https://as.example.com", url, &m, false),
            Err(ClientError::PkceUnsupported { .. })
        ));
        m.code_challenge_methods_supported = vec!["S256".into()];
        m.authorization_endpoint = Some("javascript:alert(1)".into());
        assert!(matches!(
            validate_as_metadata("https://as.example.com", url, &m, false),
            Err(ClientError::UnsafeUrl { .. })
        ));
    }
}
