//! The token endpoint (OAuth 2.1 §3.2, §4.1.3, §4.3, §4.2): authorization
//! code with PKCE, rotating refresh tokens with reuse detection, and client
//! credentials. Access tokens are RFC 9068 JWTs bound to one resource.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use mcpgate_store::{
    AuthCodeRecord, ClientRecord, Redeem, RefreshFamilyRecord, RefreshTokenRecord,
    RevocationTarget, Rotate, StoreError, UserRecord,
};
use mcpgate_types::client_metadata::JWT_BEARER_GRANT;
use mcpgate_types::secret::hash_secret;
use mcpgate_types::token::{AccessTokenClaims, Confirmation, TokenResponse};
use mcpgate_types::{OAuthError, OAuthErrorCode, ScopeSet, pkce, resource};

use crate::clients::{Read, authenticate, is_public};
use crate::error::{ApiError, ApiResult, no_store_json};
use crate::params::{Params, is_form};
use crate::settings::Holder;
use crate::state::AppState;

/// `POST /oauth/token`
pub async fn token(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    match handle(&app, &headers, &body).await {
        Ok(r) => no_store_json(axum::http::StatusCode::OK, &r),
        Err(e) => axum::response::IntoResponse::into_response(e),
    }
}

async fn handle(app: &AppState, headers: &HeaderMap, body: &[u8]) -> ApiResult<TokenResponse> {
    if !is_form(headers) {
        return Err(OAuthError::invalid_request(
            "the token request must be application/x-www-form-urlencoded",
        )
        .into());
    }
    let p = Params::parse(body);
    if let Some(name) = p.repeated().first() {
        return Err(OAuthError::invalid_request(format!("parameter {name} is repeated")).into());
    }
    let grant = p
        .get("grant_type")
        .ok_or_else(|| OAuthError::invalid_request("grant_type is required"))?;
    // A code exchange and a rotation may authenticate against a client row
    // read within the last second: their grant step fails on its own if the
    // client is gone (its codes and families go with it).
    let read = match grant {
        "authorization_code" | "refresh_token" => Read::Recent,
        _ => Read::Current,
    };
    // The proof first: a refused proof spends no client assertion.
    let jkt = crate::dpop::token_request_key(app, headers).await?;
    let jkt = jkt.as_deref();
    let client = authenticate(app, headers, &p, read).await?;
    let allowed = |g: &str| client.grant_types.iter().any(|x| x == g);
    match grant {
        "authorization_code" if allowed(grant) => authorization_code(app, &client, &p, jkt).await,
        "refresh_token" if allowed(grant) => refresh(app, &client, &p, jkt).await,
        "client_credentials" if allowed(grant) && !is_public(&client) => {
            client_credentials(app, &client, &p, jkt).await
        }
        JWT_BEARER_GRANT if allowed(grant) => crate::jwt_bearer::grant(app, &client, &p, jkt).await,
        "authorization_code" | "refresh_token" | "client_credentials" | JWT_BEARER_GRANT => {
            Err(ApiError::code(
                OAuthErrorCode::UnauthorizedClient,
                format!("this client may not use the {grant} grant"),
            ))
        }
        _ => Err(ApiError::code(
            OAuthErrorCode::UnsupportedGrantType,
            "unsupported grant_type",
        )),
    }
}

fn invalid_grant(d: &str) -> ApiError {
    OAuthError::invalid_grant(d).into()
}

async fn authorization_code(
    app: &AppState,
    client: &ClientRecord,
    p: &Params,
    jkt: Option<&str>,
) -> ApiResult<TokenResponse> {
    let code = p
        .get("code")
        .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
    let verifier = p
        .get("code_verifier")
        .ok_or_else(|| OAuthError::invalid_request("code_verifier is required (PKCE)"))?;
    let now = app.now();
    let code_hash = hash_secret(code);
    // Read first, check, then redeem: a code exchange costs one commit (the
    // redemption and the refresh family together). A code that fails a
    // check is consumed all the same, as if it had been redeemed first.
    let (rec, user) = match app.store.get_code_and_user(&code_hash).await {
        Ok(found) => found,
        Err(StoreError::NotFound) => {
            return Err(invalid_grant("the authorization code is invalid"));
        }
        Err(e) => return Err(e.into()),
    };
    if rec.used_at.is_some() {
        return Err(replayed(app, &rec, &code_hash, now).await?);
    }
    let user = match check_code(&rec, user, client, p, verifier, now) {
        Ok(user) => user,
        Err(refused) => {
            consume(app, &code_hash, now).await?;
            return Err(refused);
        }
    };
    // Entitlements may have changed since the code was issued.
    let scopes = app.settings.entitled(
        Holder::User(&user),
        &ScopeSet::from_iter(rec.scopes.iter().cloned()),
        &rec.resource,
    );
    // The grant is the code's family id, whether or not a family is stored,
    // so that a replay of the code revokes this token too.
    let access = mint(
        app,
        &user.id,
        client,
        &rec.resource,
        &scopes,
        Some(rec.auth_time),
        &user.groups,
        &family_id_for_code(&code_hash),
        jkt,
    )?;
    let wants_refresh = scopes.contains("offline_access")
        || client.grant_types.iter().any(|g| g == "refresh_token");
    // RFC 9449 §5: a public client's refresh tokens are bound to its key;
    // a confidential client's are held by its authentication already.
    let bind_refresh = jkt.filter(|_| is_public(client));
    let family = wants_refresh.then(|| first_family(app, &rec, &code_hash, now, bind_refresh));
    let start = family.as_ref().map(|(f, t, _)| (f, t));
    let refresh_token = match app
        .store
        .redeem_code_with_family(&code_hash, now, start)
        .await?
    {
        (Redeem::Fresh(_), true) => family.map(|(_, _, raw)| raw),
        (Redeem::Fresh(_), false) => {
            if wants_refresh {
                // The family id was taken: a revoked placeholder left by a
                // replay (see `revoke_after_replay`). The code is consumed in
                // the same transaction as its family, so a replay can only
                // see it used after the family is stored; this guards the
                // invariant all the same. No refresh token comes from it.
                tracing::warn!(client_id = %client.client_id, "authorization code replayed during its first use; no refresh token issued");
            }
            None
        }
        // Another request redeemed the code between our read and our write.
        (Redeem::Replayed(rec), _) => return Err(replayed(app, &rec, &code_hash, now).await?),
    };
    Ok(response(app, access, refresh_token, &scopes, jkt))
}

/// The refresh family a code starts, its first token and that token.
fn first_family(
    app: &AppState,
    rec: &AuthCodeRecord,
    code_hash: &str,
    now: i64,
    dpop_jkt: Option<&str>,
) -> (RefreshFamilyRecord, RefreshTokenRecord, String) {
    let raw = app.random(32);
    let family = RefreshFamilyRecord {
        family_id: family_id_for_code(code_hash),
        client_id: rec.client_id.clone(),
        user_id: rec.user_id.clone(),
        resource: rec.resource.clone(),
        scopes: rec.scopes.clone(),
        auth_time: rec.auth_time,
        code_hash: Some(code_hash.to_owned()),
        created_at: now,
        expires_at: now + app.settings.refresh_token_ttl,
        revoked_at: None,
        dpop_jkt: dpop_jkt.map(str::to_owned),
    };
    let first = RefreshTokenRecord {
        token_hash: hash_secret(&raw),
        family_id: family.family_id.clone(),
        scopes: rec.scopes.clone(),
        created_at: now,
        expires_at: family.expires_at,
        rotated_at: None,
    };
    (family, first, raw)
}

/// Everything a code exchange checks before redeeming (OAuth 2.1 §4.1.3):
/// the client, expiry, `redirect_uri`, PKCE, `resource`, and that the user
/// (read with the code) may still sign in. Returns the user.
fn check_code(
    rec: &AuthCodeRecord,
    user: UserRecord,
    client: &ClientRecord,
    p: &Params,
    verifier: &str,
    now: i64,
) -> ApiResult<UserRecord> {
    if rec.client_id != client.client_id {
        tracing::warn!(client_id = %client.client_id, "authorization code presented by another client");
        return Err(invalid_grant(
            "the authorization code was issued to another client",
        ));
    }
    if now >= rec.expires_at {
        return Err(invalid_grant("the authorization code has expired"));
    }
    if let Some(r) = p.get("redirect_uri")
        && r != rec.redirect_uri
    {
        return Err(invalid_grant(
            "redirect_uri does not match the authorization request",
        ));
    }
    if !pkce::verify_s256(verifier, &rec.code_challenge) {
        return Err(invalid_grant(
            "the code_verifier does not match the code_challenge",
        ));
    }
    if let Some(r) = p.get("resource")
        && resource::find_canonical(r, std::slice::from_ref(&rec.resource)).is_none()
    {
        return Err(OAuthError::invalid_target("resource differs from the one authorized").into());
    }
    if user.disabled {
        return Err(invalid_grant("the user is no longer allowed to sign in"));
    }
    Ok(user)
}

/// Consumes a code whose exchange was refused; a replay found on the way
/// is handled as one.
async fn consume(app: &AppState, code_hash: &str, now: i64) -> ApiResult<()> {
    match app.store.redeem_code(code_hash, now).await {
        Ok(Redeem::Fresh(_)) | Err(StoreError::NotFound) => Ok(()),
        Ok(Redeem::Replayed(rec)) => replayed(app, &rec, code_hash, now).await.map(drop),
        Err(e) => Err(e.into()),
    }
}

/// OAuth 2.1 §4.1.3: a code used twice revokes what it issued. Returns the
/// error to answer with.
async fn replayed(
    app: &AppState,
    rec: &AuthCodeRecord,
    code_hash: &str,
    now: i64,
) -> ApiResult<ApiError> {
    let n = revoke_after_replay(app, rec, code_hash, now).await?;
    tracing::warn!(client_id = %rec.client_id, revoked_families = n, "authorization code replayed; tokens revoked");
    Ok(invalid_grant("the authorization code was already used"))
}

/// The id of the refresh-token family an authorization code starts. It is
/// derived from the code, so a first use and a concurrent replay of the same
/// code meet on one key in the store.
fn family_id_for_code(code_hash: &str) -> String {
    hash_secret(&format!("mcpgate/code-family/v1\n{code_hash}"))
}

/// Revokes what a replayed code issued. Revoking by code alone would miss
/// the first use while it is still in flight (between redeeming the code and
/// storing its refresh family): both sides therefore write the same family
/// id. The replay stores a revoked placeholder under it; if the first use got
/// there first, the insert conflicts and the replay revokes that family
/// instead; if the placeholder got there first, the first use's insert
/// conflicts and it issues no refresh token. Either way the family id, which
/// is also the `grant` of the access token the first use issued, goes into
/// the revocation set. Returns the families revoked by code (for the log).
async fn revoke_after_replay(
    app: &AppState,
    rec: &AuthCodeRecord,
    code_hash: &str,
    now: i64,
) -> ApiResult<u64> {
    let family_id = family_id_for_code(code_hash);
    let placeholder = RefreshFamilyRecord {
        family_id: family_id.clone(),
        client_id: rec.client_id.clone(),
        user_id: rec.user_id.clone(),
        resource: rec.resource.clone(),
        scopes: Vec::new(),
        auth_time: rec.auth_time,
        code_hash: Some(code_hash.to_string()),
        created_at: now,
        expires_at: now,
        revoked_at: Some(now),
        dpop_jkt: None,
    };
    // Its one token is random and never handed out.
    let unusable = RefreshTokenRecord {
        token_hash: hash_secret(&app.random(32)),
        family_id: family_id.clone(),
        scopes: Vec::new(),
        created_at: now,
        expires_at: now,
        rotated_at: None,
    };
    let at = app.revoke_at(now);
    match app.store.create_family(&placeholder, &unusable).await {
        // No family was stored: the first use issued at most an access
        // token, whose grant is this id.
        Ok(()) => {
            let entry = at.entry(RevocationTarget::Grant {
                grant_id: family_id.clone(),
            });
            app.store.revoke(&[entry]).await?;
        }
        Err(StoreError::Conflict(_)) => app.store.revoke_family(&family_id, at).await?,
        Err(e) => return Err(e.into()),
    }
    // Families of codes redeemed before family ids were derived from codes.
    Ok(app.store.revoke_families_by_code(code_hash, at).await?)
}

async fn refresh(
    app: &AppState,
    client: &ClientRecord,
    p: &Params,
    jkt: Option<&str>,
) -> ApiResult<TokenResponse> {
    let raw = p
        .get("refresh_token")
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
    let now = app.now();
    let hash = hash_secret(raw);
    let (tok, family, user) = match app.store.get_refresh_token_and_user(&hash).await {
        Ok(x) => x,
        Err(StoreError::NotFound) => return Err(invalid_grant("the refresh token is invalid")),
        Err(e) => return Err(e.into()),
    };
    if family.client_id != client.client_id {
        return Err(invalid_grant(
            "the refresh token was issued to another client",
        ));
    }
    if family.revoked_at.is_some() {
        return Err(invalid_grant("the refresh token has been revoked"));
    }
    if now >= family.expires_at || now >= tok.expires_at {
        return Err(invalid_grant("the refresh token has expired"));
    }
    if let Some(bound) = family.dpop_jkt.as_deref()
        && jkt != Some(bound)
    {
        tracing::warn!(client_id = %client.client_id, "DPoP-bound refresh token presented without a proof of its key");
        return Err(invalid_grant(
            "the refresh token is bound to a DPoP key: send a DPoP proof made with that key",
        ));
    }
    if let Some(r) = p.get("resource")
        && resource::find_canonical(r, std::slice::from_ref(&family.resource)).is_none()
    {
        return Err(OAuthError::invalid_target("resource differs from the one authorized").into());
    }
    let granted = ScopeSet::from_iter(family.scopes.iter().cloned());
    let scopes = match p.get("scope") {
        None => ScopeSet::from_iter(tok.scopes.iter().cloned()),
        Some(s) => {
            let asked = ScopeSet::parse(s).map_err(|e| OAuthError::invalid_scope(e.to_string()))?;
            if !asked.is_subset(&granted) {
                return Err(OAuthError::invalid_scope(
                    "a refresh can narrow the granted scopes, never widen them",
                )
                .into());
            }
            asked
        }
    };
    if user.disabled {
        return Err(invalid_grant("the user is no longer allowed to sign in"));
    }
    // A refresh grants only what the user may hold now (groups change,
    // rules change): the rest of the grant is withheld, and a refresh with
    // nothing left is refused.
    let entitled = app
        .settings
        .entitled(Holder::User(&user), &scopes, &family.resource);
    if entitled.is_empty() && !scopes.is_empty() {
        if p.get("scope").is_some() {
            return Err(OAuthError::invalid_scope(format!(
                "the user may not be granted the requested scopes ({scopes})"
            ))
            .into());
        }
        return Err(invalid_grant(
            "the user may no longer be granted any scope of this grant",
        ));
    }
    let scopes = entitled;
    let new_raw = app.random(32);
    let new = RefreshTokenRecord {
        token_hash: hash_secret(&new_raw),
        family_id: family.family_id.clone(),
        scopes: scopes.to_vec(),
        created_at: now,
        expires_at: family.expires_at,
        rotated_at: None,
    };
    let grace = app.settings.refresh_reuse_grace_secs;
    match app
        .store
        .rotate_refresh_token_within(&hash, &new, app.revoke_at(now), grace)
        .await
    {
        Ok(Rotate::Rotated { .. }) => {}
        Ok(Rotate::Sibling { family, old }) => {
            // Not reuse: the same client again within the grace interval
            // (two refreshes at once, a retry). Logged every time.
            tracing::info!(
                client_id = %family.client_id,
                user = %family.user_id,
                family = %family.family_id,
                since_rotation = now - old.rotated_at.unwrap_or(now),
                "refresh token presented again within the reuse grace interval; a sibling was issued"
            );
        }
        Ok(Rotate::Reused { family }) => {
            tracing::warn!(client_id = %family.client_id, user = %family.user_id, "refresh token reused; family revoked");
            return Err(invalid_grant(
                "the refresh token was already used; all tokens of this grant are revoked",
            ));
        }
        Ok(Rotate::Revoked { .. }) => {
            return Err(invalid_grant("the refresh token has been revoked"));
        }
        Err(StoreError::NotFound) => return Err(invalid_grant("the refresh token is invalid")),
        Err(e) => return Err(e.into()),
    }
    let access = mint(
        app,
        &user.id,
        client,
        &family.resource,
        &scopes,
        Some(family.auth_time),
        &user.groups,
        &family.family_id,
        jkt,
    )?;
    Ok(response(app, access, Some(new_raw), &scopes, jkt))
}

async fn client_credentials(
    app: &AppState,
    client: &ClientRecord,
    p: &Params,
    jkt: Option<&str>,
) -> ApiResult<TokenResponse> {
    let requested = p
        .get("resource")
        .ok_or_else(|| OAuthError::invalid_target("resource is required (RFC 8707)"))?;
    let canonical = resource::find_canonical(requested, &app.settings.resource_uris())
        .ok_or_else(|| {
            OAuthError::invalid_target("this server does not issue tokens for that resource")
        })?
        .to_string();
    let scopes = crate::authorize::parse_scopes(app, client, p.get("scope").unwrap_or(""))
        .map_err(OAuthError::invalid_scope)?;
    if scopes.contains("offline_access") {
        return Err(OAuthError::invalid_scope(
            "offline_access makes no sense for client credentials",
        )
        .into());
    }
    let entitled = app
        .settings
        .entitled(Holder::Client(&client.client_id), &scopes, &canonical);
    if entitled.is_empty() && !scopes.is_empty() {
        return Err(OAuthError::invalid_scope(format!(
            "this client may not be granted the requested scopes ({scopes})"
        ))
        .into());
    }
    let scopes = entitled;
    // Each client-credentials token is a grant of its own.
    let access = mint(
        app,
        &client.client_id,
        client,
        &canonical,
        &scopes,
        None,
        &[],
        &format!("cc_{}", app.random(16)),
        jkt,
    )?;
    Ok(response(app, access, None, &scopes, jkt))
}

/// Signs an RFC 9068 access token. `grant` names what it was issued
/// under (the refresh family, or the code's or client-credentials grant),
/// so the revocation set can revoke every token of one grant. With `jkt`,
/// the token is DPoP-bound to that key (`cnf.jkt`, RFC 9449 §6.1).
#[allow(clippy::too_many_arguments)]
pub fn mint(
    app: &AppState,
    sub: &str,
    client: &ClientRecord,
    aud: &str,
    scopes: &ScopeSet,
    auth_time: Option<i64>,
    groups: &[String],
    grant: &str,
    jkt: Option<&str>,
) -> ApiResult<String> {
    let now = app.now();
    let claims = AccessTokenClaims {
        iss: app.settings.issuer.clone(),
        sub: sub.to_string(),
        aud: aud.to_string(),
        exp: now + app.settings.access_token_ttl,
        iat: now,
        nbf: None,
        jti: app.random(16),
        client_id: client.client_id.clone(),
        scope: scopes.to_string(),
        auth_time,
        groups: groups.to_vec(),
        grant: Some(grant.to_owned()),
        cnf: jkt.map(|jkt| Confirmation {
            jkt: jkt.to_owned(),
        }),
    };
    app.keys
        .current()
        .active
        .sign("at+jwt", &claims)
        .map_err(|e| ApiError::Internal(format!("signing: {e}")))
}

pub(crate) fn response(
    app: &AppState,
    access: String,
    refresh: Option<String>,
    scopes: &ScopeSet,
    jkt: Option<&str>,
) -> TokenResponse {
    TokenResponse {
        access_token: access,
        token_type: if jkt.is_some() { "DPoP" } else { "Bearer" }.into(),
        expires_in: app.settings.access_token_ttl,
        refresh_token: refresh,
        scope: Some(scopes.to_string()),
    }
}
