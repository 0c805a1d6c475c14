//! Item 3: the same `tools/call echo` closed loop against peers built on the official SDKs.
//!
//! - **direct** — the rmcp echo upstream (the baseline, no auth);
//! - **mcpgate** — `mcpgate serve` → the same echo upstream over HTTP, a real token of its AS;
//! - **TypeScript SDK** — `peers/ts-server.mjs`: `@modelcontextprotocol/sdk` Streamable HTTP with
//!   the SDK's `requireBearerAuth`, JWTs checked with `jose` against mcpgate's JWKS;
//! - **Python SDK** — `peers/py_server.py`: `mcp` `MCPServer` (formerly FastMCP) under uvicorn
//!   with `TokenVerifier` + `AuthSettings`, JWTs checked with PyJWT against the same JWKS.
//!
//! Each peer's URL is configured as a resource of mcpgate's AS, so the AS mints real tokens
//! with `aud` = that URL. Before measuring, the harness checks that every peer refuses a request
//! without a token and one with a token for another audience.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::gateway;
use crate::load::{self, LoadResult, LoadSpec, PROTOCOL_VERSION};
use crate::procs::{self, Proc};
use crate::report::{self, Opts, Section, fmt_rps, fmt_us, md_table};

/// Concurrency levels of each target.
pub const CONCURRENCY: &[usize] = &[1, 16, 128];
pub const WARMUP: Duration = Duration::from_secs(2);
pub const DURATION: Duration = Duration::from_secs(10);

const TS_SCRIPT: &str = include_str!("../peers/ts-server.mjs");
const PY_SCRIPT: &str = include_str!("../peers/py_server.py");

/// Where `peers/install.sh` put the peers' dependencies.
#[derive(Debug, Clone)]
pub struct Installed {
    pub node: PathBuf,
    pub ts_dir: PathBuf,
    pub python: PathBuf,
}

/// Parses install.sh's `KEY=VALUE` output.
fn parse_install_output(out: &str) -> Result<Installed> {
    let get = |k: &str| -> Result<PathBuf> {
        out.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
            .map(PathBuf::from)
            .with_context(|| format!("install.sh printed no {k}="))
    };
    Ok(Installed {
        node: get("NODE")?,
        ts_dir: get("TS_DIR")?,
        python: get("PY")?,
    })
}

/// Runs `peers/install.sh` (cached under `${XDG_CACHE_HOME:-~/.cache}/mcpgate-ci/bench-peers`)
/// and copies the two server scripts next to their dependencies.
pub fn install() -> Result<Installed> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/install.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("{} failed ({})", script.display(), out.status);
    }
    let inst = parse_install_output(&String::from_utf8_lossy(&out.stdout))?;
    // ES modules resolve packages from the script's own directory: put it beside node_modules.
    std::fs::write(inst.ts_dir.join("ts-server.mjs"), TS_SCRIPT)?;
    let py_dir = inst
        .python
        .parent()
        .and_then(Path::parent)
        .context("venv layout")?;
    std::fs::write(py_dir.join("py_server.py"), PY_SCRIPT)?;
    Ok(inst)
}

/// Versions of the peers' runtimes and libraries, for the report.
pub fn versions(inst: &Installed) -> Vec<(String, String)> {
    let node_pkg = |p: &str| {
        let js = format!(
            "require('{}/node_modules/{p}/package.json').version",
            inst.ts_dir.display()
        );
        report::command_version(&inst.node.display().to_string(), &["-p", &js])
    };
    let py_pkg = |p: &str| {
        let code = format!("from importlib.metadata import version; print(version('{p}'))");
        report::command_version(&inst.python.display().to_string(), &["-c", &code])
    };
    vec![
        (
            "node".into(),
            report::command_version(&inst.node.display().to_string(), &["--version"]),
        ),
        (
            "@modelcontextprotocol/sdk (npm)".into(),
            node_pkg("@modelcontextprotocol/sdk"),
        ),
        ("jose (npm)".into(), node_pkg("jose")),
        ("express (npm)".into(), node_pkg("express")),
        (
            "python".into(),
            report::command_version(&inst.python.display().to_string(), &["--version"]),
        ),
        ("mcp (PyPI)".into(), py_pkg("mcp")),
        ("PyJWT (PyPI)".into(), py_pkg("PyJWT")),
        ("uvicorn (PyPI)".into(), py_pkg("uvicorn")),
        ("starlette (PyPI)".into(), py_pkg("starlette")),
    ]
}

/// The URL a peer listening on `port` serves MCP at (also its resource / token audience).
pub fn peer_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/mcp")
}

/// Starts the TypeScript peer on `port`; returns it with its MCP URL once `/healthz` answers.
pub fn start_ts_peer(
    inst: &Installed,
    port: u16,
    issuer: &str,
    log: &Path,
) -> Result<(Proc, String)> {
    let url = peer_url(port);
    let mut cmd = Command::new(&inst.node);
    cmd.current_dir(&inst.ts_dir)
        .arg("ts-server.mjs")
        .args([
            "--port",
            &port.to_string(),
            "--issuer",
            issuer,
            "--resource",
            &url,
        ])
        .env("NODE_ENV", "production");
    let mut p = Proc::spawn("TypeScript SDK peer", &mut cmd, Some(log))?;
    procs::wait_http_ready(&mut p, port, "/healthz")?;
    Ok((p, url))
}

/// Starts the Python peer on `port`; returns it with its MCP URL once it accepts connections.
pub fn start_py_peer(
    inst: &Installed,
    port: u16,
    issuer: &str,
    log: &Path,
) -> Result<(Proc, String)> {
    let url = peer_url(port);
    let py_dir = inst
        .python
        .parent()
        .and_then(Path::parent)
        .context("venv layout")?;
    let mut cmd = Command::new(&inst.python);
    cmd.current_dir(py_dir)
        .arg("py_server.py")
        .args([
            "--port",
            &port.to_string(),
            "--issuer",
            issuer,
            "--resource",
            &url,
        ])
        .env("PYTHONUNBUFFERED", "1");
    let mut p = Proc::spawn("Python SDK peer", &mut cmd, Some(log))?;
    procs::wait_port(&mut p, port)?;
    Ok((p, url))
}

/// The status of an MCP `initialize` POST to `url` with `bearer`.
async fn initialize_status(http: &reqwest::Client, url: &str, bearer: Option<&str>) -> Result<u16> {
    let body = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": PROTOCOL_VERSION, "capabilities": {},
                   "clientInfo": {"name": "mcpgate-bench", "version": "0"}}
    });
    let mut req = http
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    Ok(req
        .send()
        .await
        .context("initialize request")?
        .status()
        .as_u16())
}

/// Checks that the server at `url` refuses a missing token and a wrong-audience token (401)
/// and accepts `good` (200). Returns a one-line summary.
pub async fn check_rejects(url: &str, good: &str, wrong_aud: &str) -> Result<String> {
    let http = reqwest::Client::builder().no_proxy().build()?;
    let none = initialize_status(&http, url, None).await?;
    let wrong = initialize_status(&http, url, Some(wrong_aud)).await?;
    let garbage = initialize_status(&http, url, Some("not-a-jwt")).await?;
    let ok = initialize_status(&http, url, Some(good)).await?;
    if none != 401 || wrong != 401 || garbage != 401 || ok != 200 {
        bail!(
            "{url}: no token → {none}, wrong audience → {wrong}, garbage → {garbage}, right token → {ok} (expected 401, 401, 401, 200); the comparison would be invalid"
        );
    }
    Ok(format!(
        "no token → {none}, wrong audience → {wrong}, malformed → {garbage}, right token → {ok}"
    ))
}

struct Target {
    name: &'static str,
    url: String,
    bearer: Option<String>,
    pid: u32,
    check: String,
}

struct Point {
    target: &'static str,
    c: usize,
    res: LoadResult,
}

fn spec(opts: &Opts, t: &Target, c: usize) -> LoadSpec {
    let (warmup, duration) = opts.times(WARMUP, DURATION);
    LoadSpec {
        url: t.url.clone(),
        bearer: t.bearer.clone(),
        concurrency: c,
        sessions: 0,
        warmup,
        duration,
        tool: "echo".into(),
        arguments: serde_json::json!({ "text": gateway::ECHO_TEXT }),
    }
}

pub async fn section(opts: &Opts) -> Result<Section> {
    let inst = install().context("installing the peers (peers/install.sh)")?;
    let versions = versions(&inst);

    let (echo, echo_url) = gateway::start_echo_http()?;
    let (ts_port, py_port) = (procs::free_port(), procs::free_port());
    let (ts_url, py_url) = (peer_url(ts_port), peer_url(py_port));
    let max_c = CONCURRENCY.iter().copied().max().unwrap_or(1);
    let upstreams = format!(
        "{}[[authorization_server.resources]]\nuri = \"{ts_url}\"\nname = \"TypeScript SDK peer\"\n\n[[authorization_server.resources]]\nuri = \"{py_url}\"\nname = \"Python SDK peer\"\n\n",
        gateway::echo_upstream_toml(
            gateway::UPSTREAM,
            &format!("http = {{ url = \"{echo_url}\" }}")
        )
    );
    let gw = gateway::start_mcpgate(opts, &upstreams, max_c * 2)?;
    let gw_url = gw.mcp_url(gateway::UPSTREAM);
    let gw_token = procs::token_for(&gw, &gw_url, "mcp:tools mcp:echo").await?;
    let ts_token = procs::token_for(&gw, &ts_url, "mcp:tools").await?;
    let py_token = procs::token_for(&gw, &py_url, "mcp:tools").await?;

    let (ts, _) = start_ts_peer(&inst, ts_port, &gw.base, &gw.path().join("ts-peer.log"))?;
    let (py, _) = start_py_peer(&inst, py_port, &gw.base, &gw.path().join("py-peer.log"))?;

    let gw_check = check_rejects(&gw_url, &gw_token, &ts_token).await?;
    let ts_check = check_rejects(&ts_url, &ts_token, &gw_token)
        .await
        .with_context(|| ts.log_tail())?;
    let py_check = check_rejects(&py_url, &py_token, &ts_token)
        .await
        .with_context(|| py.log_tail())?;

    let targets = [
        Target {
            name: gateway::T_DIRECT,
            url: echo_url.clone(),
            bearer: None,
            pid: echo.pid(),
            check: "no auth".into(),
        },
        Target {
            name: "mcpgate → echo (HTTP), token validated",
            url: gw_url.clone(),
            bearer: Some(gw_token.clone()),
            pid: gw.proc.pid(),
            check: gw_check,
        },
        Target {
            name: "TypeScript SDK + requireBearerAuth (jose)",
            url: ts_url.clone(),
            bearer: Some(ts_token),
            pid: ts.pid(),
            check: ts_check,
        },
        Target {
            name: "Python SDK MCPServer + TokenVerifier (PyJWT), uvicorn",
            url: py_url.clone(),
            bearer: Some(py_token),
            pid: py.pid(),
            check: py_check,
        },
    ];

    let mut points = Vec::new();
    let mut rss = Vec::new();
    for t in &targets {
        let idle = procs::rss_kib(t.pid).unwrap_or(0);
        for &c in CONCURRENCY {
            eprintln!("  peers: {} c={c} ...", t.name);
            let res = load::run(&spec(opts, t, c)).await?;
            if res.errors > 0 {
                eprintln!(
                    "    {} errors; first: {}",
                    res.errors,
                    res.first_error.as_deref().unwrap_or("?")
                );
            }
            points.push(Point {
                target: t.name,
                c,
                res,
            });
        }
        let end = procs::rss_kib(t.pid).unwrap_or(0);
        let peak = procs::peak_rss_kib(t.pid).unwrap_or(0);
        rss.push((t.name, idle, end, peak));
    }

    let rows: Vec<Vec<String>> = points
        .iter()
        .map(|p| {
            vec![
                p.target.to_string(),
                p.c.to_string(),
                fmt_rps(p.res.rps),
                fmt_us(p.res.p50_us),
                fmt_us(p.res.p99_us),
                format!("{}/{}", p.res.errors, p.res.requests),
            ]
        })
        .collect();
    let table = md_table(
        &["server", "c", "req/s", "p50", "p99", "errors/requests"],
        &rows,
    );
    let mb = |k: u64| format!("{:.1} MB", k as f64 / 1024.0);
    let rss_rows: Vec<Vec<String>> = rss
        .iter()
        .map(|(n, i, e, p)| vec![n.to_string(), mb(*i), mb(*e), mb(*p)])
        .collect();
    let rss_table = md_table(
        &[
            "server",
            "RSS before load",
            "RSS after load",
            "peak RSS (VmHWM)",
        ],
        &rss_rows,
    );
    let check_rows: Vec<Vec<String>> = targets
        .iter()
        .map(|t| vec![t.name.to_string(), t.check.clone()])
        .collect();
    let check_table = md_table(&["server", "initialize answers"], &check_rows);
    let ver_rows: Vec<Vec<String>> = versions
        .iter()
        .map(|(k, v)| vec![k.clone(), v.clone()])
        .collect();
    let ver_table = md_table(&["component", "version"], &ver_rows);

    let (warmup, duration) = opts.times(WARMUP, DURATION);
    let mut md = String::new();
    let _ = writeln!(
        md,
        "The same closed loop as item 2 (`tools/call echo`, one keep-alive connection and one MCP session per worker, protocol {PROTOCOL_VERSION}; {} s warm-up, {} s measured per point), against servers built on the official SDKs, each validating a real ES256 access token from mcpgate's AS with `aud` = its own URL (both peer URLs are configured as `[[authorization_server.resources]]`; tokens via `client_credentials`). **{}**\n",
        warmup.as_secs_f64(),
        duration.as_secs_f64(),
        report::SHARED_CORES_NOTE
    );
    md.push_str(&table);
    md.push_str("\nRSS of each server process (the Python figure is the uvicorn process; node's is the single node process):\n\n");
    md.push_str(&rss_table);
    md.push_str("\nBefore measuring, every authenticated server must refuse a missing, a malformed and a wrong-audience token (an `initialize` POST must get 401) and accept its own (200); the run stops otherwise:\n\n");
    md.push_str(&check_table);
    md.push_str("\nVersions:\n\n");
    md.push_str(&ver_table);
    md.push_str("\n**Reading.** Issue 7's reference figures (another machine, `oha`): TS SDK with bearer auth 1.5k req/s at c=1 (p50 0.56 ms) and 2.4k at c=16 (p99 18 ms, RSS 81-174 MB); Python SDK 1.15k / 1.2k (p99 60 ms). The TypeScript peer verifies the JWT on every request (jose caches the JWKS, not the verification); the Python peer likewise (PyJWT, JWKS cached); mcpgate caches a validated token by its SHA-256 until it expires. Each SDK server keeps its own session state (the TS peer one `McpServer` + transport per session, as in the SDK's example; the Python SDK's session manager).\n");

    let mut text = table;
    text.push('\n');
    text.push_str(&rss_table);
    text.push('\n');
    text.push_str(&check_table);
    text.push('\n');
    text.push_str(&ver_table);

    drop((ts, py, gw, echo));
    Ok(Section {
        title: "3. Peers: the official TypeScript and Python SDKs".into(),
        markdown: md,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_output_is_parsed() {
        let i = parse_install_output("NODE=/n/node\nTS_DIR=/c/ts\nPY=/c/py/bin/python\n").unwrap();
        assert_eq!(i.node, PathBuf::from("/n/node"));
        assert_eq!(i.ts_dir, PathBuf::from("/c/ts"));
        assert_eq!(i.python, PathBuf::from("/c/py/bin/python"));
        assert!(parse_install_output("NODE=/n\n").is_err());
    }
}
