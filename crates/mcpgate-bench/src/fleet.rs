//! Section 10: replicas behind HAProxy. `tools/call` throughput of one
//! `mcpgate serve` on PostgreSQL reached directly, the same replica behind
//! HAProxy (the load balancer's own cost), and two replicas behind it
//! (sessions adopted across replicas), all in one run on one machine.
//! HAProxy runs the shipped `deploy/haproxy/mcpgate.cfg`
//! (`mcpgate_testkit::haproxy`).

use std::fmt::Write as _;

use anyhow::{Context, Result, bail};

use crate::authz::PgDb;
use crate::gateway::{self, UPSTREAM};
use crate::load;
use crate::procs::{self, Gateway, Proc};
use crate::report::{Opts, Section, fmt_ratio, fmt_rps, fmt_us, md_table};

/// Concurrency of every point.
const CONCURRENCY: usize = 16;

struct Point {
    target: &'static str,
    res: load::LoadResult,
    /// CPU µs per request of the replicas and HAProxy together.
    cpu_per_req: Option<f64>,
}

/// HAProxy on `front` in front of `replicas`, up when its front answers
/// `/readyz`.
fn start_haproxy(dir: &std::path::Path, front: u16, replicas: &[&Gateway]) -> Result<Proc> {
    let bin = mcpgate_testkit::haproxy::binary()
        .context("haproxy is not installed (Debian: apt-get install haproxy)")?;
    let ports: Vec<u16> = replicas
        .iter()
        .map(|g| {
            g.base
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .expect("replica port")
        })
        .collect();
    let cfg = dir.join(format!("haproxy-{front}.cfg"));
    std::fs::write(&cfg, mcpgate_testkit::haproxy::config(front, &ports))?;
    let mut cmd = std::process::Command::new(bin);
    cmd.arg("-db").arg("-f").arg(&cfg);
    let mut p = Proc::spawn(
        "haproxy",
        &mut cmd,
        Some(&dir.join(format!("haproxy-{front}.log"))),
    )?;
    procs::wait_http_ready(&mut p, front, "/readyz")?;
    Ok(p)
}

async fn measure(
    target: &'static str,
    opts: &Opts,
    url: &str,
    token: &str,
    pids: &[u32],
) -> Result<Point> {
    eprintln!("  {target} c={CONCURRENCY}...");
    let spec = gateway::spec(opts, url, Some(token), CONCURRENCY, CONCURRENCY);
    let (res, cpu) = load::run_cpu(&spec, pids).await?;
    if res.errors > 0 {
        eprintln!(
            "    {} errors; first: {}",
            res.errors,
            res.first_error.as_deref().unwrap_or("?")
        );
    }
    let total: u64 = cpu.iter().sum();
    let cpu_per_req = (res.requests > 0).then(|| total as f64 / res.requests as f64);
    Ok(Point {
        target,
        res,
        cpu_per_req,
    })
}

pub async fn section(opts: &Opts) -> Result<Section> {
    if mcpgate_testkit::haproxy::binary().is_none() {
        bail!("haproxy is not installed (Debian: apt-get install haproxy)");
    }
    let db = PgDb::create().await?;
    let result = run(opts, &db).await;
    db.drop_db().await?;
    result
}

async fn run(opts: &Opts, db: &PgDb) -> Result<Section> {
    let dir = tempfile::tempdir()?;
    let (_echo, echo_url) = gateway::start_echo_http()?;
    let (_, master) = mcpgate_jose::MasterKey::generate(&mcpgate_jose::SystemRng::new());
    let key = dir.path().join("master.key");
    std::fs::write(&key, master)?;
    // One issuer for the fleet: HAProxy's address (the replicas are also
    // reached directly; the gateway checks the token's audience, not the
    // request's port).
    let (front1, front2) = (procs::free_port(), procs::free_port());
    let public = format!("http://127.0.0.1:{front2}");
    let top = format!(
        "public_url = \"{public}\"\nmaster_key = \"${{file:{}}}\"\n",
        key.display()
    );
    let extra = format!(
        "[store]\nbackend = \"postgres\"\npostgres_url = \"{}\"\n\n{}{}",
        db.url,
        gateway::gateway_toml(CONCURRENCY, std::path::Path::new("{dir}/audit.jsonl")),
        gateway::echo_upstream_toml(UPSTREAM, &format!("http = {{ url = \"{echo_url}\" }}")),
    );
    let a = procs::start_replica(opts, &top, "", &extra, &[])?;
    let b = procs::start_replica(opts, &top, "", &extra, &[])?;
    let resource = format!("{public}/mcp/{UPSTREAM}");
    let token = procs::token_for(&a, &resource, "mcp:tools mcp:echo").await?;
    let one_lb = start_haproxy(dir.path(), front1, &[&a])?;
    let two_lb = start_haproxy(dir.path(), front2, &[&a, &b])?;
    let path = format!("/mcp/{UPSTREAM}");
    let mut points = Vec::new();
    points.push(
        measure(
            "one replica, direct",
            opts,
            &format!("{}{path}", a.base),
            &token,
            &[a.proc.pid()],
        )
        .await?,
    );
    points.push(
        measure(
            "one replica behind HAProxy",
            opts,
            &format!("http://127.0.0.1:{front1}{path}"),
            &token,
            &[a.proc.pid(), one_lb.pid()],
        )
        .await?,
    );
    points.push(
        measure(
            "two replicas behind HAProxy",
            opts,
            &format!("http://127.0.0.1:{front2}{path}"),
            &token,
            &[a.proc.pid(), b.proc.pid(), two_lb.pid()],
        )
        .await?,
    );
    let base = points[0].res.rps;
    let rows: Vec<Vec<String>> = points
        .iter()
        .map(|p| {
            vec![
                p.target.to_string(),
                fmt_rps(p.res.rps),
                fmt_ratio(p.res.rps / base),
                fmt_us(p.res.p50_us),
                fmt_us(p.res.p99_us),
                p.res.errors.to_string(),
                p.cpu_per_req
                    .map(|c| format!("{c:.1}"))
                    .unwrap_or_else(|| "–".into()),
            ]
        })
        .collect();
    let table = md_table(
        &[
            &format!("target (c={CONCURRENCY}, PostgreSQL)"),
            "req/s",
            "vs direct",
            "p50",
            "p99",
            "errors",
            "CPU µs/req (replicas + HAProxy)",
        ],
        &rows,
    );
    let (warmup, duration) = opts.times(gateway::WARMUP, gateway::DURATION);
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Closed-loop `tools/call` of the `echo` tool on an HTTP upstream, c = {CONCURRENCY} workers each with its own MCP session, {} s warm-up, {} s measured per row; release `mcpgate serve` replicas on one PostgreSQL database (sessions shared through it), HAProxy {} with the shipped `deploy/haproxy/mcpgate.cfg` (round robin: consecutive requests of one session go to different replicas, which adopt it from the store and confirm it once a second). {}\n",
        warmup.as_secs_f64(),
        duration.as_secs_f64(),
        crate::report::command_version("haproxy", &["-v"])
            .lines()
            .next()
            .unwrap_or("")
            .trim(),
        crate::report::SHARED_CORES_NOTE
    );
    md.push_str(&table);
    md.push_str("\n**Reading.** The second row is the load balancer's own cost: one more loopback hop and HTTP parse each way. On this 2-core machine the load generator, HAProxy, the replicas, PostgreSQL and the upstream share the same two cores, so a second replica cannot add throughput here; the third row shows what sharing sessions across replicas costs (adoption on first use at each replica, one store check per session and second) rather than what a fleet on separate machines gains.\n");
    Ok(Section {
        title: "10. A fleet behind HAProxy".into(),
        text: table,
        markdown: md,
    })
}
