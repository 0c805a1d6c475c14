//! DPoP at the token endpoint (RFC 9449 §5): the proof of a token request is
//! checked before the client is authenticated (so a refusal spends no client
//! assertion), its `jti` is spent in the store (a proof works once, on every
//! replica), and its key's thumbprint becomes the `cnf.jkt` of the tokens
//! issued. With `dpop_require_nonce`, a proof must also carry a nonce this
//! server issued (§8).

use axum::http::HeaderMap;
use mcpgate_jose::dpop::{self, DEFAULT_IAT_WINDOW_SECS, ProofCheck};
use mcpgate_types::{OAuthError, OAuthErrorCode};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// How long a nonce the token endpoint hands out stays good (seconds).
pub(crate) const NONCE_MAX_AGE_SECS: i64 = 300;

fn invalid(description: impl Into<String>) -> ApiError {
    OAuthError::new(OAuthErrorCode::InvalidDpopProof, description).into()
}

/// The thumbprint of the key a token request proves, or `None` when the
/// request carries no `DPoP` header (a bearer token is asked for).
pub(crate) async fn token_request_key(
    app: &AppState,
    headers: &HeaderMap,
) -> ApiResult<Option<String>> {
    let mut values = headers.get_all("dpop").iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(invalid("the request carries more than one DPoP header"));
    }
    let proof = value
        .to_str()
        .map_err(|_| invalid("the DPoP header is not ASCII"))?;
    let now = app.now();
    let htu = app.settings.endpoint("/oauth/token");
    let checked = dpop::check(
        proof,
        &ProofCheck {
            htm: "POST",
            htu: &htu,
            access_token: None,
            jkt: None,
            now,
            iat_window: DEFAULT_IAT_WINDOW_SECS,
        },
    )
    .map_err(|e| invalid(e.to_string()))?;
    if app.settings.dpop_require_nonce
        && !checked
            .nonce
            .as_deref()
            .is_some_and(|n| app.dpop_nonces.accepts(n, now, NONCE_MAX_AGE_SECS))
    {
        return Err(ApiError::DpopNonce {
            nonce: app.dpop_nonces.issue(now),
        });
    }
    let mark = format!("mcpgate/dpop-proof/v1\n{}\n{}", checked.jkt, checked.jti);
    let until = checked.iat + DEFAULT_IAT_WINDOW_SECS + 1;
    if !app.spend_once(&mark, until).await? {
        tracing::warn!("DPoP proof replayed at the token endpoint");
        return Err(invalid("the DPoP proof was already used (jti seen before)"));
    }
    Ok(Some(checked.jkt))
}
