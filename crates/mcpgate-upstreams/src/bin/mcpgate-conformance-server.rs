//! `mcpgate-conformance-server`: the fixture MCP server for the official MCP
//! conformance suite (server side), see `mcpgate_upstreams::conformance`.
//!
//! ```text
//! mcpgate-conformance-server stdio          serve over stdio
//! mcpgate-conformance-server http [PORT]    serve http://127.0.0.1:PORT/mcp (default 0 = any
//!                                           free port); first stdout line: LISTENING <addr>;
//!                                           runs until interrupted or terminated
//! ```
//!
//! Logs go to stderr (`RUST_LOG`, default `info`).

use std::io::Write as _;
use std::process::ExitCode;

use mcpgate_upstreams::conformance::{run_conformance_stdio, serve_conformance_http};

const USAGE: &str = "usage: mcpgate-conformance-server <stdio | http [PORT]>";

async fn http(port: u16) -> anyhow::Result<()> {
    let handle = serve_conformance_http(port).await?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "LISTENING {}", handle.addr())?;
        stdout.flush()?;
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    handle.shutdown().await
}

#[tokio::main]
async fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["stdio"] => run_conformance_stdio().await,
        ["http"] => http(0).await,
        ["http", port] => match port.parse() {
            Ok(p) => http(p).await,
            Err(_) => {
                eprintln!("{port:?} is not a port number\n{USAGE}");
                return ExitCode::from(2);
            }
        },
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
