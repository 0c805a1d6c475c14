//! The vault's sealing against a real store (SQLite): a grant moved to
//! another user or another upstream does not open, and is deleted rather
//! than used; an elicitation id names its user and upstream, and an altered
//! or expired one names nobody. The grants come from a real code redemption
//! at a token endpoint on 127.0.0.1 that hands out tokens that never expire.

use std::sync::Arc;

use mcpgate_jose::{FixedClock, MasterKey, SystemRng};
use mcpgate_net::SafeFetcher;
use mcpgate_net::policy::FetchPolicy;
use mcpgate_store::{DynStore, SqliteStore, UpstreamGrantRecord, UserRecord};
use mcpgate_types::Secret;
use mcpgate_vault::{
    AuthMethod, Connection, ELICITATION_TTL_SECS, Endpoints, ServerSource, Vault, VaultDeps,
    VaultError,
};

const NOW: i64 = 1_800_000_000;

fn connection(name: &str, token_endpoint: &str) -> Connection {
    Connection {
        upstream: name.into(),
        title: name.to_uppercase(),
        upstream_url: format!("https://{name}.example/mcp"),
        server: ServerSource::Endpoints(Endpoints {
            issuer: None,
            authorization_endpoint: format!("https://as.{name}.example/authorize"),
            token_endpoint: token_endpoint.into(),
            revocation_endpoint: None,
            iss_parameter_supported: false,
        }),
        client_id: "gw".into(),
        client_secret: Secret::new("s"),
        auth_method: AuthMethod::ClientSecretBasic,
        scopes: vec!["read".into()],
        resource: None,
        allow_http_loopback: true,
    }
}

/// A token endpoint that answers every code with the token named by the
/// code: `{"access_token": CODE, "token_type": "Bearer"}` (no expiry).
async fn token_endpoint() -> String {
    let app = axum::Router::new().route(
        "/token",
        axum::routing::post(|body: String| async move {
            let code = url::form_urlencoded::parse(body.as_bytes())
                .find(|(k, _)| k == "code")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            axum::Json(serde_json::json!({"access_token": code, "token_type": "Bearer"}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    format!("http://{addr}/token")
}

fn user(id: &str) -> UserRecord {
    UserRecord {
        id: id.into(),
        username: id.into(),
        display_name: None,
        password_hash: None,
        groups: vec![],
        must_change_password: false,
        disabled: false,
        created_at: NOW,
        updated_at: NOW,
    }
}

async fn vault() -> (Vault, DynStore, FixedClock, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store: DynStore = Arc::new(SqliteStore::open(&dir.path().join("v.db")).await.unwrap());
    for id in ["u1", "u2"] {
        store.create_user(&user(id)).await.unwrap();
    }
    let rng = Arc::new(SystemRng::new());
    let clock = FixedClock::new(NOW);
    let te = token_endpoint().await;
    let v = Vault::new(
        vec![connection("alpha", &te), connection("beta", &te)],
        VaultDeps {
            store: store.clone(),
            master_key: Arc::new(MasterKey::generate(rng.as_ref()).0),
            rng,
            clock: Arc::new(clock.clone()),
            fetcher: SafeFetcher::new(FetchPolicy::loopback_dev()),
            pages_base: "https://gw.example".into(),
        },
    );
    (v, store, clock, dir)
}

/// A grant for (user, upstream) holding `token`: a connect flow's last step,
/// the code redeemed (here the code is the token the endpoint hands out).
async fn sealed_grant(v: &Vault, store: &DynStore, user: &str, upstream: &str, token: &str) {
    let conn = v.connection(upstream).unwrap();
    v.redeem(user, &conn, token, "verifier", "https://gw.example/cb")
        .await
        .unwrap();
    assert!(store.get_upstream_grant(user, upstream).await.is_ok());
}

#[tokio::test]
async fn a_grant_moved_to_another_user_or_upstream_does_not_open() {
    let (v, store, _clock, _dir) = vault().await;
    sealed_grant(&v, &store, "u1", "alpha", "alpha-token-of-u1").await;
    assert_eq!(
        v.access_token("u1", "alpha").await.unwrap().expose(),
        "alpha-token-of-u1"
    );
    let row = store.get_upstream_grant("u1", "alpha").await.unwrap();
    for (user, upstream) in [("u1", "beta"), ("u2", "alpha")] {
        let moved = UpstreamGrantRecord {
            user_id: user.into(),
            upstream: upstream.into(),
            ..row.clone()
        };
        store.put_upstream_grant(&moved).await.unwrap();
        let got = v.access_token(user, upstream).await;
        assert!(
            matches!(got, Err(VaultError::Reconnect(_))),
            "{user}/{upstream}: {got:?}"
        );
        assert!(
            store.get_upstream_grant(user, upstream).await.is_err(),
            "the unreadable row is deleted"
        );
    }
    // The original still works.
    assert!(v.access_token("u1", "alpha").await.is_ok());
    assert!(matches!(
        v.access_token("u2", "beta").await,
        Err(VaultError::NotConnected)
    ));
}

#[tokio::test]
async fn elicitation_ids_name_their_user_and_expire() {
    let (v, _store, clock, _dir) = vault().await;
    let conn = v.connection("alpha").unwrap();
    let e = v.elicitation("u1", &conn);
    assert_eq!(
        e.url,
        format!("https://gw.example/connect/alpha?elicitation={}", e.id)
    );
    assert!(
        !e.url.contains("u1"),
        "nothing readable in the URL: {}",
        e.url
    );
    assert_eq!(
        v.open_elicitation(&e.id),
        Some(("u1".into(), "alpha".into()))
    );
    // Two ids for the same user differ (a fresh nonce each time).
    assert_ne!(v.elicitation("u1", &conn).id, e.id);
    // Altered anywhere: nobody's.
    for i in [0, e.id.len() / 2, e.id.len() - 1] {
        let mut b = e.id.clone().into_bytes();
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        assert_eq!(v.open_elicitation(&String::from_utf8(b).unwrap()), None);
    }
    assert_eq!(v.open_elicitation("not-base64!"), None);
    assert_eq!(v.open_elicitation(&"A".repeat(5000)), None);
    // Expired: nobody's.
    clock.advance(ELICITATION_TTL_SECS);
    assert_eq!(v.open_elicitation(&e.id), None);
    // Unknown upstream.
    assert!(matches!(
        v.connection("gamma"),
        Err(VaultError::NotConfigured(_))
    ));
}
