//! Redirect URI policy for client registration (OAuth 2.1 §2.3.1, RFC 8252,
//! RFC 7591 §2) and exact matching at authorization time (OAuth 2.1 §4.1.3).

use url::Url;

/// Why a redirect URI was refused at registration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectUriError {
    #[error("redirect URI is not an absolute URI")]
    NotAbsolute,
    #[error("redirect URI must not contain a fragment")]
    Fragment,
    #[error("redirect URI must not contain user information")]
    Userinfo,
    #[error("scheme {0:?} is never allowed for a redirect URI")]
    ForbiddenScheme(String),
    #[error("plain http redirect URIs are allowed only for loopback hosts")]
    HttpNotLoopback,
    #[error("a private-use scheme must contain a dot (reverse domain name, RFC 8252 §7.1)")]
    PrivateSchemeWithoutDot,
    #[error("redirect URI is too long")]
    TooLong,
    #[error("redirect URI contains whitespace or control characters")]
    BadCharacters,
}

/// Schemes that can run code, read local files or smuggle content; never valid.
const FORBIDDEN_SCHEMES: &[&str] = &[
    "javascript",
    "data",
    "file",
    "vbscript",
    "about",
    "blob",
    "filesystem",
    "view-source",
    "ftp",
    "ws",
    "wss",
    "chrome",
    "chrome-extension",
    "jar",
    "mailto",
    "tel",
];

/// Maximum length of a redirect URI we accept.
pub const MAX_REDIRECT_URI_LEN: usize = 2000;

/// Checks a redirect URI offered at registration: `https`; `http` only for a
/// loopback host (`localhost`, `127.0.0.0/8`, `[::1]`); a private-use scheme
/// in reverse-domain form for native apps; never `javascript:`, `data:`,
/// `file:` or similar.
pub fn validate_for_registration(uri: &str) -> Result<(), RedirectUriError> {
    if uri.len() > MAX_REDIRECT_URI_LEN {
        return Err(RedirectUriError::TooLong);
    }
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(RedirectUriError::BadCharacters);
    }
    let parsed = Url::parse(uri).map_err(|_| RedirectUriError::NotAbsolute)?;
    if parsed.fragment().is_some() || uri.contains('#') {
        return Err(RedirectUriError::Fragment);
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(RedirectUriError::Userinfo);
    }
    let scheme = parsed.scheme();
    if FORBIDDEN_SCHEMES.contains(&scheme) {
        return Err(RedirectUriError::ForbiddenScheme(scheme.to_string()));
    }
    match scheme {
        "https" => {
            if parsed.host_str().is_none_or(str::is_empty) {
                return Err(RedirectUriError::NotAbsolute);
            }
            Ok(())
        }
        "http" => {
            if is_loopback_host(&parsed) {
                Ok(())
            } else {
                Err(RedirectUriError::HttpNotLoopback)
            }
        }
        other => {
            if other.contains('.') {
                Ok(())
            } else {
                Err(RedirectUriError::PrivateSchemeWithoutDot)
            }
        }
    }
}

/// True when the URL's host is a loopback name or address.
pub fn is_loopback_host(u: &Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// True when the redirect URI points only at the user's own machine (the
/// consent page warns about these: any local app could bind that port).
pub fn is_localhost_only(uri: &str) -> bool {
    Url::parse(uri)
        .map(|u| matches!(u.scheme(), "http" | "https") && is_loopback_host(&u))
        .unwrap_or(false)
}

/// The host shown on the consent page for a redirect URI (or the scheme for
/// private-use schemes).
pub fn display_host(uri: &str) -> String {
    match Url::parse(uri) {
        Ok(u) => match u.host_str() {
            Some(h) if !h.is_empty() => match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            },
            _ => format!("{}:", u.scheme()),
        },
        Err(_) => "(invalid)".to_string(),
    }
}

/// Exact string match against the registered URIs (OAuth 2.1 §4.1.1). No
/// normalisation, no prefix or pattern matching. The one relaxation OAuth 2.1
/// §8.4.2 asks for is the port of a loopback IP literal redirect, which native
/// apps choose at run time; it applies only to `http://127.0.0.1` and
/// `http://[::1]` and compares everything but the port exactly.
pub fn matches_registered(requested: &str, registered: &[String]) -> bool {
    registered.iter().any(|r| {
        r == requested
            || loopback_port_variant(r)
                .is_some_and(|rv| Some(rv) == loopback_port_variant(requested))
    })
}

/// For `http://127.0.0.1[:port]/path?query` or `http://[::1][:port]/…`, the
/// URI with the port removed; `None` for anything else. Built from the raw
/// string so nothing else is normalised.
fn loopback_port_variant(uri: &str) -> Option<String> {
    for prefix in ["http://127.0.0.1", "http://[::1]"] {
        if let Some(rest) = uri.strip_prefix(prefix) {
            let rest = match rest.strip_prefix(':') {
                Some(after) => {
                    let digits = after.bytes().take_while(u8::is_ascii_digit).count();
                    if digits == 0 || digits > 5 {
                        return None;
                    }
                    &after[digits..]
                }
                None => rest,
            };
            if !(rest.is_empty() || rest.starts_with('/') || rest.starts_with('?')) {
                return None;
            }
            return Some(format!("{prefix}{rest}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_policy() {
        assert!(validate_for_registration("https://app.example.com/cb").is_ok());
        assert!(validate_for_registration("http://127.0.0.1:3000/cb").is_ok());
        assert!(validate_for_registration("http://localhost/cb").is_ok());
        assert!(validate_for_registration("http://[::1]:9/cb").is_ok());
        assert!(validate_for_registration("com.example.app:/cb").is_ok());
        for bad in [
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "file:///etc/passwd",
            "vbscript:msgbox",
            "http://evil.example.com/cb",
            "http://127.0.0.1.evil.com/cb",
            "https://app.example.com/cb#frag",
            "https://user:pw@app.example.com/cb",
            "myapp:/cb",
            "/relative",
            "https://app.example.com/c b",
            "",
        ] {
            assert!(
                validate_for_registration(bad).is_err(),
                "{bad} should be refused"
            );
        }
    }

    #[test]
    fn exact_matching() {
        let reg = vec!["https://app.example.com/cb".to_string()];
        assert!(matches_registered("https://app.example.com/cb", &reg));
        for bad in [
            "https://app.example.com/cb/",
            "https://app.example.com/cb?x=1",
            "https://app.example.com/cb#f",
            "https://APP.example.com/cb",
            "https://app.example.com/c",
            "https://app.example.com/cbx",
            "https://app.example.com:443/cb",
            "http://app.example.com/cb",
        ] {
            assert!(!matches_registered(bad, &reg), "{bad} must not match");
        }
    }

    #[test]
    fn loopback_port_may_vary() {
        let reg = vec!["http://127.0.0.1/cb".to_string()];
        assert!(matches_registered("http://127.0.0.1:51234/cb", &reg));
        assert!(!matches_registered("http://127.0.0.1:51234/cb2", &reg));
        assert!(!matches_registered("http://127.0.0.1:51234/cb?x", &reg));
        assert!(!matches_registered("http://127.0.0.1.evil/cb", &reg));
        assert!(!matches_registered("http://127.0.0.1:80@evil/cb", &reg));
        let reg6 = vec!["http://[::1]:8000/".to_string()];
        assert!(matches_registered("http://[::1]:9/", &reg6));
        // localhost names are not relaxed: only IP literals.
        let regl = vec!["http://localhost/cb".to_string()];
        assert!(!matches_registered("http://localhost:1/cb", &regl));
    }

    #[test]
    fn display() {
        assert_eq!(display_host("https://a.example.com/x"), "a.example.com");
        assert_eq!(display_host("http://127.0.0.1:99/x"), "127.0.0.1:99");
        assert_eq!(display_host("com.example.app:/cb"), "com.example.app:");
        assert!(is_localhost_only("http://localhost:3/x"));
        assert!(!is_localhost_only("https://a.example.com/x"));
    }
}
