//! Resource indicators (RFC 8707) and MCP canonical server URIs.

use url::Url;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    #[error("resource must be an absolute http(s) URI")]
    NotAbsolute,
    #[error("resource must not contain a fragment (RFC 8707 §2)")]
    Fragment,
    #[error("resource must not contain user information")]
    Userinfo,
}

/// Checks the shape RFC 8707 §2 requires of a `resource` value: absolute,
/// no fragment. The value itself stays the caller's exact string.
pub fn validate(resource: &str) -> Result<(), ResourceError> {
    if resource.contains('#') {
        return Err(ResourceError::Fragment);
    }
    let u = Url::parse(resource).map_err(|_| ResourceError::NotAbsolute)?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none_or(str::is_empty) {
        return Err(ResourceError::NotAbsolute);
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(ResourceError::Userinfo);
    }
    Ok(())
}

/// Finds the configured canonical resource a request names. The comparison is
/// exact except that scheme and host are case-insensitive (MCP: "SHOULD accept
/// uppercase scheme and host"); the canonical string is what goes into `aud`.
pub fn find_canonical<'a>(requested: &str, canonical: &'a [String]) -> Option<&'a str> {
    if let Some(exact) = canonical.iter().find(|c| c.as_str() == requested) {
        return Some(exact);
    }
    let folded = fold_scheme_and_host(requested)?;
    canonical
        .iter()
        .find(|c| fold_scheme_and_host(c).as_deref() == Some(folded.as_str()))
        .map(String::as_str)
}

/// Lower-cases the `scheme://authority` part of a URI string and leaves the
/// rest byte for byte.
fn fold_scheme_and_host(s: &str) -> Option<String> {
    let scheme_end = s.find("://")?;
    let after = &s[scheme_end + 3..];
    let auth_end = after.find(['/', '?']).unwrap_or(after.len());
    Some(format!(
        "{}://{}{}",
        s[..scheme_end].to_ascii_lowercase(),
        after[..auth_end].to_ascii_lowercase(),
        &after[auth_end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape() {
        assert!(validate("https://mcp.example.com/mcp").is_ok());
        assert!(validate("https://mcp.example.com").is_ok());
        assert!(validate("https://mcp.example.com/mcp#x").is_err());
        assert!(validate("mcp.example.com/mcp").is_err());
        assert!(validate("urn:x:y").is_err());
        assert!(validate("https://u:p@mcp.example.com/").is_err());
    }

    #[test]
    fn canonical_lookup() {
        let c = vec!["https://gw.example.com/mcp/notes".to_string()];
        assert_eq!(
            find_canonical("https://gw.example.com/mcp/notes", &c),
            Some(c[0].as_str())
        );
        assert_eq!(
            find_canonical("HTTPS://GW.example.com/mcp/notes", &c),
            Some(c[0].as_str())
        );
        assert_eq!(find_canonical("https://gw.example.com/mcp/Notes", &c), None);
        assert_eq!(
            find_canonical("https://gw.example.com/mcp/notes/", &c),
            None
        );
        assert_eq!(find_canonical("https://gw.example.com/mcp/note", &c), None);
        assert_eq!(
            find_canonical("https://gw.example.com/mcp/notes?x", &c),
            None
        );
    }
}
