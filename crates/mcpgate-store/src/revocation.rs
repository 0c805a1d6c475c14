//! Live revocation of access tokens (RFC 7009 §2 "the authorization server
//! invalidates the token"; OAuth 2.1 §4.1.3 code replay; refresh-token reuse).
//!
//! mcpgate's access tokens are JWTs, validated at the gateway from their
//! signature alone. To stop one before its `exp`, the authorization server
//! writes an entry to the revocation set in the store ([`crate::RevocationStore`]):
//! a grant, a user, a client, a (user, client) consent or one token id.
//! [`RevocationSet`] is the one place that decides which tokens an entry
//! covers; [`RevocationWatch`] keeps an in-memory copy that follows the
//! store (a revision counter polled every 250 ms, plus PostgreSQL
//! `LISTEN/NOTIFY`), for a guard to consult on every request without IO.
//!
//! The revision and its notice are the store's one **change feed**: a
//! signing-key rotation bumps the same revision in its transaction (and so
//! notifies), and [`RevocationWatch::subscribe`] hands the revision to
//! whatever else must follow another process's changes within a second
//! (the authorization server's key ring).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use crate::records::{RevocationRecord, RevocationTarget};
use crate::traits::{RevocationStore, StoreError, StoreResult};

/// The PostgreSQL channel revocation writes notify.
pub(crate) const CHANNEL: &str = "mcpgate_revocations";

pub use mcpgate_types::token::RevocableToken;

/// The revocation entries, indexed for lookups. Grant and token entries
/// cover every token naming them; user, client and consent entries cover
/// tokens issued at or before the revocation (so a user enabled again, or a
/// client registered again under the same id, gets working tokens, and
/// tokens issued in the second of the revocation are refused: the safe
/// side of the one-second `iat` resolution).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RevocationSet {
    grants: HashSet<String>,
    tokens: HashSet<String>,
    users: HashMap<String, i64>,
    clients: HashMap<String, i64>,
    consents: HashMap<(String, String), i64>,
}

impl RevocationSet {
    /// Indexes `entries` (expired ones included: they cover only expired
    /// tokens).
    pub fn new(entries: impl IntoIterator<Item = RevocationRecord>) -> Self {
        let mut set = Self::default();
        let later = |m: &mut i64, t: i64| *m = (*m).max(t);
        for e in entries {
            let t = e.revoked_at;
            match e.target {
                RevocationTarget::Grant { grant_id } => {
                    set.grants.insert(grant_id);
                }
                RevocationTarget::Token { jti } => {
                    set.tokens.insert(jti);
                }
                RevocationTarget::User { user_id } => {
                    later(set.users.entry(user_id).or_insert(t), t);
                }
                RevocationTarget::Client { client_id } => {
                    later(set.clients.entry(client_id).or_insert(t), t);
                }
                RevocationTarget::Consent { user_id, client_id } => {
                    later(set.consents.entry((user_id, client_id)).or_insert(t), t);
                }
            }
        }
        set
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.grants.len()
            + self.tokens.len()
            + self.users.len()
            + self.clients.len()
            + self.consents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether an entry revokes this token.
    pub fn covers(&self, t: &RevocableToken<'_>) -> bool {
        let issued = t.issued_at.unwrap_or(i64::MIN);
        let before = |revoked_at: Option<&i64>| revoked_at.is_some_and(|r| issued <= *r);
        t.grant.is_some_and(|g| self.grants.contains(g))
            || t.jti.is_some_and(|j| self.tokens.contains(j))
            || before(self.users.get(t.subject))
            || before(self.clients.get(t.client_id))
            || (!self.consents.is_empty()
                && before(
                    self.consents
                        .get(&(t.subject.to_owned(), t.client_id.to_owned())),
                ))
    }
}

/// Change notices from PostgreSQL (`LISTEN mcpgate_revocations`).
pub struct RevocationListener(pub(crate) sqlx::postgres::PgListener);

impl std::fmt::Debug for RevocationListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RevocationListener")
    }
}

impl RevocationListener {
    /// Waits for the next notice (its payload, the revision, is not needed:
    /// the reader asks the store).
    pub async fn recv(&mut self) -> StoreResult<()> {
        self.0
            .recv()
            .await
            .map(drop)
            .map_err(|e| StoreError::Backend(format!("listening for revocations: {e}")))
    }
}

/// How often a [`RevocationWatch`] asks the store for its revision.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How long a failed `LISTEN` waits before it is tried again (polling goes on).
const RELISTEN_AFTER: Duration = Duration::from_secs(5);

struct WatchInner {
    /// 0 until a snapshot has loaded; then grows with every new snapshot.
    generation: AtomicU64,
    /// The store revision of the snapshot (-1: none yet).
    revision: AtomicI64,
    set: RwLock<Arc<RevocationSet>>,
    /// The revision, for those that follow other changes (signing keys).
    changes: tokio::sync::watch::Sender<i64>,
}

/// An in-memory copy of the store's revocation set that follows it. Cheap
/// to clone (shared). Until a first snapshot has loaded it answers
/// "unknown" ([`covers`](Self::covers) → `None`), which a guard must treat
/// as a refusal; after a failed refresh it keeps the last good snapshot and
/// logs an error at every failed attempt.
#[derive(Clone)]
pub struct RevocationWatch(Arc<WatchInner>);

impl std::fmt::Debug for RevocationWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationWatch")
            .field("generation", &self.generation())
            .field("revision", &self.0.revision.load(Ordering::Acquire))
            .finish_non_exhaustive()
    }
}

impl Default for RevocationWatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RevocationWatch {
    /// An empty watch with nothing loaded: every question is "unknown".
    pub fn new() -> Self {
        Self(Arc::new(WatchInner {
            generation: AtomicU64::new(0),
            revision: AtomicI64::new(-1),
            set: RwLock::new(Arc::new(RevocationSet::default())),
            changes: tokio::sync::watch::Sender::new(-1),
        }))
    }

    /// Changes whenever a new snapshot is in place; 0 before the first. A
    /// reader that has checked a token at generation N need not check it
    /// again while this stays N.
    pub fn generation(&self) -> u64 {
        self.0.generation.load(Ordering::Acquire)
    }

    /// The current snapshot, or `None` if none has loaded yet.
    pub fn snapshot(&self) -> Option<Arc<RevocationSet>> {
        if self.generation() == 0 {
            return None;
        }
        Some(
            self.0
                .set
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        )
    }

    /// The store's change revision as this watch last read it, updated
    /// whenever it moves (-1 before the first load). The revision counts
    /// every change other processes must see at once, not only
    /// revocations: a signing-key rotation bumps it too, so a key ring can
    /// follow this instead of a feed of its own. The receiver ends when the
    /// watch is dropped.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<i64> {
        self.0.changes.subscribe()
    }

    /// Whether the snapshot revokes this token; `None` if none has loaded.
    pub fn covers(&self, t: &RevocableToken<'_>) -> Option<bool> {
        self.snapshot().map(|s| s.covers(t))
    }

    /// Reloads the set if the store's revision differs from the snapshot's.
    /// Returns whether a new snapshot was put in place.
    pub async fn refresh(&self, store: &dyn RevocationStore) -> StoreResult<bool> {
        let have = self.0.revision.load(Ordering::Acquire);
        if have >= 0 && store.revocation_revision().await? == have {
            return Ok(false);
        }
        let (revision, entries) = store.list_revocations().await?;
        let set = Arc::new(RevocationSet::new(entries));
        *self
            .0
            .set
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = set;
        self.0.revision.store(revision, Ordering::Release);
        // After the set: a reader that sees the new generation sees the new set.
        self.0.generation.fetch_add(1, Ordering::AcqRel);
        self.0.changes.send_replace(revision);
        Ok(true)
    }

    /// A watch on `store`: loads the first snapshot now (an error is logged
    /// and returned with the watch, which then answers "unknown" until a
    /// later poll succeeds), then follows the store from a background task
    /// that polls every `poll` and, on PostgreSQL, wakes on every `NOTIFY`.
    /// The task ends when the last clone of the watch is dropped.
    pub async fn start(store: Arc<dyn RevocationStore>, poll: Duration) -> (Self, StoreResult<()>) {
        let watch = Self::new();
        // LISTEN before the first load: a change committed in between is
        // then either in the load or notified, never missed until a poll.
        let listener = listen(store.as_ref()).await;
        let first = watch.refresh(store.as_ref()).await.map(drop);
        if let Err(e) = &first {
            tracing::error!(error = %e, "loading the revocation set failed: tokens of this issuer are refused until it loads");
        }
        let weak = Arc::downgrade(&watch.0);
        tokio::spawn(follow(weak, store, poll, listener));
        (watch, first)
    }
}

async fn follow(
    weak: Weak<WatchInner>,
    store: Arc<dyn RevocationStore>,
    poll: Duration,
    mut listener: Option<RevocationListener>,
) {
    let mut relisten_at = tokio::time::Instant::now() + RELISTEN_AFTER;
    // A database that is down fails every poll (four a second): the first
    // failures are logged, then one line per minute with the count held
    // back, and one when a poll succeeds again.
    let mut failures = mcpgate_types::log_budget::LogBudget::default();
    let mut failing = false;
    loop {
        tokio::select! {
            () = tokio::time::sleep(poll) => {}
            r = async {
                match listener.as_mut() {
                    Some(l) => l.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "revocation notices lost; polling until LISTEN works again");
                    listener = None;
                }
            }
        }
        let Some(inner) = weak.upgrade() else { return };
        let watch = RevocationWatch(inner);
        match watch.refresh(store.as_ref()).await {
            Ok(_) if failing => {
                failing = false;
                tracing::info!("the revocation set loads again");
            }
            Ok(_) => {}
            Err(e) => {
                failing = true;
                let window = Duration::from_secs(60);
                if let Some(held_back) = failures.allow_at(std::time::Instant::now(), 2, window) {
                    if watch.generation() == 0 {
                        tracing::error!(error = %e, held_back, "loading the revocation set failed: tokens of this issuer are refused until it loads");
                    } else {
                        tracing::error!(error = %e, held_back, "refreshing the revocation set failed: revocations made since the last good snapshot are NOT enforced until it succeeds");
                    }
                }
            }
        }
        drop(watch);
        if listener.is_none() && tokio::time::Instant::now() >= relisten_at {
            relisten_at = tokio::time::Instant::now() + RELISTEN_AFTER;
            listener = listen(store.as_ref()).await;
        }
    }
}

async fn listen(store: &dyn RevocationStore) -> Option<RevocationListener> {
    match store.listen_revocations().await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot LISTEN for revocations; polling only");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(target: RevocationTarget, at: i64) -> RevocationRecord {
        RevocationRecord {
            target,
            revoked_at: at,
            expires_at: at + 100,
        }
    }

    fn ids<'a>(
        sub: &'a str,
        client: &'a str,
        grant: &'a str,
        jti: &'a str,
        iat: i64,
    ) -> RevocableToken<'a> {
        RevocableToken {
            subject: sub,
            client_id: client,
            grant: Some(grant),
            jti: Some(jti),
            issued_at: Some(iat),
        }
    }

    #[test]
    fn what_each_kind_covers() {
        let set = RevocationSet::new([
            e(
                RevocationTarget::Grant {
                    grant_id: "g".into(),
                },
                10,
            ),
            e(RevocationTarget::Token { jti: "j".into() }, 10),
            e(
                RevocationTarget::User {
                    user_id: "u".into(),
                },
                10,
            ),
            e(
                RevocationTarget::Client {
                    client_id: "c".into(),
                },
                10,
            ),
            e(
                RevocationTarget::Consent {
                    user_id: "v".into(),
                    client_id: "d".into(),
                },
                10,
            ),
        ]);
        assert_eq!(set.len(), 5);
        assert!(!set.covers(&ids("x", "y", "z", "w", 5)));
        // Grant and jti: whenever issued.
        assert!(set.covers(&ids("x", "y", "g", "w", 50)));
        assert!(set.covers(&ids("x", "y", "z", "j", 50)));
        // User, client, consent: issued at or before the revocation.
        assert!(set.covers(&ids("u", "y", "z", "w", 10)));
        assert!(!set.covers(&ids("u", "y", "z", "w", 11)));
        assert!(set.covers(&ids("x", "c", "z", "w", 9)));
        assert!(!set.covers(&ids("x", "c", "z", "w", 11)));
        assert!(set.covers(&ids("v", "d", "z", "w", 10)));
        assert!(!set.covers(&ids("v", "c2", "z", "w", 10)));
        assert!(!set.covers(&ids("v2", "d", "z", "w", 10)));
        // No iat: counts as issued before.
        let mut t = ids("u", "y", "z", "w", 0);
        t.issued_at = None;
        assert!(set.covers(&t));
        // No grant or jti claim: only the other kinds can match.
        let t = RevocableToken {
            grant: None,
            jti: None,
            ..ids("x", "y", "g", "j", 5)
        };
        assert!(!set.covers(&t));
    }

    #[test]
    fn later_revocation_wins() {
        let set = RevocationSet::new([
            e(
                RevocationTarget::User {
                    user_id: "u".into(),
                },
                20,
            ),
            e(
                RevocationTarget::User {
                    user_id: "u".into(),
                },
                10,
            ),
        ]);
        assert!(set.covers(&ids("u", "c", "g", "j", 20)));
    }

    #[test]
    fn unloaded_watch_answers_unknown() {
        let w = RevocationWatch::new();
        assert_eq!(w.generation(), 0);
        assert_eq!(w.covers(&ids("u", "c", "g", "j", 1)), None);
    }
}
