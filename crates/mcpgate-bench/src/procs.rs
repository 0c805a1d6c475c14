//! Child processes that die with the bench, `/proc` readers, and a real `mcpgate serve`
//! (release binary, own process, temporary data dir) with a token from its own AS.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::report::Opts;

/// How long a child server may take to become ready.
const STARTUP: Duration = Duration::from_secs(30);
/// How long a child gets after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A child process, stopped (SIGTERM, then SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    name: String,
    /// Where its stderr goes (if captured to a file).
    log: Option<PathBuf>,
}

impl Proc {
    /// Spawns `cmd` (stdin null). `log`: a file for stdout and stderr, else both are discarded.
    pub fn spawn(name: &str, cmd: &mut Command, log: Option<&Path>) -> Result<Self> {
        cmd.stdin(Stdio::null());
        match log {
            Some(p) => {
                let f = std::fs::File::create(p).with_context(|| format!("creating {p:?}"))?;
                cmd.stdout(Stdio::from(f.try_clone()?));
                cmd.stderr(Stdio::from(f));
            }
            None => {
                cmd.stdout(Stdio::null());
                cmd.stderr(Stdio::null());
            }
        }
        let child = cmd.spawn().with_context(|| format!("spawning {name}"))?;
        Ok(Self {
            child,
            name: name.into(),
            log: log.map(Path::to_path_buf),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The child's captured output so far (the last 4 KiB), for error messages.
    pub fn log_tail(&self) -> String {
        let Some(p) = &self.log else {
            return String::new();
        };
        let s = std::fs::read_to_string(p).unwrap_or_default();
        let start = s.len().saturating_sub(4096);
        let start = (start..s.len())
            .find(|i| s.is_char_boundary(*i))
            .unwrap_or(0);
        s[start..].to_string()
    }

    /// `Some(status)` if the child has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Clock ticks per second (`getconf CLK_TCK`, else the Linux default 100).
fn clk_tck() -> u64 {
    static TCK: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|v| *v > 0)
            .unwrap_or(100)
    })
}

/// utime and stime (clock ticks) from the text of `/proc/PID/stat`.
fn parse_stat_ticks(stat: &str) -> Result<(u64, u64)> {
    // The command name (field 2) is in parentheses and may hold spaces: start after the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc stat: no ')'")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let get = |n: usize| -> Result<u64> {
        fields
            .get(n - 3)
            .context("malformed /proc stat: too few fields")?
            .parse()
            .context("malformed /proc stat: not a number")
    };
    Ok((get(14)?, get(15)?))
}

/// CPU time (user + system) the process has used so far, in µs (clock-tick resolution).
pub fn cpu_time_us(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let (u, s) = parse_stat_ticks(&stat)?;
    Ok((u + s) * 1_000_000 / clk_tck())
}

/// CPU time (µs) of the process plus every live descendant (e.g. a gateway's stdio children).
pub fn tree_cpu_time_us(pid: u32) -> Result<u64> {
    let mut total = cpu_time_us(pid)?;
    for d in descendants(pid) {
        total += cpu_time_us(d).unwrap_or(0);
    }
    Ok(total)
}

/// Live descendants of `pid` (from the `PPid:` of every `/proc/*/status`).
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Ok(st) = std::fs::read_to_string(format!("/proc/{p}/stat"))
                && let Some((_, rest)) = st.rsplit_once(')')
                && let Some(pp) = rest.split_whitespace().nth(1)
                && let Ok(pp) = pp.parse::<u32>()
            {
                parent_of.push((p, pp));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(cur) = frontier.pop() {
        for &(p, pp) in &parent_of {
            if pp == cur && !out.contains(&p) {
                out.push(p);
                frontier.push(p);
            }
        }
    }
    out
}

/// A `kB` field of `/proc/PID/status` (e.g. `VmRSS`, `VmHWM`).
fn status_kib(status: &str, field: &str) -> Result<u64> {
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .with_context(|| format!("no {field} in /proc status"))?;
    line.split_whitespace()
        .next()
        .context("empty field")?
        .parse()
        .with_context(|| format!("{field} is not a number"))
}

/// Resident set size (VmRSS) in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status_kib(&status, "VmRSS")
}

/// Peak resident set size (VmHWM) in KiB.
pub fn peak_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status_kib(&status, "VmHWM")
}

/// A port that was free a moment ago (bind `127.0.0.1:0`, read, drop).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A blocking `GET http://127.0.0.1:PORT{path}`; the status code.
pub fn http_get_status(port: u16, path: &str) -> Result<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let head = String::from_utf8_lossy(&buf);
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no HTTP status line")
}

/// Waits until `GET path` on the port answers 200 (or the process exits / time runs out).
pub fn wait_http_ready(proc: &mut Proc, port: u16, path: &str) -> Result<()> {
    let deadline = Instant::now() + STARTUP;
    loop {
        if let Some(st) = proc.exited() {
            bail!(
                "{} exited ({st}) before it was ready:\n{}",
                proc.name(),
                proc.log_tail()
            );
        }
        if matches!(http_get_status(port, path), Ok(200)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} not ready on port {port} after {STARTUP:?}:\n{}",
                proc.name(),
                proc.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until 127.0.0.1:PORT accepts connections (or the process exits / time runs out).
pub fn wait_port(proc: &mut Proc, port: u16) -> Result<()> {
    let deadline = Instant::now() + STARTUP;
    loop {
        if let Some(st) = proc.exited() {
            bail!(
                "{} exited ({st}) before it listened:\n{}",
                proc.name(),
                proc.log_tail()
            );
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} not listening on port {port} after {STARTUP:?}",
                proc.name()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The confidential client every bench gateway has (grant `client_credentials`).
pub const CC_CLIENT_ID: &str = "bench-cc";
/// Its secret (passed to the gateway through an environment variable).
pub const CC_CLIENT_SECRET: &str = "bench-cc-secret-0123456789abcdef";
/// The environment variable the secret is passed in.
const CC_SECRET_ENV: &str = "MCPGATE_BENCH_CC_SECRET";

/// The scopes every bench gateway's AS knows.
pub const SCOPES: &[&str] = &["mcp:tools", "mcp:echo", "mcp:admin", "offline_access"];

/// A running `mcpgate serve` (release binary) on `127.0.0.1:PORT` with its own temp dir.
pub struct Gateway {
    /// `http://127.0.0.1:PORT` — the issuer; upstream `NAME` is at `{base}/mcp/NAME`.
    pub base: String,
    pub proc: Proc,
    /// Holds the data dir (`data/`), the config (`mcpgate.toml`) and the log (`serve.log`).
    pub dir: tempfile::TempDir,
}

impl Gateway {
    /// The MCP endpoint (and token audience) of upstream `name`.
    pub fn mcp_url(&self, name: &str) -> String {
        format!("{}/mcp/{name}", self.base)
    }

    /// The temp dir (audit files etc. can go here).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs an operator CLI command (`mcpgate --data-dir D --config C ARGS...`) to completion
    /// against this installation; its stdout.
    pub fn cli(&self, opts: &Opts, args: &[&str]) -> Result<String> {
        let out = command(opts, self.dir.path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running mcpgate {args:?}"))?;
        if !out.status.success() {
            bail!(
                "mcpgate {args:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// `mcpgate --data-dir DIR/data --config DIR/mcpgate.toml`, isolated from the caller's config.
fn command(opts: &Opts, dir: &Path) -> Command {
    let mut c = Command::new(opts.mcpgate_bin());
    c.arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--config")
        .arg(dir.join("mcpgate.toml"))
        .current_dir(dir)
        .env_remove("MCPGATE_CONFIG")
        .env_remove("MCPGATE_DATA_DIR")
        .env("MCPGATE_LOG", "warn")
        .env("XDG_CONFIG_HOME", dir.join("xdg"))
        .env(CC_SECRET_ENV, CC_CLIENT_SECRET);
    c
}

/// The config every bench gateway starts from; `extra` (upstreams, `[gateway]`, more clients)
/// is appended. No `public_url`/`listen`: `serve --listen 127.0.0.1:PORT` makes the issuer
/// `http://127.0.0.1:PORT`.
/// `as_keys` (TOML lines, often none) go into `[authorization_server]` itself.
pub fn base_config_with(as_keys: &str, extra: &str) -> String {
    let mut s = format!(
        "[authorization_server]\naccess_token_ttl_secs = 86400\n{as_keys}\n[authorization_server.scopes]\n",
    );
    for sc in SCOPES {
        s.push_str(&format!("\"{sc}\" = \"bench scope {sc}\"\n"));
    }
    s.push_str(&format!(
        "\n[[client]]\nclient_id = \"{CC_CLIENT_ID}\"\nname = \"bench load generator\"\nclient_secret = \"${{env:{CC_SECRET_ENV}}}\"\ngrant_types = [\"client_credentials\"]\n\n"
    ));
    s.push_str(extra);
    s
}

/// Starts `mcpgate serve` with [`base_config_with`]`("", config_toml_extra)` and waits for `/readyz`.
/// `{dir}` in `config_toml_extra` is replaced by the gateway's temp dir (for audit files etc.).
pub fn start_gateway(opts: &Opts, config_toml_extra: &str) -> Result<Gateway> {
    start_gateway_env(opts, config_toml_extra, &[])
}

/// [`start_gateway`] with extra environment variables for the `mcpgate serve` process.
pub fn start_gateway_env(
    opts: &Opts,
    config_toml_extra: &str,
    env: &[(&str, &str)],
) -> Result<Gateway> {
    start_gateway_with(opts, "", config_toml_extra, env)
}

/// [`start_gateway_env`] with `as_keys` in `[authorization_server]` ([`base_config_with`]).
pub fn start_gateway_with(
    opts: &Opts,
    as_keys: &str,
    config_toml_extra: &str,
    env: &[(&str, &str)],
) -> Result<Gateway> {
    start_replica(opts, "", as_keys, config_toml_extra, env)
}

/// [`start_gateway_with`], with `top` (top-level keys such as `public_url`
/// and `master_key`: replicas of one issuer) at the head of the file.
pub fn start_replica(
    opts: &Opts,
    top: &str,
    as_keys: &str,
    config_toml_extra: &str,
    env: &[(&str, &str)],
) -> Result<Gateway> {
    let bin = opts.mcpgate_bin();
    if !bin.exists() {
        bail!(
            "{bin:?} not found: build it with `cargo build [--release] -p mcpgate` (the bench sections build the release one themselves unless --no-build)"
        );
    }
    let mut last_err = None;
    for _attempt in 0..5 {
        let dir = tempfile::Builder::new()
            .prefix("mcpgate-bench-")
            .tempdir()?;
        std::fs::create_dir(dir.path().join("xdg"))?;
        let extra = config_toml_extra.replace("{dir}", &dir.path().display().to_string());
        std::fs::write(
            dir.path().join("mcpgate.toml"),
            format!("{top}{}", base_config_with(as_keys, &extra)),
        )?;
        let port = free_port();
        let mut cmd = command(opts, dir.path());
        cmd.envs(env.iter().copied());
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"));
        let log = dir.path().join("serve.log");
        let mut proc = Proc::spawn("mcpgate serve", &mut cmd, Some(&log))?;
        match wait_http_ready(&mut proc, port, "/readyz") {
            Ok(()) => {
                return Ok(Gateway {
                    base: format!("http://127.0.0.1:{port}"),
                    proc,
                    dir,
                });
            }
            Err(e) => {
                let retry = proc.log_tail().contains("binding");
                last_err = Some(e);
                if !retry {
                    break;
                }
            }
        }
    }
    Err(last_err.unwrap_or_else(|| anyhow::anyhow!("mcpgate serve did not start")))
}

/// A real access token from the gateway's own AS: `client_credentials` for the bench client,
/// `resource` (e.g. [`Gateway::mcp_url`]) and `scope` (space-separated).
pub async fn token_for(gw: &Gateway, resource: &str, scope: &str) -> Result<String> {
    #[derive(serde::Deserialize)]
    struct TokenResponse {
        access_token: String,
    }
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()?;
    let resp = http
        .post(format!("{}/oauth/token", gw.base))
        .basic_auth(CC_CLIENT_ID, Some(CC_CLIENT_SECRET))
        .form(&[
            ("grant_type", "client_credentials"),
            ("resource", resource),
            ("scope", scope),
        ])
        .send()
        .await
        .context("token request")?;
    let status = resp.status();
    let body = resp.text().await?;
    if !status.is_success() {
        bail!("token endpoint answered {status}: {body}");
    }
    let t: TokenResponse =
        serde_json::from_str(&body).with_context(|| format!("token response {body}"))?;
    Ok(t.access_token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_skip_a_command_with_spaces_and_parens() {
        let stat =
            "1234 (my (odd) cmd) S 1 1234 1234 0 -1 4194304 100 0 0 0 250 75 0 0 20 0 4 0 100 0 0";
        assert_eq!(parse_stat_ticks(stat).unwrap(), (250, 75));
        assert!(parse_stat_ticks("1234 (x) S 1").is_err());
        assert!(parse_stat_ticks("no paren").is_err());
    }

    #[test]
    fn status_fields_are_read_in_kib() {
        let status = "Name:\tx\nVmHWM:\t  20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(status_kib(status, "VmRSS").unwrap(), 10240);
        assert_eq!(status_kib(status, "VmHWM").unwrap(), 20480);
        assert!(status_kib(status, "VmSwap").is_err());
    }

    #[test]
    fn own_process_is_readable() {
        let me = std::process::id();
        assert!(rss_kib(me).unwrap() > 0);
        cpu_time_us(me).unwrap();
        assert_ne!(free_port(), 0);
    }

    #[test]
    fn base_config_parses_as_toml_with_extra() {
        let cfg = base_config_with("", "[gateway]\nmax_sessions_per_user = 10\n");
        let v: toml::Value = toml::from_str(&cfg).unwrap();
        assert_eq!(v["client"][0]["client_id"].as_str(), Some(CC_CLIENT_ID));
        assert_eq!(v["gateway"]["max_sessions_per_user"].as_integer(), Some(10));
    }
}
