//! Client registration for the MCP client role, in the specification's priority order
//! (MCP authorization, "Client Registration Approaches"):
//!
//! 1. pre-registered credentials for this authorization server (keyed by issuer);
//! 2. a Client ID Metadata Document URL, when the AS advertises
//!    `client_id_metadata_document_supported` (draft-ietf-oauth-client-id-metadata-document);
//! 3. RFC 7591 dynamic client registration, sending `application_type` (OIDC Registration;
//!    `native` for a loopback redirect URI), `grant_types` with `refresh_token` (SEP-2207), and a
//!    `token_endpoint_auth_method` the AS supports; the method in the *response* is the one used;
//! 4. otherwise a clear error.
//!
//! Credentials are always bound to one issuer and never presented to another (SEP-2352).

use std::sync::Arc;

use mcpgate_jose::SigningKey;
use mcpgate_net::SafeFetcher;
use mcpgate_types::Secret;
use mcpgate_types::client_metadata::{TokenEndpointAuthMethod, is_cimd_client_id};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::discovery::Discovery;
use crate::error::{ClientError, Result};
use crate::store::serde_secret;

/// How a client id was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationKind {
    /// Registered out of band and given to us.
    PreRegistered,
    /// A Client ID Metadata Document URL used as the client id.
    MetadataDocument,
    /// RFC 7591 dynamic client registration.
    Dynamic,
}

/// A client id (and secret) usable at exactly one authorization server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientCredentials {
    /// The issuer these credentials belong to (exact string).
    pub issuer: String,
    /// The client id.
    pub client_id: String,
    /// The client secret, for confidential methods.
    #[serde(default, with = "serde_secret::option")]
    pub client_secret: Option<Secret>,
    /// How the client authenticates at the token endpoint.
    pub token_endpoint_auth_method: TokenEndpointAuthMethod,
    /// How the id was obtained.
    pub kind: RegistrationKind,
    /// The redirect URIs registered (empty when unknown).
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// When the client secret expires (seconds since the epoch; `None` or 0: never).
    #[serde(default)]
    pub client_secret_expires_at: Option<i64>,
    /// The private key of a `private_key_jwt` client. Never written to the token store: it
    /// comes from the configuration on every run.
    #[serde(skip)]
    pub private_key: Option<Arc<SigningKey>>,
}

impl ClientCredentials {
    /// Whether these credentials may be used with `redirect_uri` (exact, or a loopback IP
    /// redirect differing only in port, OAuth 2.1 §8.4.2). Pre-registered and CIMD clients are
    /// not checked here: their redirect URIs are the AS's business.
    pub fn allows_redirect(&self, redirect_uri: &str) -> bool {
        self.kind != RegistrationKind::Dynamic
            || self.redirect_uris.is_empty()
            || mcpgate_types::redirect_uri::matches_registered(redirect_uri, &self.redirect_uris)
    }

    /// Whether the secret has expired at `now`.
    pub fn secret_expired(&self, now: i64) -> bool {
        matches!(self.client_secret_expires_at, Some(t) if t > 0 && t <= now)
    }
}

/// A client registered out of band (`mcpgate login --client-id`).
#[derive(Debug, Clone)]
pub struct PreRegisteredClient {
    /// The issuer the credentials were issued by. `None`: the first issuer the server's PRM
    /// names when they are first used; from then on they are bound to it.
    pub issuer: Option<String>,
    /// The client id.
    pub client_id: String,
    /// The client secret, if the client is confidential.
    pub client_secret: Option<Secret>,
    /// The token endpoint authentication method; chosen from the AS metadata when `None`.
    pub token_endpoint_auth_method: Option<TokenEndpointAuthMethod>,
    /// A private key: the client authenticates with `private_key_jwt`.
    pub private_key: Option<Arc<SigningKey>>,
}

/// What the client says about itself when it registers.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    /// `client_name`.
    pub client_name: String,
    /// `client_uri`, optional.
    pub client_uri: Option<String>,
    /// `software_id`, optional.
    pub software_id: Option<String>,
    /// `software_version`.
    pub software_version: Option<String>,
}

impl Default for ClientIdentity {
    fn default() -> Self {
        Self {
            client_name: "mcpgate".into(),
            client_uri: None,
            software_id: Some("mcpgate".into()),
            software_version: Some(env!("CARGO_PKG_VERSION").into()),
        }
    }
}

/// The pre-registered client to use at `issuer`: one bound to it, else an unbound one.
pub fn select_pre_registered<'a>(
    clients: &'a [PreRegisteredClient],
    issuer: &str,
) -> Option<&'a PreRegisteredClient> {
    clients
        .iter()
        .find(|c| c.issuer.as_deref() == Some(issuer))
        .or_else(|| clients.iter().find(|c| c.issuer.is_none()))
}

/// Turns pre-registered credentials into [`ClientCredentials`] for `discovery`'s issuer,
/// choosing the authentication method from the AS metadata when none was given.
pub fn from_pre_registered(pre: &PreRegisteredClient, discovery: &Discovery) -> ClientCredentials {
    let supported = &discovery.as_metadata.token_endpoint_auth_methods_supported;
    let listed = |m: &str| supported.is_empty() || supported.iter().any(|s| s == m);
    let method = pre
        .token_endpoint_auth_method
        .unwrap_or(match &pre.client_secret {
            _ if pre.private_key.is_some() => TokenEndpointAuthMethod::PrivateKeyJwt,
            None => TokenEndpointAuthMethod::None,
            Some(_) if listed("client_secret_basic") => TokenEndpointAuthMethod::ClientSecretBasic,
            Some(_) if listed("client_secret_post") => TokenEndpointAuthMethod::ClientSecretPost,
            Some(_) => TokenEndpointAuthMethod::ClientSecretBasic,
        });
    ClientCredentials {
        issuer: discovery.issuer.clone(),
        client_id: pre.client_id.clone(),
        client_secret: pre.client_secret.clone(),
        token_endpoint_auth_method: method,
        kind: RegistrationKind::PreRegistered,
        redirect_uris: Vec::new(),
        client_secret_expires_at: None,
        private_key: pre.private_key.clone(),
    }
}

/// CIMD credentials when the AS supports metadata documents and a document URL is configured.
pub fn from_metadata_document(
    discovery: &Discovery,
    client_metadata_url: Option<&str>,
) -> Result<Option<ClientCredentials>> {
    let supported = discovery.as_metadata.client_id_metadata_document_supported == Some(true);
    let Some(url) = client_metadata_url.filter(|_| supported) else {
        return Ok(None);
    };
    if !is_cimd_client_id(url) {
        return Err(ClientError::UnsafeUrl {
            what: "client metadata document",
            url: url.to_owned(),
            reason: "a client id metadata document URL must be https with a path (CIMD §3)",
        });
    }
    Ok(Some(ClientCredentials {
        issuer: discovery.issuer.clone(),
        client_id: url.to_owned(),
        client_secret: None,
        token_endpoint_auth_method: TokenEndpointAuthMethod::None,
        kind: RegistrationKind::MetadataDocument,
        redirect_uris: Vec::new(),
        client_secret_expires_at: None,
        private_key: None,
    }))
}

/// The method to ask for in a registration request: a public client (`none`) when the AS allows
/// it or lists nothing, else the first confidential method it lists that we support.
pub fn preferred_auth_method(supported: &[String]) -> TokenEndpointAuthMethod {
    let listed = |m: &str| supported.iter().any(|s| s == m);
    if supported.is_empty() || listed("none") {
        TokenEndpointAuthMethod::None
    } else if listed("client_secret_basic") {
        TokenEndpointAuthMethod::ClientSecretBasic
    } else if listed("client_secret_post") {
        TokenEndpointAuthMethod::ClientSecretPost
    } else {
        TokenEndpointAuthMethod::None
    }
}

#[derive(Deserialize)]
struct RawRegistration {
    client_id: String,
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    client_secret_expires_at: Option<i64>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    redirect_uris: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct RawError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// RFC 7591 dynamic client registration at the discovered `registration_endpoint`.
pub async fn register_dynamic(
    fetcher: &SafeFetcher,
    discovery: &Discovery,
    identity: &ClientIdentity,
    redirect_uri: &str,
) -> Result<ClientCredentials> {
    let Some(endpoint) = discovery.as_metadata.registration_endpoint.as_deref() else {
        return Err(ClientError::NoRegistration {
            issuer: discovery.issuer.clone(),
            detail: "it offers no dynamic client registration (no registration_endpoint), no \
                     pre-registered client is configured for it, and no client metadata \
                     document can be used"
                .into(),
        });
    };
    let requested =
        preferred_auth_method(&discovery.as_metadata.token_endpoint_auth_methods_supported);
    let loopback = mcpgate_types::redirect_uri::is_localhost_only(redirect_uri);
    let mut body = json!({
        "client_name": identity.client_name,
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": requested.as_str(),
        "application_type": if loopback { "native" } else { "web" },
    });
    for (key, value) in [
        ("client_uri", &identity.client_uri),
        ("software_id", &identity.software_id),
        ("software_version", &identity.software_version),
    ] {
        if let Some(v) = value {
            body[key] = json!(v);
        }
    }
    let response = fetcher
        .post_json(endpoint, &body)
        .await
        .map_err(|e| ClientError::fetch("registration endpoint", endpoint, e))?;
    let rejected = |detail: String| ClientError::RegistrationRejected {
        url: endpoint.to_owned(),
        detail,
    };
    if !response.is_success() {
        return Err(rejected(match response.json::<RawError>() {
            Ok(e) => match e.error_description {
                Some(d) => format!("{}: {}", printable(&e.error), printable(&d)),
                None => printable(&e.error),
            },
            Err(_) => format!("HTTP {}", response.status),
        }));
    }
    let raw: RawRegistration = response
        .json()
        .map_err(|e| rejected(format!("unreadable registration response: {e}")))?;
    if raw.client_id.is_empty() {
        return Err(rejected("the response has an empty client_id".into()));
    }
    // The method the AS registered is authoritative; a secret alone says nothing about it.
    let method = match raw.token_endpoint_auth_method.as_deref() {
        None => requested,
        Some(m) => TokenEndpointAuthMethod::parse(m).ok_or_else(|| {
            rejected(format!(
                "unsupported token_endpoint_auth_method {:?}",
                printable(m)
            ))
        })?,
    };
    let secret = raw.client_secret.filter(|s| !s.is_empty()).map(Secret::new);
    if method == TokenEndpointAuthMethod::PrivateKeyJwt {
        return Err(rejected(
            "the server registered private_key_jwt, which this client did not ask for".into(),
        ));
    }
    if method.is_confidential() && secret.is_none() {
        return Err(rejected(format!(
            "{} was registered without a client_secret",
            method.as_str()
        )));
    }
    Ok(ClientCredentials {
        issuer: discovery.issuer.clone(),
        client_id: raw.client_id,
        client_secret: if method.is_confidential() {
            secret
        } else {
            None
        },
        token_endpoint_auth_method: method,
        kind: RegistrationKind::Dynamic,
        redirect_uris: raw
            .redirect_uris
            .unwrap_or_else(|| vec![redirect_uri.to_owned()]),
        client_secret_expires_at: raw.client_secret_expires_at,
        private_key: None,
    })
}

fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(300)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn method_preference() {
        use TokenEndpointAuthMethod as M;
        assert_eq!(preferred_auth_method(&[]), M::None);
        assert_eq!(
            preferred_auth_method(&strings(&["client_secret_basic", "none"])),
            M::None
        );
        assert_eq!(
            preferred_auth_method(&strings(&["client_secret_post", "client_secret_basic"])),
            M::ClientSecretBasic
        );
        assert_eq!(
            preferred_auth_method(&strings(&["client_secret_post"])),
            M::ClientSecretPost
        );
        assert_eq!(
            preferred_auth_method(&strings(&["private_key_jwt"])),
            M::None
        );
    }

    #[test]
    fn pre_registered_selection_prefers_the_bound_issuer() {
        let mk = |issuer: Option<&str>, id: &str| PreRegisteredClient {
            issuer: issuer.map(str::to_owned),
            client_id: id.into(),
            client_secret: None,
            token_endpoint_auth_method: None,
            private_key: None,
        };
        let list = vec![
            mk(None, "any"),
            mk(Some("https://a"), "a"),
            mk(Some("https://b"), "b"),
        ];
        assert_eq!(
            select_pre_registered(&list, "https://b").unwrap().client_id,
            "b"
        );
        assert_eq!(
            select_pre_registered(&list, "https://c").unwrap().client_id,
            "any"
        );
        assert!(select_pre_registered(&list[1..], "https://c").is_none());
    }

    #[test]
    fn redirect_compatibility() {
        let c = ClientCredentials {
            issuer: "https://a".into(),
            client_id: "x".into(),
            client_secret: None,
            token_endpoint_auth_method: TokenEndpointAuthMethod::None,
            kind: RegistrationKind::Dynamic,
            redirect_uris: strings(&["http://127.0.0.1:4000/callback"]),
            client_secret_expires_at: Some(0),
            private_key: None,
        };
        assert!(c.allows_redirect("http://127.0.0.1:5000/callback"));
        assert!(!c.allows_redirect("http://127.0.0.1:5000/other"));
        assert!(!c.secret_expired(10));
    }
}
