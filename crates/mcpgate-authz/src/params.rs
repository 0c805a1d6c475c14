//! Form and query parameters, parsed by hand from the raw bytes so that
//! repeated parameters are an error (RFC 6749 §3.1: parameters "MUST NOT be
//! included more than once") and malformed input gets our error format.

use std::collections::BTreeMap;

/// Parameters of one request. Keeps the first value of each name and
/// remembers which names were repeated.
#[derive(Debug, Default, Clone)]
pub struct Params {
    values: BTreeMap<String, String>,
    repeated: Vec<String>,
}

impl Params {
    pub fn parse(raw: &[u8]) -> Self {
        let mut p = Params::default();
        for (k, v) in url::form_urlencoded::parse(raw) {
            if p.values.contains_key(k.as_ref()) {
                if !p.repeated.iter().any(|r| r == k.as_ref()) {
                    p.repeated.push(k.into_owned());
                }
                continue;
            }
            p.values.insert(k.into_owned(), v.into_owned());
        }
        p
    }

    /// The value, treating an empty string as absent (RFC 6749 §3.1).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn is_repeated(&self, name: &str) -> bool {
        self.repeated.iter().any(|r| r == name)
    }

    /// The first repeated name among `names`, if any.
    pub fn first_repeated<'a>(&self, names: &[&'a str]) -> Option<&'a str> {
        names.iter().copied().find(|n| self.is_repeated(n))
    }

    pub fn repeated(&self) -> &[String] {
        &self.repeated
    }

    /// Every (name, first value), by name.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Is this request body declared as `application/x-www-form-urlencoded`?
pub fn is_form(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_detected() {
        let p = Params::parse(b"a=1&b=2&a=3&c=");
        assert_eq!(p.get("a"), Some("1"));
        assert!(p.is_repeated("a"));
        assert!(!p.is_repeated("b"));
        assert_eq!(p.get("c"), None);
        assert_eq!(p.first_repeated(&["b", "a"]), Some("a"));
    }

    #[test]
    fn decodes_percent_and_plus() {
        let p = Params::parse(b"scope=a+b&r=https%3A%2F%2Fx%2Fy");
        assert_eq!(p.get("scope"), Some("a b"));
        assert_eq!(p.get("r"), Some("https://x/y"));
    }
}

/// Fuzzing (issue 15): the first value of each name, repeats detected, no panic on any bytes.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(mcpgate_fuzzkit::config(2048))]

        #[test]
        fn form_round_trips(pairs in proptest::collection::vec(
            (prop_oneof![Just("client_id".to_string()), Just("scope".to_string()), "\\PC{0,6}"], "\\PC{0,8}"),
            0..8,
        )) {
            let body = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .finish();
            let p = Params::parse(body.as_bytes());
            for (k, _) in &pairs {
                let first = &pairs.iter().find(|(n, _)| n == k).unwrap().1;
                prop_assert_eq!(p.get(k), Some(first.as_str()).filter(|v| !v.is_empty()));
                let count = pairs.iter().filter(|(n, _)| n == k).count();
                prop_assert_eq!(p.is_repeated(k), count > 1);
            }
            for r in p.repeated() {
                prop_assert!(pairs.iter().filter(|(n, _)| n == r).count() > 1);
            }
        }

        #[test]
        fn arbitrary_bytes_parse(raw in proptest::collection::vec(any::<u8>(), 0..128)) {
            let p = Params::parse(&raw);
            let mut seen = p.repeated().to_vec();
            seen.sort();
            seen.dedup();
            prop_assert_eq!(seen.len(), p.repeated().len());
        }
    }
}
