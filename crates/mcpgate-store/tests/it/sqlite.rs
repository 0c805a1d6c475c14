//! SQLite trials: each on a fresh database file in its own temp directory.

use std::sync::Arc;

use libtest_mimic::{Failed, Trial};
use mcpgate_store::conformance::{self, Case};
use mcpgate_store::{SqliteStore, Store};
use sqlx::Connection;

use crate::block_on;

const DB_FILE: &str = "mcpgate.db";

async fn open(dir: &tempfile::TempDir) -> Result<SqliteStore, Failed> {
    SqliteStore::open(&dir.path().join(DB_FILE))
        .await
        .map_err(|e| format!("open sqlite store: {e}").into())
}

fn temp_dir() -> Result<tempfile::TempDir, Failed> {
    tempfile::tempdir().map_err(|e| format!("temp dir: {e}").into())
}

pub(crate) fn case_trial(case: Case) -> Trial {
    Trial::test(format!("sqlite::{}", case.name), move || {
        let dir = temp_dir()?;
        block_on(async move {
            let store = open(&dir).await?;
            (case.run)(Arc::new(store.clone())).await;
            store.close().await;
            Ok(())
        })
    })
}

pub(crate) fn extra_trials() -> Vec<Trial> {
    vec![
        Trial::test("sqlite::durability_across_reopen", || {
            let dir = temp_dir()?;
            block_on(async move {
                let first = open(&dir).await?;
                conformance::durability_write(Arc::new(first.clone())).await;
                first.close().await;
                drop(first);
                let second = open(&dir).await?;
                conformance::durability_verify(Arc::new(second.clone())).await;
                second.close().await;
                Ok(())
            })
        }),
        Trial::test("sqlite::open_settings", || {
            let dir = temp_dir()?;
            block_on(async move {
                let store = open(&dir).await?;
                assert_eq!(store.backend_name(), "sqlite");
                // Migrations are idempotent: opening twice at once works.
                let again = open(&dir).await?;
                again.close().await;
                let path = dir.path().join(DB_FILE);
                check_private(&path)?;
                // WAL is a property of the file: any connection sees it.
                let mut raw = sqlx::SqliteConnection::connect_with(
                    &sqlx::sqlite::SqliteConnectOptions::new().filename(&path),
                )
                .await
                .map_err(|e| e.to_string())?;
                let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
                    .fetch_one(&mut raw)
                    .await
                    .map_err(|e| e.to_string())?;
                assert_eq!(mode, "wal");
                raw.close().await.map_err(|e| e.to_string())?;
                if !path.with_extension("db-wal").exists() {
                    return Err("no -wal file while the store is open".into());
                }
                store.close().await;
                // Opening a path in a missing directory fails cleanly.
                let missing = dir.path().join("no/such/dir/x.db");
                match SqliteStore::open(&missing).await {
                    Err(mcpgate_store::StoreError::Backend(_)) => Ok(()),
                    other => {
                        Err(format!("expected Backend error, got {:?}", other.map(|_| ())).into())
                    }
                }
            })
        }),
    ]
}

/// The database file (and its WAL, if present) is readable by its owner only.
#[cfg(unix)]
fn check_private(path: &std::path::Path) -> Result<(), Failed> {
    use std::os::unix::fs::PermissionsExt;
    let wal = path.with_extension("db-wal");
    for file in [path.to_path_buf(), wal] {
        match std::fs::metadata(&file) {
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(format!("{} has mode {mode:o}", file.display()).into());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", file.display()).into()),
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &std::path::Path) -> Result<(), Failed> {
    Ok(())
}
