//! Shared SQL for the gateway's audit log (issue 3 "Audit"): one append-only
//! table, written in batches (one transaction each), read back newest
//! first. Expanded per backend by [`impl_audit_store!`].

/// Expands `AuditStore` for `$store` over sqlx database `$db`.
macro_rules! impl_audit_store {
    ($store:ty, $db:ty) => {
        #[::async_trait::async_trait]
        impl $crate::AuditStore for $store {
            async fn insert_audit(
                &self,
                records: &[$crate::AuditRecord],
            ) -> $crate::StoreResult<()> {
                if records.is_empty() {
                    return Ok(());
                }
                let mut tx = self.write_tx().await?;
                for r in records {
                    ::sqlx::query::<$db>(concat!(
                        "INSERT INTO audit_log (",
                        $crate::sql::rows::audit_cols!(),
                        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
                    ))
                    .bind(r.time_ms)
                    .bind(r.request_id.as_str())
                    .bind(r.issuer.as_deref())
                    .bind(r.subject.as_deref())
                    .bind(r.client_id.as_deref())
                    .bind(r.upstream.as_str())
                    .bind(r.method.as_deref())
                    .bind(r.tool.as_deref())
                    .bind(r.decision.as_str())
                    .bind(r.reason.as_str())
                    .bind(r.status)
                    .bind(r.latency_ms)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::sql::db_err)?;
                }
                tx.commit().await.map_err($crate::sql::db_err)
            }

            async fn query_audit(
                &self,
                q: &$crate::AuditQuery,
            ) -> $crate::StoreResult<Vec<$crate::AuditRecord>> {
                // One statement for every combination: an unset filter binds
                // NULL and matches every row.
                let rows = ::sqlx::query_as::<$db, $crate::sql::rows::AuditRow>(concat!(
                    "SELECT ",
                    $crate::sql::rows::audit_cols!(),
                    " FROM audit_log WHERE time_ms >= $1",
                    " AND ($2 IS NULL OR time_ms < $2)",
                    " AND ($3 IS NULL OR issuer = $3)",
                    " AND ($4 IS NULL OR subject = $4)",
                    " AND ($5 IS NULL OR client_id = $5)",
                    " AND ($6 IS NULL OR upstream = $6)",
                    " AND ($7 IS NULL OR decision = $7)",
                    " ORDER BY time_ms DESC, seq DESC LIMIT $8"
                ))
                .bind(q.since_ms)
                .bind(q.until_ms)
                .bind(q.issuer.as_deref())
                .bind(q.subject.as_deref())
                .bind(q.client_id.as_deref())
                .bind(q.upstream.as_deref())
                .bind(q.decision.as_deref())
                .bind(i64::from(q.limit))
                .fetch_all(&self.pool)
                .await
                .map_err($crate::sql::db_err)?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn purge_audit(&self, before_ms: i64) -> $crate::StoreResult<u64> {
                let done = ::sqlx::query::<$db>("DELETE FROM audit_log WHERE time_ms < $1")
                    .bind(before_ms)
                    .execute(&self.writer)
                    .await
                    .map_err($crate::sql::db_err)?;
                Ok(done.rows_affected())
            }
        }
    };
}
pub(crate) use impl_audit_store;
