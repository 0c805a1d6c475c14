//! Token endpoint requests of the MCP client: the authorization code grant (OAuth 2.1 §4.1.3,
//! with the PKCE verifier and the RFC 8707 `resource`), the refresh token grant (OAuth 2.1
//! §4.3, again with `resource`) and the client credentials grant (§4.2), authenticated by the
//! method the registration settled on ([`ClientAuth`]: `none`, `client_secret_basic`,
//! `client_secret_post`, `private_key_jwt`). Requests go through the
//! SSRF-safe fetcher, which never follows a redirect for a POST.

use mcpgate_jose::Rng;
use mcpgate_net::SafeFetcher;
use mcpgate_types::Secret;
use mcpgate_types::client_metadata::TokenEndpointAuthMethod;
use serde::Deserialize;

use crate::authorize::PendingAuthorization;
use crate::dpop::Prover;
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
    /// The AS bound the tokens to the proof's key (`token_type: DPoP`, RFC 9449 §5).
    pub dpop_bound: bool,
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

pub use mcpgate_net::ClientAuth;

/// How `client` authenticates one back-channel request (token, revocation) made at `now`, by
/// the method its registration settled on; `private_key_jwt` assertions are addressed to the
/// issuer, as RFC 7523bis asks. The one place the MCP client decides it.
pub fn client_auth(client: &ClientCredentials, now: i64, rng: &dyn Rng) -> Result<ClientAuth> {
    let missing = |what: &str| ClientError::NoRegistration {
        issuer: client.issuer.clone(),
        detail: format!(
            "the registration says {} but holds no {what}",
            client.token_endpoint_auth_method.as_str()
        ),
    };
    let id = client.client_id.as_str();
    Ok(
        match (client.token_endpoint_auth_method, &client.client_secret) {
            (TokenEndpointAuthMethod::None, _) => ClientAuth::none(id),
            (TokenEndpointAuthMethod::ClientSecretPost, Some(s)) => ClientAuth::post(id, s),
            (TokenEndpointAuthMethod::ClientSecretBasic, Some(s)) => ClientAuth::basic(id, s),
            (TokenEndpointAuthMethod::PrivateKeyJwt, _) => {
                let key = client
                    .private_key
                    .clone()
                    .ok_or_else(|| missing("private key"))?;
                ClientAuth::private_key_jwt(id, key, &client.issuer, false, now, rng).map_err(
                    |e| ClientError::NoRegistration {
                        issuer: client.issuer.clone(),
                        detail: format!("signing the client assertion: {e}"),
                    },
                )?
            }
            (_, None) => return Err(missing("client secret")),
        },
    )
}

/// Redeems an authorization code. Call only after [`PendingAuthorization::accept`] validated
/// the response (`state`, `iss`).
pub async fn exchange_code(
    fetcher: &SafeFetcher,
    token_endpoint: &str,
    auth: &ClientAuth,
    pending: &PendingAuthorization,
    code: &Secret,
    dpop: Option<&Prover<'_>>,
) -> Result<TokenGrant> {
    let form = vec![
        ("grant_type", "authorization_code"),
        ("code", code.expose()),
        ("redirect_uri", pending.redirect_uri.as_str()),
        ("code_verifier", pending.verifier.expose()),
        ("resource", pending.resource.as_str()),
    ];
    post_token(fetcher, token_endpoint, form, auth, dpop).await
}

/// Uses a refresh token. `resource` is the exact PRM `resource` string. No `scope` is sent:
/// the AS re-issues the scopes of the grant (OAuth 2.1 §4.3.1).
pub async fn refresh(
    fetcher: &SafeFetcher,
    token_endpoint: &str,
    auth: &ClientAuth,
    refresh_token: &Secret,
    resource: &str,
    dpop: Option<&Prover<'_>>,
) -> Result<TokenGrant> {
    let form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.expose()),
        ("resource", resource),
    ];
    post_token(fetcher, token_endpoint, form, auth, dpop).await
}

/// The client credentials grant (OAuth 2.1 §4.2, the MCP client-credentials extension): a
/// token for the client itself, for `resource`, with `scope` when there is one to ask for.
pub async fn client_credentials(
    fetcher: &SafeFetcher,
    token_endpoint: &str,
    auth: &ClientAuth,
    scope: Option<&str>,
    resource: &str,
    dpop: Option<&Prover<'_>>,
) -> Result<TokenGrant> {
    let mut form = vec![("grant_type", "client_credentials"), ("resource", resource)];
    push_scope(&mut form, scope);
    post_token(fetcher, token_endpoint, form, auth, dpop).await
}

/// Adds `scope` to a grant's form when there is one to ask for (absent or
/// empty: the authorization server's default).
fn push_scope<'a>(form: &mut Vec<(&'a str, &'a str)>, scope: Option<&'a str>) {
    if let Some(s) = scope.filter(|s| !s.is_empty()) {
        form.push(("scope", s));
    }
}

/// The JWT-bearer authorization grant (RFC 7523 §2.1): `assertion` is the grant, issued by
/// another party (a workload's identity provider) for this authorization server.
pub async fn jwt_bearer(
    fetcher: &SafeFetcher,
    token_endpoint: &str,
    auth: &ClientAuth,
    assertion: &Secret,
    scope: Option<&str>,
    resource: &str,
    dpop: Option<&Prover<'_>>,
) -> Result<TokenGrant> {
    let mut form = vec![
        ("grant_type", JWT_BEARER_GRANT),
        ("assertion", assertion.expose()),
        ("resource", resource),
    ];
    push_scope(&mut form, scope);
    post_token(fetcher, token_endpoint, form, auth, dpop).await
}

pub use mcpgate_types::client_metadata::JWT_BEARER_GRANT;
/// The token type of an Identity Assertion JWT Authorization Grant (ID-JAG).
pub const ID_JAG_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id-jag";

/// What the enterprise identity provider is asked to exchange (RFC 8693), for an ID-JAG.
pub struct IdJagRequest<'a> {
    /// The user's token at the identity provider (an ID token, typically).
    pub subject_token: &'a Secret,
    /// Its RFC 8693 type, e.g. `urn:ietf:params:oauth:token-type:id_token`.
    pub subject_token_type: &'a str,
    /// The authorization server the ID-JAG is for (its issuer identifier).
    pub audience: &'a str,
    /// The MCP server's resource identifier.
    pub resource: &'a str,
    pub scope: Option<&'a str>,
}

/// Enterprise-managed authorization, first step: the identity provider's token endpoint
/// exchanges the user's token for an ID-JAG (RFC 8693 with `requested_token_type` id-jag),
/// which the second step presents to the authorization server with [`jwt_bearer`]. The
/// answer must say it issued an ID-JAG; anything else is refused, never sent on.
pub async fn id_jag(
    fetcher: &SafeFetcher,
    idp_token_endpoint: &str,
    idp_auth: &ClientAuth,
    req: &IdJagRequest<'_>,
) -> Result<Secret> {
    #[derive(Deserialize)]
    struct Exchanged {
        access_token: String,
        issued_token_type: String,
    }
    let mut form = vec![
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("subject_token", req.subject_token.expose()),
        ("subject_token_type", req.subject_token_type),
        ("requested_token_type", ID_JAG_TOKEN_TYPE),
        ("audience", req.audience),
        ("resource", req.resource),
    ];
    push_scope(&mut form, req.scope);
    let url = idp_token_endpoint;
    let response = post_authenticated(
        fetcher,
        "identity provider token endpoint",
        url,
        form,
        idp_auth,
        None,
    )
    .await?;
    let invalid = |detail: String| ClientError::InvalidDocument {
        what: "token exchange response",
        url: url.to_owned(),
        detail,
    };
    let got: Exchanged = response.json().map_err(|e| invalid(e.to_string()))?;
    if got.issued_token_type != ID_JAG_TOKEN_TYPE {
        return Err(invalid(format!(
            "issued_token_type {:?} is not an ID-JAG",
            printable(&got.issued_token_type)
        )));
    }
    if got.access_token.is_empty() {
        return Err(invalid("empty ID-JAG".into()));
    }
    Ok(Secret::new(got.access_token))
}

/// POSTs `form` with the client's authentication to `url`; a refusal becomes
/// [`ClientError::TokenRejected`] with the server's (printable) error code and description.
/// With `dpop`, the request carries a proof; when the server answers `use_dpop_nonce` with a
/// `DPoP-Nonce` (RFC 9449 §8), it is sent once more with a new proof that has the nonce (and
/// a new client assertion, which is good for one request).
async fn post_authenticated(
    fetcher: &SafeFetcher,
    what: &'static str,
    url: &str,
    form: Vec<(&str, &str)>,
    auth: &ClientAuth,
    dpop: Option<&Prover<'_>>,
) -> Result<mcpgate_net::FetchResponse> {
    let mut renewed = None;
    for attempt in 0..2 {
        let auth = renewed.as_ref().unwrap_or(auth);
        let proof = dpop.map(|p| p.proof("POST", url, None)).transpose()?;
        let response = fetcher
            .post_authenticated(url, form.clone(), auth, proof.as_deref())
            .await
            .map_err(|e| ClientError::fetch(what, url, e))?;
        let fresh_nonce = dpop.is_some_and(|p| p.nonces.remember(url, &response.headers));
        if response.is_success() {
            return Ok(response);
        }
        let (error, description) = match response.json::<RawError>() {
            Ok(e) => (e.error, e.error_description),
            Err(_) => (format!("HTTP {}", response.status), None),
        };
        if let Some(p) = dpop
            && attempt == 0
            && error == "use_dpop_nonce"
            && fresh_nonce
        {
            renewed = Some(auth.renewed(p.now, p.rng).map_err(|e| ClientError::Dpop {
                detail: format!("signing a new client assertion: {e}"),
            })?);
            continue;
        }
        return Err(ClientError::TokenRejected {
            url: url.to_owned(),
            error: printable(&error),
            description: description.as_deref().map(printable),
        });
    }
    Err(ClientError::TokenRejected {
        url: url.to_owned(),
        error: "use_dpop_nonce".into(),
        description: Some("the server asked for a new DPoP nonce twice".into()),
    })
}

async fn post_token(
    fetcher: &SafeFetcher,
    url: &str,
    form: Vec<(&str, &str)>,
    auth: &ClientAuth,
    dpop: Option<&Prover<'_>>,
) -> Result<TokenGrant> {
    let response = post_authenticated(fetcher, "token endpoint", url, form, auth, dpop).await?;
    let raw: RawToken = response.json().map_err(|e| ClientError::InvalidDocument {
        what: "token response",
        url: url.to_owned(),
        detail: e.to_string(),
    })?;
    // A DPoP token only when we sent a proof (RFC 9449 §5); an AS that ignored the proof may
    // still answer Bearer, and the token is then used as one.
    let dpop_bound = dpop.is_some() && raw.token_type.eq_ignore_ascii_case("dpop");
    if !dpop_bound && !raw.token_type.eq_ignore_ascii_case("bearer") {
        return Err(ClientError::InvalidDocument {
            what: "token response",
            url: url.to_owned(),
            detail: format!(
                "token_type {:?} is not supported (Bearer, or DPoP after a DPoP proof)",
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
        dpop_bound,
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
    use std::sync::Arc;

    use mcpgate_jose::{KeyAlg, PublicJwks, SigningKey, SystemRng, Verifier, VerifyOptions};
    use mcpgate_types::client_metadata::JWT_BEARER_ASSERTION;

    use super::*;
    use crate::registration::RegistrationKind;

    fn client(method: TokenEndpointAuthMethod, secret: Option<&str>) -> ClientCredentials {
        ClientCredentials {
            issuer: "https://as.example".into(),
            client_id: "c1".into(),
            client_secret: secret.map(|s| Secret::new(s.to_owned())),
            token_endpoint_auth_method: method,
            kind: RegistrationKind::PreRegistered,
            redirect_uris: Vec::new(),
            client_secret_expires_at: None,
            private_key: None,
        }
    }

    type Pairs = Vec<(String, String)>;

    /// The form fields and Basic credentials `c` authenticates with.
    fn applied(c: &ClientCredentials) -> Result<(Pairs, Option<(String, String)>)> {
        let auth = client_auth(c, 1_000, &SystemRng::new())?;
        let mut form = Vec::new();
        let basic = auth
            .apply(&mut form)
            .map(|(a, b)| (a.to_owned(), b.to_owned()));
        let form = form
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Ok((form, basic))
    }

    #[test]
    fn each_method_authenticates_its_own_way() {
        use TokenEndpointAuthMethod as M;
        let (f, b) = applied(&client(M::None, None)).unwrap();
        assert_eq!((f, b), (vec![("client_id".into(), "c1".into())], None));
        let (f, b) = applied(&client(M::ClientSecretBasic, Some("s"))).unwrap();
        assert_eq!((f, b), (vec![], Some(("c1".into(), "s".into()))));
        let (f, _) = applied(&client(M::ClientSecretPost, Some("s"))).unwrap();
        assert_eq!(f[1], ("client_secret".into(), "s".into()));
        for (m, s) in [(M::ClientSecretBasic, None), (M::PrivateKeyJwt, Some("s"))] {
            assert!(
                applied(&client(m, s)).is_err(),
                "{m:?} without its credential"
            );
        }
    }

    #[test]
    fn private_key_jwt_signs_for_the_issuer() {
        let key = SigningKey::generate("k1", KeyAlg::Es256).unwrap();
        let mut c = client(TokenEndpointAuthMethod::PrivateKeyJwt, None);
        c.private_key = Some(Arc::new(key.clone()));
        let (f, basic) = applied(&c).unwrap();
        assert!(basic.is_none());
        assert_eq!(
            f[0],
            ("client_assertion_type".into(), JWT_BEARER_ASSERTION.into())
        );
        let v = Verifier::from_public_jwks(&PublicJwks {
            keys: vec![key.public_jwk().clone()],
        })
        .unwrap();
        let claims = v
            .verify::<serde_json::Value>(
                &f[1].1,
                &VerifyOptions {
                    issuer: "c1",
                    audience: Some("https://as.example"),
                    typ: None,
                    now: 1_000,
                    leeway: 0,
                },
            )
            .unwrap()
            .claims;
        assert_eq!(claims["sub"], "c1");
    }
}
