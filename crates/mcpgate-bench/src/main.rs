//! mcpgate benchmarks (issue 7): the runner and `docs/benchmarks.md`.
//!
//! `cargo run --release -p mcpgate-bench -- --markdown docs/benchmarks.md`
//!
//! Sections, in order: validation (1), gateway (2), peers (3), authz (4), memory (5), scale (6),
//! sandbox (7), envelope (8).
//! Subcommands used by the sections (each also usable by hand):
//!
//! - `load --url U [--bearer T] --concurrency N --sessions S --warmup-ms W --duration-ms D
//!   --tool NAME --arguments JSON [--json]` — the closed-loop load generator;
//! - `echo-upstream (--http PORT | --stdio)` — an rmcp MCP server with the tool `echo`;
//! - `bare-fixed --port PORT` — a bare hyper server answering a fixed JSON-RPC result;
//! - `bare-hop --port PORT --upstream URL` — a bare hyper proxy hop;
//! - `soak [--duration SECS] [--bin-dir DIR]` — not a section: a pass/fail soak of
//!   `mcpgate serve` under mixed, hostile load ([`soak`]).

mod authz;
mod envelope;
mod fleet;
mod gateway;
mod load;
mod memory;
mod peers;
mod procs;
mod report;
mod sandbox;
mod scale;
mod soak;
mod validation;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::report::{Opts, Section};

/// Every section, in report order.
const SECTIONS: &[&str] = &[
    "validation",
    "gateway",
    "peers",
    "authz",
    "memory",
    "scale",
    "sandbox",
    "envelope",
    "fleet",
];

const USAGE: &str = "usage: mcpgate-bench [--only a,b] [--quick] [--pin-loadgen] [--no-build] [--markdown PATH]
       mcpgate-bench load --url U [--bearer T] --concurrency N --sessions S --warmup-ms W --duration-ms D --tool NAME --arguments JSON [--json]
       mcpgate-bench echo-upstream (--http PORT | --stdio)
       mcpgate-bench bare-fixed --port PORT
       mcpgate-bench bare-hop --port PORT --upstream URL
       mcpgate-bench soak [--duration SECS] [--bin-dir DIR]
sections: validation, gateway, peers, authz, memory, scale, sandbox, envelope";

struct RunArgs {
    only: Vec<String>,
    quick: bool,
    pin_loadgen: bool,
    build: bool,
    markdown: Option<PathBuf>,
}

fn parse_run_args(args: &[String]) -> Result<RunArgs> {
    let mut r = RunArgs {
        only: SECTIONS.iter().map(|s| (*s).to_string()).collect(),
        quick: false,
        pin_loadgen: false,
        build: true,
        markdown: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--only" => {
                let v = it
                    .next()
                    .context("--only needs a list, e.g. gateway,scale")?;
                r.only = v.split(',').map(|s| s.trim().to_string()).collect();
                for s in &r.only {
                    if !SECTIONS.contains(&s.as_str()) {
                        bail!(
                            "--only: unknown section {s:?} (sections: {})",
                            SECTIONS.join(", ")
                        );
                    }
                }
            }
            "--quick" => r.quick = true,
            "--pin-loadgen" => r.pin_loadgen = true,
            "--no-build" => r.build = false,
            "--markdown" => {
                r.markdown = Some(it.next().context("--markdown needs a PATH")?.into());
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(r)
}

/// The exact command line of this run, as a user would type it.
fn command_line(args: &[String]) -> String {
    let mut s = String::from("cargo run --release -p mcpgate-bench --");
    for a in args {
        s.push(' ');
        s.push_str(a);
    }
    s
}

/// Builds the release `mcpgate` binary next to this one (the gateway sections run it).
fn build_mcpgate() -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("building the release mcpgate binary ...");
    let st = std::process::Command::new(cargo)
        .args(["build", "--release", "-p", "mcpgate", "--bin", "mcpgate"])
        .status()
        .context("running cargo build")?;
    if !st.success() {
        bail!("cargo build --release -p mcpgate failed ({st})");
    }
    Ok(())
}

async fn run_section(name: &str, opts: &Opts) -> Result<Section> {
    match name {
        "validation" => validation::section(opts).await,
        "gateway" => gateway::section(opts).await,
        "scale" => scale::section(opts).await,
        "peers" => peers::section(opts).await,
        "authz" => authz::section(opts).await,
        "memory" => memory::section(opts).await,
        "sandbox" => sandbox::section(opts).await,
        "envelope" => envelope::section(opts).await,
        "fleet" => fleet::section(opts).await,
        other => bail!("unknown section {other:?}"),
    }
}

fn peer_versions() -> Vec<(String, String)> {
    vec![
        (
            "rustc".into(),
            report::command_version("rustc", &["--version"]),
        ),
        (
            "node".into(),
            report::command_version("node", &["--version"]),
        ),
        (
            "python3".into(),
            report::command_version("python3", &["--version"]),
        ),
        (
            "taskset".into(),
            report::command_version("taskset", &["--version"]),
        ),
    ]
}

fn header_markdown(command: &str, opts: &Opts, versions: &[(String, String)]) -> String {
    let mut md = String::new();
    md.push_str("# Benchmarks\n\n");
    md.push_str("Generated by `mcpgate-bench` (issue 7). Benchmarks are not pass/fail tests; each comparison runs its baseline in the same run on the same machine. ");
    md.push_str(report::SHARED_CORES_NOTE);
    md.push_str("\n\n");
    if opts.quick {
        md.push_str("> **Quick run** (`--quick`): about 2 s per point. These numbers are noise; use them to check the harness, not mcpgate.\n\n");
    }
    md.push_str("## Machine\n\n");
    let _ = writeln!(md, "- cores (available parallelism): {}", report::cores());
    let _ = writeln!(md, "- CPU: {}", report::cpu_model());
    for (k, v) in versions {
        let _ = writeln!(md, "- {k}: {v}");
    }
    let _ = writeln!(
        md,
        "- mcpgate: {} (release profile, `opt-level = 3`), jsonwebtoken with aws-lc-rs\n",
        env!("CARGO_PKG_VERSION")
    );
    md.push_str("## Command\n\n");
    let _ = writeln!(md, "```\n{command}\n```\n");
    md
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args.first().map(String::as_str) {
        Some("-h" | "--help") => {
            println!("{USAGE}");
            return Ok(());
        }
        Some("load") => return rt.block_on(load::cli(&args[1..])),
        Some("echo-upstream") => return rt.block_on(gateway::echo_upstream_cli(&args[1..])),
        Some("bare-fixed") => return rt.block_on(gateway::bare_fixed_cli(&args[1..])),
        Some("bare-hop") => return rt.block_on(gateway::bare_hop_cli(&args[1..])),
        Some("soak") => return rt.block_on(soak::cli(&args[1..])),
        _ => {}
    }
    let run = parse_run_args(&args)?;
    if cfg!(debug_assertions) {
        eprintln!("warning: debug build; numbers are meaningless. Use --release.");
    }
    let exe = std::env::current_exe().context("locating the bench binary")?;
    let opts = Opts {
        quick: run.quick,
        pin_loadgen: run.pin_loadgen,
        bin_dir: exe
            .parent()
            .context("the bench binary has no directory")?
            .to_path_buf(),
    };
    if run.build
        && run
            .only
            .iter()
            .any(|s| s != "validation" && s != "envelope")
    {
        build_mcpgate()?;
    }
    let versions = peer_versions();
    let started = Instant::now();
    let mut sections = Vec::new();
    for name in SECTIONS.iter().filter(|s| run.only.iter().any(|o| o == *s)) {
        eprintln!("== {name} ==");
        let t = Instant::now();
        // A failing section is reported as such; the others still run.
        let s = rt.block_on(run_section(name, &opts)).unwrap_or_else(|e| {
            eprintln!("section {name} failed: {e:#}");
            Section {
                title: format!("{name}: failed"),
                markdown: format!("This section failed in this run: `{e:#}`\n"),
                text: format!("failed: {e:#}\n"),
            }
        });
        eprintln!("== {name}: {:.0} s ==", t.elapsed().as_secs_f64());
        println!("## {}\n\n{}", s.title, s.text);
        sections.push(s);
    }
    eprintln!("total: {:.0} s", started.elapsed().as_secs_f64());
    if let Some(path) = run.markdown {
        let mut md = header_markdown(&command_line(&args), &opts, &versions);
        for s in &sections {
            let _ = write!(md, "## {}\n\n{}\n", s.title, s.markdown.trim_end());
            md.push('\n');
        }
        let _ = writeln!(
            md,
            "Total run time: {:.0} s.",
            started.elapsed().as_secs_f64()
        );
        std::fs::write(&path, md).with_context(|| format!("writing {path:?}"))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_args_parse_and_refuse_unknown_sections() {
        let a = |v: &[&str]| v.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
        let r = parse_run_args(&a(&["--only", "gateway,scale", "--quick"])).unwrap();
        assert_eq!(r.only, vec!["gateway", "scale"]);
        assert!(r.quick && !r.pin_loadgen && r.build);
        assert!(parse_run_args(&a(&["--only", "nope"])).is_err());
        assert!(parse_run_args(&a(&["--bogus"])).is_err());
        assert_eq!(
            command_line(&a(&["--markdown", "docs/benchmarks.md"])),
            "cargo run --release -p mcpgate-bench -- --markdown docs/benchmarks.md"
        );
    }
}
