//! Rows as the database returns them, and their conversion to records.
//!
//! Each `*Row` derives `sqlx::FromRow` (generic over the backend) with the
//! column types both backends decode alike: `String`, `i64`, `bool`,
//! `Vec<u8>` and their `Option`s. Lists arrive as JSON text and enums as
//! their `as_str` names; a value that does not parse is a corrupt row and
//! becomes `StoreError::Backend`. The `*_cols!` macros give each table's
//! column list as a literal, for `concat!` into `SELECT`/`RETURNING`.

use crate::records::*;
use crate::traits::StoreError;

fn list(text: &str, column: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Backend(format!("corrupt list in column {column}: {e}")))
}

macro_rules! user_cols {
    () => {
        "id, username, display_name, password_hash, group_names, must_change_password, \
         disabled, created_at, updated_at"
    };
}
pub(crate) use user_cols;

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    id: String,
    username: String,
    display_name: Option<String>,
    password_hash: Option<String>,
    group_names: String,
    must_change_password: bool,
    disabled: bool,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<UserRow> for UserRecord {
    type Error = StoreError;
    fn try_from(r: UserRow) -> Result<Self, StoreError> {
        Ok(Self {
            groups: list(&r.group_names, "users.group_names")?,
            id: r.id,
            username: r.username,
            display_name: r.display_name,
            password_hash: r.password_hash,
            must_change_password: r.must_change_password,
            disabled: r.disabled,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// A user's columns joined to another table's row (alias `u`), each with a
/// `u_` prefix so none collides with that row's own.
macro_rules! joined_user_cols {
    () => {
        "u.id AS u_id, u.username AS u_username, u.display_name AS u_display_name, \
         u.password_hash AS u_password_hash, u.group_names AS u_group_names, \
         u.must_change_password AS u_must_change_password, u.disabled AS u_disabled, \
         u.created_at AS u_created_at, u.updated_at AS u_updated_at"
    };
}
pub(crate) use joined_user_cols;

/// [`UserRow`] as [`joined_user_cols!`] names its columns.
#[derive(sqlx::FromRow)]
pub(crate) struct JoinedUserRow {
    #[sqlx(rename = "u_id")]
    id: String,
    #[sqlx(rename = "u_username")]
    username: String,
    #[sqlx(rename = "u_display_name")]
    display_name: Option<String>,
    #[sqlx(rename = "u_password_hash")]
    password_hash: Option<String>,
    #[sqlx(rename = "u_group_names")]
    group_names: String,
    #[sqlx(rename = "u_must_change_password")]
    must_change_password: bool,
    #[sqlx(rename = "u_disabled")]
    disabled: bool,
    #[sqlx(rename = "u_created_at")]
    created_at: i64,
    #[sqlx(rename = "u_updated_at")]
    updated_at: i64,
}

impl TryFrom<JoinedUserRow> for UserRecord {
    type Error = StoreError;
    fn try_from(r: JoinedUserRow) -> Result<Self, StoreError> {
        UserRow {
            id: r.id,
            username: r.username,
            display_name: r.display_name,
            password_hash: r.password_hash,
            group_names: r.group_names,
            must_change_password: r.must_change_password,
            disabled: r.disabled,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
        .try_into()
    }
}

macro_rules! client_cols {
    () => {
        "client_id, kind, client_name, client_secret_hash, token_endpoint_auth_method, \
         redirect_uris, grant_types, allowed_scopes, application_type, client_uri, logo_uri, \
         created_at, expires_at, jwks, jwks_uri"
    };
}
pub(crate) use client_cols;

/// Binds a client's columns to a query, in [`client_cols`] order ($1..$15).
macro_rules! bind_client {
    ($q:expr, $c:expr) => {
        $q.bind($c.client_id.as_str())
            .bind($c.kind.as_str())
            .bind($c.client_name.as_deref())
            .bind($c.client_secret_hash.as_deref())
            .bind($c.token_endpoint_auth_method.as_str())
            .bind($crate::sql::to_json(&$c.redirect_uris)?)
            .bind($crate::sql::to_json(&$c.grant_types)?)
            .bind($crate::sql::to_json(&$c.allowed_scopes)?)
            .bind($c.application_type.as_deref())
            .bind($c.client_uri.as_deref())
            .bind($c.logo_uri.as_deref())
            .bind($c.created_at)
            .bind($c.expires_at)
            .bind($c.jwks.as_deref())
            .bind($c.jwks_uri.as_deref())
    };
}
pub(crate) use bind_client;

#[derive(sqlx::FromRow)]
pub(crate) struct ClientRow {
    client_id: String,
    kind: String,
    client_name: Option<String>,
    client_secret_hash: Option<String>,
    token_endpoint_auth_method: String,
    redirect_uris: String,
    grant_types: String,
    allowed_scopes: String,
    application_type: Option<String>,
    client_uri: Option<String>,
    logo_uri: Option<String>,
    created_at: i64,
    expires_at: Option<i64>,
    jwks: Option<String>,
    jwks_uri: Option<String>,
}

impl TryFrom<ClientRow> for ClientRecord {
    type Error = StoreError;
    fn try_from(r: ClientRow) -> Result<Self, StoreError> {
        Ok(Self {
            kind: ClientKind::parse(&r.kind)
                .ok_or_else(|| StoreError::Backend(format!("corrupt client kind {:?}", r.kind)))?,
            redirect_uris: list(&r.redirect_uris, "clients.redirect_uris")?,
            grant_types: list(&r.grant_types, "clients.grant_types")?,
            allowed_scopes: list(&r.allowed_scopes, "clients.allowed_scopes")?,
            client_id: r.client_id,
            client_name: r.client_name,
            client_secret_hash: r.client_secret_hash,
            token_endpoint_auth_method: r.token_endpoint_auth_method,
            application_type: r.application_type,
            client_uri: r.client_uri,
            logo_uri: r.logo_uri,
            created_at: r.created_at,
            expires_at: r.expires_at,
            jwks: r.jwks,
            jwks_uri: r.jwks_uri,
        })
    }
}

macro_rules! consent_cols {
    () => {
        "user_id, client_id, scopes, resources, granted_at, updated_at"
    };
}
pub(crate) use consent_cols;

#[derive(sqlx::FromRow)]
pub(crate) struct ConsentRow {
    user_id: String,
    client_id: String,
    scopes: String,
    resources: String,
    granted_at: i64,
    updated_at: i64,
}

impl TryFrom<ConsentRow> for ConsentRecord {
    type Error = StoreError;
    fn try_from(r: ConsentRow) -> Result<Self, StoreError> {
        Ok(Self {
            scopes: list(&r.scopes, "consents.scopes")?,
            resources: list(&r.resources, "consents.resources")?,
            user_id: r.user_id,
            client_id: r.client_id,
            granted_at: r.granted_at,
            updated_at: r.updated_at,
        })
    }
}

macro_rules! code_cols {
    () => {
        "code_hash, client_id, user_id, redirect_uri, scopes, resource, code_challenge, \
         auth_time, created_at, expires_at, used_at"
    };
}
pub(crate) use code_cols;

#[derive(sqlx::FromRow)]
pub(crate) struct CodeRow {
    code_hash: String,
    client_id: String,
    user_id: String,
    redirect_uri: String,
    scopes: String,
    resource: String,
    code_challenge: String,
    auth_time: i64,
    created_at: i64,
    expires_at: i64,
    used_at: Option<i64>,
}

impl TryFrom<CodeRow> for AuthCodeRecord {
    type Error = StoreError;
    fn try_from(r: CodeRow) -> Result<Self, StoreError> {
        Ok(Self {
            scopes: list(&r.scopes, "auth_codes.scopes")?,
            code_hash: r.code_hash,
            client_id: r.client_id,
            user_id: r.user_id,
            redirect_uri: r.redirect_uri,
            resource: r.resource,
            code_challenge: r.code_challenge,
            auth_time: r.auth_time,
            created_at: r.created_at,
            expires_at: r.expires_at,
            used_at: r.used_at,
        })
    }
}

/// A code and its user in one row: the code's columns as [`code_cols!`]
/// names them (table alias `c`), then [`joined_user_cols!`].
macro_rules! code_user_cols {
    () => {
        "c.code_hash, c.client_id, c.user_id, c.redirect_uri, c.scopes, c.resource, \
         c.code_challenge, c.auth_time, c.created_at, c.expires_at, c.used_at, "
    };
}
pub(crate) use code_user_cols;

#[derive(sqlx::FromRow)]
pub(crate) struct CodeUserRow {
    #[sqlx(flatten)]
    code: CodeRow,
    #[sqlx(flatten)]
    user: JoinedUserRow,
}

impl TryFrom<CodeUserRow> for (AuthCodeRecord, UserRecord) {
    type Error = StoreError;
    fn try_from(r: CodeUserRow) -> Result<Self, StoreError> {
        Ok((r.code.try_into()?, r.user.try_into()?))
    }
}

macro_rules! family_cols {
    () => {
        "family_id, client_id, user_id, resource, scopes, auth_time, code_hash, created_at, \
         expires_at, revoked_at, dpop_jkt"
    };
}
pub(crate) use family_cols;

#[derive(sqlx::FromRow)]
pub(crate) struct FamilyRow {
    family_id: String,
    client_id: String,
    user_id: String,
    resource: String,
    scopes: String,
    auth_time: i64,
    code_hash: Option<String>,
    created_at: i64,
    expires_at: i64,
    revoked_at: Option<i64>,
    dpop_jkt: Option<String>,
}

impl TryFrom<FamilyRow> for RefreshFamilyRecord {
    type Error = StoreError;
    fn try_from(r: FamilyRow) -> Result<Self, StoreError> {
        Ok(Self {
            scopes: list(&r.scopes, "refresh_families.scopes")?,
            family_id: r.family_id,
            client_id: r.client_id,
            user_id: r.user_id,
            resource: r.resource,
            auth_time: r.auth_time,
            code_hash: r.code_hash,
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            dpop_jkt: r.dpop_jkt,
        })
    }
}

macro_rules! token_cols {
    () => {
        "token_hash, family_id, scopes, created_at, expires_at, rotated_at"
    };
}
pub(crate) use token_cols;

#[derive(sqlx::FromRow)]
pub(crate) struct TokenRow {
    token_hash: String,
    family_id: String,
    scopes: String,
    created_at: i64,
    expires_at: i64,
    rotated_at: Option<i64>,
}

impl TryFrom<TokenRow> for RefreshTokenRecord {
    type Error = StoreError;
    fn try_from(r: TokenRow) -> Result<Self, StoreError> {
        Ok(Self {
            scopes: list(&r.scopes, "refresh_tokens.scopes")?,
            token_hash: r.token_hash,
            family_id: r.family_id,
            created_at: r.created_at,
            expires_at: r.expires_at,
            rotated_at: r.rotated_at,
        })
    }
}

/// A refresh token and its family in one row: the token's columns as
/// [`token_cols!`] names them (table alias `t`), the family's with an `f_`
/// prefix (alias `f`).
macro_rules! token_family_cols {
    () => {
        "t.token_hash, t.family_id, t.scopes, t.created_at, t.expires_at, t.rotated_at, \
         f.client_id AS f_client_id, f.user_id AS f_user_id, f.resource AS f_resource, \
         f.scopes AS f_scopes, f.auth_time AS f_auth_time, f.code_hash AS f_code_hash, \
         f.created_at AS f_created_at, f.expires_at AS f_expires_at, f.revoked_at AS f_revoked_at, \
         f.dpop_jkt AS f_dpop_jkt"
    };
}
pub(crate) use token_family_cols;

#[derive(sqlx::FromRow)]
pub(crate) struct TokenFamilyRow {
    #[sqlx(flatten)]
    token: TokenRow,
    f_client_id: String,
    f_user_id: String,
    f_resource: String,
    f_scopes: String,
    f_auth_time: i64,
    f_code_hash: Option<String>,
    f_created_at: i64,
    f_expires_at: i64,
    f_revoked_at: Option<i64>,
    f_dpop_jkt: Option<String>,
}

impl TryFrom<TokenFamilyRow> for (RefreshTokenRecord, RefreshFamilyRecord) {
    type Error = StoreError;
    fn try_from(r: TokenFamilyRow) -> Result<Self, StoreError> {
        let token: RefreshTokenRecord = r.token.try_into()?;
        let family = FamilyRow {
            family_id: token.family_id.clone(),
            client_id: r.f_client_id,
            user_id: r.f_user_id,
            resource: r.f_resource,
            scopes: r.f_scopes,
            auth_time: r.f_auth_time,
            code_hash: r.f_code_hash,
            created_at: r.f_created_at,
            expires_at: r.f_expires_at,
            revoked_at: r.f_revoked_at,
            dpop_jkt: r.f_dpop_jkt,
        }
        .try_into()?;
        Ok((token, family))
    }
}

/// A refresh token, its family and the family's user in one row:
/// [`token_family_cols!`] and [`joined_user_cols!`].
#[derive(sqlx::FromRow)]
pub(crate) struct TokenFamilyUserRow {
    #[sqlx(flatten)]
    token_family: TokenFamilyRow,
    #[sqlx(flatten)]
    user: JoinedUserRow,
}

impl TryFrom<TokenFamilyUserRow> for (RefreshTokenRecord, RefreshFamilyRecord, UserRecord) {
    type Error = StoreError;
    fn try_from(r: TokenFamilyUserRow) -> Result<Self, StoreError> {
        let (token, family) = r.token_family.try_into()?;
        Ok((token, family, r.user.try_into()?))
    }
}

macro_rules! key_cols {
    () => {
        "kid, alg, sealed_pkcs8, state, created_at, rotated_at, retired_at"
    };
}
pub(crate) use key_cols;

#[derive(sqlx::FromRow)]
pub(crate) struct KeyRow {
    kid: String,
    alg: String,
    sealed_pkcs8: Vec<u8>,
    state: String,
    created_at: i64,
    rotated_at: Option<i64>,
    retired_at: Option<i64>,
}

impl TryFrom<KeyRow> for SigningKeyRecord {
    type Error = StoreError;
    fn try_from(r: KeyRow) -> Result<Self, StoreError> {
        Ok(Self {
            state: KeyState::parse(&r.state).ok_or_else(|| {
                StoreError::Backend(format!("corrupt signing key state {:?}", r.state))
            })?,
            kid: r.kid,
            alg: r.alg,
            sealed_pkcs8: r.sealed_pkcs8,
            created_at: r.created_at,
            rotated_at: r.rotated_at,
            retired_at: r.retired_at,
        })
    }
}

macro_rules! session_cols {
    () => {
        "session_hash, user_id, auth_time, created_at, expires_at"
    };
}
pub(crate) use session_cols;

#[derive(sqlx::FromRow)]
pub(crate) struct SessionRow {
    session_hash: String,
    user_id: String,
    auth_time: i64,
    created_at: i64,
    expires_at: i64,
}

impl From<SessionRow> for LoginSessionRecord {
    fn from(r: SessionRow) -> Self {
        Self {
            session_hash: r.session_hash,
            user_id: r.user_id,
            auth_time: r.auth_time,
            created_at: r.created_at,
            expires_at: r.expires_at,
        }
    }
}

macro_rules! audit_cols {
    () => {
        "time_ms, request_id, issuer, subject, client_id, upstream, method, tool, decision, \
         reason, status, latency_ms"
    };
}
pub(crate) use audit_cols;

#[derive(sqlx::FromRow)]
pub(crate) struct AuditRow {
    time_ms: i64,
    request_id: String,
    issuer: Option<String>,
    subject: Option<String>,
    client_id: Option<String>,
    upstream: String,
    method: Option<String>,
    tool: Option<String>,
    decision: String,
    reason: String,
    status: i64,
    latency_ms: i64,
}

impl From<AuditRow> for AuditRecord {
    fn from(r: AuditRow) -> Self {
        Self {
            time_ms: r.time_ms,
            request_id: r.request_id,
            issuer: r.issuer,
            subject: r.subject,
            client_id: r.client_id,
            upstream: r.upstream,
            method: r.method,
            tool: r.tool,
            decision: r.decision,
            reason: r.reason,
            status: r.status,
            latency_ms: r.latency_ms,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct RevocationRow {
    kind: String,
    subject: String,
    client_id: String,
    revoked_at: i64,
    expires_at: i64,
}

impl TryFrom<RevocationRow> for RevocationRecord {
    type Error = StoreError;
    fn try_from(r: RevocationRow) -> Result<Self, StoreError> {
        let target = RevocationTarget::from_columns(&r.kind, r.subject, r.client_id)
            .ok_or_else(|| StoreError::Backend(format!("unknown revocation kind {:?}", r.kind)))?;
        Ok(Self {
            target,
            revoked_at: r.revoked_at,
            expires_at: r.expires_at,
        })
    }
}

/// Converts every row of a result set.
pub(crate) fn all<R, T>(rows: Vec<R>) -> Result<Vec<T>, StoreError>
where
    T: TryFrom<R, Error = StoreError>,
{
    rows.into_iter().map(T::try_from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_row(group_names: &str) -> UserRow {
        UserRow {
            id: "u1".into(),
            username: "alice".into(),
            display_name: None,
            password_hash: None,
            group_names: group_names.into(),
            must_change_password: false,
            disabled: false,
            created_at: 1,
            updated_at: 2,
        }
    }

    #[test]
    fn lists_decode_from_json() {
        let user = UserRecord::try_from(user_row(r#"["a","b c"]"#)).unwrap();
        assert_eq!(user.groups, ["a", "b c"]);
        assert_eq!(crate::sql::to_json(&user.groups).unwrap(), r#"["a","b c"]"#);
    }

    #[test]
    fn corrupt_rows_are_backend_errors() {
        for text in ["", "not json", r#"{"a":1}"#, "[1]"] {
            assert!(matches!(
                UserRecord::try_from(user_row(text)),
                Err(StoreError::Backend(_))
            ));
        }
        let key = KeyRow {
            kid: "k".into(),
            alg: "ES256".into(),
            sealed_pkcs8: vec![1],
            state: "ACTIVE".into(),
            created_at: 0,
            rotated_at: None,
            retired_at: None,
        };
        assert!(matches!(
            SigningKeyRecord::try_from(key),
            Err(StoreError::Backend(_))
        ));
    }

    #[test]
    fn missing_row_is_not_found() {
        assert!(matches!(
            crate::sql::db_err(sqlx::Error::RowNotFound),
            StoreError::NotFound
        ));
        // A database that cannot be reached now is told apart (503).
        assert!(matches!(
            crate::sql::db_err(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            crate::sql::db_err(sqlx::Error::Protocol("bad".into())),
            StoreError::Backend(_)
        ));
    }
}
