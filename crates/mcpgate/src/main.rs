//! The `mcpgate` binary: the CLI, config loading and wiring of the roles.

use mcpgate::{admin_cli, client_cli, config, serve};

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "mcpgate",
    version,
    about = "OAuth 2.1 authorization server, gateway and client for MCP"
)]
struct Cli {
    /// Config file (default: ./mcpgate.toml, then $XDG_CONFIG_HOME/mcpgate/mcpgate.toml, else embedded defaults).
    #[arg(long, global = true, env = "MCPGATE_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory for the SQLite database and the generated master key.
    #[arg(long, global = true, env = "MCPGATE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the server.
    Serve {
        /// Demo mode: create an `admin` user with a one-time password and print what to do next.
        #[arg(long)]
        demo: bool,
        /// Override the listen address (IP:port).
        #[arg(long)]
        listen: Option<String>,
        /// Serve TLS with a freshly generated self-signed certificate (local testing only).
        #[arg(long)]
        tls_self_signed: bool,
    },
    /// Run the demo notes MCP server on stdin/stdout (what `serve --demo` fronts as /mcp/notes).
    DemoUpstream,
    /// Validate the configuration and print what would run (secrets redacted).
    CheckConfig,
    /// Manage local user accounts.
    Users {
        #[command(subcommand)]
        cmd: admin_cli::UsersCmd,
    },
    /// Manage pre-registered OAuth clients.
    Clients {
        #[command(subcommand)]
        cmd: admin_cli::ClientsCmd,
    },
    /// Inspect and revoke users' consents to clients.
    Consents {
        #[command(subcommand)]
        cmd: admin_cli::ConsentsCmd,
    },
    /// Inspect and rotate token signing keys.
    Keys {
        #[command(subcommand)]
        cmd: admin_cli::KeysCmd,
    },
    /// List and end users' sign-in sessions at the authorization server.
    Sessions {
        #[command(subcommand)]
        cmd: admin_cli::SessionsCmd,
    },
    /// Read the gateway's audit log from the store, newest first.
    Audit(admin_cli::AuditArgs),
    /// Client commands: login, tools, call, logout, status, bridge.
    #[command(flatten)]
    Client(client_cli::ClientCmd),
}

fn init_logging(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("MCPGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only on a terminal: log files and journald get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> std::process::ExitCode {
    // `mcpgate __sandbox-exec …` is the sandbox helper of stdio children: it
    // applies the sandbox and executes the server, before anything else runs.
    mcpgate_sandbox::helper::init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // The client role reads no server configuration.
    let cli = match cli.cmd {
        Cmd::Client(cmd) => return client_cli::run(cmd).await,
        cmd => Cli { cmd, ..cli },
    };
    if matches!(cli.cmd, Cmd::DemoUpstream) {
        // A stdio MCP server: stdout carries only MCP messages, logs go to
        // stderr, and no configuration is read.
        init_logging(false);
        return mcpgate_upstreams::run_notes_stdio().await;
    }
    let (listen, tls_self_signed, demo) = match &cli.cmd {
        Cmd::Serve {
            listen,
            tls_self_signed,
            demo,
        } => (listen.clone(), *tls_self_signed, *demo),
        _ => (None, false, false),
    };
    let path = config::find(cli.config.as_deref());
    let overrides = config::Overrides {
        listen,
        data_dir: cli.data_dir.clone(),
        tls_self_signed,
    };
    let cfg = config::load(path.as_deref(), &overrides)?;
    init_logging(cfg.log_json);
    match cli.cmd {
        Cmd::CheckConfig => admin_cli::print_config(&cfg),
        Cmd::DemoUpstream | Cmd::Client(_) => Ok(()),
        Cmd::Serve { .. } => {
            let runtime = serve::Runtime::open(cfg).await?;
            if demo {
                admin_cli::demo_bootstrap(&runtime).await?;
            }
            serve::serve(runtime).await
        }
        Cmd::Users { cmd } => admin_cli::users(&serve::Runtime::open(cfg).await?, cmd).await,
        Cmd::Clients { cmd } => admin_cli::clients(&serve::Runtime::open(cfg).await?, cmd).await,
        Cmd::Consents { cmd } => admin_cli::consents(&serve::Runtime::open(cfg).await?, cmd).await,
        Cmd::Keys { cmd } => admin_cli::keys(&serve::Runtime::open(cfg).await?, cmd).await,
        Cmd::Sessions { cmd } => admin_cli::sessions(&serve::Runtime::open(cfg).await?, cmd).await,
        Cmd::Audit(a) => admin_cli::audit(&serve::Runtime::open(cfg).await?, a).await,
    }
}
