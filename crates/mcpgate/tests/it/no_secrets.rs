//! At `MCPGATE_LOG=debug`, no secret reaches the log: not the passwords, the
//! code, the tokens, the client secret, or what crosses the gateway (the
//! bearer token of an MCP request, a forged one, one put in the query, the
//! session id).

use mcpgate_testkit::Browser;

use crate::flow::{self, REDIRECT};
use crate::harness::{Env, ServeOpts};

#[tokio::test]
async fn debug_log_holds_no_secret() {
    let env = Env::new();
    let srv = env
        .serve_with(ServeOpts {
            env: vec![("MCPGATE_LOG".into(), "debug".into())],
            ..ServeOpts::default()
        })
        .await;
    let otp = env
        .cli_ok(&["users", "add", "carol"])
        .await
        .field("one-time password:");
    let (client_id, secret) = env
        .add_client(
            "Confidential app",
            REDIRECT,
            &["--auth-method", "client_secret_basic"],
        )
        .await;
    let secret = secret.expect("a confidential client gets a secret");
    let basic = Some((client_id.as_str(), secret.as_str()));
    let password = "carol's chosen password";

    let mut b = Browser::new();
    let req = flow::request(&srv, &client_id);
    let page = flow::sign_in(
        &mut b,
        &srv,
        &req.url(&srv.issuer),
        "carol",
        &otp,
        Some(password),
    )
    .await;
    let page = flow::approve(&mut b, &srv, &page).await;
    let code = flow::code_from(&srv, &req, &page);
    let tokens = flow::redeem(&srv, &req, &code, basic).await;
    let refreshed = flow::refresh(&srv, &client_id, tokens.refresh(), basic).await;

    // Through the gateway: a session with the access token, a forged token
    // and a token in the query (both refused).
    let mcp = srv.url("/mcp/notes");
    let post = |auth: Option<String>, url: &str, body: serde_json::Value| {
        let mut r = srv
            .http
            .post(url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-protocol-version", "2025-11-25")
            .body(body.to_string());
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.send()
    };
    let init = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    let r = post(
        Some(format!("Bearer {}", refreshed.access)),
        &mcp,
        init.clone(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let session = r.headers()["mcp-session-id"].to_str().unwrap().to_string();
    let forged = format!("{}x", refreshed.access);
    let r = post(Some(format!("Bearer {forged}")), &mcp, init.clone())
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let in_query = format!("{mcp}?access_token={}", tokens.access);
    let r = post(None, &in_query, init).await.unwrap();
    assert_eq!(r.status(), 400);

    // A failed sign-in with the (now replaced) one-time password, and a code replay, log too.
    // (Last: the replay revokes the grant, and with it the access tokens used above.)
    let mut b2 = Browser::new();
    let req2 = flow::request(&srv, &client_id);
    let failed = flow::sign_in(&mut b2, &srv, &req2.url(&srv.issuer), "carol", &otp, None).await;
    assert_eq!(failed.status, 401, "{}", failed.body);
    let (status, _) = mcpgate_testkit::post_form(
        &srv.http,
        &srv.url("/oauth/token"),
        &req.token_form(&code),
        basic,
    )
    .await;
    assert_eq!(status, 400);

    let log = srv.stop().await;
    assert!(
        log.contains("DEBUG"),
        "the log is not at debug level:\n{log}"
    );
    assert!(
        log.contains("/oauth/token") && log.contains("/mcp/notes"),
        "requests are not logged:\n{log}"
    );
    assert!(
        !log.contains('\x1b'),
        "a log that is not a terminal carries ANSI colour codes"
    );
    let secrets = [
        ("one-time password", otp.as_str()),
        ("password", password),
        ("authorization code", code.as_str()),
        ("access token", tokens.access.as_str()),
        ("refresh token", tokens.refresh()),
        ("refreshed access token", refreshed.access.as_str()),
        ("rotated refresh token", refreshed.refresh()),
        ("client secret", secret.as_str()),
        ("forged access token", forged.as_str()),
        ("MCP session id", session.as_str()),
    ];
    for (what, s) in secrets {
        assert!(s.len() >= 10, "{what} is suspiciously short: {s:?}");
        assert!(!log.contains(s), "the {what} appears in the debug log");
        // Neither the claims nor the signature of a JWT belong in the log
        // (its header is the same for every token and no secret).
        let parts: Vec<&str> = s.split('.').collect();
        for part in parts
            .iter()
            .skip(usize::from(parts.len() == 3))
            .filter(|p| p.len() >= 16)
        {
            assert!(
                !log.contains(part),
                "part of the {what} appears in the debug log"
            );
        }
    }
}
