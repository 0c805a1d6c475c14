//! `mcpgate-test-upstream`: the fixture MCP servers as a child process, for
//! end-to-end tests that spawn real upstreams.
//!
//! ```text
//! mcpgate-test-upstream notes-stdio     the notes demo over stdio
//! mcpgate-test-upstream testing-stdio   the testing fixture over stdio (crash enabled)
//! mcpgate-test-upstream testing-http    the testing fixture on 127.0.0.1:0/mcp (crash
//!                                       enabled); first stdout line: LISTENING <addr>;
//!                                       runs until killed or interrupted
//! ```
//!
//! Logs go to stderr (filter with `RUST_LOG`, default `info`); stdout carries
//! only JSON-RPC (stdio modes) or the `LISTENING` line (HTTP mode).

use std::io::Write as _;
use std::process::ExitCode;

use mcpgate_upstreams::{TestingOptions, run_notes_stdio, run_testing_stdio};

const USAGE: &str = "usage: mcpgate-test-upstream <notes-stdio | testing-stdio | testing-http>";

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

async fn testing_http() -> anyhow::Result<()> {
    let options = TestingOptions::default().with_allow_crash(true);
    let (addr, handle) = mcpgate_upstreams::serve_testing_http_with(options).await?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "LISTENING {addr}")?;
        stdout.flush()?;
    }
    tokio::signal::ctrl_c().await?;
    handle.shutdown().await
}

#[tokio::main]
async fn main() -> ExitCode {
    init_tracing();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["notes-stdio"] => run_notes_stdio().await,
        ["testing-stdio"] => run_testing_stdio().await,
        ["testing-http"] => testing_http().await,
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}
