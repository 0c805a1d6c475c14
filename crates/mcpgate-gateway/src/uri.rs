//! The canonical form of a resource URI, so that policy keyed by one
//! spelling of a URI also governs every spelling that RFC 3986 §6.2.2 makes
//! equivalent (syntax-based normalisation):
//!
//! - the scheme and the host are case-insensitive: both are lowercased;
//! - percent-encodings use upper-case hex, and those of unreserved
//!   characters (`A-Z a-z 0-9 - . _ ~`) are decoded;
//! - `.` and `..` segments are removed from the path (§5.2.4).
//!
//! The query and the fragment keep their order and contents (after the
//! percent-encoding rule). A string that is not `scheme:rest` is returned
//! as it is.

/// The canonical form of `uri` (see the module docs).
pub fn canonical(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return uri.to_string();
    };
    let valid_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !valid_scheme {
        return uri.to_string();
    }
    let mut out = scheme.to_ascii_lowercase();
    out.push(':');
    // Decoding can complete an escape with what precedes it (`%0%61` becomes `%0a`): repeat
    // until nothing changes, so that the form is stable. A pass that changes anything decodes
    // an escape (the text gets shorter) or upper-cases one the previous pass completed.
    let mut rest = percent_normalised(rest);
    loop {
        let again = percent_normalised(&rest);
        if again == rest {
            break;
        }
        rest = again;
    }
    // Split off the query and fragment; they are not paths.
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let (hier, tail) = rest.split_at(end);
    let path = match hier.strip_prefix("//") {
        Some(after) => {
            let cut = after.find('/').unwrap_or(after.len());
            let (authority, path) = after.split_at(cut);
            out.push_str("//");
            // userinfo@host:port — only the host is case-insensitive, but
            // userinfo in a resource URI is unusual; lowercase after the '@'.
            match authority.rsplit_once('@') {
                Some((user, host)) => {
                    out.push_str(user);
                    out.push('@');
                    out.push_str(&host.to_ascii_lowercase());
                }
                None => out.push_str(&authority.to_ascii_lowercase()),
            }
            path
        }
        None => hier,
    };
    if path.starts_with('/') {
        out.push_str(&remove_dot_segments(path));
    } else {
        out.push_str(path);
    }
    out.push_str(tail);
    // Without an authority, removing dot segments can leave a path that starts with `//`
    // (`x:/..//Host/p` becomes `x://Host/p`), which any reader takes for an authority. Read
    // it that way here too, so that the form is stable and policy keyed by `x://host/p`
    // also governs this spelling. The second pass has an authority: no further recursion.
    if !hier.starts_with("//") && out[scheme.len() + 1..].starts_with("//") {
        return canonical(&out);
    }
    out
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Decodes percent-encoded unreserved characters and upper-cases the hex
/// of the others; a `%` not followed by two hex digits stays as it is.
fn percent_normalised(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && b[i + 1].is_ascii_hexdigit()
            && b[i + 2].is_ascii_hexdigit()
        {
            let hex = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
            let v = hex(b[i + 1]) * 16 + hex(b[i + 2]);
            if is_unreserved(v) {
                out.push(v);
            } else {
                out.push(b'%');
                out.push(b[i + 1].to_ascii_uppercase());
                out.push(b[i + 2].to_ascii_uppercase());
            }
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    // Only ASCII bytes were produced from escapes; the rest is the input's UTF-8.
    String::from_utf8(out).unwrap_or_else(|_| s.to_string())
}

/// RFC 3986 §5.2.4 on an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => trailing_slash = i == last,
            ".." => {
                out.pop();
                trailing_slash = i == last;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut p = String::from("/");
    p.push_str(&out.join("/"));
    if trailing_slash && !p.ends_with('/') {
        p.push('/');
    }
    p
}

#[cfg(test)]
mod tests {
    use super::canonical;

    #[test]
    fn equivalent_spellings_meet() {
        let c = canonical("fixture://internal");
        for v in [
            "FIXTURE://internal",
            "fixture://INTERNAL",
            "fixture://%69nternal",
            "Fixture://Internal",
        ] {
            assert_eq!(canonical(v), c, "{v}");
        }
        let f = canonical("file:///srv/files/payroll.csv");
        for v in [
            "file:///srv/files/./payroll.csv",
            "file:///srv/other/../files/payroll.csv",
            "file:///srv/files/%70ayroll.csv",
            "FILE:///srv/files/payroll%2Ecsv",
            "file:///srv/./files/x/../payroll.csv",
        ] {
            assert_eq!(canonical(v), f, "{v}");
        }
        assert_eq!(canonical("a://h/p%2f"), "a://h/p%2F");
    }

    #[test]
    fn different_resources_stay_different() {
        for (a, b) in [
            ("file:///srv/a", "file:///srv/A"),
            ("file:///srv/a%2Fb", "file:///srv/a/b"),
            ("notes://1?x=1", "notes://1?x=2"),
            ("urn:a:b", "urn:a:c"),
        ] {
            assert_ne!(canonical(a), canonical(b), "{a} / {b}");
        }
        assert_eq!(canonical("not a uri"), "not a uri");
        assert_eq!(canonical("notes://{id}"), "notes://{id}");
        assert_eq!(canonical("file:///a/b/"), "file:///a/b/");
        assert_eq!(canonical("file:///a/b/.."), "file:///a/");
    }
}
