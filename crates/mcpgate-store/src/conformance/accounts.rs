//! Conformance cases for users, clients and consents.

use super::*;
use crate::traits::DynStore;

pub(crate) async fn users_crud(store: DynStore) {
    let mut alice = user("u1", "alice");
    alice.display_name = None;
    alice.password_hash = None;
    alice.groups = Vec::new();
    store.create_user(&alice).await.unwrap();
    store.create_user(&user("u2", "bob")).await.unwrap();

    assert_eq!(store.get_user("u1").await.unwrap(), alice);
    assert_eq!(
        store.get_user_by_username("bob").await.unwrap(),
        user("u2", "bob")
    );
    assert_not_found(store.get_user("nobody").await);
    assert_not_found(store.get_user_by_username("carol").await);
    // Usernames are case-sensitive as typed.
    assert_not_found(store.get_user_by_username("Alice").await);

    let mut changed = alice.clone();
    changed.display_name = Some("Alice A.".to_owned());
    changed.password_hash = Some("$argon2id$new".to_owned());
    changed.groups = strings(&["admins"]);
    changed.must_change_password = false;
    changed.disabled = true;
    changed.updated_at = NOW + 10;
    store.update_user(&changed).await.unwrap();
    assert_eq!(store.get_user("u1").await.unwrap(), changed);

    let names: Vec<_> = store
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["alice", "bob"]);

    store.delete_user("u1", at(NOW)).await.unwrap();
    assert_not_found(store.get_user("u1").await);
    assert_not_found(store.get_user_by_username("alice").await);
    assert_not_found(store.delete_user("u1", at(NOW)).await);
    assert_eq!(store.list_users().await.unwrap(), vec![user("u2", "bob")]);
}

pub(crate) async fn users_conflicts(store: DynStore) {
    store.create_user(&user("u1", "alice")).await.unwrap();
    // Same id, other username; same username, other id.
    assert_conflict(store.create_user(&user("u1", "alicia")).await);
    assert_conflict(store.create_user(&user("u9", "alice")).await);
    assert_eq!(store.list_users().await.unwrap().len(), 1);

    // update_user replaces the mutable fields only: not username, not created_at.
    let mut renamed = user("u1", "mallory");
    renamed.created_at = 1;
    renamed.updated_at = NOW + 1;
    store.update_user(&renamed).await.unwrap();
    let stored = store.get_user("u1").await.unwrap();
    assert_eq!(stored.username, "alice");
    assert_eq!(stored.created_at, NOW);
    assert_eq!(stored.updated_at, NOW + 1);

    assert_not_found(store.update_user(&user("u404", "ghost")).await);
    assert_not_found(store.get_user("u404").await);
}

pub(crate) async fn users_sorted_bytewise(store: DynStore) {
    for (id, name) in [
        ("1", "bob"),
        ("2", "alice"),
        ("3", "Zed"),
        ("4", "Alice"),
        ("5", "_x"),
    ] {
        store.create_user(&user(id, name)).await.unwrap();
    }
    let names: Vec<_> = store
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    // Bytewise order on every backend, whatever the database's locale.
    assert_eq!(names, ["Alice", "Zed", "_x", "alice", "bob"]);
}

pub(crate) async fn clients_crud(store: DynStore) {
    let full = client("https://app.example/client.json");
    let mut public = client("c-public");
    public.kind = ClientKind::Dynamic;
    public.client_name = None;
    public.client_secret_hash = None;
    public.token_endpoint_auth_method = "none".to_owned();
    public.redirect_uris = strings(&["com.example.app:/cb"]);
    public.grant_types = strings(&["authorization_code"]);
    public.allowed_scopes = Vec::new();
    public.application_type = None;
    public.client_uri = None;
    public.logo_uri = Some("https://app.example/logo.png".to_owned());
    public.expires_at = Some(NOW + 3_600);

    store.create_client(&full).await.unwrap();
    store.create_client(&public).await.unwrap();
    assert_conflict(store.create_client(&full).await);

    // Exact strings, every field round-trips.
    assert_eq!(
        store
            .get_client("https://app.example/client.json")
            .await
            .unwrap(),
        full
    );
    assert_eq!(store.get_client("c-public").await.unwrap(), public);
    assert_not_found(store.get_client("https://app.example/client.json/").await);
    assert_not_found(store.get_client("C-PUBLIC").await);

    let ids: Vec<_> = store
        .list_clients()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.client_id)
        .collect();
    assert_eq!(ids, ["c-public", "https://app.example/client.json"]);

    store.delete_client("c-public", at(NOW)).await.unwrap();
    assert_not_found(store.get_client("c-public").await);
    assert_not_found(store.delete_client("c-public", at(NOW)).await);
    assert_eq!(store.list_clients().await.unwrap(), vec![full]);
}

pub(crate) async fn clients_upsert(store: DynStore) {
    store.create_user(&user("u1", "alice")).await.unwrap();
    let mut cimd = client("https://app.example/client.json");
    cimd.kind = ClientKind::Cimd;
    cimd.expires_at = Some(NOW + 600);
    // Upsert inserts when absent.
    store.upsert_client(&cimd).await.unwrap();
    assert_eq!(store.get_client(&cimd.client_id).await.unwrap(), cimd);
    store
        .upsert_consent(&consent("u1", &cimd.client_id))
        .await
        .unwrap();

    // And replaces every field when present, without touching dependents.
    let mut refreshed = cimd.clone();
    refreshed.client_name = Some("Renamed".to_owned());
    refreshed.redirect_uris = strings(&["https://app.example/cb2"]);
    refreshed.logo_uri = Some("https://app.example/l.png".to_owned());
    refreshed.expires_at = Some(NOW + 1_200);
    refreshed.token_endpoint_auth_method = "private_key_jwt".to_owned();
    refreshed.client_secret_hash = None;
    refreshed.jwks_uri = Some("https://app.example/jwks.json".to_owned());
    store.upsert_client(&refreshed).await.unwrap();
    assert_eq!(store.get_client(&cimd.client_id).await.unwrap(), refreshed);
    // Keys given by value replace the URL (the two never coexist).
    refreshed.jwks_uri = None;
    refreshed.jwks = Some(r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AA"}]}"#.to_owned());
    store.upsert_client(&refreshed).await.unwrap();
    assert_eq!(store.get_client(&cimd.client_id).await.unwrap(), refreshed);
    assert_eq!(store.list_clients().await.unwrap().len(), 1);
    store.get_consent("u1", &cimd.client_id).await.unwrap();
}

/// A recent read sees every write made through the same handle at once:
/// create, upsert, delete and purge (the cache is a store's own business;
/// what another process writes may take [`crate::CLIENT_CACHE_TTL`]).
pub(crate) async fn clients_recent_sees_own_writes(store: DynStore) {
    assert_not_found(store.get_client_recent("c1").await);
    let mut c = client("c1");
    store.create_client(&c).await.unwrap();
    assert_eq!(store.get_client_recent("c1").await.unwrap(), c);
    assert_eq!(store.get_client_recent("c1").await.unwrap(), c);

    c.client_secret_hash = Some("rotated".to_owned());
    c.redirect_uris = strings(&["https://app.example/other"]);
    store.upsert_client(&c).await.unwrap();
    assert_eq!(store.get_client_recent("c1").await.unwrap(), c);

    store.delete_client("c1", at(NOW)).await.unwrap();
    assert_not_found(store.get_client_recent("c1").await);

    let mut cimd = client("https://app.example/client.json");
    cimd.kind = ClientKind::Cimd;
    cimd.expires_at = Some(NOW - 10);
    store.upsert_client(&cimd).await.unwrap();
    assert_eq!(
        store.get_client_recent(&cimd.client_id).await.unwrap(),
        cimd
    );
    assert_eq!(store.purge_unused_metadata_clients(NOW).await.unwrap(), 1);
    assert_not_found(store.get_client_recent(&cimd.client_id).await);
}

pub(crate) async fn clients_count_dynamic(store: DynStore) {
    assert_eq!(store.count_dynamic_clients_since(0).await.unwrap(), 0);
    for (i, (kind, created_at)) in [
        (ClientKind::Dynamic, NOW - 100),
        (ClientKind::Dynamic, NOW),
        (ClientKind::Dynamic, NOW + 5),
        (ClientKind::PreRegistered, NOW + 5),
        (ClientKind::Cimd, NOW + 5),
    ]
    .into_iter()
    .enumerate()
    {
        let mut c = client(&format!("c{i}"));
        c.kind = kind;
        c.created_at = created_at;
        store.create_client(&c).await.unwrap();
    }
    assert_eq!(
        store
            .count_dynamic_clients_since(NOW - 1_000)
            .await
            .unwrap(),
        3
    );
    // `since` is inclusive.
    assert_eq!(store.count_dynamic_clients_since(NOW).await.unwrap(), 2);
    assert_eq!(store.count_dynamic_clients_since(NOW + 6).await.unwrap(), 0);
}

pub(crate) async fn consents_upsert_and_list(store: DynStore) {
    seed(&store).await;
    assert_not_found(store.get_consent("u1", "c1").await);
    assert!(store.list_consents(None).await.unwrap().is_empty());

    let first = consent("u1", "c1");
    store.upsert_consent(&first).await.unwrap();
    assert_eq!(store.get_consent("u1", "c1").await.unwrap(), first);

    // Replacing keeps granted_at and takes the new scopes, resources, updated_at.
    let mut wider = consent("u1", "c1");
    wider.scopes = strings(&["mcp:read", "mcp:write"]);
    wider.resources = strings(&["https://gw.example/mcp/files", "https://gw.example/mcp/db"]);
    wider.granted_at = NOW + 50;
    wider.updated_at = NOW + 50;
    store.upsert_consent(&wider).await.unwrap();
    let stored = store.get_consent("u1", "c1").await.unwrap();
    assert_eq!(stored.scopes, wider.scopes);
    assert_eq!(stored.resources, wider.resources);
    assert_eq!(stored.granted_at, NOW);
    assert_eq!(stored.updated_at, NOW + 50);

    store.upsert_consent(&consent("u2", "c1")).await.unwrap();
    store.upsert_consent(&consent("u1", "c2")).await.unwrap();
    let all: Vec<_> = store
        .list_consents(None)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.user_id, c.client_id))
        .collect();
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(u, c)| ((*u).to_owned(), (*c).to_owned()))
            .collect()
    };
    assert_eq!(all, pairs(&[("u1", "c1"), ("u1", "c2"), ("u2", "c1")]));
    let mine: Vec<_> = store
        .list_consents(Some("u1"))
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.user_id, c.client_id))
        .collect();
    assert_eq!(mine, pairs(&[("u1", "c1"), ("u1", "c2")]));
    assert!(store.list_consents(Some("u404")).await.unwrap().is_empty());
}

pub(crate) async fn consent_revoke_revokes_families(store: DynStore) {
    seed(&store).await;
    store.upsert_consent(&consent("u1", "c1")).await.unwrap();
    store.upsert_consent(&consent("u1", "c2")).await.unwrap();
    // Two families for (u1, c1), one already revoked earlier; others untouched.
    store
        .create_family(&family("f1", "c1", "u1"), &token("t1", "f1"))
        .await
        .unwrap();
    store
        .create_family(&family("f2", "c1", "u1"), &token("t2", "f2"))
        .await
        .unwrap();
    store.revoke_family("f2", at(NOW - 7)).await.unwrap();
    store
        .create_family(&family("f3", "c2", "u1"), &token("t3", "f3"))
        .await
        .unwrap();
    store
        .create_family(&family("f4", "c1", "u2"), &token("t4", "f4"))
        .await
        .unwrap();

    store.revoke_consent("u1", "c1", at(NOW + 9)).await.unwrap();
    assert_not_found(store.get_consent("u1", "c1").await);
    let revoked_at = |id: &'static str| {
        let store = store.clone();
        async move {
            let hash = format!("t{}", &id[1..]);
            store.get_refresh_token(&hash).await.unwrap().1.revoked_at
        }
    };
    assert_eq!(revoked_at("f1").await, Some(NOW + 9));
    assert_eq!(revoked_at("f2").await, Some(NOW - 7));
    assert_eq!(revoked_at("f3").await, None);
    assert_eq!(revoked_at("f4").await, None);
    store.get_consent("u1", "c2").await.unwrap();

    assert_not_found(store.revoke_consent("u1", "c1", at(NOW + 10)).await);
    assert_not_found(store.revoke_consent("u2", "c2", at(NOW + 10)).await);
}

/// Rows that name a user or client must name an existing one.
pub(crate) async fn references_must_exist(store: DynStore) {
    seed(&store).await;
    assert_not_found(store.upsert_consent(&consent("u404", "c1")).await);
    assert_not_found(store.upsert_consent(&consent("u1", "c404")).await);
    assert_not_found(store.insert_code(&code("k1", "c404", "u1")).await);
    assert_not_found(store.insert_code(&code("k1", "c1", "u404")).await);
    assert_not_found(
        store
            .create_family(&family("f1", "c1", "u404"), &token("t1", "f1"))
            .await,
    );
    assert_not_found(store.insert_session(&session("s1", "u404", NOW + 60)).await);
    // Nothing half-written.
    assert!(store.list_consents(None).await.unwrap().is_empty());
    assert_not_found(store.get_refresh_token("t1").await);
    assert_not_found(store.get_session("s1").await);
}

pub(crate) async fn unused_metadata_clients_purged(store: DynStore) {
    seed(&store).await;
    let cimd = |id: &str, expires_at: i64| {
        let mut c = client(id);
        c.kind = ClientKind::Cimd;
        c.client_secret_hash = None;
        c.token_endpoint_auth_method = "none".to_owned();
        c.expires_at = Some(expires_at);
        c
    };
    // Expired and unused: goes. Expired but consented to, holding a family
    // or a code: stays (it is refetched when used). Fresh: stays.
    for (id, exp) in [
        ("https://a.example/unused", NOW - 1),
        ("https://a.example/consented", NOW - 1),
        ("https://a.example/family", NOW - 1),
        ("https://a.example/code", NOW - 1),
        ("https://a.example/fresh", NOW + 60),
    ] {
        store.upsert_client(&cimd(id, exp)).await.unwrap();
    }
    store
        .upsert_consent(&consent("u1", "https://a.example/consented"))
        .await
        .unwrap();
    store
        .create_family(
            &family("f", "https://a.example/family", "u1"),
            &token("t", "f"),
        )
        .await
        .unwrap();
    store
        .insert_code(&code("h", "https://a.example/code", "u1"))
        .await
        .unwrap();
    // A pre-registered client is never touched, whatever its fields say.
    let mut pre = client("pre");
    pre.expires_at = Some(NOW - 100);
    store.create_client(&pre).await.unwrap();

    assert_eq!(store.purge_unused_metadata_clients(NOW).await.unwrap(), 1);
    assert_not_found(store.get_client("https://a.example/unused").await);
    for id in [
        "https://a.example/consented",
        "https://a.example/family",
        "https://a.example/code",
        "https://a.example/fresh",
        "pre",
    ] {
        assert!(store.get_client(id).await.is_ok(), "{id} must stay");
    }
    assert_eq!(store.purge_unused_metadata_clients(NOW).await.unwrap(), 0);
}
