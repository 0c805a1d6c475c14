//! The client side of upstream sign-in: OpenID Connect Discovery 1.0 (the
//! document's `issuer` must equal the configured issuer exactly, §4.3), the
//! provider's JWKS, the token request (RFC 6749 §4.1.3 with the PKCE
//! verifier, RFC 7636 §4.5) and ID token validation (OIDC Core §3.1.3.7:
//! signature with the provider's keys, `iss`, `aud`, `exp`, `nonce`). Every
//! request goes through the SSRF-guarded fetcher.

use std::collections::HashMap;
use std::sync::Arc;

use mcpgate_jose::{JwtError, Verifier, VerifyOptions};
use mcpgate_types::secret::{ct_eq, hash_secret};
use serde_json::Value;

use crate::settings::{IdentityProvider, ProviderKind, TokenAuth};
use crate::state::AppState;

/// How long discovered metadata and keys are reused before refetching.
const CACHE_SECS: i64 = 3600;
/// Clock skew allowed on the ID token's `exp`.
const LEEWAY: i64 = 60;

/// A provider's endpoints, discovered or configured.
#[derive(Debug)]
pub(crate) struct Discovered {
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub userinfo_endpoint: Option<String>,
    /// RFC 9207 §3: the provider puts `iss` in its authorization responses.
    pub iss_parameter_supported: bool,
    pub verifier: Option<Arc<Verifier>>,
    fetched_at: i64,
}

/// Discovered providers, by name.
#[derive(Default)]
pub(crate) struct Cache(tokio::sync::Mutex<HashMap<String, Arc<Discovered>>>);

/// Why an upstream step failed. `Provider` is the provider's fault or
/// unreachable; `Invalid` is a response that must not be trusted.
#[derive(Debug)]
pub(crate) enum UpstreamError {
    Provider(String),
    Invalid(String),
    /// The provider cannot work with this configuration (an operator's
    /// problem, e.g. a client authentication method it does not support).
    Config(String),
}

/// The identity the provider vouched for, after validation.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub subject: String,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    pub groups: Vec<String>,
}

/// `https://`, or `http://` on a loopback host when the fetcher allows it.
pub(crate) fn acceptable_url(app: &AppState, u: &str) -> bool {
    app.fetcher.policy().admits(u)
}

async fn fetch_json(app: &AppState, url: &str) -> Result<Value, UpstreamError> {
    let r = app
        .fetcher
        .get(url)
        .await
        .map_err(|e| UpstreamError::Provider(format!("GET {url}: {e}")))?;
    if !r.is_success() {
        return Err(UpstreamError::Provider(format!(
            "GET {url}: HTTP {}",
            r.status
        )));
    }
    r.json()
        .map_err(|e| UpstreamError::Provider(format!("GET {url}: not JSON: {e}")))
}

fn str_field(doc: &Value, name: &str) -> Option<String> {
    doc.get(name).and_then(Value::as_str).map(str::to_string)
}

/// The provider's endpoints and keys, from the cache unless stale or
/// `refresh` is set (a token signed with a key we have not seen).
pub(crate) async fn discover(
    app: &AppState,
    p: &IdentityProvider,
    refresh: bool,
) -> Result<Arc<Discovered>, UpstreamError> {
    let mut cache = app.idp_cache.0.lock().await;
    if !refresh
        && let Some(d) = cache.get(&p.name)
        && app.now() - d.fetched_at < CACHE_SECS
    {
        return Ok(d.clone());
    }
    let d = Arc::new(fetch_discovery(app, p).await?);
    cache.insert(p.name.clone(), d.clone());
    Ok(d)
}

async fn fetch_discovery(
    app: &AppState,
    p: &IdentityProvider,
) -> Result<Discovered, UpstreamError> {
    let d = match &p.kind {
        ProviderKind::OAuth2 {
            authorization_endpoint,
            token_endpoint,
            userinfo_endpoint,
        } => Discovered {
            authorization_endpoint: authorization_endpoint.clone(),
            token_endpoint: token_endpoint.clone(),
            userinfo_endpoint: Some(userinfo_endpoint.clone()),
            iss_parameter_supported: false,
            verifier: None,
            fetched_at: app.now(),
        },
        ProviderKind::Oidc => {
            let url = format!(
                "{}/.well-known/openid-configuration",
                p.issuer.trim_end_matches('/')
            );
            let doc = fetch_json(app, &url).await?;
            // OIDC Discovery §4.3: exactly the issuer we configured.
            if str_field(&doc, "issuer").as_deref() != Some(p.issuer.as_str()) {
                return Err(UpstreamError::Invalid(format!(
                    "discovery document at {url} names another issuer"
                )));
            }
            if let Some(methods) = doc.get("code_challenge_methods_supported")
                && !methods
                    .as_array()
                    .is_some_and(|m| m.iter().any(|x| x == "S256"))
            {
                return Err(UpstreamError::Invalid(
                    "provider does not support PKCE S256".into(),
                ));
            }
            let need = |n: &str| {
                str_field(&doc, n)
                    .ok_or_else(|| UpstreamError::Invalid(format!("discovery document lacks {n}")))
            };
            // RFC 8414 §2 / OIDC Discovery §3: when the provider lists its
            // client authentication methods, ours must be among them.
            if p.token_endpoint_auth == TokenAuth::PrivateKeyJwt
                && let Some(methods) = doc.get("token_endpoint_auth_methods_supported")
                && !methods
                    .as_array()
                    .is_some_and(|m| m.iter().any(|x| x == "private_key_jwt"))
            {
                return Err(UpstreamError::Config(format!(
                    "provider {:?} does not list private_key_jwt in \
                     token_endpoint_auth_methods_supported ({methods}); \
                     use client_secret instead",
                    p.name
                )));
            }
            let jwks_uri = need("jwks_uri")?;
            if !acceptable_url(app, &jwks_uri) {
                return Err(UpstreamError::Invalid("jwks_uri is not https".into()));
            }
            let jwks = fetch_json(app, &jwks_uri).await?;
            let verifier = Verifier::from_jwks_json(&jwks)
                .map_err(|e| UpstreamError::Invalid(format!("provider JWKS: {e}")))?;
            Discovered {
                authorization_endpoint: need("authorization_endpoint")?,
                token_endpoint: need("token_endpoint")?,
                userinfo_endpoint: str_field(&doc, "userinfo_endpoint"),
                iss_parameter_supported: doc
                    .get("authorization_response_iss_parameter_supported")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                verifier: Some(Arc::new(verifier)),
                fetched_at: app.now(),
            }
        }
    };
    let endpoints = [&d.authorization_endpoint, &d.token_endpoint];
    for u in endpoints.into_iter().chain(d.userinfo_endpoint.as_ref()) {
        if !acceptable_url(app, u) {
            return Err(UpstreamError::Invalid(format!("endpoint {u} is not https")));
        }
    }
    Ok(d)
}

/// Redeems the code at the provider and validates what comes back.
pub(crate) async fn exchange(
    app: &AppState,
    p: &IdentityProvider,
    code: &str,
    verifier: &str,
    nonce_hash: &str,
) -> Result<Identity, UpstreamError> {
    let d = discover(app, p, false).await?;
    let redirect_uri = super::callback_url(app, p);
    let form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri.as_str()),
        ("code_verifier", verifier),
    ];
    let auth = client_auth(app, p, &d.token_endpoint)?;
    let r = app
        .fetcher
        .post_authenticated(&d.token_endpoint, form, &auth, None)
        .await
        .map_err(|e| UpstreamError::Provider(format!("token request: {e}")))?;
    let body: Value = r
        .json()
        .map_err(|e| UpstreamError::Provider(format!("token response is not JSON: {e}")))?;
    if !r.is_success() {
        return Err(UpstreamError::Provider(format!(
            "token request refused: HTTP {} {}",
            r.status,
            str_field(&body, "error").unwrap_or_default()
        )));
    }
    let claims = match &p.kind {
        ProviderKind::Oidc => {
            let id_token = str_field(&body, "id_token")
                .ok_or_else(|| UpstreamError::Invalid("token response has no id_token".into()))?;
            let mut claims = validate_id_token(app, p, d.clone(), &id_token, nonce_hash).await?;
            if claims.get(&p.groups_claim).is_none()
                && d.userinfo_endpoint.is_some()
                && let Some(access) = str_field(&body, "access_token")
            {
                // Many providers leave groups out of the ID token: ask the
                // userinfo endpoint, so that the groups (and the allowlist,
                // and entitlements) are the provider's of now.
                let info = userinfo(app, &d, &access).await?;
                merge_userinfo(p, &mut claims, &info)?;
            }
            claims
        }
        ProviderKind::OAuth2 { .. } => {
            let access = str_field(&body, "access_token").ok_or_else(|| {
                UpstreamError::Invalid("token response has no access_token".into())
            })?;
            userinfo(app, &d, &access).await?
        }
    };
    identity_from(p, &claims)
}

/// How mcpgate authenticates at the provider's token endpoint. A client
/// assertion is addressed to the token endpoint (what OpenID providers
/// expect), with `client_id` in the form too.
fn client_auth(
    app: &AppState,
    p: &IdentityProvider,
    token_endpoint: &str,
) -> Result<mcpgate_net::ClientAuth, UpstreamError> {
    use mcpgate_net::ClientAuth;
    Ok(match p.token_endpoint_auth {
        TokenAuth::ClientSecretBasic => ClientAuth::basic(&p.client_id, &p.client_secret),
        TokenAuth::ClientSecretPost => ClientAuth::post(&p.client_id, &p.client_secret),
        TokenAuth::PrivateKeyJwt => {
            let key = p.private_key.clone().ok_or_else(|| {
                UpstreamError::Config("private_key_jwt without a private_key".into())
            })?;
            ClientAuth::private_key_jwt(
                &p.client_id,
                key,
                token_endpoint,
                true,
                app.now(),
                app.rng.as_ref(),
            )
            .map_err(|e| UpstreamError::Config(format!("signing the client assertion: {e}")))?
        }
    })
}

/// OIDC Core §3.1.3.7 with the algorithm taken from the provider's key.
async fn validate_id_token(
    app: &AppState,
    p: &IdentityProvider,
    mut d: Arc<Discovered>,
    token: &str,
    nonce_hash: &str,
) -> Result<Value, UpstreamError> {
    let opts = VerifyOptions {
        issuer: &p.issuer,
        audience: Some(&p.client_id),
        typ: None,
        now: app.now(),
        leeway: LEEWAY,
    };
    let mut refreshed = false;
    let claims: Value = loop {
        let Some(v) = d.verifier.clone() else {
            return Err(UpstreamError::Invalid("provider has no keys".into()));
        };
        match v.verify::<Value>(token, &opts) {
            Ok(t) => break t.claims,
            // A key rotated in at the provider: refetch its JWKS once.
            Err(JwtError::UnknownKid) if !refreshed => {
                refreshed = true;
                d = discover(app, p, true).await?;
            }
            Err(e) => return Err(UpstreamError::Invalid(format!("ID token: {e}"))),
        }
    };
    // Only this client as audience (no untrusted extra audiences).
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == &p.client_id,
        Some(Value::Array(list)) => list.len() == 1 && list[0] == p.client_id.as_str(),
        _ => false,
    };
    if !aud_ok {
        return Err(UpstreamError::Invalid(
            "ID token has other audiences".into(),
        ));
    }
    if let Some(azp) = claims.get("azp")
        && azp != p.client_id.as_str()
    {
        return Err(UpstreamError::Invalid(
            "ID token azp is another client".into(),
        ));
    }
    let nonce = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
    if nonce.is_empty() || !ct_eq(hash_secret(nonce).as_bytes(), nonce_hash.as_bytes()) {
        return Err(UpstreamError::Invalid(
            "ID token nonce is not the one sent".into(),
        ));
    }
    Ok(claims)
}

/// Plain OAuth 2.0: the userinfo URL with the access token in the
/// `Authorization: Bearer` header (RFC 6750 §2.1; GitHub accepts nothing
/// else); redirects are not followed, so the token stays with that host.
async fn userinfo(app: &AppState, d: &Discovered, access: &str) -> Result<Value, UpstreamError> {
    let url = d
        .userinfo_endpoint
        .as_deref()
        .ok_or_else(|| UpstreamError::Invalid("no userinfo endpoint".into()))?;
    let r = app
        .fetcher
        .get_with_bearer(url, access)
        .await
        .map_err(|e| UpstreamError::Provider(format!("userinfo: {e}")))?;
    if !r.is_success() {
        return Err(UpstreamError::Provider(format!(
            "userinfo: HTTP {}",
            r.status
        )));
    }
    r.json()
        .map_err(|e| UpstreamError::Provider(format!("userinfo is not JSON: {e}")))
}

/// OIDC Core §5.3.2: userinfo claims belong to the ID token's user only if
/// its `sub` is the same; then the claims the ID token left out (groups,
/// email, name) are taken from it. What the ID token says wins.
fn merge_userinfo(
    p: &IdentityProvider,
    claims: &mut Value,
    info: &Value,
) -> Result<(), UpstreamError> {
    if info.get("sub").is_none() || info.get("sub") != claims.get("sub") {
        return Err(UpstreamError::Invalid(
            "the userinfo sub is not the ID token's".into(),
        ));
    }
    let (Some(claims), Some(info)) = (claims.as_object_mut(), info.as_object()) else {
        return Ok(());
    };
    for name in [
        p.groups_claim.as_str(),
        p.email_claim.as_str(),
        "email_verified",
        p.name_claim.as_str(),
    ] {
        if !claims.contains_key(name)
            && let Some(v) = info.get(name)
        {
            claims.insert(name.to_string(), v.clone());
        }
    }
    Ok(())
}

fn claim_string(claims: &Value, name: &str) -> Option<String> {
    match claims.get(name)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn identity_from(p: &IdentityProvider, claims: &Value) -> Result<Identity, UpstreamError> {
    let subject = claim_string(claims, &p.subject_claim)
        .ok_or_else(|| UpstreamError::Invalid(format!("no {} claim", p.subject_claim)))?;
    if subject.len() > 255 {
        return Err(UpstreamError::Invalid("subject too long".into()));
    }
    let groups = match claims.get(&p.groups_claim) {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|g| g.as_str().map(str::to_string))
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    };
    Ok(Identity {
        subject,
        display_name: claim_string(claims, &p.name_claim),
        email: claim_string(claims, &p.email_claim),
        email_verified: claims.get("email_verified").and_then(Value::as_bool),
        groups,
    })
}

/// The provider's allowlist: `Err` with the reason shown to the user.
pub(crate) fn allowed(p: &IdentityProvider, id: &Identity) -> Result<(), &'static str> {
    if p.allowed_email_domains.is_empty() && p.allowed_groups.is_empty() && !p.allow_any_account {
        return Err("This server accepts no account of this provider.");
    }
    if !p.allowed_email_domains.is_empty() {
        let domain = id
            .email
            .as_deref()
            .filter(|_| id.email_verified != Some(false))
            .and_then(|e| e.rsplit_once('@'))
            .map(|(_, d)| d.to_ascii_lowercase());
        let ok = domain.is_some_and(|d| {
            p.allowed_email_domains
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&d))
        });
        if !ok {
            return Err("Your account's email address is not in a domain this server accepts.");
        }
    }
    if !p.allowed_groups.is_empty() && !id.groups.iter().any(|g| p.allowed_groups.contains(g)) {
        return Err("Your account is not in a group this server accepts.");
    }
    Ok(())
}
