//! What replicas share to act as one: token buckets (whole tokens, the
//! capacity as a ceiling, refills by the database's clock, no token given
//! twice under concurrency), the replica heartbeat, and the housekeeping
//! lock as a one-node backend has it.

use std::sync::Arc;
use std::time::Duration;

use crate::records::KeyState;
use crate::traits::{Bucket, DynStore, FleetStore};

const NO_REFILL: Bucket = Bucket {
    capacity: 10,
    refill_per_sec: 0.0,
};

pub(crate) async fn fleet_bucket_takes_whole_tokens(store: DynStore) {
    let t = store.take_tokens("k", NO_REFILL, 4).await.unwrap();
    assert_eq!(t.granted, 4, "a new bucket starts full");
    assert!((t.left - 6.0).abs() < 1e-9, "left {}", t.left);
    let t = store.take_tokens("k", NO_REFILL, 10).await.unwrap();
    assert_eq!(t.granted, 6, "no more than the bucket holds");
    assert!(t.left.abs() < 1e-9);
    let t = store.take_tokens("k", NO_REFILL, 1).await.unwrap();
    assert_eq!(t.granted, 0);
    // Keys are independent, and a request for more than the capacity of a
    // fresh bucket gets the capacity.
    let t = store.take_tokens("other", NO_REFILL, 50).await.unwrap();
    assert_eq!(t.granted, 10);
    // Hostile keys are data.
    let key = "k'; DROP TABLE rate_limits; --\u{2028}é";
    assert_eq!(
        store.take_tokens(key, NO_REFILL, 1).await.unwrap().granted,
        1
    );
    assert_eq!(
        store.take_tokens("k", NO_REFILL, 1).await.unwrap().granted,
        0
    );
}

pub(crate) async fn fleet_bucket_refills_up_to_capacity(store: DynStore) {
    let fast = Bucket {
        capacity: 10,
        refill_per_sec: 1000.0,
    };
    assert_eq!(store.take_tokens("r", fast, 10).await.unwrap().granted, 10);
    // 100 ms at 1000/s would be 100 tokens: the capacity caps it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = store.take_tokens("r", fast, 1000).await.unwrap();
    assert_eq!(t.granted, 10, "refilled to the capacity, not past it");
    let slow = Bucket {
        capacity: 10,
        refill_per_sec: 0.001,
    };
    assert_eq!(store.take_tokens("s", slow, 10).await.unwrap().granted, 10);
    let t = store.take_tokens("s", slow, 1).await.unwrap();
    assert_eq!(t.granted, 0, "a fraction of a token is not a token");
    assert!(t.left < 1.0);
}

pub(crate) async fn fleet_bucket_concurrent_no_token_twice(store: DynStore) {
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let s: Arc<dyn FleetStore> = store.clone();
        tasks.push(tokio::spawn(async move {
            s.take_tokens("c", NO_REFILL, 1).await.unwrap().granted
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, 10, "exactly the capacity, across concurrent takers");
}

pub(crate) async fn fleet_buckets_purged_when_idle(store: DynStore) {
    store.take_tokens("p", NO_REFILL, 1).await.unwrap();
    assert_eq!(store.purge_rate_limits(3600.0).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(store.purge_rate_limits(0.0).await.unwrap(), 1);
    // Gone is full.
    assert_eq!(
        store.take_tokens("p", NO_REFILL, 10).await.unwrap().granted,
        10
    );
}

pub(crate) async fn fleet_heartbeat_counts_live_replicas(store: DynStore) {
    assert_eq!(store.fleet_heartbeat("a", 60.0).await.unwrap(), 1);
    assert_eq!(store.fleet_heartbeat("b", 60.0).await.unwrap(), 2);
    assert_eq!(store.fleet_heartbeat("a", 60.0).await.unwrap(), 2);
    tokio::time::sleep(Duration::from_millis(20)).await;
    // `b` has not been seen for longer than this TTL; `a` just was.
    assert_eq!(store.fleet_heartbeat("a", 0.01).await.unwrap(), 1);
}

pub(crate) async fn fleet_housekeeper_acquires(store: DynStore) {
    let mut h = store.housekeeper("conformance");
    assert!(h.acquire().await);
    assert!(h.acquire().await, "a holder keeps it");
}

/// A key rotation is a change every replica must see: it moves the
/// revision the change feed follows.
pub(crate) async fn fleet_key_rotation_moves_the_revision(store: DynStore) {
    let before = store.revocation_revision().await.unwrap();
    store
        .rotate_keys(&super::key("k-feed", KeyState::Active, 1), 1, 0)
        .await
        .unwrap();
    assert!(store.revocation_revision().await.unwrap() > before);
}
