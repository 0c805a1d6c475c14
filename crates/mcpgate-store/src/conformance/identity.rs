//! Conformance cases for linked identities and upstream sign-in state.

use super::*;
use crate::traits::DynStore;

fn identity(provider: &str, subject: &str, user_id: &str) -> LinkedIdentityRecord {
    LinkedIdentityRecord {
        provider: provider.to_owned(),
        subject: subject.to_owned(),
        user_id: user_id.to_owned(),
        email: Some(format!("{subject}@corp.example")),
        created_at: NOW,
    }
}

fn upstream_state(state_hash: &str, binding_hash: &str, expires_at: i64) -> UpstreamStateRecord {
    UpstreamStateRecord {
        state_hash: state_hash.to_owned(),
        binding_hash: binding_hash.to_owned(),
        provider: "corp".to_owned(),
        nonce_hash: "n".repeat(64),
        sealed_verifier: vec![0, 255, 1, 2, 3],
        request_params: r#"[["client_id","c1"]]"#.to_owned(),
        created_at: NOW,
        expires_at,
    }
}

pub(crate) async fn identities_link_and_get(store: DynStore) {
    let u = user("u9", "corp/alice");
    let id = identity("corp", "Alice-Sub", "u9");
    store.create_linked_user(&u, &id).await.unwrap();
    assert_eq!(store.get_user("u9").await.unwrap(), u);
    assert_eq!(
        store
            .get_linked_identity("corp", "Alice-Sub")
            .await
            .unwrap(),
        id
    );
    // Exact strings: another case or provider is another identity.
    assert_not_found(store.get_linked_identity("corp", "alice-sub").await);
    assert_not_found(store.get_linked_identity("other", "Alice-Sub").await);
    assert_eq!(
        store.list_linked_identities("u9").await.unwrap(),
        vec![id.clone()]
    );
    // The same upstream identity cannot be linked twice, and a failed link
    // creates no user (one transaction).
    let u2 = user("u10", "corp/alice2");
    assert_conflict(
        store
            .create_linked_user(&u2, &identity("corp", "Alice-Sub", "u10"))
            .await,
    );
    assert_not_found(store.get_user("u10").await);
    // Deleting the user removes its links.
    store.delete_user("u9", at(NOW)).await.unwrap();
    assert_not_found(store.get_linked_identity("corp", "Alice-Sub").await);
}

pub(crate) async fn upstream_state_single_use(store: DynStore) {
    let s = upstream_state("s1", "b1", NOW + 600);
    store.insert_upstream_state(&s).await.unwrap();
    assert_conflict(store.insert_upstream_state(&s).await);
    // Another binding (another browser's cookie) neither gets nor consumes it.
    assert_not_found(store.take_upstream_state("s1", "b2", NOW).await);
    assert_eq!(store.take_upstream_state("s1", "b1", NOW).await.unwrap(), s);
    // Reuse.
    assert_not_found(store.take_upstream_state("s1", "b1", NOW).await);
    assert_not_found(store.take_upstream_state("nope", "b1", NOW).await);
}

pub(crate) async fn upstream_state_expiry_and_purge(store: DynStore) {
    store
        .insert_upstream_state(&upstream_state("s1", "b1", NOW + 600))
        .await
        .unwrap();
    store
        .insert_upstream_state(&upstream_state("s2", "b2", NOW + 10))
        .await
        .unwrap();
    assert_not_found(store.take_upstream_state("s1", "b1", NOW + 600).await);
    assert_eq!(store.purge_upstream_states(NOW + 100).await.unwrap(), 1);
    assert_not_found(store.take_upstream_state("s2", "b2", NOW).await);
    assert!(
        store
            .take_upstream_state("s1", "b1", NOW + 599)
            .await
            .is_ok()
    );
}

pub(crate) async fn upstream_state_concurrent_exactly_one(store: DynStore) {
    store
        .insert_upstream_state(&upstream_state("s1", "b1", NOW + 600))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let st = store.clone();
        tasks.push(tokio::spawn(async move {
            st.take_upstream_state("s1", "b1", NOW).await.is_ok()
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
