//! Gateway sessions shared by the replicas of one database (issue 16).
//!
//! With a shared store (PostgreSQL), every session a replica makes is also
//! written to the store (`gateway_sessions`, keyed by the SHA-256 of its
//! id, bound to the owner and upstream), so that:
//!
//! - a session of an **HTTP upstream** is *portable*: its row carries the
//!   upstream's session id, sealed under a key derived from the master key
//!   with the id hash as associated data, and a replica that does not hold
//!   the session adopts it on first use (one conditional `UPDATE … RETURNING`
//!   matching id, upstream, owner and idle limit); the replica that made it
//!   may stop or die and the session goes on;
//! - a session of a **stdio upstream** is *pinned*: its child lives in one
//!   process, so its row has no state and any other replica answers 404, which
//!   tells the client to initialize again (the load balancer routes a
//!   session to its replica: docs/deployment.md);
//! - the per-user session cap is applied in the inserting transaction, for
//!   the whole fleet;
//! - a replica confirms a session it holds with the store at most every
//!   [`CHECK_EVERY`] while it is used, so a session deleted or evicted
//!   elsewhere stops here within that time, and its sweep
//!   ([`SWEEP_EVERY`]) ends pinned sessions removed elsewhere; the purge of
//!   sessions idle fleet-wide runs on one replica at a time, the holder of
//!   the `gateway` housekeeping lock ([`crate::SESSIONS_TASK`]).
//!
//! When the store cannot be reached, a session this replica holds keeps
//! working (last known good, logged, like the revocation snapshot); one it
//! does not hold is 503 with `Retry-After`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use mcpgate_guard::Principal;
use mcpgate_jose::{Clock, MasterKey, Rng};
use mcpgate_store::{GatewaySessionRecord, GatewaySessionStore, SessionOwner, StoreError};

use crate::session::Owner;

/// How long a replica serves a session it holds before asking the store
/// again (deletions and evictions made elsewhere reach it within this).
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How often a replica sweeps: ends its pinned sessions removed elsewhere,
/// and (the housekeeping lock's holder) purges sessions idle fleet-wide.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Rows one purge takes at most.
const PURGE_BATCH: u32 = 256;

/// What the gateway needs to share its sessions.
pub struct SharedStore {
    pub store: Arc<dyn GatewaySessionStore>,
    /// Seals what a portable session's row carries. Every replica must
    /// derive the same (mcpgate derives it from the master key).
    pub key: [u8; 32],
}

/// The gateway's view of the shared session store.
pub struct SharedSessions {
    store: Arc<dyn GatewaySessionStore>,
    /// This process: random per start, so a restarted replica never claims
    /// the pinned sessions of the process it replaced.
    replica: String,
    seal: MasterKey,
    clock: Arc<dyn Clock>,
    rng: Arc<dyn Rng>,
    idle_ms: i64,
}

impl SharedSessions {
    pub fn new(
        shared: SharedStore,
        clock: Arc<dyn Clock>,
        rng: Arc<dyn Rng>,
        idle: Duration,
    ) -> Self {
        let seal = MasterKey::from_bytes(&shared.key).expect("a 32-byte key");
        Self {
            store: shared.store,
            replica: mcpgate_jose::random_token(rng.as_ref(), 16),
            seal,
            clock,
            rng,
            idle_ms: i64::try_from(idle.as_millis()).unwrap_or(i64::MAX),
        }
    }

    /// This process's replica id (as stored in `gateway_sessions.replica`).
    pub fn replica(&self) -> &str {
        &self.replica
    }

    fn idle_before(&self, now: i64) -> i64 {
        now.saturating_sub(self.idle_ms)
    }

    /// Stores a session this process just made (before it enters this
    /// process's table), with `state` (sealed) when another replica can
    /// carry it on. Returns the owner's sessions the fleet-wide cap evicted.
    pub async fn insert(
        &self,
        id_hash: &str,
        upstream: &str,
        owner: &Owner,
        state: Option<&[u8]>,
        cap: usize,
    ) -> Result<Vec<GatewaySessionRecord>, StoreError> {
        let now = self.clock.now_ms();
        let rec = GatewaySessionRecord {
            id_hash: id_hash.to_string(),
            upstream: upstream.to_string(),
            issuer: owner.issuer.clone(),
            subject: owner.subject.clone(),
            client_id: owner.client_id.clone(),
            replica: self.replica.clone(),
            state: state.map(|b| self.seal.seal(self.rng.as_ref(), b, id_hash.as_bytes())),
            created_at: now,
            last_used: now,
        };
        let cap = u32::try_from(cap).unwrap_or(u32::MAX);
        self.store.insert_gateway_session(&rec, cap).await
    }

    /// The session `id_hash` of `upstream` if it is `p`'s and not idle
    /// fleet-wide, marked used now.
    pub async fn touch(
        &self,
        id_hash: &str,
        upstream: &str,
        p: &Principal,
    ) -> Result<GatewaySessionRecord, StoreError> {
        let now = self.clock.now_ms();
        let owner = SessionOwner {
            upstream,
            issuer: &p.issuer,
            subject: &p.subject,
            client_id: &p.client_id,
        };
        self.store
            .touch_gateway_session(id_hash, owner, now, self.idle_before(now))
            .await
    }

    /// What a portable session's row carries, opened; `None` for a pinned
    /// session, or a row that does not open under this fleet's key (logged).
    pub fn state(&self, rec: &GatewaySessionRecord) -> Option<Vec<u8>> {
        let sealed = rec.state.as_deref()?;
        match self.seal.open(sealed, rec.id_hash.as_bytes()) {
            Ok(b) => Some(b),
            Err(_) => {
                tracing::warn!(
                    upstream = %rec.upstream,
                    "a shared session's state does not open: do all replicas share the master key?"
                );
                None
            }
        }
    }

    /// Deletes a session from the store (absent is fine).
    pub async fn delete(&self, id_hash: &str) -> Result<Option<GatewaySessionRecord>, StoreError> {
        match self.store.delete_gateway_session(id_hash).await {
            Ok(r) => Ok(Some(r)),
            Err(StoreError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The id hashes of this replica's sessions still in the store and live.
    pub async fn live(&self) -> Result<HashSet<String>, StoreError> {
        let now = self.clock.now_ms();
        let live = self
            .store
            .live_gateway_sessions(&self.replica, self.idle_before(now))
            .await?;
        Ok(live.into_iter().collect())
    }

    /// Removes sessions idle fleet-wide from the store; each row goes to
    /// exactly one replica, which ends what it can of it.
    pub async fn purge(&self) -> Result<Vec<GatewaySessionRecord>, StoreError> {
        let now = self.clock.now_ms();
        self.store
            .purge_gateway_sessions(self.idle_before(now), PURGE_BATCH)
            .await
    }
}
