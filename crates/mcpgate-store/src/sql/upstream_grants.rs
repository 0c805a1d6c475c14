//! Shared SQL for the vault of per-user upstream credentials. Expanded per
//! backend by [`impl_upstream_grant_store!`]. A reconnect is an
//! `INSERT … ON CONFLICT DO UPDATE` (never `INSERT OR REPLACE`). A refresh
//! is serialised across replicas by a lease: taken with one conditional
//! `UPDATE … RETURNING` that matches only a row whose lease has ended, and
//! ended with one conditional `UPDATE` that matches only the same lease, so
//! a row deleted or taken over meanwhile is never written.

macro_rules! upstream_grant_cols {
    () => {
        "user_id, upstream, sealed_tokens, scope, expires_at, created_at, updated_at, \
         refresh_lease_until"
    };
}
pub(crate) use upstream_grant_cols;

/// Expands `UpstreamGrantStore` for `$store` over sqlx database `$db`.
macro_rules! impl_upstream_grant_store {
    ($store:ty, $db:ty) => {
        #[::async_trait::async_trait]
        impl $crate::UpstreamGrantStore for $store {
            async fn put_upstream_grant(
                &self,
                g: &$crate::UpstreamGrantRecord,
            ) -> $crate::StoreResult<()> {
                // An unknown user fails the foreign key: `NotFound`.
                ::sqlx::query::<$db>(concat!(
                    "INSERT INTO upstream_grants (",
                    $crate::sql::upstream_grants::upstream_grant_cols!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT (user_id, upstream) DO UPDATE SET \
                     sealed_tokens = excluded.sealed_tokens, scope = excluded.scope, \
                     expires_at = excluded.expires_at, created_at = excluded.created_at, \
                     updated_at = excluded.updated_at, \
                     refresh_lease_until = excluded.refresh_lease_until"
                ))
                .bind(g.user_id.as_str())
                .bind(g.upstream.as_str())
                .bind(g.sealed_tokens.as_slice())
                .bind(g.scope.as_str())
                .bind(g.expires_at)
                .bind(g.created_at)
                .bind(g.updated_at)
                .bind(g.refresh_lease_until)
                .execute(&self.writer)
                .await
                .map_err($crate::sql::db_err)?;
                Ok(())
            }

            async fn get_upstream_grant(
                &self,
                user_id: &str,
                upstream: &str,
            ) -> $crate::StoreResult<$crate::UpstreamGrantRecord> {
                ::sqlx::query_as::<$db, $crate::UpstreamGrantRecord>(concat!(
                    "SELECT ",
                    $crate::sql::upstream_grants::upstream_grant_cols!(),
                    " FROM upstream_grants WHERE user_id = $1 AND upstream = $2"
                ))
                .bind(user_id)
                .bind(upstream)
                .fetch_one(&self.pool)
                .await
                .map_err($crate::sql::db_err)
            }

            async fn list_upstream_grants(
                &self,
                user_id: &str,
            ) -> $crate::StoreResult<Vec<$crate::UpstreamGrantRecord>> {
                ::sqlx::query_as::<$db, $crate::UpstreamGrantRecord>(concat!(
                    "SELECT ",
                    $crate::sql::upstream_grants::upstream_grant_cols!(),
                    " FROM upstream_grants WHERE user_id = $1 ORDER BY upstream"
                ))
                .bind(user_id)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::sql::db_err)
            }

            async fn delete_upstream_grant(
                &self,
                user_id: &str,
                upstream: &str,
            ) -> $crate::StoreResult<$crate::UpstreamGrantRecord> {
                ::sqlx::query_as::<$db, $crate::UpstreamGrantRecord>(concat!(
                    "DELETE FROM upstream_grants WHERE user_id = $1 AND upstream = $2 \
                     RETURNING ",
                    $crate::sql::upstream_grants::upstream_grant_cols!()
                ))
                .bind(user_id)
                .bind(upstream)
                .fetch_one(&self.writer)
                .await
                .map_err($crate::sql::db_err)
            }

            async fn delete_user_upstream_grants(
                &self,
                user_id: &str,
            ) -> $crate::StoreResult<Vec<$crate::UpstreamGrantRecord>> {
                let mut gone = ::sqlx::query_as::<$db, $crate::UpstreamGrantRecord>(concat!(
                    "DELETE FROM upstream_grants WHERE user_id = $1 RETURNING ",
                    $crate::sql::upstream_grants::upstream_grant_cols!()
                ))
                .bind(user_id)
                .fetch_all(&self.writer)
                .await
                .map_err($crate::sql::db_err)?;
                // RETURNING has no order; bytewise, as `ORDER BY` sorts.
                gone.sort_by(|a, b| a.upstream.cmp(&b.upstream));
                Ok(gone)
            }

            async fn lease_upstream_grant(
                &self,
                user_id: &str,
                upstream: &str,
                now: i64,
                until: i64,
            ) -> $crate::StoreResult<$crate::UpstreamGrantRecord> {
                ::sqlx::query_as::<$db, $crate::UpstreamGrantRecord>(concat!(
                    "UPDATE upstream_grants SET refresh_lease_until = $1 \
                     WHERE user_id = $2 AND upstream = $3 AND refresh_lease_until <= $4 \
                     RETURNING ",
                    $crate::sql::upstream_grants::upstream_grant_cols!()
                ))
                .bind(until)
                .bind(user_id)
                .bind(upstream)
                .bind(now)
                .fetch_one(&self.writer)
                .await
                .map_err($crate::sql::db_err)
            }

            async fn finish_upstream_refresh(
                &self,
                g: &$crate::UpstreamGrantRecord,
                lease: i64,
            ) -> $crate::StoreResult<()> {
                // 0 is "no lease": nobody may write tokens without holding one.
                if lease == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                let done = ::sqlx::query::<$db>(
                    "UPDATE upstream_grants SET sealed_tokens = $1, scope = $2, \
                     expires_at = $3, updated_at = $4, refresh_lease_until = 0 \
                     WHERE user_id = $5 AND upstream = $6 AND refresh_lease_until = $7",
                )
                .bind(g.sealed_tokens.as_slice())
                .bind(g.scope.as_str())
                .bind(g.expires_at)
                .bind(g.updated_at)
                .bind(g.user_id.as_str())
                .bind(g.upstream.as_str())
                .bind(lease)
                .execute(&self.writer)
                .await
                .map_err($crate::sql::db_err)?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                Ok(())
            }
        }
    };
}
pub(crate) use impl_upstream_grant_store;
