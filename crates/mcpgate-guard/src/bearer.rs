//! Finding the bearer token in a request (RFC 6750 §2; OAuth 2.1 §5.1, MCP authorization §2(b)):
//! only the `Authorization` request header field is accepted. A token in the query string is
//! refused with `invalid_request` even when a header is present too (RFC 6750 §3.1 "more than
//! one method"), two `Authorization` fields are refused, and another scheme counts as no token
//! (RFC 6750 §3.1: no error code for an unsupported method).

use http::HeaderMap;
use http::header::AUTHORIZATION;

use crate::principal::Challenge;

/// Tokens longer than this are refused before any decoding.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// How a request presents its access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `Authorization: Bearer` (RFC 6750).
    Bearer,
    /// `Authorization: DPoP`, with a proof in the `DPoP` header (RFC 9449 §7.1).
    Dpop,
}

/// The bearer token of a request, borrowed from its headers. A DPoP credential counts as none.
pub fn extract<'h>(headers: &'h HeaderMap, query: Option<&str>) -> Result<&'h str, Challenge> {
    match credential(headers, query)? {
        (Scheme::Bearer, token) => Ok(token),
        (Scheme::Dpop, _) => Err(Challenge::Missing),
    }
}

/// The access token of a request and the scheme it came with (Bearer or DPoP; any other
/// scheme counts as no token), borrowed from its headers.
pub fn credential<'h>(
    headers: &'h HeaderMap,
    query: Option<&str>,
) -> Result<(Scheme, &'h str), Challenge> {
    if query.is_some_and(query_has_access_token) {
        return Err(Challenge::InvalidRequest(
            "access tokens must not be sent in the query string".into(),
        ));
    }
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(Challenge::Missing);
    };
    if values.next().is_some() {
        return Err(Challenge::InvalidRequest(
            "the request carries more than one Authorization header".into(),
        ));
    }
    // Bytes, not `to_str`: the token68 check below admits only ASCII, so one pass suffices.
    let value = value.as_bytes();
    let (scheme, rest) = match value.iter().position(|b| *b == b' ') {
        Some(i) => (&value[..i], &value[i + 1..]),
        None => (value, &[][..]),
    };
    let scheme = if scheme.eq_ignore_ascii_case(b"bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case(b"dpop") {
        Scheme::Dpop
    } else {
        return Err(Challenge::Missing);
    };
    let start = rest.iter().position(|b| *b != b' ').unwrap_or(rest.len());
    let token = &rest[start..];
    if !is_token68_bytes(token) {
        return Err(malformed());
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(Challenge::InvalidToken(
            "the access token is too large".into(),
        ));
    }
    let token = std::str::from_utf8(token).map_err(|_| malformed())?;
    Ok((scheme, token))
}

fn malformed() -> Challenge {
    Challenge::InvalidRequest(
        "the Authorization header is not a valid Bearer or DPoP credential".into(),
    )
}

/// RFC 6750 §2.1 `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
pub fn is_token68(s: &str) -> bool {
    is_token68_bytes(s.as_bytes())
}

const TOKEN68: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] =
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        b += 1;
    }
    table
};

fn is_token68_bytes(s: &[u8]) -> bool {
    let body_len = s.len() - s.iter().rev().take_while(|b| **b == b'=').count();
    body_len > 0 && s[..body_len].iter().all(|b| TOKEN68[usize::from(*b)])
}

/// Whether the raw query string has an `access_token` parameter (RFC 6750 §2.3), names
/// percent-decoded. Queries that cannot contain one are not parsed.
fn query_has_access_token(query: &str) -> bool {
    let may_contain = query.len() >= "access_token".len()
        && (query.contains('%') || query.contains('+') || contains_ignore_case(query, "access"));
    may_contain
        && url::form_urlencoded::parse(query.as_bytes())
            .any(|(name, _)| name.trim().eq_ignore_ascii_case("access_token"))
}

fn contains_ignore_case(hay: &str, needle: &str) -> bool {
    hay.as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, v.parse().unwrap());
        }
        h
    }

    fn invalid_request(r: Result<&str, Challenge>) -> bool {
        matches!(r, Err(Challenge::InvalidRequest(_)))
    }

    #[test]
    fn accepts_bearer_in_any_case() {
        for v in [
            "Bearer abc.def.ghi",
            "bearer abc.def.ghi",
            "BEARER  abc.def.ghi",
        ] {
            let h = headers(&[v]);
            assert_eq!(extract(&h, None), Ok("abc.def.ghi"), "{v}");
        }
        let h = headers(&["Bearer a-b_c~d+e/f=="]);
        assert_eq!(extract(&h, Some("x=1")), Ok("a-b_c~d+e/f=="));
    }

    #[test]
    fn dpop_credentials_are_told_apart() {
        let h = headers(&["DPoP abc.def.ghi"]);
        assert_eq!(credential(&h, None), Ok((Scheme::Dpop, "abc.def.ghi")));
        assert_eq!(extract(&h, None), Err(Challenge::Missing));
        assert!(invalid_request(
            credential(&headers(&["dpop a b"]), None).map(|(_, t)| t)
        ));
    }

    #[test]
    fn missing_and_other_schemes() {
        assert_eq!(extract(&HeaderMap::new(), None), Err(Challenge::Missing));
        assert_eq!(
            extract(&headers(&["Basic dXNlcjpwYXNz"]), None),
            Err(Challenge::Missing)
        );
        assert_eq!(
            extract(&headers(&["Bearertoken"]), None),
            Err(Challenge::Missing)
        );
    }

    #[test]
    fn malformed_credentials() {
        for v in [
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer a,b",
            "Bearer =abc",
            "Bearer a\"b",
        ] {
            assert!(invalid_request(extract(&headers(&[v]), None)), "{v}");
        }
        assert!(invalid_request(extract(
            &headers(&["Bearer a", "Bearer a"]),
            None
        )));
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 1));
        assert!(matches!(
            extract(&headers(&[&long]), None),
            Err(Challenge::InvalidToken(_))
        ));
    }

    #[test]
    fn query_tokens_are_refused_even_with_a_header() {
        let h = headers(&["Bearer abc"]);
        for q in [
            "access_token=abc",
            "a=1&access_token=abc",
            "ACCESS_TOKEN=x",
            "access%5Ftoken=abc",
            "%61ccess_token=x",
            "access_token",
        ] {
            assert!(invalid_request(extract(&h, Some(q))), "{q}");
            assert!(invalid_request(extract(&HeaderMap::new(), Some(q))), "{q}");
        }
        for q in [
            "",
            "a=1",
            "my_access_token=1",
            "x=access_token",
            "token=abc",
        ] {
            assert_eq!(extract(&h, Some(q)), Ok("abc"), "{q}");
        }
    }
}
