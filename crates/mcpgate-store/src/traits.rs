//! Store traits, one per aggregate, and the error they share.

use std::sync::Arc;

use async_trait::async_trait;

use crate::records::*;

/// What can go wrong in a store call. Callers map these at the HTTP edge;
/// `Backend` detail is logged, never sent to a client.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A unique key already exists, or a conditional update lost its race.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database failed (corrupt row, migration, a statement refused).
    #[error("store backend failure: {0}")]
    Backend(String),
    /// The database cannot be reached now (connection refused or lost, no
    /// connection free within the pool's wait): worth retrying shortly,
    /// and answered 503 by the servers.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait UserStore: Send + Sync {
    /// `Conflict` if the id or username exists.
    async fn create_user(&self, user: &UserRecord) -> StoreResult<()>;
    async fn get_user(&self, id: &str) -> StoreResult<UserRecord>;
    async fn get_user_by_username(&self, username: &str) -> StoreResult<UserRecord>;
    /// Sorted by username.
    async fn list_users(&self) -> StoreResult<Vec<UserRecord>>;
    /// Replaces every mutable field (display name, hash, groups, flags, updated_at).
    async fn update_user(&self, user: &UserRecord) -> StoreResult<()>;
    /// Deletes the user and everything of theirs: consents, codes, refresh
    /// families (and tokens), login sessions; in the same transaction, adds
    /// a user entry to the revocation set (revoked at `at.now`) so that
    /// their access tokens stop working. `NotFound` if absent.
    async fn delete_user(&self, id: &str, at: RevokeAt) -> StoreResult<()>;
}

#[async_trait]
pub trait ClientStore: Send + Sync {
    /// `Conflict` if the client_id exists.
    async fn create_client(&self, client: &ClientRecord) -> StoreResult<()>;
    /// Insert or replace (CIMD cache refresh).
    async fn upsert_client(&self, client: &ClientRecord) -> StoreResult<()>;
    async fn get_client(&self, client_id: &str) -> StoreResult<ClientRecord>;
    /// [`get_client`](Self::get_client), answered from memory when this
    /// handle (or a clone) read the client less than
    /// [`CLIENT_CACHE_TTL`](crate::CLIENT_CACHE_TTL) ago and wrote no
    /// client since. A change made by another process may therefore take
    /// that long to be seen. Only for callers whose next step re-checks the
    /// client in the database: a code exchange or a rotation (the code or
    /// the family goes with its client). See [`crate::client_cache`].
    async fn get_client_recent(&self, client_id: &str) -> StoreResult<ClientRecord>;
    /// Sorted by client_id.
    async fn list_clients(&self) -> StoreResult<Vec<ClientRecord>>;
    /// Deletes the client with its consents, codes and refresh families and,
    /// in the same transaction, adds a client entry to the revocation set.
    async fn delete_client(&self, client_id: &str, at: RevokeAt) -> StoreResult<()>;
    /// Number of dynamically registered clients created at or after `since`
    /// (for registration rate limits and caps).
    async fn count_dynamic_clients_since(&self, since: i64) -> StoreResult<u64>;
    /// Deletes Client ID Metadata Document clients whose cached document
    /// expired before `before` and that nobody uses: no consent, no refresh
    /// family, no authorization code. Returns how many. (A flood of distinct
    /// document URLs leaves no rows behind; a client in use is refetched.)
    async fn purge_unused_metadata_clients(&self, before: i64) -> StoreResult<u64>;
}

#[async_trait]
pub trait ConsentStore: Send + Sync {
    /// Insert, or replace the scopes/resources of an existing (user, client) consent.
    async fn upsert_consent(&self, consent: &ConsentRecord) -> StoreResult<()>;
    async fn get_consent(&self, user_id: &str, client_id: &str) -> StoreResult<ConsentRecord>;
    /// All consents, or one user's. Sorted by (user_id, client_id).
    async fn list_consents(&self, user_id: Option<&str>) -> StoreResult<Vec<ConsentRecord>>;
    /// Deletes the consent and, in the same transaction, revokes (at
    /// `at.now`) every refresh family of that (user, client) and adds a
    /// consent entry to the revocation set, which covers every access token
    /// of the pair issued until then (code, refresh and family-less grants
    /// alike). `NotFound` if no consent.
    async fn revoke_consent(&self, user_id: &str, client_id: &str, at: RevokeAt)
    -> StoreResult<()>;
}

/// Result of trying to redeem an authorization code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeem {
    /// This call consumed the code (it is now marked used).
    Fresh(AuthCodeRecord),
    /// The code had already been used: a replay. The record is as stored.
    Replayed(AuthCodeRecord),
}

#[async_trait]
pub trait AuthCodeStore: Send + Sync {
    async fn insert_code(&self, code: &AuthCodeRecord) -> StoreResult<()>;
    /// Atomically marks the code used at `now` if unused. Exactly one of any
    /// number of concurrent callers gets `Fresh`; the others `Replayed`.
    /// Unknown hash → `NotFound`. Expiry is the caller's check.
    async fn redeem_code(&self, code_hash: &str, now: i64) -> StoreResult<Redeem>;
    /// Reads a code without consuming it (to check a request before
    /// redeeming). Unknown hash → `NotFound`.
    async fn get_code(&self, code_hash: &str) -> StoreResult<AuthCodeRecord>;
    /// [`get_code`](Self::get_code) and the code's user, in one statement
    /// (a code never outlives its user: `ON DELETE CASCADE`).
    async fn get_code_and_user(&self, code_hash: &str)
    -> StoreResult<(AuthCodeRecord, UserRecord)>;
    /// [`redeem_code`](Self::redeem_code) and, in the same transaction when
    /// the code was fresh, stores `family` and its first token — one commit
    /// for a whole code exchange, and no window in which a code is used but
    /// its family not yet stored. The flag says whether the family was
    /// stored: `false` when none was given, on a replay, or when its id was
    /// already taken (a concurrent replay's revoked placeholder); the code
    /// is consumed all the same.
    async fn redeem_code_with_family(
        &self,
        code_hash: &str,
        now: i64,
        family: Option<(&RefreshFamilyRecord, &RefreshTokenRecord)>,
    ) -> StoreResult<(Redeem, bool)>;
    /// Deletes codes that expired before `before`; returns how many.
    async fn purge_codes(&self, before: i64) -> StoreResult<u64>;
}

/// Result of trying to rotate a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotate {
    /// The old token was current; it is now rotated and `new` is stored.
    Rotated {
        family: RefreshFamilyRecord,
        old: RefreshTokenRecord,
    },
    /// The old token had already been rotated: reuse. The store has revoked
    /// the whole family (at `now`), and added its grant to the revocation
    /// set, in the same transaction.
    Reused { family: RefreshFamilyRecord },
    /// The family is revoked (or the token belongs to a revoked family).
    Revoked { family: RefreshFamilyRecord },
    /// The old token had been rotated within the reuse grace interval (a
    /// client refreshing twice at once, or retrying): `new` is stored as a
    /// sibling of the token that replaced it, and the family stays live.
    Sibling {
        family: RefreshFamilyRecord,
        old: RefreshTokenRecord,
    },
}

#[async_trait]
pub trait RefreshTokenStore: Send + Sync {
    /// Stores a new family and its first token in one transaction.
    async fn create_family(
        &self,
        family: &RefreshFamilyRecord,
        first: &RefreshTokenRecord,
    ) -> StoreResult<()>;
    /// Looks up a token and its family (for introspection and revocation).
    async fn get_refresh_token(
        &self,
        token_hash: &str,
    ) -> StoreResult<(RefreshTokenRecord, RefreshFamilyRecord)>;
    /// [`get_refresh_token`](Self::get_refresh_token) and the family's user,
    /// in one statement (a family never outlives its user).
    async fn get_refresh_token_and_user(
        &self,
        token_hash: &str,
    ) -> StoreResult<(RefreshTokenRecord, RefreshFamilyRecord, UserRecord)>;
    /// In one transaction: if `old_hash` is current (not rotated) and its
    /// family is live, mark it rotated at `at.now` and insert `new` (same
    /// family); if it was already rotated, revoke the family and add its
    /// grant to the revocation set. Exactly one of any number of concurrent
    /// callers gets `Rotated`. Unknown → `NotFound`. Expiry of the token or
    /// family is the caller's check.
    async fn rotate_refresh_token(
        &self,
        old_hash: &str,
        new: &RefreshTokenRecord,
        at: RevokeAt,
    ) -> StoreResult<Rotate> {
        self.rotate_refresh_token_within(old_hash, new, at, 0).await
    }
    /// [`Self::rotate_refresh_token`], except that a token rotated at most
    /// `grace_secs` before `at.now` is not reuse: `new` is stored beside the
    /// token that replaced it ([`Rotate::Sibling`]). Every concurrent caller
    /// within the interval succeeds; after it, reuse revokes the family.
    async fn rotate_refresh_token_within(
        &self,
        old_hash: &str,
        new: &RefreshTokenRecord,
        at: RevokeAt,
        grace_secs: i64,
    ) -> StoreResult<Rotate>;
    /// Revokes a family at `at.now` (idempotent) and, in the same
    /// transaction, adds its grant to the revocation set.
    async fn revoke_family(&self, family_id: &str, at: RevokeAt) -> StoreResult<()>;
    /// Revokes every family started by this authorization code (code
    /// replay) and adds their grants to the revocation set, in one
    /// transaction. Returns how many families were live.
    async fn revoke_families_by_code(&self, code_hash: &str, at: RevokeAt) -> StoreResult<u64>;
    /// Revokes every family of (user, client).
    async fn revoke_families_for(
        &self,
        user_id: &str,
        client_id: &str,
        now: i64,
    ) -> StoreResult<u64>;
    /// Deletes families (with their tokens) that expired before `before`,
    /// revoked or not; returns how many. Their tokens can no longer be
    /// refreshed, and reuse of one is then simply unknown.
    async fn purge_families(&self, before: i64) -> StoreResult<u64>;
    /// Live (unrevoked, unexpired at `now`) families, optionally for one user.
    async fn list_families(
        &self,
        user_id: Option<&str>,
        now: i64,
    ) -> StoreResult<Vec<RefreshFamilyRecord>>;
}

#[async_trait]
pub trait SigningKeyStore: Send + Sync {
    /// `Conflict` if the kid exists.
    async fn insert_key(&self, key: &SigningKeyRecord) -> StoreResult<()>;
    /// All keys, oldest first.
    async fn list_keys(&self) -> StoreResult<Vec<SigningKeyRecord>>;
    /// In one transaction: the current active key becomes `Previous` (with
    /// `rotated_at = now`), `new` is inserted as `Active`, any `Previous`
    /// key rotated before `retire_before` becomes `Retired`, and the
    /// change revision ([`RevocationStore::revocation_revision`]) moves,
    /// with its notice on PostgreSQL, so every replica reloads its keys.
    async fn rotate_keys(
        &self,
        new: &SigningKeyRecord,
        now: i64,
        retire_before: i64,
    ) -> StoreResult<()>;
    /// Marks `Previous` keys rotated before `retire_before` as `Retired`;
    /// returns how many.
    async fn retire_keys(&self, retire_before: i64, now: i64) -> StoreResult<u64>;
}

#[async_trait]
pub trait LoginSessionStore: Send + Sync {
    async fn insert_session(&self, session: &LoginSessionRecord) -> StoreResult<()>;
    async fn get_session(&self, session_hash: &str) -> StoreResult<LoginSessionRecord>;
    async fn delete_session(&self, session_hash: &str) -> StoreResult<()>;
    /// Deletes sessions that expired before `before`; returns how many.
    async fn purge_sessions(&self, before: i64) -> StoreResult<u64>;
    /// Sessions not expired at `now` (all users', or one user's), newest first.
    async fn list_sessions(
        &self,
        user_id: Option<&str>,
        now: i64,
    ) -> StoreResult<Vec<LoginSessionRecord>>;
    /// Deletes every session of `user_id`; returns how many.
    async fn delete_sessions_of(&self, user_id: &str) -> StoreResult<u64>;
    /// Marks a one-time form (a consent form) as submitted, by the hash of
    /// its id: `Conflict` if it already was. One `INSERT` decides, so of any
    /// number of concurrent submissions exactly one succeeds. The mark is
    /// kept at least until `expires_at` (when the form stops verifying).
    async fn spend_form(&self, form_hash: &str, expires_at: i64) -> StoreResult<()>;
    /// Deletes marks that expired before `before`; returns how many.
    async fn purge_spent_forms(&self, before: i64) -> StoreResult<u64>;
}

/// The gateway's audit log: append-only, read back newest first.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends `records` in one transaction: all or none.
    async fn insert_audit(&self, records: &[AuditRecord]) -> StoreResult<()>;
    /// Records at or after `since_ms`, newest first, at most `limit`.
    async fn list_audit(&self, since_ms: i64, limit: u32) -> StoreResult<Vec<AuditRecord>> {
        self.query_audit(&AuditQuery {
            since_ms,
            limit,
            ..AuditQuery::default()
        })
        .await
    }
    /// The records `q` selects, newest first.
    async fn query_audit(&self, q: &AuditQuery) -> StoreResult<Vec<AuditRecord>>;
    /// Deletes records older than `before_ms`; returns how many.
    async fn purge_audit(&self, before_ms: i64) -> StoreResult<u64>;
}

/// Upstream identity providers: linked identities and the server-side
/// state of upstream sign-ins.
#[async_trait]
pub trait IdentityStore: Send + Sync {
    /// Creates `user` and links `identity` to it in one transaction.
    /// `Conflict` if the user id, username or (provider, subject) exists.
    async fn create_linked_user(
        &self,
        user: &UserRecord,
        identity: &LinkedIdentityRecord,
    ) -> StoreResult<()>;
    /// `NotFound` if the identity is not linked.
    async fn get_linked_identity(
        &self,
        provider: &str,
        subject: &str,
    ) -> StoreResult<LinkedIdentityRecord>;
    /// A user's linked identities, sorted by (provider, subject).
    async fn list_linked_identities(&self, user_id: &str)
    -> StoreResult<Vec<LinkedIdentityRecord>>;
    /// `Conflict` if the state hash exists.
    async fn insert_upstream_state(&self, state: &UpstreamStateRecord) -> StoreResult<()>;
    /// One conditional `DELETE … RETURNING`: removes and returns the record
    /// whose state hash AND binding hash both match and that has not expired
    /// at `now`. Anything else (unknown, already taken, other binding,
    /// expired) → `NotFound`, and a record with another binding is left in
    /// place. Exactly one of any number of concurrent callers gets it.
    async fn take_upstream_state(
        &self,
        state_hash: &str,
        binding_hash: &str,
        now: i64,
    ) -> StoreResult<UpstreamStateRecord>;
    /// Deletes records that expired before `before`; returns how many.
    async fn purge_upstream_states(&self, before: i64) -> StoreResult<u64>;
}

/// The vault of per-user upstream credentials: one row per (user,
/// upstream), written when the user connects an account, refreshed one
/// refresh at a time across replicas (a lease taken by one conditional
/// update), and deleted on unlink and on every revocation.
#[async_trait]
pub trait UpstreamGrantStore: Send + Sync {
    /// Stores `g`, replacing the row of the same (user, upstream) if there
    /// is one (a reconnect). `NotFound` if the user does not exist.
    async fn put_upstream_grant(&self, g: &UpstreamGrantRecord) -> StoreResult<()>;
    /// `NotFound` if the user has not connected `upstream`.
    async fn get_upstream_grant(
        &self,
        user_id: &str,
        upstream: &str,
    ) -> StoreResult<UpstreamGrantRecord>;
    /// A user's grants, sorted by upstream.
    async fn list_upstream_grants(&self, user_id: &str) -> StoreResult<Vec<UpstreamGrantRecord>>;
    /// Deletes and returns the row (`NotFound` if absent); of concurrent
    /// callers exactly one gets it.
    async fn delete_upstream_grant(
        &self,
        user_id: &str,
        upstream: &str,
    ) -> StoreResult<UpstreamGrantRecord>;
    /// Deletes and returns every grant of `user_id` (sorted by upstream).
    async fn delete_user_upstream_grants(
        &self,
        user_id: &str,
    ) -> StoreResult<Vec<UpstreamGrantRecord>>;
    /// One conditional `UPDATE … RETURNING`: if the row exists and no lease
    /// is held at `now` (`refresh_lease_until <= now`), sets
    /// `refresh_lease_until = until` and returns the row as updated.
    /// Otherwise `NotFound` and nothing changes. Of concurrent callers on
    /// any replica exactly one gets the lease.
    async fn lease_upstream_grant(
        &self,
        user_id: &str,
        upstream: &str,
        now: i64,
        until: i64,
    ) -> StoreResult<UpstreamGrantRecord>;
    /// Ends a lease taken with `lease_upstream_grant(.., until = lease)`:
    /// one conditional `UPDATE` that, only if the row still holds exactly
    /// that lease, writes `sealed_tokens`, `scope`, `expires_at` and
    /// `updated_at` from `g` and sets `refresh_lease_until` to 0. A row
    /// deleted meanwhile (unlinked, revoked) or whose lease was taken over
    /// is left alone: `NotFound`. A `lease` of 0 (no lease) is `NotFound`.
    async fn finish_upstream_refresh(&self, g: &UpstreamGrantRecord, lease: i64)
    -> StoreResult<()>;
}

/// Gateway sessions shared by the replicas of one database: a session made
/// by one replica is found, bound to the same owner, by every other.
/// Times are milliseconds since the epoch.
#[async_trait]
pub trait GatewaySessionStore: Send + Sync {
    /// Stores `s` and, in the same transaction, deletes the sessions of the
    /// same owner (upstream, issuer, subject) beyond the `cap` most recently
    /// used (`s` counts, and is never among them), returning those. Two
    /// sessions of one owner made at the same instant on two replicas may
    /// leave the owner one over `cap` until the next. `Conflict` if the id
    /// exists.
    async fn insert_gateway_session(
        &self,
        s: &GatewaySessionRecord,
        cap: u32,
    ) -> StoreResult<Vec<GatewaySessionRecord>>;
    /// One conditional `UPDATE … RETURNING`: marks the session used at
    /// `now` and returns it, if it exists, belongs to `upstream` and to this
    /// (issuer, subject, client_id), and was used at or after
    /// `idle_before`. Anything else → `NotFound`, and nothing is changed.
    async fn touch_gateway_session(
        &self,
        id_hash: &str,
        owner: SessionOwner<'_>,
        now: i64,
        idle_before: i64,
    ) -> StoreResult<GatewaySessionRecord>;
    /// Deletes the session and returns it (`NotFound` if absent). Of
    /// concurrent callers exactly one gets it.
    async fn delete_gateway_session(&self, id_hash: &str) -> StoreResult<GatewaySessionRecord>;
    /// The id hashes of `replica`'s sessions still stored and used at or
    /// after `idle_before` (a replica ends what others removed).
    async fn live_gateway_sessions(
        &self,
        replica: &str,
        idle_before: i64,
    ) -> StoreResult<Vec<String>>;
    /// Deletes the sessions last used before `idle_before` and returns
    /// them (each to exactly one caller), at most `limit`.
    async fn purge_gateway_sessions(
        &self,
        idle_before: i64,
        limit: u32,
    ) -> StoreResult<Vec<GatewaySessionRecord>>;
}

/// Who a gateway session belongs to, and on which upstream.
#[derive(Debug, Clone, Copy)]
pub struct SessionOwner<'a> {
    pub upstream: &'a str,
    pub issuer: &'a str,
    pub subject: &'a str,
    pub client_id: &'a str,
}

/// A change notice from [`RevocationStore::listen_revocations`].
pub use crate::revocation::RevocationListener;

/// The revocation set: entries naming grants, users, clients, consents and
/// token ids whose access tokens must be refused although their signature
/// and expiry are good (see [`crate::RevocationSet`] for what each covers),
/// and a revision counter that grows with every change. The revision (and
/// its PostgreSQL notice) is the store's one change feed: signing-key
/// rotations move it too.
#[async_trait]
pub trait RevocationStore: Send + Sync {
    /// Adds `entries` (an existing entry for the same target keeps the later
    /// `revoked_at` and `expires_at`) and bumps the revision, in one
    /// transaction; on PostgreSQL the commit notifies listeners. Returns the
    /// new revision.
    async fn revoke(&self, entries: &[RevocationRecord]) -> StoreResult<i64>;
    /// Removes the entry for `target` (`users enable` lifting a disable) and
    /// bumps the revision if there was one. Returns whether there was one.
    async fn lift_revocation(&self, target: &RevocationTarget) -> StoreResult<bool>;
    /// The current revision (0 before any change).
    async fn revocation_revision(&self) -> StoreResult<i64>;
    /// Every entry, with the revision they are as of (read together).
    async fn list_revocations(&self) -> StoreResult<(i64, Vec<RevocationRecord>)>;
    /// The entries unexpired at `now` that name any of the ids of one token
    /// (its grant, subject, client, consent pair or jti): what
    /// introspection checks, without loading the whole set.
    async fn revocations_for(
        &self,
        token: &crate::RevocableToken<'_>,
        now: i64,
    ) -> StoreResult<Vec<RevocationRecord>>;
    /// Deletes entries that expired before `before`; returns how many. Does
    /// not bump the revision: an expired entry covers only expired tokens.
    async fn purge_revocations(&self, before: i64) -> StoreResult<u64>;
    /// A feed of change notices from every process sharing the database
    /// (PostgreSQL `LISTEN`), or `None` where the backend has none (SQLite:
    /// poll [`revocation_revision`](Self::revocation_revision)).
    async fn listen_revocations(&self) -> StoreResult<Option<RevocationListener>>;
}

/// A token bucket's shape: it holds at most `capacity` whole tokens and
/// refills at `refill_per_sec` (a limit of N per minute: capacity N, N/60
/// per second).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub capacity: u32,
    pub refill_per_sec: f64,
}

/// What [`FleetStore::take_tokens`] took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Taken {
    /// Whole tokens taken out, `0..=want`.
    pub granted: u32,
    /// What the bucket holds after (fractional: it refills continuously).
    pub left: f64,
}

/// A round of housekeeping for one replica at a time (see [`crate::fleet`]).
pub use crate::fleet::Housekeeper;

/// What the replicas sharing one database need to act as one: fleet-wide
/// token buckets for rate limits ([`crate::rates`]), a heartbeat per
/// replica, and the lock that lets one replica at a time do housekeeping.
#[async_trait]
pub trait FleetStore: Send + Sync {
    /// Refills the bucket `key` for the time since it was last touched (the
    /// database's clock), then takes `min(want, whole tokens held)` out, in
    /// one conditional upsert: of concurrent callers on any replica, no two
    /// get the same token. A new key starts full. `key` is text without NUL
    /// (PostgreSQL refuses it) and short enough for an index entry;
    /// [`crate::rates::Limiter`] makes its keys so.
    async fn take_tokens(&self, key: &str, bucket: Bucket, want: u32) -> StoreResult<Taken>;
    /// Deletes buckets untouched for `idle_secs` (by then full, which is
    /// what a missing bucket is); returns how many.
    async fn purge_rate_limits(&self, idle_secs: f64) -> StoreResult<u64>;
    /// Records that replica `id` is alive now, forgets replicas not seen for
    /// `ttl_secs`, and returns how many are alive (this one included).
    async fn fleet_heartbeat(&self, id: &str, ttl_secs: f64) -> StoreResult<u32>;
    /// The housekeeping lock for `task` (one per kind of round): on
    /// PostgreSQL an advisory lock on a connection of its own, on SQLite
    /// (one node) always held. Taking it never fails here: the lock's
    /// connection is opened by [`Housekeeper::acquire`], round by round.
    fn housekeeper(&self, task: &str) -> Housekeeper;
}

/// Every aggregate in one object: what the server holds.
pub trait Store:
    UserStore
    + ClientStore
    + ConsentStore
    + AuthCodeStore
    + RefreshTokenStore
    + SigningKeyStore
    + LoginSessionStore
    + AuditStore
    + IdentityStore
    + UpstreamGrantStore
    + RevocationStore
    + GatewaySessionStore
    + FleetStore
    + Send
    + Sync
    + 'static
{
    /// `sqlite` or `postgres`, for logs and `check-config`.
    fn backend_name(&self) -> &'static str;
}

pub type DynStore = Arc<dyn Store>;
