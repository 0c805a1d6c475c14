//! Client authentication at an authorization server's back channel (token, revocation and
//! introspection endpoints): the one implementation for every client mcpgate plays — the MCP
//! client, the AS toward upstream identity providers, the gateway's upstream credentials and
//! the guard's introspection.
//!
//! Methods: `none` (`client_id` in the form, RFC 6749 §2.2), `client_secret_basic` (HTTP Basic
//! with both parts form-urlencoded first, §2.3.1), `client_secret_post` (both in the form), and
//! `private_key_jwt` (RFC 7523 §2.2: a fresh assertion signed with the client's key, good for
//! one request; [`ClientAuth::renewed`] signs another for a retry).

use std::sync::Arc;

use mcpgate_jose::{JwtError, Rng, SigningKey};
use mcpgate_types::Secret;
use mcpgate_types::client_metadata::JWT_BEARER_ASSERTION;

use crate::{FetchError, FetchResponse, SafeFetcher};

/// A client's authentication for one back-channel request.
#[derive(Clone)]
pub struct ClientAuth {
    fields: Vec<(&'static str, String)>,
    basic: Option<(String, String)>,
    /// `private_key_jwt`: what signs the next assertion.
    signer: Option<Signer>,
}

#[derive(Clone)]
struct Signer {
    key: Arc<SigningKey>,
    client_id: String,
    audience: String,
    with_client_id: bool,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.fields.iter().map(|(k, _)| *k).collect();
        f.debug_struct("ClientAuth")
            .field("form", &names)
            .field("basic", &self.basic.is_some())
            .finish()
    }
}

impl ClientAuth {
    /// A public client: `client_id` alone.
    pub fn none(client_id: &str) -> Self {
        Self {
            fields: vec![("client_id", client_id.to_owned())],
            basic: None,
            signer: None,
        }
    }

    /// `client_secret_basic`.
    pub fn basic(client_id: &str, secret: &Secret) -> Self {
        Self {
            fields: Vec::new(),
            basic: Some((client_id.to_owned(), secret.expose().to_owned())),
            signer: None,
        }
    }

    /// `client_secret_post`.
    pub fn post(client_id: &str, secret: &Secret) -> Self {
        Self {
            fields: vec![
                ("client_id", client_id.to_owned()),
                ("client_secret", secret.expose().to_owned()),
            ],
            basic: None,
            signer: None,
        }
    }

    /// `private_key_jwt`: an assertion by `client_id` signed with `key` for `audience` (the
    /// authorization server's issuer, as RFC 7523bis asks; an older OpenID provider may want
    /// its token endpoint URL), made at `now`. `with_client_id` also puts `client_id` in the
    /// form, for servers that look the client up by it first.
    pub fn private_key_jwt(
        client_id: &str,
        key: Arc<SigningKey>,
        audience: &str,
        with_client_id: bool,
        now: i64,
        rng: &dyn Rng,
    ) -> Result<Self, JwtError> {
        Signer {
            key,
            client_id: client_id.to_owned(),
            audience: audience.to_owned(),
            with_client_id,
        }
        .sign(now, rng)
    }

    /// The same authentication for another request: a new assertion for `private_key_jwt`
    /// (an assertion's `jti` is good for one request only), the same credentials otherwise.
    pub fn renewed(&self, now: i64, rng: &dyn Rng) -> Result<Self, JwtError> {
        match &self.signer {
            Some(s) => s.sign(now, rng),
            None => Ok(self.clone()),
        }
    }

    /// Adds the form fields to `form` and returns the Basic credentials, if any.
    pub fn apply<'a>(&'a self, form: &mut Vec<(&'a str, &'a str)>) -> Option<(&'a str, &'a str)> {
        form.extend(self.fields.iter().map(|(k, v)| (*k, v.as_str())));
        self.basic.as_ref().map(|(i, s)| (i.as_str(), s.as_str()))
    }
}

impl Signer {
    fn sign(&self, now: i64, rng: &dyn Rng) -> Result<ClientAuth, JwtError> {
        let assertion =
            mcpgate_jose::client_assertion(&self.key, &self.client_id, &self.audience, now, rng)?;
        let mut fields = Vec::with_capacity(3);
        if self.with_client_id {
            fields.push(("client_id", self.client_id.clone()));
        }
        fields.push(("client_assertion_type", JWT_BEARER_ASSERTION.to_owned()));
        fields.push(("client_assertion", assertion));
        Ok(ClientAuth {
            fields,
            basic: None,
            signer: Some(self.clone()),
        })
    }
}

impl SafeFetcher {
    /// POSTs `form` to a back-channel endpoint with the client's authentication (and, for a
    /// token request that asks for a sender-constrained token, a DPoP proof).
    pub async fn post_authenticated(
        &self,
        url: &str,
        mut form: Vec<(&str, &str)>,
        auth: &ClientAuth,
        dpop: Option<&str>,
    ) -> Result<FetchResponse, FetchError> {
        let basic = auth.apply(&mut form);
        self.post_form_with_proof(url, &form, basic, dpop).await
    }
}

#[cfg(test)]
mod tests {
    use mcpgate_jose::{KeyAlg, PublicJwks, SystemRng, Verifier, VerifyOptions};

    use super::*;

    type Pairs = Vec<(String, String)>;

    fn applied(auth: &ClientAuth) -> (Pairs, Option<(String, String)>) {
        let mut form = Vec::new();
        let basic = auth
            .apply(&mut form)
            .map(|(a, b)| (a.to_owned(), b.to_owned()));
        let form = form
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        (form, basic)
    }

    #[test]
    fn each_method_authenticates_its_own_way() {
        let s = Secret::new("s3cret");
        assert_eq!(
            applied(&ClientAuth::none("c1")),
            (vec![("client_id".into(), "c1".into())], None)
        );
        assert_eq!(
            applied(&ClientAuth::basic("c1", &s)),
            (vec![], Some(("c1".into(), "s3cret".into())))
        );
        assert_eq!(
            applied(&ClientAuth::post("c1", &s)).0,
            vec![
                ("client_id".into(), "c1".into()),
                ("client_secret".into(), "s3cret".into())
            ]
        );
        assert!(!format!("{:?}", ClientAuth::basic("c1", &s)).contains("s3cret"));
    }

    #[test]
    fn a_key_signs_a_fresh_assertion_for_each_request() {
        let key = Arc::new(SigningKey::generate("k1", KeyAlg::Es256).unwrap());
        let rng = SystemRng::new();
        let auth =
            ClientAuth::private_key_jwt("c1", key.clone(), "https://as.example", true, 1_000, &rng)
                .unwrap();
        let (form, basic) = applied(&auth);
        assert!(basic.is_none());
        assert_eq!(form[0], ("client_id".into(), "c1".into()));
        assert_eq!(
            form[1],
            ("client_assertion_type".into(), JWT_BEARER_ASSERTION.into())
        );
        let v = Verifier::from_public_jwks(&PublicJwks {
            keys: vec![key.public_jwk().clone()],
        })
        .unwrap();
        let opts = VerifyOptions {
            issuer: "c1",
            audience: Some("https://as.example"),
            typ: None,
            now: 1_000,
            leeway: 0,
        };
        let first = v.verify::<serde_json::Value>(&form[2].1, &opts).unwrap();
        let again = applied(&auth.renewed(1_001, &rng).unwrap()).0;
        let second = v.verify::<serde_json::Value>(&again[2].1, &opts).unwrap();
        assert_ne!(first.claims["jti"], second.claims["jti"]);
        let quiet =
            ClientAuth::private_key_jwt("c1", key, "https://as.example", false, 1_000, &rng)
                .unwrap();
        assert_eq!(applied(&quiet).0[0].0, "client_assertion_type");
    }
}
