//! `[[identity_provider]]` as written in the config file, and its
//! validation into [`IdentityProvider`] settings. The binary's config loader
//! deserialises these (with `deny_unknown_fields`) and hands over its own
//! secret resolver (`${env:NAME}` / `${file:PATH}`) and error constructor, so
//! errors name the field as the rest of the config does.

use std::sync::Arc;

use mcpgate_jose::SigningKey;
use serde::Deserialize;

use crate::settings::{IdentityProvider, ProviderKind, TokenAuth};
use mcpgate_types::Secret;

/// One `[[identity_provider]]` table. Every field is documented in
/// `docs/identity-providers.md`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityProviderFile {
    pub name: String,
    pub display_name: Option<String>,
    /// `oidc` (default) or `oauth2`.
    pub kind: Option<String>,
    pub issuer: String,
    pub client_id: String,
    /// `${env:NAME}` or `${file:PATH}`; required unless
    /// `token_endpoint_auth = "private_key_jwt"`.
    pub client_secret: Option<String>,
    /// `client_secret_basic` (default), `client_secret_post` or
    /// `private_key_jwt`.
    pub token_endpoint_auth: Option<String>,
    /// `private_key_jwt` only: a PKCS#8 PEM (P-256 or Ed25519) given as
    /// `${env:NAME}` or `${file:PATH}`.
    pub private_key: Option<String>,
    /// `private_key_jwt` only: the `kid` header of the client assertion
    /// (default: the key's RFC 7638 JWK thumbprint).
    pub private_key_id: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub subject_claim: Option<String>,
    pub name_claim: Option<String>,
    pub email_claim: Option<String>,
    pub groups_claim: Option<String>,
    #[serde(default)]
    pub allowed_email_domains: Vec<String>,
    #[serde(default)]
    pub allowed_groups: Vec<String>,
    /// Admit every account of the provider (required when neither
    /// allowlist is set).
    #[serde(default)]
    pub allow_any_account: bool,
    /// Take ID-JAGs this provider signs (enterprise-managed authorization;
    /// OIDC only).
    #[serde(default)]
    pub id_jag: bool,
    /// `oauth2` only.
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    pub userinfo_endpoint: Option<String>,
}

/// `https`, or plain `http` to the local machine (the fetcher refuses it
/// later unless its development override is on).
fn https_or_loopback(u: &str) -> bool {
    url::Url::parse(u).is_ok_and(|p| match p.scheme() {
        "https" => p.host().is_some(),
        "http" => mcpgate_net::is_loopback_url(&p),
        _ => false,
    })
}

/// Validates every table. `secret(field, raw)` resolves a secret reference;
/// `invalid(field, message)` builds the caller's error.
pub fn providers<E>(
    files: &[IdentityProviderFile],
    secret: impl Fn(&str, &str) -> Result<Secret, E>,
    invalid: impl Fn(&str, String) -> E,
) -> Result<Vec<IdentityProvider>, E> {
    let mut out: Vec<IdentityProvider> = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let field = |n: &str| format!("identity_provider[{i}].{n}");
        if !IdentityProvider::valid_name(&f.name) {
            return Err(invalid(&field("name"), "use 1-32 of a-z, 0-9 and -".into()));
        }
        if out.iter().any(|p| p.name == f.name) {
            return Err(invalid(
                &field("name"),
                format!("{:?} is used twice", f.name),
            ));
        }
        if !https_or_loopback(&f.issuer) || f.issuer.trim() != f.issuer {
            return Err(invalid(
                &field("issuer"),
                "must be an https:// URL, exactly as the provider publishes it".into(),
            ));
        }
        if f.client_id.is_empty() {
            return Err(invalid(&field("client_id"), "must not be empty".into()));
        }
        let auth = match f.token_endpoint_auth.as_deref() {
            None | Some("client_secret_basic") => TokenAuth::ClientSecretBasic,
            Some("client_secret_post") => TokenAuth::ClientSecretPost,
            Some("private_key_jwt") => TokenAuth::PrivateKeyJwt,
            Some(x) => {
                return Err(invalid(
                    &field("token_endpoint_auth"),
                    format!(
                        "{x:?} is not client_secret_basic, client_secret_post or private_key_jwt"
                    ),
                ));
            }
        };
        let (client_secret, private_key) = if auth == TokenAuth::PrivateKeyJwt {
            if f.client_secret.is_some() {
                return Err(invalid(
                    &field("client_secret"),
                    "not used with token_endpoint_auth = \"private_key_jwt\"; remove it".into(),
                ));
            }
            let Some(raw) = &f.private_key else {
                return Err(invalid(
                    &field("private_key"),
                    "required for token_endpoint_auth = \"private_key_jwt\"".into(),
                ));
            };
            let pem = secret(&field("private_key"), raw)?;
            let key = signing_key(pem.expose(), f.private_key_id.as_deref())
                .map_err(|m| invalid(&field("private_key"), m))?;
            (Secret::new(""), Some(Arc::new(key)))
        } else {
            for (n, v) in [
                ("private_key", &f.private_key),
                ("private_key_id", &f.private_key_id),
            ] {
                if v.is_some() {
                    return Err(invalid(
                        &field(n),
                        "only used with token_endpoint_auth = \"private_key_jwt\"".into(),
                    ));
                }
            }
            let Some(raw) = &f.client_secret else {
                return Err(invalid(
                    &field("client_secret"),
                    "required (or set token_endpoint_auth = \"private_key_jwt\" and private_key)"
                        .into(),
                ));
            };
            (secret(&field("client_secret"), raw)?, None)
        };
        if f.private_key_id.as_deref() == Some("") {
            return Err(invalid(
                &field("private_key_id"),
                "must not be empty".into(),
            ));
        }
        let mut p = IdentityProvider::oidc(
            f.name.clone(),
            f.issuer.clone(),
            f.client_id.clone(),
            client_secret,
        );
        p.token_endpoint_auth = auth;
        p.private_key = private_key;
        let endpoints = [
            ("authorization_endpoint", &f.authorization_endpoint),
            ("token_endpoint", &f.token_endpoint),
            ("userinfo_endpoint", &f.userinfo_endpoint),
        ];
        match f.kind.as_deref().unwrap_or("oidc") {
            "oidc" => {
                if let Some((n, _)) = endpoints.iter().find(|(_, v)| v.is_some()) {
                    return Err(invalid(
                        &field(n),
                        "OIDC providers take their endpoints from discovery".into(),
                    ));
                }
            }
            "oauth2" => {
                let mut got = Vec::new();
                for (n, v) in endpoints {
                    match v {
                        Some(u) if https_or_loopback(u) => got.push(u.clone()),
                        Some(_) => return Err(invalid(&field(n), "must be https://".into())),
                        None => {
                            return Err(invalid(
                                &field(n),
                                "required for kind = \"oauth2\"".into(),
                            ));
                        }
                    }
                }
                p.kind = ProviderKind::OAuth2 {
                    authorization_endpoint: got[0].clone(),
                    token_endpoint: got[1].clone(),
                    userinfo_endpoint: got[2].clone(),
                };
            }
            other => {
                return Err(invalid(
                    &field("kind"),
                    format!("{other:?} is not \"oidc\" or \"oauth2\""),
                ));
            }
        }
        if let Some(d) = &f.display_name {
            p.display_name = d.clone();
        }
        if let Some(s) = &f.scopes {
            p.scopes = s.clone();
        }
        for (target, v) in [
            (&mut p.subject_claim, &f.subject_claim),
            (&mut p.name_claim, &f.name_claim),
            (&mut p.email_claim, &f.email_claim),
            (&mut p.groups_claim, &f.groups_claim),
        ] {
            if let Some(v) = v {
                *target = v.clone();
            }
        }
        let limited = !f.allowed_email_domains.is_empty() || !f.allowed_groups.is_empty();
        if !limited && !f.allow_any_account {
            return Err(invalid(
                &field("allowed_email_domains"),
                "this provider would admit every account it has: set allowed_email_domains \
                 or allowed_groups, or allow_any_account = true to admit them all"
                    .into(),
            ));
        }
        if limited && f.allow_any_account {
            return Err(invalid(
                &field("allow_any_account"),
                "contradicts allowed_email_domains / allowed_groups: remove one".into(),
            ));
        }
        p.allowed_email_domains = f.allowed_email_domains.clone();
        p.allowed_groups = f.allowed_groups.clone();
        p.allow_any_account = f.allow_any_account;
        if f.id_jag && p.kind != ProviderKind::Oidc {
            return Err(invalid(
                &field("id_jag"),
                "ID-JAGs are verified with the provider's published keys: an oidc provider only"
                    .into(),
            ));
        }
        p.id_jag = f.id_jag;
        out.push(p);
    }
    Ok(out)
}

/// A PKCS#8 PEM private key (P-256 or Ed25519) as a signing key whose
/// `kid` is `kid`, or else its RFC 7638 thumbprint
/// ([`SigningKey::from_pkcs8_pem`]).
pub fn signing_key(pem: &str, kid: Option<&str>) -> Result<SigningKey, String> {
    SigningKey::from_pkcs8_pem(pem, kid)
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use mcpgate_jose::KeyAlg;

    use super::*;

    #[test]
    fn provider_urls_are_https_or_loopback_by_host_not_by_prefix() {
        assert!(https_or_loopback("https://idp.example"));
        assert!(https_or_loopback("http://127.0.0.1:9/x"));
        assert!(https_or_loopback("http://localhost/x"));
        for u in [
            "http://localhost.evil.example",
            "http://127.0.0.1.evil.example/",
            "http://idp.example",
            "https://",
            "ftp://idp.example",
        ] {
            assert!(!https_or_loopback(u), "{u}");
        }
    }

    fn parse(v: serde_json::Value) -> Result<Vec<IdentityProvider>, String> {
        let files: Vec<IdentityProviderFile> =
            serde_json::from_value(v).map_err(|e| e.to_string())?;
        providers(
            &files,
            |_, raw| Ok(Secret::new(raw)),
            |field, m| format!("{field}: {m}"),
        )
    }

    #[test]
    fn oidc_defaults_and_oauth2() {
        let ps = parse(serde_json::json!([
            {"name": "corp", "issuer": "https://idp.example", "client_id": "c", "client_secret": "s",
             "allowed_email_domains": ["corp.example"]},
            {"name": "gh", "kind": "oauth2", "issuer": "https://github.com", "client_id": "c",
             "client_secret": "s", "token_endpoint_auth": "client_secret_post", "subject_claim": "id",
             "allowed_groups": ["mcp-users"],
             "authorization_endpoint": "https://github.com/login/oauth/authorize",
             "token_endpoint": "https://github.com/login/oauth/access_token",
             "userinfo_endpoint": "https://api.github.com/user"}
        ]))
        .unwrap();
        assert_eq!(ps[0].scopes, ["openid", "email", "profile"]);
        assert_eq!(ps[0].kind, ProviderKind::Oidc);
        assert_eq!(ps[1].subject_claim, "id");
        assert_eq!(ps[1].token_endpoint_auth, TokenAuth::ClientSecretPost);
        assert!(matches!(ps[1].kind, ProviderKind::OAuth2 { .. }));
    }

    /// A provider admits only the accounts its allowlist names, or every
    /// account when the operator says so explicitly; never by omission.
    #[test]
    fn a_provider_without_an_allowlist_needs_allow_any_account() {
        let one = |extra: serde_json::Value| {
            let mut v = serde_json::json!({"name": "corp", "issuer": "https://idp.example",
                "client_id": "c", "client_secret": "s"});
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            parse(serde_json::json!([v]))
        };
        let e = one(serde_json::json!({})).unwrap_err();
        assert!(
            e.contains("[0].allowed_email_domains") && e.contains("allow_any_account = true"),
            "{e}"
        );
        let open = one(serde_json::json!({"allow_any_account": true})).unwrap();
        assert!(open[0].allow_any_account);
        let e = one(serde_json::json!({"allow_any_account": true, "allowed_groups": ["g"]}))
            .unwrap_err();
        assert!(e.contains("[0].allow_any_account"), "{e}");
        assert!(one(serde_json::json!({"allowed_groups": ["g"]})).is_ok());
    }

    #[test]
    fn refusals_name_the_field() {
        let base = |extra: serde_json::Value| {
            let mut v = serde_json::json!({"name": "corp", "issuer": "https://idp.example",
                "client_id": "c", "client_secret": "s"});
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            parse(serde_json::json!([v])).unwrap_err()
        };
        assert!(base(serde_json::json!({"name": "Corp!"})).contains("[0].name"));
        assert!(base(serde_json::json!({"issuer": "http://idp.example"})).contains("[0].issuer"));
        assert!(base(serde_json::json!({"kind": "saml"})).contains("[0].kind"));
        assert!(
            base(serde_json::json!({"token_endpoint": "https://x"})).contains("token_endpoint")
        );
        assert!(base(serde_json::json!({"kind": "oauth2"})).contains("authorization_endpoint"));
        assert!(base(serde_json::json!({"unknown": 1})).contains("unknown field"));
        assert!(
            base(serde_json::json!({"token_endpoint_auth": "tls_client_auth"}))
                .contains("[0].token_endpoint_auth")
        );
        // private_key / private_key_id only with private_key_jwt.
        assert!(base(serde_json::json!({"private_key": "x"})).contains("[0].private_key:"));
        assert!(base(serde_json::json!({"private_key_id": "k"})).contains("[0].private_key_id"));
    }

    fn pem(der: &[u8]) -> String {
        use base64::engine::general_purpose::STANDARD;
        let b64 = STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        )
    }

    fn pkjwt(extra: serde_json::Value) -> Result<Vec<IdentityProvider>, String> {
        let mut v = serde_json::json!({"name": "corp", "issuer": "https://idp.example",
            "client_id": "c", "token_endpoint_auth": "private_key_jwt",
            "allowed_groups": ["mcp-users"]});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        parse(serde_json::json!([v]))
    }

    #[test]
    fn private_key_jwt_loads_p256_and_ed25519() {
        for alg in [KeyAlg::Es256, KeyAlg::EdDsa] {
            let k = SigningKey::generate("x", alg).unwrap();
            let ps = pkjwt(serde_json::json!({"private_key": pem(k.pkcs8()),
                "private_key_id": "kid-1"}))
            .unwrap();
            assert_eq!(ps[0].token_endpoint_auth, TokenAuth::PrivateKeyJwt);
            let key = ps[0].private_key.as_ref().unwrap();
            assert_eq!(key.alg(), alg);
            assert_eq!(key.kid(), "kid-1");
            assert_eq!(key.public_jwk().x, k.public_jwk().x);
            assert_eq!(ps[0].client_secret.expose(), "");
            // Without private_key_id: the RFC 7638 thumbprint.
            // As the `${file:}` resolver hands it over: final newline trimmed.
            let trimmed = pem(k.pkcs8()).trim_end().to_string();
            let ps = pkjwt(serde_json::json!({"private_key": trimmed})).unwrap();
            assert_eq!(ps[0].private_key.as_ref().unwrap().kid().len(), 43);
        }
    }

    #[test]
    fn rfc8037_thumbprint_example() {
        // RFC 8037 Appendix A.1 (private key) and A.3 (its RFC 7638
        // thumbprint), as a PKCS#8 v1 document.
        let seed = URL_SAFE_NO_PAD
            .decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
            .unwrap();
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(&seed);
        let k = signing_key(&pem(&der), None).unwrap();
        assert_eq!(k.alg(), KeyAlg::EdDsa);
        assert_eq!(
            k.public_jwk().x,
            "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        );
        assert_eq!(k.kid(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }

    #[test]
    fn private_key_jwt_refusals_name_the_field() {
        let k = SigningKey::generate("x", KeyAlg::Es256).unwrap();
        // Both a secret and a key: refused.
        let e = pkjwt(serde_json::json!({"private_key": pem(k.pkcs8()), "client_secret": "s"}))
            .unwrap_err();
        assert!(e.contains("identity_provider[0].client_secret"), "{e}");
        // No key.
        let e = pkjwt(serde_json::json!({})).unwrap_err();
        assert!(e.contains("identity_provider[0].private_key"), "{e}");
        // Malformed PEM, and a PEM whose body is not a key.
        for bad in [
            "not a pem".to_string(),
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_string(),
            pem(&k.pkcs8()[..40]),
            "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n".to_string(),
        ] {
            let e = pkjwt(serde_json::json!({"private_key": bad})).unwrap_err();
            assert!(e.starts_with("identity_provider[0].private_key:"), "{e}");
            assert!(!e.contains("AAAA"), "no key material in the error: {e}");
        }
        // Empty private_key_id.
        let e = pkjwt(serde_json::json!({"private_key": pem(k.pkcs8()), "private_key_id": ""}))
            .unwrap_err();
        assert!(e.contains("[0].private_key_id"), "{e}");
        // client_secret still required for the secret methods.
        let e = parse(
            serde_json::json!([{"name": "corp", "issuer": "https://idp.example",
            "client_id": "c"}]),
        )
        .unwrap_err();
        assert!(e.contains("[0].client_secret"), "{e}");
    }
}
