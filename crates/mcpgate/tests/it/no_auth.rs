//! `[gateway] authentication = "none"`: refused off loopback and with rules
//! that need a token, never the default, and — when on — requests without a
//! token pass as the anonymous principal (sessions, policy, audit still on,
//! no PRM), while the default mode still answers 401.

use serde_json::{Value, json};

use crate::harness::{Env, ServeOpts};

#[tokio::test]
async fn check_config_refuses_no_auth_off_loopback_and_with_token_rules() {
    let env = Env::new();
    let upstream = "[[upstream]]\nname = \"t\"\nstdio = { command = \"/bin/true\" }\n";
    let cases = [
        (
            "public.toml",
            format!(
                "public_url = \"https://mcp.example.com\"\nlisten = \"0.0.0.0:8080\"\n\
                 trust_forwarded_proto = true\n\n[gateway]\nauthentication = \"none\"\n\n{upstream}"
            ),
            "gateway.authentication",
        ),
        (
            "scopes.toml",
            format!(
                "[gateway]\nauthentication = \"none\"\n\n{upstream}scopes = [\"notes:read\"]\n"
            ),
            "upstream[0].scopes",
        ),
        (
            "users.toml",
            format!(
                "[gateway]\nauthentication = \"none\"\n\n{upstream}\n[upstream.tools.echo]\nusers = [\"alice\"]\n"
            ),
            "upstream[0].tools.echo.users",
        ),
        (
            "typo.toml",
            "[gateway]\nauthentication = \"off\"\n".to_string(),
            // serde names the allowed values; the line (2) points at the field.
            "typo.toml:2: (syntax): unknown variant `off`, expected `bearer` or `none`",
        ),
    ];
    env.check_config_refuses(&cases).await;
    // On loopback, with nothing that needs a token, it is accepted.
    let p = env.write(
        "ok.toml",
        &format!("[gateway]\nauthentication = \"none\"\n\n{upstream}\n[upstream.tools.crash]\nallow = false\n"),
    );
    env.cli_ok(&["--config", p.to_str().unwrap(), "check-config"])
        .await;
}

fn config(authentication: Option<&str>) -> String {
    let bin = mcpgate_upstreams::test_upstream_binary();
    let mode = authentication
        .map(|a| format!("authentication = \"{a}\"\n"))
        .unwrap_or_default();
    format!(
        "[gateway]\n{mode}\n[gateway.audit]\nstdout = false\n\n\
         [[upstream]]\nname = \"t\"\nstdio = {{ command = \"{}\", args = [\"testing-stdio\"] }}\n\n\
         [upstream.tools.crash]\nallow = false\n",
        bin.display()
    )
}

pub(crate) async fn post(
    http: &reqwest::Client,
    url: &str,
    session: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let mut r = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25");
    if let Some(s) = session {
        r = r.header("mcp-session-id", s);
    }
    r.body(body.to_string()).send().await.expect("POST")
}

/// The JSON-RPC message of a JSON body, or the first message of an SSE
/// body (events with empty data, such as a priming event, carry none).
pub(crate) async fn message(r: reqwest::Response) -> Value {
    let text = r.text().await.expect("body");
    let data = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .find(|d| !d.trim().is_empty())
        .unwrap_or(&text);
    serde_json::from_str(data.trim()).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

#[tokio::test]
async fn no_auth_mode_serves_without_a_token_and_the_default_still_answers_401() {
    let env = Env::new();
    let srv = env
        .serve_with(ServeOpts {
            config: Some(Box::new(|_| config(Some("none")))),
            ..Default::default()
        })
        .await;
    let url = srv.url("/mcp/t");
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "it", "version": "0"}}});
    let r = post(&srv.http, &url, None, init.clone()).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("www-authenticate").is_none());
    let session = r
        .headers()
        .get("mcp-session-id")
        .expect("the gateway mints a session")
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        message(r).await["result"]["serverInfo"]["name"],
        "mcpgate-testing"
    );
    let r = post(
        &srv.http,
        &url,
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert!(r.status().is_success(), "{}", r.status());
    // Without the session: 400, as in the normal mode.
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    assert_eq!(
        post(&srv.http, &url, None, list.clone()).await.status(),
        400
    );
    let r = post(&srv.http, &url, Some(&session), list).await;
    assert_eq!(r.status(), 200);
    let tools: Vec<String> = message(r).await["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert!(tools.contains(&"echo".to_string()), "{tools:?}");
    assert!(
        !tools.contains(&"crash".to_string()),
        "allow = false filters: {tools:?}"
    );
    let call = |id: i64, name: &str| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
               "params": {"name": name, "arguments": {"text": "hi"}}})
    };
    let r = post(&srv.http, &url, Some(&session), call(3, "echo")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(message(r).await["result"]["content"][0]["text"], "hi");
    let r = post(&srv.http, &url, Some(&session), call(4, "crash")).await;
    assert_eq!(r.status(), 403, "policy still applies");
    // No protected-resource metadata in this mode.
    let prm = srv
        .http
        .get(srv.url("/.well-known/oauth-protected-resource/mcp/t"))
        .send()
        .await
        .unwrap();
    assert_eq!(prm.status(), 404);
    // A foreign Host is still refused (DNS rebinding).
    let r = srv
        .http
        .post(&url)
        .header("host", "evil.example")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(init.to_string())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    let log = srv.stop().await;
    assert!(
        log.contains(r#"authentication = "none""#),
        "no loud warning:\n{log}"
    );
    assert!(log.contains("WITHOUT"), "{log}");

    // The default mode: the same request without a token is a 401 challenge.
    let env = Env::new();
    let srv = env
        .serve_with(ServeOpts {
            config: Some(Box::new(|_| config(None))),
            ..Default::default()
        })
        .await;
    let r = post(&srv.http, &srv.url("/mcp/t"), None, init).await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("www-authenticate").is_some());
    srv.stop().await;
}
