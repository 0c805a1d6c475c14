//! Shared SQL for upstream identity providers (issue 5): linked identities
//! and the server-side state of upstream sign-ins. Expanded per backend by
//! [`impl_identity_store!`]. Taking a state is one conditional
//! `DELETE … RETURNING` that matches the state hash, the binding-cookie
//! hash and the expiry together, so single use is decided by the database.

macro_rules! identity_cols {
    () => {
        "provider, subject, user_id, email, created_at"
    };
}
pub(crate) use identity_cols;

macro_rules! upstream_state_cols {
    () => {
        "state_hash, binding_hash, provider, nonce_hash, sealed_verifier, request_params, \
         created_at, expires_at"
    };
}
pub(crate) use upstream_state_cols;

/// Expands `IdentityStore` for `$store` over sqlx database `$db`.
macro_rules! impl_identity_store {
    ($store:ty, $db:ty) => {
        #[::async_trait::async_trait]
        impl $crate::IdentityStore for $store {
            async fn create_linked_user(
                &self,
                user: &$crate::UserRecord,
                identity: &$crate::LinkedIdentityRecord,
            ) -> $crate::StoreResult<()> {
                if identity.user_id != user.id {
                    return Err($crate::StoreError::Conflict(
                        "identity names another user".to_owned(),
                    ));
                }
                let mut tx = self.write_tx().await?;
                ::sqlx::query::<$db>(concat!(
                    "INSERT INTO users (",
                    $crate::sql::rows::user_cols!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                ))
                .bind(user.id.as_str())
                .bind(user.username.as_str())
                .bind(user.display_name.as_deref())
                .bind(user.password_hash.as_deref())
                .bind($crate::sql::to_json(&user.groups)?)
                .bind(user.must_change_password)
                .bind(user.disabled)
                .bind(user.created_at)
                .bind(user.updated_at)
                .execute(&mut *tx)
                .await
                .map_err($crate::sql::db_err)?;
                ::sqlx::query::<$db>(concat!(
                    "INSERT INTO linked_identities (",
                    $crate::sql::identity::identity_cols!(),
                    ") VALUES ($1, $2, $3, $4, $5)"
                ))
                .bind(identity.provider.as_str())
                .bind(identity.subject.as_str())
                .bind(identity.user_id.as_str())
                .bind(identity.email.as_deref())
                .bind(identity.created_at)
                .execute(&mut *tx)
                .await
                .map_err($crate::sql::db_err)?;
                tx.commit().await.map_err($crate::sql::db_err)
            }

            async fn get_linked_identity(
                &self,
                provider: &str,
                subject: &str,
            ) -> $crate::StoreResult<$crate::LinkedIdentityRecord> {
                ::sqlx::query_as::<$db, $crate::LinkedIdentityRecord>(concat!(
                    "SELECT ",
                    $crate::sql::identity::identity_cols!(),
                    " FROM linked_identities WHERE provider = $1 AND subject = $2"
                ))
                .bind(provider)
                .bind(subject)
                .fetch_one(&self.pool)
                .await
                .map_err($crate::sql::db_err)
            }

            async fn list_linked_identities(
                &self,
                user_id: &str,
            ) -> $crate::StoreResult<Vec<$crate::LinkedIdentityRecord>> {
                ::sqlx::query_as::<$db, $crate::LinkedIdentityRecord>(concat!(
                    "SELECT ",
                    $crate::sql::identity::identity_cols!(),
                    " FROM linked_identities WHERE user_id = $1 ORDER BY provider, subject"
                ))
                .bind(user_id)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::sql::db_err)
            }

            async fn insert_upstream_state(
                &self,
                s: &$crate::UpstreamStateRecord,
            ) -> $crate::StoreResult<()> {
                ::sqlx::query::<$db>(concat!(
                    "INSERT INTO upstream_states (",
                    $crate::sql::identity::upstream_state_cols!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                ))
                .bind(s.state_hash.as_str())
                .bind(s.binding_hash.as_str())
                .bind(s.provider.as_str())
                .bind(s.nonce_hash.as_str())
                .bind(s.sealed_verifier.as_slice())
                .bind(s.request_params.as_str())
                .bind(s.created_at)
                .bind(s.expires_at)
                .execute(&self.writer)
                .await
                .map_err($crate::sql::db_err)?;
                Ok(())
            }

            async fn take_upstream_state(
                &self,
                state_hash: &str,
                binding_hash: &str,
                now: i64,
            ) -> $crate::StoreResult<$crate::UpstreamStateRecord> {
                ::sqlx::query_as::<$db, $crate::UpstreamStateRecord>(concat!(
                    "DELETE FROM upstream_states \
                     WHERE state_hash = $1 AND binding_hash = $2 AND expires_at > $3 \
                     RETURNING ",
                    $crate::sql::identity::upstream_state_cols!()
                ))
                .bind(state_hash)
                .bind(binding_hash)
                .bind(now)
                .fetch_one(&self.writer)
                .await
                .map_err($crate::sql::db_err)
            }

            async fn purge_upstream_states(&self, before: i64) -> $crate::StoreResult<u64> {
                let done =
                    ::sqlx::query::<$db>("DELETE FROM upstream_states WHERE expires_at < $1")
                        .bind(before)
                        .execute(&self.writer)
                        .await
                        .map_err($crate::sql::db_err)?;
                Ok(done.rows_affected())
            }
        }
    };
}
pub(crate) use impl_identity_store;
