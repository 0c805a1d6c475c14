//! Conformance cases for the vault of per-user upstream credentials.

use super::*;
use crate::traits::DynStore;

/// When a lease taken at [`NOW`] in these cases ends.
const LEASE: i64 = NOW + 60;

fn grant(user_id: &str, upstream: &str) -> UpstreamGrantRecord {
    UpstreamGrantRecord {
        user_id: user_id.to_owned(),
        upstream: upstream.to_owned(),
        // Not valid UTF-8, with NULs at both ends: must round-trip as bytes.
        sealed_tokens: vec![0x00, 0xFF, 0x80, 0xFE, upstream.len() as u8, 0x00],
        scope: "repo read:user".to_owned(),
        expires_at: Some(NOW + 3_600),
        created_at: NOW,
        updated_at: NOW,
        refresh_lease_until: 0,
    }
}

/// `g` as a refresh leaves it: new tokens, scope and expiry, written later.
fn refreshed(g: &UpstreamGrantRecord) -> UpstreamGrantRecord {
    UpstreamGrantRecord {
        sealed_tokens: vec![0xFF, 0x00, 0x01, 0xFF],
        scope: "repo".to_owned(),
        expires_at: Some(NOW + 7_200),
        updated_at: NOW + 10,
        ..g.clone()
    }
}

fn upstreams(grants: &[UpstreamGrantRecord]) -> Vec<&str> {
    grants.iter().map(|g| g.upstream.as_str()).collect()
}

pub(crate) async fn upstream_grants_put_get_list(store: DynStore) {
    seed(&store).await;
    let mut files = grant("u1", "files");
    files.expires_at = None;
    let github = grant("u1", "github");
    // Bytewise order: upper case sorts before lower case.
    let mail = grant("u1", "Mail");
    for g in [&files, &github, &mail] {
        store.put_upstream_grant(g).await.unwrap();
    }
    assert_eq!(
        store.get_upstream_grant("u1", "files").await.unwrap(),
        files
    );
    assert_eq!(
        store.get_upstream_grant("u1", "github").await.unwrap(),
        github
    );
    assert_eq!(
        store.list_upstream_grants("u1").await.unwrap(),
        vec![mail, files, github]
    );
    // Exact strings, per user.
    assert_not_found(store.get_upstream_grant("u1", "Files").await);
    assert_not_found(store.get_upstream_grant("u2", "files").await);
    assert!(store.list_upstream_grants("u2").await.unwrap().is_empty());
}

pub(crate) async fn upstream_grants_put_replaces(store: DynStore) {
    seed(&store).await;
    let first = grant("u1", "github");
    store.put_upstream_grant(&first).await.unwrap();
    store
        .lease_upstream_grant("u1", "github", NOW, LEASE)
        .await
        .unwrap();
    // A reconnect replaces every column, the lease included.
    let again = UpstreamGrantRecord {
        sealed_tokens: vec![0x00, 0x00, 0xFF],
        scope: "read:user".to_owned(),
        expires_at: None,
        created_at: NOW + 100,
        updated_at: NOW + 100,
        ..first.clone()
    };
    store.put_upstream_grant(&again).await.unwrap();
    assert_eq!(
        store.get_upstream_grant("u1", "github").await.unwrap(),
        again
    );
    assert_eq!(store.list_upstream_grants("u1").await.unwrap(), vec![again]);
}

pub(crate) async fn upstream_grants_absent(store: DynStore) {
    seed(&store).await;
    // The user must exist; nothing is written.
    assert_not_found(store.put_upstream_grant(&grant("u404", "github")).await);
    assert!(store.list_upstream_grants("u404").await.unwrap().is_empty());
    assert_not_found(store.get_upstream_grant("u404", "github").await);
    assert_not_found(store.get_upstream_grant("u1", "github").await);
    assert_not_found(store.delete_upstream_grant("u1", "github").await);
    assert_not_found(store.lease_upstream_grant("u1", "github", NOW, LEASE).await);
    assert_not_found(
        store
            .finish_upstream_refresh(&grant("u1", "github"), 0)
            .await,
    );
    assert!(
        store
            .delete_user_upstream_grants("u1")
            .await
            .unwrap()
            .is_empty()
    );
    // Neither a lease nor a refresh creates a row.
    assert!(store.list_upstream_grants("u1").await.unwrap().is_empty());
}

pub(crate) async fn upstream_grants_delete(store: DynStore) {
    seed(&store).await;
    let g = grant("u1", "github");
    store.put_upstream_grant(&g).await.unwrap();
    store
        .put_upstream_grant(&grant("u1", "files"))
        .await
        .unwrap();
    assert_eq!(
        store.delete_upstream_grant("u1", "github").await.unwrap(),
        g
    );
    assert_not_found(store.delete_upstream_grant("u1", "github").await);
    assert_not_found(store.get_upstream_grant("u1", "github").await);
    assert_eq!(
        upstreams(&store.list_upstream_grants("u1").await.unwrap()),
        ["files"]
    );
}

pub(crate) async fn upstream_grants_delete_for_user(store: DynStore) {
    seed(&store).await;
    for up in ["github", "files", "Mail", "calendar"] {
        store.put_upstream_grant(&grant("u1", up)).await.unwrap();
    }
    let bobs = grant("u2", "github");
    store.put_upstream_grant(&bobs).await.unwrap();
    let gone = store.delete_user_upstream_grants("u1").await.unwrap();
    assert_eq!(upstreams(&gone), ["Mail", "calendar", "files", "github"]);
    assert_eq!(gone[3], grant("u1", "github"));
    assert!(store.list_upstream_grants("u1").await.unwrap().is_empty());
    assert!(
        store
            .delete_user_upstream_grants("u1")
            .await
            .unwrap()
            .is_empty()
    );
    // Another user's rows stay.
    assert_eq!(store.list_upstream_grants("u2").await.unwrap(), vec![bobs]);
}

pub(crate) async fn upstream_grants_go_with_user(store: DynStore) {
    seed(&store).await;
    store
        .put_upstream_grant(&grant("u1", "github"))
        .await
        .unwrap();
    store
        .put_upstream_grant(&grant("u1", "files"))
        .await
        .unwrap();
    let bobs = grant("u2", "github");
    store.put_upstream_grant(&bobs).await.unwrap();
    store.delete_user("u1", at(NOW)).await.unwrap();
    assert!(store.list_upstream_grants("u1").await.unwrap().is_empty());
    assert_not_found(store.get_upstream_grant("u1", "github").await);
    assert_eq!(store.list_upstream_grants("u2").await.unwrap(), vec![bobs]);
}

pub(crate) async fn upstream_grants_lease(store: DynStore) {
    seed(&store).await;
    let g = grant("u1", "github");
    store.put_upstream_grant(&g).await.unwrap();
    store
        .put_upstream_grant(&grant("u1", "files"))
        .await
        .unwrap();
    let leased = store
        .lease_upstream_grant("u1", "github", NOW, LEASE)
        .await
        .unwrap();
    assert_eq!(
        leased,
        UpstreamGrantRecord {
            refresh_lease_until: LEASE,
            ..g.clone()
        }
    );
    assert_eq!(
        store.get_upstream_grant("u1", "github").await.unwrap(),
        leased
    );
    // Held until it ends; a refused lease changes nothing.
    assert_not_found(
        store
            .lease_upstream_grant("u1", "github", NOW, LEASE + 60)
            .await,
    );
    assert_not_found(
        store
            .lease_upstream_grant("u1", "github", LEASE - 1, LEASE + 60)
            .await,
    );
    assert_eq!(
        store.get_upstream_grant("u1", "github").await.unwrap(),
        leased
    );
    // Another upstream of the same user has a lease of its own.
    assert!(
        store
            .lease_upstream_grant("u1", "files", NOW, LEASE)
            .await
            .is_ok()
    );
    // Once `now` reaches the end, the lease can be taken again.
    let again = store
        .lease_upstream_grant("u1", "github", LEASE, LEASE + 60)
        .await
        .unwrap();
    assert_eq!(again.refresh_lease_until, LEASE + 60);
    assert_not_found(
        store
            .lease_upstream_grant("u1", "github", LEASE, LEASE + 120)
            .await,
    );
}

pub(crate) async fn upstream_grants_finish_refresh(store: DynStore) {
    seed(&store).await;
    let g = grant("u1", "github");
    store.put_upstream_grant(&g).await.unwrap();
    store
        .lease_upstream_grant("u1", "github", NOW, LEASE)
        .await
        .unwrap();
    // Only the token columns come from the record: not its created_at, nor
    // its lease.
    let new = refreshed(&g);
    let sent = UpstreamGrantRecord {
        created_at: NOW + 999,
        refresh_lease_until: LEASE + 999,
        ..new.clone()
    };
    store.finish_upstream_refresh(&sent, LEASE).await.unwrap();
    assert_eq!(store.get_upstream_grant("u1", "github").await.unwrap(), new);
    // The lease is over: ending it again finds nothing, and a new one can
    // be taken at once.
    assert_not_found(store.finish_upstream_refresh(&g, LEASE).await);
    assert_eq!(store.get_upstream_grant("u1", "github").await.unwrap(), new);
    assert!(
        store
            .lease_upstream_grant("u1", "github", NOW, LEASE)
            .await
            .is_ok()
    );
}

pub(crate) async fn upstream_grants_finish_stale_lease(store: DynStore) {
    seed(&store).await;
    let g = grant("u1", "github");
    store.put_upstream_grant(&g).await.unwrap();
    // No lease is held (0): "finishing" it writes nothing.
    assert_not_found(store.finish_upstream_refresh(&refreshed(&g), 0).await);
    assert_eq!(store.get_upstream_grant("u1", "github").await.unwrap(), g);
    store
        .lease_upstream_grant("u1", "github", NOW, LEASE)
        .await
        .unwrap();
    // The first refresher overran its lease and another took it over.
    let taken = store
        .lease_upstream_grant("u1", "github", LEASE + 1, LEASE + 61)
        .await
        .unwrap();
    assert_not_found(store.finish_upstream_refresh(&refreshed(&g), LEASE).await);
    assert_eq!(
        store.get_upstream_grant("u1", "github").await.unwrap(),
        taken
    );
    // The holder's lease still ends it.
    store
        .finish_upstream_refresh(&refreshed(&g), LEASE + 61)
        .await
        .unwrap();
    assert_eq!(
        store.get_upstream_grant("u1", "github").await.unwrap(),
        refreshed(&g)
    );
}

pub(crate) async fn upstream_grants_finish_after_delete(store: DynStore) {
    seed(&store).await;
    let g = grant("u1", "github");
    store.put_upstream_grant(&g).await.unwrap();
    store
        .lease_upstream_grant("u1", "github", NOW, LEASE)
        .await
        .unwrap();
    // Unlinked while refreshing: the refresh must not bring it back.
    store.delete_upstream_grant("u1", "github").await.unwrap();
    assert_not_found(store.finish_upstream_refresh(&refreshed(&g), LEASE).await);
    assert_not_found(store.get_upstream_grant("u1", "github").await);
    assert!(store.list_upstream_grants("u1").await.unwrap().is_empty());
    // Nor overwrite a reconnect made meanwhile.
    let reconnect = UpstreamGrantRecord {
        sealed_tokens: vec![0x00, 0x07, 0xFF],
        updated_at: NOW + 5,
        ..g.clone()
    };
    store.put_upstream_grant(&reconnect).await.unwrap();
    assert_not_found(store.finish_upstream_refresh(&refreshed(&g), LEASE).await);
    assert_eq!(
        store.get_upstream_grant("u1", "github").await.unwrap(),
        reconnect
    );
}

pub(crate) async fn upstream_grants_lease_concurrent_exactly_one(store: DynStore) {
    seed(&store).await;
    store
        .put_upstream_grant(&grant("u1", "github"))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let st = store.clone();
        tasks.push(tokio::spawn(async move {
            st.lease_upstream_grant("u1", "github", NOW, LEASE)
                .await
                .is_ok()
        }));
    }
    let mut won = 0;
    for t in tasks {
        if t.await.unwrap() {
            won += 1;
        }
    }
    assert_eq!(won, 1);
}

pub(crate) async fn upstream_grants_delete_concurrent_exactly_one(store: DynStore) {
    seed(&store).await;
    store
        .put_upstream_grant(&grant("u1", "github"))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let st = store.clone();
        tasks.push(tokio::spawn(async move {
            st.delete_upstream_grant("u1", "github").await.is_ok()
        }));
    }
    let mut won = 0;
    for t in tasks {
        if t.await.unwrap() {
            won += 1;
        }
    }
    assert_eq!(won, 1);
}
