//! A closed-loop MCP Streamable HTTP load generator.
//!
//! Each worker owns one keep-alive HTTP/1.1 connection (hyper) and ≥ 1 MCP sessions, each
//! opened with `initialize` + `notifications/initialized` at protocol 2025-11-25; then it loops
//! `tools/call` over its sessions round robin, one request in flight. Answers may be
//! `application/json` or `text/event-stream`; a non-2xx status, a JSON-RPC error, a tool
//! result with `isError: true` or an answer without a response counts as an error.
//!
//! All workers open their sessions first; then the clock starts for everybody at once:
//! `warmup` (not recorded), then `duration` (recorded: latency of every request completed in
//! the window, in an HDR histogram with 3 significant digits).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::AsyncBufReadExt as _;

/// The protocol version the sessions negotiate.
pub const PROTOCOL_VERSION: &str = "2025-11-25";
/// Longest a single request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// The MCP endpoint, `http://127.0.0.1:PORT/path` (plain HTTP only).
    pub url: String,
    /// `Authorization: Bearer` on every request.
    pub bearer: Option<String>,
    /// Workers = connections = requests in flight.
    pub concurrency: usize,
    /// Total sessions, ≥ concurrency; 0 = one per worker.
    pub sessions: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub tool: String,
    pub arguments: Value,
}

/// What came out. Latencies in µs; `rps` counts successful requests only.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoadResult {
    /// Requests completed in the measured window (successes and errors).
    pub requests: u64,
    pub errors: u64,
    pub rps: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// Length of the measured window in seconds.
    #[serde(default)]
    pub secs: f64,
    /// The first error seen (for the report), if any.
    #[serde(default)]
    pub first_error: Option<String>,
}

/// Runs the load in this process.
pub async fn run(spec: &LoadSpec) -> Result<LoadResult> {
    run_marked(spec, |_| {}).await
}

/// Runs the load in this process; `cpu_pids`: processes (with their descendants) whose CPU
/// time is sampled at the start and end of the measured window. Returns the CPU µs each used.
pub async fn run_cpu(spec: &LoadSpec, cpu_pids: &[u32]) -> Result<(LoadResult, Vec<u64>)> {
    let mut start = Vec::new();
    let mut end = Vec::new();
    let res = run_marked(spec, |m| {
        let v: Vec<u64> = cpu_pids
            .iter()
            .map(|p| crate::procs::tree_cpu_time_us(*p).unwrap_or(0))
            .collect();
        match m {
            Mark::Start => start = v,
            Mark::End => end = v,
        }
    })
    .await?;
    Ok((res, cpu_delta(&start, &end)))
}

/// Runs the load in a child process pinned to core 0 (`taskset -c 0 mcpgate-bench load ...`),
/// with CPU sampling as in [`run_cpu`] (on the child's window marks).
pub async fn run_pinned_cpu(spec: &LoadSpec, cpu_pids: &[u32]) -> Result<(LoadResult, Vec<u64>)> {
    let exe = std::env::current_exe().context("locating the bench binary")?;
    let mut cmd = tokio::process::Command::new("taskset");
    cmd.arg("-c").arg("0").arg(exe).args(cli_args(spec));
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().context(
        "spawning `taskset -c 0 mcpgate-bench load` (is util-linux's taskset installed?)",
    )?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let sample = || -> Vec<u64> {
        cpu_pids
            .iter()
            .map(|p| crate::procs::tree_cpu_time_us(*p).unwrap_or(0))
            .collect()
    };
    let (mut start, mut end, mut json) = (Vec::new(), Vec::new(), None);
    while let Some(line) = lines.next_line().await? {
        match line.trim() {
            "MARK start" => start = sample(),
            "MARK end" => end = sample(),
            l if l.starts_with('{') => json = Some(l.to_string()),
            _ => {}
        }
    }
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        bail!(
            "pinned load generator failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let json = json.context("pinned load generator printed no result")?;
    let res: LoadResult = serde_json::from_str(&json).context("pinned load generator result")?;
    Ok((res, cpu_delta(&start, &end)))
}

fn cpu_delta(start: &[u64], end: &[u64]) -> Vec<u64> {
    start
        .iter()
        .zip(end)
        .map(|(s, e)| e.saturating_sub(*s))
        .collect()
}

/// The `load` subcommand's arguments for `spec` (`--json` included).
pub fn cli_args(spec: &LoadSpec) -> Vec<String> {
    let mut a = vec!["load".to_string(), "--url".into(), spec.url.clone()];
    if let Some(b) = &spec.bearer {
        a.extend(["--bearer".into(), b.clone()]);
    }
    a.extend([
        "--concurrency".into(),
        spec.concurrency.to_string(),
        "--sessions".into(),
        spec.sessions.to_string(),
        "--warmup-ms".into(),
        spec.warmup.as_millis().to_string(),
        "--duration-ms".into(),
        spec.duration.as_millis().to_string(),
        "--tool".into(),
        spec.tool.clone(),
        "--arguments".into(),
        spec.arguments.to_string(),
        "--json".into(),
    ]);
    a
}

/// Parses the `load` subcommand's arguments (after `load`). Returns the spec and `--json`.
pub fn parse_cli(args: &[String]) -> Result<(LoadSpec, bool)> {
    let mut spec = LoadSpec {
        url: String::new(),
        bearer: None,
        concurrency: 1,
        sessions: 0,
        warmup: Duration::from_secs(1),
        duration: Duration::from_secs(5),
        tool: "echo".into(),
        arguments: serde_json::json!({"text": "hello"}),
    };
    let mut json = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .cloned()
                .with_context(|| format!("{a} needs a value"))
        };
        match a.as_str() {
            "--url" => spec.url = val()?,
            "--bearer" => spec.bearer = Some(val()?),
            "--concurrency" => spec.concurrency = val()?.parse().context("--concurrency")?,
            "--sessions" => spec.sessions = val()?.parse().context("--sessions")?,
            "--warmup-ms" => {
                spec.warmup = Duration::from_millis(val()?.parse().context("--warmup-ms")?);
            }
            "--duration-ms" => {
                spec.duration = Duration::from_millis(val()?.parse().context("--duration-ms")?);
            }
            "--tool" => spec.tool = val()?,
            "--arguments" => {
                spec.arguments =
                    serde_json::from_str(&val()?).context("--arguments is not JSON")?;
            }
            "--json" => json = true,
            other => bail!("load: unknown argument {other:?}"),
        }
    }
    if spec.url.is_empty() {
        bail!("load: --url is required");
    }
    if spec.concurrency == 0 {
        bail!("load: --concurrency must be at least 1");
    }
    if spec.duration.is_zero() {
        bail!("load: --duration-ms must be positive");
    }
    Ok((spec, json))
}

/// The `load` subcommand: runs, prints `MARK start` / `MARK end` at the window's edges (with
/// `--json`) and the result (one JSON line with `--json`, else text).
pub async fn cli(args: &[String]) -> Result<()> {
    let (spec, json) = parse_cli(args)?;
    let res = run_marked(&spec, |m| {
        if json {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "MARK {}",
                match m {
                    Mark::Start => "start",
                    Mark::End => "end",
                }
            );
            let _ = out.flush();
        }
    })
    .await?;
    if json {
        println!("{}", serde_json::to_string(&res)?);
    } else {
        println!(
            "{} requests ({} errors) in {:.1} s: {:.0} req/s, p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs",
            res.requests,
            res.errors,
            res.secs,
            res.rps,
            res.p50_us,
            res.p90_us,
            res.p99_us,
            res.p999_us
        );
        if let Some(e) = &res.first_error {
            println!("first error: {e}");
        }
    }
    Ok(())
}

/// The edges of the measured window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Start,
    End,
}

/// Where to connect and what to send.
struct Target {
    addr: String,
    host: HeaderValue,
    path: String,
    bearer: Option<HeaderValue>,
    /// `tools/call` body before the id: `{"jsonrpc":"2.0","method":"tools/call","params":…,"id":`
    call_prefix: String,
}

impl Target {
    fn new(spec: &LoadSpec) -> Result<Self> {
        let uri: http::Uri = spec.url.parse().context("load: bad --url")?;
        if uri.scheme_str() != Some("http") {
            bail!("load: only http:// URLs are supported");
        }
        let auth = uri.authority().context("load: URL has no host")?;
        let port = auth.port_u16().unwrap_or(80);
        let addr = format!("{}:{port}", auth.host());
        let path = uri
            .path_and_query()
            .map_or("/".to_string(), |p| p.as_str().to_string());
        let params = serde_json::json!({"name": spec.tool, "arguments": spec.arguments});
        Ok(Self {
            host: HeaderValue::from_str(auth.as_str())?,
            addr,
            path,
            bearer: spec
                .bearer
                .as_ref()
                .map(|b| HeaderValue::from_str(&format!("Bearer {b}")))
                .transpose()?,
            call_prefix: format!(
                "{{\"jsonrpc\":\"2.0\",\"method\":\"tools/call\",\"params\":{params},\"id\":"
            ),
        })
    }

    fn request(
        &self,
        body: String,
        session: Option<&HeaderValue>,
        proto: bool,
    ) -> Request<Full<Bytes>> {
        let mut b = Request::post(&self.path)
            .header(header::HOST, self.host.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, text/event-stream");
        if let Some(t) = &self.bearer {
            b = b.header(header::AUTHORIZATION, t.clone());
        }
        if proto {
            b = b.header("mcp-protocol-version", PROTOCOL_VERSION);
        }
        if let Some(s) = session {
            b = b.header("mcp-session-id", s.clone());
        }
        b.body(Full::new(Bytes::from(body)))
            .unwrap_or_else(|_| Request::new(Full::new(Bytes::new())))
    }
}

async fn connect(addr: &str) -> Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// One answer: status, session id header, content type and body.
struct Answer {
    status: StatusCode,
    session: Option<HeaderValue>,
    sse: bool,
    body: Bytes,
}

async fn send(
    conn: &mut Option<SendRequest<Full<Bytes>>>,
    target: &Target,
    req: Request<Full<Bytes>>,
) -> Result<Answer> {
    if conn.as_ref().is_none_or(|c| c.is_closed()) {
        *conn = Some(connect(&target.addr).await?);
    }
    let sender = conn.as_mut().context("no connection")?;
    let fut = async {
        sender.ready().await?;
        let resp = sender.send_request(req).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        anyhow::Ok((parts, body))
    };
    let (parts, body) = match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            *conn = None;
            return Err(e);
        }
        Err(_) => {
            *conn = None;
            bail!("request timed out after {REQUEST_TIMEOUT:?}");
        }
    };
    let sse = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    Ok(Answer {
        status: parts.status,
        session: parts.headers.get("mcp-session-id").cloned(),
        sse,
        body,
    })
}

/// Checks an answer to a request: `Ok(())` for a 2xx with a JSON-RPC success response whose
/// result is not a tool error; else the reason.
pub fn check_answer(status: StatusCode, sse: bool, body: &[u8]) -> Result<(), String> {
    if !status.is_success() {
        return Err(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ));
    }
    let check_msg = |v: &Value| -> Option<Result<(), String>> {
        if let Some(e) = v.get("error") {
            return Some(Err(format!("JSON-RPC error {e}")));
        }
        let r = v.get("result")?;
        if r.get("isError").and_then(Value::as_bool) == Some(true) {
            return Some(Err(format!("tool error {r}")));
        }
        Some(Ok(()))
    };
    if sse {
        let text = std::str::from_utf8(body).map_err(|_| "SSE body is not UTF-8".to_string())?;
        for event in text.split("\n\n") {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if data.is_empty() {
                continue;
            }
            let joined = data.join("\n");
            if joined.trim().is_empty() {
                continue;
            }
            let v: Value =
                serde_json::from_str(&joined).map_err(|e| format!("SSE data is not JSON: {e}"))?;
            if let Some(r) = check_msg(&v) {
                return r;
            }
        }
        Err("SSE stream ended without a response".into())
    } else {
        let v: Value =
            serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
        check_msg(&v).unwrap_or_else(|| Err("answer is not a JSON-RPC response".into()))
    }
}

/// Opens one session: `initialize`, then `notifications/initialized`. The session id, if the
/// server gave one.
async fn open_session(
    conn: &mut Option<SendRequest<Full<Bytes>>>,
    target: &Target,
) -> Result<Option<HeaderValue>> {
    let init = serde_json::json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "mcpgate-bench", "version": env!("CARGO_PKG_VERSION")}
        }
    });
    let a = send(conn, target, target.request(init.to_string(), None, false)).await?;
    check_answer(a.status, a.sse, &a.body).map_err(|e| anyhow::anyhow!("initialize: {e}"))?;
    let session = a.session;
    let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_string();
    let a = send(conn, target, target.request(note, session.as_ref(), true)).await?;
    if !a.status.is_success() {
        bail!(
            "notifications/initialized: HTTP {}: {}",
            a.status,
            String::from_utf8_lossy(&a.body)
        );
    }
    Ok(session)
}

/// What one worker measured.
struct WorkerOut {
    hist: Histogram<u64>,
    requests: u64,
    errors: u64,
    first_error: Option<String>,
}

fn new_hist() -> Histogram<u64> {
    // nanoseconds, 1 ns .. 120 s, 3 significant digits
    Histogram::new_with_bounds(1, 120_000_000_000, 3).unwrap_or_else(|_| {
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits are valid"))
    })
}

/// Splits `total` sessions over `workers` as evenly as possible (some get 0 if total < workers).
pub fn split_sessions(total: usize, workers: usize) -> Vec<usize> {
    let workers = workers.max(1);
    (0..workers)
        .map(|i| total / workers + usize::from(i < total % workers))
        .collect()
}

/// Which sessions (indices into all opened sessions, `total` ≥ 1) worker `i` of `workers`
/// loops over: its own slice when there are at least as many sessions as workers, else one
/// shared session, `i % total`.
pub fn assign_sessions(total: usize, workers: usize) -> Vec<Vec<usize>> {
    if total < workers {
        return (0..workers).map(|i| vec![i % total.max(1)]).collect();
    }
    let mut next = 0;
    split_sessions(total, workers)
        .into_iter()
        .map(|n| {
            let v = (next..next + n).collect();
            next += n;
            v
        })
        .collect()
}

/// Runs the load; `mark` is called at the start and the end of the measured window.
pub async fn run_marked(spec: &LoadSpec, mut mark: impl FnMut(Mark)) -> Result<LoadResult> {
    let target = Arc::new(Target::new(spec)?);
    let workers = spec.concurrency.max(1);
    let total = if spec.sessions == 0 {
        workers
    } else {
        spec.sessions
    };
    // Phase 1: every worker's connection opens its share of the sessions, in parallel.
    let mut openers = Vec::with_capacity(workers);
    for n in split_sessions(total, workers) {
        let target = target.clone();
        openers.push(tokio::spawn(async move {
            let mut conn = None;
            let mut sessions = Vec::with_capacity(n);
            for _ in 0..n {
                sessions.push(open_session(&mut conn, &target).await?);
            }
            anyhow::Ok((conn, sessions))
        }));
    }
    let mut conns = Vec::with_capacity(workers);
    let mut all_sessions = Vec::with_capacity(total);
    for o in openers {
        let (conn, sessions) = o
            .await
            .context("session opener panicked")?
            .context("opening sessions")?;
        conns.push(conn);
        all_sessions.extend(sessions);
    }
    let all_sessions = Arc::new(all_sessions);
    // Phase 2: the clock starts for everybody at once.
    let t0 = Instant::now();
    let (warmup, duration) = (spec.warmup, spec.duration);
    let mut tasks = Vec::with_capacity(workers);
    for (conn, mine) in conns.into_iter().zip(assign_sessions(total, workers)) {
        let target = target.clone();
        let all_sessions = all_sessions.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = conn;
            let sessions: Vec<Option<HeaderValue>> =
                mine.iter().map(|i| all_sessions[*i].clone()).collect();
            let (measure_from, until) = (t0 + warmup, t0 + warmup + duration);
            let mut out = WorkerOut {
                hist: new_hist(),
                requests: 0,
                errors: 0,
                first_error: None,
            };
            let mut id: u64 = 1;
            let mut i = 0usize;
            loop {
                let started = Instant::now();
                if started >= until {
                    break;
                }
                let session = sessions[i].as_ref();
                i = (i + 1) % sessions.len();
                id += 1;
                let body = format!("{}{id}}}", target.call_prefix);
                let result =
                    match send(&mut conn, &target, target.request(body, session, true)).await {
                        Ok(a) => check_answer(a.status, a.sse, &a.body),
                        Err(e) => Err(format!("{e:#}")),
                    };
                let done = Instant::now();
                if started >= measure_from && done <= until {
                    out.requests += 1;
                    match result {
                        Ok(()) => {
                            let ns = u64::try_from((done - started).as_nanos()).unwrap_or(u64::MAX);
                            out.hist.saturating_record(ns.max(1));
                        }
                        Err(e) => {
                            out.errors += 1;
                            if out.first_error.is_none() {
                                out.first_error = Some(e);
                            }
                        }
                    }
                } else if let Err(e) = result
                    && out.first_error.is_none()
                {
                    // errors outside the window are not counted, but shown if nothing else is
                    out.first_error = Some(format!("(during warm-up) {e}"));
                }
            }
            anyhow::Ok(out)
        }));
    }
    tokio::time::sleep_until((t0 + warmup).into()).await;
    mark(Mark::Start);
    tokio::time::sleep_until((t0 + warmup + duration).into()).await;
    mark(Mark::End);
    let mut hist = new_hist();
    let (mut requests, mut errors, mut first_error) = (0, 0, None);
    for t in tasks {
        let out = t.await.context("load worker panicked")??;
        hist.add(&out.hist).context("merging histograms")?;
        requests += out.requests;
        errors += out.errors;
        if first_error.is_none() {
            first_error = out.first_error;
        }
    }
    Ok(summarize(&hist, requests, errors, duration, first_error))
}

/// Turns a histogram of nanoseconds plus counts into a [`LoadResult`].
fn summarize(
    hist: &Histogram<u64>,
    requests: u64,
    errors: u64,
    window: Duration,
    first_error: Option<String>,
) -> LoadResult {
    let q = |p: f64| {
        if hist.is_empty() {
            f64::NAN
        } else {
            hist.value_at_quantile(p) as f64 / 1000.0
        }
    };
    let secs = window.as_secs_f64();
    LoadResult {
        requests,
        errors,
        rps: (requests - errors) as f64 / secs,
        p50_us: q(0.5),
        p90_us: q(0.9),
        p99_us: q(0.99),
        p999_us: q(0.999),
        secs,
        first_error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_spread_evenly() {
        assert_eq!(split_sessions(3, 3), vec![1, 1, 1]);
        assert_eq!(split_sessions(10, 4), vec![3, 3, 2, 2]);
        assert_eq!(split_sessions(10_000, 16).iter().sum::<usize>(), 10_000);
        assert_eq!(split_sessions(2, 4), vec![1, 1, 0, 0]);
        // fewer sessions than workers: shared
        assert_eq!(assign_sessions(1, 3), vec![vec![0], vec![0], vec![0]]);
        assert_eq!(assign_sessions(2, 3), vec![vec![0], vec![1], vec![0]]);
        // more: disjoint slices covering all
        assert_eq!(assign_sessions(5, 2), vec![vec![0, 1, 2], vec![3, 4]]);
        let a = assign_sessions(10_000, 16);
        assert_eq!(a.iter().map(Vec::len).sum::<usize>(), 10_000);
        assert_eq!(a[15].last(), Some(&9_999));
    }

    #[test]
    fn answers_are_checked() {
        let ok = StatusCode::OK;
        assert!(
            check_answer(
                ok,
                false,
                br#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#
            )
            .is_ok()
        );
        assert!(
            check_answer(
                ok,
                false,
                br#"{"jsonrpc":"2.0","id":1,"error":{"code":-1}}"#
            )
            .is_err()
        );
        assert!(
            check_answer(
                ok,
                false,
                br#"{"jsonrpc":"2.0","id":1,"result":{"isError":true}}"#
            )
            .is_err()
        );
        assert!(check_answer(ok, false, b"not json").is_err());
        assert!(check_answer(StatusCode::UNAUTHORIZED, false, b"{}").is_err());
        // SSE: a priming event without data, then the response
        let sse = b"id: 0\nretry: 3000\ndata:\n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n\n";
        assert!(check_answer(ok, true, sse).is_ok());
        // SSE: a notification only
        let sse = b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n";
        assert!(check_answer(ok, true, sse).is_err());
        let sse = b"data: {\"jsonrpc\":\"2.0\",\"id\":2,\"error\":{\"code\":-32000}}\n\n";
        assert!(check_answer(ok, true, sse).is_err());
    }

    #[test]
    fn percentiles_come_from_the_histogram() {
        let mut h = new_hist();
        for us in 1..=1000u64 {
            h.record(us * 1000).unwrap();
        }
        let r = summarize(&h, 1010, 10, Duration::from_secs(2), None);
        assert_eq!(r.rps, 500.0);
        assert!((r.p50_us - 500.0).abs() <= 1.0, "{}", r.p50_us);
        assert!((r.p99_us - 990.0).abs() <= 1.0, "{}", r.p99_us);
        assert!((r.p999_us - 999.0).abs() <= 1.0, "{}", r.p999_us);
        let empty = summarize(&new_hist(), 0, 0, Duration::from_secs(1), None);
        assert!(empty.p50_us.is_nan());
    }

    #[test]
    fn cli_round_trips() {
        let spec = LoadSpec {
            url: "http://127.0.0.1:9/mcp/x".into(),
            bearer: Some("tok".into()),
            concurrency: 16,
            sessions: 100,
            warmup: Duration::from_millis(300),
            duration: Duration::from_millis(2000),
            tool: "echo".into(),
            arguments: serde_json::json!({"text": "hi"}),
        };
        let args = cli_args(&spec);
        let (back, json) = parse_cli(&args[1..]).unwrap();
        assert!(json);
        assert_eq!(back.url, spec.url);
        assert_eq!(back.bearer, spec.bearer);
        assert_eq!((back.concurrency, back.sessions), (16, 100));
        assert_eq!((back.warmup, back.duration), (spec.warmup, spec.duration));
        assert_eq!(back.arguments, spec.arguments);
        assert!(parse_cli(&["--concurrency".into(), "2".into()]).is_err());
        assert!(parse_cli(&["--url".into()]).is_err());
    }
}
