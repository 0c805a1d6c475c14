//! Client records read recently, for [`ClientStore::get_client_recent`].
//!
//! A code exchange and a refresh each authenticate their client before
//! touching the grant; reading the client row every time was one of the
//! four database round trips of each. This cache answers those reads from
//! memory for at most [`CLIENT_CACHE_TTL`]. It is shared by every clone of
//! one store handle, so every write through that handle (create, upsert,
//! delete, purge) is seen at once: a write bumps a generation and drops the
//! entry, and a read that raced with it does not store what it read. A
//! write made by another process (a replica, the operator's CLI) is seen
//! once the entry ages out.
//!
//! It is no place to decide on a client that might be gone: a removed
//! client takes its codes and refresh families with it (`ON DELETE
//! CASCADE`), so the grant step after a recent read fails on its own; an
//! operation without such a step (client credentials, introspection,
//! revocation) reads the row.
//!
//! [`ClientStore::get_client_recent`]: crate::ClientStore::get_client_recent

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::records::ClientRecord;

/// How old a client read by [`ClientStore::get_client_recent`] may be.
///
/// [`ClientStore::get_client_recent`]: crate::ClientStore::get_client_recent
pub const CLIENT_CACHE_TTL: Duration = Duration::from_secs(1);

/// Entries kept at most; a full cache is emptied (every entry lives a
/// second anyway), so a flood of registrations cannot grow it.
const MAX_ENTRIES: usize = 4096;

/// The cache of one store handle; clones share it.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientCache(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    entries: RwLock<HashMap<String, (ClientRecord, Instant)>>,
    /// Bumped by every write to the clients table through this handle.
    generation: AtomicU64,
}

/// Where a read stood when it started: [`ClientCache::put`] stores what it
/// read only if no write came between.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadMark(u64);

impl ClientCache {
    /// A record read less than [`CLIENT_CACHE_TTL`] ago, else `None` and the
    /// mark to hand to [`put`](Self::put) after reading the row.
    pub(crate) fn get(&self, client_id: &str) -> Result<ClientRecord, ReadMark> {
        let mark = ReadMark(self.0.generation.load(Ordering::Acquire));
        let entries = self.0.entries.read().unwrap_or_else(|p| p.into_inner());
        match entries.get(client_id) {
            Some((rec, at)) if at.elapsed() < CLIENT_CACHE_TTL => Ok(rec.clone()),
            _ => Err(mark),
        }
    }

    /// Keeps `rec`, read after `mark` was taken, unless a write came since.
    pub(crate) fn put(&self, rec: &ClientRecord, mark: ReadMark) {
        let mut entries = self.0.entries.write().unwrap_or_else(|p| p.into_inner());
        // Checked under the lock that `changed` also takes, so a write
        // cannot slip between the check and the insert.
        if self.0.generation.load(Ordering::Acquire) != mark.0 {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(rec.client_id.clone(), (rec.clone(), Instant::now()));
    }

    /// Called after every write to the clients table: reads begun before it
    /// keep nothing, and nothing stored before it is answered again.
    pub(crate) fn changed(&self) {
        let mut entries = self.0.entries.write().unwrap_or_else(|p| p.into_inner());
        self.0.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::ClientKind;

    fn client(id: &str, name: &str) -> ClientRecord {
        ClientRecord {
            client_id: id.into(),
            kind: ClientKind::Dynamic,
            client_name: Some(name.into()),
            client_secret_hash: None,
            token_endpoint_auth_method: "none".into(),
            redirect_uris: vec![],
            grant_types: vec![],
            allowed_scopes: vec![],
            application_type: None,
            client_uri: None,
            logo_uri: None,
            created_at: 0,
            expires_at: None,
            jwks: None,
            jwks_uri: None,
        }
    }

    #[test]
    fn a_read_is_answered_again_until_a_write() {
        let cache = ClientCache::default();
        let mark = cache.get("c").unwrap_err();
        cache.put(&client("c", "one"), mark);
        assert_eq!(cache.get("c").unwrap().client_name.as_deref(), Some("one"));
        cache.changed();
        assert!(cache.get("c").is_err());
    }

    #[test]
    fn a_read_that_raced_a_write_keeps_nothing() {
        let cache = ClientCache::default();
        let mark = cache.get("c").unwrap_err();
        // The row was read (old), then a write landed before the put.
        cache.changed();
        cache.put(&client("c", "old"), mark);
        assert!(cache.get("c").is_err(), "a stale read must not be kept");
    }

    #[test]
    fn a_full_cache_starts_over() {
        let cache = ClientCache::default();
        for i in 0..MAX_ENTRIES + 1 {
            let mark = cache.get(&i.to_string()).unwrap_err();
            cache.put(&client(&i.to_string(), "x"), mark);
        }
        let n = cache.0.entries.read().unwrap().len();
        assert_eq!(n, 1);
    }
}
