//! Conformance cases for authorization codes (single use) and refresh-token
//! families (rotation, reuse detection, revocation), including the races.

use std::sync::Arc;

use tokio::sync::Barrier;

use super::*;
use crate::traits::{DynStore, Redeem, Rotate};

/// How many callers race for one code or one refresh token.
const RACERS: usize = 20;

pub(crate) async fn code_redeem_fresh_then_replayed(store: DynStore) {
    seed(&store).await;
    let issued = code("k1", "c1", "u1");
    store.insert_code(&issued).await.unwrap();
    assert_conflict(store.insert_code(&code("k1", "c2", "u2")).await);

    let mut used = issued.clone();
    used.used_at = Some(NOW + 1);
    assert_eq!(
        store.redeem_code("k1", NOW + 1).await.unwrap(),
        Redeem::Fresh(used.clone())
    );
    // The replay sees the record as stored: first use time kept.
    assert_eq!(
        store.redeem_code("k1", NOW + 2).await.unwrap(),
        Redeem::Replayed(used.clone())
    );
    assert_eq!(
        store.redeem_code("k1", NOW + 3).await.unwrap(),
        Redeem::Replayed(used)
    );
    assert_not_found(store.redeem_code("k404", NOW).await);
    // Hashes are exact strings.
    assert_not_found(store.redeem_code("K1", NOW).await);
}

pub(crate) async fn code_redeem_concurrent_exactly_one(store: DynStore) {
    seed(&store).await;
    store.insert_code(&code("k1", "c1", "u1")).await.unwrap();
    let start = Arc::new(Barrier::new(RACERS));
    let racers: Vec<_> = (0..RACERS as i64)
        .map(|i| {
            let (store, start) = (store.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                store.redeem_code("k1", NOW + 1 + i).await
            })
        })
        .collect();
    let mut fresh = Vec::new();
    let mut replayed = Vec::new();
    for racer in racers {
        match racer
            .await
            .expect("task")
            .expect("redeem must not fail under contention")
        {
            Redeem::Fresh(c) => fresh.push(c),
            Redeem::Replayed(c) => replayed.push(c),
        }
    }
    assert_eq!(fresh.len(), 1, "exactly one redemption wins");
    assert_eq!(replayed.len(), RACERS - 1);
    let won_at = fresh[0].used_at.expect("used_at set");
    for r in &replayed {
        assert_eq!(r.used_at, Some(won_at), "replays see the winner's use");
    }
    assert_eq!(
        store.redeem_code("k1", NOW + 100).await.unwrap(),
        Redeem::Replayed(fresh[0].clone())
    );
}

pub(crate) async fn code_get_does_not_consume(store: DynStore) {
    seed(&store).await;
    let issued = code("k1", "c1", "u1");
    store.insert_code(&issued).await.unwrap();
    assert_eq!(store.get_code("k1").await.unwrap(), issued);
    assert_eq!(store.get_code("k1").await.unwrap(), issued);
    assert_not_found(store.get_code("k404").await);
    assert_not_found(store.get_code("K1").await);
    let mut used = issued.clone();
    used.used_at = Some(NOW + 1);
    assert_eq!(
        store.redeem_code("k1", NOW + 1).await.unwrap(),
        Redeem::Fresh(used.clone())
    );
    assert_eq!(store.get_code("k1").await.unwrap(), used);
}

/// A code read with its user: one row, both records as stored; the user
/// as they are now (a disabled user reads disabled), and gone with the user.
pub(crate) async fn code_get_with_user(store: DynStore) {
    seed(&store).await;
    let issued = code("k1", "c1", "u1");
    store.insert_code(&issued).await.unwrap();
    store.insert_code(&code("k2", "c1", "u2")).await.unwrap();
    let (got, who) = store.get_code_and_user("k1").await.unwrap();
    assert_eq!(got, issued);
    assert_eq!(who, store.get_user("u1").await.unwrap());
    assert_not_found(store.get_code_and_user("k404").await);

    let mut bob = store.get_user("u2").await.unwrap();
    bob.disabled = true;
    bob.updated_at = NOW + 1;
    store.update_user(&bob).await.unwrap();
    assert_eq!(store.get_code_and_user("k2").await.unwrap().1, bob);

    store.delete_user("u2", at(NOW + 2)).await.unwrap();
    assert_not_found(store.get_code_and_user("k2").await);
}

/// A refresh token read with its family and the family's user.
pub(crate) async fn refresh_get_with_user(store: DynStore) {
    seed(&store).await;
    let fam = family("f1", "c1", "u2");
    let first = token("t1", "f1");
    store.create_family(&fam, &first).await.unwrap();
    let (t, f, u) = store.get_refresh_token_and_user("t1").await.unwrap();
    assert_eq!((t, f), (first, fam));
    assert_eq!(u, store.get_user("u2").await.unwrap());
    assert_not_found(store.get_refresh_token_and_user("t404").await);
    store.delete_user("u2", at(NOW + 1)).await.unwrap();
    assert_not_found(store.get_refresh_token_and_user("t1").await);
}

pub(crate) async fn code_redeem_with_family(store: DynStore) {
    seed(&store).await;
    let issued = code("k1", "c1", "u1");
    store.insert_code(&issued).await.unwrap();
    let mut fam = family("f1", "c1", "u1");
    fam.code_hash = Some("k1".into());
    let first = token("t1", "f1");
    let mut used = issued.clone();
    used.used_at = Some(NOW + 1);
    assert_eq!(
        store
            .redeem_code_with_family("k1", NOW + 1, Some((&fam, &first)))
            .await
            .unwrap(),
        (Redeem::Fresh(used.clone()), true)
    );
    assert_eq!(
        store.get_refresh_token("t1").await.unwrap(),
        (first.clone(), fam.clone())
    );
    // A replay: nothing stored, the first use's record returned.
    let mut other = family("f2", "c1", "u1");
    other.code_hash = Some("k1".into());
    assert_eq!(
        store
            .redeem_code_with_family("k1", NOW + 2, Some((&other, &token("t2", "f2"))))
            .await
            .unwrap(),
        (Redeem::Replayed(used), false)
    );
    assert_not_found(store.get_refresh_token("t2").await);
    assert_not_found(store.redeem_code_with_family("k404", NOW, None).await);

    // Without a family: the code is consumed and nothing else written.
    store.insert_code(&code("k2", "c1", "u1")).await.unwrap();
    let (r, stored) = store
        .redeem_code_with_family("k2", NOW, None)
        .await
        .unwrap();
    assert!(matches!(r, Redeem::Fresh(_)) && !stored);

    // The family id is taken (a replay's placeholder): the code is consumed,
    // the placeholder and its token are untouched, the new token not stored.
    store.insert_code(&code("k3", "c1", "u1")).await.unwrap();
    let mut placeholder = family("f3", "c1", "u1");
    placeholder.revoked_at = Some(NOW);
    store
        .create_family(&placeholder, &token("t3", "f3"))
        .await
        .unwrap();
    let (r, stored) = store
        .redeem_code_with_family(
            "k3",
            NOW + 1,
            Some((&family("f3", "c1", "u1"), &token("t4", "f3"))),
        )
        .await
        .unwrap();
    assert!(matches!(r, Redeem::Fresh(_)) && !stored);
    assert_eq!(store.get_refresh_token("t3").await.unwrap().1, placeholder);
    assert_not_found(store.get_refresh_token("t4").await);
    assert!(matches!(
        store.redeem_code("k3", NOW + 2).await.unwrap(),
        Redeem::Replayed(_)
    ));

    // A token that names another family is refused before anything is written.
    store.insert_code(&code("k5", "c1", "u1")).await.unwrap();
    assert_conflict(
        store
            .redeem_code_with_family(
                "k5",
                NOW,
                Some((&family("f5", "c1", "u1"), &token("t5", "f1"))),
            )
            .await,
    );
    assert!(matches!(
        store.redeem_code("k5", NOW).await.unwrap(),
        Redeem::Fresh(_)
    ));

    // A token hash that exists already: the whole transaction is undone,
    // so the code stays unused and no family is left behind.
    store.insert_code(&code("k6", "c1", "u1")).await.unwrap();
    assert_conflict(
        store
            .redeem_code_with_family(
                "k6",
                NOW,
                Some((&family("f6", "c1", "u1"), &token("t1", "f6"))),
            )
            .await,
    );
    assert_eq!(store.get_code("k6").await.unwrap().used_at, None);
    let ids = live_family_ids(&*store).await;
    assert!(!ids.contains(&"f6".to_string()), "{ids:?}");
}

pub(crate) async fn code_redeem_with_family_concurrent_exactly_one(store: DynStore) {
    seed(&store).await;
    store.insert_code(&code("k1", "c1", "u1")).await.unwrap();
    let start = Arc::new(Barrier::new(RACERS));
    let racers: Vec<_> = (0..RACERS)
        .map(|i| {
            let (store, start) = (store.clone(), start.clone());
            tokio::spawn(async move {
                let fam = family(&format!("f{i}"), "c1", "u1");
                let first = token(&format!("t{i}"), &fam.family_id);
                start.wait().await;
                store
                    .redeem_code_with_family("k1", NOW + 1, Some((&fam, &first)))
                    .await
            })
        })
        .collect();
    let mut stored = 0;
    let mut fresh = 0;
    for racer in racers {
        let (r, s) = racer
            .await
            .expect("task")
            .expect("redeem must not fail under contention");
        fresh += usize::from(matches!(r, Redeem::Fresh(_)));
        stored += usize::from(s);
    }
    assert_eq!(
        (fresh, stored),
        (1, 1),
        "exactly one redemption and one family"
    );
    assert_eq!(store.list_families(None, NOW).await.unwrap().len(), 1);
}

/// Many code exchanges and rotations at once (on SQLite they are committed
/// in groups), some of which fail on a unique key: each failing one writes
/// nothing (its code stays unused, its token stays current, no family or
/// successor is left), and none of the others fails with it.
pub(crate) async fn grant_steps_fail_alone(store: DynStore) {
    const STEPS: usize = 48;
    seed(&store).await;
    // "dup" exists, so any step that stores a token by that hash fails.
    store
        .create_family(&family("f_dup", "c1", "u1"), &token("dup", "f_dup"))
        .await
        .unwrap();
    for i in 0..STEPS {
        if i % 2 == 0 {
            store
                .insert_code(&code(&format!("k{i}"), "c1", "u1"))
                .await
                .unwrap();
        } else {
            store
                .create_family(
                    &family(&format!("r{i}"), "c1", "u1"),
                    &token(&format!("a{i}"), &format!("r{i}")),
                )
                .await
                .unwrap();
        }
    }
    let fails = |i: usize| i % 6 == 4 || i % 6 == 5;
    let start = Arc::new(Barrier::new(STEPS));
    let steps: Vec<_> = (0..STEPS)
        .map(|i| {
            let (store, start) = (store.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                if i % 2 == 0 {
                    let fam = family(&format!("f{i}"), "c1", "u1");
                    let hash = if fails(i) {
                        "dup".to_owned()
                    } else {
                        format!("t{i}")
                    };
                    let first = token(&hash, &fam.family_id);
                    store
                        .redeem_code_with_family(&format!("k{i}"), NOW + 1, Some((&fam, &first)))
                        .await
                        .map(|(r, stored)| matches!(r, Redeem::Fresh(_)) && stored)
                } else {
                    let family_id = format!("r{i}");
                    let hash = if fails(i) {
                        "dup".to_owned()
                    } else {
                        format!("b{i}")
                    };
                    let next = token(&hash, &family_id);
                    store
                        .rotate_refresh_token(&format!("a{i}"), &next, at(NOW + 1))
                        .await
                        .map(|r| matches!(r, Rotate::Rotated { .. }))
                }
            })
        })
        .collect();
    for (i, step) in steps.into_iter().enumerate() {
        let outcome = step.await.expect("task");
        if !fails(i) {
            assert!(
                outcome.expect("a neighbour of a failed step must not fail"),
                "step {i}"
            );
            continue;
        }
        assert_conflict(outcome);
        if i % 2 == 0 {
            assert_eq!(
                store.get_code(&format!("k{i}")).await.unwrap().used_at,
                None,
                "code of failed step {i}"
            );
            assert_not_found(store.get_refresh_token(&format!("t{i}")).await);
            let ids = live_family_ids(&*store).await;
            assert!(
                !ids.contains(&format!("f{i}")),
                "family of failed step {i}: {ids:?}"
            );
        } else {
            let (old, _) = store.get_refresh_token(&format!("a{i}")).await.unwrap();
            assert_eq!(old.rotated_at, None, "token of failed step {i}");
        }
    }
    // The failed steps can be retried: nothing of them was left behind.
    for i in (0..STEPS).filter(|&i| fails(i)) {
        if i % 2 == 0 {
            let fam = family(&format!("f{i}"), "c1", "u1");
            let (r, stored) = store
                .redeem_code_with_family(
                    &format!("k{i}"),
                    NOW + 2,
                    Some((&fam, &token(&format!("t{i}"), &fam.family_id))),
                )
                .await
                .unwrap();
            assert!(matches!(r, Redeem::Fresh(_)) && stored, "retry of step {i}");
        } else {
            let r = store
                .rotate_refresh_token(
                    &format!("a{i}"),
                    &token(&format!("b{i}"), &format!("r{i}")),
                    at(NOW + 2),
                )
                .await
                .unwrap();
            assert!(
                matches!(r, Rotate::Rotated { .. }),
                "retry of step {i}: {r:?}"
            );
        }
    }
}

pub(crate) async fn code_purge(store: DynStore) {
    seed(&store).await;
    for (hash, expires_at) in [("old", NOW - 10), ("edge", NOW), ("live", NOW + 60)] {
        let mut c = code(hash, "c1", "u1");
        c.expires_at = expires_at;
        store.insert_code(&c).await.unwrap();
    }
    assert_eq!(store.purge_codes(NOW).await.unwrap(), 1);
    assert_not_found(store.redeem_code("old", NOW).await);
    assert_eq!(store.purge_codes(NOW).await.unwrap(), 0);
    assert_eq!(store.purge_codes(NOW + 61).await.unwrap(), 2);
    assert_not_found(store.redeem_code("live", NOW).await);
}

pub(crate) async fn family_purge(store: DynStore) {
    seed(&store).await;
    let mut old = family("old", "c1", "u1");
    old.expires_at = NOW - 10;
    store
        .create_family(&old, &token("t-old", "old"))
        .await
        .unwrap();
    let mut revoked = family("revoked", "c1", "u1");
    revoked.expires_at = NOW - 1;
    store
        .create_family(&revoked, &token("t-revoked", "revoked"))
        .await
        .unwrap();
    store.revoke_family("revoked", at(NOW - 5)).await.unwrap();
    let edge = {
        let mut f = family("edge", "c1", "u1");
        f.expires_at = NOW;
        f
    };
    store
        .create_family(&edge, &token("t-edge", "edge"))
        .await
        .unwrap();
    store
        .create_family(&family("live", "c1", "u1"), &token("t-live", "live"))
        .await
        .unwrap();
    assert_eq!(store.purge_families(NOW).await.unwrap(), 2);
    // The tokens went with their families.
    assert_not_found(store.get_refresh_token("t-old").await);
    assert_not_found(store.get_refresh_token("t-revoked").await);
    assert!(store.get_refresh_token("t-edge").await.is_ok());
    assert!(store.get_refresh_token("t-live").await.is_ok());
    assert_eq!(store.purge_families(NOW).await.unwrap(), 0);
}

pub(crate) async fn refresh_family_create_and_get(store: DynStore) {
    seed(&store).await;
    let mut fam = family("f1", "c1", "u1");
    fam.code_hash = None;
    let first = token("t1", "f1");
    store.create_family(&fam, &first).await.unwrap();
    assert_eq!(
        store.get_refresh_token("t1").await.unwrap(),
        (first.clone(), fam.clone())
    );
    assert_not_found(store.get_refresh_token("t404").await);

    // Duplicate family; duplicate token in a new family (which must then
    // not exist: one transaction); token naming another family.
    assert_conflict(store.create_family(&fam, &token("t2", "f1")).await);
    assert_conflict(
        store
            .create_family(&family("f2", "c1", "u1"), &token("t1", "f2"))
            .await,
    );
    assert_conflict(
        store
            .create_family(&family("f3", "c1", "u1"), &token("t3", "f1"))
            .await,
    );
    let ids = live_family_ids(&*store).await;
    assert_eq!(ids, ["f1"]);
    assert_not_found(store.get_refresh_token("t2").await);
    assert_not_found(store.get_refresh_token("t3").await);
}

pub(crate) async fn refresh_rotate_chain(store: DynStore) {
    seed(&store).await;
    let fam = family("f1", "c1", "u1");
    store.create_family(&fam, &token("t1", "f1")).await.unwrap();

    let mut next = token("t2", "f1");
    next.created_at = NOW + 1;
    let mut old = token("t1", "f1");
    old.rotated_at = Some(NOW + 1);
    assert_eq!(
        store
            .rotate_refresh_token("t1", &next, at(NOW + 1))
            .await
            .unwrap(),
        Rotate::Rotated {
            family: fam.clone(),
            old: old.clone()
        }
    );
    assert_eq!(store.get_refresh_token("t1").await.unwrap().0, old);
    assert_eq!(store.get_refresh_token("t2").await.unwrap().0, next);

    // A successor in another family, or with a hash that exists, is refused
    // and the rotation rolled back: t2 is still current.
    assert_conflict(
        store
            .rotate_refresh_token("t2", &token("t3", "f9"), at(NOW + 2))
            .await,
    );
    assert_conflict(
        store
            .rotate_refresh_token("t2", &token("t1", "f1"), at(NOW + 2))
            .await,
    );
    assert_eq!(
        store.get_refresh_token("t2").await.unwrap().0.rotated_at,
        None
    );
    assert_not_found(store.get_refresh_token("t3").await);

    match store
        .rotate_refresh_token("t2", &token("t3", "f1"), at(NOW + 3))
        .await
        .unwrap()
    {
        Rotate::Rotated { family, old } => {
            assert_eq!(family, fam);
            assert_eq!(old.token_hash, "t2");
            assert_eq!(old.rotated_at, Some(NOW + 3));
        }
        other => panic!("expected Rotated, got {other:?}"),
    }
    assert_not_found(
        store
            .rotate_refresh_token("t404", &token("t5", "f1"), at(NOW))
            .await,
    );
    assert_not_found(store.get_refresh_token("t5").await);
}

pub(crate) async fn refresh_reuse_revokes_family(store: DynStore) {
    seed(&store).await;
    store
        .create_family(&family("f1", "c1", "u1"), &token("t1", "f1"))
        .await
        .unwrap();
    store
        .create_family(&family("f2", "c1", "u1"), &token("u1t", "f2"))
        .await
        .unwrap();
    assert!(matches!(
        store
            .rotate_refresh_token("t1", &token("t2", "f1"), at(NOW + 1))
            .await
            .unwrap(),
        Rotate::Rotated { .. }
    ));

    // t1 again: reuse. The family is revoked at `now`, in the store.
    match store
        .rotate_refresh_token("t1", &token("t3", "f1"), at(NOW + 5))
        .await
        .unwrap()
    {
        Rotate::Reused { family } => assert_eq!(family.revoked_at, Some(NOW + 5)),
        other => panic!("expected Reused, got {other:?}"),
    }
    assert_not_found(store.get_refresh_token("t3").await);
    let (current, fam) = store.get_refresh_token("t2").await.unwrap();
    assert_eq!(fam.revoked_at, Some(NOW + 5));
    assert_eq!(current.rotated_at, None);
    // Every later use, of the current token or the reused one, is Revoked.
    for hash in ["t2", "t1"] {
        match store
            .rotate_refresh_token(hash, &token("t4", "f1"), at(NOW + 9))
            .await
            .unwrap()
        {
            Rotate::Revoked { family } => assert_eq!(family.revoked_at, Some(NOW + 5)),
            other => panic!("expected Revoked for {hash}, got {other:?}"),
        }
    }
    assert_not_found(store.get_refresh_token("t4").await);
    // Another family of the same user and client is untouched.
    assert_eq!(
        store.get_refresh_token("u1t").await.unwrap().1.revoked_at,
        None
    );
}

/// `RACERS` rotations of `t1` at once, racer `i` offering `n{i}` as the
/// successor; their outcomes by racer. None may fail under contention.
async fn rotate_race(store: &DynStore, grace: i64) -> Vec<Rotate> {
    let start = Arc::new(Barrier::new(RACERS));
    let racers: Vec<_> = (0..RACERS)
        .map(|i| {
            let (store, start) = (store.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let next = token(&format!("n{i}"), "f1");
                store
                    .rotate_refresh_token_within("t1", &next, at(NOW + 1), grace)
                    .await
            })
        })
        .collect();
    let mut out = Vec::new();
    for racer in racers {
        let outcome = racer.await.expect("task");
        out.push(outcome.expect("rotate must not fail under contention"));
    }
    out
}

pub(crate) async fn refresh_rotate_concurrent_exactly_one(store: DynStore) {
    seed(&store).await;
    store
        .create_family(&family("f1", "c1", "u1"), &token("t1", "f1"))
        .await
        .unwrap();
    let (mut winners, mut reused, mut revoked) = (Vec::new(), 0, 0);
    for (i, outcome) in rotate_race(&store, 0).await.into_iter().enumerate() {
        match outcome {
            Rotate::Rotated { .. } => winners.push(i),
            Rotate::Reused { family } => {
                reused += 1;
                assert!(family.revoked_at.is_some());
            }
            Rotate::Revoked { family } => {
                revoked += 1;
                assert!(family.revoked_at.is_some());
            }
            Rotate::Sibling { .. } => panic!("no grace interval, no sibling"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one rotation wins");
    assert!(reused >= 1, "the racers after the winner are reuse");
    assert_eq!(reused + revoked, RACERS - 1);

    // Only the winner's successor was stored, and the family is revoked.
    for i in 0..RACERS {
        let found = store.get_refresh_token(&format!("n{i}")).await;
        if i == winners[0] {
            assert!(found.unwrap().1.revoked_at.is_some());
        } else {
            assert_not_found(found);
        }
    }
    for hash in ["t1".to_owned(), format!("n{}", winners[0])] {
        match store
            .rotate_refresh_token(&hash, &token("late", "f1"), at(NOW + 2))
            .await
            .unwrap()
        {
            Rotate::Reused { family } | Rotate::Revoked { family } => {
                assert!(family.revoked_at.is_some())
            }
            other => panic!("expected reuse or revoked for {hash}, got {other:?}"),
        }
    }
    assert_not_found(store.get_refresh_token("late").await);
}

/// Within the reuse grace interval a rotated token gets a sibling and the
/// family lives; after it, the same presentation is reuse.
pub(crate) async fn refresh_reuse_grace(store: DynStore) {
    seed(&store).await;
    store
        .create_family(&family("f1", "c1", "u1"), &token("t1", "f1"))
        .await
        .unwrap();
    let r = store
        .rotate_refresh_token_within("t1", &token("t2", "f1"), at(NOW + 1), 5)
        .await
        .unwrap();
    assert!(matches!(r, Rotate::Rotated { .. }), "{r:?}");
    // t1 again, 5 s after its rotation: a sibling, not reuse.
    match store
        .rotate_refresh_token_within("t1", &token("t2b", "f1"), at(NOW + 6), 5)
        .await
        .unwrap()
    {
        Rotate::Sibling { family, old } => {
            assert_eq!(family.revoked_at, None);
            assert_eq!(old.token_hash, "t1");
        }
        other => panic!("expected a sibling, got {other:?}"),
    }
    // Both successors are current and usable.
    for t in ["t2", "t2b"] {
        let (tok, fam) = store.get_refresh_token(t).await.unwrap();
        assert_eq!((tok.rotated_at, fam.revoked_at), (None, None), "{t}");
    }
    let r = store
        .rotate_refresh_token_within("t2b", &token("t3", "f1"), at(NOW + 7), 5)
        .await
        .unwrap();
    assert!(matches!(r, Rotate::Rotated { .. }), "{r:?}");
    // t1 a third time, 6 s after its rotation: reuse, the family goes.
    match store
        .rotate_refresh_token_within("t1", &token("t4", "f1"), at(NOW + 7), 5)
        .await
        .unwrap()
    {
        Rotate::Reused { family } => assert_eq!(family.revoked_at, Some(NOW + 7)),
        other => panic!("expected reuse, got {other:?}"),
    }
    assert_not_found(store.get_refresh_token("t4").await);
    assert!(
        store
            .get_refresh_token("t3")
            .await
            .unwrap()
            .1
            .revoked_at
            .is_some()
    );
}

/// Concurrent refreshes of one token inside the grace interval all succeed
/// (one rotation, the rest siblings) and the family survives.
pub(crate) async fn refresh_rotate_concurrent_within_grace(store: DynStore) {
    seed(&store).await;
    store
        .create_family(&family("f1", "c1", "u1"), &token("t1", "f1"))
        .await
        .unwrap();
    let (mut rotated, mut siblings) = (0, 0);
    for outcome in rotate_race(&store, 5).await {
        match outcome {
            Rotate::Rotated { .. } => rotated += 1,
            Rotate::Sibling { family, .. } => {
                siblings += 1;
                assert_eq!(family.revoked_at, None);
            }
            other => panic!("inside the grace interval: {other:?}"),
        }
    }
    assert_eq!((rotated, siblings), (1, RACERS - 1));
    for i in 0..RACERS {
        let (tok, fam) = store.get_refresh_token(&format!("n{i}")).await.unwrap();
        assert_eq!((tok.rotated_at, fam.revoked_at), (None, None));
    }
}

pub(crate) async fn refresh_revoked_family(store: DynStore) {
    seed(&store).await;
    store
        .create_family(&family("f1", "c1", "u1"), &token("t1", "f1"))
        .await
        .unwrap();
    store.revoke_family("f1", at(NOW + 3)).await.unwrap();
    // Idempotent, and the first revocation time stays.
    store.revoke_family("f1", at(NOW + 4)).await.unwrap();
    assert_not_found(store.revoke_family("f404", at(NOW)).await);

    match store
        .rotate_refresh_token("t1", &token("t2", "f1"), at(NOW + 5))
        .await
        .unwrap()
    {
        Rotate::Revoked { family } => assert_eq!(family.revoked_at, Some(NOW + 3)),
        other => panic!("expected Revoked, got {other:?}"),
    }
    assert_not_found(store.get_refresh_token("t2").await);
    let (t1, fam) = store.get_refresh_token("t1").await.unwrap();
    assert_eq!(t1.rotated_at, None);
    assert_eq!(fam.revoked_at, Some(NOW + 3));
}

pub(crate) async fn refresh_revoke_by_code_and_for(store: DynStore) {
    seed(&store).await;
    let with_code = |id: &str, client: &str, user: &str, code: Option<&str>| {
        let mut f = family(id, client, user);
        f.code_hash = code.map(str::to_owned);
        f
    };
    let families = [
        with_code("f1", "c1", "u1", Some("kA")),
        with_code("f2", "c1", "u1", Some("kA")),
        with_code("f3", "c2", "u1", Some("kB")),
        with_code("f4", "c1", "u2", None),
        with_code("f5", "c1", "u1", None),
    ];
    for f in &families {
        let first = token(&format!("t-{}", f.family_id), &f.family_id);
        store.create_family(f, &first).await.unwrap();
    }
    let revoked_at = |id: &str| {
        let (store, hash) = (store.clone(), format!("t-{id}"));
        async move { store.get_refresh_token(&hash).await.unwrap().1.revoked_at }
    };

    assert_eq!(
        store
            .revoke_families_by_code("kA", at(NOW + 1))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .revoke_families_by_code("kA", at(NOW + 2))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .revoke_families_by_code("k404", at(NOW + 2))
            .await
            .unwrap(),
        0
    );
    assert_eq!(revoked_at("f1").await, Some(NOW + 1));
    assert_eq!(revoked_at("f2").await, Some(NOW + 1));
    assert_eq!(revoked_at("f3").await, None);

    // (u1, c1): f1 and f2 already revoked, f5 left.
    assert_eq!(
        store
            .revoke_families_for("u1", "c1", NOW + 3)
            .await
            .unwrap(),
        1
    );
    assert_eq!(revoked_at("f5").await, Some(NOW + 3));
    assert_eq!(revoked_at("f1").await, Some(NOW + 1));
    assert_eq!(revoked_at("f3").await, None);
    assert_eq!(revoked_at("f4").await, None);
    assert_eq!(
        store
            .revoke_families_for("u1", "c1", NOW + 4)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .revoke_families_for("u2", "c2", NOW + 4)
            .await
            .unwrap(),
        0
    );
}

pub(crate) async fn refresh_list_families(store: DynStore) {
    seed(&store).await;
    let with_expiry = |id: &str, client: &str, user: &str, expires_at: i64| {
        let mut f = family(id, client, user);
        f.expires_at = expires_at;
        f
    };
    let families = [
        with_expiry("f1", "c1", "u1", NOW + 100),
        with_expiry("f2", "c2", "u1", NOW + 100),
        with_expiry("f3", "c1", "u2", NOW + 100),
        with_expiry("f4", "c1", "u1", NOW),
        with_expiry("f5", "c1", "u1", NOW + 100),
    ];
    for f in &families {
        store
            .create_family(f, &token(&format!("t-{}", f.family_id), &f.family_id))
            .await
            .unwrap();
    }
    store.revoke_family("f5", at(NOW - 1)).await.unwrap();

    let ids = |v: Vec<RefreshFamilyRecord>| v.into_iter().map(|f| f.family_id).collect::<Vec<_>>();
    // Unexpired means expires_at > now; revoked ones never show.
    assert_eq!(
        ids(store.list_families(None, NOW).await.unwrap()),
        ["f1", "f2", "f3"]
    );
    assert_eq!(
        ids(store.list_families(None, NOW - 1).await.unwrap()),
        ["f1", "f4", "f2", "f3"]
    );
    assert_eq!(
        ids(store.list_families(Some("u1"), NOW).await.unwrap()),
        ["f1", "f2"]
    );
    assert_eq!(
        ids(store.list_families(Some("u2"), NOW).await.unwrap()),
        ["f3"]
    );
    assert!(
        store
            .list_families(Some("u404"), NOW)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .list_families(None, NOW + 100)
            .await
            .unwrap()
            .is_empty()
    );
    let listed = store.list_families(Some("u2"), NOW).await.unwrap();
    assert_eq!(listed, vec![families[2].clone()]);
}
