//! Discovery order and the documents the client must refuse (RFC 9728 §3, RFC 8414 §3.3, MCP
//! authorization "Authorization Server Discovery").

use mcpgate_client::ClientError;
use mcpgate_client::discovery::discover;

use crate::support::{AsMetadataAt, Mock, MockConfig, fetcher};

#[tokio::test]
async fn path_inserted_prm_is_tried_before_the_root() {
    let mock = Mock::start(MockConfig {
        prm_path_inserted: false,
        prm_root: true,
        ..Default::default()
    })
    .await;
    let d = discover(&fetcher(), &mock.mcp_url(), None).await.unwrap();
    assert_eq!(
        d.prm_url,
        format!("{}/.well-known/oauth-protected-resource", mock.base)
    );
    let paths = mock.paths();
    assert_eq!(paths[0], "/.well-known/oauth-protected-resource/mcp");
    assert_eq!(paths[1], "/.well-known/oauth-protected-resource");
    // A root PRM describes the whole origin: accepted for /mcp, and its resource string is the
    // one sent (no slash added).
    assert_eq!(d.resource(), format!("{}/mcp", mock.base));
}

#[tokio::test]
async fn root_prm_is_not_requested_when_the_path_inserted_one_exists() {
    let mock = Mock::start(MockConfig {
        prm_root: true,
        ..Default::default()
    })
    .await;
    discover(&fetcher(), &mock.mcp_url(), None).await.unwrap();
    assert!(
        !mock
            .paths()
            .contains(&"/.well-known/oauth-protected-resource".to_owned())
    );
}

#[tokio::test]
async fn the_challenge_resource_metadata_comes_first() {
    let mock = Mock::start(MockConfig {
        prm_in_header: true,
        prm_path_inserted: false,
        ..Default::default()
    })
    .await;
    let header = format!("{}/custom/prm.json", mock.base);
    let d = discover(&fetcher(), &mock.mcp_url(), Some(&header))
        .await
        .unwrap();
    assert_eq!(mock.paths()[0], "/custom/prm.json");
    assert_eq!(d.prm_url, header);
}

#[tokio::test]
async fn as_metadata_order_for_an_issuer_with_a_path() {
    for (at, position) in [
        (AsMetadataAt::Oauth, 0),
        (AsMetadataAt::OidcInsert, 1),
        (AsMetadataAt::OidcAppend, 2),
    ] {
        let mock = Mock::start(MockConfig {
            issuer_path: "/tenant1",
            as_metadata_at: at,
            ..Default::default()
        })
        .await;
        let d = discover(&fetcher(), &mock.mcp_url(), None).await.unwrap();
        assert_eq!(d.issuer, mock.issuer());
        let as_paths: Vec<String> = mock
            .paths()
            .into_iter()
            .filter(|p| p.contains("tenant1"))
            .collect();
        let expected = [
            "/.well-known/oauth-authorization-server/tenant1",
            "/.well-known/openid-configuration/tenant1",
            "/tenant1/.well-known/openid-configuration",
        ];
        assert_eq!(as_paths, expected[..=position], "{at:?}");
        // Never the root for an issuer with a path.
        assert!(
            !mock
                .paths()
                .contains(&"/.well-known/oauth-authorization-server".to_owned())
        );
    }
}

#[tokio::test]
async fn as_metadata_order_for_an_issuer_without_a_path() {
    let mock = Mock::start(MockConfig {
        as_metadata_at: AsMetadataAt::OidcInsert,
        ..Default::default()
    })
    .await;
    discover(&fetcher(), &mock.mcp_url(), None).await.unwrap();
    let as_paths: Vec<String> = mock
        .paths()
        .into_iter()
        .filter(|p| p.contains("authorization-server") || p.contains("openid"))
        .collect();
    assert_eq!(
        as_paths,
        [
            "/.well-known/oauth-authorization-server",
            "/.well-known/openid-configuration"
        ]
    );
}

#[tokio::test]
async fn prm_naming_another_server_is_refused() {
    for resource in [
        "https://evil.example.com/mcp",
        "http://127.0.0.1:1/mcp",
        "RELATIVE",
    ] {
        let mock = Mock::start(MockConfig {
            resource: Some(resource.into()),
            ..Default::default()
        })
        .await;
        let e = discover(&fetcher(), &mock.mcp_url(), None)
            .await
            .unwrap_err();
        assert!(
            matches!(e, ClientError::ResourceMismatch { .. }),
            "{resource}: {e}"
        );
        // Stopped at once: no root probe, no AS metadata.
        assert_eq!(mock.paths(), ["/.well-known/oauth-protected-resource/mcp"]);
    }
    // A sibling path on the same origin is another server too: the root PRM says /mcp.
    let mock = Mock::start(MockConfig {
        prm_path_inserted: false,
        prm_root: true,
        ..Default::default()
    })
    .await;
    let other = format!("{}/mcp2", mock.base);
    let e = discover(&fetcher(), &other, None).await.unwrap_err();
    assert!(matches!(e, ClientError::ResourceMismatch { .. }), "{e}");
}

#[tokio::test]
async fn issuer_mismatch_is_refused_and_nothing_else_used() {
    let mock = Mock::start(MockConfig {
        metadata_issuer: Some("https://attacker.example.com".into()),
        ..Default::default()
    })
    .await;
    let e = discover(&fetcher(), &mock.mcp_url(), None)
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::IssuerMismatch { .. }), "{e}");
    assert!(
        !mock
            .paths()
            .iter()
            .any(|p| p == "/authorize" || p == "/register" || p == "/token")
    );
    // A variant that differs only by a trailing slash is a mismatch too.
    let mock = Mock::start(MockConfig {
        metadata_issuer_slash: true,
        ..Default::default()
    })
    .await;
    let e = discover(&fetcher(), &mock.mcp_url(), None)
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::IssuerMismatch { .. }), "{e}");
}

#[tokio::test]
async fn missing_s256_is_refused() {
    let mock = Mock::start(MockConfig {
        s256: false,
        ..Default::default()
    })
    .await;
    let e = discover(&fetcher(), &mock.mcp_url(), None)
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::PkceUnsupported { .. }), "{e}");
}

#[tokio::test]
async fn plain_http_needs_the_development_flag() {
    let mock = Mock::start(MockConfig::default()).await;
    let strict = mcpgate_net::SafeFetcher::new(mcpgate_net::FetchPolicy::default());
    let e = discover(&strict, &mock.mcp_url(), None).await.unwrap_err();
    assert!(matches!(e, ClientError::Fetch { .. }), "{e}");
    assert!(mock.paths().is_empty());
}
