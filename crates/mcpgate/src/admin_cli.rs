//! The operator subcommands: `users`, `clients`, `consents`, `keys`,
//! `sessions`, `audit`, `check-config`, and the demo bootstrap. Secrets are printed once, on
//! creation, and never again.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use mcpgate_authz::admin::{self, AdminError, ClientSpec};
use mcpgate_store::{KeyState, StoreError};
use mcpgate_types::client_metadata::TokenEndpointAuthMethod;

use crate::config::{Config, MasterKeySource, StoreConfig, TlsConfig};
use crate::serve::Runtime;
use mcpgate_types::time::fmt_time;

#[derive(Subcommand, Debug)]
pub enum UsersCmd {
    /// Add a user. Without --password-file a one-time password is printed.
    Add {
        username: String,
        #[arg(long)]
        display_name: Option<String>,
        /// Group carried in the token's `groups` claim (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Read the password from this file (first line).
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    List,
    Remove {
        username: String,
    },
    /// Refuse the user's sign-in, codes, refresh tokens and sessions (their
    /// access tokens already issued run until they expire).
    Disable {
        username: String,
    },
    /// Let a disabled user sign in again.
    Enable {
        username: String,
    },
    /// Set a new password (or print a new one-time password).
    Passwd {
        username: String,
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// The user's connected accounts at `user_oauth` upstreams (never their
    /// tokens); with --unlink, disconnect one (revoked at the upstream's
    /// server where it offers RFC 7009).
    Connections {
        username: String,
        /// The upstream whose connected account to disconnect.
        #[arg(long)]
        unlink: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClientsCmd {
    /// Pre-register a client. Prints its id (and secret, once, if confidential).
    Add {
        #[arg(long)]
        name: String,
        /// Exact redirect URI (repeatable).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// none (public), client_secret_basic, client_secret_post or
        /// private_key_jwt (with --jwks-uri or --jwks-file).
        #[arg(long, default_value = "none")]
        auth_method: String,
        /// private_key_jwt: the URL where the client publishes its public keys.
        #[arg(long, conflicts_with = "jwks_file")]
        jwks_uri: Option<String>,
        /// private_key_jwt: a file holding the client's public JWK set (JSON).
        #[arg(long)]
        jwks_file: Option<std::path::PathBuf>,
        /// Grant type (repeatable; default authorization_code + refresh_token).
        #[arg(long = "grant")]
        grants: Vec<String>,
        /// Scope the client may request (repeatable; default: any configured scope).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Use this client id instead of a generated one.
        #[arg(long)]
        client_id: Option<String>,
    },
    List,
    Remove {
        client_id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConsentsCmd {
    /// List consents (all, or one user's).
    List {
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a user's consent to a client, and the client's refresh tokens for that user.
    Revoke { username: String, client_id: String },
}

#[derive(Subcommand, Debug)]
pub enum SessionsCmd {
    /// Live sign-in sessions at the authorization server (all, or one user's).
    List {
        #[arg(long)]
        user: Option<String>,
    },
    /// End one session (by the handle `list` shows) or every session of a
    /// user: they must sign in again before the next authorization.
    End {
        /// The session's handle.
        #[arg(required_unless_present = "user", conflicts_with = "user")]
        handle: Option<String>,
        #[arg(long)]
        user: Option<String>,
    },
}

/// The id of the local user `name`.
async fn user_id(rt: &Runtime, name: String) -> anyhow::Result<String> {
    match rt.store.get_user_by_username(&name).await {
        Ok(u) => Ok(u.id),
        Err(StoreError::NotFound) => Err(anyhow::anyhow!("user {name:?} not found")),
        Err(e) => Err(e.into()),
    }
}

/// How a session is named to operators: the start of its stored hash (the
/// cookie itself is never stored).
const HANDLE_LEN: usize = 12;

fn handle(session_hash: &str) -> &str {
    &session_hash[..session_hash.len().min(HANDLE_LEN)]
}

pub async fn sessions(rt: &Runtime, cmd: SessionsCmd) -> anyhow::Result<()> {
    let now = rt.clock.now();
    let user_id = |name: String| user_id(rt, name);
    match cmd {
        SessionsCmd::List { user } => {
            let id = match user {
                Some(u) => Some(user_id(u).await?),
                None => None,
            };
            let list = rt.store.list_sessions(id.as_deref(), now).await?;
            if list.is_empty() {
                println!("no sessions");
            }
            for s in list {
                let who = rt
                    .store
                    .get_user(&s.user_id)
                    .await
                    .map(|u| u.username)
                    .unwrap_or(s.user_id);
                println!(
                    "{}\t{who}\tsigned in {}\tuntil {}",
                    handle(&s.session_hash),
                    fmt_time(s.auth_time),
                    fmt_time(s.expires_at)
                );
            }
        }
        SessionsCmd::End { user: Some(u), .. } => {
            let n = rt
                .store
                .delete_sessions_of(&user_id(u.clone()).await?)
                .await?;
            println!("ended {n} session(s) of {u}");
        }
        SessionsCmd::End {
            handle: Some(h), ..
        } => {
            if h.len() < HANDLE_LEN {
                bail!(
                    "session handle {h:?}: give the {HANDLE_LEN} characters `sessions list` shows"
                );
            }
            let found: Vec<_> = rt
                .store
                .list_sessions(None, now)
                .await?
                .into_iter()
                .filter(|s| s.session_hash.starts_with(&h))
                .collect();
            match found.as_slice() {
                [s] => {
                    rt.store.delete_session(&s.session_hash).await?;
                    println!("ended session {h}");
                }
                [] => bail!("no live session {h:?}"),
                _ => bail!("{h:?} names several sessions: give more of it"),
            }
        }
        SessionsCmd::End { .. } => bail!("name a session or --user"),
    }
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum KeysCmd {
    List,
    /// Add a new signing key; the old one stays published for the grace period.
    Rotate,
}

/// `mcpgate audit`: the gateway's decisions from the store's audit log,
/// newest first.
#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    /// How far back: a duration such as `90s`, `15m`, `2h` or `7d`.
    #[arg(long, default_value = "24h")]
    since: String,
    /// Only records older than this duration ago.
    #[arg(long)]
    until: Option<String>,
    /// A local username, or a token subject as recorded (another issuer's).
    #[arg(long)]
    user: Option<String>,
    /// The token issuer (with --user: mcpgate's own unless given).
    #[arg(long)]
    issuer: Option<String>,
    /// The OAuth client id.
    #[arg(long)]
    client: Option<String>,
    /// The upstream name.
    #[arg(long)]
    upstream: Option<String>,
    /// allow, deny, step_up, unauthenticated, rate_limited, error or connect_account.
    #[arg(long)]
    decision: Option<String>,
    /// At most this many records.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// One JSON object per record and line.
    #[arg(long)]
    json: bool,
}

/// The audit decisions the gateway writes.
const DECISIONS: &[&str] = &[
    "allow",
    "deny",
    "step_up",
    "unauthenticated",
    "rate_limited",
    "error",
    "connect_account",
];

/// `90s`, `15m`, `2h`, `7d` in milliseconds.
fn parse_ago(field: &str, s: &str) -> anyhow::Result<i64> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = n
        .parse()
        .ok()
        .with_context(|| format!("--{field} {s:?}: a number and a unit (s, m, h or d)"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("--{field} {s:?}: the unit must be s, m, h or d"),
    };
    Ok(n.saturating_mul(secs).saturating_mul(1000))
}

pub async fn audit(rt: &Runtime, a: AuditArgs) -> anyhow::Result<()> {
    if let Some(d) = &a.decision
        && !DECISIONS.contains(&d.as_str())
    {
        bail!("--decision {d:?}: one of {}", DECISIONS.join(", "));
    }
    let now_ms = rt.clock.now_ms();
    let mut q = mcpgate_store::AuditQuery {
        since_ms: now_ms.saturating_sub(parse_ago("since", &a.since)?),
        until_ms: match &a.until {
            Some(u) => Some(now_ms.saturating_sub(parse_ago("until", u)?)),
            None => None,
        },
        issuer: a.issuer.clone(),
        client_id: a.client,
        upstream: a.upstream,
        decision: a.decision,
        limit: a.limit.max(1),
        ..Default::default()
    };
    if let Some(u) = &a.user {
        // A local user is (our issuer, their id); anything else is a subject.
        match rt.store.get_user_by_username(u).await {
            Ok(user) => {
                q.subject = Some(user.id);
                q.issuer
                    .get_or_insert_with(|| rt.config.authz.issuer.clone());
            }
            Err(StoreError::NotFound) => q.subject = Some(u.clone()),
            Err(e) => return Err(e.into()),
        }
    }
    let records = rt.store.query_audit(&q).await?;
    for r in &records {
        if a.json {
            println!("{}", serde_json::to_string(r)?);
            continue;
        }
        let who = r.subject.as_deref().unwrap_or("-");
        println!(
            "{}.{:03}Z\t{}/{}\t{}\t{}\t{}\t{}\tuser={who}\tclient={}\t{}ms\t{}",
            fmt_time(r.time_ms.div_euclid(1000)).trim_end_matches('Z'),
            r.time_ms.rem_euclid(1000),
            r.decision,
            r.reason,
            r.status,
            r.upstream,
            r.method.as_deref().unwrap_or("-"),
            r.tool.as_deref().unwrap_or("-"),
            r.client_id.as_deref().unwrap_or("-"),
            r.latency_ms,
            r.request_id,
        );
    }
    if records.is_empty() && !a.json {
        eprintln!("no audit records match");
    }
    Ok(())
}

fn read_password_file(p: &PathBuf) -> anyhow::Result<String> {
    let s = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    Ok(s.lines().next().unwrap_or("").to_string())
}

pub async fn users(rt: &Runtime, cmd: UsersCmd) -> anyhow::Result<()> {
    let ctx = rt.admin();
    match cmd {
        UsersCmd::Add {
            username,
            display_name,
            groups,
            password_file,
        } => {
            let pw = password_file.as_ref().map(read_password_file).transpose()?;
            let (u, otp) = admin::create_user(
                &ctx,
                &username,
                display_name.as_deref(),
                pw.as_deref(),
                &groups,
            )
            .await?;
            println!("added user {} (id {})", u.username, u.id);
            if let Some(otp) = otp {
                println!("one-time password: {otp}");
                println!("(it must be changed at the first sign-in)");
            }
        }
        UsersCmd::List => {
            let users = rt.store.list_users().await?;
            if users.is_empty() {
                println!("no users");
            }
            for u in users {
                let flags = [
                    (u.disabled, "disabled"),
                    (u.must_change_password, "one-time password"),
                ]
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, n)| *n)
                .collect::<Vec<_>>()
                .join(", ");
                println!(
                    "{}\t{}\tgroups=[{}]\tcreated {}{}",
                    u.username,
                    u.id,
                    u.groups.join(","),
                    fmt_time(u.created_at),
                    if flags.is_empty() {
                        String::new()
                    } else {
                        format!("\t({flags})")
                    }
                );
            }
        }
        UsersCmd::Remove { username } => {
            admin::remove_user(&ctx, &username).await?;
            println!("removed user {username} with their consents, sessions and tokens");
        }
        UsersCmd::Disable { username } => {
            if admin::set_disabled(&ctx, &username, true).await? {
                println!(
                    "disabled user {username}: sign-in, codes, refresh tokens, sessions and the \
                     access tokens already issued are refused"
                );
            } else {
                println!("user {username} was already disabled");
            }
        }
        UsersCmd::Enable { username } => {
            if admin::set_disabled(&ctx, &username, false).await? {
                println!("enabled user {username}");
            } else {
                println!("user {username} was not disabled");
            }
        }
        UsersCmd::Passwd {
            username,
            password_file,
        } => {
            let pw = password_file.as_ref().map(read_password_file).transpose()?;
            match admin::set_password(&ctx, &username, pw.as_deref()).await? {
                Some(otp) => println!("one-time password for {username}: {otp}"),
                None => println!("password of {username} changed"),
            }
        }
        UsersCmd::Connections { username, unlink } => {
            let id = user_id(rt, username.clone()).await?;
            if let Some(upstream) = unlink {
                let gone = match &rt.vault {
                    Some(v) => v.unlink(&id, &upstream).await?,
                    None => match rt.store.delete_upstream_grant(&id, &upstream).await {
                        Ok(_) => true,
                        Err(StoreError::NotFound) => false,
                        Err(e) => return Err(e.into()),
                    },
                };
                if gone {
                    println!("disconnected {username}'s account at {upstream}");
                } else {
                    println!("{username} has no connected account at {upstream}");
                }
                return Ok(());
            }
            let grants = rt.store.list_upstream_grants(&id).await?;
            if grants.is_empty() {
                println!("{username} has no connected accounts");
            }
            for g in grants {
                println!(
                    "{}\tscope=[{}]\tconnected {}\trenewed {}",
                    g.upstream,
                    g.scope,
                    fmt_time(g.created_at),
                    fmt_time(g.updated_at)
                );
            }
        }
    }
    Ok(())
}

pub async fn clients(rt: &Runtime, cmd: ClientsCmd) -> anyhow::Result<()> {
    match cmd {
        ClientsCmd::Add {
            name,
            redirect_uris,
            auth_method,
            grants,
            scopes,
            client_id,
            jwks_uri,
            jwks_file,
        } => {
            let method = TokenEndpointAuthMethod::parse(&auth_method)
                .with_context(|| format!("--auth-method {auth_method:?} is not none, client_secret_basic, client_secret_post or private_key_jwt"))?;
            let jwks = jwks_file
                .map(|f| crate::config::read_jwks_file(&f))
                .transpose()?;
            let grant_types = if grants.is_empty() {
                vec!["authorization_code".into(), "refresh_token".into()]
            } else {
                grants
            };
            let spec = ClientSpec {
                client_id,
                name,
                redirect_uris,
                auth_method: method,
                grant_types,
                scopes,
                secret: None,
                jwks,
                jwks_uri,
            };
            let (c, secret) = admin::create_client(&rt.admin(), &spec, false).await?;
            println!("client_id: {}", c.client_id);
            if let Some(s) = secret {
                println!("client_secret: {s}");
                println!("(shown once; only its hash is stored)");
            }
        }
        ClientsCmd::List => {
            let list = rt.store.list_clients().await?;
            if list.is_empty() {
                println!("no clients");
            }
            for c in list {
                println!(
                    "{}\t{}\t{}\t{}\tredirects=[{}]",
                    c.client_id,
                    c.kind.as_str(),
                    c.token_endpoint_auth_method,
                    c.client_name.unwrap_or_default(),
                    c.redirect_uris.join(" ")
                );
            }
        }
        ClientsCmd::Remove { client_id } => {
            admin::remove_client(&rt.admin(), &client_id).await?;
            println!("removed client {client_id} with its consents and tokens");
        }
    }
    Ok(())
}

pub async fn consents(rt: &Runtime, cmd: ConsentsCmd) -> anyhow::Result<()> {
    let user_id = |name: String| user_id(rt, name);
    match cmd {
        ConsentsCmd::List { user } => {
            let id = match user {
                Some(u) => Some(user_id(u).await?),
                None => None,
            };
            let list = rt.store.list_consents(id.as_deref()).await?;
            if list.is_empty() {
                println!("no consents");
            }
            for c in list {
                let who = rt
                    .store
                    .get_user(&c.user_id)
                    .await
                    .map(|u| u.username)
                    .unwrap_or(c.user_id);
                println!(
                    "{who}\t{}\tscopes=[{}]\tresources=[{}]\tsince {}",
                    c.client_id,
                    c.scopes.join(" "),
                    c.resources.join(" "),
                    fmt_time(c.granted_at)
                );
            }
        }
        ConsentsCmd::Revoke {
            username,
            client_id,
        } => {
            admin::revoke_consent(&rt.admin(), &username, &client_id).await?;
            println!(
                "revoked {username}'s consent to {client_id} and that client's refresh and \
                 access tokens for them"
            );
        }
    }
    Ok(())
}

pub async fn keys(rt: &Runtime, cmd: KeysCmd) -> anyhow::Result<()> {
    let a = &rt.config.authz;
    match cmd {
        KeysCmd::List => {
            let list = rt.store.list_keys().await?;
            if list.is_empty() {
                println!("no keys yet (the first one is created when the server starts)");
            }
            for k in list {
                let state = match k.state {
                    KeyState::Active => "active (signs new tokens)".to_string(),
                    KeyState::Previous => format!(
                        "previous (published until {})",
                        fmt_time(k.rotated_at.unwrap_or(k.created_at) + a.key_grace_secs)
                    ),
                    KeyState::Retired => "retired".to_string(),
                };
                println!(
                    "{}\t{}\tcreated {}\t{state}",
                    k.kid,
                    k.alg,
                    fmt_time(k.created_at)
                );
            }
        }
        KeysCmd::Rotate => {
            let kid =
                admin::rotate_keys(&rt.admin(), &rt.master_key, a.signing_alg, a.key_grace_secs)
                    .await?;
            println!(
                "new active key {kid}; the previous key stays published for {} s",
                a.key_grace_secs
            );
            println!("running servers sharing this store pick it up within a second");
        }
    }
    Ok(())
}

pub fn print_config(c: &Config) -> anyhow::Result<()> {
    println!("config: {}", c.source);
    println!("issuer (public_url): {}", c.authz.issuer);
    println!("listen: {}", c.listen);
    println!(
        "tls: {}",
        match &c.tls {
            TlsConfig::None if c.trust_forwarded_proto =>
                "terminated by a proxy (trust_forwarded_proto)".to_string(),
            TlsConfig::None => "off (loopback http)".to_string(),
            TlsConfig::Files { cert, .. } => format!("certificate {}", cert.display()),
            TlsConfig::SelfSigned => "self-signed (testing only)".to_string(),
        }
    );
    let m = &c.metrics;
    let auth = if m.token.is_some() {
        ", bearer token (redacted)"
    } else {
        ""
    };
    match (m.served, m.listen) {
        (false, _) => println!("metrics: not served (set [metrics] listen or bearer_token)"),
        (true, Some(a)) => println!("metrics: own listener {a}{auth}"),
        (true, None) => println!("metrics: on the main listener{auth}"),
    }
    println!("data dir: {}", c.data_dir.display());
    match &c.store {
        StoreConfig::Sqlite(p, durability) => {
            println!("store: sqlite {} ({durability:?} durability)", p.display());
        }
        StoreConfig::Postgres(_) => println!("store: postgres (url redacted)"),
    }
    match &c.master_key {
        MasterKeySource::Configured(_) => println!("master key: from config reference (redacted)"),
        MasterKeySource::DataDirFile(p) => {
            println!("master key: {} (generated if absent)", p.display())
        }
    }
    let a = &c.authz;
    println!(
        "signing: {} (grace {} s)",
        a.signing_alg.as_str(),
        a.key_grace_secs
    );
    println!(
        "access tokens: {} s; refresh families: {} s; codes: {} s",
        a.access_token_ttl, a.refresh_token_ttl, a.code_ttl
    );
    println!("scopes:");
    for s in &a.scopes {
        println!("  {} — {}", s.name, s.description);
    }
    println!("resources:");
    for r in &a.resources {
        println!("  {} ({})", r.uri, r.name);
    }
    println!(
        "dynamic registration: {}{}",
        if a.dcr.enabled { "on" } else { "off" },
        if a.dcr.initial_access_token.is_some() {
            " (initial access token required)"
        } else {
            ""
        }
    );
    println!(
        "client metadata documents: {}{}",
        if a.cimd.enabled { "on" } else { "off" },
        if a.cimd.allow_http_loopback {
            " (DEVELOPMENT loopback override on)"
        } else {
            ""
        }
    );
    println!("clients from config: {}", c.clients.len());
    println!("upstreams:");
    let support = mcpgate_sandbox::Support::detect();
    for u in &c.gateway.upstreams {
        let transport = match &u.transport {
            mcpgate_gateway::config::Transport::Stdio(s) => {
                format!("stdio {} {}", s.command, s.args.join(" "))
            }
            mcpgate_gateway::config::Transport::Http(h) => format!("http {}", h.url),
        };
        println!(
            "  {} at {} ({}); baseline scopes: [{}]; {} tool rules",
            u.name,
            u.resource,
            transport.trim_end(),
            u.scopes,
            u.tools.len()
        );
        if let mcpgate_gateway::config::Transport::Stdio(s) = &u.transport {
            use mcpgate_gateway::upstream::stdio::Launch;
            match Launch::prepare(s, &c.gateway.protected_paths, support)
                .map_err(|e| anyhow::anyhow!("upstream {:?}: {e}", u.name))?
            {
                Launch::Direct => {
                    println!("    sandbox: OFF (the server can read and do everything mcpgate can)")
                }
                Launch::Sandboxed { plan, .. } => {
                    for line in plan.describe(support) {
                        println!("    {line}");
                    }
                }
            }
        }
    }
    Ok(())
}

/// `serve --demo`: an `admin` user with a one-time password, and directions.
/// Printed on stdout like every secret the CLI shows once: stderr carries the
/// log, and a one-time password does not belong in a log file.
pub async fn demo_bootstrap(rt: &Runtime) -> anyhow::Result<()> {
    let issuer = &rt.config.authz.issuer;
    let otp = match admin::create_user(
        &rt.admin(),
        "admin",
        Some("Administrator"),
        None,
        &["admins".to_string()],
    )
    .await
    {
        Ok((_, otp)) => otp,
        Err(AdminError::Exists(_)) => None,
        Err(e) => return Err(e.into()),
    };
    println!();
    println!("  mcpgate demo — authorization server at {issuer}");
    println!("  data directory: {}", rt.config.data_dir.display());
    match otp {
        Some(p) => {
            println!("  admin user:     admin");
            println!("  one-time password: {p}   (you choose a new one at first sign-in)");
        }
        None => println!(
            "  admin user exists already; `mcpgate users passwd admin` prints a new one-time password"
        ),
    }
    println!();
    for u in &rt.config.gateway.upstreams {
        println!("  protected MCP server: {} ({})", u.resource, u.title);
    }
    let mcp = rt
        .config
        .gateway
        .upstreams
        .first()
        .map(|u| u.resource.clone())
        .unwrap_or_else(|| format!("{issuer}/mcp/notes"));
    println!();
    println!("  next, in another terminal:");
    println!("    curl -i -X POST {mcp}                  # 401 and the challenge");
    println!("    mcpgate login {mcp} --allow-http-loopback   # sign in as admin, approve");
    println!("    mcpgate tools {mcp} --allow-http-loopback");
    println!(
        "    mcpgate call {mcp} add_note '{{\"title\":\"hi\",\"body\":\"there\"}}' --allow-http-loopback   # steps up to notes:write"
    );
    println!("  (mcpgate is target/release/mcpgate after the build)");
    println!();
    Ok(())
}
