//! Refresh before expiry, `invalid_grant`, and concurrent refresh of one rotating refresh token
//! by two holders of the store (two tasks with their own file handles, and two processes).

use std::sync::Arc;
use std::time::Duration;

use mcpgate_client::registration::RegistrationKind;
use mcpgate_client::{ClientCredentials, ClientError, TokenEntry, TokenStore};
use mcpgate_types::Secret;
use mcpgate_types::client_metadata::TokenEndpointAuthMethod;
use serde_json::json;

use crate::support::{Mock, MockConfig};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Stores a registration and an access token that is about to expire, with `refresh_token`.
fn seed(mock: &Mock, dir: &std::path::Path, refresh_token: &str) {
    let store = TokenStore::new(dir);
    store
        .save_client(&ClientCredentials {
            issuer: mock.issuer(),
            client_id: "dyn-client".into(),
            client_secret: None,
            token_endpoint_auth_method: TokenEndpointAuthMethod::None,
            kind: RegistrationKind::Dynamic,
            redirect_uris: vec![],
            client_secret_expires_at: None,
            private_key: None,
        })
        .unwrap();
    store
        .save(&TokenEntry {
            issuer: mock.issuer(),
            resource: mock.mcp_url(),
            server_url: mock.mcp_url(),
            access_token: Secret::new("at-stale"),
            refresh_token: Some(Secret::new(refresh_token)),
            expires_at: Some(now() + 5),
            scope: None,
            denied_scopes: vec![],
            updated_at: now(),
            dpop_key: None,
        })
        .unwrap();
    mock.seed_refresh_token(refresh_token, "");
}

fn refresh_grants(mock: &Mock) -> Vec<crate::support::Recorded> {
    mock.to("/token")
        .into_iter()
        .filter(|r| r.param("grant_type").as_deref() == Some("refresh_token"))
        .collect()
}

#[tokio::test]
async fn refreshes_before_expiry_with_the_exact_resource() {
    let mock = Mock::start(MockConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    seed(&mock, dir.path(), "rt-seed");
    let client = mock.client(mock.oauth(dir.path()));
    client.connect().await.unwrap();
    client.call_tool("echo", json!({})).await.unwrap();
    let grants = refresh_grants(&mock);
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].param("resource"), Some(mock.mcp_url()));
    assert_eq!(grants[0].param("client_id").as_deref(), Some("dyn-client"));
    assert!(
        mock.to("/authorize").is_empty(),
        "no new authorization was needed"
    );
    let stored = TokenStore::new(dir.path()).list().unwrap().remove(0);
    assert_ne!(stored.access_token.expose(), "at-stale");
    assert!(mock.refresh_token_valid(stored.refresh_token.as_ref().unwrap().expose()));
    assert!(!mock.refresh_token_valid("rt-seed"), "rotated");
}

#[tokio::test]
async fn invalid_grant_asks_the_user_to_log_in_again() {
    let mock = Mock::start(MockConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    seed(&mock, dir.path(), "rt-seed");
    mock.revoke_all();
    let client = mock.client(mock.oauth(dir.path()));
    let e = client.connect().await.unwrap_err();
    assert!(matches!(e, ClientError::ReLoginRequired { .. }), "{e}");
    assert!(
        e.to_string()
            .contains(&format!("run `mcpgate login {}` again", mock.mcp_url())),
        "{e}"
    );
    assert!(
        TokenStore::new(dir.path()).list().unwrap().is_empty(),
        "the dead grant is forgotten"
    );

    // With automatic re-authorization (bridge), the flow simply runs again.
    seed(&mock, dir.path(), "rt-seed-2");
    mock.revoke_all();
    let client = mock.client(mock.oauth_with(dir.path(), |c| c.auto_reauthorize = true));
    client.connect().await.unwrap();
    assert_eq!(mock.to("/authorize").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_holders_refreshing_at_once_spend_the_refresh_token_once() {
    let mock = Mock::start(MockConfig {
        token_delay: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    seed(&mock, dir.path(), "rt-seed");
    let a = Arc::new(mock.oauth(dir.path()));
    let b = Arc::new(mock.oauth(dir.path()));
    let (ta, tb) = tokio::join!(
        tokio::spawn({
            let a = a.clone();
            async move { a.access_token().await }
        }),
        tokio::spawn({
            let b = b.clone();
            async move { b.access_token().await }
        }),
    );
    let (ta, tb) = (ta.unwrap().unwrap().unwrap(), tb.unwrap().unwrap().unwrap());
    assert_eq!(
        ta.token.expose(),
        tb.token.expose(),
        "the second holder used the first one's result"
    );
    assert_eq!(refresh_grants(&mock).len(), 1);
    assert_eq!(
        mock.state.reuse.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    let stored = TokenStore::new(dir.path()).list().unwrap().remove(0);
    assert!(mock.refresh_token_valid(stored.refresh_token.as_ref().unwrap().expose()));
}

const CHILD_ENV: &str = "MCPGATE_IT_REFRESH_CHILD";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_refreshing_at_once_spend_the_refresh_token_once() {
    let mock = Mock::start(MockConfig {
        token_delay: Duration::from_millis(400),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    seed(&mock, dir.path(), "rt-seed");
    let exe = std::env::current_exe().unwrap();
    let spawn = || {
        tokio::process::Command::new(&exe)
            .args([
                "--exact",
                "refresh::child_process_refresh",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(
                CHILD_ENV,
                format!("{}\n{}", dir.path().display(), mock.mcp_url()),
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let (one, two) = (spawn(), spawn());
    let (one, two) = tokio::join!(one.wait_with_output(), two.wait_with_output());
    let token = |o: std::process::Output| {
        let out = String::from_utf8(o.stdout).unwrap();
        assert!(o.status.success(), "{out}");
        out.lines()
            .find_map(|l| {
                l.split_once("CHILD-TOKEN=")
                    .map(|(_, t)| t.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("the child printed no token:\n{out}"))
    };
    let (one, two) = (token(one.unwrap()), token(two.unwrap()));
    assert_eq!(one, two);
    assert_ne!(one, "at-stale");
    assert_eq!(
        refresh_grants(&mock).len(),
        1,
        "one refresh for two processes"
    );
    assert_eq!(
        mock.state.reuse.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    let stored = TokenStore::new(dir.path()).list().unwrap().remove(0);
    assert!(mock.refresh_token_valid(stored.refresh_token.as_ref().unwrap().expose()));
}

/// Not a test on its own: the child of the test above (does nothing unless started by it).
#[tokio::test]
async fn child_process_refresh() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (dir, url) = spec.split_once('\n').unwrap();
    let oauth = mcpgate_client::OAuthClient::new(
        mcpgate_client::OAuthConfig::new(url),
        crate::support::fetcher(),
        TokenStore::new(dir),
        Arc::new(mcpgate_client::Headless),
    )
    .unwrap();
    let token = oauth.access_token().await.unwrap().unwrap();
    println!("CHILD-TOKEN={}", token.token.expose());
}
