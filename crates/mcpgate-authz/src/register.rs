//! Dynamic client registration (RFC 7591) with a redirect URI policy:
//! `https`, `http` only for loopback hosts, private-use schemes for native
//! apps, never `javascript:`/`data:`/`file:`. Optional initial access token,
//! per-IP and server-wide rate limits.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mcpgate_store::{ClientKind, ClientRecord};
use mcpgate_types::client_metadata::{
    ClientMetadata, ClientRegistrationResponse, TokenEndpointAuthMethod,
};
use mcpgate_types::redirect_uri::validate_for_registration;
use mcpgate_types::secret::{ct_eq, hash_secret};
use mcpgate_types::{OAuthErrorCode, ScopeSet};

use crate::client_assertion::registered_keys;
use crate::clients::truncate;
use crate::error::{ApiError, ApiResult, no_store_json};
use crate::state::AppState;

const MAX_REDIRECT_URIS: usize = 10;

fn meta_err(d: impl Into<String>) -> ApiError {
    ApiError::code(OAuthErrorCode::InvalidClientMetadata, d)
}

/// `POST /oauth/register`
pub async fn register(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    match handle(&app, peer, &headers, &body).await {
        Ok(r) => no_store_json(StatusCode::CREATED, &r),
        Err(e) => e.into_response(),
    }
}

async fn handle(
    app: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<ClientRegistrationResponse> {
    let s = &app.settings.dcr;
    if !s.enabled {
        return Err(ApiError::code(
            OAuthErrorCode::AccessDenied,
            "dynamic client registration is disabled on this server",
        ));
    }
    if let Some(expected) = &s.initial_access_token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim());
        if !presented.is_some_and(|t| ct_eq(t.as_bytes(), expected.expose().as_bytes())) {
            return Err(ApiError::code(
                OAuthErrorCode::InvalidToken,
                "a valid initial access token is required to register",
            ));
        }
    }
    let ip = app.client_ip(Some(peer), headers);
    if let Err(wait) = app.limiters.register_ip.check(&ip.to_string()).await {
        return Err(ApiError::RateLimited {
            retry_after_secs: crate::error::retry_after_secs(wait),
        });
    }
    let now = app.now();
    if app.store.count_dynamic_clients_since(now - 3600).await? >= s.max_per_hour {
        return Err(ApiError::RateLimited {
            retry_after_secs: 300,
        });
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        });
    if !is_json {
        return Err(meta_err(
            "the registration request must be application/json",
        ));
    }
    let meta: ClientMetadata = serde_json::from_slice(body).map_err(|e| {
        meta_err(format!(
            "the registration request is not valid client metadata (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    if meta.client_id.is_some() {
        return Err(meta_err("client_id is assigned by the server"));
    }
    if meta.redirect_uris.is_empty() {
        return Err(ApiError::code(
            OAuthErrorCode::InvalidRedirectUri,
            "at least one redirect URI is required",
        ));
    }
    if meta.redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(ApiError::code(
            OAuthErrorCode::InvalidRedirectUri,
            format!("at most {MAX_REDIRECT_URIS} redirect URIs"),
        ));
    }
    for r in &meta.redirect_uris {
        validate_for_registration(r).map_err(|e| {
            ApiError::code(OAuthErrorCode::InvalidRedirectUri, format!("{r:?}: {e}"))
        })?;
    }
    let method = match meta.token_endpoint_auth_method.as_deref() {
        // RFC 7591 §2 default.
        None => TokenEndpointAuthMethod::ClientSecretBasic,
        Some(m) => TokenEndpointAuthMethod::parse(m).ok_or_else(|| {
            meta_err(format!("token_endpoint_auth_method {m:?} is not supported"))
        })?,
    };
    let grant_types = meta
        .grant_types
        .clone()
        .unwrap_or_else(|| vec!["authorization_code".into()]);
    if grant_types.is_empty() {
        return Err(meta_err("grant_types must not be empty"));
    }
    for g in &grant_types {
        if g != "authorization_code" && g != "refresh_token" {
            return Err(meta_err(format!(
                "grant type {g:?} cannot be registered dynamically"
            )));
        }
    }
    if !grant_types.iter().any(|g| g == "authorization_code") {
        return Err(meta_err("grant_types must include authorization_code"));
    }
    let response_types = meta
        .response_types
        .clone()
        .unwrap_or_else(|| vec!["code".into()]);
    if response_types != ["code"] {
        return Err(meta_err("response_types must be [\"code\"]"));
    }
    // The registered `scope` is checked and echoed, but it does not cap what
    // the client may ask for later: MCP clients register with the scopes of
    // the first challenge and must be able to step up (each new scope still
    // needs the user's consent). Operators restrict pre-registered clients.
    let registered_scopes = match &meta.scope {
        Some(s) => {
            let set = ScopeSet::parse(s).map_err(|e| meta_err(e.to_string()))?;
            for sc in set.iter() {
                if app.settings.scope(sc).is_none() {
                    return Err(meta_err(format!("unknown scope {sc:?}")));
                }
            }
            set.to_vec()
        }
        None => Vec::new(),
    };
    if let Some(t) = meta.application_type.as_deref()
        && t != "native"
        && t != "web"
    {
        return Err(meta_err("application_type must be native or web"));
    }
    let name = meta
        .client_name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| truncate(n, 200));
    for (field, v) in [
        ("client_uri", &meta.client_uri),
        ("logo_uri", &meta.logo_uri),
    ] {
        if let Some(u) = v
            && (u.len() > 2000 || !u.starts_with("https://"))
        {
            return Err(meta_err(format!("{field} must be an https URL")));
        }
    }
    let (jwks, jwks_uri) = registered_keys(
        method,
        meta.jwks.as_ref(),
        meta.jwks_uri.as_deref(),
        app.fetcher.policy(),
    )
    .map_err(meta_err)?;
    let client_id = format!("mcp_{}", app.random(18));
    let secret = method.uses_secret().then(|| app.random(32));
    let rec = ClientRecord {
        client_id: client_id.clone(),
        kind: ClientKind::Dynamic,
        client_name: name.clone(),
        client_secret_hash: secret.as_deref().map(hash_secret),
        token_endpoint_auth_method: method.as_str().into(),
        redirect_uris: meta.redirect_uris.clone(),
        grant_types: grant_types.clone(),
        allowed_scopes: Vec::new(),
        application_type: meta.application_type.clone(),
        client_uri: meta.client_uri.clone(),
        logo_uri: meta.logo_uri.clone(),
        created_at: now,
        expires_at: None,
        jwks,
        jwks_uri,
    };
    app.store.create_client(&rec).await?;
    tracing::info!(%client_id, %ip, "client registered dynamically");
    Ok(ClientRegistrationResponse {
        client_id,
        client_secret_expires_at: secret.as_ref().map(|_| 0),
        client_secret: secret,
        client_id_issued_at: now,
        redirect_uris: rec.redirect_uris,
        token_endpoint_auth_method: rec.token_endpoint_auth_method,
        grant_types,
        response_types,
        client_name: name,
        scope: (!registered_scopes.is_empty()).then(|| registered_scopes.join(" ")),
        application_type: meta.application_type,
        jwks_uri: rec.jwks_uri,
        jwks: meta
            .jwks
            .filter(|_| method == TokenEndpointAuthMethod::PrivateKeyJwt),
    })
}
