//! Signing keys in memory: the active key signs, the active and previous
//! keys are published (RFC 7517 JWKS) and verify; retired keys are gone.
//! Private keys live in the store sealed under the master key.

use std::sync::{Arc, RwLock};

use mcpgate_jose::{Clock, KeyAlg, MasterKey, PublicJwks, Rng, SigningKey, Verifier, random_token};
use mcpgate_store::{DynStore, KeyState, SigningKeyRecord};

use crate::error::ApiError;

/// One consistent view of the keys.
#[derive(Debug)]
pub struct KeySet {
    pub active: SigningKey,
    pub jwks: PublicJwks,
    pub verifier: Arc<Verifier>,
    /// (kid, state) of every stored key this set was built from.
    stored: Vec<(String, KeyState)>,
}

pub struct KeyRing {
    current: RwLock<Arc<KeySet>>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing").finish_non_exhaustive()
    }
}

/// Everything key management needs.
pub struct KeyDeps<'a> {
    pub store: &'a DynStore,
    pub master: &'a MasterKey,
    pub rng: &'a dyn Rng,
    pub clock: &'a dyn Clock,
}

impl KeyRing {
    /// Loads the keys, creating the first one if there is none, and retiring
    /// previous keys older than the grace period.
    pub async fn load(d: &KeyDeps<'_>, alg: KeyAlg, grace_secs: i64) -> Result<Self, ApiError> {
        let set = build(d, alg, grace_secs).await?;
        Ok(Self {
            current: RwLock::new(Arc::new(set)),
        })
    }

    pub fn current(&self) -> Arc<KeySet> {
        self.current.read().expect("keyring lock poisoned").clone()
    }

    /// Re-reads the store (after a rotation by the CLI or another replica).
    pub async fn reload(
        &self,
        d: &KeyDeps<'_>,
        alg: KeyAlg,
        grace_secs: i64,
    ) -> Result<(), ApiError> {
        let set = build(d, alg, grace_secs).await?;
        *self.current.write().expect("keyring lock poisoned") = Arc::new(set);
        Ok(())
    }

    /// Reloads only if the stored keys differ from the current set's (one
    /// listing otherwise); returns whether it did.
    pub async fn refresh(
        &self,
        d: &KeyDeps<'_>,
        alg: KeyAlg,
        grace_secs: i64,
    ) -> Result<bool, ApiError> {
        let stored = fingerprint(&d.store.list_keys().await?);
        if stored == self.current().stored {
            return Ok(false);
        }
        self.reload(d, alg, grace_secs).await?;
        Ok(true)
    }
}

fn fingerprint(records: &[SigningKeyRecord]) -> Vec<(String, KeyState)> {
    records.iter().map(|r| (r.kid.clone(), r.state)).collect()
}

/// Adds a new active key; the old active key becomes previous (still in the
/// JWKS for `grace_secs`), and previous keys past their grace are retired.
/// Returns the new key id.
pub async fn rotate(d: &KeyDeps<'_>, alg: KeyAlg, grace_secs: i64) -> Result<String, ApiError> {
    let now = d.clock.now();
    let rec = new_key_record(d, alg, now)?;
    d.store
        .rotate_keys(&rec, now, now - grace_secs)
        .await
        .map_err(ApiError::from)?;
    Ok(rec.kid)
}

fn new_key_record(d: &KeyDeps<'_>, alg: KeyAlg, now: i64) -> Result<SigningKeyRecord, ApiError> {
    let kid = random_token(d.rng, 12);
    let key = SigningKey::generate(kid.clone(), alg)
        .map_err(|e| ApiError::Internal(format!("key generation: {e}")))?;
    Ok(SigningKeyRecord {
        kid: kid.clone(),
        alg: alg.as_str().to_string(),
        sealed_pkcs8: d.master.seal(d.rng, key.pkcs8(), kid.as_bytes()),
        state: KeyState::Active,
        created_at: now,
        rotated_at: None,
        retired_at: None,
    })
}

async fn build(d: &KeyDeps<'_>, alg: KeyAlg, grace_secs: i64) -> Result<KeySet, ApiError> {
    let now = d.clock.now();
    d.store.retire_keys(now - grace_secs, now).await?;
    let mut records = d.store.list_keys().await?;
    if !records.iter().any(|r| r.state == KeyState::Active) {
        let rec = new_key_record(d, alg, now)?;
        match d.store.insert_key(&rec).await {
            Ok(()) => {}
            // Another replica created one at the same moment: use theirs.
            Err(mcpgate_store::StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
        records = d.store.list_keys().await?;
    }
    let mut active = None;
    let mut published = Vec::new();
    for r in records.iter().filter(|r| r.state != KeyState::Retired) {
        let key_alg = KeyAlg::parse(&r.alg).ok_or_else(|| {
            ApiError::Internal(format!("key {} has unknown alg {}", r.kid, r.alg))
        })?;
        let pkcs8 = d
            .master
            .open(&r.sealed_pkcs8, r.kid.as_bytes())
            .map_err(|_| {
                ApiError::Internal(format!(
                    "signing key {} does not open with this master key (wrong master key file?)",
                    r.kid
                ))
            })?;
        let key = SigningKey::from_pkcs8(r.kid.clone(), key_alg, pkcs8)
            .map_err(|e| ApiError::Internal(format!("key {}: {e}", r.kid)))?;
        published.push(key.public_jwk().clone());
        // The newest active key wins if several exist.
        if r.state == KeyState::Active {
            active = Some(key);
        }
    }
    let active = active.ok_or_else(|| ApiError::Internal("no active signing key".into()))?;
    // Newest first, so clients that try keys in order find the active one first.
    published.reverse();
    let jwks = PublicJwks { keys: published };
    let verifier = Arc::new(
        Verifier::from_public_jwks(&jwks).map_err(|e| ApiError::Internal(format!("jwks: {e}")))?,
    );
    Ok(KeySet {
        active,
        jwks,
        verifier,
        stored: fingerprint(&records),
    })
}
