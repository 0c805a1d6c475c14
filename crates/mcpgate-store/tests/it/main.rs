//! The store-conformance suite (`mcpgate_store::conformance`) run as one
//! trial per case and backend, plus what only a real backend can show:
//! durability across close and reopen, SQLite file permissions.
//!
//! SQLite trials each get a fresh database file in a temporary directory.
//! PostgreSQL trials need `MCPGATE_TEST_POSTGRES_URL` (for example
//! `postgres://postgres@127.0.0.1:5432/test`); without it they are reported
//! as ignored, never as passed. With it, the run creates one database of
//! its own, gives each trial a fresh schema in it, and drops it at the end.

mod postgres;
mod sqlite;

use std::future::Future;
use std::process::ExitCode;

use libtest_mimic::{Arguments, Failed};
use mcpgate_store::conformance;

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let pg = postgres::Postgres::from_env();
    let mut trials = Vec::new();
    for case in conformance::cases() {
        trials.push(sqlite::case_trial(case));
        trials.push(pg.case_trial(case));
    }
    trials.extend(sqlite::extra_trials());
    trials.extend(pg.extra_trials());
    let conclusion = libtest_mimic::run(&args, trials);
    pg.teardown();
    conclusion.exit_code()
}

/// Runs `test` to completion on a fresh multi-thread runtime (the
/// concurrency cases race tasks across its workers).
pub(crate) fn block_on<F: Future<Output = Result<(), Failed>>>(test: F) -> Result<(), Failed> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .map_err(|e| Failed::from(format!("tokio runtime: {e}")))?
        .block_on(test)
}
