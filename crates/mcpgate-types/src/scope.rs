//! Scope strings (RFC 6749 §3.3): space-delimited, case-sensitive tokens.

use std::collections::BTreeSet;
use std::fmt;

/// A set of scope tokens, kept sorted so that comparisons and storage are stable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ScopeSet(BTreeSet<String>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scope token {0:?} contains a character RFC 6749 §3.3 does not allow")]
pub struct InvalidScope(pub String);

impl ScopeSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a space-delimited scope string. Empty tokens (double spaces)
    /// are skipped; any character outside NQCHAR (%x21 / %x23-5B / %x5D-7E)
    /// is rejected.
    pub fn parse(s: &str) -> Result<Self, InvalidScope> {
        let mut set = BTreeSet::new();
        for tok in s.split(' ') {
            if tok.is_empty() {
                continue;
            }
            if !is_scope_token(tok) {
                return Err(InvalidScope(tok.to_string()));
            }
            set.insert(tok.to_string());
        }
        Ok(Self(set))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn contains(&self, s: &str) -> bool {
        self.0.contains(s)
    }

    pub fn is_subset(&self, other: &ScopeSet) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn union(&self, other: &ScopeSet) -> ScopeSet {
        Self(self.0.union(&other.0).cloned().collect())
    }

    pub fn difference(&self, other: &ScopeSet) -> ScopeSet {
        Self(self.0.difference(&other.0).cloned().collect())
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn insert(&mut self, s: impl Into<String>) {
        self.0.insert(s.into());
    }

    pub fn to_vec(&self) -> Vec<String> {
        self.0.iter().cloned().collect()
    }
}

impl<S: Into<String>> FromIterator<S> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        Self(iter.into_iter().map(Into::into).collect())
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(s)?;
            first = false;
        }
        Ok(())
    }
}

/// RFC 6749 §3.3 `scope-token = 1*NQCHAR`.
pub fn is_scope_token(tok: &str) -> bool {
    !tok.is_empty()
        && tok
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_format() {
        let s = ScopeSet::parse("b a  c a").unwrap();
        assert_eq!(s.to_string(), "a b c");
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn rejects_bad_chars() {
        assert!(ScopeSet::parse("a\"b").is_err());
        assert!(ScopeSet::parse("a\\b").is_err());
        assert!(ScopeSet::parse("é").is_err());
        assert!(ScopeSet::parse("a\tb").is_err());
    }

    #[test]
    fn set_ops() {
        let a = ScopeSet::parse("x y").unwrap();
        let b = ScopeSet::parse("y z").unwrap();
        assert_eq!(a.union(&b).to_string(), "x y z");
        assert_eq!(a.difference(&b).to_string(), "x");
        assert!(ScopeSet::parse("y").unwrap().is_subset(&a));
    }
}
