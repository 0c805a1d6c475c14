//! Client lookup (pre-registered, dynamic, and Client ID Metadata Documents
//! fetched through the SSRF guard) and client authentication at the token,
//! revocation and introspection endpoints (RFC 6749 §2.3, OAuth 2.1 §2.4).

use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mcpgate_store::{ClientKind, ClientRecord, StoreError};
use mcpgate_types::client_metadata::{
    JWT_BEARER_ASSERTION, TokenEndpointAuthMethod, is_cimd_client_id,
};
use mcpgate_types::secret::{ct_eq, hash_secret};
use mcpgate_types::{OAuthError, OAuthErrorCode};

use crate::error::ApiError;
use crate::params::Params;
use crate::state::AppState;
use crate::{cimd, client_assertion};

/// Why a client could not be resolved.
#[derive(Debug)]
pub enum ClientLookupError {
    Unknown,
    /// The CIMD document could not be fetched or is invalid; the message is
    /// safe to show (it names the rule, not our internals).
    BadMetadata(String),
    /// A metadata-document client not cached yet, and this request may not
    /// fetch (nobody is signed in).
    NotFetched,
    /// The document's host is outside the operator's domain policy.
    Untrusted,
    /// Too many document fetches for this host or in all: try again later.
    Busy,
    /// The store failed (its kind kept: an unreachable store is 503).
    Store(StoreError),
}

/// Whether a lookup may fetch a Client ID Metadata Document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetch {
    /// Fetch when not cached or expired (an authorization request of a
    /// signed-in user).
    Allowed,
    /// Only what is cached, even if the cache expired: the token,
    /// revocation and introspection endpoints, and an authorization request
    /// before sign-in, never make the server fetch.
    CacheOnly,
}

/// How current the client's row must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// Read from the store now.
    Current,
    /// May be up to [`mcpgate_store::CLIENT_CACHE_TTL`] old for changes made
    /// by other processes ([`mcpgate_store::ClientStore::get_client_recent`]):
    /// only where the grant step that follows re-checks the client (a code
    /// exchange, a rotation).
    Recent,
}

/// Finds a client by id. For CIMD ids (https URL with a path) a cached
/// record is used until it expires, then the document is fetched again,
/// where `fetch` allows it.
pub async fn lookup(
    state: &AppState,
    client_id: &str,
    fetch: Fetch,
    read: Read,
) -> Result<ClientRecord, ClientLookupError> {
    if client_id.len() > 2048 {
        return Err(ClientLookupError::Unknown);
    }
    let now = state.now();
    let cimd = &state.settings.cimd;
    let row = match read {
        Read::Current => state.store.get_client(client_id).await,
        Read::Recent => state.store.get_client_recent(client_id).await,
    };
    let cached = match row {
        Ok(c) if c.kind != ClientKind::Cimd => return Ok(c),
        Ok(c) => Some(c),
        Err(StoreError::NotFound) => None,
        Err(e) => return Err(ClientLookupError::Store(e)),
    };
    if !(cimd.enabled && is_cimd_id(state, client_id)) {
        return Err(ClientLookupError::Unknown);
    }
    // The domain policy holds for cached documents too, so a host the
    // operator denies stops working at once.
    let host = url::Url::parse(client_id)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .ok_or(ClientLookupError::Unknown)?;
    if !cimd.host_trusted(&host) {
        tracing::info!(
            client_id,
            "client metadata document host outside the domain policy"
        );
        return Err(ClientLookupError::Untrusted);
    }
    match (cached, fetch) {
        (Some(c), _) if c.expires_at.is_some_and(|e| e > now) => return Ok(c),
        (Some(c), Fetch::CacheOnly) => return Ok(c),
        (None, Fetch::CacheOnly) => return Err(ClientLookupError::NotFetched),
        (_, Fetch::Allowed) => {}
    }
    if !state.limiters.may_fetch_from(&host) {
        tracing::warn!(%host, "client metadata document fetch rate limit hit");
        return Err(ClientLookupError::Busy);
    }
    let rec = fetch_cimd(state, client_id, now).await?;
    state
        .store
        .upsert_client(&rec)
        .await
        .map_err(ClientLookupError::Store)?;
    Ok(rec)
}

fn is_cimd_id(state: &AppState, client_id: &str) -> bool {
    if is_cimd_client_id(client_id) {
        return true;
    }
    // Development override: http on a loopback host, still with a path.
    state.settings.cimd.allow_http_loopback
        && client_id.strip_prefix("http://").is_some_and(|rest| {
            let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            path.len() > 1
                && url::Url::parse(client_id)
                    .map(|u| mcpgate_types::redirect_uri::is_loopback_host(&u))
                    .unwrap_or(false)
                && !host.is_empty()
        })
}

/// Fetches a Client ID Metadata Document (CIMD §4, §6) and validates it
/// with [`cimd::validate`].
async fn fetch_cimd(
    state: &AppState,
    url: &str,
    now: i64,
) -> Result<ClientRecord, ClientLookupError> {
    let resp = state.fetcher.get(url).await.map_err(|e| {
        tracing::info!(client_id = %url, error = %e, "client metadata document fetch refused or failed");
        ClientLookupError::BadMetadata(format!("the client's metadata document could not be fetched ({e})"))
    })?;
    if resp.status != 200 {
        return Err(ClientLookupError::BadMetadata(format!(
            "the client's metadata document answered HTTP {}",
            resp.status
        )));
    }
    let c = &state.settings.cimd;
    let ttl = resp
        .cache_max_age()
        .map(|s| s as i64)
        .unwrap_or(c.min_cache_secs)
        .clamp(c.min_cache_secs, c.max_cache_secs);
    cimd::validate(url, &resp.body, now, ttl, state.fetcher.policy())
        .map_err(|e| ClientLookupError::BadMetadata(e.to_string()))
}

pub fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

/// Client credentials presented on a request.
struct Presented {
    client_id: String,
    secret: Option<String>,
    /// A `private_key_jwt` client assertion.
    assertion: Option<String>,
    method: TokenEndpointAuthMethod,
}

fn presented(headers: &HeaderMap, params: &Params) -> Result<Presented, ApiError> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("basic")
                .then(|| rest.trim().to_string())
        });
    let form_secret = params.get("client_secret");
    let assertion_type = params.get("client_assertion_type");
    let assertion = params.get("client_assertion");
    if assertion_type.is_some() || assertion.is_some() {
        if basic.is_some() || form_secret.is_some() {
            return Err(OAuthError::invalid_request(
                "use one client authentication method, not two",
            )
            .into());
        }
        if assertion_type != Some(JWT_BEARER_ASSERTION) {
            return Err(OAuthError::invalid_request(format!(
                "client_assertion_type must be {JWT_BEARER_ASSERTION}"
            ))
            .into());
        }
        let assertion = assertion.ok_or_else(|| {
            OAuthError::invalid_request("client_assertion is required with client_assertion_type")
        })?;
        let id = client_assertion::claimed_client_id(assertion)?;
        if let Some(form_id) = params.get("client_id")
            && form_id != id
        {
            return Err(OAuthError::invalid_request(
                "client_id differs from the client_assertion's iss",
            )
            .into());
        }
        return Ok(Presented {
            client_id: id,
            secret: None,
            assertion: Some(assertion.to_owned()),
            method: TokenEndpointAuthMethod::PrivateKeyJwt,
        });
    }
    if let Some(b64) = basic {
        if form_secret.is_some() {
            return Err(OAuthError::invalid_request(
                "use one client authentication method, not two",
            )
            .into());
        }
        let decoded = STANDARD
            .decode(b64)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| ApiError::ClientAuthBasic("malformed Basic credentials".into()))?;
        let (id, secret) = decoded
            .split_once(':')
            .ok_or_else(|| ApiError::ClientAuthBasic("malformed Basic credentials".into()))?;
        // RFC 6749 §2.3.1: both parts are form-urlencoded.
        let dec = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let id = dec(id);
        if let Some(form_id) = params.get("client_id")
            && form_id != id
        {
            return Err(OAuthError::invalid_request(
                "client_id differs from the authenticated client",
            )
            .into());
        }
        return Ok(Presented {
            client_id: id,
            secret: Some(dec(secret)),
            assertion: None,
            method: TokenEndpointAuthMethod::ClientSecretBasic,
        });
    }
    let id = params.get("client_id").ok_or_else(|| {
        ApiError::code(
            OAuthErrorCode::InvalidClient,
            "client authentication is required",
        )
    })?;
    Ok(match form_secret {
        Some(s) => Presented {
            client_id: id.to_string(),
            secret: Some(s.to_string()),
            assertion: None,
            method: TokenEndpointAuthMethod::ClientSecretPost,
        },
        None => Presented {
            client_id: id.to_string(),
            secret: None,
            assertion: None,
            method: TokenEndpointAuthMethod::None,
        },
    })
}

/// A public client: nothing proves who holds its `client_id` (no secret and
/// no key to present at the token endpoint, as [`authenticate`] decides: a
/// secret method and a stored secret, or `private_key_jwt` and registered
/// keys, or else public). Self-registered `none` clients and
/// metadata-document clients without keys are public.
pub fn is_public(client: &ClientRecord) -> bool {
    let proven = match TokenEndpointAuthMethod::parse(&client.token_endpoint_auth_method) {
        Some(m) if m.uses_secret() => client.client_secret_hash.is_some(),
        Some(TokenEndpointAuthMethod::PrivateKeyJwt) => {
            client.jwks.is_some() || client.jwks_uri.is_some()
        }
        _ => false,
    };
    !proven
}

/// Authenticates the client of a back-channel request by its registered
/// method only. Public clients identify themselves with `client_id`.
/// `read` says how current its row must be.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    params: &Params,
    read: Read,
) -> Result<ClientRecord, ApiError> {
    if let Some(name) = params.first_repeated(&[
        "client_id",
        "client_secret",
        "client_assertion",
        "client_assertion_type",
    ]) {
        return Err(OAuthError::invalid_request(format!("parameter {name} is repeated")).into());
    }
    let p = presented(headers, params)?;
    let fail = |m: TokenEndpointAuthMethod, d: &str| -> ApiError {
        if m == TokenEndpointAuthMethod::ClientSecretBasic {
            ApiError::ClientAuthBasic(d.to_string())
        } else {
            ApiError::code(OAuthErrorCode::InvalidClient, d)
        }
    };
    let client = match lookup(state, &p.client_id, Fetch::CacheOnly, read).await {
        Ok(c) => c,
        Err(ClientLookupError::Store(e)) => return Err(e.into()),
        Err(_) => return Err(fail(p.method, "client authentication failed")),
    };
    let registered = TokenEndpointAuthMethod::parse(&client.token_endpoint_auth_method)
        .ok_or_else(|| {
            ApiError::Internal(format!(
                "client {} has an unknown auth method",
                client.client_id
            ))
        })?;
    if registered != p.method {
        return Err(fail(p.method, "client authentication failed"));
    }
    if registered == TokenEndpointAuthMethod::PrivateKeyJwt {
        let Some(assertion) = p.assertion.as_deref() else {
            return Err(fail(p.method, "client authentication failed"));
        };
        client_assertion::verify(state, &client, assertion).await?;
    } else if registered.uses_secret() {
        let (Some(secret), Some(stored)) =
            (p.secret.as_deref(), client.client_secret_hash.as_deref())
        else {
            return Err(fail(p.method, "client authentication failed"));
        };
        if !ct_eq(hash_secret(secret).as_bytes(), stored.as_bytes()) {
            return Err(fail(p.method, "client authentication failed"));
        }
    }
    Ok(client)
}
