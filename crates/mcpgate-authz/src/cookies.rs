//! Cookies of the AS pages. Every cookie is `__Host-` prefixed, `Secure`,
//! `HttpOnly`, `SameSite=Lax`, `Path=/` and has no `Domain`.

use axum::http::{HeaderMap, HeaderValue, header};

/// The browser login session at the AS.
pub const SESSION: &str = "__Host-mcpgate-session";
/// Login-form CSRF nonce (double submit), set when the login page is shown.
pub const LOGIN_NONCE: &str = "__Host-mcpgate-login";

/// Binds an upstream sign-in's server-side state record to this browser.
/// Set only on the redirect to the identity provider.
pub const UPSTREAM: &str = "__Host-mcpgate-upstream";

/// Binds a connect flow's server-side state (a user's account at a
/// `user_oauth` upstream) to this browser. Set only on the redirect to the
/// upstream's authorization server.
pub const CONNECT: &str = "__Host-mcpgate-connect";

/// A `Set-Cookie` value. `max_age` 0 deletes the cookie.
pub fn set_cookie(name: &str, value: &str, max_age: i64) -> HeaderValue {
    let v = format!(
        "{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={}",
        max_age.max(0)
    );
    HeaderValue::from_str(&v).expect("cookie names and values are base64url")
}

/// Reads a cookie from the request. Only the first occurrence counts.
pub fn get(headers: &HeaderMap, name: &str) -> Option<String> {
    for h in headers.get_all(header::COOKIE) {
        let Ok(s) = h.to_str() else { continue };
        for pair in s.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=')
                && k == name
                && !v.is_empty()
            {
                return Some(v.to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes() {
        let c = set_cookie(SESSION, "abc", 60);
        let s = c.to_str().unwrap();
        assert!(s.starts_with("__Host-mcpgate-session=abc;"));
        for attr in ["Path=/", "Secure", "HttpOnly", "SameSite=Lax"] {
            assert!(s.contains(attr), "{attr}");
        }
        assert!(!s.contains("Domain"));
    }

    #[test]
    fn read() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-mcpgate-session=xyz; b=2"),
        );
        assert_eq!(get(&h, SESSION).as_deref(), Some("xyz"));
        assert_eq!(get(&h, "nope"), None);
    }
}

/// Fuzzing (issue 15): what `set_cookie` writes is read back; only an exact name matches.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    fn cookie_header(pairs: &[(String, String)], sep: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let line = pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(sep);
        if let Ok(v) = HeaderValue::from_str(&line) {
            h.insert(header::COOKIE, v);
        }
        h
    }

    proptest! {
        #![proptest_config(mcpgate_fuzzkit::config(2048))]

        #[test]
        fn set_cookie_values_read_back(
            value in "[A-Za-z0-9_-]{1,43}",
            others in proptest::collection::vec(("[a-zA-Z_-]{1,8}", "[!#-+\\--:<-\\[\\]-~]{0,10}"), 0..4),
            at in any::<proptest::sample::Index>(),
            sep in prop_oneof![Just(";"), Just("; "), Just(" ;  ")],
            max_age in any::<i64>(),
        ) {
            let set = set_cookie(SESSION, &value, max_age);
            let sent = set.to_str().unwrap().split(';').next().unwrap().to_string();
            let mut pairs: Vec<(String, String)> = others
                .into_iter()
                .filter(|(k, _)| k != SESSION)
                .collect();
            let (k, v) = sent.split_once('=').unwrap();
            pairs.insert(at.index(pairs.len() + 1), (k.to_string(), v.to_string()));
            prop_assert_eq!(get(&cookie_header(&pairs, sep), SESSION), Some(value));
        }

        #[test]
        fn names_match_exactly(
            value in "[A-Za-z0-9_-]{1,20}",
            flips in 1u64..,
            prefix in prop_oneof![Just(""), Just("x"), Just(" "), Just("__Host-")],
        ) {
            let spelled: String = SESSION
                .chars()
                .enumerate()
                .map(|(i, c)| if flips & (1 << (i % 64)) != 0 { c.to_ascii_lowercase() } else { c })
                .collect();
            let name = format!("{prefix}{spelled}");
            let h = cookie_header(&[(name.clone(), value.clone())], "; ");
            let got = get(&h, SESSION);
            if name.trim() == SESSION {
                prop_assert_eq!(got, Some(value));
            } else {
                prop_assert_eq!(got, None, "{}", name);
            }
        }

        #[test]
        fn arbitrary_headers_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..96), name in "\\PC{0,12}") {
            if let Ok(v) = HeaderValue::from_bytes(&raw) {
                let mut h = HeaderMap::new();
                h.insert(header::COOKIE, v);
                if let Some(v) = get(&h, &name) {
                    prop_assert!(!v.is_empty());
                }
            }
        }
    }
}
