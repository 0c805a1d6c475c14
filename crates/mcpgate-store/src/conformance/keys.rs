//! Conformance cases for signing keys and login sessions, for the cascades
//! of deleting a user or a client, and the two halves of the durability
//! check (data written, store closed and reopened, data still there).

use super::*;
use crate::traits::{DynStore, Redeem, Rotate};

pub(crate) async fn keys_insert_and_list(store: DynStore) {
    assert!(store.list_keys().await.unwrap().is_empty());
    let mut previous = key("k-prev", KeyState::Previous, NOW - 200);
    previous.rotated_at = Some(NOW - 100);
    let mut retired = key("k-ret", KeyState::Retired, NOW - 300);
    retired.rotated_at = Some(NOW - 200);
    retired.retired_at = Some(NOW - 10);
    let active = key("k-act", KeyState::Active, NOW - 100);
    // Same second as k-act, inserted later: comes after it.
    let twin = key("k-twin", KeyState::Previous, NOW - 100);
    for k in [&active, &previous, &retired, &twin] {
        store.insert_key(k).await.unwrap();
    }
    assert_conflict(
        store
            .insert_key(&key("k-prev", KeyState::Retired, NOW))
            .await,
    );
    assert_eq!(
        store.list_keys().await.unwrap(),
        vec![retired, previous, active, twin]
    );
}

pub(crate) async fn keys_rotate_and_retire(store: DynStore) {
    store
        .insert_key(&key("k1", KeyState::Active, NOW))
        .await
        .unwrap();
    let states = |store: DynStore| async move {
        store
            .list_keys()
            .await
            .unwrap()
            .into_iter()
            .map(|k| (k.kid, k.state, k.rotated_at, k.retired_at))
            .collect::<Vec<_>>()
    };
    let row = |kid: &str, state, rotated: Option<i64>, retired: Option<i64>| {
        (kid.to_owned(), state, rotated, retired)
    };
    use KeyState::{Active, Previous, Retired};

    // Whatever state the caller put on it, the new key goes in Active.
    store
        .rotate_keys(&key("k2", Previous, NOW + 10), NOW + 10, NOW)
        .await
        .unwrap();
    assert_eq!(
        states(store.clone()).await,
        [
            row("k1", Previous, Some(NOW + 10), None),
            row("k2", Active, None, None)
        ]
    );

    store
        .rotate_keys(&key("k3", Active, NOW + 20), NOW + 20, NOW + 15)
        .await
        .unwrap();
    assert_eq!(
        states(store.clone()).await,
        [
            row("k1", Retired, Some(NOW + 10), Some(NOW + 20)),
            row("k2", Previous, Some(NOW + 20), None),
            row("k3", Active, None, None),
        ]
    );

    // A failed rotation (kid taken) changes nothing.
    assert_conflict(
        store
            .rotate_keys(&key("k2", Active, NOW + 25), NOW + 25, NOW + 25)
            .await,
    );
    let before_retire = states(store.clone()).await;
    assert_eq!(before_retire[2], row("k3", Active, None, None));
    assert_eq!(before_retire[1], row("k2", Previous, Some(NOW + 20), None));

    // Strictly before: a key rotated at NOW + 20 stays for retire_before = NOW + 20.
    assert_eq!(store.retire_keys(NOW + 20, NOW + 30).await.unwrap(), 0);
    assert_eq!(store.retire_keys(NOW + 21, NOW + 30).await.unwrap(), 1);
    assert_eq!(store.retire_keys(NOW + 99, NOW + 40).await.unwrap(), 0);
    assert_eq!(
        states(store.clone()).await,
        [
            row("k1", Retired, Some(NOW + 10), Some(NOW + 20)),
            row("k2", Retired, Some(NOW + 20), Some(NOW + 30)),
            row("k3", Active, None, None),
        ]
    );
}

pub(crate) async fn keys_one_active(store: DynStore) {
    // Rotation with no key yet installs the first one.
    store
        .rotate_keys(&key("k1", KeyState::Active, NOW), NOW, NOW)
        .await
        .unwrap();
    // A second active key is refused; previous/retired ones are fine.
    assert_conflict(store.insert_key(&key("k2", KeyState::Active, NOW)).await);
    store
        .insert_key(&key("k2", KeyState::Previous, NOW))
        .await
        .unwrap();
    let active: Vec<_> = store
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .filter(|k| k.state == KeyState::Active)
        .map(|k| k.kid)
        .collect();
    assert_eq!(active, ["k1"]);
}

pub(crate) async fn sessions_lifecycle(store: DynStore) {
    seed(&store).await;
    let live = session("s1", "u1", NOW + 60);
    let stale = session("s2", "u2", NOW - 1);
    store.insert_session(&live).await.unwrap();
    store.insert_session(&stale).await.unwrap();
    assert_conflict(store.insert_session(&session("s1", "u2", NOW)).await);
    assert_eq!(store.get_session("s1").await.unwrap(), live);
    assert_not_found(store.get_session("s404").await);
    // Listed while live, per user or all; the expired one is not.
    assert_eq!(
        store.list_sessions(None, NOW).await.unwrap(),
        std::slice::from_ref(&live)
    );
    assert_eq!(
        store.list_sessions(Some("u1"), NOW).await.unwrap(),
        std::slice::from_ref(&live)
    );
    assert!(
        store
            .list_sessions(Some("u2"), NOW)
            .await
            .unwrap()
            .is_empty()
    );
    let other = session("s3", "u1", NOW + 90);
    store.insert_session(&other).await.unwrap();
    assert_eq!(store.list_sessions(Some("u1"), NOW).await.unwrap().len(), 2);
    assert_eq!(store.delete_sessions_of("u1").await.unwrap(), 2);
    assert_eq!(store.delete_sessions_of("u1").await.unwrap(), 0);
    store.insert_session(&live).await.unwrap();

    store.delete_session("s1").await.unwrap();
    assert_not_found(store.get_session("s1").await);
    assert_not_found(store.delete_session("s1").await);

    // Expired before `before`, strictly.
    assert_eq!(store.purge_sessions(NOW - 1).await.unwrap(), 0);
    assert_eq!(store.purge_sessions(NOW).await.unwrap(), 1);
    assert_not_found(store.get_session("s2").await);
    assert_eq!(store.purge_sessions(NOW).await.unwrap(), 0);
}

/// Gives `user` on `client` one of everything: consent, code, a family with
/// a rotated and a current token, and a login session (suffix `tag`).
async fn grant_everything(store: &DynStore, user: &str, client: &str, tag: &str) {
    store.upsert_consent(&consent(user, client)).await.unwrap();
    store
        .insert_code(&code(&format!("k-{tag}"), client, user))
        .await
        .unwrap();
    let fam = format!("f-{tag}");
    store
        .create_family(
            &family(&fam, client, user),
            &token(&format!("t1-{tag}"), &fam),
        )
        .await
        .unwrap();
    let rotated = store
        .rotate_refresh_token(
            &format!("t1-{tag}"),
            &token(&format!("t2-{tag}"), &fam),
            at(NOW + 1),
        )
        .await
        .unwrap();
    assert!(matches!(rotated, Rotate::Rotated { .. }));
    store
        .insert_session(&session(&format!("s-{tag}"), user, NOW + 60))
        .await
        .unwrap();
}

/// Whether everything `grant_everything` made for `tag` is still there.
async fn has_everything(store: &DynStore, user: &str, client: &str, tag: &str) -> [bool; 6] {
    [
        store.get_consent(user, client).await.is_ok(),
        store
            .redeem_code(&format!("k-{tag}"), NOW + 2)
            .await
            .is_ok(),
        store.get_refresh_token(&format!("t1-{tag}")).await.is_ok(),
        store.get_refresh_token(&format!("t2-{tag}")).await.is_ok(),
        store
            .list_families(Some(user), NOW)
            .await
            .unwrap()
            .iter()
            .any(|f| f.client_id == client),
        store.get_session(&format!("s-{tag}")).await.is_ok(),
    ]
}

/// A form is spent once: the second submission, and every concurrent
/// one but a single winner, is `Conflict`; marks go at their expiry.
pub(crate) async fn spent_forms_single_use(store: DynStore) {
    store.spend_form("f1", NOW + 600).await.unwrap();
    assert_conflict(store.spend_form("f1", NOW + 600).await);
    // Another expiry does not make it another form.
    assert_conflict(store.spend_form("f1", NOW + 900).await);
    store.spend_form("f2", NOW + 10).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let st = store.clone();
        tasks.push(tokio::spawn(
            async move { st.spend_form("f3", NOW + 600).await },
        ));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => won += 1,
            other => assert_conflict(other),
        }
    }
    assert_eq!(won, 1, "exactly one concurrent submission spends a form");
    // Expired before `before`, strictly; a purged mark is gone.
    assert_eq!(store.purge_spent_forms(NOW + 10).await.unwrap(), 0);
    assert_eq!(store.purge_spent_forms(NOW + 11).await.unwrap(), 1);
    store.spend_form("f2", NOW + 10).await.unwrap();
    assert_conflict(store.spend_form("f1", NOW + 600).await);
}

pub(crate) async fn delete_user_cascades(store: DynStore) {
    seed(&store).await;
    grant_everything(&store, "u1", "c1", "a").await;
    grant_everything(&store, "u1", "c2", "b").await;
    grant_everything(&store, "u2", "c1", "c").await;

    store.delete_user("u1", at(NOW)).await.unwrap();
    assert_eq!(has_everything(&store, "u1", "c1", "a").await, [false; 6]);
    assert_eq!(has_everything(&store, "u1", "c2", "b").await, [false; 6]);
    assert_eq!(has_everything(&store, "u2", "c1", "c").await, [true; 6]);
    assert!(store.list_consents(Some("u1")).await.unwrap().is_empty());
    // Clients stay.
    store.get_client("c1").await.unwrap();
    store.get_client("c2").await.unwrap();
}

pub(crate) async fn delete_client_cascades(store: DynStore) {
    seed(&store).await;
    grant_everything(&store, "u1", "c1", "a").await;
    grant_everything(&store, "u2", "c1", "b").await;
    grant_everything(&store, "u1", "c2", "c").await;

    store.delete_client("c1", at(NOW)).await.unwrap();
    // Login sessions belong to users, not clients: they stay.
    let gone = [false, false, false, false, false, true];
    assert_eq!(has_everything(&store, "u1", "c1", "a").await, gone);
    assert_eq!(has_everything(&store, "u2", "c1", "b").await, gone);
    assert_eq!(has_everything(&store, "u1", "c2", "c").await, [true; 6]);
    let consents: Vec<_> = store
        .list_consents(None)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.client_id)
        .collect();
    assert_eq!(consents, ["c2"]);
    // Users stay.
    store.get_user("u1").await.unwrap();
    store.get_user("u2").await.unwrap();
}

/// Durability, first half: writes one of everything into a fresh store.
pub async fn durability_write(store: DynStore) {
    seed(&store).await;
    grant_everything(&store, "u1", "c1", "a").await;
    store
        .insert_code(&code("k-unused", "c1", "u2"))
        .await
        .unwrap();
    assert!(matches!(
        store.redeem_code("k-a", NOW + 3).await.unwrap(),
        Redeem::Fresh(_)
    ));
    store
        .insert_key(&key("k-1", KeyState::Active, NOW))
        .await
        .unwrap();
    store
        .rotate_keys(&key("k-2", KeyState::Active, NOW + 5), NOW + 5, NOW)
        .await
        .unwrap();
}

/// Durability, second half: run on a store reopened over the database that
/// [`durability_write`] wrote; everything, including each single-use and
/// rotation state change, must still be there.
pub async fn durability_verify(store: DynStore) {
    assert_eq!(store.get_user("u1").await.unwrap(), user("u1", "alice"));
    assert_eq!(store.get_client("c1").await.unwrap(), client("c1"));
    assert_eq!(
        store.get_consent("u1", "c1").await.unwrap(),
        consent("u1", "c1")
    );
    match store.redeem_code("k-a", NOW + 9).await.unwrap() {
        Redeem::Replayed(c) => assert_eq!(c.used_at, Some(NOW + 3)),
        other => panic!("expected the code to stay used, got {other:?}"),
    }
    assert!(matches!(
        store.redeem_code("k-unused", NOW + 9).await.unwrap(),
        Redeem::Fresh(_)
    ));
    assert_eq!(
        store.get_refresh_token("t1-a").await.unwrap().0.rotated_at,
        Some(NOW + 1)
    );
    let (current, fam) = store.get_refresh_token("t2-a").await.unwrap();
    assert_eq!(current.rotated_at, None);
    assert_eq!(fam, family("f-a", "c1", "u1"));
    let keys: Vec<_> = store
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k.kid, k.state))
        .collect();
    assert_eq!(
        keys,
        [
            ("k-1".to_owned(), KeyState::Previous),
            ("k-2".to_owned(), KeyState::Active)
        ]
    );
    assert_eq!(
        store.get_session("s-a").await.unwrap(),
        session("s-a", "u1", NOW + 60)
    );
    // And it still works: the reused first token now revokes the family.
    assert!(matches!(
        store
            .rotate_refresh_token("t1-a", &token("t3-a", "f-a"), at(NOW + 10))
            .await
            .unwrap(),
        Rotate::Reused { .. }
    ));
}
