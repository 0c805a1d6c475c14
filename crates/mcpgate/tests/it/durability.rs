//! Stop and restart `mcpgate serve` on the same data dir and port: clients,
//! consents, login sessions, the signing key and refresh tokens survive.

use mcpgate_testkit::Browser;

use crate::flow::{self, REDIRECT};
use crate::harness::{Env, ServeOpts};

const PASSWORD: &str = "alice's long password";

#[tokio::test]
async fn state_survives_a_graceful_restart() {
    // Without the reuse grace interval a refresh token refreshes exactly once.
    let env = Env::with_config("[authorization_server]\nrefresh_reuse_grace_secs = 0\n");
    let srv = env.serve().await;
    // The CLI writes to the same SQLite database while the server runs.
    env.add_user("alice", PASSWORD).await;
    let (client_id, secret) = env.add_client("Durable app", REDIRECT, &[]).await;
    assert!(secret.is_none(), "a public client has no secret");

    let mut browser = Browser::new();
    let req = flow::request(&srv, &client_id);
    let page = flow::sign_in(
        &mut browser,
        &srv,
        &req.url(&srv.issuer),
        "alice",
        PASSWORD,
        None,
    )
    .await;
    let page = flow::approve(&mut browser, &srv, &page).await;
    let code = flow::code_from(&srv, &req, &page);
    let before = flow::redeem(&srv, &req, &code, None).await;
    let mut granted: Vec<&str> = before.json["scope"]
        .as_str()
        .unwrap_or("")
        .split(' ')
        .collect();
    granted.sort_unstable();
    assert_eq!(granted, ["notes:read", "offline_access"], "{}", before.json);
    let (jwks_before, _) = flow::jwks(&srv).await;
    let kids_before = flow::kids(&jwks_before);
    assert_eq!(kids_before.len(), 1, "{jwks_before}");

    // A consent page for a second client is open in the browser across the
    // restart: its form (CSRF token) must still be accepted afterwards.
    let (other_id, _) = env.add_client("Second app", REDIRECT, &[]).await;
    let pending_req = flow::request(&srv, &other_id);
    let pending = browser.get(&pending_req.url(&srv.issuer)).await;
    assert!(flow::is_consent_page(&pending), "{}", pending.body);

    let port = srv.port;
    srv.stop().await;
    let srv = env
        .serve_with(ServeOpts {
            port: Some(port),
            ..ServeOpts::default()
        })
        .await;

    // The client is still registered.
    let list = env.cli_ok(&["clients", "list"]).await;
    assert!(list.stdout.contains(&client_id), "{}", list.stdout);

    // The signing key is the same, and the token from before verifies.
    let (jwks_after, verifier) = flow::jwks(&srv).await;
    assert_eq!(
        flow::kids(&jwks_after),
        kids_before,
        "the signing key changed across the restart"
    );
    let at = flow::verify(&verifier, &srv, &before.access)
        .expect("the old access token verifies against the new JWKS");
    assert_eq!(at.kid, kids_before[0]);
    assert_eq!(at.claims["client_id"], client_id.as_str());
    assert_eq!(at.claims["aud"], srv.resource.as_str());

    // The login session survives: the same browser is not asked to sign in,
    // only for the click a public client's loopback redirect always needs.
    let req2 = flow::request(&srv, &client_id);
    let page = browser.get(&req2.url(&srv.issuer)).await;
    assert!(flow::is_confirm_page(&page), "{}", page.body);
    let page = browser.approve_if_asked(&srv.issuer, page).await;
    let code2 = flow::code_from(&srv, &req2, &page);
    flow::redeem(&srv, &req2, &code2, None).await;

    let page = flow::approve(&mut browser, &srv, &pending).await;
    let code = flow::code_from(&srv, &pending_req, &page);
    flow::redeem(&srv, &pending_req, &code, None).await;

    // The consent survives: a new browser signs in and is not asked again.
    let mut fresh = Browser::new();
    let req3 = flow::request(&srv, &client_id);
    let page = flow::sign_in(
        &mut fresh,
        &srv,
        &req3.url(&srv.issuer),
        "alice",
        PASSWORD,
        None,
    )
    .await;
    assert!(
        flow::is_confirm_page(&page),
        "consent was asked again after the restart: {}",
        page.body
    );
    let page = fresh.approve_if_asked(&srv.issuer, page).await;
    let code3 = flow::code_from(&srv, &req3, &page);
    let after = flow::redeem(&srv, &req3, &code3, None).await;
    assert_eq!(
        flow::verify(&verifier, &srv, &after.access)
            .expect("new token verifies")
            .kid,
        kids_before[0]
    );

    // The refresh token from before the restart still refreshes, once.
    let refreshed = flow::refresh(&srv, &client_id, before.refresh(), None).await;
    flow::verify(&verifier, &srv, &refreshed.access).expect("refreshed token verifies");
    assert_ne!(
        refreshed.refresh(),
        before.refresh(),
        "refresh tokens rotate"
    );
    let (status, v) = flow::refresh_raw(&srv, &client_id, before.refresh(), None).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    srv.stop().await;
}
