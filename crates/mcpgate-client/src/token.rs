//! Token endpoint requests of the MCP client: the authorization code grant (OAuth 2.1 §4.1.3,
//! with the PKCE verifier and the RFC 8707 `resource`) and the refresh token grant (OAuth 2.1
//! §4.3, again with `resource`), authenticated by the method the registration settled on
//! (RFC 7591 §2: `none`, `client_secret_basic`, `client_secret_post`). Requests go through the
//! SSRF-safe fetcher, which never follows a redirect for a POST.

use mcpgate_net::SafeFetcher;
use mcpgate_types::Secret;
use mcpgate_types::client_metadata::TokenEndpointAuthMethod;
use serde::Deserialize;

use crate::authorize::PendingAuthorization;
use crate::error::{ClientError, Result};
use crate::registration::ClientCredentials;

/// A successful token response (RFC 6749 §5.1), tokens boxed as [`Secret`]s.
#[derive(Debug, Clone)]
pub struct TokenGrant {
    /// The access token.
    pub access_token: Secret,
    /// Seconds until the access token expires, if the AS said.
    pub expires_in: Option<i64>,
    /// A refresh token, if one was issued (never assumed, SEP-2207).
    pub refresh_token: Option<Secret>,
    /// The granted scope, if the AS said (RFC 6749 §5.1: absent means as requested).
    pub scope: Option<String>,
}

#[derive(Deserialize)]
struct RawToken {
    access_token: String,
    token_type: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

#[derive(Deserialize)]
struct RawError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// Why a token request failed, for callers that react to specific codes (`invalid_grant`).
pub(crate) fn is_invalid_grant(e: &ClientError) -> bool {
    matches!(e, ClientError::TokenRejected { error, .. } if error == "invalid_grant")
}

/// Redeems an authorization code. Call only after [`PendingAuthorization::accept`] validated
/// the response (`state`, `iss`).
pub async fn exchange_code(
    fetcher: &SafeFetcher,
    token_endpoint: &str,
    client: &ClientCredentials,
    pending: &PendingAuthorization,
    code: &Secret,
) -> Result<TokenGrant> {
    let form = vec![
        ("grant_type", "authorization_code"),
        ("code", code.expose()),
        ("redirect_uri", pending.redirect_uri.as_str()),
        ("code_verifier", pending.verifier.expose()),
        ("resource", pending.resource.as_str()),
    ];
    post_token(fetcher, token_endpoint, form, client).await
}

/// Uses a refresh token. `resource` is the exact PRM `resource` string. No `scope` is sent:
/// the AS re-issues the scopes of the grant (OAuth 2.1 §4.3.1).
pub async fn refresh(
    fetcher: &SafeFetcher,
    token_endpoint: &str,
    client: &ClientCredentials,
    refresh_token: &Secret,
    resource: &str,
) -> Result<TokenGrant> {
    let form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.expose()),
        ("resource", resource),
    ];
    post_token(fetcher, token_endpoint, form, client).await
}

async fn post_token(
    fetcher: &SafeFetcher,
    url: &str,
    mut form: Vec<(&str, &str)>,
    client: &ClientCredentials,
) -> Result<TokenGrant> {
    let secret = client.client_secret.as_ref().map(Secret::expose);
    let basic = match (client.token_endpoint_auth_method, secret) {
        (TokenEndpointAuthMethod::None, _) => {
            form.push(("client_id", client.client_id.as_str()));
            None
        }
        (TokenEndpointAuthMethod::ClientSecretPost, Some(secret)) => {
            form.push(("client_id", client.client_id.as_str()));
            form.push(("client_secret", secret));
            None
        }
        (TokenEndpointAuthMethod::ClientSecretBasic, Some(secret)) => {
            Some((client.client_id.as_str(), secret))
        }
        (TokenEndpointAuthMethod::PrivateKeyJwt, _) => {
            return Err(ClientError::NoRegistration {
                issuer: client.issuer.clone(),
                detail:
                    "the registration says private_key_jwt, and this client holds no key for it"
                        .into(),
            });
        }
        (method, None) => {
            return Err(ClientError::NoRegistration {
                issuer: client.issuer.clone(),
                detail: format!(
                    "the registration says {} but holds no client secret",
                    method.as_str()
                ),
            });
        }
    };
    let response = fetcher
        .post_form(url, &form, basic)
        .await
        .map_err(|e| ClientError::fetch("token endpoint", url, e))?;
    if !response.is_success() {
        let (error, description) = match response.json::<RawError>() {
            Ok(e) => (e.error, e.error_description),
            Err(_) => (format!("HTTP {}", response.status), None),
        };
        return Err(ClientError::TokenRejected {
            url: url.to_owned(),
            error: printable(&error),
            description: description.as_deref().map(printable),
        });
    }
    let raw: RawToken = response.json().map_err(|e| ClientError::InvalidDocument {
        what: "token response",
        url: url.to_owned(),
        detail: e.to_string(),
    })?;
    if !raw.token_type.eq_ignore_ascii_case("bearer") {
        return Err(ClientError::InvalidDocument {
            what: "token response",
            url: url.to_owned(),
            detail: format!(
                "token_type {:?} is not supported (Bearer only)",
                printable(&raw.token_type)
            ),
        });
    }
    if raw.access_token.is_empty() {
        return Err(ClientError::InvalidDocument {
            what: "token response",
            url: url.to_owned(),
            detail: "empty access_token".into(),
        });
    }
    let expires_in = match raw.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    Ok(TokenGrant {
        access_token: Secret::new(raw.access_token),
        expires_in: expires_in.filter(|s| *s > 0),
        refresh_token: raw.refresh_token.filter(|t| !t.is_empty()).map(Secret::new),
        scope: raw.scope,
    })
}

fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(300)
        .collect()
}
