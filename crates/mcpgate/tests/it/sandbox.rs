//! A hostile stdio server behind `mcpgate serve` (issue: "a stdio server
//! cannot reach past its sandbox"). The server (`hostile_server.py`, run as
//! `python3 -c <script>`) tries every escape it is told about and reports
//! each as `denied: ...` or `allowed: ...`. With the default sandbox every
//! attempt is denied and the gateway keeps serving; the same server gets
//! exactly what an operator opens with `[upstream.sandbox]`; and a control
//! upstream with `mode = "off"` shows that the attempts are real. The suite
//! runs with mcpgate as root (children become `nobody`) and as an
//! unprivileged user (children keep that uid, so only Landlock, seccomp and
//! the non-dumpable gateway stand in the way).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::harness::{Env, ServeOpts, Server};
use crate::no_auth::{message, post};

const SCRIPT: &str = include_str!("hostile_server.py");
const PYTHON: &str = "/usr/bin/python3";
const NOBODY: u32 = 65534;

fn upstream(name: &str, sandbox: &str) -> String {
    assert!(!SCRIPT.contains("'''"));
    format!(
        "[[upstream]]\nname = \"{name}\"\n[upstream.stdio]\ncommand = \"{PYTHON}\"\n\
         args = [\"-c\", '''\n{SCRIPT}''']\n{sandbox}\n"
    )
}

fn config(shared: &Path) -> String {
    format!(
        "[gateway]\nauthentication = \"none\"\n\n[gateway.audit]\nstdout = false\n\n{}{}{}",
        upstream("hostile", ""),
        upstream(
            "widened",
            &format!(
                "[upstream.sandbox]\nwrite = [\"{}\"]\nnetwork = \"allow\"\n",
                shared.display()
            ),
        ),
        upstream("open", "[upstream.sandbox]\nmode = \"off\"\n"),
    )
}

/// Calls the `escape` tool of upstream `name` in a fresh session.
async fn escape(srv: &Server, name: &str, args: Value) -> Map<String, Value> {
    let url = srv.url(&format!("/mcp/{name}"));
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "it", "version": "0"}}});
    let r = post(&srv.http, &url, None, init).await;
    assert_eq!(r.status(), 200, "{name}: initialize\n{}", srv.log_text());
    let session = r.headers()["mcp-session-id"].to_str().unwrap().to_string();
    let init = message(r).await;
    assert_eq!(init["result"]["serverInfo"]["name"], "hostile", "{init}");
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    post(&srv.http, &url, Some(&session), note).await;
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "escape", "arguments": args}});
    let r = post(&srv.http, &url, Some(&session), call).await;
    assert_eq!(r.status(), 200, "{name}: tools/call");
    let m = message(r).await;
    m["result"]["structuredContent"]
        .as_object()
        .unwrap_or_else(|| panic!("{name}: no report in {m}\n{}", srv.log_text()))
        .clone()
}

/// Every escape the arguments name, against the server's own files.
fn attacks(srv: &Server, env: &Env, shared: &Path) -> Value {
    let data = env.data_dir();
    for f in ["master.key", "mcpgate.db"] {
        assert!(data.join(f).is_file(), "{f} exists to be attacked");
    }
    json!({
        "gateway_pid": srv.pid(),
        "data_dir": data,
        "read": {
            "master_key": data.join("master.key"),
            "database": data.join("mcpgate.db"),
            "shadow": "/etc/shadow",
        },
        "port": srv.port,
        "threads": 1000,
        "write_dir": shared,
        "system": true,
        "syscalls": {
            "bpf": libc::SYS_bpf,
            "perf_event_open": libc::SYS_perf_event_open,
            "keyctl": libc::SYS_keyctl,
            "userfaultfd": libc::SYS_userfaultfd,
            "kexec_load": libc::SYS_kexec_load,
            "io_uring_setup": libc::SYS_io_uring_setup,
        },
    })
}

fn assert_denied(name: &str, report: &Map<String, Value>, except: &[&str]) {
    let mut allowed = Vec::new();
    for (k, v) in report {
        let v = v.as_str().unwrap_or_default();
        if k == "uid" || k == "write_home" || except.contains(&k.as_str()) {
            continue;
        }
        if !v.starts_with("denied") {
            allowed.push(format!("{k}: {v}"));
        }
    }
    assert!(
        allowed.is_empty(),
        "{name}: escaped the sandbox: {allowed:#?}"
    );
    assert_allowed(name, report, &["write_home"]);
}

fn assert_allowed(name: &str, report: &Map<String, Value>, keys: &[&str]) {
    for k in keys {
        assert!(
            report[*k]
                .as_str()
                .is_some_and(|v| v.starts_with("allowed")),
            "{name}: {k} was not allowed: {report:?}"
        );
    }
}

fn shared_dir(env: &Env) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let d = env.path().join("shared");
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
    d
}

async fn contained(env: Env, uid: Option<u32>, bin: Option<PathBuf>) {
    assert!(
        Path::new(PYTHON).is_file(),
        "the test needs Debian's python3"
    );
    let shared = shared_dir(&env);
    let s = shared.clone();
    let srv = env
        .serve_with(ServeOpts {
            config: Some(Box::new(move |_| config(&s))),
            uid,
            bin,
            ..Default::default()
        })
        .await;
    let args = attacks(&srv, &env, &shared);
    if uid.is_some() {
        // The gateway is non-dumpable: its /proc files belong to root, not to
        // the user it runs as, so that user's other processes cannot read them.
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(format!("/proc/{}/environ", srv.pid())).unwrap();
        assert_eq!(m.uid(), 0, "the gateway is dumpable");
    }

    let report = escape(&srv, "hostile", args.clone()).await;
    assert_denied("default sandbox", &report, &[]);
    if let Some(u) = uid.or(Some(NOBODY)) {
        assert_eq!(report["uid"], u, "{report:?}");
    }
    assert!(
        std::fs::read_dir(&shared).unwrap().next().is_none(),
        "nothing written outside"
    );
    assert!(!env.data_dir().join("pwned").exists());
    // The gateway keeps serving, the session included.
    let health = srv.http.get(srv.url("/healthz")).send().await.unwrap();
    assert!(health.status().is_success(), "{}", health.status());
    assert_denied(
        "second call",
        &escape(&srv, "hostile", json!({"gateway_pid": srv.pid()})).await,
        &[],
    );

    // Widened: exactly the declared directory and the network open up.
    let report = escape(&srv, "widened", args.clone()).await;
    assert_denied(
        "widened sandbox",
        &report,
        &["write_declared_dir", "connect_gateway_port"],
    );
    assert_allowed(
        "widened sandbox",
        &report,
        &["write_declared_dir", "connect_gateway_port"],
    );
    assert_eq!(std::fs::read_dir(&shared).unwrap().count(), 1);

    // Control: without a sandbox the same server reads mcpgate's secrets.
    // (Only reads: unconfined, the other attempts would change this host.)
    let data = env.data_dir();
    let report = escape(
        &srv,
        "open",
        json!({"read": {"master_key": data.join("master.key")}, "data_dir": data}),
    )
    .await;
    assert_allowed(
        "the control run",
        &report,
        &["read_master_key", "list_data_dir"],
    );
    let _ = std::fs::remove_file(env.data_dir().join("pwned"));
    let log = srv.stop().await;
    assert!(
        log.contains("runs WITHOUT a sandbox"),
        "mode = off is a warning in the log:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_server_is_contained_with_mcpgate_as_root() {
    assert!(
        nix_is_root(),
        "these tests run as root (as CI does); the unprivileged case runs mcpgate as nobody"
    );
    contained(Env::new(), None, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_server_is_contained_with_mcpgate_unprivileged() {
    assert!(
        nix_is_root(),
        "switching to an unprivileged user needs root"
    );
    let env = Env::new();
    // Cargo's binary may lie where nobody cannot enter (a checkout under
    // /root): run a copy from the installation's own directory.
    let copy = env.path().join("mcpgate");
    std::fs::copy(crate::harness::bin(), &copy).unwrap();
    chown_tree(env.path(), NOBODY);
    contained(env, Some(NOBODY), Some(copy)).await;
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

fn chown_tree(dir: &Path, id: u32) {
    std::os::unix::fs::chown(dir, Some(id), Some(id)).unwrap();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            chown_tree(&p, id);
        } else {
            std::os::unix::fs::chown(&p, Some(id), Some(id)).unwrap();
        }
    }
}

#[tokio::test]
async fn check_config_prints_the_sandbox_and_refuses_what_would_expose_mcpgate() {
    let env = Env::new();
    let data = env.data_dir();
    std::fs::create_dir_all(&data).unwrap();
    let hostile = upstream("h", "");
    let p = env.write("ok.toml", &hostile);
    let out = env
        .cli_ok(&["--config", p.to_str().unwrap(), "check-config"])
        .await;
    for want in [
        "sandbox: required (Landlock ABI",
        "runs as: uid 65534",
        "program: /usr/bin/python3",
        "network: none",
        "write: (none)",
    ] {
        assert!(
            out.stdout.contains(want),
            "{want:?} missing:\n{}",
            out.stdout
        );
    }
    let rules: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("read:") || l.trim_start().starts_with("write:"))
        .collect();
    assert_eq!(rules.len(), 2, "{}", out.stdout);
    assert!(
        rules
            .iter()
            .all(|l| !l.contains(env.path().to_str().unwrap())),
        "the data dir is in no rule:\n{}",
        out.stdout
    );
    let cases = [
        (
            "over-data.toml",
            upstream(
                "h",
                &format!(
                    "[upstream.sandbox]\nwrite = [\"{}\"]\n",
                    env.path().display()
                ),
            ),
            "sandbox.write",
        ),
        (
            "root.toml",
            upstream("h", "[upstream.sandbox]\nrun_as = \"root\"\n"),
            "upstream[0].sandbox.run_as",
        ),
        (
            "missing.toml",
            upstream("h", "[upstream.sandbox]\nread = [\"/nonexistent/dir\"]\n"),
            "sandbox.read: /nonexistent/dir does not exist",
        ),
        (
            "off-with-rules.toml",
            upstream(
                "h",
                "[upstream.sandbox]\nmode = \"off\"\nnetwork = \"allow\"\n",
            ),
            "upstream[0].sandbox.mode",
        ),
        (
            "http.toml",
            "[[upstream]]\nname = \"web\"\nhttp = { url = \"http://127.0.0.1:9/mcp\" }\n\
             [upstream.sandbox]\nnetwork = \"allow\"\n"
                .to_string(),
            "upstream[0].sandbox",
        ),
    ];
    env.check_config_refuses(&cases).await;

    // A secret read from a file (`${file:PATH}`) is mcpgate's too: a child
    // given its directory is refused, so it never runs with that access.
    let secrets = env.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    let token = secrets.join("metrics-token");
    std::fs::write(&token, "0123456789abcdef-metrics\n").unwrap();
    let reads_secrets = upstream(
        "h",
        &format!("[upstream.sandbox]\nread = [\"{}\"]\n", secrets.display()),
    );
    let with_secret = format!(
        "[metrics]\nbearer_token = \"${{file:{}}}\"\n\n{reads_secrets}",
        token.display()
    );
    let refusal = format!(
        "sandbox.read: {} would open {}",
        secrets.display(),
        token.display()
    );
    env.check_config_refuses(&[("reads-secrets.toml", with_secret, &refusal)])
        .await;
    // The same rule without the secret in that directory is accepted.
    let p = env.write("reads-dir.toml", &reads_secrets);
    env.cli_ok(&["--config", p.to_str().unwrap(), "check-config"])
        .await;
}
