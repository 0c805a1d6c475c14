//! Conformance cases for gateway sessions shared by replicas.

use super::*;
use crate::traits::{DynStore, SessionOwner};

const T: i64 = NOW * 1000;

fn session(id: &str, subject: &str, last_used: i64) -> GatewaySessionRecord {
    GatewaySessionRecord {
        id_hash: id.to_owned(),
        upstream: "files".to_owned(),
        issuer: "https://as.example".to_owned(),
        subject: subject.to_owned(),
        client_id: "c1".to_owned(),
        replica: "r1".to_owned(),
        state: Some(vec![0, 255, 7]),
        created_at: last_used,
        last_used,
    }
}

fn owner<'a>(s: &'a GatewaySessionRecord) -> SessionOwner<'a> {
    SessionOwner {
        upstream: &s.upstream,
        issuer: &s.issuer,
        subject: &s.subject,
        client_id: &s.client_id,
    }
}

pub(crate) async fn gateway_sessions_bound_to_owner(store: DynStore) {
    let s = session("h1", "alice", T);
    assert!(
        store
            .insert_gateway_session(&s, 4)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        store.insert_gateway_session(&s, 4).await,
        Err(StoreError::Conflict(_))
    ));
    // Found, and marked used, by its owner on its upstream.
    let got = store
        .touch_gateway_session("h1", owner(&s), T + 5, T)
        .await
        .unwrap();
    assert_eq!(got.last_used, T + 5);
    assert_eq!(got.state, s.state);
    // An earlier clock never moves last_used back.
    let got = store
        .touch_gateway_session("h1", owner(&s), T + 1, T)
        .await
        .unwrap();
    assert_eq!(got.last_used, T + 5);
    // Anyone else, another upstream, another id: not found, nothing changed.
    for o in [
        SessionOwner {
            subject: "bob",
            ..owner(&s)
        },
        SessionOwner {
            client_id: "c2",
            ..owner(&s)
        },
        SessionOwner {
            issuer: "https://other.example",
            ..owner(&s)
        },
        SessionOwner {
            upstream: "mail",
            ..owner(&s)
        },
    ] {
        assert!(matches!(
            store.touch_gateway_session("h1", o, T + 99, T).await,
            Err(StoreError::NotFound)
        ));
    }
    assert!(matches!(
        store
            .touch_gateway_session("h2", owner(&s), T + 99, T)
            .await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        store.live_gateway_sessions("r1", T).await.unwrap(),
        vec!["h1".to_owned()]
    );
    // Idle past the limit: not found, and not revived.
    assert!(matches!(
        store
            .touch_gateway_session("h1", owner(&s), T + 100, T + 6)
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(
        store
            .live_gateway_sessions("r1", T + 6)
            .await
            .unwrap()
            .is_empty()
    );
    // Deleted once.
    assert_eq!(
        store.delete_gateway_session("h1").await.unwrap().id_hash,
        "h1"
    );
    assert!(matches!(
        store.delete_gateway_session("h1").await,
        Err(StoreError::NotFound)
    ));
}

pub(crate) async fn gateway_sessions_cap_evicts_least_recently_used(store: DynStore) {
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        let s = session(id, "alice", T + i as i64);
        assert!(
            store
                .insert_gateway_session(&s, 3)
                .await
                .unwrap()
                .is_empty()
        );
    }
    // Another owner's sessions never count.
    store
        .insert_gateway_session(&session("x", "bob", T - 50), 3)
        .await
        .unwrap();
    // "a" is used again: "b" is now the least recently used.
    let a = session("a", "alice", T);
    store
        .touch_gateway_session("a", owner(&a), T + 10, T - 100)
        .await
        .unwrap();
    let evicted = store
        .insert_gateway_session(&session("d", "alice", T + 11), 3)
        .await
        .unwrap();
    assert_eq!(
        evicted
            .iter()
            .map(|e| e.id_hash.as_str())
            .collect::<Vec<_>>(),
        ["b"]
    );
    // A cap of one keeps only the new one, even if it is the oldest.
    let evicted = store
        .insert_gateway_session(&session("e", "alice", T - 1000), 1)
        .await
        .unwrap();
    let mut gone: Vec<_> = evicted.iter().map(|e| e.id_hash.clone()).collect();
    gone.sort();
    assert_eq!(gone, ["a", "c", "d"]);
    let mut live = store.live_gateway_sessions("r1", 0).await.unwrap();
    live.sort();
    assert_eq!(live, ["e", "x"]);
}

pub(crate) async fn gateway_sessions_purge_and_replicas(store: DynStore) {
    let mut pinned = session("p", "alice", T);
    pinned.replica = "r2".to_owned();
    pinned.state = None;
    store.insert_gateway_session(&pinned, 8).await.unwrap();
    for (i, id) in ["o1", "o2", "o3"].iter().enumerate() {
        store
            .insert_gateway_session(&session(id, "bob", T - 100 + i as i64), 8)
            .await
            .unwrap();
    }
    assert_eq!(store.live_gateway_sessions("r2", 0).await.unwrap(), ["p"]);
    assert_eq!(
        store
            .touch_gateway_session("p", owner(&pinned), T, 0)
            .await
            .unwrap()
            .state,
        None
    );
    // Oldest first, at most `limit` per call, each row to one caller.
    let first = store.purge_gateway_sessions(T, 2).await.unwrap();
    assert_eq!(
        first.iter().map(|e| e.id_hash.as_str()).collect::<Vec<_>>(),
        ["o1", "o2"]
    );
    let rest = store.purge_gateway_sessions(T, 10).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert!(
        store
            .purge_gateway_sessions(T, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.live_gateway_sessions("r2", 0).await.unwrap(), ["p"]);
}

pub(crate) async fn gateway_sessions_concurrent_delete_exactly_one(store: DynStore) {
    store
        .insert_gateway_session(&session("z", "alice", T), 4)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.delete_gateway_session("z").await.is_ok() })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1);
}
