//! Shared SQL for gateway sessions (issue 16): the sessions every replica
//! on one database can find. Expanded per backend by
//! [`impl_session_store!`]. Finding a session is one conditional
//! `UPDATE … RETURNING` that matches the id, the upstream, the owner and
//! the idle limit together, so a session is never even touched by a
//! stranger; the per-owner cap is applied in the inserting transaction.

macro_rules! session_cols {
    () => {
        "id_hash, upstream, issuer, subject, client_id, replica, state, created_at, last_used"
    };
}
pub(crate) use session_cols;

/// Expands `GatewaySessionStore` for `$store` over sqlx database `$db`.
macro_rules! impl_session_store {
    ($store:ty, $db:ty) => {
        #[::async_trait::async_trait]
        impl $crate::GatewaySessionStore for $store {
            async fn insert_gateway_session(
                &self,
                s: &$crate::GatewaySessionRecord,
                cap: u32,
            ) -> $crate::StoreResult<Vec<$crate::GatewaySessionRecord>> {
                let mut tx = self.write_tx().await?;
                ::sqlx::query::<$db>(concat!(
                    "INSERT INTO gateway_sessions (",
                    $crate::sql::sessions::session_cols!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                ))
                .bind(s.id_hash.as_str())
                .bind(s.upstream.as_str())
                .bind(s.issuer.as_str())
                .bind(s.subject.as_str())
                .bind(s.client_id.as_str())
                .bind(s.replica.as_str())
                .bind(s.state.as_deref())
                .bind(s.created_at)
                .bind(s.last_used)
                .execute(&mut *tx)
                .await
                .map_err($crate::sql::db_err)?;
                // The new session counts: the others keep `cap - 1` places,
                // the most recently used first.
                let evicted = ::sqlx::query_as::<$db, $crate::GatewaySessionRecord>(concat!(
                    "DELETE FROM gateway_sessions WHERE id_hash IN (\
                       SELECT id_hash FROM gateway_sessions \
                       WHERE upstream = $1 AND issuer = $2 AND subject = $3 AND id_hash <> $4 \
                       ORDER BY last_used DESC, id_hash DESC LIMIT $5 OFFSET $6) RETURNING ",
                    $crate::sql::sessions::session_cols!()
                ))
                .bind(s.upstream.as_str())
                .bind(s.issuer.as_str())
                .bind(s.subject.as_str())
                .bind(s.id_hash.as_str())
                .bind(i64::MAX)
                .bind(i64::from(cap.max(1)) - 1)
                .fetch_all(&mut *tx)
                .await
                .map_err($crate::sql::db_err)?;
                tx.commit().await.map_err($crate::sql::db_err)?;
                Ok(evicted)
            }

            async fn touch_gateway_session(
                &self,
                id_hash: &str,
                owner: $crate::SessionOwner<'_>,
                now: i64,
                idle_before: i64,
            ) -> $crate::StoreResult<$crate::GatewaySessionRecord> {
                ::sqlx::query_as::<$db, $crate::GatewaySessionRecord>(concat!(
                    "UPDATE gateway_sessions \
                     SET last_used = CASE WHEN last_used > $6 THEN last_used ELSE $6 END \
                     WHERE id_hash = $1 AND upstream = $2 AND issuer = $3 AND subject = $4 \
                       AND client_id = $5 AND last_used >= $7 \
                     RETURNING ",
                    $crate::sql::sessions::session_cols!()
                ))
                .bind(id_hash)
                .bind(owner.upstream)
                .bind(owner.issuer)
                .bind(owner.subject)
                .bind(owner.client_id)
                .bind(now)
                .bind(idle_before)
                .fetch_one(&self.writer)
                .await
                .map_err($crate::sql::db_err)
            }

            async fn delete_gateway_session(
                &self,
                id_hash: &str,
            ) -> $crate::StoreResult<$crate::GatewaySessionRecord> {
                ::sqlx::query_as::<$db, $crate::GatewaySessionRecord>(concat!(
                    "DELETE FROM gateway_sessions WHERE id_hash = $1 RETURNING ",
                    $crate::sql::sessions::session_cols!()
                ))
                .bind(id_hash)
                .fetch_one(&self.writer)
                .await
                .map_err($crate::sql::db_err)
            }

            async fn live_gateway_sessions(
                &self,
                replica: &str,
                idle_before: i64,
            ) -> $crate::StoreResult<Vec<String>> {
                ::sqlx::query_scalar::<$db, String>(
                    "SELECT id_hash FROM gateway_sessions \
                     WHERE replica = $1 AND last_used >= $2 ORDER BY id_hash",
                )
                .bind(replica)
                .bind(idle_before)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::sql::db_err)
            }

            async fn purge_gateway_sessions(
                &self,
                idle_before: i64,
                limit: u32,
            ) -> $crate::StoreResult<Vec<$crate::GatewaySessionRecord>> {
                ::sqlx::query_as::<$db, $crate::GatewaySessionRecord>(concat!(
                    "DELETE FROM gateway_sessions WHERE id_hash IN (\
                       SELECT id_hash FROM gateway_sessions WHERE last_used < $1 \
                       ORDER BY last_used LIMIT $2) RETURNING ",
                    $crate::sql::sessions::session_cols!()
                ))
                .bind(idle_before)
                .bind(i64::from(limit))
                .fetch_all(&self.writer)
                .await
                .map_err($crate::sql::db_err)
            }
        }
    };
}
pub(crate) use impl_session_store;
