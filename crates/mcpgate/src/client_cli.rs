//! The client role's CLI (MCP authorization, client side; checklist §2(c)):
//! `mcpgate login | tools | call | logout | status | bridge`, built on
//! [`mcpgate_client`]. None of these commands reads the server configuration.
//!
//! Progress and messages go to stderr; stdout carries only results (tool
//! listings, call results, status) — and, for `bridge`, only MCP messages.
//! No command ever prints a token: `status` shows issuer, resource, scopes
//! and expiry from [`TokenSummary`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use mcpgate_client::{
    DpopPolicy, Grant, Interactive, McpClient, OAuthClient, OAuthConfig, PreRegisteredClient,
    TokenStore, TokenSummary,
};
use mcpgate_net::{FetchPolicy, SafeFetcher};
use mcpgate_types::{ScopeSet, Secret};
use serde_json::Value;

use mcpgate_types::time::fmt_time;

/// Options every client command takes.
#[derive(Args, Debug, Clone)]
pub struct ClientOpts {
    /// Directory of the token store (default: `$XDG_DATA_HOME/mcpgate`).
    #[arg(long, env = "MCPGATE_TOKEN_DIR")]
    pub token_dir: Option<PathBuf>,
    /// Allow plain `http://` to loopback addresses (development only).
    #[arg(long)]
    pub allow_http_loopback: bool,
    /// Do not start a browser when authorization is needed: print the
    /// authorization URL on stderr and wait for the redirect.
    #[arg(long)]
    pub no_browser: bool,
}

/// The client subcommands.
#[derive(Subcommand, Debug)]
pub enum ClientCmd {
    /// Authorize mcpgate at an OAuth-protected MCP server and store the tokens.
    Login(LoginArgs),
    /// List the tools of an MCP server (after `mcpgate login`).
    Tools {
        /// The MCP server URL.
        url: String,
        /// Print the tool definitions as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Call a tool and print the text of its result.
    Call {
        /// The MCP server URL.
        url: String,
        /// The tool name.
        tool: String,
        /// The arguments, a JSON object (default `{}`).
        args: Option<String>,
        /// Print the raw `tools/call` result as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Forget (and revoke, when the server allows it) the tokens stored for a server.
    Logout {
        /// The MCP server URL.
        url: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Show what is stored: issuer, resource, scopes, expiry (never a token).
    Status {
        /// Only this MCP server URL.
        url: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Run a local stdio MCP server that forwards everything to a protected remote one.
    Bridge {
        /// The MCP server URL.
        url: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

/// `mcpgate login` arguments.
#[derive(Args, Debug)]
pub struct LoginArgs {
    /// The MCP server URL.
    pub url: String,
    /// A scope to ask for, besides those the server suggests (repeatable).
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// A client id registered out of band at the server's authorization server.
    #[arg(long)]
    pub client_id: Option<String>,
    /// A file holding the client secret of `--client-id` (confidential clients).
    #[arg(long, requires_all = ["client_id", "issuer"])]
    pub client_secret_file: Option<PathBuf>,
    /// A file holding the PKCS#8 PEM private key (P-256 or Ed25519) of `--client-id`: the
    /// client authenticates with `private_key_jwt`, signing an assertion for `--issuer`.
    #[arg(long, requires_all = ["client_id", "issuer"], conflicts_with = "client_secret_file")]
    pub private_key_file: Option<PathBuf>,
    /// The `kid` of `--private-key-file` as the client's published JWK set names it (default:
    /// the key's RFC 7638 thumbprint).
    #[arg(long, requires = "private_key_file")]
    pub private_key_id: Option<String>,
    /// Use the client credentials grant: a token for `--client-id` itself, with no user and
    /// no browser (a service). The token is not refreshable; log in again when it expires.
    #[arg(long, requires = "client_id")]
    pub client_credentials: bool,
    /// The authorization server `--client-id` is registered at (exact issuer
    /// string). A server that names another one is refused, and the secret
    /// is never sent there. Required with `--client-secret-file`.
    #[arg(long, requires = "client_id")]
    pub issuer: Option<String>,
    /// The https URL of this client's metadata document (CIMD).
    #[arg(long)]
    pub client_metadata_url: Option<String>,
    /// Insist on DPoP-bound tokens (RFC 9449): fail rather than take a bearer token when the
    /// authorization server does not offer DPoP. Without it, DPoP is used when both the
    /// authorization server and the MCP server offer it. The key is kept with the tokens.
    #[arg(long, conflicts_with = "no_dpop")]
    pub dpop: bool,
    /// Never ask for DPoP-bound tokens.
    #[arg(long)]
    pub no_dpop: bool,
    #[command(flatten)]
    pub opts: ClientOpts,
}

/// Runs a client command.
pub async fn run(cmd: ClientCmd) -> anyhow::Result<()> {
    match cmd {
        ClientCmd::Login(a) => {
            init_logging("warn");
            login(a).await
        }
        ClientCmd::Tools { url, json, opts } => {
            init_logging("warn");
            tools(&url, json, &opts).await
        }
        ClientCmd::Call {
            url,
            tool,
            args,
            json,
            opts,
        } => {
            init_logging("warn");
            call(&url, &tool, args.as_deref(), json, &opts).await
        }
        ClientCmd::Logout { url, opts } => {
            init_logging("warn");
            logout(&url, &opts).await
        }
        ClientCmd::Status { url, json, opts } => {
            init_logging("warn");
            status(url.as_deref(), json, &opts)
        }
        ClientCmd::Bridge { url, opts } => {
            init_logging("info");
            let oauth = oauth_client(&url, &opts, |c| c.auto_reauthorize = true)?;
            crate::bridge::run(&url, oauth, opts.allow_http_loopback).await
        }
    }
}

/// Logs on stderr only (stdout belongs to results and, for `bridge`, to MCP).
fn init_logging(default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("MCPGATE_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}

fn token_store(opts: &ClientOpts) -> anyhow::Result<TokenStore> {
    let dir = match &opts.token_dir {
        Some(d) => d.clone(),
        None => TokenStore::default_dir().context(
            "no data directory for the token store: set XDG_DATA_HOME or pass --token-dir DIR",
        )?,
    };
    Ok(TokenStore::new(dir))
}

fn fetcher(opts: &ClientOpts) -> SafeFetcher {
    SafeFetcher::new(if opts.allow_http_loopback {
        FetchPolicy::loopback_dev()
    } else {
        FetchPolicy::default()
    })
}

/// The OAuth client for `url`, with an interactive user agent (browser unless `--no-browser`).
fn oauth_client(
    url: &str,
    opts: &ClientOpts,
    configure: impl FnOnce(&mut OAuthConfig),
) -> anyhow::Result<Arc<OAuthClient>> {
    let mut config = OAuthConfig::new(url);
    configure(&mut config);
    let agent = Interactive {
        open_browser: !opts.no_browser,
        timeout: Duration::from_secs(300),
    };
    let oauth = OAuthClient::new(config, fetcher(opts), token_store(opts)?, Arc::new(agent))?;
    Ok(Arc::new(oauth))
}

fn mcp_client(url: &str, oauth: Arc<OAuthClient>, opts: &ClientOpts) -> anyhow::Result<McpClient> {
    Ok(McpClient::builder(url)
        .client_info("mcpgate", env!("CARGO_PKG_VERSION"))
        .auth(oauth)
        .allow_http_loopback(opts.allow_http_loopback)
        .build()?)
}

async fn login(a: LoginArgs) -> anyhow::Result<()> {
    let secret = match &a.client_secret_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the client secret file {}", path.display()))?;
            let text = text.trim_end_matches(['\r', '\n']);
            if text.is_empty() {
                bail!("the client secret file {} is empty", path.display());
            }
            Some(Secret::new(text.to_owned()))
        }
        None => None,
    };
    let private_key = match &a.private_key_file {
        Some(path) => {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("reading the private key file {}", path.display()))?;
            let key =
                mcpgate_jose::SigningKey::from_pkcs8_pem(&pem, a.private_key_id.as_deref())
                    .map_err(|e| anyhow::anyhow!("the private key file {}: {e}", path.display()))?;
            Some(Arc::new(key))
        }
        None => None,
    };
    let mut scopes = ScopeSet::new();
    for s in a.scopes.iter().flat_map(|s| s.split_whitespace()) {
        scopes.insert(s);
    }
    let oauth = oauth_client(&a.url, &a.opts, |c| {
        c.extra_scopes = scopes;
        c.client_metadata_url = a.client_metadata_url.clone();
        c.dpop = match (a.dpop, a.no_dpop) {
            (true, _) => DpopPolicy::Required,
            (_, true) => DpopPolicy::Off,
            _ => DpopPolicy::WhenOffered,
        };
        if a.client_credentials {
            c.grant = Grant::ClientCredentials;
        }
        if let Some(id) = &a.client_id {
            c.require_pre_registered = true;
            c.pre_registered.push(PreRegisteredClient {
                issuer: a.issuer.clone(),
                client_id: id.clone(),
                client_secret: secret,
                token_endpoint_auth_method: None,
                private_key,
            });
        }
    })?;
    let client = mcp_client(&a.url, oauth, &a.opts)?;
    eprintln!("Logging in to {} ...", a.url);
    let summary = client
        .login()
        .await
        .with_context(|| format!("login to {} failed", a.url))?;
    eprintln!("Logged in to {}.", a.url);
    eprint!("{}", describe(&summary, now()));
    Ok(())
}

/// How long `tools` and `call` wait for the user to complete a URL-mode
/// elicitation the server asked for (connecting an account).
const ELICITATION_WAIT: Duration = Duration::from_secs(600);
/// How often they try again meanwhile.
const ELICITATION_POLL: Duration = Duration::from_secs(2);

/// The URL-mode elicitations of a URLElicitationRequiredError in `e`'s chain.
fn url_elicitations(e: &anyhow::Error) -> Option<Vec<mcpgate_client::mcp::UrlElicitation>> {
    let Some(mcpgate_client::ClientError::JsonRpc {
        code: mcpgate_client::mcp::URL_ELICITATION_REQUIRED,
        data: Some(data),
        ..
    }) = e.downcast_ref::<mcpgate_client::ClientError>()
    else {
        return None;
    };
    let list = mcpgate_client::mcp::url_elicitations(data);
    (!list.is_empty()).then_some(list)
}

/// Runs `op`. When the server answers that the user must first complete a
/// URL-mode elicitation (typically: connect their own account at a service
/// the server acts on), shows the message and the full URL on stderr once
/// (never opening it unasked: the user decides) and runs `op` again every
/// two seconds until the server no longer asks, for at most ten minutes.
async fn with_elicitations<T, F, Fut>(mut op: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let deadline = tokio::time::Instant::now() + ELICITATION_WAIT;
    let mut shown = false;
    loop {
        let e = match op().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let Some(list) = url_elicitations(&e) else {
            return Err(e);
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(e.context("the server still asks for the elicitation shown above"));
        }
        if !shown {
            for el in &list {
                eprintln!("{}", mcpgate_client::mcp::describe_url_elicitation(el));
            }
            eprintln!("Waiting for it to be completed (Ctrl-C to stop) ...");
            shown = true;
        }
        tokio::time::sleep(ELICITATION_POLL).await;
    }
}

/// Builds an authorized client and connects; fails with a clear message when nothing is stored.
async fn connected(url: &str, opts: &ClientOpts) -> anyhow::Result<McpClient> {
    let oauth = oauth_client(url, opts, |_| {})?;
    if oauth.status().await?.is_none() {
        bail!("not logged in to {url}: run `mcpgate login {url}` first");
    }
    let client = mcp_client(url, oauth, opts)?;
    client
        .connect()
        .await
        .with_context(|| format!("connecting to {url} failed"))?;
    Ok(client)
}

async fn tools(url: &str, json: bool, opts: &ClientOpts) -> anyhow::Result<()> {
    let tools = with_elicitations(|| async {
        let client = connected(url, opts).await?;
        let listed = client.list_tools().await;
        let _ = client.close().await;
        listed.with_context(|| format!("tools/list at {url} failed"))
    })
    .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&tools)?);
        return Ok(());
    }
    for tool in &tools {
        let name = tool.get("name").and_then(Value::as_str).unwrap_or("?");
        let description = tool
            .get("description")
            .and_then(Value::as_str)
            .and_then(|d| d.lines().next())
            .unwrap_or("");
        println!("{name}\t{description}");
    }
    eprintln!("{} tool(s) at {url}", tools.len());
    Ok(())
}

async fn call(
    url: &str,
    tool: &str,
    args: Option<&str>,
    json: bool,
    opts: &ClientOpts,
) -> anyhow::Result<()> {
    let arguments: Value = match args {
        Some(text) => serde_json::from_str(text)
            .with_context(|| format!("the arguments of {tool} are not valid JSON"))?,
        None => Value::Object(Default::default()),
    };
    if !arguments.is_object() {
        bail!("the arguments of {tool} must be a JSON object, like '{{\"id\": 1}}'");
    }
    let result = with_elicitations(|| async {
        let client = connected(url, opts).await?;
        let called = client.call_tool(tool, arguments.clone()).await;
        let _ = client.close().await;
        called.with_context(|| format!("calling {tool} at {url} failed"))
    })
    .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print!("{}", result_text(&result));
    }
    if result.get("isError").and_then(Value::as_bool) == Some(true) {
        bail!("the tool {tool} reported an error");
    }
    Ok(())
}

/// The text of a `tools/call` result: its text blocks, one per line; other
/// blocks as a short placeholder; the structured content if there is nothing else.
pub fn result_text(result: &Value) -> String {
    let mut out = String::new();
    let blocks = result
        .get("content")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for block in &blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                out.push_str(block.get("text").and_then(Value::as_str).unwrap_or(""));
            }
            Some(kind) => {
                let mime = block.get("mimeType").and_then(Value::as_str).unwrap_or("");
                out.push_str(&format!("[{kind} {mime}]").replace(" ]", "]"));
            }
            None => out.push_str("[unknown content]"),
        }
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    if blocks.is_empty()
        && let Some(s) = result.get("structuredContent")
    {
        out.push_str(&s.to_string());
        out.push('\n');
    }
    out
}

async fn logout(url: &str, opts: &ClientOpts) -> anyhow::Result<()> {
    let oauth = oauth_client(url, opts, |_| {})?;
    let removed = oauth
        .logout()
        .await
        .with_context(|| format!("logout from {url} failed"))?;
    if removed == 0 {
        eprintln!("Nothing was stored for {url}.");
    } else {
        eprintln!("Logged out of {url} ({removed} token set(s) removed).");
    }
    Ok(())
}

fn status(url: Option<&str>, json: bool, opts: &ClientOpts) -> anyhow::Result<()> {
    let store = token_store(opts)?;
    let mut entries: Vec<TokenSummary> = store
        .list()
        .with_context(|| format!("reading the token store {}", store.dir().display()))?
        .iter()
        .map(|e| e.summary())
        .filter(|s| url.is_none_or(|u| s.server_url == u))
        .collect();
    entries.sort_by(|a, b| a.server_url.cmp(&b.server_url));
    if json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(());
    }
    if entries.is_empty() {
        eprintln!(
            "Nothing stored in {}; run `mcpgate login URL` to log in.",
            store.dir().display()
        );
        return Ok(());
    }
    let now = now();
    for (i, s) in entries.iter().enumerate() {
        if i > 0 {
            println!();
        }
        print!("{}", describe(s, now));
    }
    Ok(())
}

/// A stored grant, described without any secret.
fn describe(s: &TokenSummary, now: i64) -> String {
    let expiry = match s.expires_at {
        Some(t) if t > now => format!("{} (in {})", fmt_time(t), duration(t - now)),
        Some(t) => format!("{} (expired {} ago)", fmt_time(t), duration(now - t)),
        None => "unknown".to_owned(),
    };
    format!(
        "server:   {}\nissuer:   {}\nresource: {}\nscopes:   {}\nexpires:  {}\nrefresh:  {}\n{}",
        s.server_url,
        s.issuer,
        s.resource,
        s.scope.as_deref().unwrap_or("(none)"),
        expiry,
        if s.has_refresh_token {
            "yes"
        } else {
            "no (log in again when the access token expires)"
        },
        if s.dpop_bound {
            "bound:    DPoP (a key kept with the tokens)\n"
        } else {
            ""
        },
    )
}

fn duration(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn result_text_prints_text_blocks() {
        let r = json!({"content": [
            {"type": "text", "text": "hello"},
            {"type": "image", "mimeType": "image/png", "data": "AAAA"},
            {"type": "text", "text": "two\n"}
        ]});
        assert_eq!(result_text(&r), "hello\n[image image/png]\ntwo\n");
        let r = json!({"content": [], "structuredContent": {"a": 1}});
        assert_eq!(result_text(&r), "{\"a\":1}\n");
    }

    #[test]
    fn describe_never_shows_a_token() {
        let s = TokenSummary {
            issuer: "https://as.example.com".into(),
            resource: "https://mcp.example.com/mcp".into(),
            server_url: "https://mcp.example.com/mcp".into(),
            expires_at: Some(1_000 + 3_600),
            scope: Some("notes:read".into()),
            has_refresh_token: true,
            dpop_bound: false,
            updated_at: 1_000,
        };
        let text = describe(&s, 1_000);
        assert!(text.contains("issuer:   https://as.example.com"), "{text}");
        assert!(
            text.contains("expires:  1970-01-01T01:16:40Z (in 60 min)"),
            "{text}"
        );
        assert!(text.contains("scopes:   notes:read"), "{text}");
        assert_eq!(duration(90), "90 s");
        assert_eq!(duration(3 * 86_400), "3 days");
    }
}
