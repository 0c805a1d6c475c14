//! Shared SQL for the account aggregates: users, clients and the per-client
//! consent registry. Expanded per backend by [`impl_account_stores!`].
//!
//! Deleting a user or a client removes its dependents through the schema's
//! `ON DELETE CASCADE` foreign keys, in the same statement. Revoking a
//! consent deletes it and revokes that (user, client)'s refresh families in
//! one write transaction. Upserts use `INSERT … ON CONFLICT DO UPDATE`
//! (never SQLite's `INSERT OR REPLACE`, which deletes the old row and would
//! cascade to its dependents).

/// Expands `UserStore`, `ClientStore` and `ConsentStore` for `$store` over
/// sqlx database `$db`.
macro_rules! impl_account_stores {
    ($store:ty, $db:ty) => {
        #[::async_trait::async_trait]
        impl $crate::UserStore for $store {
            async fn create_user(&self, user: &$crate::UserRecord) -> $crate::StoreResult<()> {
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
                .execute(&self.writer)
                .await
                .map_err($crate::sql::db_err)?;
                Ok(())
            }

            async fn get_user(&self, id: &str) -> $crate::StoreResult<$crate::UserRecord> {
                ::sqlx::query_as::<$db, $crate::sql::rows::UserRow>(concat!(
                    "SELECT ",
                    $crate::sql::rows::user_cols!(),
                    " FROM users WHERE id = $1"
                ))
                .bind(id)
                .fetch_one(&self.pool)
                .await
                .map_err($crate::sql::db_err)?
                .try_into()
            }

            async fn get_user_by_username(
                &self,
                username: &str,
            ) -> $crate::StoreResult<$crate::UserRecord> {
                ::sqlx::query_as::<$db, $crate::sql::rows::UserRow>(concat!(
                    "SELECT ",
                    $crate::sql::rows::user_cols!(),
                    " FROM users WHERE username = $1"
                ))
                .bind(username)
                .fetch_one(&self.pool)
                .await
                .map_err($crate::sql::db_err)?
                .try_into()
            }

            async fn list_users(&self) -> $crate::StoreResult<Vec<$crate::UserRecord>> {
                let rows = ::sqlx::query_as::<$db, $crate::sql::rows::UserRow>(concat!(
                    "SELECT ",
                    $crate::sql::rows::user_cols!(),
                    " FROM users ORDER BY username"
                ))
                .fetch_all(&self.pool)
                .await
                .map_err($crate::sql::db_err)?;
                $crate::sql::rows::all(rows)
            }

            async fn update_user(&self, user: &$crate::UserRecord) -> $crate::StoreResult<()> {
                let done = ::sqlx::query::<$db>(
                    "UPDATE users SET display_name = $2, password_hash = $3, group_names = $4, \
                     must_change_password = $5, disabled = $6, updated_at = $7 WHERE id = $1",
                )
                .bind(user.id.as_str())
                .bind(user.display_name.as_deref())
                .bind(user.password_hash.as_deref())
                .bind($crate::sql::to_json(&user.groups)?)
                .bind(user.must_change_password)
                .bind(user.disabled)
                .bind(user.updated_at)
                .execute(&self.writer)
                .await
                .map_err($crate::sql::db_err)?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                Ok(())
            }

            async fn delete_user(
                &self,
                id: &str,
                at: $crate::RevokeAt,
            ) -> $crate::StoreResult<()> {
                // Consents, codes, refresh families (and their tokens) and
                // login sessions go with it: ON DELETE CASCADE.
                let mut tx = self.write_tx().await?;
                let done = ::sqlx::query::<$db>("DELETE FROM users WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::sql::db_err)?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                let entry = at.entry($crate::RevocationTarget::User {
                    user_id: id.to_owned(),
                });
                Self::revoke_in(&mut tx, &[entry]).await?;
                tx.commit().await.map_err($crate::sql::db_err)
            }
        }

        #[::async_trait::async_trait]
        impl $crate::ClientStore for $store {
            async fn create_client(
                &self,
                client: &$crate::ClientRecord,
            ) -> $crate::StoreResult<()> {
                let q = ::sqlx::query::<$db>(concat!(
                    "INSERT INTO clients (",
                    $crate::sql::rows::client_cols!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
                ));
                let done = $crate::sql::rows::bind_client!(q, client)
                    .execute(&self.writer)
                .await;
                self.clients.changed();
                done.map_err($crate::sql::db_err)?;
                Ok(())
            }

            async fn upsert_client(
                &self,
                client: &$crate::ClientRecord,
            ) -> $crate::StoreResult<()> {
                let q = ::sqlx::query::<$db>(concat!(
                    "INSERT INTO clients (",
                    $crate::sql::rows::client_cols!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
                     ON CONFLICT (client_id) DO UPDATE SET kind = excluded.kind, \
                     client_name = excluded.client_name, \
                     client_secret_hash = excluded.client_secret_hash, \
                     token_endpoint_auth_method = excluded.token_endpoint_auth_method, \
                     redirect_uris = excluded.redirect_uris, grant_types = excluded.grant_types, \
                     allowed_scopes = excluded.allowed_scopes, \
                     application_type = excluded.application_type, \
                     client_uri = excluded.client_uri, logo_uri = excluded.logo_uri, \
                     created_at = excluded.created_at, expires_at = excluded.expires_at, \
                     jwks = excluded.jwks, jwks_uri = excluded.jwks_uri"
                ));
                let done = $crate::sql::rows::bind_client!(q, client)
                    .execute(&self.writer)
                .await;
                self.clients.changed();
                done.map_err($crate::sql::db_err)?;
                Ok(())
            }

            async fn get_client(
                &self,
                client_id: &str,
            ) -> $crate::StoreResult<$crate::ClientRecord> {
                ::sqlx::query_as::<$db, $crate::sql::rows::ClientRow>(concat!(
                    "SELECT ",
                    $crate::sql::rows::client_cols!(),
                    " FROM clients WHERE client_id = $1"
                ))
                .bind(client_id)
                .fetch_one(&self.pool)
                .await
                .map_err($crate::sql::db_err)?
                .try_into()
            }

            async fn get_client_recent(
                &self,
                client_id: &str,
            ) -> $crate::StoreResult<$crate::ClientRecord> {
                match self.clients.get(client_id) {
                    Ok(rec) => Ok(rec),
                    Err(mark) => {
                        let rec = self.get_client(client_id).await?;
                        self.clients.put(&rec, mark);
                        Ok(rec)
                    }
                }
            }

            async fn list_clients(&self) -> $crate::StoreResult<Vec<$crate::ClientRecord>> {
                let rows = ::sqlx::query_as::<$db, $crate::sql::rows::ClientRow>(concat!(
                    "SELECT ",
                    $crate::sql::rows::client_cols!(),
                    " FROM clients ORDER BY client_id"
                ))
                .fetch_all(&self.pool)
                .await
                .map_err($crate::sql::db_err)?;
                $crate::sql::rows::all(rows)
            }

            async fn delete_client(
                &self,
                client_id: &str,
                at: $crate::RevokeAt,
            ) -> $crate::StoreResult<()> {
                // Consents, codes and refresh families (and their tokens) go
                // with it: ON DELETE CASCADE.
                let mut tx = self.write_tx().await?;
                let done = ::sqlx::query::<$db>("DELETE FROM clients WHERE client_id = $1")
                    .bind(client_id)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::sql::db_err)?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                let entry = at.entry($crate::RevocationTarget::Client {
                    client_id: client_id.to_owned(),
                });
                Self::revoke_in(&mut tx, &[entry]).await?;
                let done = tx.commit().await;
                self.clients.changed();
                done.map_err($crate::sql::db_err)
            }

            async fn count_dynamic_clients_since(&self, since: i64) -> $crate::StoreResult<u64> {
                let (n,): (i64,) = ::sqlx::query_as::<$db, (i64,)>(
                    "SELECT COUNT(*) FROM clients WHERE kind = $1 AND created_at >= $2",
                )
                .bind($crate::ClientKind::Dynamic.as_str())
                .bind(since)
                .fetch_one(&self.pool)
                .await
                .map_err($crate::sql::db_err)?;
                Ok(n.unsigned_abs())
            }

            async fn purge_unused_metadata_clients(&self, before: i64) -> $crate::StoreResult<u64> {
                let done = ::sqlx::query::<$db>(
                    "DELETE FROM clients WHERE kind = $1 AND expires_at IS NOT NULL AND expires_at < $2 \
                     AND NOT EXISTS (SELECT 1 FROM consents c WHERE c.client_id = clients.client_id) \
                     AND NOT EXISTS (SELECT 1 FROM refresh_families f WHERE f.client_id = clients.client_id) \
                     AND NOT EXISTS (SELECT 1 FROM auth_codes a WHERE a.client_id = clients.client_id)",
                )
                .bind($crate::ClientKind::Cimd.as_str())
                .bind(before)
                .execute(&self.writer)
                .await;
                self.clients.changed();
                Ok(done.map_err($crate::sql::db_err)?.rows_affected())
            }
        }

        #[::async_trait::async_trait]
        impl $crate::ConsentStore for $store {
            async fn upsert_consent(
                &self,
                consent: &$crate::ConsentRecord,
            ) -> $crate::StoreResult<()> {
                // An existing consent keeps its granted_at.
                ::sqlx::query::<$db>(concat!(
                    "INSERT INTO consents (",
                    $crate::sql::rows::consent_cols!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (user_id, client_id) DO UPDATE SET scopes = excluded.scopes, \
                     resources = excluded.resources, updated_at = excluded.updated_at"
                ))
                .bind(consent.user_id.as_str())
                .bind(consent.client_id.as_str())
                .bind($crate::sql::to_json(&consent.scopes)?)
                .bind($crate::sql::to_json(&consent.resources)?)
                .bind(consent.granted_at)
                .bind(consent.updated_at)
                .execute(&self.writer)
                .await
                .map_err($crate::sql::db_err)?;
                Ok(())
            }

            async fn get_consent(
                &self,
                user_id: &str,
                client_id: &str,
            ) -> $crate::StoreResult<$crate::ConsentRecord> {
                ::sqlx::query_as::<$db, $crate::sql::rows::ConsentRow>(concat!(
                    "SELECT ",
                    $crate::sql::rows::consent_cols!(),
                    " FROM consents WHERE user_id = $1 AND client_id = $2"
                ))
                .bind(user_id)
                .bind(client_id)
                .fetch_one(&self.pool)
                .await
                .map_err($crate::sql::db_err)?
                .try_into()
            }

            async fn list_consents(
                &self,
                user_id: Option<&str>,
            ) -> $crate::StoreResult<Vec<$crate::ConsentRecord>> {
                let rows = ::sqlx::query_as::<$db, $crate::sql::rows::ConsentRow>(concat!(
                    "SELECT ",
                    $crate::sql::rows::consent_cols!(),
                    " FROM consents WHERE ($1 IS NULL OR user_id = $1) \
                     ORDER BY user_id, client_id"
                ))
                .bind(user_id)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::sql::db_err)?;
                $crate::sql::rows::all(rows)
            }

            async fn revoke_consent(
                &self,
                user_id: &str,
                client_id: &str,
                at: $crate::RevokeAt,
            ) -> $crate::StoreResult<()> {
                let now = at.now;
                let mut tx = self.write_tx().await?;
                let done = ::sqlx::query::<$db>(
                    "DELETE FROM consents WHERE user_id = $1 AND client_id = $2",
                )
                .bind(user_id)
                .bind(client_id)
                .execute(&mut *tx)
                .await
                .map_err($crate::sql::db_err)?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                ::sqlx::query::<$db>(
                    "UPDATE refresh_families SET revoked_at = $1 \
                     WHERE user_id = $2 AND client_id = $3 AND revoked_at IS NULL",
                )
                .bind(now)
                .bind(user_id)
                .bind(client_id)
                .execute(&mut *tx)
                .await
                .map_err($crate::sql::db_err)?;
                let entry = at.entry($crate::RevocationTarget::Consent {
                    user_id: user_id.to_owned(),
                    client_id: client_id.to_owned(),
                });
                Self::revoke_in(&mut tx, &[entry]).await?;
                tx.commit().await.map_err($crate::sql::db_err)
            }
        }
    };
}
pub(crate) use impl_account_stores;
