//! The client role end to end: `mcpgate login` against this binary's own
//! authorization server (DCR, PKCE, the real login and consent pages driven
//! by a test browser, the loopback redirect), then `tools`, `call`, `status`
//! and `logout` against the gateway's demo `notes` upstream; `bridge` driven
//! over stdio by raw JSON-RPC lines and by the official Rust SDK client. Token
//! files are 0600 and no token shows up in any output or log.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mcpgate_testkit::{Browser, User};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};

use crate::flow;
use crate::harness::{CliOut, Env, ServeOpts, Server};

const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery staple";

/// The client flags every command of these tests takes.
fn client_args<'a>(token_dir: &'a Path, url: &'a str) -> Vec<&'a str> {
    vec![
        url,
        "--token-dir",
        token_dir.to_str().expect("utf-8 path"),
        "--allow-http-loopback",
        "--no-browser",
    ]
}

/// Runs `mcpgate login URL` and plays the user (see [`play_user`]).
async fn login(env: &Env, srv: &Server, token_dir: &Path, extra: &[&str]) -> CliOut {
    login_to(env, srv, token_dir, &srv.resource, extra).await
}

/// `mcpgate login URL` for another resource of the server.
async fn login_to(env: &Env, srv: &Server, token_dir: &Path, url: &str, extra: &[&str]) -> CliOut {
    let mut args = vec!["login"];
    args.extend(client_args(token_dir, url));
    args.extend_from_slice(extra);
    play_user(env, srv, &args).await
}

/// Runs a client command that needs an authorization and plays the user:
/// reads the authorization URL from stderr, signs in and approves consent in
/// a test browser, then delivers the final redirect to the CLI's loopback
/// listener.
async fn play_user(env: &Env, srv: &Server, args: &[&str]) -> CliOut {
    let mut cmd = env.command();
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn mcpgate");
    let stderr = child.stderr.take().expect("stderr");
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let (found_tx, found_rx) = tokio::sync::oneshot::channel::<String>();
    let collected = lines.clone();
    let reader = tokio::spawn(async move {
        let mut found = Some(found_tx);
        let mut r = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = r.next_line().await {
            let t = line.trim();
            if t.starts_with("http")
                && t.contains("/oauth/authorize?")
                && let Some(tx) = found.take()
            {
                let _ = tx.send(t.to_string());
            }
            collected.lock().unwrap().push(line);
        }
    });
    let authorize_url = tokio::time::timeout(Duration::from_secs(60), found_rx)
        .await
        .unwrap_or_else(|_| panic!("no authorization URL printed: {:?}", lines.lock().unwrap()))
        .unwrap_or_else(|_| panic!("login ended early: {:?}", lines.lock().unwrap()));
    assert!(
        authorize_url.starts_with(&format!("{}/oauth/authorize?", srv.issuer)),
        "{authorize_url}"
    );
    assert!(
        authorize_url.contains("code_challenge_method=S256"),
        "{authorize_url}"
    );

    let redirect_uri = url::Url::parse(&authorize_url)
        .expect("authorization URL")
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .map(|(_, v)| v.into_owned())
        .expect("a redirect_uri");
    assert!(
        redirect_uri.starts_with("http://127.0.0.1:") && redirect_uri.ends_with("/callback"),
        "{redirect_uri}"
    );
    let callback = Browser::new()
        .play(&authorize_url, &redirect_uri, &User::new(USER, PASSWORD))
        .await
        .unwrap_or_else(|e| panic!("playing the user: {e}"))
        .redirect;
    // The browser's last step: the redirect reaches the CLI's listener.
    let answer = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .get(&callback)
        .send()
        .await
        .expect("GET the loopback redirect");
    assert_eq!(answer.status(), 200);
    assert!(
        answer
            .text()
            .await
            .unwrap()
            .to_lowercase()
            .contains("close")
    );

    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("login finishes after the redirect")
        .expect("wait");
    reader.await.expect("stderr reader");
    let stderr = lines.lock().unwrap().join("\n");
    CliOut {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    }
}

/// Runs a client command (`tools`, `call`, ...) for `url`.
async fn client_cli(env: &Env, cmd: &str, token_dir: &Path, url: &str, rest: &[&str]) -> CliOut {
    let mut args = vec![cmd];
    args.extend(client_args(token_dir, url));
    args.extend_from_slice(rest);
    env.cli(&args).await
}

/// The secrets in the token store, and a check that every file is 0600.
fn stored_secrets(token_dir: &Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut secrets = Vec::new();
    let dir = token_dir.join("tokens");
    for entry in std::fs::read_dir(&dir).expect("tokens dir") {
        let path: PathBuf = entry.expect("entry").path();
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        if path.extension().is_some_and(|e| e == "json") {
            assert_eq!(
                mode & 0o777,
                0o600,
                "{} has mode {:o}",
                path.display(),
                mode
            );
            let v: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect("JSON");
            for key in ["access_token", "refresh_token"] {
                if let Some(s) = v[key].as_str() {
                    secrets.push(s.to_string());
                }
            }
            if let Some(k) = v["dpop_key"]["pkcs8"].as_str() {
                secrets.push(k.to_string());
            }
        }
    }
    secrets
}

fn assert_no_secret(secrets: &[String], what: &str, text: &str) {
    for s in secrets {
        assert!(
            !text.contains(s.as_str()),
            "a token appears in {what}:\n{text}"
        );
    }
}

/// A server with the embedded defaults (AS + gateway + demo `notes`) and a user.
async fn setup() -> (Env, Server, tempfile::TempDir) {
    let env = Env::new();
    env.add_user(USER, PASSWORD).await;
    let srv = env.serve().await;
    let tokens = tempfile::tempdir().expect("token dir");
    (env, srv, tokens)
}

#[tokio::test]
async fn login_tools_call_status_logout_against_the_own_gateway() {
    let (env, srv, tokens) = setup().await;
    let url = srv.resource.clone();
    let dir = tokens.path();

    // Before login: a clear message, and no browser flow.
    let out = client_cli(&env, "tools", dir, &url, &[]).await;
    assert!(!out.status.success());
    assert!(
        out.stderr.contains(&format!(
            "not logged in to {url}: run `mcpgate login {url}`"
        )),
        "{}",
        out.stderr
    );

    let out = login(&env, &srv, dir, &[]).await;
    assert!(out.status.success(), "login failed:\n{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("issuer:   {}", srv.issuer)),
        "{}",
        out.stderr
    );
    let secrets = stored_secrets(dir);
    assert!(!secrets.is_empty(), "no token stored");
    assert_no_secret(
        &secrets,
        "login output",
        &format!("{}{}", out.stdout, out.stderr),
    );

    let out = client_cli(&env, "tools", dir, &url, &[]).await;
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.contains("list_notes\t"), "{}", out.stdout);
    let out = client_cli(&env, "tools", dir, &url, &["--json"]).await;
    let tools: Value = serde_json::from_str(&out.stdout).expect("JSON tools");
    assert!(
        tools
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "read_note")
    );

    let out = client_cli(&env, "call", dir, &url, &["read_note", r#"{"id": 1}"#]).await;
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.contains("Welcome"), "{}", out.stdout);
    let out = client_cli(&env, "call", dir, &url, &["list_notes", "--json"]).await;
    assert!(out.status.success(), "{}", out.stderr);
    let result: Value = serde_json::from_str(&out.stdout).expect("JSON result");
    assert_eq!(
        result["structuredContent"]["notes"][0]["title"], "Welcome",
        "{result}"
    );
    let out = client_cli(&env, "call", dir, &url, &["read_note", "[1]"]).await;
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("must be a JSON object"),
        "{}",
        out.stderr
    );

    let out = env
        .cli(&["status", "--token-dir", dir.to_str().unwrap()])
        .await;
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout.contains(&format!("resource: {url}")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!("issuer:   {}", srv.issuer)),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("expires:"), "{}", out.stdout);
    assert_no_secret(&secrets, "status output", &out.stdout);

    let out = client_cli(&env, "logout", dir, &url, &[]).await;
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stderr.contains("Logged out"), "{}", out.stderr);
    let out = client_cli(&env, "call", dir, &url, &["list_notes"]).await;
    assert!(!out.status.success());
    assert!(out.stderr.contains("not logged in"), "{}", out.stderr);

    let log = srv.stop().await;
    assert_no_secret(&secrets, "the server log", &log);
}

/// An `initialize` POST to the gateway with the given `Authorization` (and `DPoP` proof).
async fn raw_initialize(url: &str, authorization: &str, proof: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("authorization", authorization)
        .header("accept", "application/json, text/event-stream")
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "thief", "version": "1"}}}),
        );
    if let Some(p) = proof {
        req = req.header("dpop", p);
    }
    req.send().await.expect("POST")
}

#[tokio::test]
async fn the_cli_holds_dpop_bound_tokens_that_are_useless_when_stolen() {
    let (env, srv, tokens) = setup().await;
    let url = srv.resource.clone();
    let dir = tokens.path();
    // Our AS and gateway both offer DPoP: the CLI takes a bound token by default.
    let out = login(&env, &srv, dir, &[]).await;
    assert!(out.status.success(), "login failed:\n{}", out.stderr);
    assert!(out.stderr.contains("bound:    DPoP"), "{}", out.stderr);
    let (_, file) = token_file(dir);
    assert!(file["dpop_key"]["pkcs8"].is_string(), "{file}");
    let out = client_cli(&env, "call", dir, &url, &["read_note", r#"{"id": 1}"#]).await;
    assert!(out.status.success(), "{}", out.stderr);

    // The access token without the key: as Bearer, as DPoP without a proof, and with a
    // proof from the thief's own key.
    let stolen = file["access_token"]
        .as_str()
        .expect("access token")
        .to_owned();
    let r = raw_initialize(&url, &format!("Bearer {stolen}"), None).await;
    assert_eq!(r.status(), 401);
    let www = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(www.contains("invalid_token"), "{www}");
    let r = raw_initialize(&url, &format!("DPoP {stolen}"), None).await;
    assert_eq!(r.status(), 401);
    let www = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(
        www.starts_with("DPoP ") && www.contains("invalid_dpop_proof"),
        "{www}"
    );
    let thief = mcpgate_jose::SigningKey::generate("t", mcpgate_jose::KeyAlg::Es256).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let forged = mcpgate_jose::dpop::proof(
        &thief,
        "POST",
        &url,
        Some(&stolen),
        None,
        now,
        &mcpgate_jose::SystemRng::new(),
    )
    .unwrap();
    let r = raw_initialize(&url, &format!("DPoP {stolen}"), Some(&forged)).await;
    assert_eq!(r.status(), 401);

    // The refresh token without the key is refused at the token endpoint too.
    let refresh = file["refresh_token"].as_str().expect("refresh token");
    let client_file = std::fs::read_dir(dir.join("clients"))
        .expect("clients dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("a client file");
    let client: Value =
        serde_json::from_str(&std::fs::read_to_string(client_file).unwrap()).expect("JSON");
    let r = reqwest::Client::new()
        .post(format!("{}/oauth/token", srv.issuer))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            (
                "client_id",
                client["client_id"].as_str().expect("client_id"),
            ),
        ])
        .send()
        .await
        .expect("POST");
    let body: Value = r.json().await.expect("JSON");
    assert_eq!(body["error"], "invalid_grant", "{body}");

    // `--no-dpop` takes a bearer token, and that works as before.
    let plain = tempfile::tempdir().expect("token dir");
    let out = login(&env, &srv, plain.path(), &["--no-dpop"]).await;
    assert!(out.status.success(), "{}", out.stderr);
    assert!(!out.stderr.contains("bound:"), "{}", out.stderr);
    assert!(token_file(plain.path()).1.get("dpop_key").is_none());
    let out = client_cli(&env, "tools", plain.path(), &url, &[]).await;
    assert!(out.status.success(), "{}", out.stderr);

    let secrets = stored_secrets(dir);
    let log = srv.stop().await;
    assert_no_secret(&secrets, "the server log", &log);
}

/// The one token file of the store, parsed, and its path.
fn token_file(token_dir: &Path) -> (PathBuf, Value) {
    let files: Vec<PathBuf> = std::fs::read_dir(token_dir.join("tokens"))
        .expect("tokens dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let v = serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).expect("JSON");
    (files[0].clone(), v)
}

#[tokio::test]
async fn step_up_then_refresh_through_the_cli() {
    let (env, srv, tokens) = setup().await;
    let url = srv.resource.clone();
    let dir = tokens.path();
    let out = login(&env, &srv, dir, &[]).await;
    assert!(out.status.success(), "login failed:\n{}", out.stderr);
    let (_, before) = token_file(dir);
    let held = before["scope"].as_str().unwrap_or_default().to_string();
    assert!(held.contains("notes:read"), "{before}");
    assert!(!held.contains("notes:write"), "{before}");

    // `add_note` needs notes:write: the gateway answers 403 insufficient_scope,
    // the CLI authorizes again for the union of scopes, the user approves, and
    // the call is retried.
    let mut args = vec!["call"];
    args.extend(client_args(dir, &url));
    args.extend_from_slice(&["add_note", r#"{"title": "Groceries", "body": "milk"}"#]);
    let out = play_user(&env, &srv, &args).await;
    assert!(out.status.success(), "step-up failed:\n{}", out.stderr);
    assert!(out.stdout.contains("Groceries"), "{}", out.stdout);
    let (path, after) = token_file(dir);
    let scope = after["scope"].as_str().unwrap_or_default();
    assert!(
        scope.contains("notes:read") && scope.contains("notes:write"),
        "not the union of scopes: {after}"
    );

    // An access token about to expire is refreshed before use; the rotated
    // refresh token replaces the old one.
    let mut expiring = after.clone();
    expiring["expires_at"] = json!(flow::now() - 5);
    std::fs::write(&path, serde_json::to_vec(&expiring).unwrap()).unwrap();
    let out = client_cli(&env, "call", dir, &url, &["read_note", r#"{"id": 1}"#]).await;
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("Welcome"), "{}", out.stdout);
    let (_, refreshed) = token_file(dir);
    assert_ne!(refreshed["access_token"], after["access_token"]);
    assert_ne!(refreshed["refresh_token"], after["refresh_token"]);
    assert!(refreshed["expires_at"].as_i64().unwrap() > flow::now());
    // The note added by the first call is there for a later one: the demo's
    // notes outlive a CLI call.
    let out = client_cli(&env, "call", dir, &url, &["list_notes", "--json"]).await;
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.contains("Groceries"), "{}", out.stdout);
    let secrets = stored_secrets(dir);
    let log = srv.stop().await;
    assert_no_secret(&secrets, "the server log", &log);
}

/// Spawns `mcpgate bridge URL` with piped stdio.
fn bridge_command(env: &Env, dir: &Path, url: &str) -> tokio::process::Command {
    let mut cmd = env.command();
    cmd.arg("bridge")
        .args(client_args(dir, url))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

async fn send(stdin: &mut tokio::process::ChildStdin, v: Value) {
    let mut line = serde_json::to_vec(&v).unwrap();
    line.push(b'\n');
    stdin.write_all(&line).await.expect("write to the bridge");
    stdin.flush().await.unwrap();
}

async fn recv(stdout: &mut Lines<BufReader<tokio::process::ChildStdout>>) -> Value {
    let line = tokio::time::timeout(Duration::from_secs(30), stdout.next_line())
        .await
        .expect("the bridge answers")
        .expect("read")
        .expect("a line");
    serde_json::from_str(&line).expect("stdout carries JSON only")
}

#[tokio::test]
async fn bridge_forwards_raw_json_rpc_and_exits_when_stdin_closes() {
    let (env, srv, tokens) = setup().await;
    let url = srv.resource.clone();
    let dir = tokens.path();
    let out = login(&env, &srv, dir, &[]).await;
    assert!(out.status.success(), "login failed:\n{}", out.stderr);
    let secrets = stored_secrets(dir);

    let mut child = bridge_command(&env, dir, &url)
        .spawn()
        .expect("spawn bridge");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    send(
        &mut stdin,
        json!({"jsonrpc": "2.0", "id": "init-1", "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "raw-host", "version": "1"}}}),
    )
    .await;
    let init = recv(&mut stdout).await;
    assert_eq!(init["id"], "init-1", "{init}");
    assert!(init["result"]["protocolVersion"].is_string(), "{init}");
    send(
        &mut stdin,
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    send(
        &mut stdin,
        json!({"jsonrpc": "2.0", "id": 42, "method": "tools/call",
        "params": {"name": "read_note", "arguments": {"id": 1}}}),
    )
    .await;
    let called = recv(&mut stdout).await;
    assert_eq!(called["id"], 42, "{called}");
    assert!(
        called["result"]["content"].to_string().contains("Welcome"),
        "{called}"
    );
    send(
        &mut stdin,
        json!({"jsonrpc": "2.0", "id": "x", "method": "no/such/method"}),
    )
    .await;
    let failed = recv(&mut stdout).await;
    assert_eq!(failed["id"], "x", "{failed}");
    assert!(failed["error"]["code"].is_i64(), "{failed}");

    // Closing stdin ends the session and the process, cleanly.
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the bridge exits when stdin closes")
        .expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {stderr}", out.status);
    assert!(stderr.contains("remote session closed"), "{stderr}");
    assert_no_secret(&secrets, "the bridge's log", &stderr);
    srv.stop().await;
}

#[tokio::test]
async fn bridge_serves_the_official_rust_sdk_client() {
    use rmcp::ServiceExt;
    use rmcp::model::CallToolRequestParams;
    use rmcp::transport::TokioChildProcess;

    let (env, srv, tokens) = setup().await;
    let url = srv.resource.clone();
    let dir = tokens.path();
    let out = login(&env, &srv, dir, &[]).await;
    assert!(out.status.success(), "login failed:\n{}", out.stderr);

    let (transport, _stderr) = TokioChildProcess::builder(bridge_command(&env, dir, &url))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the bridge");
    let client = ().serve(transport).await.expect("initialize through the bridge");
    let info = client.peer_info().expect("initialize result");
    assert!(info.capabilities.tools.is_some(), "{info:?}");
    let tools = client.list_all_tools().await.expect("tools/list");
    let mut names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert!(names.contains(&"list_notes".to_string()), "{names:?}");
    let result = client
        .call_tool(CallToolRequestParams::new("list_notes"))
        .await
        .expect("tools/call");
    assert_eq!(result.is_error, Some(false), "{result:?}");
    assert_eq!(
        result.structured_content.as_ref().expect("structured")["notes"][0]["title"],
        "Welcome"
    );
    client.cancel().await.expect("close");
    srv.stop().await;
}

#[tokio::test]
async fn client_commands_read_no_server_config() {
    // A config file that would stop every server command.
    let env = Env::with_config("this is = not [valid toml\n");
    let tokens = tempfile::tempdir().expect("token dir");
    let dir = tokens.path().to_str().unwrap();
    let out = env.cli(&["check-config"]).await;
    assert!(!out.status.success(), "the broken config was accepted");
    let out = env.cli(&["status", "--token-dir", dir]).await;
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stderr.contains("mcpgate login URL"), "{}", out.stderr);
    assert_eq!(out.stdout, "");
    let out = env.cli(&["status", "--token-dir", dir, "--json"]).await;
    assert_eq!(out.stdout.trim(), "[]");
    // Plain http to a non-loopback host is refused before any traffic.
    let out = env
        .cli(&["tools", "http://mcp.example.com/mcp", "--token-dir", dir])
        .await;
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("invalid MCP server URL"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn bridge_reinitializes_when_the_session_is_gone() {
    let (env, srv, tokens) = setup().await;
    let url = srv.resource.clone();
    let dir = tokens.path();
    let out = login(&env, &srv, dir, &[]).await;
    assert!(out.status.success(), "login failed:\n{}", out.stderr);

    let secrets = stored_secrets(dir);
    let mut child = bridge_command(&env, dir, &url)
        .env("MCPGATE_LOG", "debug")
        .spawn()
        .expect("spawn bridge");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    send(
        &mut stdin,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "raw-host", "version": "1"}}}),
    )
    .await;
    let init = recv(&mut stdout).await;
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18", "{init}");
    send(
        &mut stdin,
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;

    // A restart on the same port forgets the session (the key ring, in the
    // data dir, stays): the next request gets 404 and the bridge starts a new
    // session with the host's initialize parameters. The server is killed
    // (dropping it): a graceful stop would wait for the bridge's open SSE stream.
    let port = srv.port;
    drop(srv);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not die"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let srv = env
        .serve_with(crate::harness::ServeOpts {
            port: Some(port),
            ..Default::default()
        })
        .await;
    send(
        &mut stdin,
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "read_note", "arguments": {"id": 1}}}),
    )
    .await;
    let called = recv(&mut stdout).await;
    assert_eq!(called["id"], 2, "{called}");
    assert!(
        called["result"]["content"].to_string().contains("Welcome"),
        "{called}"
    );
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the bridge exits when stdin closes")
        .expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("initializing a new session"), "{stderr}");
    assert!(
        stderr.contains("reopening the standalone SSE stream"),
        "{stderr}"
    );
    // Not even at debug level does a token reach the log.
    assert_no_secret(&secrets, "the bridge's debug log", &stderr);
    srv.stop().await;
}

/// The `mcpgate-test-upstream` fixture, built on first use when this
/// package's tests run alone (cargo builds no binaries of dependencies).
fn upstream_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::panic::catch_unwind(mcpgate_upstreams::test_upstream_binary) {
            return p;
        }
        let status = std::process::Command::new(env!("CARGO"))
            .args([
                "build",
                "-p",
                "mcpgate-upstreams",
                "--bin",
                "mcpgate-test-upstream",
            ])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building mcpgate-test-upstream failed");
        mcpgate_upstreams::test_upstream_binary()
    })
    .clone()
}

/// A server whose gateway fronts the SDK-based `testing` fixture over stdio
/// (elicitation, progress notifications).
async fn setup_testing_upstream() -> (Env, Server, tempfile::TempDir) {
    let bin = upstream_bin();
    let env = Env::with_config(&format!(
        "[[upstream]]\nname = \"testing\"\nstdio = {{ command = \"{}\", args = [\"testing-stdio\"] }}\nscopes = [\"notes:read\"]\n",
        bin.display()
    ));
    env.add_user(USER, PASSWORD).await;
    let srv = env.serve().await;
    let tokens = tempfile::tempdir().expect("token dir");
    (env, srv, tokens)
}

#[tokio::test]
async fn bridge_relays_server_requests_and_notifications() {
    let (env, srv, tokens) = setup_testing_upstream().await;
    let url = srv.url("/mcp/testing");
    let dir = tokens.path();
    let out = login_to(&env, &srv, dir, &url, &[]).await;
    assert!(out.status.success(), "login failed:\n{}", out.stderr);
    let secrets = stored_secrets(dir);

    let mut child = bridge_command(&env, dir, &url)
        .spawn()
        .expect("spawn bridge");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    send(
        &mut stdin,
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {"elicitation": {}},
        "clientInfo": {"name": "raw-host", "version": "1"}}}),
    )
    .await;
    let init = recv(&mut stdout).await;
    assert_eq!(init["id"], 0, "{init}");
    send(
        &mut stdin,
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;

    // A notification on the request's SSE stream reaches the host before the result.
    send(
        &mut stdin,
        json!({"jsonrpc": "2.0", "id": "n", "method": "tools/call", "params": {
        "name": "notify", "arguments": {"message": "ping"}, "_meta": {"progressToken": "p1"}}}),
    )
    .await;
    let mut seen = Vec::new();
    loop {
        let m = recv(&mut stdout).await;
        if m["id"] == "n" {
            assert!(m.get("result").is_some(), "{m}");
            break;
        }
        seen.push(m);
    }
    assert!(
        seen.iter().any(
            |m| m["method"] == "notifications/progress" && m["params"]["progressToken"] == "p1"
        ),
        "{seen:?}"
    );

    // A server→client request (elicitation) goes to the host; its answer goes back.
    send(
        &mut stdin,
        json!({"jsonrpc": "2.0", "id": "q", "method": "tools/call",
        "params": {"name": "ask_user", "arguments": {"question": "number?"}}}),
    )
    .await;
    let ask = loop {
        let m = recv(&mut stdout).await;
        if m["method"] == "elicitation/create" {
            break m;
        }
        assert_ne!(m["id"], "q", "answered without asking: {m}");
    };
    let ask_id = ask["id"].as_str().expect("a string id").to_string();
    assert!(ask_id.starts_with("mcpgate-bridge-"), "{ask}");
    send(
        &mut stdin,
        json!({"jsonrpc": "2.0", "id": ask_id,
        "result": {"action": "accept", "content": {"answer": "42"}}}),
    )
    .await;
    let done = loop {
        let m = recv(&mut stdout).await;
        if m["id"] == "q" {
            break m;
        }
    };
    assert!(done["result"].to_string().contains("42"), "{done}");

    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the bridge exits when stdin closes")
        .expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_no_secret(&secrets, "the bridge's log", &stderr);
    let log = srv.stop().await;
    assert_no_secret(&secrets, "the server log", &log);
}

#[tokio::test]
async fn login_with_a_pre_registered_confidential_client() {
    let env = Env::new();
    env.add_user(USER, PASSWORD).await;
    // Loopback redirect URIs match on any port (RFC 8252 §7.3).
    let (client_id, secret) = env
        .add_client(
            "mcpgate CLI",
            "http://127.0.0.1/callback",
            &["--auth-method", "client_secret_basic"],
        )
        .await;
    let secret = secret.expect("a confidential client has a secret");
    let secret_file = env.write("client.secret", &format!("{secret}\n"));
    let srv = env.serve().await;
    let tokens = tempfile::tempdir().expect("token dir");
    let dir = tokens.path();
    let out = login(
        &env,
        &srv,
        dir,
        &[
            "--client-id",
            &client_id,
            "--client-secret-file",
            secret_file.to_str().unwrap(),
            "--issuer",
            &srv.issuer,
        ],
    )
    .await;
    assert!(out.status.success(), "login failed:\n{}", out.stderr);
    assert!(
        !out.stderr.contains(&secret),
        "the client secret was printed"
    );
    let out = client_cli(&env, "tools", dir, &srv.resource, &[]).await;
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.contains("list_notes"), "{}", out.stdout);
    let log = srv.stop().await;
    assert!(
        !log.contains("client registered dynamically"),
        "the pre-registered client was not used:\n{log}"
    );
    assert!(log.contains(&client_id), "{log}");
}

/// A service client with no user: registered by the operator with its public key only
/// (`clients add --auth-method private_key_jwt --jwks-file`), it logs in with the client
/// credentials grant and a `private_key_jwt` assertion signed with a PEM key (whose `kid`,
/// given with `--private-key-id`, names the key in the published set), then lists the
/// tools. No browser, no secret anywhere; the same assertion cannot be sent twice (the AS's
/// replay check is exercised in mcpgate-authz's client_pkjwt trials).
#[tokio::test]
async fn a_service_logs_in_with_client_credentials_and_a_private_key() {
    let env = Env::new();
    let key =
        mcpgate_jose::SigningKey::generate("svc-1", mcpgate_jose::KeyAlg::Es256).expect("key");
    let jwks = json!({ "keys": [key.public_jwk()] });
    let jwks_file = env.write("svc.jwks.json", &jwks.to_string());
    let (client_id, secret) = env
        .add_client(
            "service",
            "https://svc.example/unused",
            &[
                "--auth-method",
                "private_key_jwt",
                "--jwks-file",
                jwks_file.to_str().unwrap(),
                "--grant",
                "client_credentials",
            ],
        )
        .await;
    assert!(secret.is_none(), "a key client gets no secret");
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(key.pkcs8());
    let pem = env.write(
        "svc.pem",
        &format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n"),
    );
    let srv = env.serve().await;
    let tokens = tempfile::tempdir().expect("token dir");
    let dir = tokens.path();
    let mut args = vec!["login"];
    args.extend(client_args(dir, &srv.resource));
    let (pem_path, issuer) = (pem.to_str().unwrap().to_owned(), srv.issuer.clone());
    args.extend([
        "--client-credentials",
        "--client-id",
        &client_id,
        "--private-key-file",
        &pem_path,
        "--private-key-id",
        "svc-1",
        "--issuer",
        &issuer,
    ]);
    let mut cmd = env.command();
    cmd.args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("login finishes without a user")
        .expect("run mcpgate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "login failed:\n{stderr}");
    assert!(
        !stderr.contains("authorize?"),
        "no authorization URL: {stderr}"
    );
    let out = client_cli(&env, "tools", dir, &srv.resource, &[]).await;
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.contains("list_notes"), "{}", out.stdout);
    // The key is never written to the token store.
    for f in std::fs::read_dir(dir).expect("token dir") {
        let text = std::fs::read_to_string(f.expect("entry").path()).unwrap_or_default();
        assert!(
            !text.contains(&b64[20..60]),
            "the private key reached the token store"
        );
    }
    let log = srv.stop().await;
    assert!(
        !log.contains(&b64[20..60]),
        "the private key reached the log"
    );
}

/// A client secret is bound to one issuer: without `--issuer` it is not
/// accepted, and against a server whose authorization server is another
/// issuer the login stops before any request carries it.
#[tokio::test]
async fn a_client_secret_never_meets_another_issuer() {
    let env = Env::new();
    let (client_id, secret) = env
        .add_client(
            "mcpgate CLI",
            "http://127.0.0.1/callback",
            &["--auth-method", "client_secret_basic"],
        )
        .await;
    let secret_file = env.write("client.secret", &secret.expect("secret"));
    // Debug logging names every request the server sees.
    let srv = env
        .serve_with(ServeOpts {
            env: vec![("MCPGATE_LOG".into(), "debug".into())],
            ..ServeOpts::default()
        })
        .await;
    let tokens = tempfile::tempdir().expect("token dir");
    let dir = tokens.path();
    let secret_arg = secret_file.to_str().unwrap();
    // Fails before any authorization, so no user is played.
    let run = |extra: Vec<&str>| {
        let mut args = vec!["login"];
        args.extend(client_args(dir, &srv.resource));
        args.extend(extra);
        let args: Vec<String> = args.into_iter().map(str::to_string).collect();
        let env = &env;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            env.cli(&args).await
        }
    };
    let out = run(vec![
        "--client-id",
        &client_id,
        "--client-secret-file",
        secret_arg,
    ])
    .await;
    assert!(!out.status.success());
    assert!(out.stderr.contains("--issuer"), "{}", out.stderr);
    let other = "https://as.elsewhere.example";
    let args = vec![
        "--client-id",
        &client_id,
        "--client-secret-file",
        secret_arg,
        "--issuer",
        other,
    ];
    let out = run(args).await;
    assert!(!out.status.success());
    assert!(
        out.stderr.contains(&format!(
            "the server's authorization server is {}, but the client credentials given are for {other}",
            srv.issuer
        )),
        "{}",
        out.stderr
    );
    let log = srv.stop().await;
    // The log names every request: discovery happened, no token request.
    assert!(
        log.contains("/.well-known/oauth-protected-resource"),
        "{log}"
    );
    assert!(
        !log.contains("/oauth/token"),
        "a token request was made:\n{log}"
    );
    assert!(!log.contains("client registered dynamically"), "{log}");
}

/// Waits (bounded) until the server log says `what`.
async fn log_says(srv: &Server, what: &str) {
    for _ in 0..200 {
        if srv.log_text().contains(what) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server log never said {what:?}:\n{}", srv.log_text());
}

/// A host's `notifications/cancelled` names the host's id; the bridge sends
/// it on under the id the server knows, so the call stops at the server,
/// and the host gets no answer for it.
#[tokio::test]
async fn bridge_cancels_at_the_server() {
    let (env, srv, tokens) = setup_testing_upstream().await;
    let url = srv.url("/mcp/testing");
    let dir = tokens.path();
    let out = login_to(&env, &srv, dir, &url, &[]).await;
    assert!(out.status.success(), "login failed:\n{}", out.stderr);
    let mut child = bridge_command(&env, dir, &url)
        .spawn()
        .expect("spawn bridge");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    send(
        &mut stdin,
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "raw-host", "version": "1"}}}),
    )
    .await;
    assert_eq!(recv(&mut stdout).await["id"], 0);
    send(
        &mut stdin,
        json!({"jsonrpc": "2.0", "id": "long", "method": "tools/call",
        "params": {"name": "slow", "arguments": {"ms": 60000}}}),
    )
    .await;
    log_says(&srv, "slow call started").await;
    send(
        &mut stdin,
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": "long", "reason": "the user pressed stop"}}),
    )
    .await;
    log_says(&srv, "slow call cancelled").await;
    // The host still gets answers, and none for the cancelled request.
    send(
        &mut stdin,
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    )
    .await;
    let m = recv(&mut stdout).await;
    assert_eq!(m["id"], 2, "{m}");
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the bridge exits when stdin closes")
        .expect("wait");
    let rest = String::from_utf8_lossy(&out.stdout);
    assert!(
        !rest.contains("\"long\""),
        "an answer to the cancelled request: {rest}"
    );
    srv.stop().await;
}

/// An upstream that acts with each user's own account (`user_oauth`): the
/// third party's authorization server is a second, independent mcpgate AS
/// in this process, the upstream the HTTP testing fixture. `mcpgate call`
/// shows the connect URL of the URL-elicitation-required error and retries
/// until the user has connected; the call then runs with the user's own
/// third-party token, which is in no output or log.
#[tokio::test]
async fn call_waits_while_the_user_connects_their_own_account() {
    use mcpgate_testkit::{Options, TestAs};
    const GW_SECRET: &str = "gateway-at-upstream-secret-0123456789";
    let (_, upstream) = mcpgate_upstreams::serve_testing_http()
        .await
        .expect("testing upstream");
    let up_url = upstream.url();
    let audience = up_url.clone();
    let tp = TestAs::start_with(Options {
        tweak: Box::new(move |s| {
            s.resources = vec![mcpgate_authz::ResourceDef::new(audience, "Upstream Co")];
        }),
        ..Default::default()
    })
    .await;
    tp.add_user("alice-at-up", &[]).await;
    let secret_file = tempfile::NamedTempFile::new().expect("secret file");
    std::fs::write(secret_file.path(), GW_SECRET).expect("write secret");
    let env = Env::with_config(&format!(
        r#"
[gateway]
dev_allow_http_loopback_token_url = true

[[upstream]]
name = "up"
title = "Upstream Co"
http = {{ url = "{up_url}" }}
scopes = ["notes:read"]
auth = {{ type = "user_oauth", issuer = "{tp}", client_id = "gw", client_secret = "${{file:{secret}}}", scopes = ["notes:read", "offline_access"], resource = "{up_url}" }}
"#,
        tp = tp.issuer,
        secret = secret_file.path().display()
    ));
    env.add_user(USER, PASSWORD).await;
    let srv = env.serve().await;
    let spec = mcpgate_authz::admin::ClientSpec {
        client_id: Some("gw".into()),
        name: "mcpgate gateway".into(),
        redirect_uris: vec![format!("{}/connect/up/callback", srv.issuer)],
        auth_method: mcpgate_types::client_metadata::TokenEndpointAuthMethod::ClientSecretBasic,
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        scopes: vec![],
        secret: Some(GW_SECRET.into()),
        jwks: None,
        jwks_uri: None,
    };
    mcpgate_authz::admin::create_client(&tp.admin(), &spec, false)
        .await
        .expect("the gateway's client at the third party");

    let tokens = tempfile::tempdir().expect("token dir");
    let dir = tokens.path();
    let url = srv.url("/mcp/up");
    let out = login_to(&env, &srv, dir, &url, &[]).await;
    assert!(out.status.success(), "login failed:\n{}", out.stderr);
    let mut secrets = stored_secrets(dir);

    // The call asks for the account, shows the URL once, and waits.
    let mut cmd = env.command();
    cmd.args(["call"])
        .args(client_args(dir, &url))
        .args(["echo", r#"{"text": "hello upstream"}"#])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn mcpgate call");
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut shown = Vec::new();
    let connect_url = loop {
        let line = tokio::time::timeout(Duration::from_secs(30), stderr.next_line())
            .await
            .expect("the call shows a URL")
            .expect("stderr")
            .unwrap_or_else(|| panic!("the call ended early: {shown:?}"));
        shown.push(line.clone());
        if let Some(u) = line
            .trim()
            .strip_prefix(&format!("{}/connect/up?", srv.issuer))
        {
            break format!("{}/connect/up?{u}", srv.issuer);
        }
    };
    assert!(shown.iter().any(|l| l.contains("Upstream Co")), "{shown:?}");

    // The user connects in a browser: sign-in here, the connect page, the
    // third party's sign-in and consent, back to the callback.
    let mut b = Browser::new();
    let page = b.authorize_as(&srv.issuer, &connect_url, USER).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let to_tp = b
        .post_form(&srv.url("/connect/up"), &page.hidden_inputs())
        .await;
    assert_eq!(to_tp.status, 303, "{}", to_tp.body);
    let mut tp_b = Browser::new();
    let at_tp = tp_b
        .authorize_as(
            &tp.issuer,
            to_tp.location.as_deref().unwrap(),
            "alice-at-up",
        )
        .await;
    let back = tp_b.approve_if_asked(&tp.issuer, at_tp).await;
    assert_eq!(back.status, 303, "{}", back.body);
    let done = b.get(back.location.as_deref().unwrap()).await;
    assert!(done.body.contains("is connected"), "{}", done.body);

    // The waiting call goes through.
    let rest = tokio::spawn(async move {
        let mut lines = Vec::new();
        while let Ok(Some(l)) = stderr.next_line().await {
            lines.push(l);
        }
        lines
    });
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the call finishes once connected")
        .expect("wait");
    shown.extend(rest.await.unwrap());
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}\n{shown:#?}");
    assert!(stdout.contains("hello upstream"), "{stdout}");
    assert_eq!(
        shown
            .iter()
            .filter(|l| l.contains("/connect/up?elicitation="))
            .count(),
        1,
        "the URL is shown once: {shown:#?}"
    );

    // The upstream got the user's own third-party token; it is in no output
    // and no log, and the CLI's token never reached the upstream.
    let all = upstream.recorded_headers().all();
    let seen = all
        .last()
        .and_then(|r| r.header("authorization"))
        .and_then(|a| a.strip_prefix("Bearer "))
        .expect("a bearer token at the upstream")
        .to_string();
    let claims = tp
        .state
        .current_verifier()
        .verify::<Value>(
            &seen,
            &mcpgate_jose::VerifyOptions {
                issuer: &tp.issuer,
                audience: Some(&up_url),
                typ: None,
                now: mcpgate_jose::Clock::now(&tp.clock),
                leeway: 0,
            },
        )
        .expect("a third-party token for the upstream")
        .claims;
    let alice_up = tp.store.get_user_by_username("alice-at-up").await.unwrap();
    assert_eq!(claims["sub"], alice_up.id);
    for r in &all {
        assert_no_secret(
            &secrets,
            "the upstream's request",
            &format!("{:?}", r.header("authorization")),
        );
    }
    secrets.push(seen);
    let log = std::fs::read_to_string(&srv.log).unwrap_or_default();
    assert_no_secret(&secrets, "the server log", &log);
    assert_no_secret(&secrets, "the call's output", &format!("{stdout}{shown:?}"));

    // The operator sees the connection (never its tokens) and the audit
    // record of the elicitation, and can unlink it.
    let listed = env.cli_ok(&["users", "connections", USER]).await;
    assert!(
        listed
            .stdout
            .starts_with("up\tscope=[notes:read offline_access]"),
        "{}",
        listed.stdout
    );
    assert_no_secret(&secrets, "users connections", &listed.stdout);
    let audit = env
        .cli_ok(&["audit", "--decision", "connect_account", "--json"])
        .await;
    assert!(
        audit.stdout.contains("account_not_connected"),
        "{}",
        audit.stdout
    );
    let unlinked = env
        .cli_ok(&["users", "connections", USER, "--unlink", "up"])
        .await;
    assert!(
        unlinked.stdout.contains("disconnected"),
        "{}",
        unlinked.stdout
    );
    let listed = env.cli_ok(&["users", "connections", USER]).await;
    assert!(
        listed.stdout.contains("no connected accounts"),
        "{}",
        listed.stdout
    );
    // Revoked at the third party too (RFC 7009): no live refresh family left.
    let now = mcpgate_jose::Clock::now(&tp.clock);
    let live = tp.store.list_families(None, now).await.unwrap();
    assert!(live.is_empty(), "{live:?}");
    srv.stop().await;
}
