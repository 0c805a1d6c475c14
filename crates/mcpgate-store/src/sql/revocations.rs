//! Shared SQL for the revocation set (see [`crate::revocation`]): one
//! table of entries keyed by (kind, subject, client_id), and one row
//! holding the revision. Every change bumps the revision in its own
//! transaction, with `UPDATE … RETURNING`, so concurrent writers get
//! distinct revisions and a reader that sees revision N sees every entry
//! written up to N. The backend adds its notification (PostgreSQL `NOTIFY`)
//! through `notify_revocations_in`. Expanded per backend by
//! [`impl_revocation_store!`].

/// Expands `RevocationStore` for `$store` over sqlx database `$db`, and the
/// `revoke_in` helper the other stores call inside their transactions.
macro_rules! impl_revocation_store {
    ($store:ty, $db:ty) => {
        impl $store {
            /// Bumps the revision and returns the new one.
            async fn bump_revision_in(
                tx: &mut ::sqlx::Transaction<'static, $db>,
            ) -> $crate::StoreResult<i64> {
                let (revision,): (i64,) = ::sqlx::query_as::<$db, (i64,)>(
                    "UPDATE revocation_state SET revision = revision + 1 WHERE id = 1 \
                     RETURNING revision",
                )
                .fetch_one(&mut **tx)
                .await
                .map_err($crate::sql::db_err)?;
                Self::notify_revocations_in(tx, revision).await?;
                Ok(revision)
            }

            /// Writes `entries` in `tx` and bumps the revision; returns it.
            pub(crate) async fn revoke_in(
                tx: &mut ::sqlx::Transaction<'static, $db>,
                entries: &[$crate::RevocationRecord],
            ) -> $crate::StoreResult<i64> {
                let revision = Self::bump_revision_in(tx).await?;
                for e in entries {
                    let (kind, subject, client_id) = e.target.columns();
                    ::sqlx::query::<$db>(
                        "INSERT INTO revocations \
                         (kind, subject, client_id, revoked_at, expires_at, revision) \
                         VALUES ($1, $2, $3, $4, $5, $6) \
                         ON CONFLICT (kind, subject, client_id) DO UPDATE SET \
                         revoked_at = CASE WHEN excluded.revoked_at > revocations.revoked_at \
                           THEN excluded.revoked_at ELSE revocations.revoked_at END, \
                         expires_at = CASE WHEN excluded.expires_at > revocations.expires_at \
                           THEN excluded.expires_at ELSE revocations.expires_at END, \
                         revision = excluded.revision",
                    )
                    .bind(kind)
                    .bind(subject)
                    .bind(client_id)
                    .bind(e.revoked_at)
                    .bind(e.expires_at)
                    .bind(revision)
                    .execute(&mut **tx)
                    .await
                    .map_err($crate::sql::db_err)?;
                }
                Ok(revision)
            }
        }

        #[::async_trait::async_trait]
        impl $crate::RevocationStore for $store {
            async fn revoke(
                &self,
                entries: &[$crate::RevocationRecord],
            ) -> $crate::StoreResult<i64> {
                let mut tx = self.write_tx().await?;
                let revision = Self::revoke_in(&mut tx, entries).await?;
                tx.commit().await.map_err($crate::sql::db_err)?;
                Ok(revision)
            }

            async fn lift_revocation(
                &self,
                target: &$crate::RevocationTarget,
            ) -> $crate::StoreResult<bool> {
                let (kind, subject, client_id) = target.columns();
                let mut tx = self.write_tx().await?;
                let done = ::sqlx::query::<$db>(
                    "DELETE FROM revocations WHERE kind = $1 AND subject = $2 AND client_id = $3",
                )
                .bind(kind)
                .bind(subject)
                .bind(client_id)
                .execute(&mut *tx)
                .await
                .map_err($crate::sql::db_err)?;
                if done.rows_affected() == 0 {
                    tx.rollback().await.map_err($crate::sql::db_err)?;
                    return Ok(false);
                }
                Self::bump_revision_in(&mut tx).await?;
                tx.commit().await.map_err($crate::sql::db_err)?;
                Ok(true)
            }

            async fn revocation_revision(&self) -> $crate::StoreResult<i64> {
                let (revision,): (i64,) = ::sqlx::query_as::<$db, (i64,)>(
                    "SELECT revision FROM revocation_state WHERE id = 1",
                )
                .fetch_one(&self.pool)
                .await
                .map_err($crate::sql::db_err)?;
                Ok(revision)
            }

            async fn list_revocations(
                &self,
            ) -> $crate::StoreResult<(i64, Vec<$crate::RevocationRecord>)> {
                // One read transaction: the revision and the rows agree.
                let mut tx = ::sqlx::Acquire::begin(&self.pool)
                    .await
                    .map_err($crate::sql::db_err)?;
                let (revision,): (i64,) = ::sqlx::query_as::<$db, (i64,)>(
                    "SELECT revision FROM revocation_state WHERE id = 1",
                )
                .fetch_one(&mut *tx)
                .await
                .map_err($crate::sql::db_err)?;
                let rows = ::sqlx::query_as::<$db, $crate::sql::rows::RevocationRow>(
                    "SELECT kind, subject, client_id, revoked_at, expires_at FROM revocations",
                )
                .fetch_all(&mut *tx)
                .await
                .map_err($crate::sql::db_err)?;
                tx.commit().await.map_err($crate::sql::db_err)?;
                Ok((revision, $crate::sql::rows::all(rows)?))
            }

            async fn revocations_for(
                &self,
                token: &$crate::RevocableToken<'_>,
                now: i64,
            ) -> $crate::StoreResult<Vec<$crate::RevocationRecord>> {
                let rows = ::sqlx::query_as::<$db, $crate::sql::rows::RevocationRow>(
                    "SELECT kind, subject, client_id, revoked_at, expires_at FROM revocations \
                     WHERE expires_at > $1 AND ( \
                       (kind = 'grant' AND subject = $2) \
                       OR (kind = 'token' AND subject = $3) \
                       OR (kind = 'user' AND subject = $4) \
                       OR (kind = 'client' AND client_id = $5) \
                       OR (kind = 'consent' AND subject = $4 AND client_id = $5))",
                )
                .bind(now)
                .bind(token.grant)
                .bind(token.jti)
                .bind(token.subject)
                .bind(token.client_id)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::sql::db_err)?;
                $crate::sql::rows::all(rows)
            }

            async fn purge_revocations(&self, before: i64) -> $crate::StoreResult<u64> {
                let done = ::sqlx::query::<$db>("DELETE FROM revocations WHERE expires_at < $1")
                    .bind(before)
                    .execute(&self.writer)
                    .await
                    .map_err($crate::sql::db_err)?;
                Ok(done.rows_affected())
            }

            async fn listen_revocations(
                &self,
            ) -> $crate::StoreResult<Option<$crate::RevocationListener>> {
                self.listen_revocations_on().await
            }
        }
    };
}
pub(crate) use impl_revocation_store;
