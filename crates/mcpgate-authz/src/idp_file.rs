//! `[[identity_provider]]` as written in the config file, and its
//! validation into [`IdentityProvider`] settings. The binary's config loader
//! deserialises these (with `deny_unknown_fields`) and hands over its own
//! secret resolver (`${env:NAME}` / `${file:PATH}`) and error constructor, so
//! errors name the field as the rest of the config does.

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
    /// `${env:NAME}` or `${file:PATH}`.
    pub client_secret: String,
    /// `client_secret_basic` (default) or `client_secret_post`.
    pub token_endpoint_auth: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub subject_claim: Option<String>,
    pub name_claim: Option<String>,
    pub email_claim: Option<String>,
    pub groups_claim: Option<String>,
    #[serde(default)]
    pub allowed_email_domains: Vec<String>,
    #[serde(default)]
    pub allowed_groups: Vec<String>,
    /// `oauth2` only.
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    pub userinfo_endpoint: Option<String>,
}

fn https_or_loopback(u: &str) -> bool {
    u.starts_with("https://")
        || [
            "http://127.0.0.1:",
            "http://127.0.0.1/",
            "http://[::1]",
            "http://localhost",
        ]
        .iter()
        .any(|p| u.starts_with(p))
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
        let mut p = IdentityProvider::oidc(
            f.name.clone(),
            f.issuer.clone(),
            f.client_id.clone(),
            secret(&field("client_secret"), &f.client_secret)?,
        );
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
        p.token_endpoint_auth = match f.token_endpoint_auth.as_deref() {
            None | Some("client_secret_basic") => TokenAuth::ClientSecretBasic,
            Some("client_secret_post") => TokenAuth::ClientSecretPost,
            Some(x) => {
                return Err(invalid(
                    &field("token_endpoint_auth"),
                    format!("{x:?} is not client_secret_basic or client_secret_post"),
                ));
            }
        };
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
        p.allowed_email_domains = f.allowed_email_domains.clone();
        p.allowed_groups = f.allowed_groups.clone();
        out.push(p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
