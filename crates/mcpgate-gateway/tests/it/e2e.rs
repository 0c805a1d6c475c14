//! End to end through the gateway to a stdio child and an HTTP upstream:
//! initialize, tools/list, tools/call, a server→client request
//! (elicitation) and notifications over SSE, the GET stream, DELETE; the
//! stateless 2026-07-28 wire; child hygiene; audit and operations.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

async fn stack() -> (Stack, mcpgate_upstreams::TestingHttpHandle) {
    let (_, handle) = mcpgate_upstreams::serve_testing_http()
        .await
        .expect("testing http upstream");
    let stack = Stack::start(&standard_config(&handle.url())).await;
    (stack, handle)
}

fn text_of(r: &Resp) -> String {
    let v = r.response();
    v["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("text result in {v}"))
        .to_string()
}

/// The whole client journey on one upstream.
async fn journey(s: &Stack, name: &str) {
    let token = s.token("alice", "notes:read notes:write", name).await;
    let mut c = s.client(name, &token);
    let init = c.initialize().await;
    let sid = c.session.clone().expect("Mcp-Session-Id on initialize");
    assert!(
        sid.len() >= 43 && sid.bytes().all(|b| (0x21..=0x7e).contains(&b)),
        "session id {sid:?}"
    );
    assert!(
        init.response()["result"]["serverInfo"].is_object(),
        "{}",
        init.text
    );

    // tools/list: the tool alice can never get (`slow`: allow = false;
    // `headers`: group ops only) is hidden; the step-up tool stays.
    let list = c.rpc("tools/list", json!({})).await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(
        tool_names(&list),
        ["ask_user", "crash", "echo", "env", "notify"]
    );

    let echo = c.call("echo", json!({"text": "hi there"})).await;
    assert_eq!(echo.status, 200, "{}", echo.text);
    assert_eq!(text_of(&echo), "hi there");

    // A notification on the POST's SSE stream, before the result.
    let id = c.id();
    let notified = c
        .post(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "notify", "arguments": {"message": "ping"}, "_meta": {"progressToken": "p1"}}}))
        .await;
    assert_eq!(notified.status, 200, "{}", notified.text);
    let msgs = notified.messages();
    // The progress notification is tied to the request, so it is on its stream
    // (where a server puts its logging notification is up to the server).
    assert!(
        msgs.iter().any(
            |m| m["method"] == "notifications/progress" && m["params"]["progressToken"] == "p1"
        ),
        "{msgs:?}"
    );
    assert_eq!(notified.response()["id"], id);

    // A server→client request (elicitation) answered by the client.
    let id = c.id();
    let mut resp = c.send(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "ask_user", "arguments": {"question": "number?"}}})).await;
    assert_eq!(resp.status(), 200);
    let mut buf = String::new();
    let ask = read_until(&mut resp, &mut buf, |m| m["method"] == "elicitation/create").await;
    let answer = json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"action": "accept", "content": {"answer": "42"}}});
    let r = c.post(&answer).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let done = read_until(&mut resp, &mut buf, |m| m.get("method").is_none()).await;
    assert_eq!(done["id"], id);
    assert!(done["result"].to_string().contains("42"), "{done}");

    // The standalone GET stream opens for the session.
    let get = c.open_stream().await;
    assert_eq!(get.status(), 200);
    assert!(
        get.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    drop(get);

    // DELETE ends the session; the id is then unknown.
    let d = c.delete().await;
    assert_eq!(d.status, 204, "{}", d.text);
    let after = c.rpc("tools/list", json!({})).await;
    assert_eq!(after.status, 404, "{}", after.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_upstream_end_to_end() {
    let (s, _h) = stack().await;
    journey(&s, "stdio").await;
    // The session's child process is gone after DELETE.
    eventually("no children left", async || s.gw.child_pids().is_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_upstream_end_to_end() {
    let (s, h) = stack().await;
    journey(&s, "http").await;
    // The upstream never saw the client's credentials or the gateway's session id.
    let all = h.recorded_headers().all();
    assert!(!all.is_empty());
    for r in &all {
        assert!(!r.has_header("authorization"), "{r:?}");
        assert!(!r.has_header("cookie"), "{r:?}");
        assert_eq!(
            r.header("x-upstream-key"),
            Some("mcpgate-gateway"),
            "upstream credential injected"
        );
    }
    // DELETE reached the upstream (its own session ended).
    eventually("upstream DELETE", async || {
        h.recorded_headers()
            .all()
            .iter()
            .any(|r| r.method == "DELETE")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_never_sees_authorization_or_cookie() {
    let (s, h) = stack().await;
    // bob is in group ops, so `headers` is his to call.
    let token = s.token("bob", "notes:read", "http").await;
    let mut c = s.client("http", &token);
    c.extra.insert("cookie".into(), "session=stolen".into());
    c.extra.insert("x-forwarded-for".into(), "10.0.0.1".into());
    c.initialize().await;
    let r = c.call("headers", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let seen = r.response()["result"]["structuredContent"]["headers"].clone();
    let names: Vec<String> = seen
        .as_object()
        .expect("headers object")
        .keys()
        .map(|k| k.to_ascii_lowercase())
        .collect();
    for banned in ["authorization", "cookie", "x-forwarded-for"] {
        assert!(
            !names.contains(&banned.to_string()),
            "{banned} reached the upstream: {names:?}"
        );
    }
    let upstream_sid = seen["mcp-session-id"].to_string();
    assert!(
        !upstream_sid.contains(c.session.as_deref().unwrap()),
        "the gateway's session id is not the upstream's"
    );
    assert!(
        h.recorded_headers()
            .all()
            .iter()
            .all(|r| !r.has_header("authorization") && !r.has_header("cookie"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_child_environment_is_clean() {
    assert!(
        std::env::var_os(CANARY).is_some(),
        "the canary is in the gateway's own environment"
    );
    let (s, _h) = stack().await;
    let token = s.token("alice", "notes:read", "stdio").await;
    let mut c = s.client("stdio", &token);
    c.initialize().await;
    let r = c.call("env", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let env = r.response()["result"]["structuredContent"].clone();
    let keys: Vec<&String> = env.as_object().expect("env object").keys().collect();
    assert!(env.get(CANARY).is_none(), "canary leaked: {keys:?}");
    assert_eq!(env["DECLARED_VAR"], "declared-value");
    assert_eq!(env["PATH"], "/usr/local/bin:/usr/bin:/bin");
    let allowed = ["PATH", "HOME", "TMPDIR", "LANG", "DECLARED_VAR"];
    assert!(
        keys.iter().all(|k| allowed.contains(&k.as_str())),
        "unexpected variables: {keys:?}"
    );
    // HOME and TMPDIR are the child's private directory, not the gateway's home.
    let home = env["HOME"].as_str().expect("HOME");
    assert_eq!(env["TMPDIR"], home);
    assert_ne!(Some(home.to_string()), std::env::var("HOME").ok());
    assert!(
        std::path::Path::new(home)
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("mcpgate-stdio-")),
        "{home}"
    );
}

fn process_gone(pid: u32) -> bool {
    // A zombie still has /proc/<pid> (state Z); a reaped process has none.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('X')),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_child_crash_mid_request() {
    let (s, _h) = stack().await;
    let token = s.token("alice", "notes:read", "stdio").await;
    let mut c = s.client("stdio", &token);
    c.initialize().await;
    let pids = s.gw.child_pids();
    assert_eq!(pids.len(), 1, "one child for the session");
    let r = c.call("crash", json!({})).await;
    let resp = r.response();
    assert!(
        resp["error"]["code"].is_i64(),
        "a JSON-RPC error for the in-flight request: {resp}"
    );
    assert_eq!(resp["id"], c.next_id);
    assert!(
        !r.text.contains("exit status"),
        "no internal detail: {}",
        r.text
    );
    // The session ended with its child.
    let again = c.rpc("tools/list", json!({})).await;
    assert_eq!(again.status, 404, "{}", again.text);
    eventually("child reaped (no zombie)", async || process_gone(pids[0])).await;
    assert!(s.gw.child_pids().is_empty());
}

fn stateless(s: &Stack, name: &str, token: &str) -> Mcp {
    let mut c = s.client(name, token);
    c.version = "2026-07-28";
    c
}

async fn stateless_post(c: &Mcp, method: &str, params: Value, name_header: Option<&str>) -> Resp {
    let mut params = params;
    params["_meta"] = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}});
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let mut r = c
        .request(reqwest::Method::POST)
        .header("content-type", "application/json")
        .header("mcp-method", method);
    if let Some(n) = name_header {
        r = r.header("mcp-name", n);
    }
    into_resp(r.body(body.to_string()).send().await.expect("POST")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_2026_clients() {
    let (s, _h) = stack().await;
    for name in ["stdio", "http"] {
        let token = s.token("alice", "notes:read", name).await;
        let c = stateless(&s, name, &token);
        let list = stateless_post(&c, "tools/list", json!({}), None).await;
        assert_eq!(list.status, 200, "{name}: {}", list.text);
        assert!(list.header("mcp-session-id").is_none(), "no session minted");
        assert!(tool_names(&list).contains(&"echo".to_string()));
        assert!(!tool_names(&list).contains(&"slow".to_string()));
        let echo = stateless_post(
            &c,
            "tools/call",
            json!({"name": "echo", "arguments": {"text": "x"}}),
            Some("echo"),
        )
        .await;
        assert_eq!(echo.status, 200, "{name}: {}", echo.text);
        // Header and body disagree: HeaderMismatch.
        let bad = stateless_post(
            &c,
            "tools/call",
            json!({"name": "echo", "arguments": {"text": "x"}}),
            Some("env"),
        )
        .await;
        assert_eq!(bad.status, 400);
        assert_eq!(bad.response()["error"]["code"], -32020);
        let missing = stateless_post(
            &c,
            "tools/call",
            json!({"name": "echo", "arguments": {"text": "x"}}),
            None,
        )
        .await;
        assert_eq!(missing.status, 400);
        // GET and DELETE: 405.
        let get = into_resp(c.request(reqwest::Method::GET).send().await.unwrap()).await;
        assert_eq!(get.status, 405);
        assert_eq!(c.delete().await.status, 405);
    }
    // One child per user for the stateless stdio clients.
    assert_eq!(s.gw.child_pids().len(), 1);
    assert_eq!(s.gw.session_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_are_audited_without_tokens() {
    let (s, _h) = stack().await;
    let token = s.token("alice", "notes:read", "stdio").await;
    let mut c = s.client("stdio", &token);
    c.initialize().await;
    assert_eq!(
        c.call("echo", json!({"text": "secret-argument"}))
            .await
            .status,
        200
    );
    assert_eq!(c.call("notify", json!({})).await.status, 403);
    assert_eq!(c.call("slow", json!({"ms": 1})).await.status, 403);
    let mut anon = s.client("stdio", &token);
    anon.token = None;
    assert_eq!(anon.rpc("tools/list", json!({})).await.status, 401);
    let store = s.as_.store.clone();
    eventually("audit rows", async || {
        store.list_audit(0, 100).await.unwrap().len() >= 6
    })
    .await;
    let rows = store.list_audit(0, 100).await.unwrap();
    let find = |decision: &str, reason: &str| {
        rows.iter()
            .find(|r| r.decision == decision && r.reason == reason)
            .unwrap_or_else(|| panic!("no {decision}/{reason} in {rows:#?}"))
            .clone()
    };
    let allowed = rows
        .iter()
        .find(|r| r.tool.as_deref() == Some("echo"))
        .expect("echo audited");
    assert_eq!(allowed.decision, "allow");
    assert_eq!(allowed.status, 200);
    assert_eq!(allowed.upstream, "stdio");
    assert_eq!(allowed.client_id.as_deref(), Some("app"));
    assert_eq!(allowed.issuer.as_deref(), Some(s.as_.issuer.as_str()));
    let step_up = find("step_up", "insufficient_scope");
    assert_eq!(step_up.tool.as_deref(), Some("notify"));
    assert_eq!(step_up.status, 403);
    assert_eq!(find("deny", "tool_disabled").tool.as_deref(), Some("slow"));
    assert_eq!(find("unauthenticated", "missing_token").status, 401);
    let dump = format!("{rows:?}");
    assert!(!dump.contains(&token) && !dump.contains("secret-argument"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_endpoints_and_shutdown() {
    let (s, _h) = stack().await;
    let token = s.token("alice", "notes:read", "stdio").await;
    let mut c = s.client("stdio", &token);
    c.initialize().await;
    assert_eq!(c.call("echo", json!({"text": "m"})).await.status, 200);
    for (path, want) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let r = s
            .http
            .get(format!("{}{path}", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), want);
    }
    let metrics = s
        .http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for m in [
        "mcpgate_gateway_requests_total",
        "mcpgate_gateway_decisions_total",
        "mcpgate_gateway_request_duration_seconds_bucket",
        "mcpgate_gateway_sessions",
        "mcpgate_gateway_child_processes",
    ] {
        assert!(metrics.contains(m), "{m} missing from:\n{metrics}");
    }
    let pids = s.gw.child_pids();
    assert_eq!(pids.len(), 1);
    s.gw.shutdown(Duration::from_secs(5)).await;
    assert!(
        pids.iter().all(|p| process_gone(*p)),
        "children killed and reaped"
    );
    let r = s
        .http
        .get(format!("{}/readyz", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(c.rpc("tools/list", json!({})).await.status, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_token_for_the_upstream() {
    let (_, h) = mcpgate_upstreams::serve_testing_http()
        .await
        .expect("http upstream");
    let cfg = format!(
        r#"
[gateway]
dev_allow_http_loopback_token_url = true
[gateway.audit]
stdout = false
[[upstream]]
name = "cc"
scopes = ["notes:read"]
http = {{ url = "{url}" }}
auth = {{ type = "client_credentials", token_url = "{{issuer}}/oauth/token", client_id = "{CC_CLIENT}", client_secret = "{CC_SECRET}", scope = "notes:read", resource = "{{issuer}}/mcp/other" }}
"#,
        url = h.url()
    );
    let s = Stack::start(&cfg).await;
    let user_token = s.token("alice", "notes:read", "cc").await;
    let mut c = s.client("cc", &user_token);
    c.initialize().await;
    for _ in 0..2 {
        assert_eq!(c.call("echo", json!({"text": "x"})).await.status, 200);
    }
    let seen: Vec<String> = h
        .recorded_headers()
        .all()
        .iter()
        .map(|r| {
            r.header("authorization")
                .expect("upstream credential")
                .to_string()
        })
        .collect();
    assert!(seen.len() >= 4, "{seen:?}");
    assert!(
        seen.iter().all(|a| *a == seen[0]),
        "one cached token for every request"
    );
    let upstream_token = seen[0].strip_prefix("Bearer ").expect("bearer");
    assert_ne!(upstream_token, user_token, "never the client's token");
    use base64::Engine;
    let payload = upstream_token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["client_id"], CC_CLIENT);
    assert_eq!(claims["aud"], format!("{}/mcp/other", s.as_.issuer));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_end_and_their_children_go() {
    let cfg = r#"
[gateway]
session_idle_secs = 1
[gateway.audit]
stdout = false
[[upstream]]
name = "stdio"
scopes = ["notes:read"]
stdio = { command = "{bin}", args = ["testing-stdio"] }
"#;
    let s = Stack::start(cfg).await;
    let token = s.token("alice", "notes:read", "stdio").await;
    let mut c = s.client("stdio", &token);
    c.initialize().await;
    let pids = s.gw.child_pids();
    assert_eq!(pids.len(), 1);
    eventually("idle session ended", async || s.gw.session_count() == 0).await;
    eventually("child reaped", async || process_gone(pids[0])).await;
    assert_eq!(c.rpc("tools/list", json!({})).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_exchange_for_the_upstream() {
    use std::sync::{Arc, Mutex};
    // A token endpoint (RFC 8693) that hands out "exchanged-N" and records each request.
    /// (Authorization header, form) of each token request.
    type Calls = Arc<Mutex<Vec<(Option<String>, Vec<(String, String)>)>>>;
    let calls: Calls = Arc::default();
    let seen = calls.clone();
    let app = axum::Router::new().route(
        "/token",
        axum::routing::post(move |headers: http::HeaderMap, body: String| {
            let seen = seen.clone();
            async move {
                let form: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
                let basic = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
                let n = {
                    let mut s = seen.lock().unwrap();
                    s.push((basic, form));
                    s.len()
                };
                axum::Json(json!({"access_token": format!("exchanged-{n}"), "token_type": "Bearer", "expires_in": 300, "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let token_url = format!("http://{}/token", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    let (_, h) = mcpgate_upstreams::serve_testing_http()
        .await
        .expect("http upstream");
    let cfg = format!(
        r#"
[gateway]
dev_allow_http_loopback_token_url = true
[gateway.audit]
stdout = false
[[upstream]]
name = "tx"
scopes = ["notes:read"]
http = {{ url = "{url}" }}
auth = {{ type = "token_exchange", token_url = "{token_url}", client_id = "gw", client_secret = "gw-secret-0123456789", audience = "https://upstream.example" }}
"#,
        url = h.url()
    );
    let s = Stack::start(&cfg).await;
    let alice = s.token("alice", "notes:read", "tx").await;
    let mut c = s.client("tx", &alice);
    c.initialize().await;
    assert_eq!(c.call("echo", json!({"text": "x"})).await.status, 200);
    let auths: Vec<String> = h
        .recorded_headers()
        .all()
        .iter()
        .map(|r| r.header("authorization").expect("credential").to_string())
        .collect();
    assert!(
        auths.iter().all(|a| a == "Bearer exchanged-1"),
        "one exchange, cached: {auths:?}"
    );
    {
        let calls = calls.lock().unwrap();
        assert_eq!(calls.len(), 1);
        let (basic, form) = &calls[0];
        assert!(
            basic.as_deref().is_some_and(|b| b.starts_with("Basic ")),
            "client authentication"
        );
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(
            get("grant_type"),
            Some("urn:ietf:params:oauth:grant-type:token-exchange")
        );
        assert_eq!(
            get("subject_token"),
            Some(alice.as_str()),
            "the caller's validated token is the subject"
        );
        assert_eq!(
            get("subject_token_type"),
            Some("urn:ietf:params:oauth:token-type:access_token")
        );
        assert_eq!(get("audience"), Some("https://upstream.example"));
    }
    // Another user gets a token of their own.
    h.recorded_headers().clear();
    let bob = s.token("bob", "notes:read", "tx").await;
    let mut b = s.client("tx", &bob);
    b.initialize().await;
    assert!(
        h.recorded_headers()
            .all()
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer exchanged-2"))
    );
    assert!(
        h.recorded_headers()
            .all()
            .iter()
            .all(|r| r.header("authorization") != Some(&format!("Bearer {bob}")))
    );
}

/// A stdio session's POST stream starts with a priming event and numbers
/// its events; a client that drops it resumes with `GET` and
/// `Last-Event-ID` and gets the rest of that stream, the answer included:
/// the disconnection did not cancel the request (2025-11-25).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_streams_resume_after_a_disconnect() {
    let cfg = r#"
[gateway.audit]
stdout = false
[[upstream]]
name = "stdio"
scopes = ["notes:read"]
stdio = { command = "{bin}", args = ["testing-stdio"] }
"#;
    let s = Stack::start(cfg).await;
    let token = s.token("alice", "notes:read", "stdio").await;
    let mut c = s.client("stdio", &token);
    c.initialize().await;
    let id = c.id();
    let mut post = c
        .send(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "slow", "arguments": {"ms": 1500}}}))
        .await;
    assert_eq!(post.status(), 200);
    // The priming event: an id and empty data, before anything else.
    let first = tokio::time::timeout(Duration::from_secs(10), post.chunk())
        .await
        .expect("priming event in time")
        .unwrap()
        .unwrap();
    let first = String::from_utf8_lossy(&first).to_string();
    let primed = first
        .lines()
        .find_map(|l| l.strip_prefix("id:"))
        .map(|i| i.trim().to_string())
        .unwrap_or_else(|| panic!("no event id in {first:?}"));
    assert!(first.contains("data:"), "{first:?}");
    drop(post);

    let resume = |last: String| {
        c.request(reqwest::Method::GET)
            .header("last-event-id", last)
            .send()
    };
    let mut get = resume(primed.clone()).await.unwrap();
    assert_eq!(get.status(), 200);
    let mut buf = String::new();
    let answer = read_until(&mut get, &mut buf, |m| m["id"] == id).await;
    assert_eq!(
        answer["result"]["content"][0]["text"], "slept 1500 ms",
        "not cancelled: {buf}"
    );
    let answer_id = buf
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("id:"))
        .unwrap()
        .trim()
        .to_string();
    assert_ne!(answer_id, primed);
    // Resuming after the last event: the finished stream has nothing more.
    let done = into_resp(resume(answer_id).await.unwrap()).await;
    assert_eq!(done.status, 200);
    assert!(done.messages().is_empty(), "{}", done.text);
    // An id of no stream of this session is refused, not answered with
    // another stream.
    for bad in ["999-0", "nonsense", "1-x"] {
        let r = into_resp(resume(bad.to_string()).await.unwrap()).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
    }
    // Another user cannot resume alice's stream (the session is not theirs).
    let bob = s.token("bob", "notes:read", "stdio").await;
    let mut b = s.client("stdio", &bob);
    b.session = c.session.clone();
    let r = into_resp(
        b.request(reqwest::Method::GET)
            .header("last-event-id", primed)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text);
}
