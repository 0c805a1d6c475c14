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
