//! Scope selection for the MCP client (MCP authorization, "Scope Selection Strategy" and "Scope
//! Challenge Handling"; SEP-2207 for `offline_access`; SEP-2350 for the step-up union).
//!
//! - First authorization: the challenge's `scope`; else every PRM `scopes_supported`; else no
//!   `scope` parameter at all. Nothing is assumed about how challenged scopes relate to
//!   `scopes_supported`.
//! - Step-up after 403 `insufficient_scope`: the union of the scopes held (or last requested)
//!   and the challenged ones.
//! - `offline_access` is added only when the AS metadata lists it in `scopes_supported`.

use mcpgate_types::ScopeSet;
use mcpgate_types::scope::is_scope_token;

/// The scope that asks for a refresh token (OpenID Connect Core §11; SEP-2207).
pub const OFFLINE_ACCESS: &str = "offline_access";

/// Parses a space-delimited scope string, skipping tokens RFC 6749 §3.3 does not allow (a
/// server's malformed challenge must not abort the flow, nor inject characters).
pub fn parse_lenient(s: &str) -> ScopeSet {
    ScopeSet::from_iter(s.split(' ').filter(|t| is_scope_token(t)))
}

/// Initial scope selection. `extra` are scopes the user asked for explicitly (`--scope`).
/// Returns `None` when no `scope` parameter should be sent.
pub fn select_initial(
    challenge_scope: Option<&str>,
    prm_scopes_supported: &[String],
    as_scopes_supported: &[String],
    extra: &ScopeSet,
    want_refresh_token: bool,
) -> Option<ScopeSet> {
    let mut set = match challenge_scope.map(parse_lenient) {
        Some(challenged) if !challenged.is_empty() => challenged,
        _ => ScopeSet::from_iter(prm_scopes_supported.iter().filter(|s| is_scope_token(s))),
    };
    set = set.union(extra);
    with_offline_access(set, as_scopes_supported, want_refresh_token)
}

/// Step-up scopes: `held ∪ challenged` (SEP-2350), plus `offline_access` when listed.
pub fn select_step_up(
    held: &ScopeSet,
    challenged: &ScopeSet,
    as_scopes_supported: &[String],
    want_refresh_token: bool,
) -> Option<ScopeSet> {
    with_offline_access(
        held.union(challenged),
        as_scopes_supported,
        want_refresh_token,
    )
}

fn with_offline_access(
    mut set: ScopeSet,
    as_scopes_supported: &[String],
    want_refresh_token: bool,
) -> Option<ScopeSet> {
    let listed = as_scopes_supported.iter().any(|s| s == OFFLINE_ACCESS);
    if want_refresh_token && listed && !set.is_empty() {
        set.insert(OFFLINE_ACCESS);
    }
    if !listed && set.contains(OFFLINE_ACCESS) {
        // Never ask for offline_access from an AS that does not list it (SEP-2207).
        set = set.difference(&ScopeSet::from_iter([OFFLINE_ACCESS]));
    }
    (!set.is_empty()).then_some(set)
}

/// Scopes that were requested but not granted (`offline_access` aside: an AS may grant a
/// refresh token without echoing it). Empty when the token response carried no `scope`
/// (RFC 6749 §5.1: then the grant equals the request).
pub fn denied(requested: Option<&ScopeSet>, granted: Option<&ScopeSet>) -> ScopeSet {
    match (requested, granted) {
        (Some(requested), Some(granted)) => requested
            .difference(granted)
            .difference(&ScopeSet::from_iter([OFFLINE_ACCESS])),
        _ => ScopeSet::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn initial_selection_order() {
        let none = ScopeSet::new();
        // 1. challenge wins over scopes_supported.
        let s = select_initial(Some("mcp:basic"), &v(&["a", "b"]), &[], &none, true).unwrap();
        assert_eq!(s.to_string(), "mcp:basic");
        // 2. scopes_supported, all of them.
        let s = select_initial(None, &v(&["mcp:basic", "mcp:read"]), &[], &none, true).unwrap();
        assert_eq!(s.to_string(), "mcp:basic mcp:read");
        // An empty challenge scope falls through.
        let s = select_initial(Some(""), &v(&["x"]), &[], &none, true).unwrap();
        assert_eq!(s.to_string(), "x");
        // 3. omitted.
        assert!(select_initial(None, &[], &[], &none, true).is_none());
        // Bad characters are skipped, not passed through.
        let s = select_initial(Some("ok bad\"q"), &[], &[], &none, true).unwrap();
        assert_eq!(s.to_string(), "ok");
    }

    #[test]
    fn offline_access_only_when_listed() {
        let none = ScopeSet::new();
        let listed = v(&["mcp:basic", "offline_access"]);
        let s = select_initial(None, &v(&["mcp:basic"]), &listed, &none, true).unwrap();
        assert_eq!(s.to_string(), "mcp:basic offline_access");
        let s = select_initial(None, &v(&["mcp:basic"]), &v(&["mcp:basic"]), &none, true).unwrap();
        assert_eq!(s.to_string(), "mcp:basic");
        // A PRM that lists offline_access cannot make us send it to an AS that does not.
        let s = select_initial(None, &v(&["a", "offline_access"]), &v(&["a"]), &none, true);
        assert_eq!(s.unwrap().to_string(), "a");
        // Not requested when the user does not want refresh tokens.
        let s = select_initial(None, &v(&["mcp:basic"]), &listed, &none, false).unwrap();
        assert_eq!(s.to_string(), "mcp:basic");
    }

    #[test]
    fn step_up_is_a_union() {
        let held = ScopeSet::parse("mcp:basic").unwrap();
        let challenged = ScopeSet::parse("mcp:write").unwrap();
        let s = select_step_up(&held, &challenged, &[], true).unwrap();
        assert_eq!(s.to_string(), "mcp:basic mcp:write");
    }

    #[test]
    fn denied_scopes() {
        let req = ScopeSet::parse("a b offline_access").unwrap();
        let got = ScopeSet::parse("a").unwrap();
        assert_eq!(denied(Some(&req), Some(&got)).to_string(), "b");
        assert!(denied(Some(&req), None).is_empty());
    }
}
