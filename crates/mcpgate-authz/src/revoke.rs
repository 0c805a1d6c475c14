//! Token revocation (RFC 7009) and introspection (RFC 7662).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use mcpgate_jose::VerifyOptions;
use mcpgate_store::StoreError;
use mcpgate_types::secret::hash_secret;
use mcpgate_types::token::{AccessTokenClaims, IntrospectionResponse};
use mcpgate_types::{OAuthError, OAuthErrorCode};

use crate::clients::authenticate;
use crate::error::{ApiError, ApiResult, no_store_json};
use crate::params::{Params, is_form};
use crate::state::AppState;

fn parse(headers: &HeaderMap, body: &[u8]) -> ApiResult<Params> {
    if !is_form(headers) {
        return Err(OAuthError::invalid_request(
            "the request must be application/x-www-form-urlencoded",
        )
        .into());
    }
    let p = Params::parse(body);
    if let Some(name) = p.repeated().first() {
        return Err(OAuthError::invalid_request(format!("parameter {name} is repeated")).into());
    }
    Ok(p)
}

/// `POST /oauth/revoke`. Revoking a refresh token revokes its whole family.
/// Unknown tokens and JWT access tokens (which expire on their own) get the
/// same 200, so the endpoint reveals nothing (RFC 7009 §2.2).
pub async fn revoke(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let r: ApiResult<()> = async {
        let p = parse(&headers, &body)?;
        let client = authenticate(&app, &headers, &p).await?;
        let token = p.get("token").ok_or_else(|| OAuthError::invalid_request("token is required"))?;
        match app.store.get_refresh_token(&hash_secret(token)).await {
            Ok((_, family)) if family.client_id == client.client_id => {
                app.store.revoke_family(&family.family_id, app.now()).await?;
                tracing::info!(client_id = %client.client_id, "refresh token family revoked by client");
            }
            Ok(_) | Err(StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }
    .await;
    match r {
        Ok(()) => no_store_json(StatusCode::OK, &serde_json::json!({})),
        Err(e) => e.into_response(),
    }
}

/// `POST /oauth/introspect`, for authenticated resource servers listed in
/// `introspection_clients`.
pub async fn introspect(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let r: ApiResult<IntrospectionResponse> = async {
        let p = parse(&headers, &body)?;
        let client = authenticate(&app, &headers, &p).await?;
        if client.client_secret_hash.is_none()
            || !app
                .settings
                .introspection_clients
                .contains(&client.client_id)
        {
            return Err(ApiError::code(
                OAuthErrorCode::InvalidClient,
                "this client may not introspect tokens",
            ));
        }
        let token = p
            .get("token")
            .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
        inspect(&app, token).await
    }
    .await;
    match r {
        Ok(body) => no_store_json(StatusCode::OK, &body),
        Err(e) => e.into_response(),
    }
}

/// What the server knows about a token it issued.
pub async fn inspect(app: &AppState, token: &str) -> ApiResult<IntrospectionResponse> {
    let now = app.now();
    if token.matches('.').count() == 2 {
        let keys = app.keys.current();
        let opts = VerifyOptions {
            issuer: &app.settings.issuer,
            audience: None,
            typ: Some("at+jwt"),
            now,
            leeway: 0,
        };
        return Ok(
            match keys.verifier.verify::<AccessTokenClaims>(token, &opts) {
                Ok(v) => {
                    let c = v.claims;
                    let username = app.store.get_user(&c.sub).await.ok().map(|u| u.username);
                    IntrospectionResponse {
                        active: true,
                        scope: Some(c.scope),
                        client_id: Some(c.client_id),
                        username,
                        token_type: Some("Bearer".into()),
                        exp: Some(c.exp),
                        iat: Some(c.iat),
                        sub: Some(c.sub),
                        aud: Some(c.aud),
                        iss: Some(c.iss),
                        jti: Some(c.jti),
                        groups: c.groups,
                    }
                }
                Err(_) => IntrospectionResponse::default(),
            },
        );
    }
    match app.store.get_refresh_token(&hash_secret(token)).await {
        Ok((t, f))
            if t.rotated_at.is_none()
                && f.revoked_at.is_none()
                && now < t.expires_at
                && now < f.expires_at =>
        {
            Ok(IntrospectionResponse {
                active: true,
                scope: Some(t.scopes.join(" ")),
                client_id: Some(f.client_id),
                token_type: Some("refresh_token".into()),
                exp: Some(t.expires_at),
                iat: Some(t.created_at),
                sub: Some(f.user_id),
                aud: Some(f.resource),
                iss: Some(app.settings.issuer.clone()),
                ..Default::default()
            })
        }
        Ok(_) | Err(StoreError::NotFound) => Ok(IntrospectionResponse::default()),
        Err(e) => Err(e.into()),
    }
}
