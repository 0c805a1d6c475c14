//! `WWW-Authenticate` challenges (RFC 9110 §11.6.1, RFC 6750 §3, RFC 9728 §5.1):
//! formatting for the resource server and tolerant parsing for the client.

use std::collections::BTreeMap;

/// One challenge: a scheme and its auth-params (names lower-cased).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Challenge {
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    pub fn bearer() -> Self {
        Self {
            scheme: "Bearer".into(),
            params: BTreeMap::new(),
        }
    }

    pub fn with(mut self, name: &str, value: impl Into<String>) -> Self {
        self.params.insert(name.to_ascii_lowercase(), value.into());
        self
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// `Bearer error="…", scope="…", resource_metadata="…"`: every value a
    /// quoted-string with `"` and `\` escaped; parameters in a fixed order
    /// (`realm`, `error`, `error_description`, `scope`, `resource_metadata`,
    /// then the rest alphabetically) so challenges are stable.
    pub fn to_header_value(&self) -> String {
        const ORDER: &[&str] = &[
            "realm",
            "error",
            "error_description",
            "scope",
            "resource_metadata",
        ];
        let mut parts = Vec::new();
        for k in ORDER {
            if let Some(v) = self.params.get(*k) {
                parts.push(format!("{k}=\"{}\"", escape(v)));
            }
        }
        for (k, v) in &self.params {
            if !ORDER.contains(&k.as_str()) {
                parts.push(format!("{k}=\"{}\"", escape(v)));
            }
        }
        if parts.is_empty() {
            self.scheme.clone()
        } else {
            format!("{} {}", self.scheme, parts.join(", "))
        }
    }
}

fn escape(v: &str) -> String {
    // Control characters cannot appear in a header; drop them.
    v.chars()
        .filter(|c| !c.is_control())
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            _ => vec![c],
        })
        .collect()
}

/// Parses a `WWW-Authenticate` header value that may hold several
/// challenges. Unparseable remainders are skipped rather than guessed.
pub fn parse(value: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let b = value.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t') {
            *i += 1;
        }
    };
    let is_tchar = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
    while i < b.len() {
        skip_ws(&mut i);
        while i < b.len() && b[i] == b',' {
            i += 1;
            skip_ws(&mut i);
        }
        let start = i;
        while i < b.len() && is_tchar(b[i]) {
            i += 1;
        }
        if start == i {
            break;
        }
        let token = &value[start..i];
        skip_ws(&mut i);
        if i < b.len() && b[i] == b'=' {
            // An auth-param of the current challenge.
            i += 1;
            skip_ws(&mut i);
            let v = if i < b.len() && b[i] == b'"' {
                i += 1;
                let mut s = String::new();
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    let ch = value[i..].chars().next().unwrap_or(' ');
                    s.push(ch);
                    i += ch.len_utf8();
                }
                i += 1;
                s
            } else {
                let vs = i;
                while i < b.len() && b[i] != b',' && b[i] != b' ' {
                    i += 1;
                }
                value[vs..i].to_string()
            };
            if let Some(c) = out.last_mut() {
                c.params.entry(token.to_ascii_lowercase()).or_insert(v);
            }
        } else {
            // A new challenge; a token68 may follow, which we keep as "token68".
            let mut c = Challenge {
                scheme: token.to_string(),
                params: BTreeMap::new(),
            };
            let save = i;
            let t68 = i;
            while i < b.len() && (is_tchar(b[i]) || b"/+=".contains(&b[i])) {
                i += 1;
            }
            let after = {
                let mut j = i;
                skip_ws(&mut j);
                j
            };
            if i > t68 && (after >= b.len() || b[after] == b',') && !value[t68..i].contains('=') {
                c.params.insert("token68".into(), value[t68..i].to_string());
            } else {
                i = save;
            }
            out.push(c);
        }
    }
    out
}

/// The first `Bearer` challenge, if any.
pub fn find_bearer(value: &str) -> Option<Challenge> {
    find_scheme(value, "bearer")
}

/// The first challenge of `scheme` (case-insensitive), if any.
pub fn find_scheme(value: &str, scheme: &str) -> Option<Challenge> {
    parse(value)
        .into_iter()
        .find(|c| c.scheme.eq_ignore_ascii_case(scheme))
}

/// The challenge an OAuth client acts on: the first `Bearer` one, else the
/// first `DPoP` one (RFC 9449 §7.1), which carries the same parameters.
pub fn find_oauth(value: &str) -> Option<Challenge> {
    find_bearer(value).or_else(|| find_scheme(value, "dpop"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_is_stable_and_escaped() {
        let c = Challenge::bearer()
            .with(
                "resource_metadata",
                "https://gw/.well-known/oauth-protected-resource/mcp/a",
            )
            .with("scope", "a b")
            .with("error", "insufficient_scope")
            .with("error_description", "needs \"b\"");
        assert_eq!(
            c.to_header_value(),
            r#"Bearer error="insufficient_scope", error_description="needs \"b\"", scope="a b", resource_metadata="https://gw/.well-known/oauth-protected-resource/mcp/a""#
        );
    }

    #[test]
    fn parse_roundtrip_and_multiple() {
        let c = Challenge::bearer()
            .with("scope", "x y")
            .with("error", "invalid_token");
        let v = format!("Basic realm=\"r\", {}", c.to_header_value());
        let all = parse(&v);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].get("realm"), Some("r"));
        let b = find_bearer(&v).unwrap();
        assert_eq!(b.get("scope"), Some("x y"));
        assert_eq!(b.get("error"), Some("invalid_token"));
    }

    #[test]
    fn parse_tolerates_odd_input() {
        assert!(parse("").is_empty());
        let c = find_bearer("bearer resource_metadata=\"https://x/y\",scope=unquoted").unwrap();
        assert_eq!(c.get("resource_metadata"), Some("https://x/y"));
        assert_eq!(c.get("scope"), Some("unquoted"));
        let c = find_bearer("Bearer").unwrap();
        assert!(c.params.is_empty());
        let _ = parse("Bearer x=\"unterminated");
        let _ = parse(",,,=,\"");
    }
}
