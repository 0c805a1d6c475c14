//! Per-item policy (MCP authorization checklist §2(b) scopes and step-up,
//! Security Best Practices "Scope minimization"): which tools, prompts and
//! resources a user may ever use, which scopes a use needs, and the list
//! filter (`tools/list`, `prompts/list`, `resources/list`,
//! `resources/templates/list`) that never names an item the user can never get.

use std::borrow::Cow;
use std::collections::BTreeMap;

use mcpgate_guard::Principal;
use mcpgate_types::ScopeSet;
use serde_json::Value;

use crate::config::{ListMode, ToolPolicy, UpstreamConfig};
use crate::jsonrpc::{Envelope, Kind};

/// The outcome of a policy check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Never allowed for this user: 403 without a step-up.
    Deny(&'static str),
    /// Allowed with more scope: 403 `insufficient_scope` naming every
    /// scope the request needs (baseline ∪ item).
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

/// What a policy entry governs: `[upstream.tools.NAME]`,
/// `[upstream.prompts.NAME]` or `[upstream.resources."URI"]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    Tool,
    Prompt,
    Resource,
}

/// The item a request reaches and the kind of policy entry that governs it,
/// for every way MCP offers to reach one: `tools/call` (by `name`),
/// `prompts/get` (by `name`), `resources/read` and `resources/subscribe` (by
/// `uri`), and `completion/complete`, which completes an argument of a
/// prompt (`ref/prompt`, by `name`) or of a resource template (`ref/resource`,
/// by the template's `uri`, the key `resources/templates/list` is filtered
/// by). `None`: the request reaches no item. `Some(Err(what))`: it should,
/// but `what` is missing or malformed.
pub fn item_of(env: &Envelope) -> Option<Result<(ItemKind, &str), &'static str>> {
    if env.kind != Kind::Request {
        return None;
    }
    let params = env.value.get("params");
    fn field<'a>(v: Option<&'a Value>, k: &str) -> Option<&'a str> {
        v.and_then(|v| v.get(k)).and_then(Value::as_str)
    }
    // `name`/`uri` of the three methods `Mcp-Name` covers, as the envelope parsed them.
    let named = |kind, what| env.name.as_deref().map(|n| (kind, n)).ok_or(what);
    Some(match env.method.as_deref()? {
        "tools/call" => named(ItemKind::Tool, "params.name"),
        "prompts/get" => named(ItemKind::Prompt, "params.name"),
        "resources/read" => named(ItemKind::Resource, "params.uri"),
        "resources/subscribe" => field(params, "uri")
            .map(|u| (ItemKind::Resource, u))
            .ok_or("params.uri"),
        "completion/complete" => {
            let r = params.and_then(|p| p.get("ref"));
            match field(r, "type") {
                Some("ref/prompt") => field(r, "name")
                    .map(|n| (ItemKind::Prompt, n))
                    .ok_or("params.ref.name"),
                Some("ref/resource") => field(r, "uri")
                    .map(|u| (ItemKind::Resource, u))
                    .ok_or("params.ref.uri"),
                _ => Err("params.ref.type \"ref/prompt\" or \"ref/resource\""),
            }
        }
        _ => return None,
    })
}

impl ItemKind {
    /// The item's noun in messages.
    pub fn noun(self) -> &'static str {
        match self {
            Self::Tool => "tool",
            Self::Prompt => "prompt",
            Self::Resource => "resource",
        }
    }

    /// The audit reason of `allow = false`.
    fn disabled(self) -> &'static str {
        match self {
            Self::Tool => "tool_disabled",
            Self::Prompt => "prompt_disabled",
            Self::Resource => "resource_disabled",
        }
    }

    fn table(self, up: &UpstreamConfig) -> (&BTreeMap<String, ToolPolicy>, &ToolPolicy) {
        match self {
            Self::Tool => (&up.tools, &up.default_tool),
            Self::Prompt => (&up.prompts, &up.default_prompt),
            Self::Resource => (&up.resources, &up.default_resource),
        }
    }
}

/// A list the policy filters wherever it appears in a result: the result's
/// array and the member field that names the item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listing {
    pub kind: ItemKind,
    array: &'static str,
    key: &'static str,
}

impl Listing {
    /// `tools/list`.
    pub const TOOLS: Listing = Listing {
        kind: ItemKind::Tool,
        array: "tools",
        key: "name",
    };

    /// `prompts/list`.
    pub const PROMPTS: Listing = Listing {
        kind: ItemKind::Prompt,
        array: "prompts",
        key: "name",
    };
    /// `resources/list`.
    pub const RESOURCES: Listing = Listing {
        kind: ItemKind::Resource,
        array: "resources",
        key: "uri",
    };
    /// `resources/templates/list`.
    pub const TEMPLATES: Listing = Listing {
        kind: ItemKind::Resource,
        array: "resourceTemplates",
        key: "uriTemplate",
    };
    /// Every listing the policy filters.
    pub const ALL: [Listing; 4] = [Self::TOOLS, Self::PROMPTS, Self::RESOURCES, Self::TEMPLATES];
}

/// The policy for an item: its own entry or the upstream's default for its kind.
/// A resource is found under any spelling of its URI that RFC 3986 makes
/// equivalent ([`crate::uri::canonical`]), so another spelling of a denied
/// URI is denied too.
pub fn policy_of<'a>(up: &'a UpstreamConfig, kind: ItemKind, id: &str) -> &'a ToolPolicy {
    let (items, default) = kind.table(up);
    if let Some(p) = items.get(id) {
        return p;
    }
    if kind == ItemKind::Resource
        && let Some(key) = up.resource_aliases.get(&crate::uri::canonical(id))
        && let Some(p) = items.get(key)
    {
        return p;
    }
    default
}

/// The policy for `tool`: its own entry or the upstream's default.
pub fn policy_for<'a>(up: &'a UpstreamConfig, tool: &str) -> &'a ToolPolicy {
    policy_of(up, ItemKind::Tool, tool)
}

/// Whether this user can ever use an item under `policy` (whatever their
/// scopes); the error is the allowlist reason (`allow = false` is the caller's).
fn allowlisted(policy: &ToolPolicy, p: &Principal) -> Result<(), &'static str> {
    if policy.users.is_none() && policy.groups.is_none() {
        return Ok(());
    }
    let by_user = policy.users.as_ref().is_some_and(|u| {
        u.iter()
            .any(|r| r.subject == p.subject && r.issuer == p.issuer)
    });
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

/// Whether this user can ever call a tool under `policy` (whatever their scopes).
pub fn reachable(policy: &ToolPolicy, p: &Principal) -> Result<(), &'static str> {
    if !policy.allow {
        return Err(ItemKind::Tool.disabled());
    }
    allowlisted(policy, p)
}

/// Scopes a use of an item needs: the baseline and the item's own.
pub fn required_scopes_of(up: &UpstreamConfig, kind: ItemKind, id: &str) -> ScopeSet {
    up.scopes.union(&policy_of(up, kind, id).scopes)
}

/// Scopes a call of `tool` needs: the baseline and the tool's own.
pub fn required_scopes(up: &UpstreamConfig, tool: &str) -> ScopeSet {
    required_scopes_of(up, ItemKind::Tool, tool)
}

/// The scopes a token effectively holds: its own plus, transitively, every
/// scope they imply under the upstream's `scope_implies` (MCP 2026-07-28:
/// a broad scope satisfies the narrower ones it covers).
pub fn effective_scopes<'a>(up: &UpstreamConfig, granted: &'a ScopeSet) -> Cow<'a, ScopeSet> {
    if up.scope_implies.is_empty() {
        return Cow::Borrowed(granted);
    }
    let mut out = granted.clone();
    let mut frontier: Vec<String> = granted.iter().map(str::to_string).collect();
    while let Some(s) = frontier.pop() {
        if let Some(narrower) = up.scope_implies.get(&s) {
            for n in narrower.iter() {
                if !out.contains(n) {
                    out.insert(n);
                    frontier.push(n.to_string());
                }
            }
        }
    }
    Cow::Owned(out)
}

/// Decides a use of an item (`tools/call`, `prompts/get`, `resources/read`).
/// Denial wins over missing scope: no step-up for an item one can never get.
pub fn decide(up: &UpstreamConfig, p: &Principal, kind: ItemKind, id: &str) -> Decision {
    let policy = policy_of(up, kind, id);
    if !policy.allow {
        return Decision::Deny(kind.disabled());
    }
    if let Err(reason) = allowlisted(policy, p) {
        return Decision::Deny(reason);
    }
    let held = effective_scopes(up, &p.scopes);
    if up.scopes.is_subset(&held) && policy.scopes.is_subset(&held) {
        Decision::Allow
    } else {
        Decision::StepUp(required_scopes_of(up, kind, id))
    }
}

/// Decides a `tools/call`.
pub fn decide_tool(up: &UpstreamConfig, p: &Principal, tool: &str) -> Decision {
    decide(up, p, ItemKind::Tool, tool)
}

/// Decides any request by its baseline: every method needs the upstream's
/// baseline scopes.
pub fn decide_baseline(up: &UpstreamConfig, p: &Principal) -> Decision {
    if up.scopes.is_subset(&effective_scopes(up, &p.scopes)) {
        Decision::Allow
    } else {
        Decision::StepUp(up.scopes.clone())
    }
}

/// Filters a list result in place: drops items this user can never use
/// and, with `list = "granted"`, those the token lacks scope for (members
/// without their naming field are dropped too). Returns how many were hidden.
pub fn filter_list(
    up: &UpstreamConfig,
    p: &Principal,
    listing: Listing,
    result: &mut Value,
) -> usize {
    let Some(items) = result.get_mut(listing.array).and_then(Value::as_array_mut) else {
        return 0;
    };
    let before = items.len();
    items.retain(|t| {
        let Some(id) = t.get(listing.key).and_then(Value::as_str) else {
            return false;
        };
        match decide(up, p, listing.kind, id) {
            Decision::Allow => true,
            Decision::Deny(_) => false,
            Decision::StepUp(_) => up.list == ListMode::All,
        }
    });
    before - items.len()
}

/// Filters a `tools/list` result in place (see [`filter_list`]).
pub fn filter_tools_list(up: &UpstreamConfig, p: &Principal, result: &mut Value) -> usize {
    filter_list(up, p, Listing::TOOLS, result)
}

/// Filters every list a JSON-RPC response message's result holds
/// (`tools`, `prompts`, `resources`, `resourceTemplates`), whatever request
/// it answers: an answer replayed on a resumed stream, or a list the
/// upstream puts in another method's result, is filtered like a fresh
/// `tools/list`. Returns how many items were hidden.
pub fn filter_response_message(up: &UpstreamConfig, p: &Principal, msg: &mut Value) -> usize {
    let Some(result) = msg.get_mut("result") else {
        return 0;
    };
    Listing::ALL
        .into_iter()
        .map(|l| filter_list(up, p, l, result))
        .sum()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::config::{StdioConfig, Transport, UpstreamAuth, UserRef};

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
                users: Some(vec![UserRef {
                    issuer: "i".into(),
                    subject: "bob".into(),
                }]),
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
                sandbox: Default::default(),
            }),
            auth: UpstreamAuth::None,
            scopes: ScopeSet::parse("n:read").unwrap(),
            tools,
            default_tool: ToolPolicy::default(),
            prompts: BTreeMap::from([(
                "off".to_string(),
                ToolPolicy {
                    allow: false,
                    ..ToolPolicy::default()
                },
            )]),
            default_prompt: ToolPolicy::default(),
            resources: BTreeMap::from([(
                "x://w".to_string(),
                ToolPolicy {
                    scopes: ScopeSet::parse("n:write").unwrap(),
                    ..ToolPolicy::default()
                },
            )]),
            resource_aliases: BTreeMap::from([("x://w".to_string(), "x://w".to_string())]),
            default_resource: ToolPolicy {
                groups: Some(vec!["ops".into()]),
                ..ToolPolicy::default()
            },
            scope_implies: BTreeMap::new(),
            list,
            shared: false,
            rate_limit: crate::config::DEFAULT_RATE_LIMIT,
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
            dpop_jkt: None,
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
        // Another issuer's "bob" is another user.
        let mut other_bob = who("bob", "n:read", &[]);
        other_bob.issuer = "https://elsewhere.example".into();
        assert_eq!(
            decide_tool(&u, &other_bob, "bob"),
            Decision::Deny("not_in_allowlist")
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

    #[test]
    fn prompts_and_resources() {
        let u = up(ListMode::All);
        let alice = who("alice", "n:read", &[]);
        // Kinds have their own tables: the tool "off" does not govern a prompt "read".
        assert_eq!(
            decide(&u, &alice, ItemKind::Prompt, "read"),
            Decision::Allow
        );
        assert_eq!(
            decide(&u, &alice, ItemKind::Prompt, "off"),
            Decision::Deny("prompt_disabled")
        );
        assert_eq!(
            decide(
                &u,
                &who("bob", "n:read", &["ops"]),
                ItemKind::Resource,
                "x://w"
            ),
            Decision::StepUp(ScopeSet::parse("n:read n:write").unwrap())
        );
        // The resource default (ops only) applies to unlisted URIs.
        assert_eq!(
            decide(&u, &alice, ItemKind::Resource, "x://other"),
            Decision::Deny("not_in_allowlist")
        );
        let mut v =
            json!({"resources": [{"uri": "x://w"}, {"uri": "x://other"}, {"name": "no uri"}]});
        let listing = Listing::RESOURCES;
        assert_eq!(filter_list(&u, &alice, listing, &mut v), 2);
        assert_eq!(
            v["resources"],
            json!([{"uri": "x://w"}]),
            "step-up stays listed"
        );
        let mut v =
            json!({"resourceTemplates": [{"uriTemplate": "x://w"}, {"uriTemplate": "x://{id}"}]});
        let listing = Listing::TEMPLATES;
        filter_list(&u, &who("bob", "n:read", &["ops"]), listing, &mut v);
        assert_eq!(v["resourceTemplates"].as_array().unwrap().len(), 2);
        let mut m = json!({"jsonrpc": "2.0", "id": 1, "result": {"prompts": [{"name": "a"}, {"name": "off"}]}});
        assert_eq!(filter_response_message(&u, &alice, &mut m), 1);
        assert_eq!(m["result"]["prompts"], json!([{"name": "a"}]));
        // Every list in a result is filtered, whatever request it answers.
        let mut m = json!({"jsonrpc": "2.0", "id": 1, "result": {
            "prompts": [{"name": "off"}], "tools": [{"name": "off"}, {"name": "read"}]}});
        assert_eq!(filter_response_message(&u, &alice, &mut m), 2);
        assert_eq!(m["result"]["tools"], json!([{"name": "read"}]));
        let item = |body: Value| {
            let env = crate::jsonrpc::parse_value(body).unwrap();
            item_of(&env).map(|r| r.map(|(k, i)| (k, i.to_string())))
        };
        let req = |method: &str, params: Value| json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        assert_eq!(
            item(req("resources/read", json!({"uri": "a://b"}))),
            Some(Ok((ItemKind::Resource, "a://b".into())))
        );
        assert_eq!(
            item(req("resources/subscribe", json!({"uri": "a://b"}))),
            Some(Ok((ItemKind::Resource, "a://b".into())))
        );
        assert_eq!(
            item(req(
                "completion/complete",
                json!({"ref": {"type": "ref/prompt", "name": "p"}, "argument": {"name": "x", "value": ""}})
            )),
            Some(Ok((ItemKind::Prompt, "p".into())))
        );
        assert_eq!(
            item(req(
                "completion/complete",
                json!({"ref": {"type": "ref/resource", "uri": "n://{id}"}})
            )),
            Some(Ok((ItemKind::Resource, "n://{id}".into())))
        );
        assert!(matches!(
            item(req(
                "completion/complete",
                json!({"ref": {"type": "ref/other"}})
            )),
            Some(Err(_))
        ));
        assert!(matches!(
            item(req("resources/subscribe", json!({}))),
            Some(Err("params.uri"))
        ));
        assert_eq!(item(req("tools/list", json!({}))), None);
        assert_eq!(
            item(json!({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "t"}})),
            None,
            "a notification reaches no item"
        );
    }

    #[test]
    fn broad_scopes_imply_narrower_ones_transitively() {
        let mut u = up(ListMode::All);
        u.scope_implies
            .insert("n:admin".into(), ScopeSet::parse("n:write").unwrap());
        u.scope_implies
            .insert("n:write".into(), ScopeSet::parse("n:read").unwrap());
        // n:admin alone covers the baseline n:read and the tool's n:write.
        let admin = who("a", "n:admin", &[]);
        assert_eq!(decide_baseline(&u, &admin), Decision::Allow);
        assert_eq!(decide_tool(&u, &admin, "write"), Decision::Allow);
        // The implication is one way: n:read does not grant n:write.
        let reader = who("r", "n:read", &[]);
        assert!(matches!(
            decide_tool(&u, &reader, "write"),
            Decision::StepUp(_)
        ));
        // Without the hierarchy, n:admin is just another scope.
        u.scope_implies.clear();
        assert!(matches!(decide_baseline(&u, &admin), Decision::StepUp(_)));
    }
}
