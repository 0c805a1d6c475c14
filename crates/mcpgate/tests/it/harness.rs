//! Runs the real `mcpgate` binary: CLI invocations and `serve` processes on
//! `127.0.0.1:PORT`, each in its own temporary directory (data dir, working
//! dir and XDG config dir, so no config file of the machine leaks in).

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// How long a server may take to answer `/healthz`, or to stop.
const STARTUP: Duration = Duration::from_secs(30);
const SHUTDOWN: Duration = Duration::from_secs(15);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_mcpgate")
}

/// A port that was free a moment ago (bind `127.0.0.1:0`, read, drop).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// What a finished CLI invocation printed.
#[derive(Debug)]
pub struct CliOut {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOut {
    /// The rest of the first stdout line that starts with `prefix`.
    pub fn field(&self, prefix: &str) -> String {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| {
                panic!(
                    "no line starting with {prefix:?} in stdout:\n{}",
                    self.stdout
                )
            })
    }
}

/// One isolated installation: a temp dir holding the data dir, the working
/// dir of every process, config files and captured logs.
pub struct Env {
    dir: tempfile::TempDir,
    starts: AtomicUsize,
    config: Option<PathBuf>,
}

impl Env {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("xdg")).expect("xdg dir");
        Self {
            dir,
            starts: AtomicUsize::new(0),
            config: None,
        }
    }

    /// An installation whose every command (CLI and `serve`) reads this
    /// config file. Leave `public_url` and `listen` out: `serve --listen`
    /// then makes the issuer `http://127.0.0.1:PORT`.
    pub fn with_config(toml: &str) -> Self {
        let mut env = Self::new();
        env.config = Some(env.write("config.toml", toml));
        env
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Writes a file in the temp dir and returns its path.
    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, content).expect("write file");
        p
    }

    /// `mcpgate --data-dir DIR`, isolated from the caller's environment.
    pub fn command(&self) -> Command {
        self.command_of(Path::new(bin()))
    }

    /// [`Env::command`] with another copy of the binary.
    pub fn command_of(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        c.arg("--data-dir")
            .arg(self.data_dir())
            .current_dir(self.dir.path())
            .env_remove("MCPGATE_CONFIG")
            .env_remove("MCPGATE_DATA_DIR")
            .env_remove("MCPGATE_LOG")
            .env("XDG_CONFIG_HOME", self.dir.path().join("xdg"))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(p) = &self.config {
            c.arg("--config").arg(p);
        }
        c
    }

    /// Runs a CLI command to completion.
    pub async fn cli(&self, args: &[&str]) -> CliOut {
        let out = tokio::time::timeout(Duration::from_secs(60), self.command().args(args).output())
            .await
            .unwrap_or_else(|_| panic!("mcpgate {args:?} timed out"))
            .expect("run mcpgate");
        CliOut {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs a CLI command that must succeed.
    pub async fn cli_ok(&self, args: &[&str]) -> CliOut {
        let out = self.cli(args).await;
        assert!(
            out.status.success(),
            "mcpgate {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            out.stdout,
            out.stderr
        );
        out
    }

    /// `clients add --name NAME --redirect-uri URI [extra]`; returns (client_id, secret).
    pub async fn add_client(
        &self,
        name: &str,
        redirect_uri: &str,
        extra: &[&str],
    ) -> (String, Option<String>) {
        let mut args = vec![
            "clients",
            "add",
            "--name",
            name,
            "--redirect-uri",
            redirect_uri,
        ];
        args.extend_from_slice(extra);
        let out = self.cli_ok(&args).await;
        let secret = out
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("client_secret:"))
            .map(|s| s.trim().to_string());
        (out.field("client_id:"), secret)
    }

    /// `users add NAME --password-file F`.
    pub async fn add_user(&self, name: &str, password: &str) {
        let f = self.write(&format!("{name}.password"), &format!("{password}\n"));
        self.cli_ok(&[
            "users",
            "add",
            name,
            "--password-file",
            f.to_str().expect("utf-8 path"),
        ])
        .await;
    }

    /// Writes each `(file name, config text, expected text)` and checks that
    /// `check-config` refuses it with the expected text (a field name) on stderr.
    pub async fn check_config_refuses(&self, cases: &[(&str, String, &str)]) {
        for (name, text, field) in cases {
            let p = self.write(name, text);
            let out = self
                .cli(&["--config", p.to_str().unwrap(), "check-config"])
                .await;
            assert!(!out.status.success(), "{name}: accepted:\n{}", out.stdout);
            assert!(
                out.stderr.contains(field),
                "{name}: the error does not name {field}:\n{}",
                out.stderr
            );
        }
    }

    pub async fn serve(&self) -> Server {
        self.serve_with(ServeOpts::default()).await
    }

    /// Starts `serve --listen 127.0.0.1:PORT` and waits for `/healthz`.
    /// Without a fixed port, a port taken in the meantime means another try.
    pub async fn serve_with(&self, opts: ServeOpts) -> Server {
        for _attempt in 0..5 {
            let port = opts.port.unwrap_or_else(free_port);
            let n = self.starts.fetch_add(1, Ordering::SeqCst);
            let log = self.dir.path().join(format!("serve-{n}.stderr"));
            let out = self.dir.path().join(format!("serve-{n}.stdout"));
            let mut cmd = match &opts.bin {
                Some(b) => self.command_of(b),
                None => self.command(),
            };
            if let Some(make) = &opts.config {
                assert!(self.config.is_none(), "one config file at a time");
                let p = self.write(&format!("mcpgate-{n}.toml"), &make(port));
                cmd.arg("--config").arg(p);
            }
            cmd.arg("serve")
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .args(&opts.args);
            cmd.envs(opts.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            if let Some(id) = opts.uid {
                cmd.uid(id).gid(id);
            }
            cmd.stderr(Stdio::from(std::fs::File::create(&log).expect("log file")));
            cmd.stdout(Stdio::from(
                std::fs::File::create(&out).expect("stdout file"),
            ));
            let child = cmd.spawn().expect("spawn mcpgate serve");
            let https = opts.https;
            let issuer = if https {
                format!("https://localhost:{port}")
            } else {
                format!("http://127.0.0.1:{port}")
            };
            let mut http = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy();
            if https {
                http = http.tls_danger_accept_invalid_certs(true).resolve(
                    "localhost",
                    std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                );
            }
            let mut server = Server {
                child,
                port,
                front: Front {
                    base: issuer.clone(),
                    resource: format!("{issuer}/mcp/notes"),
                    issuer,
                    http: http.build().expect("reqwest client"),
                },
                log,
                stdout: out,
            };
            match server.wait_ready().await {
                Ok(()) => return server,
                Err(log) if opts.port.is_none() && log.contains("binding 127.0.0.1") => continue,
                Err(log) => panic!("mcpgate serve did not start on port {port}:\n{log}"),
            }
        }
        panic!("mcpgate serve: no free port after 5 attempts");
    }
}

/// Options for [`Env::serve_with`].
#[derive(Default)]
pub struct ServeOpts {
    /// Fixed port (a restart on the same issuer); `None` picks a free one.
    pub port: Option<u16>,
    /// Extra arguments after `serve --listen ...`.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// A config file, written for the chosen port.
    pub config: Option<Box<dyn Fn(u16) -> String + Send + Sync>>,
    /// The server speaks TLS as `https://localhost:PORT`.
    pub https: bool,
    /// Run as this uid (and the gid of the same number); the temp dir must be theirs.
    pub uid: Option<u32>,
    /// Run this copy of `mcpgate` instead of Cargo's (which may lie where `uid` cannot go).
    pub bin: Option<PathBuf>,
}

/// Where a test sends its requests, and who answers: one server, or a load
/// balancer in front of several replicas of one issuer.
pub struct Front {
    /// Where requests go: `http://127.0.0.1:PORT`.
    pub base: String,
    /// The issuer (`public_url`): `base` for a lone server.
    pub issuer: String,
    /// The default resource, `{issuer}/mcp/notes`.
    pub resource: String,
    /// A client that follows no redirects (and, for TLS, trusts the self-signed certificate).
    pub http: reqwest::Client,
}

impl Front {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let r = self.http.get(self.url(path)).send().await.expect("GET");
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.expect("JSON body")
    }
}

/// A running `mcpgate serve`.
pub struct Server {
    child: Child,
    pub port: u16,
    /// `http://127.0.0.1:PORT` (or `https://localhost:PORT`) as issuer and base.
    pub front: Front,
    /// Captured stderr (the log).
    pub log: PathBuf,
    pub stdout: PathBuf,
}

impl std::ops::Deref for Server {
    type Target = Front;

    fn deref(&self) -> &Front {
        &self.front
    }
}

impl Server {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("server still running")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Polls `/healthz`; on an early exit returns the log.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Err(format!("exited with {status}\n{}", self.log_text()));
            }
            if let Ok(r) = self
                .http
                .get(self.url("/healthz"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                && r.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.child.start_kill();
                return Err(format!(
                    "no answer on /healthz within {STARTUP:?}\n{}",
                    self.log_text()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM (graceful shutdown), waits for a clean exit and
    /// returns the captured log.
    pub async fn stop(mut self) -> String {
        self.terminate();
        self.wait_stopped().await
    }

    /// Sends SIGTERM and returns at once.
    pub fn terminate(&mut self) {
        let pid = self.child.id().expect("server still running");
        let st = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -TERM {pid} failed");
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Waits for a clean exit after [`Server::terminate`]; returns the log.
    pub async fn wait_stopped(mut self) -> String {
        let status = tokio::time::timeout(SHUTDOWN, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "mcpgate did not stop within {SHUTDOWN:?} of SIGTERM:\n{}",
                    self.log_text()
                )
            })
            .expect("wait");
        let log = self.log_text();
        assert!(
            status.success(),
            "mcpgate exited with {status} after SIGTERM:\n{log}"
        );
        assert!(
            log.contains("mcpgate stopped"),
            "no graceful-shutdown line in the log:\n{log}"
        );
        log
    }
}
