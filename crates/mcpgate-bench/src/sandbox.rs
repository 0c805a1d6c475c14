//! Item 7: what the stdio sandbox costs (docs/sandbox.md). Each comparison runs the
//! unsandboxed baseline in the same run, interleaved with the sandboxed case.
//!
//! - **Start-up**: wall time from spawn to exit of `/bin/true`, and from spawn to the
//!   `initialize` answer of the echo upstream, started directly and through the sandbox
//!   helper (the release `mcpgate __sandbox-exec`, with the gateway's default plan, a private
//!   directory created and handed to `nobody` as the gateway does).
//! - **Per request**: `mcpgate serve` with the echo upstream over stdio (a child per
//!   session), the default sandbox against `[upstream.sandbox] mode = "off"`.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use mcpgate_sandbox::{Plan, PlanInput, SandboxConfig, Support};

use crate::gateway::{self, Point};
use crate::report::{self, Opts, Section};

const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// One way to start a child: directly, or through the helper with a plan.
struct Starter {
    helper: std::path::PathBuf,
    plan: Option<Plan>,
}

impl Starter {
    /// Builds the command for `program args`; the returned temp dir must live
    /// as long as the child (as the gateway keeps it).
    fn command(
        &self,
        program: &Path,
        args: &[&str],
    ) -> Result<(Command, Option<tempfile::TempDir>)> {
        let Some(plan) = &self.plan else {
            let mut c = Command::new(program);
            c.args(args).env_clear().env("PATH", PATH);
            return Ok((c, None));
        };
        let (plan, dir) = plan.with_new_private_dir("mcpgate-bench-")?;
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut c = Command::new(&self.helper);
        c.args(mcpgate_sandbox::helper::helper_args(&plan, &args))
            .env_clear()
            .env("PATH", PATH)
            .env("HOME", dir.path());
        Ok((c, Some(dir)))
    }
}

fn plan_for(program: &Path) -> Result<Plan> {
    Plan::build(&PlanInput {
        config: &SandboxConfig::default(),
        command: &program.display().to_string(),
        path_env: PATH,
        cwd: None,
        protected: &[],
        support: Support::detect(),
    })
    .map_err(|e| anyhow::anyhow!("sandbox plan: {e}"))
}

/// Median and 90th percentile in µs.
fn stats(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.9))
}

/// Spawn to exit of `/bin/true`.
fn run_true(s: &Starter) -> Result<f64> {
    let t = Instant::now();
    let (mut c, _dir) = s.command(Path::new("/bin/true"), &[])?;
    let st = c.stdin(Stdio::null()).status()?;
    let us = t.elapsed().as_secs_f64() * 1e6;
    if !st.success() {
        bail!("/bin/true failed: {st}");
    }
    Ok(us)
}

/// Spawn to the `initialize` answer of the echo upstream (stdio).
fn run_echo(s: &Starter, echo: &Path) -> Result<f64> {
    let t = Instant::now();
    let (mut c, _dir) = s.command(echo, &["echo-upstream", "--stdio"])?;
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-06-18","capabilities":{{}},"clientInfo":{{"name":"bench","version":"0"}}}}}}"#
    )?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
    let us = t.elapsed().as_secs_f64() * 1e6;
    let _ = child.kill();
    let _ = child.wait();
    if !line.contains("\"result\"") {
        bail!("echo upstream did not answer initialize: {line:?}");
    }
    Ok(us)
}

pub async fn section(opts: &Opts) -> Result<Section> {
    let helper = opts.mcpgate_bin();
    let echo = std::env::current_exe().context("locating the bench binary")?;
    let support = Support::detect();
    let mut md = String::new();
    let mut text = String::new();
    let _ = writeln!(
        md,
        "Kernel: Landlock ABI {}, seccomp {}; mcpgate runs as {}.\n",
        support.landlock_abi,
        if support.seccomp { "yes" } else { "no" },
        if support.root {
            "root (children as nobody)"
        } else {
            "an unprivileged user"
        }
    );

    // Start-up, interleaved: direct, sandboxed, direct, ...
    let (n_true, n_echo) = if opts.quick { (40, 10) } else { (400, 60) };
    let mut rows = Vec::new();
    for (what, n, program) in [
        ("`/bin/true`, spawn → exit", n_true, Path::new("/bin/true")),
        (
            "echo upstream, spawn → `initialize` answer",
            n_echo,
            echo.as_path(),
        ),
    ] {
        let direct = Starter {
            helper: helper.clone(),
            plan: None,
        };
        let sandboxed = Starter {
            helper: helper.clone(),
            plan: Some(plan_for(program)?),
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let run = |s: &Starter| {
                if program == Path::new("/bin/true") {
                    run_true(s)
                } else {
                    run_echo(s, program)
                }
            };
            a.push(run(&direct)?);
            b.push(run(&sandboxed)?);
        }
        let (am, a90) = stats(a);
        let (bm, b90) = stats(b);
        let _ = writeln!(
            text,
            "sandbox start-up {what}: direct {am:.0} µs, sandboxed {bm:.0} µs (+{:.0} µs)",
            bm - am
        );
        rows.push(vec![
            what.to_string(),
            n.to_string(),
            report::fmt_us(am),
            report::fmt_us(a90),
            report::fmt_us(bm),
            report::fmt_us(b90),
            format!("+{}", report::fmt_us(bm - am)),
        ]);
    }
    md.push_str("### Child start-up (spawn through the helper, same run, interleaved)\n\n");
    md.push_str(&report::md_table(
        &[
            "what",
            "runs",
            "direct p50",
            "direct p90",
            "sandboxed p50",
            "sandboxed p90",
            "added p50",
        ],
        &rows,
    ));

    // Per request: the gateway's stdio path with and without the sandbox.
    let conc: &[usize] = &[1, 16];
    let mut points: Vec<Point> = Vec::new();
    for (target, sandbox) in [
        (T_SANDBOX, ""),
        (T_NO_SANDBOX, "[upstream.sandbox]\nmode = \"off\"\n"),
    ] {
        let transport = gateway::stdio_transport(false)?;
        let upstream = format!(
            "{}{sandbox}\n",
            gateway::echo_upstream_toml(gateway::UPSTREAM, &transport)
        );
        points.extend(gateway::measure_gateway(opts, target, &upstream, conc, false).await?);
    }
    let mut rows = Vec::new();
    for &c in conc {
        let find = |t: &str| points.iter().find(|p| p.target == t && p.concurrency == c);
        let (Some(s), Some(o)) = (find(T_SANDBOX), find(T_NO_SANDBOX)) else {
            continue;
        };
        let ratio = match (s.cpu_per_req, o.cpu_per_req) {
            (Some(a), Some(b)) if b > 0.0 => report::fmt_ratio(a / b),
            _ => "—".into(),
        };
        let _ = writeln!(
            text,
            "sandbox per request c={c}: {:.0} vs {:.0} req/s, CPU ratio {ratio}",
            s.res.rps, o.res.rps
        );
        rows.push(vec![
            c.to_string(),
            report::fmt_rps(o.res.rps),
            report::fmt_rps(s.res.rps),
            o.cpu_per_req.map(report::fmt_us).unwrap_or_default(),
            s.cpu_per_req.map(report::fmt_us).unwrap_or_default(),
            ratio,
            report::fmt_us(o.res.p50_us),
            report::fmt_us(s.res.p50_us),
        ]);
    }
    md.push_str("\n### Per request: mcpgate → echo (stdio, child per session)\n\n");
    md.push_str(&report::md_table(
        &[
            "c",
            "req/s, sandbox off",
            "req/s, sandbox on",
            "CPU µs/req off",
            "CPU µs/req on",
            "CPU on ÷ off",
            "p50 off",
            "p50 on",
        ],
        &rows,
    ));
    md.push_str("\nReading: the sandbox is applied once, between fork and exec, so its cost is start-up: one more `execve` (the helper), the Landlock ruleset, the seccomp filters and the private directory. After that the child runs at full speed. Landlock checks happen only when a file is opened, and the seccomp filter is a few BPF instructions per system call, so the per-request figures should agree within this machine's noise. CPU µs/req counts the gateway and its children.\n");
    Ok(Section {
        title: "7. Stdio sandbox".into(),
        markdown: md,
        text,
    })
}

const T_SANDBOX: &str = "mcpgate → echo (stdio, default sandbox)";
const T_NO_SANDBOX: &str = "mcpgate → echo (stdio, sandbox off)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_pick_median_and_p90() {
        let (m, p) = stats((1..=10).map(f64::from).collect());
        assert_eq!(m, 6.0);
        assert_eq!(p, 9.0);
    }

    #[test]
    fn the_direct_starter_runs_the_program() {
        let s = Starter {
            helper: "/nonexistent".into(),
            plan: None,
        };
        assert!(run_true(&s).unwrap() > 0.0);
    }
}
