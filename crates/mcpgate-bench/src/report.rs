//! What every section shares: run options, a section's output, markdown tables and number
//! formatting, and facts about the machine for the report header.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// Options of one bench run.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Short runs for development (~2 s per point); the numbers are then noise.
    pub quick: bool,
    /// Also run the load generator pinned to one core (`taskset -c 0`).
    pub pin_loadgen: bool,
    /// Where the release binaries are (`target/release`): `mcpgate`, and this bench itself.
    pub bin_dir: PathBuf,
}

/// Warm-up and measured time per point under `--quick`, in every section.
pub const QUICK_WARMUP: Duration = Duration::from_millis(500);
pub const QUICK_DURATION: Duration = Duration::from_secs(2);

impl Opts {
    /// Warm-up and measured time per point: a section's full-run pair, or
    /// [`QUICK_WARMUP`] and [`QUICK_DURATION`] under `--quick`.
    pub fn times(&self, warmup: Duration, duration: Duration) -> (Duration, Duration) {
        if self.quick {
            (QUICK_WARMUP, QUICK_DURATION)
        } else {
            (warmup, duration)
        }
    }

    /// The release `mcpgate` binary.
    pub fn mcpgate_bin(&self) -> PathBuf {
        self.bin_dir.join("mcpgate")
    }
}

/// One section of the report.
#[derive(Debug, Clone, Default)]
pub struct Section {
    /// Heading, e.g. `2. Gateway overhead` (written as `## {title}`).
    pub title: String,
    /// The body: tables plus the "Reading" paragraph(s).
    pub markdown: String,
    /// What to print on stdout.
    pub text: String,
}

/// A GitHub markdown table. The first column is left-aligned, the others right-aligned.
/// Rows shorter than the header are padded with empty cells; `|` in cells is escaped.
pub fn md_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let esc = |s: &str| s.replace('|', "\\|");
    let mut out = String::new();
    out.push('|');
    for h in headers {
        out.push(' ');
        out.push_str(&esc(h));
        out.push_str(" |");
    }
    out.push_str("\n|");
    for i in 0..headers.len() {
        out.push_str(if i == 0 { "---|" } else { "---:|" });
    }
    out.push('\n');
    for row in rows {
        out.push('|');
        for i in 0..headers.len() {
            out.push(' ');
            out.push_str(&esc(row.get(i).map_or("", String::as_str)));
            out.push_str(" |");
        }
        out.push('\n');
    }
    out
}

/// Requests/s with a sensible precision (`18934`, `1.2k` is not used: exact counts read better).
pub fn fmt_rps(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Microseconds, shown as µs below 10 ms and as ms above.
pub fn fmt_us(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    if v >= 10_000.0 {
        format!("{:.1} ms", v / 1000.0)
    } else if v >= 100.0 {
        format!("{v:.0} µs")
    } else {
        format!("{v:.1} µs")
    }
}

/// A ratio like `0.83x`.
pub fn fmt_ratio(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}x")
    } else {
        "–".into()
    }
}

/// The CPU model from `/proc/cpuinfo`.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Logical cores available to this process.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

/// The first line a command prints (`rustc --version`), or `unknown`.
pub fn command_version(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            let out = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&out)
                .lines()
                .next()
                .map(|l| l.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The note that goes beside every throughput figure.
pub const SHARED_CORES_NOTE: &str = "The load generator, the gateway and the upstream all run on the same machine and share its cores; every requests/s figure here is bounded by that.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md_table_pads_escapes_and_aligns() {
        let t = md_table(
            &["name", "rps"],
            &[vec!["a|b".into(), "1".into()], vec!["c".into()]],
        );
        assert_eq!(t, "| name | rps |\n|---|---:|\n| a\\|b | 1 |\n| c |  |\n");
    }

    #[test]
    fn number_formats() {
        assert_eq!(fmt_us(57.04), "57.0 µs");
        assert_eq!(fmt_us(560.4), "560 µs");
        assert_eq!(fmt_us(18_000.0), "18.0 ms");
        assert_eq!(fmt_rps(18_934.4), "18934");
        assert_eq!(fmt_rps(12.34), "12.3");
        assert_eq!(fmt_ratio(f64::NAN), "–");
        assert_eq!(fmt_ratio(1.5), "1.50x");
    }
}
