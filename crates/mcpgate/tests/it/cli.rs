//! The operator CLI against a running server on the same data dir:
//! `users`, `clients`, `consents` and `keys`.

use mcpgate_testkit::Browser;

use crate::flow::{self, REDIRECT};
use crate::harness::{Env, ServeOpts, Server};

/// The per-account login limit (5 a minute by default) would otherwise
/// throttle the many sign-ins of one test.
const RELAXED_LOGIN_LIMITS: &str =
    "[authorization_server.login]\nper_account = 100\nper_ip = 1000\n";

fn user_line<'a>(list: &'a str, name: &str) -> Option<&'a str> {
    list.lines().find(|l| l.split('\t').next() == Some(name))
}

#[tokio::test]
async fn users_add_list_passwd_remove() {
    let env = Env::with_config(RELAXED_LOGIN_LIMITS);
    let srv = env.serve().await;
    let (client_id, _) = env.add_client("Users test app", REDIRECT, &[]).await;

    // Without --password-file: a one-time password, shown once.
    let out = env.cli_ok(&["users", "add", "bob"]).await;
    assert!(out.stdout.contains("added user bob"), "{}", out.stdout);
    let otp = out.field("one-time password:");
    assert!(otp.len() >= 12, "one-time password too short: {otp:?}");
    // With a password file and a group.
    let f = env.write("dave.pw", "dave's long password\n");
    env.cli_ok(&[
        "users",
        "add",
        "dave",
        "--group",
        "editors",
        "--password-file",
        f.to_str().unwrap(),
    ])
    .await;
    let dup = env.cli(&["users", "add", "bob"]).await;
    assert!(
        !dup.status.success(),
        "adding bob twice succeeded: {}",
        dup.stdout
    );

    let list = env.cli_ok(&["users", "list"]).await.stdout;
    let bob = user_line(&list, "bob").unwrap_or_else(|| panic!("bob not listed:\n{list}"));
    assert!(bob.contains("one-time password"), "{bob}");
    assert!(
        !list.contains(&otp),
        "users list shows the one-time password"
    );
    let dave = user_line(&list, "dave").unwrap_or_else(|| panic!("dave not listed:\n{list}"));
    assert!(
        dave.contains("groups=[editors]") && !dave.contains("one-time"),
        "{dave}"
    );

    // First sign-in with the one-time password goes through "choose a new password".
    let mut b = Browser::new();
    let req = flow::request(&srv, &client_id);
    let page = flow::sign_in(
        &mut b,
        &srv,
        &req.url(&srv.issuer),
        "bob",
        &otp,
        Some("bob's own password"),
    )
    .await;
    let page = flow::approve(&mut b, &srv, &page).await;
    let code = flow::code_from(&srv, &req, &page);
    let bob_tokens = flow::redeem(&srv, &req, &code, None).await;
    let list = env.cli_ok(&["users", "list"]).await.stdout;
    assert!(
        !user_line(&list, "bob").unwrap().contains("one-time"),
        "{list}"
    );
    // The one-time password is spent; the new one works without the page.
    let failed = flow::sign_in(
        &mut Browser::new(),
        &srv,
        &req.url(&srv.issuer),
        "bob",
        &otp,
        None,
    )
    .await;
    assert_eq!(failed.status, 401, "the one-time password still works");
    let req = flow::request(&srv, &client_id);
    let code = flow::authorize(&mut Browser::new(), &srv, &req, "bob", "bob's own password").await;
    flow::redeem(&srv, &req, &code, None).await;

    // Groups from the CLI land in the access token.
    let req = flow::request(&srv, &client_id);
    let code = flow::authorize(
        &mut Browser::new(),
        &srv,
        &req,
        "dave",
        "dave's long password",
    )
    .await;
    let dave_tokens = flow::redeem(&srv, &req, &code, None).await;
    let (_, verifier) = flow::jwks(&srv).await;
    let at = flow::verify(&verifier, &srv, &dave_tokens.access).expect("verifies");
    assert_eq!(
        at.claims["groups"],
        serde_json::json!(["editors"]),
        "{}",
        at.claims
    );

    // disable: dave cannot sign in and his refresh token is refused; enable
    // lets him back.
    let out = env.cli_ok(&["users", "disable", "dave"]).await;
    assert!(out.stdout.contains("disabled user dave"), "{}", out.stdout);
    let list = env.cli_ok(&["users", "list"]).await.stdout;
    assert!(
        user_line(&list, "dave").unwrap().contains("disabled"),
        "{list}"
    );
    let req = flow::request(&srv, &client_id);
    let failed = flow::sign_in(
        &mut Browser::new(),
        &srv,
        &req.url(&srv.issuer),
        "dave",
        "dave's long password",
        None,
    )
    .await;
    assert_eq!(failed.status, 401, "a disabled user signed in");
    let (status, v) = flow::refresh_raw(&srv, &client_id, dave_tokens.refresh(), None).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    assert!(
        env.cli(&["users", "disable", "nobody-here"])
            .await
            .stderr
            .contains("nobody-here")
    );
    env.cli_ok(&["users", "enable", "dave"]).await;
    let list = env.cli_ok(&["users", "list"]).await.stdout;
    assert!(
        !user_line(&list, "dave").unwrap().contains("disabled"),
        "{list}"
    );
    let req = flow::request(&srv, &client_id);
    let code = flow::authorize(
        &mut Browser::new(),
        &srv,
        &req,
        "dave",
        "dave's long password",
    )
    .await;
    flow::redeem(&srv, &req, &code, None).await;

    // passwd with a file: the old password stops working, the new one works.
    let f = env.write("bob2.pw", "bob's second password\n");
    let out = env
        .cli_ok(&[
            "users",
            "passwd",
            "bob",
            "--password-file",
            f.to_str().unwrap(),
        ])
        .await;
    assert!(
        out.stdout.contains("password of bob changed"),
        "{}",
        out.stdout
    );
    let req = flow::request(&srv, &client_id);
    let failed = flow::sign_in(
        &mut Browser::new(),
        &srv,
        &req.url(&srv.issuer),
        "bob",
        "bob's own password",
        None,
    )
    .await;
    assert_eq!(failed.status, 401, "the replaced password still works");
    let code = flow::authorize(
        &mut Browser::new(),
        &srv,
        &req,
        "bob",
        "bob's second password",
    )
    .await;
    flow::redeem(&srv, &req, &code, None).await;

    // passwd without a file: a new one-time password, and the page again.
    let otp2 = env
        .cli_ok(&["users", "passwd", "bob"])
        .await
        .field("one-time password for bob:");
    assert_ne!(otp2, otp);
    let list = env.cli_ok(&["users", "list"]).await.stdout;
    assert!(
        user_line(&list, "bob")
            .unwrap()
            .contains("one-time password"),
        "{list}"
    );
    let req = flow::request(&srv, &client_id);
    let mut b = Browser::new();
    let page = flow::sign_in(
        &mut b,
        &srv,
        &req.url(&srv.issuer),
        "bob",
        &otp2,
        Some("bob's third password"),
    )
    .await;
    assert!(flow::is_confirm_page(&page), "{}", page.body);
    let page = b.approve_if_asked(&srv.issuer, page).await;
    flow::code_from(&srv, &req, &page);

    // remove: gone from the list, cannot sign in, their refresh token is dead.
    let out = env.cli_ok(&["users", "remove", "bob"]).await;
    assert!(out.stdout.contains("removed user bob"), "{}", out.stdout);
    let list = env.cli_ok(&["users", "list"]).await.stdout;
    assert!(
        user_line(&list, "bob").is_none() && user_line(&list, "dave").is_some(),
        "{list}"
    );
    let req = flow::request(&srv, &client_id);
    let failed = flow::sign_in(
        &mut Browser::new(),
        &srv,
        &req.url(&srv.issuer),
        "bob",
        "bob's third password",
        None,
    )
    .await;
    assert_eq!(failed.status, 401, "a removed user signed in");
    let (status, v) = flow::refresh_raw(&srv, &client_id, bob_tokens.refresh(), None).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    let gone = env.cli(&["users", "remove", "bob"]).await;
    assert!(!gone.status.success(), "removing a missing user succeeded");
    srv.stop().await;
}

#[tokio::test]
async fn clients_and_consents() {
    let env = Env::new();
    let srv = env.serve().await;
    env.add_user("alice", "alice's long password").await;
    let (public_id, none) = env.add_client("Public notes app", REDIRECT, &[]).await;
    assert!(none.is_none());
    let (conf_id, secret) = env
        .add_client(
            "Confidential notes app",
            REDIRECT,
            &["--auth-method", "client_secret_post"],
        )
        .await;
    let secret = secret.expect("a confidential client gets its secret once");
    let fixed = env
        .add_client("Fixed id app", REDIRECT, &["--client-id", "fixed-app"])
        .await
        .0;
    assert_eq!(fixed, "fixed-app");

    let list = env.cli_ok(&["clients", "list"]).await.stdout;
    for (id, name) in [
        (&public_id, "Public notes app"),
        (&conf_id, "Confidential notes app"),
        (&fixed, "Fixed id app"),
    ] {
        let line = list
            .lines()
            .find(|l| l.starts_with(id.as_str()))
            .unwrap_or_else(|| panic!("{id} not listed:\n{list}"));
        assert!(line.contains(name) && line.contains(REDIRECT), "{line}");
    }
    assert!(
        list.lines()
            .any(|l| l.starts_with(conf_id.as_str()) && l.contains("client_secret_post")),
        "{list}"
    );
    assert!(!list.contains(&secret), "clients list shows a secret");

    assert!(
        env.cli_ok(&["consents", "list"])
            .await
            .stdout
            .contains("no consents")
    );
    let mut b = Browser::new();
    let req = flow::request(&srv, &public_id);
    let code = flow::authorize(&mut b, &srv, &req, "alice", "alice's long password").await;
    let tokens = flow::redeem(&srv, &req, &code, None).await;
    // The confidential client authenticates with client_secret_post.
    let creq = flow::request(&srv, &conf_id);
    let code = flow::authorize(&mut b, &srv, &creq, "alice", "alice's long password").await;
    let mut form = creq.token_form(&code);
    form.push(("client_secret".into(), secret.clone()));
    let (status, v) =
        mcpgate_testkit::post_form(&srv.http, &srv.url("/oauth/token"), &form, None).await;
    assert_eq!(status, 200, "{v}");

    let list = env.cli_ok(&["consents", "list"]).await.stdout;
    let line = list
        .lines()
        .find(|l| l.contains(&public_id))
        .unwrap_or_else(|| panic!("no consent for {public_id}:\n{list}"));
    assert!(line.starts_with("alice\t"), "{line}");
    assert!(
        line.contains("scopes=[notes:read offline_access]"),
        "{line}"
    );
    assert!(
        line.contains(&format!("resources=[{}]", srv.resource)),
        "{line}"
    );
    let mine = env
        .cli_ok(&["consents", "list", "--user", "alice"])
        .await
        .stdout;
    assert_eq!(mine.lines().count(), 2, "{mine}");

    // Revoking the consent kills the refresh token and asks for consent again;
    // the access token in use stops working at the gateway of the serving
    // process within a second of the CLI process's revocation.
    assert_eq!(mcp_status(&srv, &tokens.access).await, 200);
    let out = env
        .cli_ok(&["consents", "revoke", "alice", &public_id])
        .await;
    assert!(out.stdout.contains("revoked"), "{}", out.stdout);
    let revoked = std::time::Instant::now();
    while mcp_status(&srv, &tokens.access).await != 401 {
        assert!(
            revoked.elapsed() < std::time::Duration::from_secs(1),
            "the access token still works 1 s after consents revoke"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (status, v) = flow::refresh_raw(&srv, &public_id, tokens.refresh(), None).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    let list = env.cli_ok(&["consents", "list"]).await.stdout;
    assert!(
        !list.contains(&public_id) && list.contains(&conf_id),
        "{list}"
    );
    let req = flow::request(&srv, &public_id);
    let page = b.get(&req.url(&srv.issuer)).await;
    assert!(
        flow::is_consent_page(&page),
        "no consent asked after revocation: {} {:?}",
        page.status,
        page.location
    );
    let again = env.cli(&["consents", "revoke", "alice", &public_id]).await;
    assert!(
        !again.status.success(),
        "revoking a missing consent succeeded"
    );

    // Removing a client: gone from the list, and /authorize shows an error
    // page instead of redirecting anywhere.
    let out = env.cli_ok(&["clients", "remove", &public_id]).await;
    assert!(out.stdout.contains("removed client"), "{}", out.stdout);
    let list = env.cli_ok(&["clients", "list"]).await.stdout;
    assert!(
        !list.contains(&public_id) && list.contains(&conf_id),
        "{list}"
    );
    let page = b.get(&req.url(&srv.issuer)).await;
    assert_eq!(
        (page.status, page.location.as_deref()),
        (400, None),
        "{}",
        page.body
    );
    let gone = env.cli(&["clients", "remove", &public_id]).await;
    assert!(
        !gone.status.success(),
        "removing a missing client succeeded"
    );
    srv.stop().await;
}

fn key_lines(list: &str) -> Vec<&str> {
    list.lines().filter(|l| l.contains('\t')).collect()
}

#[tokio::test]
async fn keys_list_and_rotate() {
    let env = Env::new();
    let none = env.cli_ok(&["keys", "list"]).await.stdout;
    assert!(none.contains("no keys yet"), "{none}");
    let srv = env.serve().await;
    let list = env.cli_ok(&["keys", "list"]).await.stdout;
    let lines = key_lines(&list);
    assert_eq!(lines.len(), 1, "{list}");
    assert!(lines[0].contains("active"), "{list}");
    let old_kid = lines[0].split('\t').next().unwrap().to_string();
    let (doc, _) = flow::jwks(&srv).await;
    assert_eq!(flow::kids(&doc), vec![old_kid.clone()]);

    env.add_user("alice", "alice's long password").await;
    let (client_id, _) = env.add_client("Keys app", REDIRECT, &[]).await;
    let req = flow::request(&srv, &client_id);
    let code = flow::authorize(
        &mut Browser::new(),
        &srv,
        &req,
        "alice",
        "alice's long password",
    )
    .await;
    let old = flow::redeem(&srv, &req, &code, None).await;

    let out = env.cli_ok(&["keys", "rotate"]).await;
    let new_kid = out
        .field("new active key")
        .split_whitespace()
        .next()
        .unwrap()
        .trim_end_matches(';')
        .to_string();
    assert_ne!(new_kid, old_kid);
    let list = env.cli_ok(&["keys", "list"]).await.stdout;
    let lines = key_lines(&list);
    assert_eq!(lines.len(), 2, "{list}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&new_kid) && l.contains("active")),
        "{list}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&old_kid) && l.contains("previous")),
        "{list}"
    );

    // A running server re-reads keys once a minute; a restart picks them up at once.
    let port = srv.port;
    srv.stop().await;
    let srv = env
        .serve_with(ServeOpts {
            port: Some(port),
            ..ServeOpts::default()
        })
        .await;
    let (doc, verifier) = flow::jwks(&srv).await;
    assert_eq!(
        flow::kids(&doc),
        vec![new_kid.clone(), old_kid.clone()],
        "JWKS after rotation: {doc}"
    );
    let at = flow::verify(&verifier, &srv, &old.access)
        .expect("a token of the previous key verifies during the grace period");
    assert_eq!(at.kid, old_kid);
    let refreshed = flow::refresh(&srv, &client_id, old.refresh(), None).await;
    let at = flow::verify(&verifier, &srv, &refreshed.access).expect("verifies");
    assert_eq!(at.kid, new_kid, "new tokens are signed by the new key");
    srv.stop().await;
}

#[tokio::test]
async fn rotated_key_is_retired_after_the_grace_period() {
    let env =
        Env::with_config("[authorization_server]\naccess_token_ttl_secs = 1\nkey_grace_secs = 1\n");
    let srv = env.serve().await;
    env.add_user("alice", "alice's long password").await;
    let (client_id, _) = env.add_client("Grace app", REDIRECT, &[]).await;
    let req = flow::request(&srv, &client_id);
    let code = flow::authorize(
        &mut Browser::new(),
        &srv,
        &req,
        "alice",
        "alice's long password",
    )
    .await;
    let old = flow::redeem(&srv, &req, &code, None).await;
    let (doc, _) = flow::jwks(&srv).await;
    let old_kid = flow::kids(&doc).remove(0);

    env.cli_ok(&["keys", "rotate"]).await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let port = srv.port;
    srv.stop().await;
    let srv = env
        .serve_with(ServeOpts {
            port: Some(port),
            ..ServeOpts::default()
        })
        .await;
    let (doc, verifier) = flow::jwks(&srv).await;
    let kids = flow::kids(&doc);
    assert_eq!(
        kids.len(),
        1,
        "the previous key outlived its grace period: {doc}"
    );
    assert_ne!(kids[0], old_kid);
    assert!(
        matches!(
            verifier.verify::<serde_json::Value>(
                &old.access,
                &mcpgate_jose::VerifyOptions {
                    issuer: &srv.issuer,
                    audience: Some(&srv.resource),
                    typ: Some("at+jwt"),
                    now: 0,
                    leeway: 0,
                }
            ),
            Err(mcpgate_jose::JwtError::UnknownKid)
        ),
        "a token of a retired key still verifies"
    );
    let list = env.cli_ok(&["keys", "list"]).await.stdout;
    assert!(
        list.lines()
            .any(|l| l.starts_with(&old_kid) && l.contains("retired")),
        "{list}"
    );
    // The refresh token is unaffected by key retirement.
    let refreshed = flow::refresh(&srv, &client_id, old.refresh(), None).await;
    assert_eq!(
        flow::verify(&verifier, &srv, &refreshed.access)
            .expect("verifies")
            .kid,
        kids[0]
    );
    srv.stop().await;
}

/// `mcpgate audit` reads the gateway's decisions back from the store,
/// filtered by user (a local username is mcpgate's own issuer and that
/// user's id), decision and upstream; bad filters are clear errors.
#[tokio::test]
async fn audit_reads_and_filters_the_gateway_log() {
    let env = Env::new();
    let srv = env.serve().await;
    env.add_user("alice", "alice's long password").await;
    let (client_id, _) = env.add_client("Audit app", REDIRECT, &[]).await;
    let mut b = Browser::new();
    let req = flow::request(&srv, &client_id);
    let code = flow::authorize(&mut b, &srv, &req, "alice", "alice's long password").await;
    let tokens = flow::redeem(&srv, &req, &code, None).await;
    let mcp = srv.url("/mcp/notes");
    let init = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "audit-test", "version": "1"}}});
    // One request without a token, one with alice's.
    let r = srv.http.post(&mcp).json(&init).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = srv
        .http
        .post(&mcp)
        .bearer_auth(&tokens.access)
        .header("accept", "application/json, text/event-stream")
        .json(&init)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let json_lines = |out: &str| -> Vec<serde_json::Value> {
        out.lines()
            .map(|l| serde_json::from_str(l).expect("one JSON record per line"))
            .collect()
    };
    // The audit writer batches: wait until both are in the store.
    let mut all = Vec::new();
    for _ in 0..100 {
        all = json_lines(&env.cli_ok(&["audit", "--json"]).await.stdout);
        if all.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(all.len(), 2, "{all:?}");
    // (This CLI's config is the embedded one; the server's issuer has the
    // port `serve --listen` chose, so it is named.)
    let args = [
        "audit",
        "--json",
        "--user",
        "alice",
        "--issuer",
        &srv.issuer,
    ];
    let alice = json_lines(&env.cli_ok(&args).await.stdout);
    assert_eq!(alice.len(), 1, "{alice:?}");
    assert_eq!(alice[0]["decision"], "allow");
    assert_eq!(alice[0]["method"], "initialize");
    assert_eq!(alice[0]["client_id"], client_id.as_str());
    assert_eq!(alice[0]["issuer"], srv.issuer.as_str());
    let denied = json_lines(
        &env.cli_ok(&["audit", "--json", "--decision", "unauthenticated"])
            .await
            .stdout,
    );
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["status"], 401);
    let text = env.cli_ok(&["audit", "--upstream", "notes"]).await.stdout;
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.contains("allow/allowed\t200\tnotes\tinitialize"),
        "{text}"
    );
    let none = env.cli_ok(&["audit", "--upstream", "elsewhere"]).await;
    assert!(none.stdout.is_empty() && none.stderr.contains("no audit records match"));
    // Records older than an hour: none yet.
    let old = env
        .cli_ok(&["audit", "--json", "--until", "1h"])
        .await
        .stdout;
    assert!(old.is_empty(), "{old}");
    for (args, says) in [
        (&["audit", "--decision", "maybe"][..], "one of allow, deny"),
        (
            &["audit", "--since", "yesterday"][..],
            "a number and a unit",
        ),
        (&["audit", "--since", "5w"][..], "the unit must be"),
    ] {
        let out = env.cli(args).await;
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(out.stderr.contains(says), "{args:?}: {}", out.stderr);
    }
    srv.stop().await;
}

/// `mcpgate sessions`: a user's sign-in sessions are listed (by a handle,
/// never the cookie) and ended, one or all; an ended session must sign in
/// again before the next authorization.
#[tokio::test]
async fn sessions_list_and_end() {
    let env = Env::new();
    let srv = env.serve().await;
    env.add_user("alice", "alice's long password").await;
    let (client_id, _) = env.add_client("Sessions app", REDIRECT, &[]).await;
    let req = flow::request(&srv, &client_id);
    let mut b = Browser::new();
    flow::authorize(&mut b, &srv, &req, "alice", "alice's long password").await;
    let list = env
        .cli_ok(&["sessions", "list", "--user", "alice"])
        .await
        .stdout;
    let line = list.lines().next().unwrap_or_default();
    assert!(line.contains("\talice\tsigned in "), "{list}");
    let handle = line.split('\t').next().unwrap().to_string();
    assert_eq!(handle.len(), 12, "{line}");
    assert!(
        !list.contains(b.cookie("__Host-mcpgate-session").unwrap_or("no cookie")),
        "the cookie is never shown"
    );
    // Signed in: the next authorization asks no sign-in, only the click a
    // public client's loopback redirect needs, and goes back with a code.
    let page = b.get(&req.url(&srv.issuer)).await;
    assert!(flow::is_confirm_page(&page), "{}", page.body);
    let page = b.approve_if_asked(&srv.issuer, page).await;
    assert!(
        page.location
            .as_deref()
            .is_some_and(|l| l.starts_with(REDIRECT)),
        "{:?}",
        page.location
    );
    // Ended: the same browser is sent to sign in.
    let out = env.cli_ok(&["sessions", "end", &handle]).await;
    assert!(out.stdout.contains("ended session"), "{}", out.stdout);
    let page = b.get(&req.url(&srv.issuer)).await;
    assert!(
        page.location
            .as_deref()
            .is_some_and(|l| l.contains("/login")),
        "{:?}",
        page.location
    );
    assert!(
        env.cli_ok(&["sessions", "list"])
            .await
            .stdout
            .contains("no sessions")
    );
    // All of a user's sessions at once.
    for _ in 0..2 {
        let mut b = Browser::new();
        flow::authorize(&mut b, &srv, &req, "alice", "alice's long password").await;
    }
    let out = env.cli_ok(&["sessions", "end", "--user", "alice"]).await;
    assert!(
        out.stdout.contains("ended 2 session(s) of alice"),
        "{}",
        out.stdout
    );
    for (args, says) in [
        (&["sessions", "end", "abc"][..], "give the 12 characters"),
        (&["sessions", "end", "0123456789ab"][..], "no live session"),
        (&["sessions", "end", "--user", "nobody"][..], "not found"),
        (&["sessions", "end"][..], "required"),
    ] {
        let out = env.cli(args).await;
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(out.stderr.contains(says), "{args:?}: {}", out.stderr);
    }
    srv.stop().await;
}

/// The status of an MCP `initialize` at the default resource with `token`.
async fn mcp_status(srv: &Server, token: &str) -> u16 {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "cli-test", "version": "0"}}});
    srv.http
        .post(&srv.resource)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .json(&body)
        .send()
        .await
        .expect("POST to the gateway")
        .status()
        .as_u16()
}
