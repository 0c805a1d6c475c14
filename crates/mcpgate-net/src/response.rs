//! The fetched response: status, headers, a size-capped body and the final URL after redirects,
//! with helpers for JSON documents and HTTP caching (RFC 9111 §5.2; CIMD documents are cached
//! per their cache headers, SEP-991).

use bytes::Bytes;
use http::HeaderMap;
use http::header::{AGE, CACHE_CONTROL};
use serde::de::DeserializeOwned;

/// A complete response, read under [`crate::FetchPolicy::max_body_bytes`].
#[derive(Debug, Clone)]
pub struct FetchResponse {
    /// HTTP status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// The URL that produced this response (after any redirects), as the `url` crate
    /// serialises it. Callers that compare URLs as exact strings (CIMD `client_id`) compare
    /// against the string they asked for, not this one.
    pub final_url: String,
}

impl FetchResponse {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Deserialises the body as JSON. The status is not checked.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// How many seconds the response may be cached, from `Cache-Control` (RFC 9111 §5.2.2):
    /// `Some(0)` for `no-store`, `no-cache` or an invalid `max-age`; `Some(n)` for
    /// `max-age=n` minus any `Age` header (the smallest when repeated); `None` when no
    /// directive says. Callers apply their own cap (24 h for CIMD).
    pub fn cache_max_age(&self) -> Option<u64> {
        let mut max_age: Option<u64> = None;
        for value in self.headers.get_all(CACHE_CONTROL) {
            let Ok(value) = value.to_str() else {
                return Some(0);
            };
            for directive in value.split(',') {
                let (name, arg) = match directive.split_once('=') {
                    Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                    None => (directive.trim(), None),
                };
                if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
                    return Some(0);
                }
                if name.eq_ignore_ascii_case("max-age") {
                    let secs = match arg {
                        Some(a) if !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()) => {
                            a.parse::<u64>().unwrap_or(u64::MAX)
                        }
                        _ => 0,
                    };
                    max_age = Some(max_age.map_or(secs, |m| m.min(secs)));
                }
            }
        }
        let age = self
            .headers
            .get(AGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        max_age.map(|m| m.saturating_sub(age))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(headers: &[(&'static str, &'static str)], body: &'static str) -> FetchResponse {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(*k, v.parse().unwrap());
        }
        FetchResponse {
            status: 200,
            headers: map,
            body: Bytes::from_static(body.as_bytes()),
            final_url: "https://a.test/".into(),
        }
    }

    #[test]
    fn cache_control_parsing() {
        let cc = |v: &'static str| resp(&[("cache-control", v)], "").cache_max_age();
        assert_eq!(resp(&[], "").cache_max_age(), None);
        assert_eq!(cc("max-age=300"), Some(300));
        assert_eq!(cc("public, MAX-AGE=60"), Some(60));
        assert_eq!(cc("max-age=\"120\""), Some(120));
        assert_eq!(cc("no-store"), Some(0));
        assert_eq!(cc("max-age=600, no-cache"), Some(0));
        assert_eq!(cc("No-Store, max-age=600"), Some(0));
        assert_eq!(cc("max-age=-1"), Some(0));
        assert_eq!(cc("max-age=abc"), Some(0));
        assert_eq!(cc("max-age="), Some(0));
        assert_eq!(cc("max-age=99999999999999999999999"), Some(u64::MAX));
        assert_eq!(cc("private"), None);
        assert_eq!(cc("s-maxage=100"), None);
        let two = resp(
            &[
                ("cache-control", "max-age=100"),
                ("cache-control", "max-age=50"),
            ],
            "",
        );
        assert_eq!(two.cache_max_age(), Some(50));
        let aged = resp(&[("cache-control", "max-age=100"), ("age", "30")], "");
        assert_eq!(aged.cache_max_age(), Some(70));
        let stale = resp(&[("cache-control", "max-age=10"), ("age", "30")], "");
        assert_eq!(stale.cache_max_age(), Some(0));
    }

    #[test]
    fn json_and_status() {
        let r = resp(&[], r#"{"client_id":"https://a.test/c.json"}"#);
        let v: serde_json::Value = r.json().unwrap();
        assert_eq!(v["client_id"], "https://a.test/c.json");
        assert!(r.is_success());
        assert!(resp(&[], "nope").json::<serde_json::Value>().is_err());
    }
}
