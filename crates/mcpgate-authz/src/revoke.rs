//! Token revocation (RFC 7009) and introspection (RFC 7662).
//!
//! Access tokens are JWTs that guards validate without asking the store;
//! revoking one writes its `jti` to the store's revocation set, which the
//! guards follow, and introspection answers `active: false` for any token
//! an entry of that set covers (its grant, user, client, consent or jti).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use mcpgate_jose::VerifyOptions;
use mcpgate_store::{RevocableToken, RevocationSet, RevocationTarget, StoreError};
use mcpgate_types::secret::hash_secret;
use mcpgate_types::token::{AccessTokenClaims, IntrospectionResponse};
use mcpgate_types::{OAuthError, OAuthErrorCode};

use crate::clients::{Read, authenticate};
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

/// `POST /oauth/revoke`. Revoking a refresh token revokes its whole family;
/// revoking one of our access tokens (valid, issued to this client) puts
/// its `jti` in the revocation set. Unknown tokens, other clients' tokens
/// and expired ones get the same 200, so the endpoint reveals nothing
/// (RFC 7009 §2.2).
pub async fn revoke(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let r: ApiResult<()> = async {
        let p = parse(&headers, &body)?;
        let client = authenticate(&app, &headers, &p, Read::Current).await?;
        let token = p.get("token").ok_or_else(|| OAuthError::invalid_request("token is required"))?;
        let now = app.now();
        if let Some(c) = own_access_token(&app, token, now) {
            if c.client_id == client.client_id {
                let entry = app.revoke_at(now).entry(RevocationTarget::Token { jti: c.jti });
                app.store.revoke(&[entry]).await?;
                tracing::info!(client_id = %client.client_id, "access token revoked by client");
            }
            return Ok(());
        }
        match app.store.get_refresh_token(&hash_secret(token)).await {
            Ok((_, family)) if family.client_id == client.client_id => {
                app.store.revoke_family(&family.family_id, app.revoke_at(now)).await?;
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
        let client = authenticate(&app, &headers, &p, Read::Current).await?;
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

/// The claims of `token` if it is an access token this server issued,
/// validly signed and unexpired at `now`.
fn own_access_token(app: &AppState, token: &str, now: i64) -> Option<AccessTokenClaims> {
    if token.matches('.').count() != 2 {
        return None;
    }
    let keys = app.keys.current();
    let opts = VerifyOptions {
        issuer: &app.settings.issuer,
        audience: None,
        typ: Some("at+jwt"),
        now,
        leeway: 0,
    };
    keys.verifier
        .verify::<AccessTokenClaims>(token, &opts)
        .ok()
        .map(|v| v.claims)
}

/// Whether the revocation set covers this access token.
async fn is_revoked(app: &AppState, c: &AccessTokenClaims, now: i64) -> ApiResult<bool> {
    let ids = RevocableToken {
        subject: &c.sub,
        client_id: &c.client_id,
        grant: c.grant.as_deref(),
        jti: Some(&c.jti),
        issued_at: Some(c.iat),
    };
    let entries = app.store.revocations_for(&ids, now).await?;
    Ok(RevocationSet::new(entries).covers(&ids))
}

/// What the server knows about a token it issued.
pub async fn inspect(app: &AppState, token: &str) -> ApiResult<IntrospectionResponse> {
    let now = app.now();
    if token.matches('.').count() == 2 {
        return Ok(match own_access_token(app, token, now) {
            Some(c) if is_revoked(app, &c, now).await? => IntrospectionResponse::default(),
            Some(c) => {
                let username = app.store.get_user(&c.sub).await.ok().map(|u| u.username);
                IntrospectionResponse {
                    active: true,
                    scope: Some(c.scope),
                    client_id: Some(c.client_id),
                    username,
                    token_type: Some(if c.cnf.is_some() { "DPoP" } else { "Bearer" }.into()),
                    exp: Some(c.exp),
                    iat: Some(c.iat),
                    sub: Some(c.sub),
                    aud: Some(c.aud),
                    iss: Some(c.iss),
                    jti: Some(c.jti),
                    groups: c.groups,
                    cnf: c.cnf,
                }
            }
            None => IntrospectionResponse::default(),
        });
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
