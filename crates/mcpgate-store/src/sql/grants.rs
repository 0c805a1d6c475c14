//! Shared SQL for what grants produce: authorization codes (single use) and
//! refresh-token families (rotation with reuse detection). Expanded per
//! backend by [`impl_grant_stores!`].
//!
//! OAuth 2.1 §4.1.3 / RFC 9700 §4.14: a code is redeemed by one conditional
//! `UPDATE … WHERE used_at IS NULL RETURNING …`, so of any number of
//! concurrent callers exactly one sees the row; the rest read it afterwards
//! as a replay. A refresh token is rotated by a conditional `UPDATE` of the
//! old token (not yet rotated, family live) and the `INSERT` of its
//! successor, atomically; when the old token had already been rotated, one
//! transaction revokes the whole family.
//!
//! These two writes, a code exchange's and a rotation's, are the AS's hot
//! path, so each backend executes them as one *grant step* of its own
//! (`redeem_step`, `rotate_step`): on PostgreSQL one statement (data-modifying
//! CTEs), on SQLite one multi-statement round trip inside a group commit
//! ([`crate::grant_writer`]). In both, the later `INSERT`s write only from
//! the row the deciding `UPDATE` returned. The rare outcomes of a rotation
//! (unknown, revoked, sibling, reuse) are settled by the shared
//! `settle_rotation_in`.

/// Binds a code exchange's grant step, numbered as both backends' SQL
/// numbers it: `$1` now, `$2` the code, `$3`–`$12` and `$19` the family (in
/// [`family_cols!`](crate::sql::rows::family_cols) order; its last column,
/// added later, is numbered last), `$13`–`$18` its first token
/// ([`token_cols!`](crate::sql::rows::token_cols)). Values are
/// bound owned, so the query may outlive the records (SQLite's writer task).
/// Expands to an expression that uses `?` (list encoding).
macro_rules! bind_redeem_with_family {
    ($query:expr, $now:expr, $code_hash:expr, $f:expr, $first:expr) => {
        $query
            .bind($now)
            .bind($code_hash.to_owned())
            .bind($f.family_id.clone())
            .bind($f.client_id.clone())
            .bind($f.user_id.clone())
            .bind($f.resource.clone())
            .bind($crate::sql::to_json(&$f.scopes)?)
            .bind($f.auth_time)
            .bind($f.code_hash.clone())
            .bind($f.created_at)
            .bind($f.expires_at)
            .bind($f.revoked_at)
            .bind($first.token_hash.clone())
            .bind($first.family_id.clone())
            .bind($crate::sql::to_json(&$first.scopes)?)
            .bind($first.created_at)
            .bind($first.expires_at)
            .bind($first.rotated_at)
            .bind($f.dpop_jkt.clone())
    };
}
pub(crate) use bind_redeem_with_family;

/// Binds a rotation's grant step: `$1` now, `$2` the old token, `$3` the
/// family, `$4`–`$8` the new token's hash, scopes, `created_at`,
/// `expires_at` and `rotated_at`. Owned values; uses `?`.
macro_rules! bind_rotation {
    ($query:expr, $at:expr, $old_hash:expr, $new:expr) => {
        $query
            .bind($at.now)
            .bind($old_hash.to_owned())
            .bind($new.family_id.clone())
            .bind($new.token_hash.clone())
            .bind($crate::sql::to_json(&$new.scopes)?)
            .bind($new.created_at)
            .bind($new.expires_at)
            .bind($new.rotated_at)
    };
}
pub(crate) use bind_rotation;

/// Expands `AuthCodeStore` and `RefreshTokenStore` for `$store` over sqlx
/// database `$db`.
macro_rules! impl_grant_stores {
    ($store:ty, $db:ty) => {
        impl $store {
            async fn insert_token_in<'c, E: ::sqlx::Executor<'c, Database = $db>>(
                ex: E,
                token: &$crate::RefreshTokenRecord,
            ) -> $crate::StoreResult<()> {
                ::sqlx::query::<$db>(concat!(
                    "INSERT INTO refresh_tokens (",
                    $crate::sql::rows::token_cols!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6)"
                ))
                .bind(token.token_hash.as_str())
                .bind(token.family_id.as_str())
                .bind($crate::sql::to_json(&token.scopes)?)
                .bind(token.created_at)
                .bind(token.expires_at)
                .bind(token.rotated_at)
                .execute(ex)
                .await
                .map_err($crate::sql::db_err)?;
                Ok(())
            }

            async fn family_in<'c, E: ::sqlx::Executor<'c, Database = $db>>(
                ex: E,
                family_id: &str,
            ) -> $crate::StoreResult<$crate::RefreshFamilyRecord> {
                ::sqlx::query_as::<$db, $crate::sql::rows::FamilyRow>(concat!(
                    "SELECT ",
                    $crate::sql::rows::family_cols!(),
                    " FROM refresh_families WHERE family_id = $1"
                ))
                .bind(family_id)
                .fetch_one(ex)
                .await
                .map_err($crate::sql::db_err)?
                .try_into()
            }

            /// Inserts `family` and its first token in `tx`; `false` (and
            /// nothing written) when the family id is taken.
            async fn insert_family_in(
                tx: &mut ::sqlx::Transaction<'static, $db>,
                family: &$crate::RefreshFamilyRecord,
                first: &$crate::RefreshTokenRecord,
            ) -> $crate::StoreResult<bool> {
                let done = ::sqlx::query::<$db>(concat!(
                    "INSERT INTO refresh_families (",
                    $crate::sql::rows::family_cols!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                     ON CONFLICT (family_id) DO NOTHING"
                ))
                .bind(family.family_id.as_str())
                .bind(family.client_id.as_str())
                .bind(family.user_id.as_str())
                .bind(family.resource.as_str())
                .bind($crate::sql::to_json(&family.scopes)?)
                .bind(family.auth_time)
                .bind(family.code_hash.as_deref())
                .bind(family.created_at)
                .bind(family.expires_at)
                .bind(family.revoked_at)
                .bind(family.dpop_jkt.as_deref())
                .execute(&mut **tx)
                .await
                .map_err($crate::sql::db_err)?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                Self::insert_token_in(&mut **tx, first).await?;
                Ok(true)
            }

            /// The slow path of a rotation, in `tx` (the caller commits):
            /// `old_hash` was not rotated by the conditional `UPDATE` of the
            /// step, so it is unknown, of a revoked family, of another family
            /// than `new`, or rotated before (a sibling within `grace_secs`,
            /// else reuse: the family is revoked here, and its grant added to
            /// the revocation set).
            pub(crate) async fn settle_rotation_in(
                tx: &mut ::sqlx::Transaction<'static, $db>,
                old_hash: &str,
                new: &$crate::RefreshTokenRecord,
                at: $crate::RevokeAt,
                grace_secs: i64,
            ) -> $crate::StoreResult<$crate::Rotate> {
                let now = at.now;
                let token: $crate::RefreshTokenRecord =
                    ::sqlx::query_as::<$db, $crate::sql::rows::TokenRow>(concat!(
                        "SELECT ",
                        $crate::sql::rows::token_cols!(),
                        " FROM refresh_tokens WHERE token_hash = $1"
                    ))
                    .bind(old_hash)
                    .fetch_one(&mut **tx)
                    .await
                    .map_err($crate::sql::db_err)?
                    .try_into()?;
                let family = Self::family_in(&mut **tx, &token.family_id).await?;
                if family.revoked_at.is_some() {
                    return Ok($crate::Rotate::Revoked { family });
                }
                let Some(rotated_at) = token.rotated_at else {
                    // Current and live, so the step's UPDATE passed it over
                    // for naming another family than `new`; or the rows
                    // changed between two statements in a way no store
                    // operation does.
                    $crate::sql::same_family(&token.family_id, &new.family_id)?;
                    return Err($crate::StoreError::Conflict(
                        "refresh token rotation lost a race".to_owned(),
                    ));
                };
                if now.saturating_sub(rotated_at) <= grace_secs && grace_secs > 0 {
                    // Presented again just after its rotation: a sibling.
                    $crate::sql::same_family(&token.family_id, &new.family_id)?;
                    Self::insert_token_in(&mut **tx, new).await?;
                    return Ok($crate::Rotate::Sibling { family, old: token });
                }
                // Reuse of a rotated token: revoke the whole family, here.
                let family: $crate::RefreshFamilyRecord =
                    ::sqlx::query_as::<$db, $crate::sql::rows::FamilyRow>(concat!(
                        "UPDATE refresh_families SET revoked_at = COALESCE(revoked_at, $1) \
                         WHERE family_id = $2 RETURNING ",
                        $crate::sql::rows::family_cols!()
                    ))
                    .bind(now)
                    .bind(family.family_id.as_str())
                    .fetch_one(&mut **tx)
                    .await
                    .map_err($crate::sql::db_err)?
                    .try_into()?;
                let entry = at.entry($crate::RevocationTarget::Grant {
                    grant_id: family.family_id.clone(),
                });
                Self::revoke_in(tx, &[entry]).await?;
                Ok($crate::Rotate::Reused { family })
            }
        }

        #[::async_trait::async_trait]
        impl $crate::AuthCodeStore for $store {
            async fn insert_code(&self, code: &$crate::AuthCodeRecord) -> $crate::StoreResult<()> {
                ::sqlx::query::<$db>(concat!(
                    "INSERT INTO auth_codes (",
                    $crate::sql::rows::code_cols!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
                ))
                .bind(code.code_hash.as_str())
                .bind(code.client_id.as_str())
                .bind(code.user_id.as_str())
                .bind(code.redirect_uri.as_str())
                .bind($crate::sql::to_json(&code.scopes)?)
                .bind(code.resource.as_str())
                .bind(code.code_challenge.as_str())
                .bind(code.auth_time)
                .bind(code.created_at)
                .bind(code.expires_at)
                .bind(code.used_at)
                .execute(&self.writer)
                .await
                .map_err($crate::sql::db_err)?;
                Ok(())
            }

            async fn redeem_code(
                &self,
                code_hash: &str,
                now: i64,
            ) -> $crate::StoreResult<$crate::Redeem> {
                // The step's conditional UPDATE decides: only the caller whose
                // UPDATE matched an unused row gets it back.
                if let Some((rec, _)) = self.redeem_step(code_hash, now, None).await? {
                    return Ok($crate::Redeem::Fresh(rec));
                }
                // Lost (or no such code): read it only to tell replay from unknown.
                Ok($crate::Redeem::Replayed(self.get_code(code_hash).await?))
            }

            async fn get_code(
                &self,
                code_hash: &str,
            ) -> $crate::StoreResult<$crate::AuthCodeRecord> {
                ::sqlx::query_as::<$db, $crate::sql::rows::CodeRow>(concat!(
                    "SELECT ",
                    $crate::sql::rows::code_cols!(),
                    " FROM auth_codes WHERE code_hash = $1"
                ))
                .bind(code_hash)
                .fetch_one(&self.pool)
                .await
                .map_err($crate::sql::db_err)?
                .try_into()
            }

            async fn get_code_and_user(
                &self,
                code_hash: &str,
            ) -> $crate::StoreResult<($crate::AuthCodeRecord, $crate::UserRecord)> {
                ::sqlx::query_as::<$db, $crate::sql::rows::CodeUserRow>(concat!(
                    "SELECT ",
                    $crate::sql::rows::code_user_cols!(),
                    $crate::sql::rows::joined_user_cols!(),
                    " FROM auth_codes c JOIN users u ON u.id = c.user_id WHERE c.code_hash = $1"
                ))
                .bind(code_hash)
                .fetch_one(&self.pool)
                .await
                .map_err($crate::sql::db_err)?
                .try_into()
            }

            async fn redeem_code_with_family(
                &self,
                code_hash: &str,
                now: i64,
                family: Option<(&$crate::RefreshFamilyRecord, &$crate::RefreshTokenRecord)>,
            ) -> $crate::StoreResult<($crate::Redeem, bool)> {
                if let Some((f, first)) = family {
                    $crate::sql::same_family(&f.family_id, &first.family_id)?;
                }
                match self.redeem_step(code_hash, now, family).await? {
                    Some((rec, stored)) => Ok(($crate::Redeem::Fresh(rec), stored)),
                    None => {
                        let stored = self.get_code(code_hash).await?;
                        Ok(($crate::Redeem::Replayed(stored), false))
                    }
                }
            }

            async fn purge_codes(&self, before: i64) -> $crate::StoreResult<u64> {
                let done = ::sqlx::query::<$db>("DELETE FROM auth_codes WHERE expires_at < $1")
                    .bind(before)
                    .execute(&self.writer)
                    .await
                    .map_err($crate::sql::db_err)?;
                Ok(done.rows_affected())
            }
        }

        #[::async_trait::async_trait]
        impl $crate::RefreshTokenStore for $store {
            async fn create_family(
                &self,
                family: &$crate::RefreshFamilyRecord,
                first: &$crate::RefreshTokenRecord,
            ) -> $crate::StoreResult<()> {
                $crate::sql::same_family(&family.family_id, &first.family_id)?;
                let mut tx = self.write_tx().await?;
                if !Self::insert_family_in(&mut tx, family, first).await? {
                    return Err($crate::StoreError::Conflict(
                        "the refresh family exists".to_owned(),
                    ));
                }
                tx.commit().await.map_err($crate::sql::db_err)
            }

            async fn get_refresh_token(
                &self,
                token_hash: &str,
            ) -> $crate::StoreResult<($crate::RefreshTokenRecord, $crate::RefreshFamilyRecord)>
            {
                // One statement: a token never outlives its family (ON DELETE
                // CASCADE), so the join finds both or neither.
                ::sqlx::query_as::<$db, $crate::sql::rows::TokenFamilyRow>(concat!(
                    "SELECT ",
                    $crate::sql::rows::token_family_cols!(),
                    " FROM refresh_tokens t JOIN refresh_families f ON f.family_id = t.family_id \
                     WHERE t.token_hash = $1"
                ))
                .bind(token_hash)
                .fetch_one(&self.pool)
                .await
                .map_err($crate::sql::db_err)?
                .try_into()
            }

            async fn get_refresh_token_and_user(
                &self,
                token_hash: &str,
            ) -> $crate::StoreResult<(
                $crate::RefreshTokenRecord,
                $crate::RefreshFamilyRecord,
                $crate::UserRecord,
            )> {
                ::sqlx::query_as::<$db, $crate::sql::rows::TokenFamilyUserRow>(concat!(
                    "SELECT ",
                    $crate::sql::rows::token_family_cols!(),
                    ", ",
                    $crate::sql::rows::joined_user_cols!(),
                    " FROM refresh_tokens t JOIN refresh_families f ON f.family_id = t.family_id \
                     JOIN users u ON u.id = f.user_id WHERE t.token_hash = $1"
                ))
                .bind(token_hash)
                .fetch_one(&self.pool)
                .await
                .map_err($crate::sql::db_err)?
                .try_into()
            }

            async fn rotate_refresh_token_within(
                &self,
                old_hash: &str,
                new: &$crate::RefreshTokenRecord,
                at: $crate::RevokeAt,
                grace_secs: i64,
            ) -> $crate::StoreResult<$crate::Rotate> {
                self.rotate_step(old_hash, new, at, grace_secs).await
            }

            async fn revoke_family(
                &self,
                family_id: &str,
                at: $crate::RevokeAt,
            ) -> $crate::StoreResult<()> {
                let mut tx = self.write_tx().await?;
                // Idempotent: a revoked family keeps its first revocation time.
                let done = ::sqlx::query::<$db>(
                    "UPDATE refresh_families SET revoked_at = COALESCE(revoked_at, $1) \
                     WHERE family_id = $2",
                )
                .bind(at.now)
                .bind(family_id)
                .execute(&mut *tx)
                .await
                .map_err($crate::sql::db_err)?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                let entry = at.entry($crate::RevocationTarget::Grant {
                    grant_id: family_id.to_owned(),
                });
                Self::revoke_in(&mut tx, &[entry]).await?;
                tx.commit().await.map_err($crate::sql::db_err)
            }

            async fn revoke_families_by_code(
                &self,
                code_hash: &str,
                at: $crate::RevokeAt,
            ) -> $crate::StoreResult<u64> {
                let mut tx = self.write_tx().await?;
                let done = ::sqlx::query::<$db>(
                    "UPDATE refresh_families SET revoked_at = $1 \
                     WHERE code_hash = $2 AND revoked_at IS NULL",
                )
                .bind(at.now)
                .bind(code_hash)
                .execute(&mut *tx)
                .await
                .map_err($crate::sql::db_err)?;
                // Every family of the code, revoked just now or before: its
                // access tokens may still be live either way.
                let ids: Vec<(String,)> = ::sqlx::query_as::<$db, (String,)>(
                    "SELECT family_id FROM refresh_families WHERE code_hash = $1",
                )
                .bind(code_hash)
                .fetch_all(&mut *tx)
                .await
                .map_err($crate::sql::db_err)?;
                if !ids.is_empty() {
                    let entries: Vec<_> = ids
                        .into_iter()
                        .map(|(grant_id,)| at.entry($crate::RevocationTarget::Grant { grant_id }))
                        .collect();
                    Self::revoke_in(&mut tx, &entries).await?;
                }
                tx.commit().await.map_err($crate::sql::db_err)?;
                Ok(done.rows_affected())
            }

            async fn revoke_families_for(
                &self,
                user_id: &str,
                client_id: &str,
                now: i64,
            ) -> $crate::StoreResult<u64> {
                let done = ::sqlx::query::<$db>(
                    "UPDATE refresh_families SET revoked_at = $1 \
                     WHERE user_id = $2 AND client_id = $3 AND revoked_at IS NULL",
                )
                .bind(now)
                .bind(user_id)
                .bind(client_id)
                .execute(&self.writer)
                .await
                .map_err($crate::sql::db_err)?;
                Ok(done.rows_affected())
            }

            async fn purge_families(&self, before: i64) -> $crate::StoreResult<u64> {
                let mut tx = self.write_tx().await?;
                ::sqlx::query::<$db>(
                    "DELETE FROM refresh_tokens WHERE family_id IN \
                     (SELECT family_id FROM refresh_families WHERE expires_at < $1)",
                )
                .bind(before)
                .execute(&mut *tx)
                .await
                .map_err($crate::sql::db_err)?;
                let done =
                    ::sqlx::query::<$db>("DELETE FROM refresh_families WHERE expires_at < $1")
                        .bind(before)
                        .execute(&mut *tx)
                        .await
                        .map_err($crate::sql::db_err)?;
                tx.commit().await.map_err($crate::sql::db_err)?;
                Ok(done.rows_affected())
            }

            async fn list_families(
                &self,
                user_id: Option<&str>,
                now: i64,
            ) -> $crate::StoreResult<Vec<$crate::RefreshFamilyRecord>> {
                let rows = ::sqlx::query_as::<$db, $crate::sql::rows::FamilyRow>(concat!(
                    "SELECT ",
                    $crate::sql::rows::family_cols!(),
                    " FROM refresh_families \
                     WHERE revoked_at IS NULL AND expires_at > $1 \
                     AND ($2 IS NULL OR user_id = $2) \
                     ORDER BY user_id, client_id, created_at, family_id"
                ))
                .bind(now)
                .bind(user_id)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::sql::db_err)?;
                $crate::sql::rows::all(rows)
            }
        }
    };
}
pub(crate) use impl_grant_stores;
