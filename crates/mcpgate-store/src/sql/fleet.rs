//! Shared SQL for [`crate::FleetStore`]: fleet-wide token buckets and the
//! replica heartbeat. Time is the database's (`DB_NOW`, a backend constant),
//! never a replica's, so replicas whose clocks disagree still share one
//! bucket correctly. Expanded per backend by [`impl_fleet_store!`].

/// The statement that refills a bucket and takes tokens from it, with the
/// backend's expression for "now in seconds" and its whole-number floor
/// (`floor_open` X `floor_close`). `$1` key, `$2` capacity, `$3` refill per
/// second, `$4` tokens wanted. Every expression in `SET` reads the row as it
/// was, so the refill is computed once from the old `tokens`/`updated_at`;
/// time that runs backwards (a waiting statement whose `now()` is older than
/// the row) refills nothing and never moves `updated_at` back.
pub(crate) fn take_sql(now: &str, floor_open: &str, floor_close: &str) -> String {
    let elapsed = format!(
        "(CASE WHEN {now} > rate_limits.updated_at THEN {now} - rate_limits.updated_at ELSE 0 END)"
    );
    let refilled = format!("(rate_limits.tokens + {elapsed} * $3)");
    let avail = format!("(CASE WHEN {refilled} < $2 THEN {refilled} ELSE $2 END)");
    let whole = format!("{floor_open}{avail}{floor_close}");
    let grant = format!("(CASE WHEN $4 < {whole} THEN $4 ELSE {whole} END)");
    let first = format!(
        "(CASE WHEN $4 < {floor_open}$2{floor_close} THEN $4 ELSE {floor_open}$2{floor_close} END)"
    );
    format!(
        "INSERT INTO rate_limits (key, tokens, updated_at, granted) \
         VALUES ($1, $2 - {first}, {now}, {first}) \
         ON CONFLICT (key) DO UPDATE SET \
         tokens = {avail} - {grant}, \
         updated_at = CASE WHEN {now} > rate_limits.updated_at THEN {now} \
           ELSE rate_limits.updated_at END, \
         granted = {grant} \
         RETURNING tokens, granted"
    )
}

/// Expands `FleetStore` for `$store` over sqlx database `$db`. The store
/// type provides `DB_NOW`, `FLOOR` and `housekeeper_on`.
macro_rules! impl_fleet_store {
    ($store:ty, $db:ty) => {
        #[::async_trait::async_trait]
        impl $crate::FleetStore for $store {
            async fn take_tokens(
                &self,
                key: &str,
                bucket: $crate::Bucket,
                want: u32,
            ) -> $crate::StoreResult<$crate::Taken> {
                static SQL: ::std::sync::OnceLock<String> = ::std::sync::OnceLock::new();
                let sql = SQL.get_or_init(|| {
                    $crate::sql::fleet::take_sql(Self::DB_NOW, Self::FLOOR.0, Self::FLOOR.1)
                });
                let (left, granted): (f64, i64) =
                    ::sqlx::query_as::<$db, (f64, i64)>(::sqlx::AssertSqlSafe(sql.clone()))
                        .bind(key)
                        .bind(f64::from(bucket.capacity))
                        .bind(bucket.refill_per_sec)
                        .bind(i64::from(want))
                        .fetch_one(&self.writer)
                        .await
                        .map_err($crate::sql::db_err)?;
                Ok($crate::Taken {
                    granted: u32::try_from(granted.clamp(0, i64::from(want))).unwrap_or(0),
                    left: left.max(0.0),
                })
            }

            async fn purge_rate_limits(&self, idle_secs: f64) -> $crate::StoreResult<u64> {
                let sql = format!(
                    "DELETE FROM rate_limits WHERE updated_at < {} - $1",
                    Self::DB_NOW
                );
                let done = ::sqlx::query::<$db>(::sqlx::AssertSqlSafe(sql))
                    .bind(idle_secs)
                    .execute(&self.writer)
                    .await
                    .map_err($crate::sql::db_err)?;
                Ok(done.rows_affected())
            }

            async fn fleet_heartbeat(&self, id: &str, ttl_secs: f64) -> $crate::StoreResult<u32> {
                let mut tx = self.write_tx().await?;
                ::sqlx::query::<$db>(::sqlx::AssertSqlSafe(format!(
                    "INSERT INTO fleet_replicas (id, seen_at) VALUES ($1, {}) \
                     ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at",
                    Self::DB_NOW
                )))
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err($crate::sql::db_err)?;
                ::sqlx::query::<$db>(::sqlx::AssertSqlSafe(format!(
                    "DELETE FROM fleet_replicas WHERE seen_at < {} - $1",
                    Self::DB_NOW
                )))
                .bind(ttl_secs)
                .execute(&mut *tx)
                .await
                .map_err($crate::sql::db_err)?;
                let (n,): (i64,) =
                    ::sqlx::query_as::<$db, (i64,)>("SELECT COUNT(*) FROM fleet_replicas")
                        .fetch_one(&mut *tx)
                        .await
                        .map_err($crate::sql::db_err)?;
                tx.commit().await.map_err($crate::sql::db_err)?;
                Ok(u32::try_from(n).unwrap_or(u32::MAX).max(1))
            }

            fn housekeeper(&self, task: &str) -> $crate::Housekeeper {
                self.housekeeper_on(task)
            }
        }
    };
}
pub(crate) use impl_fleet_store;
