//! Shared SQL for signing keys (JWKS rotation: active → previous → retired),
//! AS browser login sessions and the one-time forms they submitted. Expanded
//! per backend by
//! [`impl_key_stores!`].
//!
//! The schema allows at most one `active` key (a partial unique index), so
//! two racing rotations cannot both install a signer: the loser gets
//! `Conflict` and its transaction rolls back.

/// Expands `SigningKeyStore` and `LoginSessionStore` for `$store` over sqlx
/// database `$db`.
macro_rules! impl_key_stores {
    ($store:ty, $db:ty) => {
        impl $store {
            async fn insert_key_in<'c, E: ::sqlx::Executor<'c, Database = $db>>(
                ex: E,
                key: &$crate::SigningKeyRecord,
                state: $crate::KeyState,
            ) -> $crate::StoreResult<()> {
                ::sqlx::query::<$db>(concat!(
                    "INSERT INTO signing_keys (",
                    $crate::sql::rows::key_cols!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
                ))
                .bind(key.kid.as_str())
                .bind(key.alg.as_str())
                .bind(key.sealed_pkcs8.as_slice())
                .bind(state.as_str())
                .bind(key.created_at)
                .bind(key.rotated_at)
                .bind(key.retired_at)
                .execute(ex)
                .await
                .map_err($crate::sql::db_err)?;
                Ok(())
            }

            async fn retire_keys_in<'c, E: ::sqlx::Executor<'c, Database = $db>>(
                ex: E,
                retire_before: i64,
                now: i64,
            ) -> $crate::StoreResult<u64> {
                let done = ::sqlx::query::<$db>(
                    "UPDATE signing_keys SET state = $1, retired_at = $2 \
                     WHERE state = $3 AND rotated_at < $4",
                )
                .bind($crate::KeyState::Retired.as_str())
                .bind(now)
                .bind($crate::KeyState::Previous.as_str())
                .bind(retire_before)
                .execute(ex)
                .await
                .map_err($crate::sql::db_err)?;
                Ok(done.rows_affected())
            }
        }

        #[::async_trait::async_trait]
        impl $crate::SigningKeyStore for $store {
            async fn insert_key(&self, key: &$crate::SigningKeyRecord) -> $crate::StoreResult<()> {
                Self::insert_key_in(&self.writer, key, key.state).await
            }

            async fn list_keys(&self) -> $crate::StoreResult<Vec<$crate::SigningKeyRecord>> {
                let rows = ::sqlx::query_as::<$db, $crate::sql::rows::KeyRow>(concat!(
                    "SELECT ",
                    $crate::sql::rows::key_cols!(),
                    " FROM signing_keys ORDER BY created_at, seq"
                ))
                .fetch_all(&self.pool)
                .await
                .map_err($crate::sql::db_err)?;
                $crate::sql::rows::all(rows)
            }

            async fn rotate_keys(
                &self,
                new: &$crate::SigningKeyRecord,
                now: i64,
                retire_before: i64,
            ) -> $crate::StoreResult<()> {
                let mut tx = self.write_tx().await?;
                ::sqlx::query::<$db>(
                    "UPDATE signing_keys SET state = $1, rotated_at = $2 WHERE state = $3",
                )
                .bind($crate::KeyState::Previous.as_str())
                .bind(now)
                .bind($crate::KeyState::Active.as_str())
                .execute(&mut *tx)
                .await
                .map_err($crate::sql::db_err)?;
                Self::insert_key_in(&mut *tx, new, $crate::KeyState::Active).await?;
                Self::retire_keys_in(&mut *tx, retire_before, now).await?;
                // The change feed: every replica reloads its keys at once.
                Self::bump_revision_in(&mut tx).await?;
                tx.commit().await.map_err($crate::sql::db_err)
            }

            async fn retire_keys(&self, retire_before: i64, now: i64) -> $crate::StoreResult<u64> {
                Self::retire_keys_in(&self.writer, retire_before, now).await
            }
        }

        #[::async_trait::async_trait]
        impl $crate::LoginSessionStore for $store {
            async fn insert_session(
                &self,
                session: &$crate::LoginSessionRecord,
            ) -> $crate::StoreResult<()> {
                ::sqlx::query::<$db>(concat!(
                    "INSERT INTO login_sessions (",
                    $crate::sql::rows::session_cols!(),
                    ") VALUES ($1, $2, $3, $4, $5)"
                ))
                .bind(session.session_hash.as_str())
                .bind(session.user_id.as_str())
                .bind(session.auth_time)
                .bind(session.created_at)
                .bind(session.expires_at)
                .execute(&self.writer)
                .await
                .map_err($crate::sql::db_err)?;
                Ok(())
            }

            async fn get_session(
                &self,
                session_hash: &str,
            ) -> $crate::StoreResult<$crate::LoginSessionRecord> {
                let row = ::sqlx::query_as::<$db, $crate::sql::rows::SessionRow>(concat!(
                    "SELECT ",
                    $crate::sql::rows::session_cols!(),
                    " FROM login_sessions WHERE session_hash = $1"
                ))
                .bind(session_hash)
                .fetch_one(&self.pool)
                .await
                .map_err($crate::sql::db_err)?;
                Ok(row.into())
            }

            async fn delete_session(&self, session_hash: &str) -> $crate::StoreResult<()> {
                let done =
                    ::sqlx::query::<$db>("DELETE FROM login_sessions WHERE session_hash = $1")
                        .bind(session_hash)
                        .execute(&self.writer)
                        .await
                        .map_err($crate::sql::db_err)?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                Ok(())
            }

            async fn purge_sessions(&self, before: i64) -> $crate::StoreResult<u64> {
                let done = ::sqlx::query::<$db>("DELETE FROM login_sessions WHERE expires_at < $1")
                    .bind(before)
                    .execute(&self.writer)
                    .await
                    .map_err($crate::sql::db_err)?;
                Ok(done.rows_affected())
            }

            async fn list_sessions(
                &self,
                user_id: Option<&str>,
                now: i64,
            ) -> $crate::StoreResult<Vec<$crate::LoginSessionRecord>> {
                let rows = ::sqlx::query_as::<$db, $crate::sql::rows::SessionRow>(concat!(
                    "SELECT ",
                    $crate::sql::rows::session_cols!(),
                    " FROM login_sessions WHERE expires_at > $1 AND ($2 IS NULL OR user_id = $2)",
                    " ORDER BY created_at DESC, session_hash"
                ))
                .bind(now)
                .bind(user_id)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::sql::db_err)?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn delete_sessions_of(&self, user_id: &str) -> $crate::StoreResult<u64> {
                let done = ::sqlx::query::<$db>("DELETE FROM login_sessions WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&self.writer)
                    .await
                    .map_err($crate::sql::db_err)?;
                Ok(done.rows_affected())
            }

            async fn spend_form(
                &self,
                form_hash: &str,
                expires_at: i64,
            ) -> $crate::StoreResult<()> {
                ::sqlx::query::<$db>(
                    "INSERT INTO spent_forms (form_hash, expires_at) VALUES ($1, $2)",
                )
                .bind(form_hash)
                .bind(expires_at)
                .execute(&self.writer)
                .await
                .map_err($crate::sql::db_err)?;
                Ok(())
            }

            async fn purge_spent_forms(&self, before: i64) -> $crate::StoreResult<u64> {
                let done = ::sqlx::query::<$db>("DELETE FROM spent_forms WHERE expires_at < $1")
                    .bind(before)
                    .execute(&self.writer)
                    .await
                    .map_err($crate::sql::db_err)?;
                Ok(done.rows_affected())
            }
        }
    };
}
pub(crate) use impl_key_stores;
