//! Opaque access tokens through RFC 7662 token introspection (protected resource role; MCP
//! authorization §2(b)). The request is authenticated with `client_secret_basic` (RFC 7662 §2.1,
//! RFC 6749 §2.3.1) and sent only to the one issuer configured for it. An answer is accepted only
//! when `active` is `true`, `token_type` (if given) names an access token (an authorization
//! server may report refresh tokens as active too), `iss` (if given) is the issuer exactly,
//! `aud` contains this resource exactly (RFC 8707: a token that cannot be shown to be meant for
//! this resource is refused), and `exp`/`nbf` hold with the leeway.

use mcpgate_net::SafeFetcher;
use mcpgate_types::Secret;
use serde::Deserialize;

use crate::claims::{AccessClaims, into_principal};
use crate::principal::Principal;

/// What the guard needs to introspect for one issuer.
pub(crate) struct Introspector {
    pub issuer: String,
    pub endpoint: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub cache_secs: i64,
    pub fetcher: SafeFetcher,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    active: serde_json::Value,
    token_type: Option<String>,
    aud: Option<Aud>,
    nbf: Option<i64>,
    #[serde(flatten)]
    claims: AccessClaims,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Aud {
    One(String),
    Many(Vec<String>),
}

impl Aud {
    fn contains(&self, resource: &str) -> bool {
        match self {
            Self::One(a) => a == resource,
            Self::Many(list) => list.iter().any(|a| a == resource),
        }
    }
}

/// A refusal with a description safe to send.
pub(crate) type Refusal = &'static str;

impl Introspector {
    /// Asks the issuer about `token`. Returns the principal and until when it may be cached.
    pub(crate) async fn introspect(
        &self,
        token: &str,
        resource: &str,
        now: i64,
        leeway: i64,
    ) -> Result<(Principal, i64), Refusal> {
        let form = vec![("token", token), ("token_type_hint", "access_token")];
        let auth = mcpgate_net::ClientAuth::basic(&self.client_id, &self.client_secret);
        let response = self
            .fetcher
            .post_authenticated(&self.endpoint, form, &auth, None)
            .await
            .map_err(|e| {
                tracing::warn!(issuer = %self.issuer, error = %e, "introspection request failed");
                UNVALIDATED
            })?;
        if response.status != 200 {
            tracing::warn!(issuer = %self.issuer, status = response.status, "introspection refused");
            return Err(UNVALIDATED);
        }
        let answer: Answer = response.json().map_err(|_| {
            tracing::warn!(issuer = %self.issuer, "introspection answer is not valid JSON");
            UNVALIDATED
        })?;
        check(answer, &self.issuer, resource, now, leeway, self.cache_secs)
    }
}

const UNVALIDATED: Refusal = "the token could not be validated";

fn check(
    answer: Answer,
    issuer: &str,
    resource: &str,
    now: i64,
    leeway: i64,
    cache_secs: i64,
) -> Result<(Principal, i64), Refusal> {
    if answer.active != serde_json::Value::Bool(true) {
        return Err("the token is not active");
    }
    if let Some(t) = &answer.token_type
        && !is_access_token_type(t)
    {
        return Err("the token is not an access token");
    }
    if answer
        .claims
        .iss
        .as_deref()
        .is_some_and(|iss| iss != issuer)
    {
        return Err("the token issuer is not trusted");
    }
    if !answer.aud.as_ref().is_some_and(|a| a.contains(resource)) {
        return Err("the token was not issued for this resource");
    }
    if answer
        .claims
        .exp
        .is_some_and(|exp| now >= exp.saturating_add(leeway))
    {
        return Err("the token has expired");
    }
    if answer
        .nbf
        .is_some_and(|nbf| now.saturating_add(leeway) < nbf)
    {
        return Err("the token is not valid yet");
    }
    let horizon = now.saturating_add(cache_secs);
    let until = answer.claims.exp.map_or(horizon, |exp| exp.min(horizon));
    let exp = answer.claims.exp.unwrap_or(horizon);
    let principal = into_principal(answer.claims, issuer, exp)?;
    Ok((principal, until))
}

/// RFC 7662 §2.2 `token_type` is an RFC 6749 §7.1 type (`Bearer`); some servers say
/// `access_token` or the RFC 8693 URI. Anything else (e.g. `refresh_token`) is refused.
fn is_access_token_type(t: &str) -> bool {
    t.eq_ignore_ascii_case("bearer")
        || t.eq_ignore_ascii_case("dpop")
        || t == "access_token"
        || t == "urn:ietf:params:oauth:token-type:access_token"
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const RES: &str = "https://gw.example/mcp/a";

    fn run(v: serde_json::Value) -> Result<(Principal, i64), Refusal> {
        check(
            serde_json::from_value(v).unwrap(),
            "https://as",
            RES,
            1000,
            60,
            30,
        )
    }

    fn ok() -> serde_json::Value {
        json!({"active": true, "iss": "https://as", "aud": RES, "sub": "u", "client_id": "c",
               "scope": "a b", "exp": 1100, "token_type": "Bearer"})
    }

    #[test]
    fn accepts_and_bounds_the_cache() {
        let (p, until) = run(ok()).unwrap();
        assert_eq!((p.subject.as_str(), p.expires_at, until), ("u", 1100, 1030));
        let mut v = ok();
        v["exp"] = json!(1010);
        assert_eq!(run(v).unwrap().1, 1010);
        let mut v = ok();
        v["aud"] = json!(["x", RES]);
        v.as_object_mut().unwrap().remove("iss");
        v.as_object_mut().unwrap().remove("token_type");
        assert!(run(v).is_ok());
    }

    #[test]
    fn refusals() {
        let with = |k: &str, val: serde_json::Value| {
            let mut v = ok();
            v[k] = val;
            run(v).unwrap_err()
        };
        assert_eq!(
            run(json!({"active": false})).unwrap_err(),
            "the token is not active"
        );
        assert_eq!(with("active", json!("true")), "the token is not active");
        assert_eq!(
            with("token_type", json!("refresh_token")),
            "the token is not an access token"
        );
        assert_eq!(
            with("iss", json!("https://as/")),
            "the token issuer is not trusted"
        );
        assert_eq!(
            with("aud", json!("https://gw.example/mcp/b")),
            "the token was not issued for this resource"
        );
        assert_eq!(with("exp", json!(940)), "the token has expired");
        assert_eq!(with("nbf", json!(1061)), "the token is not valid yet");
        let mut v = ok();
        v.as_object_mut().unwrap().remove("aud");
        assert_eq!(
            run(v).unwrap_err(),
            "the token was not issued for this resource"
        );
    }
}
