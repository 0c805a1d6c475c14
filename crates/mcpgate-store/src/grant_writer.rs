//! SQLite's group commit for grant steps: the writes of code exchanges and
//! refresh-token rotations, the AS's hot path.
//!
//! One task owns these writes. It takes every step waiting in its queue (at
//! most [`MAX_BATCH`]), runs them in order in one `BEGIN IMMEDIATE`
//! transaction on the store's writer connection and commits once: one fsync
//! for the whole batch under `synchronous=FULL`. Each step is one round trip
//! to sqlx's connection thread (one prepared multi-statement query; the
//! thread hop per statement is what bounds SQLite throughput, see
//! docs/benchmarks.md section 4), and opens a `SAVEPOINT` of its own:
//!
//! - the decision is the step's conditional `UPDATE` (a code not yet used; a
//!   refresh token not yet rotated, of a live family), and the `INSERT`s that
//!   follow it write only if it matched (`WHERE changes() = 1`), so a step
//!   that loses writes nothing;
//! - a step that fails (a constraint, a backend error) is rolled back to its
//!   savepoint before the next step runs: it writes nothing and its
//!   neighbours are unaffected;
//! - every caller gets its own answer, and only after the shared `COMMIT`
//!   succeeded; if the `COMMIT` fails, every step of the batch fails (nothing
//!   of it was written).
//!
//! Single use and rotation are decided exactly as before: steps run one after
//! another on the database's only writer, so of two steps on one code or one
//! token the later sees the earlier's write. The task is spawned, so a caller
//! that goes away (its request dropped) never leaves a transaction half
//! done. Other writes share the writer connection with the task (it takes the
//! connection per batch), so they queue with it in the pool as before.

use futures_util::TryStreamExt as _;
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{Either, Executor as _, FromRow as _, Sqlite, Transaction};
use tokio::sync::{mpsc, oneshot};

use crate::SqliteStore;
use crate::records::{AuthCodeRecord, RefreshFamilyRecord, RefreshTokenRecord, RevokeAt};
use crate::sql::db_err;
use crate::sql::grants::{bind_redeem_with_family, bind_rotation};
use crate::sql::rows::{CodeRow, FamilyRow, TokenRow, code_cols, family_cols, token_cols};
use crate::traits::{Rotate, StoreError, StoreResult};

/// Most steps one transaction commits.
pub(crate) const MAX_BATCH: usize = 64;
/// Steps waiting for the writer at most; callers beyond that wait to enqueue.
const QUEUE: usize = 1024;

/// What a redemption step answers: `None` when the code was not redeemed
/// here (used or unknown), else the record and whether the family was stored.
pub(crate) type Redeemed = Option<(AuthCodeRecord, bool)>;

/// The handle the store keeps: a queue to the writer task.
#[derive(Debug, Clone)]
pub(crate) struct GrantWriter {
    queue: mpsc::Sender<Step>,
}

enum Step {
    Redeem {
        code_hash: String,
        now: i64,
        family: Option<(RefreshFamilyRecord, RefreshTokenRecord)>,
        reply: oneshot::Sender<StoreResult<Redeemed>>,
    },
    Rotate {
        old_hash: String,
        new: RefreshTokenRecord,
        at: RevokeAt,
        grace_secs: i64,
        reply: oneshot::Sender<StoreResult<Rotate>>,
    },
}

/// A step run in the open transaction, its answer held until the commit.
enum Done {
    Redeem(
        oneshot::Sender<StoreResult<Redeemed>>,
        StoreResult<Redeemed>,
    ),
    Rotate(oneshot::Sender<StoreResult<Rotate>>, StoreResult<Rotate>),
}

impl GrantWriter {
    /// Spawns the writer task on the current tokio runtime; it ends when
    /// every handle is dropped.
    pub(crate) fn start(writer: SqlitePool) -> Self {
        let (queue, steps) = mpsc::channel(QUEUE);
        tokio::spawn(run(writer, steps));
        Self { queue }
    }

    pub(crate) async fn redeem(
        &self,
        code_hash: &str,
        now: i64,
        family: Option<(&RefreshFamilyRecord, &RefreshTokenRecord)>,
    ) -> StoreResult<Redeemed> {
        let (reply, answer) = oneshot::channel();
        self.send(Step::Redeem {
            code_hash: code_hash.to_owned(),
            now,
            family: family.map(|(f, t)| (f.clone(), t.clone())),
            reply,
        })
        .await?;
        answer.await.map_err(|_| stopped())?
    }

    pub(crate) async fn rotate(
        &self,
        old_hash: &str,
        new: &RefreshTokenRecord,
        at: RevokeAt,
        grace_secs: i64,
    ) -> StoreResult<Rotate> {
        let (reply, answer) = oneshot::channel();
        self.send(Step::Rotate {
            old_hash: old_hash.to_owned(),
            new: new.clone(),
            at,
            grace_secs,
            reply,
        })
        .await?;
        answer.await.map_err(|_| stopped())?
    }

    async fn send(&self, step: Step) -> StoreResult<()> {
        self.queue.send(step).await.map_err(|_| stopped())
    }
}

fn stopped() -> StoreError {
    StoreError::Backend("the SQLite grant writer has stopped".to_owned())
}

async fn run(writer: SqlitePool, mut queue: mpsc::Receiver<Step>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        commit(&writer, std::mem::take(&mut batch)).await;
    }
}

/// Runs `batch` in one transaction and answers every step after the commit.
async fn commit(writer: &SqlitePool, batch: Vec<Step>) {
    let mut tx = match writer.begin_with("BEGIN IMMEDIATE").await {
        Ok(tx) => tx,
        Err(e) => {
            let e = e.to_string();
            for step in batch {
                step.fail(&e);
            }
            return;
        }
    };
    let mut done = Vec::with_capacity(batch.len());
    let mut broken: Option<String> = None;
    for step in batch {
        if let Some(e) = &broken {
            step.fail(e);
            continue;
        }
        let outcome = step.run(&mut tx).await;
        if !outcome.is_ok() {
            // Undo whatever the failed step wrote; the steps before it stay.
            if let Err(e) = sqlx::raw_sql("ROLLBACK TO grant_step; RELEASE grant_step")
                .execute(&mut *tx)
                .await
            {
                broken = Some(format!("rolling back a failed grant step: {e}"));
            }
        }
        done.push(outcome);
    }
    let failure = match broken {
        // Dropping the transaction rolls every step back.
        Some(e) => Some(e),
        // COMMIT also releases the steps' savepoints.
        None => tx.commit().await.err().map(|e| e.to_string()),
    };
    for outcome in done {
        match &failure {
            Some(e) => outcome.fail(e),
            None => outcome.answer(),
        }
    }
}

impl Step {
    /// Answers with a failure of the whole batch.
    fn fail(self, e: &str) {
        match self {
            Step::Redeem { reply, .. } => drop(reply.send(Err(batch_err(e)))),
            Step::Rotate { reply, .. } => drop(reply.send(Err(batch_err(e)))),
        }
    }

    async fn run(self, tx: &mut Transaction<'static, Sqlite>) -> Done {
        match self {
            Step::Redeem {
                code_hash,
                now,
                family,
                reply,
            } => {
                let family = family.as_ref().map(|(f, t)| (f, t));
                Done::Redeem(reply, redeem(tx, &code_hash, now, family).await)
            }
            Step::Rotate {
                old_hash,
                new,
                at,
                grace_secs,
                reply,
            } => Done::Rotate(reply, rotate(tx, &old_hash, &new, at, grace_secs).await),
        }
    }
}

impl Done {
    fn is_ok(&self) -> bool {
        match self {
            Done::Redeem(_, r) => r.is_ok(),
            Done::Rotate(_, r) => r.is_ok(),
        }
    }

    fn answer(self) {
        match self {
            Done::Redeem(reply, r) => drop(reply.send(r)),
            Done::Rotate(reply, r) => drop(reply.send(r)),
        }
    }

    /// The commit failed: a step that succeeded gets the batch's error, one
    /// that failed keeps its own.
    fn fail(self, e: &str) {
        match self {
            Done::Redeem(reply, r) => drop(reply.send(r.and(Err(batch_err(e))))),
            Done::Rotate(reply, r) => drop(reply.send(r.and(Err(batch_err(e))))),
        }
    }
}

fn batch_err(e: &str) -> StoreError {
    StoreError::Backend(format!("grant batch not committed: {e}"))
}

/// The statements of one query, each with its rows and change count.
struct Statements(Vec<(Vec<SqliteRow>, u64)>);

impl Statements {
    /// Runs a multi-statement query in one round trip to the connection
    /// thread. Numbered parameters (`$N`) are bound by number across all of
    /// its statements. Stops at the first failing statement.
    async fn run(
        tx: &mut Transaction<'static, Sqlite>,
        query: sqlx::query::Query<'static, Sqlite, sqlx::sqlite::SqliteArguments>,
    ) -> StoreResult<Self> {
        let mut out = Vec::new();
        let mut rows = Vec::new();
        let mut results = (&mut **tx).fetch_many(query);
        while let Some(item) = results.try_next().await.map_err(db_err)? {
            match item {
                Either::Left(done) => out.push((std::mem::take(&mut rows), done.rows_affected())),
                Either::Right(row) => rows.push(row),
            }
        }
        Ok(Self(out))
    }

    /// The rows of statement `i`.
    fn rows(&self, i: usize) -> StoreResult<&[SqliteRow]> {
        self.0
            .get(i)
            .map(|(rows, _)| rows.as_slice())
            .ok_or_else(short)
    }

    /// Rows changed by statement `i`.
    fn changes(&self, i: usize) -> StoreResult<u64> {
        self.0.get(i).map(|(_, n)| *n).ok_or_else(short)
    }
}

fn short() -> StoreError {
    StoreError::Backend("a grant step ran fewer statements than it has".to_owned())
}

/// A code exchange's write: statement 1 decides (the conditional `UPDATE`),
/// statement 2 stores the family if it matched (a taken family id — a
/// replay's placeholder — is left as it is), statement 3 the first token if
/// the family went in.
async fn redeem(
    tx: &mut Transaction<'static, Sqlite>,
    code_hash: &str,
    now: i64,
    family: Option<(&RefreshFamilyRecord, &RefreshTokenRecord)>,
) -> StoreResult<Redeemed> {
    const REDEEM: &str = concat!(
        "SAVEPOINT grant_step; \
         UPDATE auth_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL RETURNING ",
        code_cols!()
    );
    const WITH_FAMILY: &str = concat!(
        "SAVEPOINT grant_step; \
         UPDATE auth_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL RETURNING ",
        code_cols!(),
        "; INSERT INTO refresh_families (",
        family_cols!(),
        ") SELECT $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $19 WHERE changes() = 1 \
         ON CONFLICT (family_id) DO NOTHING; \
         INSERT INTO refresh_tokens (",
        token_cols!(),
        ") SELECT $13, $14, $15, $16, $17, $18 WHERE changes() = 1"
    );
    let query = match family {
        None => sqlx::query(REDEEM).bind(now).bind(code_hash.to_owned()),
        Some((f, first)) => {
            bind_redeem_with_family!(sqlx::query(WITH_FAMILY), now, code_hash, f, first)
        }
    };
    let done = Statements::run(tx, query).await?;
    let Some(row) = done.rows(1)?.first() else {
        return Ok(None);
    };
    let rec = CodeRow::from_row(row).map_err(db_err)?.try_into()?;
    let stored = family.is_some() && done.changes(2)? == 1 && done.changes(3)? == 1;
    Ok(Some((rec, stored)))
}

/// A rotation's write: statement 1 decides (the conditional `UPDATE` of the
/// old token: current, of `new`'s family, family live), statement 2 inserts
/// the successor if it matched, statement 3 reads the family. When it did
/// not match, the rare cases (unknown, revoked, sibling, reuse) are settled
/// by the shared SQL in the same savepoint.
async fn rotate(
    tx: &mut Transaction<'static, Sqlite>,
    old_hash: &str,
    new: &RefreshTokenRecord,
    at: RevokeAt,
    grace_secs: i64,
) -> StoreResult<Rotate> {
    const ROTATE: &str = concat!(
        "SAVEPOINT grant_step; \
         UPDATE refresh_tokens SET rotated_at = $1 \
         WHERE token_hash = $2 AND family_id = $3 AND rotated_at IS NULL AND EXISTS (\
         SELECT 1 FROM refresh_families f \
         WHERE f.family_id = refresh_tokens.family_id AND f.revoked_at IS NULL) RETURNING ",
        token_cols!(),
        "; INSERT INTO refresh_tokens (",
        token_cols!(),
        ") SELECT $4, $3, $5, $6, $7, $8 WHERE changes() = 1; SELECT ",
        family_cols!(),
        " FROM refresh_families WHERE family_id = $3 AND changes() = 1"
    );
    let query = bind_rotation!(sqlx::query(ROTATE), at, old_hash, new);
    let done = Statements::run(tx, query).await?;
    match (done.rows(1)?.first(), done.rows(3)?.first()) {
        (Some(old), Some(family)) => Ok(Rotate::Rotated {
            old: TokenRow::from_row(old).map_err(db_err)?.try_into()?,
            family: FamilyRow::from_row(family).map_err(db_err)?.try_into()?,
        }),
        (None, _) => SqliteStore::settle_rotation_in(tx, old_hash, new, at, grace_secs).await,
        (Some(_), None) => Err(StoreError::Backend(
            "a rotated token's successor was not stored".to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::conformance::{NOW, at, code, family, live_family_ids, seed, token};
    use crate::traits::{AuthCodeStore, DynStore, RefreshTokenStore};

    type Answer<T> = oneshot::Receiver<StoreResult<T>>;

    fn redeem_step(code_hash: &str, family: Option<(&str, &str)>) -> (Step, Answer<Redeemed>) {
        let (reply, answer) = oneshot::channel();
        let family = family.map(|(f, t)| {
            let mut f = crate::conformance::family(f, "c1", "u1");
            f.code_hash = Some(code_hash.to_owned());
            let t = token(t, &f.family_id);
            (f, t)
        });
        let step = Step::Redeem {
            code_hash: code_hash.to_owned(),
            now: NOW + 1,
            family,
            reply,
        };
        (step, answer)
    }

    fn rotate_step(old: &str, new: &str, family_id: &str) -> (Step, Answer<Rotate>) {
        let (reply, answer) = oneshot::channel();
        let step = Step::Rotate {
            old_hash: old.to_owned(),
            new: token(new, family_id),
            at: at(NOW + 1),
            grace_secs: 0,
            reply,
        };
        (step, answer)
    }

    /// One batch, committed once, with a failing step among successful ones
    /// and steps that see the earlier steps of their own batch.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_commit_answers_each_step_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("g.db")).await.unwrap();
        let shared: DynStore = Arc::new(store.clone());
        seed(&shared).await;
        store
            .create_family(&family("f0", "c1", "u1"), &token("dup", "f0"))
            .await
            .unwrap();
        for k in ["k1", "k2", "k3"] {
            store.insert_code(&code(k, "c1", "u1")).await.unwrap();
        }
        for (f, t) in [("r1", "a1"), ("r2", "a2")] {
            store
                .create_family(&family(f, "c1", "u1"), &token(t, f))
                .await
                .unwrap();
        }

        let (s0, fresh) = redeem_step("k1", Some(("f1", "t1")));
        let (s1, dup_code) = redeem_step("k2", Some(("f2", "dup")));
        let (s2, replay) = redeem_step("k1", Some(("f1b", "t1b")));
        let (s3, rotated) = rotate_step("a1", "b1", "r1");
        let (s4, reused) = rotate_step("a1", "b1x", "r1");
        let (s5, dup_token) = rotate_step("a2", "dup", "r2");
        let (s6, bare) = redeem_step("k3", None);
        commit(store.writer_pool(), vec![s0, s1, s2, s3, s4, s5, s6]).await;

        let (rec, stored) = fresh.await.unwrap().unwrap().expect("k1 redeemed");
        assert_eq!(
            (rec.code_hash.as_str(), rec.used_at, stored),
            ("k1", Some(NOW + 1), true)
        );
        assert!(matches!(
            dup_code.await.unwrap(),
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(
            replay.await.unwrap().unwrap(),
            None,
            "the batch's own write decides"
        );
        assert!(matches!(
            rotated.await.unwrap().unwrap(),
            Rotate::Rotated { .. }
        ));
        assert!(matches!(
            reused.await.unwrap().unwrap(),
            Rotate::Reused { .. }
        ));
        assert!(matches!(
            dup_token.await.unwrap(),
            Err(StoreError::Conflict(_))
        ));
        let (rec, stored) = bare.await.unwrap().unwrap().expect("k3 redeemed");
        assert_eq!((rec.code_hash.as_str(), stored), ("k3", false));

        // Committed: the successful steps' writes are there.
        assert_eq!(
            store.get_refresh_token("t1").await.unwrap().0.family_id,
            "f1"
        );
        assert!(
            store
                .get_refresh_token("b1")
                .await
                .unwrap()
                .1
                .revoked_at
                .is_some()
        );
        assert!(store.get_code("k3").await.unwrap().used_at.is_some());
        // The failed steps wrote nothing.
        assert_eq!(store.get_code("k2").await.unwrap().used_at, None);
        let ids = live_family_ids(&store).await;
        assert!(!ids.contains(&"f2".to_owned()), "{ids:?}");
        assert_eq!(
            store.get_refresh_token("a2").await.unwrap().0.rotated_at,
            None
        );
        // The replay in the batch stored nothing either.
        assert!(matches!(
            store.get_refresh_token("t1b").await,
            Err(StoreError::NotFound)
        ));
        store.close().await;
    }
}
