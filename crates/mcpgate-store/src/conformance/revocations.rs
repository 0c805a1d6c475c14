//! The revocation set: entries, the revision counter, expiry and purge, the
//! state changes that write entries in their own transaction, and a
//! [`RevocationWatch`] following the store.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::revocation::{RevocableToken, RevocationSet, RevocationWatch};
use crate::traits::{DynStore, RevocationStore, Rotate};

fn grant(id: &str, now: i64) -> RevocationRecord {
    at(now).entry(RevocationTarget::Grant {
        grant_id: id.to_owned(),
    })
}

fn ids<'a>(sub: &'a str, client: &'a str, grant: &'a str, iat: i64) -> RevocableToken<'a> {
    RevocableToken {
        subject: sub,
        client_id: client,
        grant: Some(grant),
        jti: Some("jti-none"),
        issued_at: Some(iat),
    }
}

async fn set(store: &DynStore) -> RevocationSet {
    RevocationSet::new(store.list_revocations().await.unwrap().1)
}

pub(crate) async fn revocations_revoke_list_and_revision(store: DynStore) {
    assert_eq!(store.revocation_revision().await.unwrap(), 0);
    assert_eq!(store.list_revocations().await.unwrap(), (0, vec![]));
    let r1 = store.revoke(&[grant("g1", NOW)]).await.unwrap();
    assert!(r1 > 0);
    let all = [
        grant("g2", NOW),
        at(NOW).entry(RevocationTarget::User {
            user_id: "u1".into(),
        }),
        at(NOW).entry(RevocationTarget::Client {
            client_id: "c1".into(),
        }),
        at(NOW).entry(RevocationTarget::Consent {
            user_id: "u2".into(),
            client_id: "c2".into(),
        }),
        at(NOW).entry(RevocationTarget::Token { jti: "j1".into() }),
    ];
    let r2 = store.revoke(&all).await.unwrap();
    assert!(r2 > r1, "the revision grows");
    assert_eq!(store.revocation_revision().await.unwrap(), r2);
    let (rev, mut listed) = store.list_revocations().await.unwrap();
    assert_eq!(rev, r2);
    listed.sort_by(|a, b| format!("{:?}", a.target).cmp(&format!("{:?}", b.target)));
    let mut want: Vec<_> = all.to_vec();
    want.push(grant("g1", NOW));
    want.sort_by(|a, b| format!("{:?}", a.target).cmp(&format!("{:?}", b.target)));
    assert_eq!(listed, want, "every kind round-trips");

    // Again for the same target: one entry, the later times kept.
    let later = RevocationRecord {
        revoked_at: NOW + 50,
        expires_at: NOW + 5_000,
        ..grant("g1", NOW)
    };
    store.revoke(std::slice::from_ref(&later)).await.unwrap();
    let (_, listed) = store.list_revocations().await.unwrap();
    let g1: Vec<_> = listed.iter().filter(|e| e.target == later.target).collect();
    assert_eq!(g1, [&later]);
    store.revoke(&[grant("g1", NOW)]).await.unwrap();
    let (_, listed) = store.list_revocations().await.unwrap();
    assert!(
        listed.contains(&later),
        "an earlier revocation moves nothing back"
    );
    // An empty write still moves the revision (harmless), never fails.
    let r3 = store.revocation_revision().await.unwrap();
    assert!(store.revoke(&[]).await.unwrap() > r3);
}

pub(crate) async fn revocations_lift(store: DynStore) {
    let user = RevocationTarget::User {
        user_id: "u1".into(),
    };
    store.revoke(&[at(NOW).entry(user.clone())]).await.unwrap();
    assert!(set(&store).await.covers(&ids("u1", "c", "g", NOW)));
    let before = store.revocation_revision().await.unwrap();
    assert!(store.lift_revocation(&user).await.unwrap());
    let after = store.revocation_revision().await.unwrap();
    assert!(after > before, "lifting is a change readers must see");
    assert!(!set(&store).await.covers(&ids("u1", "c", "g", NOW)));
    assert!(!store.lift_revocation(&user).await.unwrap());
    assert_eq!(store.revocation_revision().await.unwrap(), after);
}

pub(crate) async fn revocations_for_one_token(store: DynStore) {
    store
        .revoke(&[
            grant("g1", NOW),
            at(NOW).entry(RevocationTarget::Token { jti: "j1".into() }),
            at(NOW).entry(RevocationTarget::User {
                user_id: "u1".into(),
            }),
            at(NOW).entry(RevocationTarget::Client {
                client_id: "c1".into(),
            }),
            at(NOW).entry(RevocationTarget::Consent {
                user_id: "u2".into(),
                client_id: "c2".into(),
            }),
            grant("other", NOW),
        ])
        .await
        .unwrap();
    let found = |t: RevocableToken<'static>| {
        let store = store.clone();
        async move { store.revocations_for(&t, NOW).await.unwrap() }
    };
    let none = RevocableToken {
        subject: "u9",
        client_id: "c9",
        grant: Some("g9"),
        jti: Some("j9"),
        issued_at: Some(NOW),
    };
    assert!(found(none).await.is_empty());
    for (t, kind) in [
        (
            RevocableToken {
                grant: Some("g1"),
                ..none
            },
            "grant",
        ),
        (
            RevocableToken {
                jti: Some("j1"),
                ..none
            },
            "token",
        ),
        (
            RevocableToken {
                subject: "u1",
                ..none
            },
            "user",
        ),
        (
            RevocableToken {
                client_id: "c1",
                ..none
            },
            "client",
        ),
        (
            RevocableToken {
                subject: "u2",
                client_id: "c2",
                ..none
            },
            "consent",
        ),
    ] {
        let rows = found(t).await;
        assert_eq!(rows.len(), 1, "{kind}: {rows:?}");
        assert_eq!(rows[0].target.columns().0, kind);
        assert!(RevocationSet::new(rows).covers(&t));
    }
    // Half a consent pair is no match.
    assert!(
        found(RevocableToken {
            subject: "u2",
            ..none
        })
        .await
        .is_empty()
    );
    // No grant or jti claim: matched on the others only.
    let bare = RevocableToken {
        grant: None,
        jti: None,
        ..none
    };
    assert!(found(bare).await.is_empty());
    // Expired entries are not returned.
    assert!(
        store
            .revocations_for(
                &RevocableToken {
                    grant: Some("g1"),
                    ..none
                },
                NOW + 3_600
            )
            .await
            .unwrap()
            .is_empty()
    );
}

pub(crate) async fn revocations_expire_and_purge(store: DynStore) {
    store
        .revoke(&[grant("old", NOW - 4_000), grant("new", NOW)])
        .await
        .unwrap();
    let rev = store.revocation_revision().await.unwrap();
    // `old` expired at NOW - 400, `new` expires at NOW + 3600.
    assert_eq!(store.purge_revocations(NOW - 400).await.unwrap(), 0);
    assert_eq!(store.purge_revocations(NOW).await.unwrap(), 1);
    let (_, left) = store.list_revocations().await.unwrap();
    assert_eq!(left, [grant("new", NOW)]);
    assert_eq!(store.purge_revocations(NOW + 3_601).await.unwrap(), 1);
    assert_eq!(store.list_revocations().await.unwrap().1, []);
    assert_eq!(
        store.revocation_revision().await.unwrap(),
        rev,
        "purging expired entries changes no answer"
    );
}

/// Every store operation that revokes tokens writes its entry itself.
pub(crate) async fn revocations_from_state_changes(store: DynStore) {
    seed(&store).await;
    let live = |sub: &'static str, client: &'static str, g: &'static str| ids(sub, client, g, NOW);

    // Consent: a (user, client) entry covering every grant of the pair.
    store.upsert_consent(&consent("u1", "c1")).await.unwrap();
    store.revoke_consent("u1", "c1", at(NOW)).await.unwrap();
    let s = set(&store).await;
    assert!(s.covers(&live("u1", "c1", "any-grant")));
    assert!(!s.covers(&live("u1", "c2", "any-grant")));
    assert!(
        !s.covers(&ids("u1", "c1", "any-grant", NOW + 1)),
        "later tokens live"
    );

    // Family revocation and reuse: grant entries.
    store
        .create_family(&family("f1", "c2", "u2"), &token("t1", "f1"))
        .await
        .unwrap();
    store.revoke_family("f1", at(NOW)).await.unwrap();
    assert!(set(&store).await.covers(&live("u2", "c2", "f1")));
    store
        .create_family(&family("f2", "c2", "u2"), &token("t2", "f2"))
        .await
        .unwrap();
    store
        .rotate_refresh_token("t2", &token("t3", "f2"), at(NOW))
        .await
        .unwrap();
    assert!(!set(&store).await.covers(&live("u2", "c2", "f2")));
    assert!(matches!(
        store
            .rotate_refresh_token("t2", &token("t4", "f2"), at(NOW + 1))
            .await
            .unwrap(),
        Rotate::Reused { .. }
    ));
    assert!(set(&store).await.covers(&live("u2", "c2", "f2")));

    // Code replay: every family the code started.
    let mut f3 = family("f3", "c2", "u2");
    f3.code_hash = Some("k3".into());
    store.create_family(&f3, &token("t5", "f3")).await.unwrap();
    assert!(!set(&store).await.covers(&live("u2", "c2", "f3")));
    store.revoke_families_by_code("k3", at(NOW)).await.unwrap();
    assert!(set(&store).await.covers(&live("u2", "c2", "f3")));

    // Removing a client or a user: client and user entries.
    store.delete_client("c2", at(NOW)).await.unwrap();
    assert!(set(&store).await.covers(&live("u9", "c2", "g")));
    store.delete_user("u1", at(NOW)).await.unwrap();
    assert!(set(&store).await.covers(&live("u1", "c9", "g")));

    // A refused operation writes nothing.
    let rev = store.revocation_revision().await.unwrap();
    assert_not_found(store.delete_user("u404", at(NOW)).await);
    assert_not_found(store.delete_client("c404", at(NOW)).await);
    assert_not_found(store.revoke_consent("u2", "c1", at(NOW)).await);
    assert_not_found(store.revoke_family("f404", at(NOW)).await);
    assert_eq!(store.revocation_revision().await.unwrap(), rev);
    assert!(!set(&store).await.covers(&live("u404", "c404", "f404")));
}

pub(crate) async fn revocations_concurrent_revisions_distinct(store: DynStore) {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.revoke(&[grant(&format!("g{i}"), NOW)]).await.unwrap()
        }));
    }
    let mut revisions = Vec::new();
    for t in tasks {
        revisions.push(t.await.unwrap());
    }
    revisions.sort_unstable();
    revisions.dedup();
    assert_eq!(revisions.len(), 8, "each write gets its own revision");
    let (rev, entries) = store.list_revocations().await.unwrap();
    assert_eq!(rev, *revisions.last().unwrap());
    assert_eq!(entries.len(), 8);
}

/// A watch picks up a revocation within a second (polling; on PostgreSQL
/// also notified), and a lift.
pub(crate) async fn revocations_watch_follows(store: DynStore) {
    let (watch, first) = RevocationWatch::start(
        Arc::clone(&store) as Arc<dyn RevocationStore>,
        crate::revocation::POLL_INTERVAL,
    )
    .await;
    first.unwrap();
    let g1 = watch.generation();
    assert!(g1 > 0);
    let t = ids("u1", "c1", "g-watch", NOW);
    assert_eq!(watch.covers(&t), Some(false));
    store.revoke(&[grant("g-watch", NOW)]).await.unwrap();
    let start = std::time::Instant::now();
    while watch.covers(&t) != Some(true) {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "the watch saw the revocation within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(watch.generation() > g1);
    store
        .lift_revocation(&RevocationTarget::Grant {
            grant_id: "g-watch".into(),
        })
        .await
        .unwrap();
    let start = std::time::Instant::now();
    while watch.covers(&t) != Some(false) {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "lift seen within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
