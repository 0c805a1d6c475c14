//! `serve --demo`: prints the admin's one-time password, which signs in
//! through the password-change page; a second start creates no new one.

use mcpgate_testkit::Browser;

use crate::flow;
use crate::harness::{Env, ServeOpts};

fn demo() -> ServeOpts {
    ServeOpts {
        args: vec!["--demo".into()],
        ..ServeOpts::default()
    }
}

#[tokio::test]
async fn demo_prints_a_working_one_time_password() {
    let env = Env::new();
    let srv = env.serve_with(demo()).await;
    // The banner goes to stdout; stderr is the log, and keeps no password.
    let printed = srv.stdout_text();
    let otp = printed
        .lines()
        .find_map(|l| l.trim().strip_prefix("one-time password:"))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no one-time password printed:\n{printed}"))
        .to_string();
    assert!(
        printed.contains(&srv.issuer),
        "the banner does not name the issuer:\n{printed}"
    );
    assert!(
        !srv.log_text().contains(&otp),
        "the one-time password is in the log"
    );

    // Sign in at /login directly, as the banner suggests.
    let mut b = Browser::new();
    let login = b.get(&srv.url("/login")).await;
    let page = flow::login_post(
        &mut b,
        &srv,
        &login,
        "admin",
        &otp,
        Some("the admin's new password"),
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("signed in as admin"), "{}", page.body);
    assert!(
        b.cookie("__Host-mcpgate-session").is_some(),
        "no session cookie after sign-in"
    );

    // The new password works on its own; the one-time password is spent.
    let mut b = Browser::new();
    let login = b.get(&srv.url("/login")).await;
    let page = flow::login_post(
        &mut b,
        &srv,
        &login,
        "admin",
        "the admin's new password",
        None,
    )
    .await;
    assert!(
        page.status == 200 && page.body.contains("signed in as admin"),
        "{}",
        page.body
    );
    let mut b = Browser::new();
    let login = b.get(&srv.url("/login")).await;
    let page = flow::login_post(&mut b, &srv, &login, "admin", &otp, None).await;
    assert_eq!(
        page.status, 401,
        "the one-time password still works: {}",
        page.body
    );

    // A second demo start keeps the admin and prints no new password.
    let port = srv.port;
    srv.stop().await;
    let srv = env
        .serve_with(ServeOpts {
            port: Some(port),
            ..demo()
        })
        .await;
    let printed = srv.stdout_text();
    assert!(printed.contains("admin user exists already"), "{printed}");
    assert!(!printed.contains("one-time password:"), "{printed}");
    let list = env.cli_ok(&["users", "list"]).await.stdout;
    assert!(
        list.lines()
            .any(|l| l.starts_with("admin\t") && l.contains("groups=[admins]")),
        "{list}"
    );
    srv.stop().await;
}
