//! Authorization server: validation of a fetched Client ID Metadata Document
//! (draft-ietf-oauth-client-id-metadata-document §4.1, §6). Pure: the body
//! and the URL it was fetched from go in, a client record or the rule it
//! broke comes out. Fetching (through the SSRF guard), rate limits and the
//! cache lifetime stay in `clients.rs`.

use mcpgate_net::FetchPolicy;
use mcpgate_store::{ClientKind, ClientRecord};
use mcpgate_types::client_metadata::{ClientMetadata, TokenEndpointAuthMethod};
use mcpgate_types::redirect_uri::validate_for_registration;

use crate::client_assertion::registered_keys;
use crate::clients::truncate;

/// Longest client name kept (characters); the rest is cut off.
pub const MAX_NAME_CHARS: usize = 200;

/// Why a fetched document does not make a client. The messages are safe to
/// show on the error page: they name the rule, not our internals.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CimdError {
    /// Not UTF-8 JSON of the client metadata shape (RFC 7591 §2), or a
    /// member given twice.
    #[error("the client's metadata document is not valid JSON client metadata")]
    NotMetadata,
    /// §4.1: `client_id` must be the document's URL, compared as strings.
    #[error("the metadata document's client_id does not equal its URL")]
    ClientIdMismatch,
    #[error("the metadata document has no client_name")]
    NoClientName,
    #[error("the metadata document has no redirect_uris")]
    NoRedirectUris,
    /// A redirect URI the registration policy refuses (dangerous scheme,
    /// plain http off loopback, fragment, ...).
    #[error("the metadata document lists an unacceptable redirect URI: {0}")]
    RedirectUri(String),
    /// §4.1: a document anyone can read cannot carry a shared secret; a
    /// client proves itself with a key (`private_key_jwt`) or not at all.
    #[error(
        "token_endpoint_auth_method {0:?} is not supported for metadata-document clients; use \"none\" or \"private_key_jwt\""
    )]
    AuthMethod(String),
    /// `private_key_jwt` without usable keys (see
    /// [`crate::client_assertion::registered_keys`]).
    #[error("the metadata document's keys are unusable: {0}")]
    Keys(String),
    #[error("metadata-document clients may use only authorization_code and refresh_token")]
    GrantType,
    /// `grant_types` present without `authorization_code` (`[]` included): a client
    /// that could never be authorized, refused as registration refuses it.
    #[error("the metadata document's grant_types must include authorization_code")]
    NoAuthorizationCode,
}

/// Validates the body of the document fetched from `url` and makes the
/// client it describes, created at `now` and trusted for `ttl_secs`.
/// `policy` is the fetcher's, which a `jwks_uri` must satisfy.
pub fn validate(
    url: &str,
    body: &[u8],
    now: i64,
    ttl_secs: i64,
    policy: &FetchPolicy,
) -> Result<ClientRecord, CimdError> {
    let doc: ClientMetadata = serde_json::from_slice(body).map_err(|_| CimdError::NotMetadata)?;
    if doc.client_id.as_deref() != Some(url) {
        return Err(CimdError::ClientIdMismatch);
    }
    let name = doc
        .client_name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or(CimdError::NoClientName)?;
    if doc.redirect_uris.is_empty() {
        return Err(CimdError::NoRedirectUris);
    }
    for r in &doc.redirect_uris {
        validate_for_registration(r).map_err(|e| CimdError::RedirectUri(e.to_string()))?;
    }
    let named = doc.token_endpoint_auth_method.as_deref().unwrap_or("none");
    let method = match TokenEndpointAuthMethod::parse(named) {
        Some(m @ (TokenEndpointAuthMethod::None | TokenEndpointAuthMethod::PrivateKeyJwt)) => m,
        _ => return Err(CimdError::AuthMethod(named.to_string())),
    };
    let grant_types = doc
        .grant_types
        .clone()
        .unwrap_or_else(|| vec!["authorization_code".to_string()]);
    if grant_types
        .iter()
        .any(|g| g != "authorization_code" && g != "refresh_token")
    {
        return Err(CimdError::GrantType);
    }
    if !grant_types.iter().any(|g| g == "authorization_code") {
        return Err(CimdError::NoAuthorizationCode);
    }
    let (jwks, jwks_uri) =
        registered_keys(method, doc.jwks.as_ref(), doc.jwks_uri.as_deref(), policy)
            .map_err(CimdError::Keys)?;
    Ok(ClientRecord {
        client_id: url.to_string(),
        kind: ClientKind::Cimd,
        client_name: Some(truncate(name, MAX_NAME_CHARS)),
        client_secret_hash: None,
        token_endpoint_auth_method: method.as_str().into(),
        redirect_uris: doc.redirect_uris,
        grant_types,
        allowed_scopes: Vec::new(),
        application_type: doc.application_type,
        client_uri: doc.client_uri,
        logo_uri: None,
        created_at: now,
        expires_at: Some(now + ttl_secs),
        jwks,
        jwks_uri,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const URL: &str = "https://app.example.com/client.json";

    fn doc(extra: serde_json::Value) -> Vec<u8> {
        let mut d = json!({
            "client_id": URL,
            "client_name": "Example",
            "redirect_uris": ["https://app.example.com/cb", "http://127.0.0.1:7000/cb"],
        });
        for (k, v) in extra.as_object().unwrap() {
            d[k] = v.clone();
        }
        serde_json::to_vec(&d).unwrap()
    }

    #[test]
    fn a_good_document_makes_a_public_client() {
        let c = validate(
            URL,
            &doc(json!({"client_name": "  Example  "})),
            100,
            60,
            &FetchPolicy::default(),
        )
        .unwrap();
        assert_eq!(c.client_id, URL);
        assert_eq!(c.kind, ClientKind::Cimd);
        assert_eq!(c.client_name.as_deref(), Some("Example"));
        assert_eq!(c.token_endpoint_auth_method, "none");
        assert_eq!(c.grant_types, ["authorization_code"]);
        assert_eq!((c.created_at, c.expires_at), (100, Some(160)));
    }

    #[test]
    fn a_document_with_a_jwks_uri_makes_a_private_key_jwt_client() {
        let uri = "https://app.example.com/jwks.json";
        let body = doc(json!({"token_endpoint_auth_method": "private_key_jwt", "jwks_uri": uri}));
        let c = validate(URL, &body, 0, 60, &FetchPolicy::default()).unwrap();
        assert_eq!(c.token_endpoint_auth_method, "private_key_jwt");
        assert_eq!(
            (c.jwks_uri.as_deref(), c.jwks.as_deref()),
            (Some(uri), None)
        );
        assert!(!crate::clients::is_public(&c));
        // Keys named beside another method are not kept.
        let body = doc(json!({"jwks_uri": uri}));
        let c = validate(URL, &body, 0, 60, &FetchPolicy::default()).unwrap();
        assert_eq!((&c.jwks_uri, &c.jwks), (&None, &None));
        assert!(crate::clients::is_public(&c));
    }

    #[test]
    fn each_rule_has_its_error() {
        let cases = [
            (b"not json".to_vec(), CimdError::NotMetadata),
            (
                doc(json!({"client_id": "https://app.example.com/other.json"})),
                CimdError::ClientIdMismatch,
            ),
            (
                doc(json!({"client_id": "https://APP.example.com/client.json"})),
                CimdError::ClientIdMismatch,
            ),
            (doc(json!({"client_name": " \t"})), CimdError::NoClientName),
            (doc(json!({"redirect_uris": []})), CimdError::NoRedirectUris),
            (
                doc(json!({"token_endpoint_auth_method": "client_secret_basic"})),
                CimdError::AuthMethod("client_secret_basic".into()),
            ),
            (
                doc(json!({"grant_types": ["authorization_code", "client_credentials"]})),
                CimdError::GrantType,
            ),
            (
                doc(json!({"token_endpoint_auth_method": "private_key_jwt"})),
                CimdError::Keys("private_key_jwt needs the client's jwks or jwks_uri".into()),
            ),
            (
                doc(json!({"token_endpoint_auth_method": "private_key_jwt",
                    "jwks_uri": "http://app.example.com/jwks.json"})),
                CimdError::Keys("jwks_uri must be an https URL".into()),
            ),
            (doc(json!({"client_name": 7})), CimdError::NotMetadata),
        ];
        for (body, want) in cases {
            assert_eq!(
                validate(URL, &body, 0, 60, &FetchPolicy::default()).unwrap_err(),
                want,
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
        let bad = doc(json!({"redirect_uris": ["javascript:alert(1)"]}));
        assert!(matches!(
            validate(URL, &bad, 0, 60, &FetchPolicy::default()),
            Err(CimdError::RedirectUri(_))
        ));
    }

    #[test]
    fn a_member_given_twice_is_refused() {
        // serde_json::Value would keep the last one; the document is refused instead.
        let body = format!(
            r#"{{"client_id":"https://evil.example/c.json","client_id":"{URL}","client_name":"x","redirect_uris":["https://a.example/cb"]}}"#
        );
        assert_eq!(
            validate(URL, body.as_bytes(), 0, 60, &FetchPolicy::default()).unwrap_err(),
            CimdError::NotMetadata
        );
    }

    #[test]
    fn deep_nesting_does_not_overflow_the_stack() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        // An unknown member is skipped without recursion: the document stands on its rules.
        let body = format!(
            r#"{{"client_id":"{URL}","client_name":"x","redirect_uris":["https://a.example/cb"],"x":{deep}}}"#
        );
        assert!(validate(URL, body.as_bytes(), 0, 60, &FetchPolicy::default()).is_ok());
        // A known member of the wrong shape is refused.
        let body = format!(r#"{{"client_id":"{URL}","client_name":{deep}}}"#);
        assert_eq!(
            validate(URL, body.as_bytes(), 0, 60, &FetchPolicy::default()).unwrap_err(),
            CimdError::NotMetadata
        );
    }

    /// Found by `documents_are_accepted_exactly_when_every_rule_holds`: `"grant_types": []`
    /// was accepted and cached as a client with no grant at all (registration refuses it).
    #[test]
    fn grant_types_without_authorization_code_are_refused() {
        for g in [json!([]), json!(["refresh_token"])] {
            assert_eq!(
                validate(
                    URL,
                    &doc(json!({ "grant_types": g })),
                    0,
                    60,
                    &FetchPolicy::default()
                )
                .unwrap_err(),
                CimdError::NoAuthorizationCode
            );
        }
        let both = doc(json!({"grant_types": ["refresh_token", "authorization_code"]}));
        assert!(validate(URL, &both, 0, 60, &FetchPolicy::default()).is_ok());
    }
}

#[cfg(test)]
mod fuzz {
    //! Hostile documents: arbitrary bytes, and documents built member by
    //! member from good and bad values of every type, then mangled (a member
    //! repeated, truncated, a byte flipped or a non-UTF-8 byte inserted).
    //! Nothing panics, a document is accepted exactly when every rule holds,
    //! and every accepted document satisfies the invariants below.

    use proptest::prelude::*;
    use serde_json::{Map, Value, json};

    use super::*;

    const URLS: &[&str] = &[
        "https://app.example.com/client.json",
        "https://a.example/c",
        "http://127.0.0.1:8080/cimd.json",
    ];

    /// What every accepted document must satisfy, checked from the raw body
    /// (not from the typed parse `validate` made).
    fn check_accepted(
        url: &str,
        body: &[u8],
        ttl: i64,
        c: &ClientRecord,
    ) -> Result<(), TestCaseError> {
        let text =
            std::str::from_utf8(body).map_err(|_| TestCaseError::fail("accepted non-UTF-8"))?;
        let v: Value = serde_json::from_str(text)
            .map_err(|e| TestCaseError::fail(format!("accepted non-JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| TestCaseError::fail("accepted a non-object"))?;
        prop_assert_eq!(obj.get("client_id").and_then(Value::as_str), Some(url));
        prop_assert_eq!(&c.client_id, url);
        prop_assert_eq!(c.kind, ClientKind::Cimd);
        prop_assert!(matches!(
            c.token_endpoint_auth_method.as_str(),
            "none" | "private_key_jwt"
        ));
        prop_assert_eq!(
            c.token_endpoint_auth_method == "private_key_jwt",
            c.jwks.is_some() != c.jwks_uri.is_some()
        );
        prop_assert!(c.client_secret_hash.is_none());
        prop_assert!(c.allowed_scopes.is_empty());
        let name = c.client_name.as_deref().unwrap_or("");
        prop_assert!(
            !name.is_empty() && name.trim_start() == name && name.chars().count() <= MAX_NAME_CHARS
        );
        let listed: Vec<&str> = obj
            .get("redirect_uris")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        prop_assert!(!c.redirect_uris.is_empty());
        prop_assert_eq!(&c.redirect_uris, &listed);
        for r in &c.redirect_uris {
            prop_assert!(validate_for_registration(r).is_ok(), "{}", r);
            let lower = r.to_ascii_lowercase();
            prop_assert!(
                !r.contains('#')
                    && !lower.starts_with("javascript:")
                    && !lower.starts_with("data:"),
                "{}",
                r
            );
        }
        prop_assert!(c.grant_types.iter().any(|g| g == "authorization_code"));
        prop_assert!(
            c.grant_types
                .iter()
                .all(|g| g == "authorization_code" || g == "refresh_token")
        );
        prop_assert_eq!(c.expires_at, Some(c.created_at + ttl));
        Ok(())
    }

    /// A value for a member: the right type and content, or anything else.
    fn client_id(url: &'static str) -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            4 => Just(Some(json!(url))),
            1 => Just(None),
            1 => Just(Some(json!(format!("{url}/")))),
            1 => Just(Some(json!(format!(" {url}")))),
            1 => Just(Some(json!(url.to_ascii_uppercase()))),
            1 => Just(Some(json!(url.replacen("https", "http", 1)))),
            1 => Just(Some(json!("https://evil.example/client.json"))),
            1 => Just(Some(json!([url]))),
            1 => Just(Some(json!({"url": url}))),
            1 => Just(Some(Value::Null)),
            1 => Just(Some(json!(17))),
        ]
    }

    fn client_name() -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            4 => "\\PC{1,12}".prop_map(|s| Some(json!(s))),
            1 => Just(None),
            1 => "[ \\t\\n\\u{a0}\\u{3000}]{0,4}".prop_map(|s| Some(json!(s))),
            1 => (1usize..3000).prop_map(|n| Some(json!("é".repeat(n)))),
            1 => Just(Some(json!("\u{0}name\u{202e}"))),
            1 => Just(Some(json!(["a"]))),
            1 => Just(Some(Value::Null)),
            1 => Just(Some(json!(false))),
        ]
    }

    fn redirect_uri() -> impl Strategy<Value = Value> {
        prop_oneof![
            4 => proptest::sample::select(vec![
                "https://app.example.com/cb",
                "http://127.0.0.1:7000/cb",
                "http://localhost/cb",
                "http://[::1]:1/cb",
                "com.example.app:/oauth",
                "https://app.example.com/cb?x=1",
            ]).prop_map(|s| json!(s)),
            4 => proptest::sample::select(vec![
                "javascript:alert(1)",
                "JavaScript:alert(1)",
                " javascript:alert(1)",
                "java\tscript:alert(1)",
                "data:text/html,x",
                "file:///etc/passwd",
                "http://evil.example/cb",
                "http://127.0.0.1.evil.example/cb",
                "https://app.example.com/cb#frag",
                "https://user:pw@app.example.com/cb",
                "/relative/cb",
                "https://",
                "",
                "https://app.example.com/\u{0}",
                "myapp:/cb",
            ]).prop_map(|s| json!(s)),
            1 => (2000usize..2100).prop_map(|n| json!(format!("https://app.example.com/{}", "a".repeat(n)))),
            1 => "\\PC{0,20}".prop_map(|s| json!(s)),
            1 => Just(json!(null)),
            1 => Just(json!(3)),
            1 => Just(json!(["https://app.example.com/cb"])),
        ]
    }

    fn redirect_uris() -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            6 => proptest::collection::vec(redirect_uri(), 0..5).prop_map(|v| Some(Value::Array(v))),
            1 => Just(None),
            1 => Just(Some(json!("https://app.example.com/cb"))),
            1 => Just(Some(json!({"0": "https://app.example.com/cb"}))),
            1 => (1000usize..5000).prop_map(|n| Some(Value::Array(vec![json!("https://app.example.com/cb"); n]))),
            1 => (1000usize..5000).prop_map(|n| {
                let mut v = vec![json!("https://app.example.com/cb"); n];
                v.push(json!("javascript:alert(1)"));
                Some(Value::Array(v))
            }),
        ]
    }

    fn auth_method() -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            4 => Just(None),
            2 => Just(Some(json!("none"))),
            1 => proptest::sample::select(vec![
                "client_secret_basic", "client_secret_post", "private_key_jwt", "None", "none ", "",
            ]).prop_map(|s| Some(json!(s))),
            1 => Just(Some(Value::Null)),
            1 => Just(Some(json!(["none"]))),
        ]
    }

    fn grant_types() -> impl Strategy<Value = Option<Value>> {
        let g = proptest::sample::select(vec![
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "implicit",
            "password",
            "Authorization_Code",
            "urn:ietf:params:oauth:grant-type:token-exchange",
            "",
        ]);
        prop_oneof![
            3 => Just(None),
            4 => proptest::collection::vec(g, 0..4).prop_map(|v| Some(json!(v))),
            1 => Just(Some(json!("authorization_code"))),
            1 => Just(Some(json!([1, 2]))),
            1 => Just(Some(Value::Null)),
        ]
    }

    /// Members that `ClientMetadata` knows, with values of the wrong type
    /// sometimes, and members it ignores.
    fn other_members() -> impl Strategy<Value = Vec<(String, Value)>> {
        let key = prop_oneof![
            proptest::sample::select(vec![
                "client_uri",
                "logo_uri",
                "scope",
                "application_type",
                "jwks_uri",
                "response_types",
                "software_id",
                "CLIENT_ID",
                "client_id ",
                "jwks",
                "client_secret",
            ])
            .prop_map(str::to_string),
            "[a-z_]{1,10}",
        ];
        let value = prop_oneof![
            "\\PC{0,10}".prop_map(|s| json!(s)),
            any::<i64>().prop_map(|n| json!(n)),
            Just(json!(null)),
            Just(json!(["code"])),
            Just(json!({"nested": {"deeper": [1, 2, 3]}})),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
        ];
        proptest::collection::vec((key, value), 0..4)
    }

    prop_compose! {
        fn document()(
            url in proptest::sample::select(URLS.to_vec()),
            members in (
                proptest::sample::select(URLS.to_vec()).prop_flat_map(client_id),
                client_name(),
                redirect_uris(),
                auth_method(),
                grant_types(),
                other_members(),
            ),
        ) -> (&'static str, Map<String, Value>) {
            let (id, name, uris, method, grants, others) = members;
            let mut m = Map::new();
            for (k, v) in others {
                m.insert(k, v);
            }
            let known = [
                ("client_id", id),
                ("client_name", name),
                ("redirect_uris", uris),
                ("token_endpoint_auth_method", method),
                ("grant_types", grants),
            ];
            for (k, v) in known {
                match v {
                    Some(v) => { m.insert(k.to_string(), v); }
                    None => { m.remove(k); }
                }
            }
            (url, m)
        }
    }

    /// The verdict the rules give for a well-formed document, read from the
    /// generic JSON value: `Ok(())` or the error `validate` must return.
    fn expected(url: &str, m: &Map<String, Value>) -> Result<(), CimdError> {
        let string_or_absent =
            |k: &str| matches!(m.get(k), None | Some(Value::Null | Value::String(_)));
        let strings = |v: &Value| v.as_array().is_some_and(|a| a.iter().all(Value::is_string));
        let types_ok = [
            "client_id",
            "client_name",
            "token_endpoint_auth_method",
            "client_uri",
            "logo_uri",
            "scope",
            "application_type",
            "jwks_uri",
            "software_id",
            "software_version",
        ]
        .into_iter()
        .all(string_or_absent)
            && m.get("redirect_uris").is_none_or(strings)
            && m.get("grant_types")
                .is_none_or(|v| v.is_null() || strings(v))
            && m.get("response_types")
                .is_none_or(|v| v.is_null() || strings(v));
        if !types_ok {
            return Err(CimdError::NotMetadata);
        }
        let s = |k: &str| m.get(k).and_then(Value::as_str);
        if s("client_id") != Some(url) {
            return Err(CimdError::ClientIdMismatch);
        }
        if s("client_name").is_none_or(|n| n.trim().is_empty()) {
            return Err(CimdError::NoClientName);
        }
        let uris: Vec<&str> = m
            .get("redirect_uris")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if uris.is_empty() {
            return Err(CimdError::NoRedirectUris);
        }
        if let Some(e) = uris.iter().find_map(|u| validate_for_registration(u).err()) {
            return Err(CimdError::RedirectUri(e.to_string()));
        }
        let method = s("token_endpoint_auth_method").unwrap_or("none");
        if method != "none" && method != "private_key_jwt" {
            return Err(CimdError::AuthMethod(method.to_string()));
        }
        let grants: Vec<&str> = match m.get("grant_types").and_then(Value::as_array) {
            Some(a) => a.iter().filter_map(Value::as_str).collect(),
            None => vec!["authorization_code"],
        };
        if grants
            .iter()
            .any(|g| *g != "authorization_code" && *g != "refresh_token")
        {
            return Err(CimdError::GrantType);
        }
        if !grants.contains(&"authorization_code") {
            return Err(CimdError::NoAuthorizationCode);
        }
        if method == "private_key_jwt" {
            // The key rules are `registered_keys`' own (tested there); here
            // only which of them applies.
            let jwks = m.get("jwks").filter(|v| !v.is_null());
            let uri = s("jwks_uri");
            let usable = |v: &Value| mcpgate_jose::Verifier::from_client_jwks(v).is_ok();
            let ok = match (jwks, uri) {
                (Some(j), None) => usable(j),
                (None, Some(u)) => FetchPolicy::default().admits(u) && u.len() <= 2000,
                _ => false,
            };
            if !ok {
                return Err(CimdError::Keys(
                    registered_keys(
                        TokenEndpointAuthMethod::PrivateKeyJwt,
                        jwks,
                        uri,
                        &FetchPolicy::default(),
                    )
                    .err()
                    .unwrap_or_default(),
                ));
            }
        }
        Ok(())
    }

    /// A structural change to a serialised document.
    #[derive(Debug, Clone)]
    enum Mangle {
        /// A member of `ClientMetadata` written a second time, first.
        Repeat(&'static str, Value),
        Truncate(usize),
        Flip(usize, u8),
        /// A byte that is never UTF-8 (or a NUL) inserted.
        Insert(usize, u8),
    }

    fn mangle() -> impl Strategy<Value = Mangle> {
        let known = proptest::sample::select(vec![
            "client_id",
            "client_name",
            "redirect_uris",
            "token_endpoint_auth_method",
            "grant_types",
            "client_uri",
            "application_type",
        ]);
        let value = prop_oneof![
            Just(json!("https://evil.example/client.json")),
            Just(json!(["https://evil.example/cb"])),
            Just(json!(["authorization_code"])),
            Just(json!("none")),
            Just(Value::Null),
        ];
        prop_oneof![
            (known, value).prop_map(|(k, v)| Mangle::Repeat(k, v)),
            any::<usize>().prop_map(Mangle::Truncate),
            (any::<usize>(), 1u8..=255).prop_map(|(i, x)| Mangle::Flip(i, x)),
            (
                any::<usize>(),
                proptest::sample::select(vec![0x00u8, 0x80, 0xc0, 0xff, 0xfe])
            )
                .prop_map(|(i, b)| Mangle::Insert(i, b)),
        ]
    }

    fn apply(body: &[u8], m: &Mangle) -> Vec<u8> {
        let mut b = body.to_vec();
        match m {
            Mangle::Repeat(k, v) => {
                // After the opening brace: `{"k":v,` + the rest.
                let member = format!("{}:{},", json!(k), v);
                let at = b.len().min(1);
                b.splice(at..at, member.into_bytes());
            }
            Mangle::Truncate(n) => b.truncate(n % body.len().max(1)),
            Mangle::Flip(i, x) => {
                let i = i % b.len().max(1);
                if let Some(c) = b.get_mut(i) {
                    *c ^= x;
                }
            }
            Mangle::Insert(i, x) => {
                let i = i % (b.len() + 1);
                b.insert(i, *x);
            }
        }
        b
    }

    proptest! {
        #![proptest_config(mcpgate_fuzzkit::config(1024))]

        #[test]
        fn arbitrary_bytes_are_refused_or_valid(
            url in prop_oneof![proptest::sample::select(URLS.to_vec()).prop_map(str::to_string), "\\PC{0,30}"],
            body in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..256),
                "\\PC{0,200}".prop_map(String::into_bytes),
            ],
        ) {
            if let Ok(c) = validate(&url, &body, 1_000, 60, &FetchPolicy::default()) {
                check_accepted(&url, &body, 60, &c)?;
            }
        }
    }

    proptest! {
        #![proptest_config(mcpgate_fuzzkit::config(512))]

        #[test]
        fn documents_are_accepted_exactly_when_every_rule_holds(
            (url, m) in document(),
            ttl in 0i64..100_000,
        ) {
            let body = serde_json::to_vec(&Value::Object(m.clone())).unwrap();
            let got = validate(url, &body, 1_000, ttl, &FetchPolicy::default());
            prop_assert_eq!(got.as_ref().map(|_| ()).map_err(Clone::clone), expected(url, &m));
            if let Ok(c) = got {
                check_accepted(url, &body, ttl, &c)?;
            }
        }

        #[test]
        fn mangled_documents_are_refused_or_valid(
            (url, m) in document(),
            changes in proptest::collection::vec(mangle(), 1..3),
        ) {
            let mut body = serde_json::to_vec(&Value::Object(m.clone())).unwrap();
            let mut repeated = false;
            for c in &changes {
                body = apply(&body, c);
                repeated |= matches!(c, Mangle::Repeat(k, _) if m.contains_key(*k));
            }
            let got = validate(url, &body, 1_000, 60, &FetchPolicy::default());
            if let Ok(c) = &got {
                check_accepted(url, &body, 60, c)?;
            }
            // A known member written twice never passes, whatever else changed.
            if repeated && changes.len() == 1 {
                prop_assert_eq!(got.map(|_| ()), Err(CimdError::NotMetadata));
            }
        }
    }
}
