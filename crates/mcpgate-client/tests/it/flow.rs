//! The whole flow against the mock: DCR, PKCE, `resource` byte for byte, RFC 9207 `iss`, the
//! token file on disk, reuse of stored tokens, logout.

use std::os::unix::fs::PermissionsExt;

use mcpgate_client::ClientError;
use serde_json::json;

use crate::support::{IssMode, Mock, MockConfig};

async fn run(mock: &Mock, dir: &std::path::Path) -> Result<(), ClientError> {
    let client = mock.client(mock.oauth(dir));
    client.connect().await?;
    client.list_tools().await?;
    client.call_tool("echo", json!({})).await?;
    client.close().await
}

#[tokio::test]
async fn resource_is_sent_exactly_as_published() {
    // With a path, and for an origin-only server whose resource has no trailing slash (a URL
    // type would add one).
    for mcp_path in ["/mcp", ""] {
        let cfg = MockConfig {
            mcp_path,
            prm_root: mcp_path.is_empty(),
            ..Default::default()
        };
        let mock = Mock::start(cfg).await;
        let dir = tempfile::tempdir().unwrap();
        run(&mock, dir.path()).await.unwrap();
        let expected = mock.mcp_url();
        assert!(!expected.ends_with('/'));
        let authorize = &mock.to("/authorize")[0];
        assert_eq!(
            authorize.param("resource").as_deref(),
            Some(expected.as_str())
        );
        assert!(authorize.query.contains(&format!(
            "resource={}",
            url::form_urlencoded::byte_serialize(expected.as_bytes()).collect::<String>()
        )));
        assert_eq!(
            authorize.param("code_challenge_method").as_deref(),
            Some("S256")
        );
        assert!(
            authorize
                .param("redirect_uri")
                .unwrap()
                .starts_with("http://127.0.0.1:")
        );
        assert_eq!(authorize.param("state").map(|s| s.len()), Some(43));
        let token = &mock.to("/token")[0];
        assert_eq!(token.param("resource").as_deref(), Some(expected.as_str()));
        assert_eq!(
            token.param("grant_type").as_deref(),
            Some("authorization_code")
        );
        // DCR: native client, refresh_token grant, public client.
        let register: serde_json::Value =
            serde_json::from_str(&mock.to("/register")[0].body).unwrap();
        assert_eq!(register["application_type"], "native");
        assert!(
            register["grant_types"]
                .as_array()
                .unwrap()
                .contains(&json!("refresh_token"))
        );
        assert_eq!(register["token_endpoint_auth_method"], "none");
        // Every MCP request after the first 401 carries the bearer token.
        let mcp_path = if mcp_path.is_empty() { "/" } else { mcp_path };
        let mcp = mock.to(mcp_path);
        assert!(mcp[0].authorization.is_none());
        assert!(mcp[1..].iter().all(|r| {
            r.authorization
                .as_deref()
                .is_some_and(|a| a.starts_with("Bearer at-"))
        }));
        assert!(mcp.iter().all(|r| !r.query.contains("at-")));
    }
}

#[tokio::test]
async fn iss_is_checked_before_the_code_is_redeemed() {
    // (advertised, what the AS sends, accepted)
    let table = [
        (Some(true), IssMode::Correct, true),
        (Some(true), IssMode::Omit, false),
        (Some(true), IssMode::Wrong, false),
        (Some(true), IssMode::TrailingSlash, false),
        (None, IssMode::Omit, true),
        (None, IssMode::Correct, true),
        (None, IssMode::Wrong, false),
        (Some(false), IssMode::TrailingSlash, false),
    ];
    for (supported, mode, accepted) in table {
        let mock = Mock::start(MockConfig {
            iss_supported: supported,
            iss_mode: mode,
            ..Default::default()
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let outcome = run(&mock, dir.path()).await;
        let redeemed = mock
            .to("/token")
            .iter()
            .any(|r| r.param("grant_type").as_deref() == Some("authorization_code"));
        assert_eq!(
            outcome.is_ok(),
            accepted,
            "{supported:?} {mode:?}: {outcome:?}"
        );
        assert_eq!(redeemed, accepted, "{supported:?} {mode:?}");
        if !accepted {
            assert!(
                matches!(outcome, Err(ClientError::CallbackRejected(_))),
                "{outcome:?}"
            );
        }
    }
}

#[tokio::test]
async fn token_files_are_private_and_written_atomically() {
    let mock = Mock::start(MockConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    run(&mock, &store_dir).await.unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&store_dir), 0o700);
    let mut files = 0;
    for sub in ["tokens", "clients"] {
        assert_eq!(mode(&store_dir.join(sub)), 0o700);
        for entry in std::fs::read_dir(store_dir.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                !name.ends_with(".tmp"),
                "temporary file left behind: {name}"
            );
            assert_eq!(mode(&path), 0o600, "{name}");
            files += 1;
        }
    }
    assert!(files >= 3, "token, lock and client files");
    let store = mcpgate_client::TokenStore::new(&store_dir);
    let entries = store.list().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].issuer, mock.issuer());
    assert_eq!(entries[0].resource, mock.mcp_url());
    let summary = format!("{:?}", entries[0].summary());
    assert!(
        !summary.contains("at-") && !summary.contains("rt-"),
        "{summary}"
    );
}

#[tokio::test]
async fn concurrent_writers_never_expose_a_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = mcpgate_client::TokenStore::new(dir.path());
    let entry = |i: usize| mcpgate_client::TokenEntry {
        issuer: "https://as.example.com".into(),
        resource: "https://mcp.example.com/mcp".into(),
        server_url: "https://mcp.example.com/mcp".into(),
        access_token: mcpgate_types::Secret::new(format!("access-{i}-{}", "x".repeat(i * 50))),
        refresh_token: None,
        expires_at: Some(i as i64),
        scope: None,
        denied_scopes: vec![],
        updated_at: i as i64,
        dpop_key: None,
    };
    store.save(&entry(0)).unwrap();
    let writers: Vec<_> = (1..6)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..40 {
                    store.save(&entry(w * 40 + i)).unwrap();
                }
            })
        })
        .collect();
    for _ in 0..400 {
        let e = store
            .load("https://as.example.com", "https://mcp.example.com/mcp")
            .unwrap()
            .unwrap();
        assert!(e.access_token.expose().starts_with("access-"));
    }
    for w in writers {
        w.join().unwrap();
    }
}

#[tokio::test]
async fn stored_tokens_are_reused_and_logout_forgets_them() {
    let mock = Mock::start(MockConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    run(&mock, dir.path()).await.unwrap();
    run(&mock, dir.path()).await.unwrap();
    assert_eq!(
        mock.to("/authorize").len(),
        1,
        "the second run used the stored token"
    );
    assert_eq!(mock.to("/register").len(), 1);
    let oauth = mock.oauth(dir.path());
    assert!(oauth.status().await.unwrap().is_some());
    assert_eq!(oauth.logout().await.unwrap(), 1);
    assert!(oauth.status().await.unwrap().is_none());
    // Nothing stored any more: a fresh authorization, with the registration kept (same issuer).
    run(&mock, dir.path()).await.unwrap();
    assert_eq!(mock.to("/authorize").len(), 2);
    assert_eq!(mock.to("/register").len(), 1);
}

#[tokio::test]
async fn no_secret_reaches_the_logs() {
    let mock = Mock::start(MockConfig {
        expires_in: 30,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    run(&mock, dir.path()).await.unwrap();
    // And a refresh (expires_in is inside the refresh skew).
    run(&mock, dir.path()).await.unwrap();
    assert!(
        mock.to("/token")
            .iter()
            .any(|r| r.param("grant_type").as_deref() == Some("refresh_token"))
    );
    // Every test of this binary logs into the same TRACE-level capture.
    let logs = crate::support::captured_logs();
    assert!(logs.contains("mcpgate_client"), "trace output was captured");
    // Mock tokens and codes are `at-N`, `rt-N`, `code-N`.
    for needle in ["at-", "rt-", "code-"] {
        let leaked = logs
            .match_indices(needle)
            .any(|(i, _)| logs[i + needle.len()..].starts_with(|c: char| c.is_ascii_digit()));
        assert!(!leaked, "a {needle}N value appears in the logs");
    }
    assert!(
        !logs.contains("Bearer "),
        "an Authorization header appears in the logs"
    );
}

#[tokio::test]
async fn login_uses_the_challenge_and_replaces_what_is_stored() {
    // The PRM is only at a custom location named in the 401 challenge.
    let mock = Mock::start(MockConfig {
        prm_in_header: true,
        prm_path_inserted: false,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let client = mock.client(mock.oauth(dir.path()));
    let summary = client.login().await.unwrap();
    assert_eq!(summary.resource, mock.mcp_url());
    assert_eq!(summary.issuer, mock.issuer());
    assert!(summary.has_refresh_token);
    assert!(mock.paths().contains(&"/custom/prm.json".to_owned()));
    // Logging in again authorizes again, even though a valid token is stored.
    client.login().await.unwrap();
    assert_eq!(mock.to("/authorize").len(), 2);
    assert_eq!(
        mcpgate_client::TokenStore::new(dir.path())
            .list()
            .unwrap()
            .len(),
        1
    );
    // And the stored token serves the next connection without a prompt.
    run(&mock, dir.path()).await.unwrap();
    assert_eq!(mock.to("/authorize").len(), 2);
}
