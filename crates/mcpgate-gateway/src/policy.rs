//! Per-tool policy (MCP authorization checklist §2(b) scopes and step-up,
//! Security Best Practices "Scope minimization"): which tools a user may
//! ever call, which scopes a call needs, and the `tools/list` filter that
//! never names a tool the user can never get.

use mcpgate_guard::Principal;
use mcpgate_types::ScopeSet;
use serde_json::Value;

use crate::config::{ListMode, ToolPolicy, UpstreamConfig};

/// The outcome of a policy check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Never allowed for this user: 403 without a step-up.
    Deny(&'static str),
    /// Allowed with more scope: 403 `insufficient_scope` naming every
    /// scope the request needs (baseline ∪ tool).
    StepUp(ScopeSet),
}

impl Decision {
    /// The audit `reason` string.
    pub fn reason(&self) -> &'static str {
        match self {
            Decision::Allow => "allowed",
            Decision::Deny(r) => r,
            Decision::StepUp(_) => "insufficient_scope",
        }
    }
}

/// The policy for `tool`: its own entry or the upstream's default.
pub fn policy_for<'a>(up: &'a UpstreamConfig, tool: &str) -> &'a ToolPolicy {
    up.tools.get(tool).unwrap_or(&up.default_tool)
}

/// Whether this user can ever call a tool under `policy` (whatever their scopes).
pub fn reachable(policy: &ToolPolicy, p: &Principal) -> Result<(), &'static str> {
    if !policy.allow {
        return Err("tool_disabled");
    }
    if policy.users.is_none() && policy.groups.is_none() {
        return Ok(());
    }
    let by_user = policy
        .users
        .as_ref()
        .is_some_and(|u| u.contains(&p.subject));
    let by_group = policy
        .groups
        .as_ref()
        .is_some_and(|g| g.iter().any(|x| p.groups.contains(x)));
    if by_user || by_group {
        Ok(())
    } else {
        Err("not_in_allowlist")
    }
}

/// Scopes a call of `tool` needs: the baseline and the tool's own.
pub fn required_scopes(up: &UpstreamConfig, tool: &str) -> ScopeSet {
    up.scopes.union(&policy_for(up, tool).scopes)
}

/// Decides a `tools/call`.
pub fn decide_tool(up: &UpstreamConfig, p: &Principal, tool: &str) -> Decision {
    let policy = policy_for(up, tool);
    if let Err(reason) = reachable(policy, p) {
        return Decision::Deny(reason);
    }
    let required = required_scopes(up, tool);
    if required.is_subset(&p.scopes) {
        Decision::Allow
    } else {
        Decision::StepUp(required)
    }
}

/// Decides any request by its baseline: every method needs the upstream's
/// baseline scopes.
pub fn decide_baseline(up: &UpstreamConfig, p: &Principal) -> Decision {
    if up.scopes.is_subset(&p.scopes) {
        Decision::Allow
    } else {
        Decision::StepUp(up.scopes.clone())
    }
}

/// Filters a `tools/list` result in place: drops tools this user can never
/// call and, with `list = "granted"`, those the token lacks scope for.
/// Returns how many were hidden.
pub fn filter_tools_list(up: &UpstreamConfig, p: &Principal, result: &mut Value) -> usize {
    let Some(tools) = result.get_mut("tools").and_then(Value::as_array_mut) else {
        return 0;
    };
    let before = tools.len();
    tools.retain(|t| {
        let Some(name) = t.get("name").and_then(Value::as_str) else {
            return false;
        };
        match decide_tool(up, p, name) {
            Decision::Allow => true,
            Decision::Deny(_) => false,
            Decision::StepUp(_) => up.list == ListMode::All,
        }
    });
    before - tools.len()
}

/// Filters a JSON-RPC response message if it answers `tools/list`.
/// Returns the re-serialised message when something changed.
pub fn filter_response_message(up: &UpstreamConfig, p: &Principal, msg: &mut Value) -> usize {
    match msg.get_mut("result") {
        Some(result) => filter_tools_list(up, p, result),
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::config::{StdioConfig, Transport, UpstreamAuth};

    fn up(list: ListMode) -> UpstreamConfig {
        let mut tools = BTreeMap::new();
        tools.insert(
            "write".into(),
            ToolPolicy {
                scopes: ScopeSet::parse("n:write").unwrap(),
                ..ToolPolicy::default()
            },
        );
        tools.insert(
            "off".into(),
            ToolPolicy {
                allow: false,
                ..ToolPolicy::default()
            },
        );
        tools.insert(
            "ops".into(),
            ToolPolicy {
                groups: Some(vec!["ops".into()]),
                ..ToolPolicy::default()
            },
        );
        tools.insert(
            "bob".into(),
            ToolPolicy {
                users: Some(vec!["bob".into()]),
                ..ToolPolicy::default()
            },
        );
        UpstreamConfig {
            name: "n".into(),
            title: "n".into(),
            resource: "http://x/mcp/n".into(),
            transport: Transport::Stdio(StdioConfig {
                command: "x".into(),
                args: vec![],
                cwd: None,
                env: vec![],
            }),
            auth: UpstreamAuth::None,
            scopes: ScopeSet::parse("n:read").unwrap(),
            tools,
            default_tool: ToolPolicy::default(),
            list,
            shared: false,
            rate_limit: None,
            allowed_origins: vec![],
            timeout: Duration::from_secs(1),
        }
    }

    fn who(sub: &str, scopes: &str, groups: &[&str]) -> Principal {
        Principal {
            issuer: "i".into(),
            subject: sub.into(),
            client_id: "c".into(),
            scopes: ScopeSet::parse(scopes).unwrap(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            expires_at: 0,
        }
    }

    #[test]
    fn decisions() {
        let u = up(ListMode::All);
        let alice = who("alice", "n:read", &[]);
        assert_eq!(decide_tool(&u, &alice, "read"), Decision::Allow);
        assert_eq!(
            decide_tool(&u, &alice, "write"),
            Decision::StepUp(ScopeSet::parse("n:read n:write").unwrap())
        );
        assert_eq!(
            decide_tool(&u, &alice, "off"),
            Decision::Deny("tool_disabled")
        );
        assert_eq!(
            decide_tool(&u, &alice, "ops"),
            Decision::Deny("not_in_allowlist")
        );
        assert_eq!(
            decide_tool(&u, &who("x", "n:read", &["ops"]), "ops"),
            Decision::Allow
        );
        assert_eq!(
            decide_tool(&u, &who("bob", "n:read", &[]), "bob"),
            Decision::Allow
        );
        // Denial wins over missing scope: no step-up for a tool one can never get.
        assert_eq!(
            decide_tool(&u, &who("a", "", &[]), "off"),
            Decision::Deny("tool_disabled")
        );
        assert_eq!(
            decide_baseline(&u, &who("a", "", &[])),
            Decision::StepUp(ScopeSet::parse("n:read").unwrap())
        );
    }

    #[test]
    fn list_filter() {
        let names = |v: &Value| {
            v["tools"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        let all = json!({"tools": [{"name":"read"},{"name":"write"},{"name":"off"},{"name":"ops"},{"name":"bob"}]});
        let mut v = all.clone();
        assert_eq!(
            filter_tools_list(&up(ListMode::All), &who("alice", "n:read", &[]), &mut v),
            3
        );
        assert_eq!(names(&v), ["read", "write"]);
        let mut v = all.clone();
        filter_tools_list(&up(ListMode::Granted), &who("alice", "n:read", &[]), &mut v);
        assert_eq!(names(&v), ["read"]);
        let mut v = all;
        filter_tools_list(
            &up(ListMode::All),
            &who("bob", "n:read n:write", &["ops"]),
            &mut v,
        );
        assert_eq!(names(&v), ["read", "write", "ops", "bob"]);
    }
}
