//! The JWT-bearer authorization grant (RFC 7523 §2.1): a JWT another party
//! signed for this authorization server, traded for an access token. Two
//! kinds of party are trusted, each only as configured:
//!
//! - an enterprise identity provider (`[[identity_provider]] id_jag = true`,
//!   SEP-990 enterprise-managed authorization) signs an Identity Assertion
//!   JWT Authorization Grant (`typ: oauth-id-jag+jwt`) for one of its users
//!   and one client: the token is for the local user linked to that account
//!   (who must have signed in through the provider once, so its admission
//!   rules were applied), with the scopes the grant and the user's
//!   entitlements both allow;
//! - a workload identity issuer (`[[authorization_server.workload_issuer]]`,
//!   SEP-1933) signs a JWT for a workload (`sub`) that the configuration maps
//!   to a registered client: the token is for that client itself, as client
//!   credentials would give it.
//!
//! The issuer is read unverified only to choose whose keys verify the JWT;
//! then the signature, `iss`, `aud` (this issuer), `exp`, a bounded lifetime
//! and a single-use `jti` (spent in the store, fleet-wide) are checked.
//! Nothing else is trusted: an issuer not configured, a user not linked, a
//! workload not mapped, a grant for another client are all `invalid_grant`.
//! No refresh token is issued: the party that vouched is asked again.

use std::sync::Arc;

use mcpgate_jose::{JwtError, Verifier, VerifyOptions};
use mcpgate_store::{ClientRecord, StoreError};
use mcpgate_types::token::TokenResponse;
use mcpgate_types::{OAuthError, ScopeSet, resource};
use serde::Deserialize;

use crate::client_assertion::{KeysUnavailable, keys_at};
use crate::error::{ApiError, ApiResult};
use crate::params::Params;
use crate::settings::{Holder, IdentityProvider, WorkloadIssuer};
use crate::state::AppState;

pub use mcpgate_types::client_metadata::JWT_BEARER_GRANT;
/// The `typ` of an ID-JAG.
pub const ID_JAG_TYP: &str = "oauth-id-jag+jwt";
/// The longest an ID-JAG may live (seconds from `iat` to `exp`).
pub const MAX_ID_JAG_LIFETIME_SECS: i64 = 600;
/// The longest a workload JWT may live (a Kubernetes projected token lives an hour).
pub const MAX_WORKLOAD_LIFETIME_SECS: i64 = 3600;
/// Clock skew allowed on `exp`, `nbf` and `iat`.
const LEEWAY_SECS: i64 = 30;
/// Longer assertions are refused unread.
const MAX_ASSERTION_BYTES: usize = 16 * 1024;

fn refused(d: impl Into<String>) -> ApiError {
    OAuthError::invalid_grant(d).into()
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    iat: Option<i64>,
    exp: Option<i64>,
    jti: Option<String>,
    client_id: Option<String>,
    #[serde(default)]
    resource: Option<serde_json::Value>,
    scope: Option<String>,
}

/// Whether any party is configured for this grant (for metadata).
pub fn offered(app: &AppState) -> bool {
    !app.settings.workload_issuers.is_empty()
        || app.settings.identity_providers.iter().any(|p| p.id_jag)
}

/// `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` for `client`
/// (already authenticated, and allowed this grant).
pub(crate) async fn grant(
    app: &AppState,
    client: &ClientRecord,
    p: &Params,
    jkt: Option<&str>,
) -> ApiResult<TokenResponse> {
    let assertion = p
        .get("assertion")
        .ok_or_else(|| OAuthError::invalid_request("assertion is required"))?;
    if assertion.len() > MAX_ASSERTION_BYTES {
        return Err(refused("the assertion is larger than 16 KiB"));
    }
    let iss =
        Verifier::peek_issuer(assertion).ok_or_else(|| refused("the assertion is not a JWT"))?;
    let s = &app.settings;
    if let Some(idp) = s
        .identity_providers
        .iter()
        .find(|i| i.id_jag && i.issuer == iss)
    {
        return id_jag(app, client, p, idp, assertion, jkt).await;
    }
    if let Some(w) = s.workload_issuers.iter().find(|w| w.issuer == iss) {
        return workload(app, client, p, w, assertion, jkt).await;
    }
    tracing::warn!(client_id = %client.client_id, "JWT-bearer assertion from an untrusted issuer");
    Err(refused("the assertion's issuer is not trusted here"))
}

/// Enterprise-managed authorization: an ID-JAG from `idp`.
async fn id_jag(
    app: &AppState,
    client: &ClientRecord,
    p: &Params,
    idp: &IdentityProvider,
    assertion: &str,
    jkt: Option<&str>,
) -> ApiResult<TokenResponse> {
    let now = app.now();
    let verifier = provider_keys(app, idp, assertion).await?;
    let c = verify(
        &verifier,
        assertion,
        &idp.issuer,
        Some(ID_JAG_TYP),
        app,
        now,
    )?;
    let (sub, _) = lifetime(&c, now, MAX_ID_JAG_LIFETIME_SECS)?;
    if c.client_id.as_deref() != Some(client.client_id.as_str()) {
        tracing::warn!(client_id = %client.client_id, "ID-JAG issued to another client");
        return Err(refused("the ID-JAG was issued to another client"));
    }
    spend_jti(app, &idp.issuer, &c, true).await?;
    let resource = target(app, p, c.resource.as_ref())?;
    let scopes = requested_scopes(app, client, p, c.scope.as_deref())?;
    let user = match app.store.get_linked_identity(&idp.name, &sub).await {
        Ok(link) => app.store.get_user(&link.user_id).await?,
        Err(StoreError::NotFound) => {
            return Err(refused(format!(
                "no account here is linked to this {} account: the user signs in through it \
                 once first",
                idp.display_name
            )));
        }
        Err(e) => return Err(e.into()),
    };
    if user.disabled {
        return Err(refused("the user is no longer allowed to sign in"));
    }
    issue(
        app,
        client,
        Holder::User(&user),
        &resource,
        &scopes,
        "jag",
        jkt,
    )
}

/// Workload identity: a JWT from `w` standing for `client`.
async fn workload(
    app: &AppState,
    client: &ClientRecord,
    p: &Params,
    w: &WorkloadIssuer,
    assertion: &str,
    jkt: Option<&str>,
) -> ApiResult<TokenResponse> {
    let now = app.now();
    let kid = Verifier::peek_kid(assertion).map_err(|_| refused("the assertion is not a JWT"))?;
    let verifier = keys_at(app, &w.jwks_uri, kid.as_deref(), now)
        .await
        .map_err(|e| match e {
            KeysUnavailable::Busy => ApiError::RateLimited {
                retry_after_secs: 5,
            },
            KeysUnavailable::Unusable(why) => {
                tracing::warn!(issuer = %w.issuer, %why, "workload issuer keys unusable");
                ApiError::Unavailable(format!("workload issuer {} keys: {why}", w.issuer))
            }
        })?;
    let c = verify(&verifier, assertion, &w.issuer, None, app, now)?;
    let (sub, _) = lifetime(&c, now, MAX_WORKLOAD_LIFETIME_SECS)?;
    if w.subjects.get(&sub) != Some(&client.client_id) {
        tracing::warn!(client_id = %client.client_id, issuer = %w.issuer, "workload JWT for a subject not mapped to this client");
        return Err(refused("this workload is not this client"));
    }
    spend_jti(app, &w.issuer, &c, false).await?;
    let resource = target(app, p, None)?;
    let scopes = requested_scopes(app, client, p, None)?;
    let holder = Holder::Client(&client.client_id);
    issue(app, client, holder, &resource, &scopes, "wl", jkt)
}

/// The access token for `holder` (a user, or the client itself) with what
/// it is entitled to of `scopes` now, under a grant of its own (named
/// `{kind}_…` for the revocation set), and no refresh token.
fn issue(
    app: &AppState,
    client: &ClientRecord,
    holder: Holder<'_>,
    resource: &str,
    scopes: &ScopeSet,
    kind: &str,
    jkt: Option<&str>,
) -> ApiResult<TokenResponse> {
    let entitled = app.settings.entitled(holder, scopes, resource);
    let (sub, groups, who): (&str, &[String], &str) = match holder {
        Holder::User(u) => (&u.id, &u.groups, "the user"),
        Holder::Client(id) => (id, &[], "this client"),
    };
    if entitled.is_empty() && !scopes.is_empty() {
        return Err(OAuthError::invalid_scope(format!(
            "{who} may not be granted the requested scopes ({scopes})"
        ))
        .into());
    }
    let access = crate::token::mint(
        app,
        sub,
        client,
        resource,
        &entitled,
        None,
        groups,
        &format!("{kind}_{}", app.random(16)),
        jkt,
    )?;
    Ok(crate::token::response(app, access, None, &entitled, jkt))
}

/// The provider's keys; once more, fresh, when the assertion names a key
/// the cached set lacks (the provider rotated).
async fn provider_keys(
    app: &AppState,
    idp: &IdentityProvider,
    assertion: &str,
) -> ApiResult<Arc<Verifier>> {
    let kid = Verifier::peek_kid(assertion).map_err(|_| refused("the assertion is not a JWT"))?;
    let mut refresh = false;
    loop {
        let d = crate::idp::upstream::discover(app, idp, refresh)
            .await
            .map_err(|e| {
                tracing::warn!(provider = %idp.name, error = ?e, "identity provider unavailable for an ID-JAG");
                ApiError::Unavailable(format!("identity provider {}: {e:?}", idp.name))
            })?;
        let Some(v) = d.verifier.clone() else {
            return Err(refused("the provider publishes no keys"));
        };
        if refresh || kid.as_deref().is_none_or(|k| v.contains(k)) {
            return Ok(v);
        }
        refresh = true;
    }
}

fn verify(
    verifier: &Verifier,
    assertion: &str,
    issuer: &str,
    typ: Option<&str>,
    app: &AppState,
    now: i64,
) -> ApiResult<Claims> {
    let opts = VerifyOptions {
        issuer,
        audience: Some(&app.settings.issuer),
        typ,
        now,
        leeway: LEEWAY_SECS,
    };
    verifier
        .verify::<Claims>(assertion, &opts)
        .map(|v| v.claims)
        .map_err(|e| refused(describe(&e)))
}

/// The subject and `exp`, after the lifetime checks: `iat` present and not
/// in the future, at most `max` seconds to `exp`.
fn lifetime(c: &Claims, now: i64, max: i64) -> ApiResult<(String, i64)> {
    let sub = c
        .sub
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| refused("the assertion has no sub"))?;
    let exp = c.exp.ok_or_else(|| refused("the assertion has no exp"))?;
    let iat = c.iat.ok_or_else(|| refused("the assertion has no iat"))?;
    if iat > now + LEEWAY_SECS {
        return Err(refused("the assertion was issued in the future (iat)"));
    }
    if exp - iat > max {
        return Err(refused(format!(
            "the assertion lives longer than {max} seconds"
        )));
    }
    Ok((sub, exp))
}

/// Spends the assertion's `jti` (required when `required`), so it works once.
async fn spend_jti(app: &AppState, issuer: &str, c: &Claims, required: bool) -> ApiResult<()> {
    let Some(jti) = c.jti.as_deref().filter(|j| !j.is_empty() && j.len() <= 256) else {
        return if required {
            Err(refused(
                "the assertion needs a jti of at most 256 characters",
            ))
        } else {
            Ok(())
        };
    };
    let mark = format!("mcpgate/jwt-bearer/v1\n{issuer}\n{jti}");
    let until = c.exp.unwrap_or(0) + LEEWAY_SECS;
    if !app.spend_once(&mark, until).await? {
        tracing::warn!(%issuer, "JWT-bearer assertion replayed");
        return Err(refused("the assertion was already used (jti seen before)"));
    }
    Ok(())
}

/// The resource the token is for: the request's `resource`, the one the
/// grant names, both (then the same), and one of ours.
fn target(app: &AppState, p: &Params, granted: Option<&serde_json::Value>) -> ApiResult<String> {
    let granted = match granted {
        None => None,
        Some(serde_json::Value::String(r)) => Some(r.as_str()),
        Some(_) => return Err(refused("the assertion's resource is not one URI")),
    };
    let wanted = match (p.get("resource"), granted) {
        (Some(asked), Some(g)) if asked != g => {
            return Err(OAuthError::invalid_target(
                "resource differs from the one the assertion grants",
            )
            .into());
        }
        (Some(r), _) | (None, Some(r)) => r,
        (None, None) => {
            return Err(OAuthError::invalid_target("resource is required (RFC 8707)").into());
        }
    };
    resource::find_canonical(wanted, &app.settings.resource_uris())
        .map(str::to_owned)
        .ok_or_else(|| {
            OAuthError::invalid_target("this server does not issue tokens for that resource").into()
        })
}

/// The scopes asked for (the request's `scope`, else the grant's), within
/// what the grant allows, known to this server, never `offline_access`.
fn requested_scopes(
    app: &AppState,
    client: &ClientRecord,
    p: &Params,
    granted: Option<&str>,
) -> ApiResult<ScopeSet> {
    let asked = p.get("scope").or(granted).unwrap_or("");
    let scopes =
        crate::authorize::parse_scopes(app, client, asked).map_err(OAuthError::invalid_scope)?;
    if scopes.contains("offline_access") {
        return Err(OAuthError::invalid_scope(
            "offline_access makes no sense for a JWT-bearer grant: no refresh token is issued",
        )
        .into());
    }
    if let Some(g) = granted {
        let allowed =
            ScopeSet::parse(g).map_err(|_| refused("the assertion's scope is malformed"))?;
        if !scopes.is_subset(&allowed) {
            return Err(OAuthError::invalid_scope(
                "the request asks for scopes the assertion does not grant",
            )
            .into());
        }
    }
    Ok(scopes)
}

fn describe(e: &JwtError) -> String {
    match e {
        JwtError::Malformed => "the assertion is not a well-formed signed JWT".into(),
        JwtError::UnknownKid => "the assertion is signed by no key its issuer publishes".into(),
        JwtError::AlgorithmNotAllowed => "the assertion's alg is not its key's".into(),
        JwtError::BadSignature => "the assertion's signature does not verify".into(),
        JwtError::WrongType => format!("an ID-JAG must have typ {ID_JAG_TYP}"),
        JwtError::WrongAudience => {
            "the assertion is not for this authorization server (aud)".into()
        }
        JwtError::Expired => "the assertion has expired".into(),
        JwtError::NotYetValid => "the assertion is not valid yet (nbf)".into(),
        JwtError::MissingClaim(c) => format!("the assertion lacks the {c} claim"),
        other => format!("the assertion is refused: {other}"),
    }
}
