//! The authorization request and response of the MCP client (OAuth 2.1 §4.1 with PKCE S256,
//! RFC 7636; RFC 8707 `resource`; RFC 9207 `iss`; MCP Security Best Practices on authorization
//! URLs).
//!
//! - [`PendingAuthorization::new`] records, next to the PKCE verifier and `state`, the issuer
//!   whose metadata was validated, and builds the authorization URL by appending a
//!   form-urlencoded query to the endpoint *string* (never re-serialised through a URL type,
//!   so `resource` arrives byte-identical to the PRM's `resource`).
//! - [`PendingAuthorization::accept`] checks the callback in this order, before the code is sent
//!   anywhere: `state` (constant-time), then RFC 9207 §2.4 `iss` with plain string comparison,
//!   then an `error` response, then the presence of `code`. On a `state` or `iss` mismatch the
//!   response's `error` fields are neither acted on nor displayed.

use mcpgate_jose::{Rng, random_token};
use mcpgate_types::pkce::s256_challenge;
use mcpgate_types::{ScopeSet, Secret};

use crate::discovery::{Discovery, validate_url};
use crate::error::{ClientError, Result};

/// Everything needed to finish one authorization: kept in memory between the redirect and the
/// callback, never written to disk.
#[derive(Debug, Clone)]
pub struct PendingAuthorization {
    /// The issuer whose metadata was validated (RFC 9207: compared with `iss`).
    pub issuer: String,
    /// Whether the AS metadata says it sends `iss` (`authorization_response_iss_parameter_supported`).
    pub iss_parameter_supported: bool,
    /// The `state` value.
    pub state: Secret,
    /// The PKCE code verifier.
    pub verifier: Secret,
    /// The client id the request was made for.
    pub client_id: String,
    /// The redirect URI, exactly as sent (and as registered).
    pub redirect_uri: String,
    /// The RFC 8707 resource, exactly the PRM's string.
    pub resource: String,
    /// The scopes requested (`None`: no `scope` parameter).
    pub scope: Option<ScopeSet>,
    /// The full authorization URL to open.
    pub url: String,
}

impl PendingAuthorization {
    /// Builds the authorization request for `discovery` (an already validated AS).
    /// `allow_http_loopback` is the development override of the fetch policy.
    pub fn new(
        discovery: &Discovery,
        client_id: &str,
        redirect_uri: &str,
        scope: Option<ScopeSet>,
        rng: &dyn Rng,
        allow_http_loopback: bool,
    ) -> Result<Self> {
        let endpoint = discovery.authorization_endpoint();
        // Validated at discovery; checked again because this is the URL a browser will open.
        validate_url("authorization endpoint", endpoint, allow_http_loopback)?;
        let state = Secret::new(random_token(rng, 32));
        let verifier = Secret::new(random_token(rng, 32));
        let challenge = s256_challenge(verifier.expose());
        let resource = discovery.resource().to_owned();

        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", state.expose())
            .append_pair("resource", &resource);
        if let Some(scope) = &scope {
            query.append_pair("scope", &scope.to_string());
        }
        let separator = if endpoint.contains('?') { '&' } else { '?' };
        let url = format!("{endpoint}{separator}{}", query.finish());

        Ok(Self {
            issuer: discovery.issuer.clone(),
            iss_parameter_supported: discovery
                .as_metadata
                .authorization_response_iss_parameter_supported
                .unwrap_or(false),
            state,
            verifier,
            client_id: client_id.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            resource,
            scope,
            url,
        })
    }

    /// Validates an authorization response and returns the code. Nothing from a response that
    /// fails the `state` or `iss` check is used or shown.
    pub fn accept(&self, response: &CallbackParams) -> Result<Secret> {
        match response.state.as_deref() {
            Some(s) if self.state.ct_eq(s.as_bytes()) => {}
            Some(_) => return Err(ClientError::CallbackRejected("the state does not match")),
            None => return Err(ClientError::CallbackRejected("the state is missing")),
        }
        check_iss(
            &self.issuer,
            self.iss_parameter_supported,
            response.iss.as_deref(),
        )
        .map_err(ClientError::CallbackRejected)?;
        if let Some(error) = &response.error {
            return Err(ClientError::AuthorizationRefused {
                error: sanitize(error),
                description: response.error_description.as_deref().map(sanitize),
            });
        }
        match &response.code {
            Some(code) if !code.is_empty() => Ok(Secret::new(code.clone())),
            _ => Err(ClientError::CallbackRejected("the code is missing")),
        }
    }
}

/// RFC 9207 §2.4 with the MCP table: metadata says `iss` is sent and it is absent → reject;
/// present → must equal the recorded issuer by simple string comparison (no case folding,
/// default-port elision, trailing-slash or percent-encoding normalisation); neither → accept.
pub fn check_iss(
    recorded_issuer: &str,
    iss_parameter_supported: bool,
    iss: Option<&str>,
) -> std::result::Result<(), &'static str> {
    match iss {
        Some(iss) if iss == recorded_issuer => Ok(()),
        Some(_) => Err("the iss parameter does not match the authorization server's issuer"),
        None if iss_parameter_supported => {
            Err("the iss parameter is missing although the authorization server advertises it")
        }
        None => Ok(()),
    }
}

/// The parameters of an authorization response (OAuth 2.1 §4.1.2, RFC 9207).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallbackParams {
    /// `code`.
    pub code: Option<String>,
    /// `state`.
    pub state: Option<String>,
    /// `iss` (RFC 9207).
    pub iss: Option<String>,
    /// `error`.
    pub error: Option<String>,
    /// `error_description`.
    pub error_description: Option<String>,
}

impl CallbackParams {
    /// Parses a form-urlencoded query string. A repeated parameter makes the response
    /// ambiguous: it is kept as the first value here and rejected by [`Self::has_duplicates`].
    pub fn from_query(query: &str) -> Self {
        let mut out = Self::default();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match k.as_ref() {
                "code" => &mut out.code,
                "state" => &mut out.state,
                "iss" => &mut out.iss,
                "error" => &mut out.error,
                "error_description" => &mut out.error_description,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(v.into_owned());
            }
        }
        out
    }

    /// Parses the query of a redirect target (absolute or relative; a fragment is ignored).
    pub fn from_url(url: &str) -> Self {
        let without_fragment = url.split('#').next().unwrap_or_default();
        match without_fragment.split_once('?') {
            Some((_, query)) => Self::from_query(query),
            None => Self::default(),
        }
    }

    /// Whether any of the response parameters appears more than once (OAuth 2.1 §3.1:
    /// parameters MUST NOT be repeated).
    pub fn has_duplicates(query: &str) -> bool {
        let mut seen = Vec::new();
        for (k, _) in url::form_urlencoded::parse(query.as_bytes()) {
            if matches!(k.as_ref(), "code" | "state" | "iss" | "error") {
                if seen.contains(&k) {
                    return true;
                }
                seen.push(k);
            }
        }
        false
    }
}

/// Keeps printable ASCII only and bounds the length: an AS error string is shown to the user.
fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(300)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpgate_jose::SystemRng;
    use mcpgate_types::metadata::{AuthorizationServerMetadata, ProtectedResourceMetadata};

    fn discovery(resource: &str, endpoint: &str, iss_supported: Option<bool>) -> Discovery {
        Discovery {
            server_url: resource.to_owned(),
            prm_url: String::new(),
            prm: ProtectedResourceMetadata {
                resource: resource.to_owned(),
                ..Default::default()
            },
            issuer: "https://as.example.com".into(),
            as_metadata_url: String::new(),
            as_metadata: AuthorizationServerMetadata {
                issuer: "https://as.example.com".into(),
                authorization_endpoint: Some(endpoint.to_owned()),
                token_endpoint: Some("https://as.example.com/token".into()),
                code_challenge_methods_supported: vec!["S256".into()],
                authorization_response_iss_parameter_supported: iss_supported,
                ..Default::default()
            },
        }
    }

    fn query_of(url: &str) -> Vec<(String, String)> {
        let q = url.split_once('?').unwrap().1;
        url::form_urlencoded::parse(q.as_bytes())
            .into_owned()
            .collect()
    }

    #[test]
    fn resource_is_sent_exactly_without_a_trailing_slash() {
        let rng = SystemRng::new();
        for resource in [
            "https://mcp.example.com",
            "https://mcp.example.com/mcp",
            "https://MCP.example.com:443/a%2Fb",
        ] {
            let d = discovery(resource, "https://as.example.com/authorize", None);
            let p =
                PendingAuthorization::new(&d, "cid", "http://127.0.0.1:5/cb", None, &rng, false)
                    .unwrap();
            let q = query_of(&p.url);
            let got = q.iter().find(|(k, _)| k == "resource").unwrap();
            assert_eq!(got.1, resource);
            assert!(
                !q.iter().any(|(k, _)| k == "scope"),
                "scope omitted when None"
            );
            assert!(q.contains(&("code_challenge_method".into(), "S256".into())));
            let challenge = &q.iter().find(|(k, _)| k == "code_challenge").unwrap().1;
            assert_eq!(challenge, &s256_challenge(p.verifier.expose()));
            assert_eq!(p.resource, resource);
        }
    }

    #[test]
    fn endpoint_string_is_kept_and_query_appended() {
        let rng = SystemRng::new();
        let d = discovery(
            "https://m/mcp",
            "https://as.example.com/authorize?tenant=a",
            None,
        );
        let scope = ScopeSet::parse("b a").ok();
        let p =
            PendingAuthorization::new(&d, "c", "http://127.0.0.1/cb", scope, &rng, false).unwrap();
        assert!(
            p.url
                .starts_with("https://as.example.com/authorize?tenant=a&response_type=code&")
        );
        assert!(query_of(&p.url).contains(&("scope".into(), "a b".into())));
        let d = discovery("https://m/mcp", "javascript:alert(1)", None);
        assert!(
            PendingAuthorization::new(&d, "c", "http://127.0.0.1/cb", None, &rng, false).is_err()
        );
    }

    #[test]
    fn iss_table() {
        let is = "https://as.example.com";
        // (advertised, iss in response, accepted)
        let cases: &[(bool, Option<&str>, bool)] = &[
            (true, Some(is), true),
            (true, None, false),
            (true, Some("https://evil.example.com"), false),
            (true, Some("https://as.example.com/"), false),
            (true, Some("https://AS.example.com"), false),
            (true, Some("https://as.example.com:443"), false),
            (true, Some("https://as.example.com%2F"), false),
            (false, None, true),
            (false, Some(is), true),
            (false, Some("https://evil.example.com"), false),
            (false, Some("https://as.example.com/"), false),
        ];
        for (advertised, iss, ok) in cases {
            assert_eq!(
                check_iss(is, *advertised, *iss).is_ok(),
                *ok,
                "{advertised} {iss:?}"
            );
        }
    }

    #[test]
    fn callback_validation_order() {
        let rng = SystemRng::new();
        let d = discovery(
            "https://m/mcp",
            "https://as.example.com/authorize",
            Some(true),
        );
        let p =
            PendingAuthorization::new(&d, "c", "http://127.0.0.1/cb", None, &rng, false).unwrap();
        let state = p.state.expose().to_owned();
        let good = CallbackParams {
            code: Some("abc".into()),
            state: Some(state.clone()),
            iss: Some("https://as.example.com".into()),
            ..Default::default()
        };
        assert_eq!(p.accept(&good).unwrap().expose(), "abc");
        let wrong_state = CallbackParams {
            state: Some("x".into()),
            ..good.clone()
        };
        assert!(matches!(
            p.accept(&wrong_state),
            Err(ClientError::CallbackRejected(_))
        ));
        let no_iss = CallbackParams {
            iss: None,
            ..good.clone()
        };
        assert!(matches!(
            p.accept(&no_iss),
            Err(ClientError::CallbackRejected(_))
        ));
        // A mismatched iss hides the error the response carries.
        let evil_error = CallbackParams {
            iss: Some("https://evil".into()),
            code: None,
            error: Some("access_denied".into()),
            ..good.clone()
        };
        let e = p.accept(&evil_error).unwrap_err().to_string();
        assert!(!e.contains("access_denied"), "{e}");
        let denied = CallbackParams {
            code: None,
            error: Some("access_denied".into()),
            ..good
        };
        assert!(matches!(
            p.accept(&denied),
            Err(ClientError::AuthorizationRefused { .. })
        ));
    }

    #[test]
    fn callback_parsing() {
        let c = CallbackParams::from_url(
            "http://127.0.0.1:9/cb?code=a%2Bb&state=s&iss=https%3A%2F%2Fas#frag",
        );
        assert_eq!(c.code.as_deref(), Some("a+b"));
        assert_eq!(c.iss.as_deref(), Some("https://as"));
        assert!(CallbackParams::has_duplicates("code=a&code=b"));
        assert!(!CallbackParams::has_duplicates("code=a&state=b&x=1&x=2"));
        assert_eq!(
            CallbackParams::from_url("http://x/cb"),
            CallbackParams::default()
        );
    }
}
