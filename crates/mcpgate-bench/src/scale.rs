//! Item 6: scale. Requests/s and p99 through mcpgate (HTTP echo upstream) with 1, 100, 1,000
//! and 10,000 MCP sessions open (spread over the 16 workers; with fewer sessions than workers,
//! workers share them), and with 1, 8 and 64 upstreams configured (load on one of them).

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Result;

use crate::gateway::{self, UPSTREAM};
use crate::load::{self, LoadResult};
use crate::procs;
use crate::report::{Opts, Section, fmt_rps, fmt_us, md_table};

/// Sessions open during the run.
pub const SESSIONS: &[usize] = &[1, 100, 1_000, 10_000];
/// Upstreams configured.
pub const UPSTREAMS: &[usize] = &[1, 8, 64];
/// Concurrency of every point.
pub const CONCURRENCY: usize = 16;
/// Warm-up and measured time per point (full run; `--quick` shortens it).
pub const WARMUP: Duration = Duration::from_secs(3);
pub const DURATION: Duration = Duration::from_secs(10);

/// `n` upstream blocks, all pointing at `url`; the first is named [`UPSTREAM`].
fn upstreams_toml(n: usize, url: &str) -> String {
    (0..n)
        .map(|i| {
            let name = if i == 0 {
                UPSTREAM.to_string()
            } else {
                format!("u{i}")
            };
            gateway::echo_upstream_toml(&name, &format!("http = {{ url = \"{url}\" }}"))
        })
        .collect()
}

struct Row {
    label: String,
    res: LoadResult,
    rss_kib: Option<u64>,
}

fn table(first: &str, rows: &[Row]) -> String {
    md_table(
        &[first, "req/s", "p50", "p99", "errors", "gateway RSS after"],
        &rows
            .iter()
            .map(|r| {
                vec![
                    r.label.clone(),
                    fmt_rps(r.res.rps),
                    fmt_us(r.res.p50_us),
                    fmt_us(r.res.p99_us),
                    r.res.errors.to_string(),
                    r.rss_kib
                        .map_or("–".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
                ]
            })
            .collect::<Vec<_>>(),
    )
}

pub async fn section(opts: &Opts) -> Result<Section> {
    let (warmup, duration) = opts.times(WARMUP, DURATION);
    let (echo, echo_url) = gateway::start_echo_http()?;
    let max_sessions = SESSIONS.iter().copied().max().unwrap_or(1) + CONCURRENCY;

    // Sessions: a fresh gateway per point, so earlier sessions do not count.
    let mut by_sessions = Vec::new();
    for &n in SESSIONS {
        let gw = gateway::start_mcpgate(opts, &upstreams_toml(1, &echo_url), max_sessions)?;
        let url = gw.mcp_url(UPSTREAM);
        let token = procs::token_for(&gw, &url, "mcp:tools mcp:echo").await?;
        let mut spec = gateway::spec(opts, &url, Some(&token), CONCURRENCY, n);
        spec.warmup = warmup;
        spec.duration = duration;
        eprintln!("  scale: {n} sessions ...");
        let res = load::run(&spec).await?;
        by_sessions.push(Row {
            label: n.to_string(),
            res,
            rss_kib: procs::rss_kib(gw.proc.pid()).ok(),
        });
    }

    // Upstreams configured.
    let mut by_upstreams = Vec::new();
    for &n in UPSTREAMS {
        let gw = gateway::start_mcpgate(opts, &upstreams_toml(n, &echo_url), max_sessions)?;
        let url = gw.mcp_url(UPSTREAM);
        let token = procs::token_for(&gw, &url, "mcp:tools mcp:echo").await?;
        let mut spec = gateway::spec(opts, &url, Some(&token), CONCURRENCY, 0);
        spec.warmup = warmup;
        spec.duration = duration;
        eprintln!("  scale: {n} upstreams ...");
        let res = load::run(&spec).await?;
        by_upstreams.push(Row {
            label: n.to_string(),
            res,
            rss_kib: procs::rss_kib(gw.proc.pid()).ok(),
        });
    }
    drop(echo);

    let t_sessions = table("sessions open", &by_sessions);
    let t_upstreams = table("upstreams configured", &by_upstreams);
    let mut md = String::new();
    let _ = writeln!(
        md,
        "`tools/call` of `echo` through `mcpgate serve` → the rmcp echo upstream over HTTP (the setup of section 2: real token, full validation, per-tool policy, audit to a file), c = {CONCURRENCY}, {} s warm-up, {} s measured per point, a fresh gateway per point. **{}**\n",
        warmup.as_secs_f64(),
        duration.as_secs_f64(),
        crate::report::SHARED_CORES_NOTE
    );
    md.push_str("Sessions: all sessions are opened first (`initialize` + `notifications/initialized` through the gateway, which opens one upstream session for each), then the workers call round robin over their share, so every session is in use; with 1 session all 16 workers share it. All sessions belong to one subject (`max_sessions_per_user` raised accordingly).\n\n");
    md.push_str(&t_sessions);
    md.push('\n');
    md.push_str("Upstreams: N `[[upstream]]` blocks (each its own protected resource, guard and policy), all pointing at the same echo server; the load goes to one of them, one session per worker.\n\n");
    md.push_str(&t_upstreams);
    md.push('\n');
    md.push_str("### Reading\n\n");
    md.push_str("- **Sessions**: a request finds its session in a hash map (by the 256-bit session id) and its upstream session id there, so the per-request cost should not grow with the number of sessions; what grows is memory (gateway and upstream each hold every session) and cache misses when the working set (10,000 sessions round robin) no longer fits the CPU caches. At 10,000 sessions the upstream (rmcp, one task and channel per session) holds as much per-session state as the gateway. With 1 session, 16 concurrent requests share one session.\n");
    md.push_str("- **Upstreams**: the upstream is picked from the request path by name; more configured upstreams add memory (a guard and policy each) and a larger lookup table, not per-request work. Differences within a few percent are run-to-run noise on 2 shared cores.\n");
    Ok(Section {
        title: "6. Scale".into(),
        text: format!("{t_sessions}\n{t_upstreams}"),
        markdown: md,
    })
}
