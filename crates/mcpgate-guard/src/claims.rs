//! From validated claims to a [`Principal`] (RFC 9068 §2.2 and §2.2.3; RFC 7662 §2.2): `sub`,
//! `client_id` (or `azp`/`cid`, as some external issuers name it), scopes from `scope`
//! (space-delimited string) or `scp` (array of strings, or a string as some issuers send it),
//! and `groups`. Also the unverified look at `iss` that only picks which issuer's keys to try.

use mcpgate_types::ScopeSet;
use serde::Deserialize;

use crate::principal::Principal;

/// The claims the guard reads from a verified JWT or an introspection answer. Time, issuer and
/// audience were already checked by the verifier (or by introspection).
#[derive(Debug, Deserialize)]
pub(crate) struct AccessClaims {
    pub iss: Option<String>,
    pub sub: Option<String>,
    pub exp: Option<i64>,
    pub client_id: Option<String>,
    pub azp: Option<String>,
    pub cid: Option<String>,
    pub scope: Option<String>,
    pub scp: Option<Scp>,
    pub groups: Option<Vec<String>>,
    /// Read only for revocation checks, so never a reason to refuse a token: a value of
    /// another type than RFC 7519's counts as absent.
    #[serde(default, deserialize_with = "lenient_time")]
    pub iat: Option<i64>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub jti: Option<String>,
    /// mcpgate's issuer names the grant of each token (see `crate::revocation`).
    #[serde(default, deserialize_with = "lenient_string")]
    pub grant: Option<String>,
    /// RFC 7800 confirmation; only `jkt` (DPoP, RFC 9449 §6) is understood.
    pub cnf: Option<serde_json::Value>,
}

fn lenient_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Some(s),
        _ => None,
    })
}

fn lenient_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    #[allow(clippy::cast_possible_truncation)]
    Ok(v.as_i64().or_else(|| v.as_f64().map(|f| f.floor() as i64)))
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Scp {
    List(Vec<String>),
    Text(String),
}

/// Why claims do not make a principal; each message is safe to send.
pub(crate) fn into_principal(
    c: AccessClaims,
    issuer: &str,
    exp: i64,
) -> Result<Principal, &'static str> {
    let subject = c
        .sub
        .filter(|s| !s.is_empty())
        .ok_or("the token has no subject")?;
    let client_id = c
        .client_id
        .or(c.azp)
        .or(c.cid)
        .filter(|s| !s.is_empty())
        .ok_or("the token names no client")?;
    let scopes = match (c.scope, c.scp) {
        (Some(s), _) => ScopeSet::parse(&s).map_err(|_| "the token's scope claim is malformed")?,
        (None, Some(Scp::Text(s))) => {
            ScopeSet::parse(&s).map_err(|_| "the token's scp claim is malformed")?
        }
        (None, Some(Scp::List(list))) => {
            let mut set = ScopeSet::new();
            for s in list {
                if !mcpgate_types::scope::is_scope_token(&s) {
                    return Err("the token's scp claim is malformed");
                }
                set.insert(s);
            }
            set
        }
        (None, None) => ScopeSet::new(),
    };
    // A bound token is usable only by a holder of its key: one bound by a
    // method this resource cannot check is refused, never taken as bearer.
    let dpop_jkt = match c.cnf {
        None => None,
        Some(cnf) => Some(
            cnf.get("jkt")
                .and_then(|j| j.as_str())
                .filter(|j| !j.is_empty() && cnf.as_object().is_some_and(|o| o.len() == 1))
                .ok_or("the token is bound to its holder in a way this resource cannot check")?
                .to_owned(),
        ),
    };
    Ok(Principal {
        issuer: issuer.to_owned(),
        subject,
        client_id,
        scopes,
        groups: c.groups.unwrap_or_default(),
        expires_at: exp,
        dpop_jkt,
    })
}

/// Whether `token` has the compact JWS shape (three dot-separated parts).
pub(crate) fn is_jws(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;

    use super::*;

    fn claims(v: serde_json::Value) -> AccessClaims {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn scope_sources() {
        let p = into_principal(
            claims(json!({"sub": "u", "client_id": "c", "scope": "b a"})),
            "i",
            9,
        )
        .unwrap();
        assert_eq!(p.scopes.to_string(), "a b");
        let p = into_principal(
            claims(json!({"sub": "u", "cid": "c", "scp": ["x", "y"]})),
            "i",
            9,
        )
        .unwrap();
        assert_eq!(
            (p.scopes.to_string().as_str(), p.client_id.as_str()),
            ("x y", "c")
        );
        let p = into_principal(
            claims(json!({"sub": "u", "azp": "c", "scp": "r w"})),
            "i",
            9,
        )
        .unwrap();
        assert_eq!(p.scopes.to_string(), "r w");
        let p = into_principal(
            claims(json!({"sub": "u", "client_id": "c", "groups": ["g"]})),
            "i",
            9,
        )
        .unwrap();
        assert!(p.scopes.is_empty());
        assert_eq!(p.groups, ["g"]);
        assert_eq!(p.expires_at, 9);
    }

    #[test]
    fn refusals() {
        assert!(into_principal(claims(json!({"client_id": "c"})), "i", 9).is_err());
        assert!(into_principal(claims(json!({"sub": "u"})), "i", 9).is_err());
        assert!(
            into_principal(
                claims(json!({"sub": "u", "client_id": "c", "scp": ["a b"]})),
                "i",
                9
            )
            .is_err()
        );
        assert!(
            into_principal(
                claims(json!({"sub": "u", "client_id": "c", "scope": "a\"b"})),
                "i",
                9
            )
            .is_err()
        );
        assert!(serde_json::from_value::<AccessClaims>(json!({"groups": "admins"})).is_err());
        // Claims read only for revocation never refuse a token.
        let c = claims(json!({"jti": 7, "grant": ["g"], "iat": 1.5}));
        assert_eq!((c.jti, c.grant, c.iat), (None, None, Some(1)));
        let c = claims(json!({"jti": "j", "grant": "g", "iat": 9}));
        assert_eq!(
            (c.jti.as_deref(), c.grant.as_deref(), c.iat),
            (Some("j"), Some("g"), Some(9))
        );
    }

    #[test]
    fn peeking() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"iss":"https:\/\/as.example","sub":"u"}"#);
        assert_eq!(
            mcpgate_jose::Verifier::peek_issuer(&format!("e30.{payload}.sig")).as_deref(),
            Some("https://as.example")
        );
        assert_eq!(mcpgate_jose::Verifier::peek_issuer("a.b.c"), None);
        assert_eq!(mcpgate_jose::Verifier::peek_issuer("nodots"), None);
        assert!(is_jws("a.b.c") && !is_jws("a.b") && !is_jws("a.b.c.d.e"));
    }
}
