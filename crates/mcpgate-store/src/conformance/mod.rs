//! The store-conformance suite: the contract of every store trait, written
//! once, run against every backend (this crate's `tests/it` runs it on
//! SQLite and PostgreSQL; another backend can run it the same way).
//!
//! Each [`Case`] takes a fresh, empty [`DynStore`] of its own and panics on
//! a broken rule. The concurrency cases spawn tasks, so run them on a
//! multi-thread tokio runtime. Durability takes two stores over the same
//! database: [`durability_write`] on the first, then, after the harness
//! closes and reopens it, [`durability_verify`] on the second.

mod accounts;
mod audit;
mod fleet;
mod grants;
mod identity;
mod keys;
mod revocations;
mod sessions;
mod upstream_grants;

use std::future::Future;
use std::pin::Pin;

use crate::records::*;
use crate::traits::{DynStore, RefreshTokenStore, StoreError, StoreResult};

/// What a case returns: run it to completion on a multi-thread runtime.
pub type CaseFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// One conformance case.
#[derive(Clone, Copy)]
pub struct Case {
    /// Unique, a valid identifier (usable as a schema or file name).
    pub name: &'static str,
    pub run: fn(DynStore) -> CaseFuture,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case").field("name", &self.name).finish()
    }
}

macro_rules! cases {
    ($($module:ident :: $case:ident),* $(,)?) => {
        vec![$(Case {
            name: stringify!($case),
            run: |store| Box::pin($module::$case(store)),
        }),*]
    };
}

/// Every case, in a stable order.
pub fn cases() -> Vec<Case> {
    cases![
        accounts::users_crud,
        accounts::users_conflicts,
        accounts::users_sorted_bytewise,
        accounts::clients_crud,
        accounts::clients_upsert,
        accounts::clients_recent_sees_own_writes,
        accounts::clients_count_dynamic,
        accounts::unused_metadata_clients_purged,
        accounts::consents_upsert_and_list,
        accounts::consent_revoke_revokes_families,
        accounts::references_must_exist,
        grants::code_redeem_fresh_then_replayed,
        grants::code_redeem_concurrent_exactly_one,
        grants::code_get_does_not_consume,
        grants::code_get_with_user,
        grants::refresh_get_with_user,
        grants::code_redeem_with_family,
        grants::code_redeem_with_family_concurrent_exactly_one,
        grants::grant_steps_fail_alone,
        grants::code_purge,
        grants::family_purge,
        grants::refresh_family_create_and_get,
        grants::refresh_rotate_chain,
        grants::refresh_reuse_revokes_family,
        grants::refresh_rotate_concurrent_exactly_one,
        grants::refresh_reuse_grace,
        grants::refresh_rotate_concurrent_within_grace,
        grants::refresh_revoked_family,
        grants::refresh_revoke_by_code_and_for,
        grants::refresh_list_families,
        keys::keys_insert_and_list,
        keys::keys_rotate_and_retire,
        keys::keys_one_active,
        keys::sessions_lifecycle,
        keys::spent_forms_single_use,
        keys::delete_user_cascades,
        keys::delete_client_cascades,
        audit::audit_append_list_purge,
        identity::identities_link_and_get,
        identity::upstream_state_single_use,
        identity::upstream_state_expiry_and_purge,
        identity::upstream_state_concurrent_exactly_one,
        upstream_grants::upstream_grants_put_get_list,
        upstream_grants::upstream_grants_put_replaces,
        upstream_grants::upstream_grants_absent,
        upstream_grants::upstream_grants_delete,
        upstream_grants::upstream_grants_delete_for_user,
        upstream_grants::upstream_grants_go_with_user,
        upstream_grants::upstream_grants_lease,
        upstream_grants::upstream_grants_finish_refresh,
        upstream_grants::upstream_grants_finish_stale_lease,
        upstream_grants::upstream_grants_finish_after_delete,
        upstream_grants::upstream_grants_lease_concurrent_exactly_one,
        upstream_grants::upstream_grants_delete_concurrent_exactly_one,
        revocations::revocations_revoke_list_and_revision,
        revocations::revocations_lift,
        revocations::revocations_for_one_token,
        revocations::revocations_expire_and_purge,
        revocations::revocations_from_state_changes,
        revocations::revocations_concurrent_revisions_distinct,
        revocations::revocations_watch_follows,
        sessions::gateway_sessions_bound_to_owner,
        sessions::gateway_sessions_cap_evicts_least_recently_used,
        sessions::gateway_sessions_purge_and_replicas,
        sessions::gateway_sessions_concurrent_delete_exactly_one,
        fleet::fleet_bucket_takes_whole_tokens,
        fleet::fleet_bucket_refills_up_to_capacity,
        fleet::fleet_bucket_concurrent_no_token_twice,
        fleet::fleet_buckets_purged_when_idle,
        fleet::fleet_heartbeat_counts_live_replicas,
        fleet::fleet_housekeeper_acquires,
        fleet::fleet_key_rotation_moves_the_revision,
    ]
}

pub use keys::{durability_verify, durability_write};

// ---- fixtures shared by the cases -------------------------------------

/// A fixed "now" so expiry arithmetic is readable.
pub(crate) const NOW: i64 = 1_750_000_000;

/// A revocation at `now`, its entries kept for an hour.
pub(crate) fn at(now: i64) -> RevokeAt {
    RevokeAt {
        now,
        until: now + 3_600,
    }
}

pub(crate) fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

pub(crate) fn user(id: &str, username: &str) -> UserRecord {
    UserRecord {
        id: id.to_owned(),
        username: username.to_owned(),
        display_name: Some(format!("User {username}")),
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned()),
        groups: strings(&["staff", "ops"]),
        must_change_password: true,
        disabled: false,
        created_at: NOW,
        updated_at: NOW,
    }
}

pub(crate) fn client(client_id: &str) -> ClientRecord {
    ClientRecord {
        client_id: client_id.to_owned(),
        kind: ClientKind::PreRegistered,
        client_name: Some("Test client".to_owned()),
        client_secret_hash: Some("a".repeat(64)),
        token_endpoint_auth_method: "client_secret_basic".to_owned(),
        redirect_uris: strings(&["https://app.example/cb", "http://127.0.0.1:9999/cb"]),
        grant_types: strings(&["authorization_code", "refresh_token"]),
        allowed_scopes: strings(&["mcp:read", "mcp:write"]),
        application_type: Some("web".to_owned()),
        client_uri: Some("https://app.example/".to_owned()),
        logo_uri: None,
        created_at: NOW,
        expires_at: None,
        jwks: None,
        jwks_uri: None,
    }
}

pub(crate) fn consent(user_id: &str, client_id: &str) -> ConsentRecord {
    ConsentRecord {
        user_id: user_id.to_owned(),
        client_id: client_id.to_owned(),
        scopes: strings(&["mcp:read"]),
        resources: strings(&["https://gw.example/mcp/files"]),
        granted_at: NOW,
        updated_at: NOW,
    }
}

pub(crate) fn code(code_hash: &str, client_id: &str, user_id: &str) -> AuthCodeRecord {
    AuthCodeRecord {
        code_hash: code_hash.to_owned(),
        client_id: client_id.to_owned(),
        user_id: user_id.to_owned(),
        redirect_uri: "https://app.example/cb".to_owned(),
        scopes: strings(&["mcp:read", "offline_access"]),
        resource: "https://gw.example/mcp/files".to_owned(),
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".to_owned(),
        auth_time: NOW - 5,
        created_at: NOW,
        expires_at: NOW + 60,
        used_at: None,
    }
}

pub(crate) fn family(family_id: &str, client_id: &str, user_id: &str) -> RefreshFamilyRecord {
    RefreshFamilyRecord {
        family_id: family_id.to_owned(),
        client_id: client_id.to_owned(),
        user_id: user_id.to_owned(),
        resource: "https://gw.example/mcp/files".to_owned(),
        scopes: strings(&["mcp:read", "mcp:write", "offline_access"]),
        auth_time: NOW - 5,
        code_hash: Some(format!("code-of-{family_id}")),
        created_at: NOW,
        expires_at: NOW + 86_400,
        revoked_at: None,
        // Every family in these tests is bound, so each round trip checks the column.
        dpop_jkt: Some(format!("jkt-of-{family_id}")),
    }
}

pub(crate) fn token(token_hash: &str, family_id: &str) -> RefreshTokenRecord {
    RefreshTokenRecord {
        token_hash: token_hash.to_owned(),
        family_id: family_id.to_owned(),
        scopes: strings(&["mcp:read"]),
        created_at: NOW,
        expires_at: NOW + 3_600,
        rotated_at: None,
    }
}

pub(crate) fn key(kid: &str, state: KeyState, created_at: i64) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: kid.to_owned(),
        alg: "ES256".to_owned(),
        // Not valid UTF-8, with a NUL: must round-trip as bytes.
        sealed_pkcs8: vec![0, 159, 146, 150, 255, 1, 2, 3, kid.len() as u8],
        state,
        created_at,
        rotated_at: None,
        retired_at: None,
    }
}

pub(crate) fn session(session_hash: &str, user_id: &str, expires_at: i64) -> LoginSessionRecord {
    LoginSessionRecord {
        session_hash: session_hash.to_owned(),
        user_id: user_id.to_owned(),
        auth_time: NOW,
        created_at: NOW,
        expires_at,
    }
}

/// Creates users `u1`/`u2` and clients `c1`/`c2`, which most cases need as
/// parents.
pub(crate) async fn seed(store: &DynStore) {
    store.create_user(&user("u1", "alice")).await.unwrap();
    store.create_user(&user("u2", "bob")).await.unwrap();
    store.create_client(&client("c1")).await.unwrap();
    store.create_client(&client("c2")).await.unwrap();
}

/// The ids of the families live at [`NOW`] (unexpired, unrevoked), in the
/// store's order.
pub(crate) async fn live_family_ids(store: &(impl RefreshTokenStore + ?Sized)) -> Vec<String> {
    store
        .list_families(None, NOW)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.family_id)
        .collect()
}

#[track_caller]
pub(crate) fn assert_not_found<T: std::fmt::Debug>(result: StoreResult<T>) {
    match result {
        Err(StoreError::NotFound) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[track_caller]
pub(crate) fn assert_conflict<T: std::fmt::Debug>(result: StoreResult<T>) {
    match result {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("expected Conflict, got {other:?}"),
    }
}
