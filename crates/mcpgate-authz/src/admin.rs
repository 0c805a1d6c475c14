//! Operator actions behind the CLI (`users`, `clients`, `consents`, `keys`)
//! and the demo bootstrap. Each validates its input as strictly as the
//! matching protocol endpoint would.

use mcpgate_jose::{Clock, KeyAlg, MasterKey, Rng, random_token};
use mcpgate_store::{
    ClientKind, ClientRecord, DynStore, RevocationTarget, RevokeAt, StoreError, UserRecord,
};
use mcpgate_types::client_metadata::TokenEndpointAuthMethod;
use mcpgate_types::redirect_uri::validate_for_registration;
use mcpgate_types::scope::is_scope_token;
use mcpgate_types::secret::hash_secret;

use crate::client_assertion::registered_keys;
use crate::keyring::{self, KeyDeps};
use crate::password;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0} already exists")]
    Exists(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
    #[error("unlinking connected upstream accounts: {0}")]
    Upstream(String),
}

pub struct Ctx<'a> {
    pub store: &'a DynStore,
    pub rng: &'a dyn Rng,
    pub clock: &'a dyn Clock,
    /// How long revocation entries are kept
    /// ([`AuthzSettings::revocation_ttl`](crate::AuthzSettings::revocation_ttl)).
    pub revocation_ttl: i64,
    /// The vault of the gateway's `user_oauth` upstreams: a user's
    /// connected accounts are revoked at those upstreams' servers too.
    /// Without it (no such upstream configured), the grants are only
    /// deleted.
    pub vault: Option<&'a mcpgate_vault::Vault>,
}

impl Ctx<'_> {
    /// Unlinks every connected upstream account of `user_id` (a revocation
    /// on mcpgate's side stops them too): deleted here, revoked at the
    /// upstream's server where the vault can.
    async fn unlink_upstreams(&self, user_id: &str) -> Result<(), AdminError> {
        match self.vault {
            Some(v) => {
                v.unlink_all(user_id)
                    .await
                    .map_err(|e| AdminError::Upstream(e.to_string()))?;
            }
            None => {
                self.store.delete_user_upstream_grants(user_id).await?;
            }
        }
        Ok(())
    }

    /// A revocation now.
    fn revoke_at(&self) -> RevokeAt {
        let now = self.clock.now();
        RevokeAt {
            now,
            until: now + self.revocation_ttl,
        }
    }
}

fn valid_username(u: &str) -> bool {
    !u.is_empty()
        && u.len() <= 64
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

fn valid_group(g: &str) -> bool {
    !g.is_empty()
        && g.len() <= 64
        && g.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/'))
}

fn hash_password(ctx: &Ctx<'_>, pw: &str) -> Result<String, AdminError> {
    let mut salt = [0u8; 16];
    ctx.rng.fill(&mut salt);
    password::hash(pw, &salt).map_err(AdminError::Internal)
}

/// A generated one-time password: 20 characters of base64url (120 bits).
pub fn one_time_password(rng: &dyn Rng) -> String {
    random_token(rng, 15)
}

/// The password to set and, when none was given, the generated one-time
/// password to show the operator once.
fn chosen_or_one_time(
    ctx: &Ctx<'_>,
    password: Option<&str>,
) -> Result<(String, Option<String>), AdminError> {
    match password {
        Some(p) => {
            password::check_policy(p).map_err(|m| AdminError::Invalid(m.into()))?;
            Ok((p.to_string(), None))
        }
        None => {
            let p = one_time_password(ctx.rng);
            Ok((p.clone(), Some(p)))
        }
    }
}

/// Creates a user. Without `password`, a one-time password is generated,
/// returned, and must be changed at first login.
pub async fn create_user(
    ctx: &Ctx<'_>,
    username: &str,
    display_name: Option<&str>,
    password: Option<&str>,
    groups: &[String],
) -> Result<(UserRecord, Option<String>), AdminError> {
    if !valid_username(username) {
        return Err(AdminError::Invalid(
            "usernames are 1-64 characters of letters, digits, '.', '_', '-', '@'".into(),
        ));
    }
    if let Some(g) = groups.iter().find(|g| !valid_group(g)) {
        return Err(AdminError::Invalid(format!(
            "group {g:?}: groups are 1-64 characters of letters, digits, '.', '_', '-', ':', '/'"
        )));
    }
    let (pw, otp) = chosen_or_one_time(ctx, password)?;
    let now = ctx.clock.now();
    let mut groups = groups.to_vec();
    groups.sort();
    groups.dedup();
    let user = UserRecord {
        id: format!("u_{}", random_token(ctx.rng, 12)),
        username: username.to_string(),
        display_name: display_name.map(str::to_string),
        password_hash: Some(hash_password(ctx, &pw)?),
        groups,
        must_change_password: otp.is_some(),
        disabled: false,
        created_at: now,
        updated_at: now,
    };
    match ctx.store.create_user(&user).await {
        Ok(()) => Ok((user, otp)),
        Err(StoreError::Conflict(_)) => Err(AdminError::Exists(format!("user {username:?}"))),
        Err(e) => Err(e.into()),
    }
}

/// Sets a new password (or a new one-time password when `None`).
pub async fn set_password(
    ctx: &Ctx<'_>,
    username: &str,
    password: Option<&str>,
) -> Result<Option<String>, AdminError> {
    let mut user = user_named(ctx, username).await?;
    let (pw, otp) = chosen_or_one_time(ctx, password)?;
    user.password_hash = Some(hash_password(ctx, &pw)?);
    user.must_change_password = otp.is_some();
    user.updated_at = ctx.clock.now();
    ctx.store.update_user(&user).await?;
    Ok(otp)
}

/// The user called `username`, or `NotFound` naming it.
async fn user_named(ctx: &Ctx<'_>, username: &str) -> Result<UserRecord, AdminError> {
    match ctx.store.get_user_by_username(username).await {
        Ok(u) => Ok(u),
        Err(StoreError::NotFound) => Err(AdminError::NotFound(format!("user {username:?}"))),
        Err(e) => Err(e.into()),
    }
}

/// Removes a user with everything of theirs; their access tokens stop
/// working at every gateway (a user entry in the revocation set, written
/// in the same transaction).
pub async fn remove_user(ctx: &Ctx<'_>, username: &str) -> Result<(), AdminError> {
    let user = user_named(ctx, username).await?;
    // First: deleting the user deletes the grants, and they could then no
    // longer be revoked at the upstreams' servers.
    ctx.unlink_upstreams(&user.id).await?;
    ctx.store.delete_user(&user.id, ctx.revoke_at()).await?;
    Ok(())
}

/// Disables (or enables again) a user. A disabled user cannot sign in, and
/// their codes, refresh tokens and sign-in sessions are refused; the access
/// tokens already issued to them stop working (a user entry in the
/// revocation set, written before the flag so a failure leaves them
/// revoked rather than live). Enabling lifts that entry after clearing the
/// flag, so tokens issued before the disable work again if they have not
/// expired. Returns whether the flag changed.
pub async fn set_disabled(
    ctx: &Ctx<'_>,
    username: &str,
    disabled: bool,
) -> Result<bool, AdminError> {
    let mut user = user_named(ctx, username).await?;
    if user.disabled == disabled {
        return Ok(false);
    }
    let entry = RevocationTarget::User {
        user_id: user.id.clone(),
    };
    if disabled {
        ctx.store
            .revoke(&[ctx.revoke_at().entry(entry.clone())])
            .await?;
    }
    user.disabled = disabled;
    user.updated_at = ctx.clock.now();
    ctx.store.update_user(&user).await?;
    if disabled {
        ctx.unlink_upstreams(&user.id).await?;
    }
    if !disabled {
        ctx.store.lift_revocation(&entry).await?;
    }
    Ok(true)
}

/// Removes a client with its consents, codes and refresh tokens; its access
/// tokens stop working (a client entry in the revocation set, same
/// transaction).
pub async fn remove_client(ctx: &Ctx<'_>, client_id: &str) -> Result<(), AdminError> {
    // Its users' connected upstream accounts were reachable through it.
    let users: Vec<String> = ctx
        .store
        .list_consents(None)
        .await?
        .into_iter()
        .filter(|c| c.client_id == client_id)
        .map(|c| c.user_id)
        .collect();
    match ctx.store.delete_client(client_id, ctx.revoke_at()).await {
        Ok(()) => {}
        Err(StoreError::NotFound) => {
            return Err(AdminError::NotFound(format!("client {client_id:?}")));
        }
        Err(e) => return Err(e.into()),
    }
    for u in users {
        ctx.unlink_upstreams(&u).await?;
    }
    Ok(())
}

/// Revokes `username`'s consent to `client_id`: the consent, that pair's
/// refresh tokens and every access token the pair holds (a consent entry in
/// the revocation set, same transaction).
pub async fn revoke_consent(
    ctx: &Ctx<'_>,
    username: &str,
    client_id: &str,
) -> Result<(), AdminError> {
    let user = user_named(ctx, username).await?;
    match ctx
        .store
        .revoke_consent(&user.id, client_id, ctx.revoke_at())
        .await
    {
        Ok(()) => ctx.unlink_upstreams(&user.id).await,
        Err(StoreError::NotFound) => Err(AdminError::NotFound(format!(
            "{username}'s consent to {client_id:?}"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// What an operator asks for when pre-registering a client.
#[derive(Debug, Clone)]
pub struct ClientSpec {
    /// Chosen id, or `None` to generate one.
    pub client_id: Option<String>,
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub auth_method: TokenEndpointAuthMethod,
    pub grant_types: Vec<String>,
    /// Scopes the client may request (empty = any configured scope).
    pub scopes: Vec<String>,
    /// A secret to use instead of a generated one (from config).
    pub secret: Option<String>,
    /// `private_key_jwt`: the client's public JWK set, or (exclusive) the
    /// URL it is fetched from.
    pub jwks: Option<serde_json::Value>,
    pub jwks_uri: Option<String>,
}

/// Registers a client. Returns the record and, for confidential clients
/// with a generated secret, the secret (shown once, stored only as a hash).
pub async fn create_client(
    ctx: &Ctx<'_>,
    spec: &ClientSpec,
    replace: bool,
) -> Result<(ClientRecord, Option<String>), AdminError> {
    let client_id = match &spec.client_id {
        Some(id) => {
            if id.is_empty()
                || id.len() > 128
                || !id.chars().all(|c| c.is_ascii_graphic())
                || id.contains(':')
            {
                return Err(AdminError::Invalid(
                    "client ids are 1-128 visible ASCII characters without ':'".into(),
                ));
            }
            id.clone()
        }
        None => format!("mcp_{}", random_token(ctx.rng, 18)),
    };
    for g in &spec.grant_types {
        if !matches!(
            g.as_str(),
            "authorization_code"
                | "refresh_token"
                | "client_credentials"
                | mcpgate_types::client_metadata::JWT_BEARER_GRANT
        ) {
            return Err(AdminError::Invalid(format!("unknown grant type {g:?}")));
        }
    }
    let uses_code = spec.grant_types.iter().any(|g| g == "authorization_code");
    if uses_code && spec.redirect_uris.is_empty() {
        return Err(AdminError::Invalid(
            "a client using authorization_code needs at least one redirect URI".into(),
        ));
    }
    for r in &spec.redirect_uris {
        validate_for_registration(r)
            .map_err(|e| AdminError::Invalid(format!("redirect URI {r:?}: {e}")))?;
    }
    if spec.grant_types.iter().any(|g| g == "client_credentials")
        && !spec.auth_method.is_confidential()
    {
        return Err(AdminError::Invalid(
            "client_credentials requires a confidential client".into(),
        ));
    }
    if let Some(s) = spec.scopes.iter().find(|s| !is_scope_token(s)) {
        return Err(AdminError::Invalid(format!(
            "scope {s:?} is not a valid scope token"
        )));
    }
    // An operator may name a loopback `http` jwks_uri (a local client); the
    // AS fetches it only where its fetcher has the development override.
    let (jwks, jwks_uri) = registered_keys(
        spec.auth_method,
        spec.jwks.as_ref(),
        spec.jwks_uri.as_deref(),
        &mcpgate_net::FetchPolicy::loopback_dev(),
    )
    .map_err(AdminError::Invalid)?;
    if spec.auth_method != TokenEndpointAuthMethod::PrivateKeyJwt
        && (spec.jwks.is_some() || spec.jwks_uri.is_some())
    {
        return Err(AdminError::Invalid(
            "keys (jwks, jwks_uri) are only for auth method private_key_jwt".into(),
        ));
    }
    let secret = match (spec.auth_method.uses_secret(), &spec.secret) {
        (true, Some(s)) if s.len() >= 16 => Some(s.clone()),
        (true, Some(_)) => {
            return Err(AdminError::Invalid(
                "client secrets must be at least 16 characters".into(),
            ));
        }
        (true, None) => Some(random_token(ctx.rng, 32)),
        (false, Some(_)) => {
            return Err(AdminError::Invalid(format!(
                "a client with auth method {} has no secret",
                spec.auth_method.as_str()
            )));
        }
        (false, None) => None,
    };
    let rec = ClientRecord {
        client_id: client_id.clone(),
        kind: ClientKind::PreRegistered,
        client_name: Some(spec.name.clone()),
        client_secret_hash: secret.as_deref().map(hash_secret),
        token_endpoint_auth_method: spec.auth_method.as_str().into(),
        redirect_uris: spec.redirect_uris.clone(),
        grant_types: spec.grant_types.clone(),
        allowed_scopes: spec.scopes.clone(),
        application_type: None,
        client_uri: None,
        logo_uri: None,
        created_at: ctx.clock.now(),
        expires_at: None,
        jwks,
        jwks_uri,
    };
    let r = if replace {
        ctx.store.upsert_client(&rec).await
    } else {
        ctx.store.create_client(&rec).await
    };
    match r {
        Ok(()) => Ok((rec, if spec.secret.is_some() { None } else { secret })),
        Err(StoreError::Conflict(_)) => Err(AdminError::Exists(format!("client {client_id:?}"))),
        Err(e) => Err(e.into()),
    }
}

/// Rotates the signing key; returns the new key id.
pub async fn rotate_keys(
    ctx: &Ctx<'_>,
    master: &MasterKey,
    alg: KeyAlg,
    grace_secs: i64,
) -> Result<String, AdminError> {
    keyring::rotate(
        &KeyDeps {
            store: ctx.store,
            master,
            rng: ctx.rng,
            clock: ctx.clock,
        },
        alg,
        grace_secs,
    )
    .await
    .map_err(|e| AdminError::Internal(e.to_string()))
}
