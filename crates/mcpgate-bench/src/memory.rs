//! Item 5: memory of `mcpgate serve` (release binary, own process): idle RSS (after start, then
//! after one token request and one MCP session), RSS with many open MCP sessions on an HTTP
//! upstream, and the cost of per-session stdio children (gateway RSS plus the children's).

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::gateway;
use crate::load::{self, LoadSpec, PROTOCOL_VERSION};
use crate::procs::{self, Gateway};
use crate::report::{Opts, Section, md_table};

/// Open MCP sessions on the HTTP upstream (full run / `--quick`).
pub const SESSIONS: usize = 10_000;
pub const QUICK_SESSIONS: usize = 2_000;
/// Sessions (= children) on the per-session stdio upstream.
pub const STDIO_SESSIONS: usize = 50;
pub const QUICK_STDIO_SESSIONS: usize = 10;
/// Workers opening the sessions.
const OPENERS: usize = 16;
/// Goal from issue 7.
pub const IDLE_GOAL_KIB: u64 = 25 * 1024;
/// How long RSS is given to settle before it is read.
const SETTLE: Duration = Duration::from_millis(500);

/// Sum of the `mcpgate_gateway_sessions` samples in a Prometheus text exposition.
pub fn sessions_gauge(metrics: &str) -> Option<f64> {
    let mut found = false;
    let mut sum = 0.0;
    for l in metrics.lines() {
        let Some(rest) = l.strip_prefix("mcpgate_gateway_sessions") else {
            continue;
        };
        // `mcpgate_gateway_sessions{upstream="x"} 12` or `mcpgate_gateway_sessions 12`
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            sum += v;
            found = true;
        }
    }
    found.then_some(sum)
}

async fn gateway_sessions(gw: &Gateway) -> Result<f64> {
    let body = reqwest::Client::builder()
        .no_proxy()
        .build()?
        .get(format!("{}/metrics", gw.base))
        .send()
        .await?
        .text()
        .await?;
    sessions_gauge(&body).context("no mcpgate_gateway_sessions in /metrics")
}

/// Opens `n` MCP sessions (initialize + initialized) with `OPENERS` workers; they stay open
/// (the gateway's idle timeout is an hour). A few `tools/call`s run on them afterwards.
async fn open_sessions(url: &str, token: &str, n: usize) -> Result<()> {
    let spec = LoadSpec {
        url: url.to_string(),
        bearer: Some(token.to_string()),
        concurrency: OPENERS.min(n),
        sessions: n,
        warmup: Duration::ZERO,
        duration: Duration::from_millis(200),
        tool: "echo".into(),
        arguments: serde_json::json!({ "text": gateway::ECHO_TEXT }),
    };
    let res = load::run(&spec).await.context("opening sessions")?;
    if res.errors > 0 {
        bail!(
            "{} errors on the opened sessions: {}",
            res.errors,
            res.first_error.unwrap_or_default()
        );
    }
    Ok(())
}

/// One `initialize` with a token (a whole MCP session opened, as one client would).
async fn one_initialize(url: &str, token: &str) -> Result<()> {
    let body = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": PROTOCOL_VERSION, "capabilities": {},
                   "clientInfo": {"name": "mcpgate-bench", "version": "0"}}
    });
    let r = reqwest::Client::builder()
        .no_proxy()
        .build()?
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await?;
    if r.status() != 200 {
        bail!("initialize answered {}", r.status());
    }
    Ok(())
}

fn kib_mb(k: u64) -> String {
    format!("{k} KiB ({:.1} MB)", k as f64 / 1024.0)
}

fn rss_now(pid: u32) -> Result<u64> {
    std::thread::sleep(SETTLE);
    procs::rss_kib(pid)
}

pub async fn section(opts: &Opts) -> Result<Section> {
    let (n_sessions, n_children) = if opts.quick {
        (QUICK_SESSIONS, QUICK_STDIO_SESSIONS)
    } else {
        (SESSIONS, STDIO_SESSIONS)
    };

    // --- an HTTP upstream: idle, then many sessions ---
    let (echo, echo_url) = gateway::start_echo_http()?;
    let up = gateway::echo_upstream_toml(
        gateway::UPSTREAM,
        &format!("http = {{ url = \"{echo_url}\" }}"),
    );
    let gw = gateway::start_mcpgate(opts, &up, n_sessions + 64)?;
    let pid = gw.proc.pid();
    let url = gw.mcp_url(gateway::UPSTREAM);
    let started = rss_now(pid)?;
    let token = procs::token_for(&gw, &url, "mcp:tools mcp:echo").await?;
    one_initialize(&url, &token).await?;
    let idle = rss_now(pid)?;
    let before = gateway_sessions(&gw).await?;
    eprintln!("  memory: opening {n_sessions} sessions ...");
    let t = std::time::Instant::now();
    open_sessions(&url, &token, n_sessions).await?;
    let open_secs = t.elapsed().as_secs_f64();
    let with_sessions = rss_now(pid)?;
    let after = gateway_sessions(&gw).await?;
    let echo_rss = procs::rss_kib(echo.pid()).unwrap_or(0);
    let opened = after - before;
    if opened < n_sessions as f64 {
        bail!("the gateway holds {after} sessions after opening {n_sessions} (had {before})");
    }
    let per_session = (with_sessions.saturating_sub(idle)) as f64 * 1024.0 / opened;
    drop(gw);
    drop(echo);

    // --- a per-session stdio upstream: one child per session ---
    let up = gateway::echo_upstream_toml(gateway::UPSTREAM, &gateway::stdio_transport(false)?);
    let gw = gateway::start_mcpgate(opts, &up, n_children + 16)?;
    let pid = gw.proc.pid();
    let url = gw.mcp_url(gateway::UPSTREAM);
    let token = procs::token_for(&gw, &url, "mcp:tools mcp:echo").await?;
    let gw_before = rss_now(pid)?;
    let kids_before = procs::descendants(pid).len();
    eprintln!("  memory: opening {n_children} stdio sessions ...");
    open_sessions(&url, &token, n_children).await?;
    let gw_after = rss_now(pid)?;
    let kids = procs::descendants(pid);
    let kids_rss: u64 = kids.iter().map(|k| procs::rss_kib(*k).unwrap_or(0)).sum();
    let n_kids = kids.len().saturating_sub(kids_before);
    if n_kids < n_children {
        bail!("{n_kids} stdio children for {n_children} sessions");
    }
    let gw_per_child = (gw_after.saturating_sub(gw_before)) as f64 / n_kids as f64;
    let child_avg = kids_rss as f64 / kids.len().max(1) as f64;
    drop(gw);

    let rows = vec![
        vec![
            "gateway right after start (`/readyz`)".into(),
            kib_mb(started),
            String::new(),
        ],
        vec![
            "gateway idle: after start + one token request + one MCP session".into(),
            kib_mb(idle),
            format!(
                "goal ≤ 25 MB: {}",
                if idle <= IDLE_GOAL_KIB {
                    "met"
                } else {
                    "missed"
                }
            ),
        ],
        vec![
            format!("gateway with {opened:.0} open MCP sessions (HTTP upstream)"),
            kib_mb(with_sessions),
            format!("{per_session:.0} bytes per session (opened in {open_secs:.1} s)"),
        ],
        vec![
            format!("the rmcp echo upstream behind it ({opened:.0} sessions)"),
            kib_mb(echo_rss),
            "not mcpgate; for scale".into(),
        ],
        vec![
            format!("gateway with {n_kids} stdio sessions (a child each)"),
            kib_mb(gw_after),
            format!("+{gw_per_child:.0} KiB in the gateway per child"),
        ],
        vec![
            format!("sum of the {} children's RSS", kids.len()),
            kib_mb(kids_rss),
            format!(
                "{child_avg:.0} KiB per child (the rmcp echo upstream: `mcpgate-bench echo-upstream --stdio`)"
            ),
        ],
    ];
    let table = md_table(&["what", "RSS (VmRSS)", "note"], &rows);
    let mut md = String::new();
    md.push_str("RSS (VmRSS from `/proc`) of `mcpgate serve` (release binary, SQLite store, audit to a file), each read after a 0.5 s pause. Sessions are opened through the gateway with a real token (`initialize` + `notifications/initialized`, protocol ");
    md.push_str(PROTOCOL_VERSION);
    let _ = writeln!(
        md,
        ") by {OPENERS} workers and stay open (`session_idle_secs = 3600`); all belong to one user, so `[gateway] max_sessions_per_user` is raised above the count. The gateway's own session count is read from `/metrics` (`mcpgate_gateway_sessions`) to confirm they are all held.\n"
    );
    md.push_str(&table);
    md.push_str("\n**Reading.** Bytes per session = (RSS with the sessions − idle RSS) / sessions; it includes the allocator's retained memory, so it is an upper bound of what one session costs. A per-session stdio child is a whole process: its cost is the child's RSS (shared library pages counted in every child, so the sum overstates the machine's real use) plus the gateway's pipes and tasks for it.\n");
    let mut text = table;
    let _ = writeln!(
        text,
        "\nidle RSS {} (goal ≤ 25 MB); {per_session:.0} B/session; {child_avg:.0} KiB per stdio child",
        kib_mb(idle)
    );
    Ok(Section {
        title: "5. Memory".into(),
        markdown: md,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_gauge_sums_labelled_samples() {
        let m = "# HELP mcpgate_gateway_sessions Live sessions\n# TYPE mcpgate_gateway_sessions gauge\nmcpgate_gateway_sessions{upstream=\"a\"} 3\nmcpgate_gateway_sessions{upstream=\"b\"} 4\nmcpgate_gateway_sessions_total 99\n";
        assert_eq!(sessions_gauge(m), Some(7.0));
        assert_eq!(sessions_gauge("mcpgate_gateway_sessions 12\n"), Some(12.0));
        assert_eq!(sessions_gauge("other 1\n"), None);
    }
}
