//! A fleet: three `mcpgate serve` replicas on one PostgreSQL schema, behind
//! HAProxy (Debian's package) running `deploy/haproxy/mcpgate.cfg` with
//! only its `bind` and `server` lines set to loopback ports
//! (`mcpgate_testkit::haproxy`) — the configuration docs/deployment.md
//! documents is the one tested here.
//!
//! Without `MCPGATE_TEST_POSTGRES_URL` or `haproxy` the trials say so and
//! pass, unless `MCPGATE_TEST_REQUIRE` is set (CI), where they fail.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mcpgate_testkit::{AuthRequest, Browser};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::flow::{self, REDIRECT, Tokens};
use crate::harness::{Env, Front, ServeOpts, Server, free_port};

const USER: &str = "fleet-user";
const PASSWORD: &str = "a long enough password for the fleet";
/// `per_user_per_minute` of the `limited` upstream.
const LIMIT: u64 = 60;
/// Replicas stop serving this long after SIGTERM (`/readyz` 503 at once).
const SHUTDOWN_DELAY_SECS: u64 = 2;

/// Three replicas, HAProxy in front, an HTTP upstream (the `testing`
/// fixture) and the stdio demo upstream.
struct Fleet {
    env: Env,
    replicas: Vec<Option<Server>>,
    ports: Vec<u16>,
    haproxy: Child,
    /// Through HAProxy.
    front: Front,
    _upstream: Child,
    schema: Option<mcpgate_testkit::pg::Schema>,
    client_id: String,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = self.haproxy.start_kill();
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("reqwest client")
}

/// The HTTP fixture upstream, and its URL.
async fn http_upstream() -> (Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut child = Command::new(mcpgate_upstreams::test_upstream_binary())
        .arg("testing-http")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the HTTP upstream");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the upstream said where it listens")
        .expect("read")
        .expect("a line");
    let addr = line.strip_prefix("LISTENING ").expect("LISTENING line");
    (child, format!("http://{addr}/mcp"))
}

impl Fleet {
    /// `None` when PostgreSQL or HAProxy is missing and CI does not need them.
    async fn start(name: &str) -> Option<Self> {
        let Some(haproxy) = mcpgate_testkit::haproxy::binary() else {
            assert!(
                !mcpgate_testkit::required_by_ci(),
                "haproxy not installed, and {} requires it",
                mcpgate_testkit::REQUIRE_ENV
            );
            eprintln!("skipped: haproxy not installed");
            return None;
        };
        let schema = mcpgate_testkit::pg::schema_or_skip(name).await?;
        let (upstream, upstream_url) = http_upstream().await;
        let front_port = free_port();
        let public = format!("http://127.0.0.1:{front_port}");
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, master) = mcpgate_jose::MasterKey::generate(&mcpgate_jose::SystemRng::new());
        let key_file = dir.path().join("master.key");
        std::fs::write(&key_file, master).expect("master key");
        let config = format!(
            "public_url = \"{public}\"\n\
             master_key = \"${{file:{key}}}\"\n\
             shutdown_delay_secs = {SHUTDOWN_DELAY_SECS}\n\
             [store]\nbackend = \"postgres\"\npostgres_url = \"{db}\"\n\
             [gateway]\nmax_sessions_per_user = 3\n\
             [[upstream]]\nname = \"notes\"\n\
             stdio = {{ command = \"{bin}\", args = [\"demo-upstream\"] }}\n\
             scopes = [\"notes:read\"]\n\
             [[upstream]]\nname = \"web\"\nhttp = {{ url = \"{upstream_url}\" }}\n\
             scopes = [\"notes:read\"]\n\
             rate_limit = {{ per_user_per_minute = 1000000, per_client_per_minute = 1000000 }}\n\
             [[upstream]]\nname = \"limited\"\nhttp = {{ url = \"{upstream_url}\" }}\n\
             scopes = [\"notes:read\"]\n\
             rate_limit = {{ per_user_per_minute = {LIMIT}, per_client_per_minute = 100000 }}\n",
            key = key_file.display(),
            db = schema.url(),
            bin = crate::harness::bin(),
        );
        let env = Env::with_config(&config);
        std::mem::forget(dir);
        env.add_user(USER, PASSWORD).await;
        let (client_id, _) = env.add_client("Fleet app", REDIRECT, &[]).await;
        let mut replicas = Vec::new();
        let mut ports = Vec::new();
        for _ in 0..3 {
            let srv = env.serve_with(replica_opts(None)).await;
            ports.push(srv.port);
            replicas.push(Some(srv));
        }
        let cfg = env.write(
            "haproxy.cfg",
            &mcpgate_testkit::haproxy::config(front_port, &ports),
        );
        let haproxy = Command::new(haproxy)
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::from(
                std::fs::File::create(env.path().join("haproxy.log")).expect("log"),
            ))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn haproxy");
        let front = Front {
            base: public.clone(),
            resource: format!("{public}/mcp/notes"),
            issuer: public,
            http: http_client(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = front.http.get(front.url("/readyz")).send().await
                && r.status() == 200
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "HAProxy did not come up:\n{}",
                std::fs::read_to_string(env.path().join("haproxy.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(Self {
            env,
            replicas,
            ports,
            haproxy,
            front,
            _upstream: upstream,
            schema: Some(schema),
            client_id,
        })
    }

    /// Replica `i` addressed directly (same issuer, its own address).
    fn replica(&self, i: usize) -> Front {
        Front {
            base: format!("http://127.0.0.1:{}", self.ports[i]),
            issuer: self.front.issuer.clone(),
            resource: self.front.resource.clone(),
            http: http_client(),
        }
    }

    fn resource(&self, upstream: &str) -> String {
        format!("{}/mcp/{upstream}", self.front.issuer)
    }

    /// The whole sign-in and consent through HAProxy, the code redeemed at
    /// replica `at`.
    async fn tokens(&self, upstream: &str, at: usize) -> Tokens {
        let mut b = Browser::new();
        let req = AuthRequest::new(
            &self.client_id,
            REDIRECT,
            "notes:read offline_access",
            &self.resource(upstream),
        );
        let code = flow::authorize(&mut b, &self.front, &req, USER, PASSWORD).await;
        flow::redeem(&self.replica(at), &req, &code, None).await
    }

    async fn finish(mut self) {
        let _ = self.haproxy.start_kill();
        for r in self.replicas.iter_mut() {
            if let Some(srv) = r.take() {
                srv.stop().await;
            }
        }
        if let Some(s) = self.schema.take() {
            s.drop_schema().await;
        }
    }
}

fn replica_opts(port: Option<u16>) -> ServeOpts {
    ServeOpts {
        port,
        env: vec![("MCPGATE_LOG".into(), "info,mcpgate=debug".into())],
        ..ServeOpts::default()
    }
}

/// One MCP request: status, session id header, and the JSON-RPC message
/// (from a JSON body or the first event of a stream).
async fn mcp(
    front: &Front,
    upstream: &str,
    token: &str,
    session: Option<&str>,
    body: &Value,
) -> (u16, Option<String>, Value) {
    let mut req = front
        .http
        .post(front.url(&format!("/mcp/{upstream}")))
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .json(body);
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    let r = match req.send().await {
        Ok(r) => r,
        // The connection failed or closed without an answer: status 0.
        Err(e) => {
            eprintln!("MCP POST: {e}");
            return (0, None, Value::Null);
        }
    };
    let status = r.status().as_u16();
    let sid = r
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = r.text().await.unwrap_or_default();
    let msg = serde_json::from_str(&text).unwrap_or_else(|_| {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|v| v.get("id").is_some())
            .unwrap_or(Value::Null)
    });
    (status, sid, msg)
}

async fn initialize(front: &Front, upstream: &str, token: &str) -> String {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "fleet-test", "version": "1"}}});
    let (status, sid, msg) = mcp(front, upstream, token, None, &init).await;
    assert_eq!(status, 200, "initialize: {msg}");
    let sid = sid.expect("a session id");
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let (status, _, _) = mcp(front, upstream, token, Some(&sid), &note).await;
    assert_eq!(status, 202);
    sid
}

static IDS: AtomicU64 = AtomicU64::new(10);

/// `tools/call` of `tool`: the status and the message.
async fn call(
    front: &Front,
    upstream: &str,
    token: &str,
    sid: &str,
    tool: &str,
    args: Value,
) -> (u16, Value) {
    let id = IDS.fetch_add(1, Ordering::Relaxed);
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": tool, "arguments": args}});
    let (status, _, msg) = mcp(front, upstream, token, Some(sid), &body).await;
    (status, msg)
}

/// The status of an `echo` call; a 200 whose body is not the echo (a
/// stream cut short) counts as 0.
async fn echo(front: &Front, token: &str, sid: &str, text: &str) -> u16 {
    let (status, msg) = call(front, "web", token, sid, "echo", json!({"text": text})).await;
    if status == 200 && !msg.to_string().contains(text) {
        eprintln!("echo answered 200 with {msg}");
        return 0;
    }
    status
}

/// The grant flow, a session of an HTTP upstream and a stdio session, each
/// step on another replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fleet_serves_every_step_on_any_replica() {
    let Some(fleet) = Fleet::start("fleet_steps").await else {
        return;
    };
    // The code from the browser flow through HAProxy (round robin), redeemed
    // at r1, refreshed at r2, then r3.
    let web = fleet.tokens("web", 0).await;
    let web = flow::refresh(&fleet.replica(1), &fleet.client_id, web.refresh(), None).await;
    let web = flow::refresh(&fleet.replica(2), &fleet.client_id, web.refresh(), None).await;

    // A session of the HTTP upstream, made at r1 and used at r2 and r3: the
    // upstream's own session goes with it.
    let sid = initialize(&fleet.replica(0), "web", &web.access).await;
    for i in [1, 2, 0, 2] {
        assert_eq!(
            echo(&fleet.replica(i), &web.access, &sid, &format!("hop {i}")).await,
            200
        );
    }
    // Ended at r3: gone everywhere, within the replicas' check interval.
    let r = fleet
        .replica(2)
        .http
        .delete(fleet.replica(2).url("/mcp/web"))
        .bearer_auth(&web.access)
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for i in 0..3 {
        assert_eq!(
            echo(&fleet.replica(i), &web.access, &sid, "after").await,
            404,
            "replica {i}"
        );
    }

    // A stdio session lives in one replica's child: HAProxy's stick table
    // sends every request of it there; directly, the other two answer 404.
    let notes = fleet.tokens("notes", 2).await;
    let sid = initialize(&fleet.front, "notes", &notes.access).await;
    for _ in 0..6 {
        let (status, msg) = call(
            &fleet.front,
            "notes",
            &notes.access,
            &sid,
            "list_notes",
            json!({}),
        )
        .await;
        assert_eq!(status, 200, "through HAProxy: {msg}");
    }
    let mut served = Vec::new();
    for i in 0..3 {
        let (status, _) = call(
            &fleet.replica(i),
            "notes",
            &notes.access,
            &sid,
            "list_notes",
            json!({}),
        )
        .await;
        served.push(status);
    }
    served.sort_unstable();
    assert_eq!(
        served,
        [200, 404, 404],
        "exactly one replica holds the child"
    );
    fleet.finish().await;
}

/// The per-user session cap holds for the fleet, and a session evicted at
/// one replica stops at the one that held it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fleet_session_cap_is_fleet_wide() {
    let Some(fleet) = Fleet::start("fleet_cap").await else {
        return;
    };
    let web = fleet.tokens("web", 0).await;
    // max_sessions_per_user = 3: four sessions, one per replica in turn.
    let mut sids = Vec::new();
    for i in [0, 1, 2, 0] {
        sids.push(initialize(&fleet.replica(i), "web", &web.access).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // The first (least recently used) is gone, at r1 which made and held it too.
    assert_eq!(
        echo(&fleet.replica(0), &web.access, &sids[0], "x").await,
        404
    );
    for (n, sid) in sids.iter().enumerate().skip(1) {
        assert_eq!(
            echo(&fleet.replica(n % 3), &web.access, sid, "x").await,
            200,
            "session {n}"
        );
    }
    fleet.finish().await;
}

/// A user's rate limit holds for the fleet: requests spread over three
/// replicas by HAProxy admit the configured figure (within 10%), not three
/// times it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fleet_rate_limit_holds_across_replicas() {
    let Some(fleet) = Fleet::start("fleet_limit").await else {
        return;
    };
    let t = fleet.tokens("limited", 0).await;
    let started = Instant::now();
    // initialize and notifications/initialized count too.
    let sid = initialize(&fleet.front, "limited", &t.access).await;
    let (mut admitted, mut limited) = (2u64, 0u64);
    for n in 0..(3 * LIMIT) {
        let (status, msg) = call(
            &fleet.front,
            "limited",
            &t.access,
            &sid,
            "echo",
            json!({"text": format!("{n}")}),
        )
        .await;
        match status {
            200 => admitted += 1,
            429 => limited += 1,
            s => panic!("unexpected {s}: {msg}"),
        }
    }
    // The bucket refills at LIMIT per minute while the test runs.
    let refill = started.elapsed().as_secs_f64() * LIMIT as f64 / 60.0;
    eprintln!(
        "fleet-wide limit {LIMIT}/min: {admitted} admitted, {limited} refused in {:?}",
        started.elapsed()
    );
    let allowed = LIMIT as f64 + refill;
    assert!(
        (admitted as f64) <= allowed * 1.1 && (admitted as f64) >= LIMIT as f64 * 0.9,
        "{admitted} admitted for a limit of {LIMIT} (+{refill:.1} refilled)"
    );
    fleet.finish().await;
}

/// A revocation made at one replica is refused at the others within a
/// second (the store's change feed); the time is printed, and the test
/// allows a generous bound so that a loaded machine does not fail it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fleet_revocation_reaches_every_replica() {
    let Some(fleet) = Fleet::start("fleet_revoke").await else {
        return;
    };
    let web = fleet.tokens("web", 0).await;
    let sid = initialize(&fleet.replica(1), "web", &web.access).await;
    assert_eq!(
        echo(&fleet.replica(2), &web.access, &sid, "before").await,
        200
    );
    let (status, _) = mcpgate_testkit::post_form(
        &fleet.replica(0).http,
        &fleet.replica(0).url("/oauth/revoke"),
        &[
            ("token".to_string(), web.refresh().to_string()),
            ("client_id".to_string(), fleet.client_id.clone()),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200);
    let revoked = Instant::now();
    for i in [1, 2] {
        loop {
            let r = fleet
                .replica(i)
                .http
                .post(fleet.replica(i).url("/mcp/web"))
                .bearer_auth(&web.access)
                .header("mcp-session-id", &sid)
                .header("mcp-protocol-version", "2025-11-25")
                .header("accept", "application/json, text/event-stream")
                .json(&json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list"}))
                .send()
                .await
                .unwrap();
            if r.status() == 401 {
                eprintln!(
                    "replica {i} refused the revoked token {:?} after the revocation",
                    revoked.elapsed()
                );
                break;
            }
            assert!(
                revoked.elapsed() < Duration::from_secs(10),
                "replica {i} still accepts a revoked token"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    fleet.finish().await;
}

/// Load through HAProxy on sessions of the HTTP upstream while one replica
/// is killed with SIGKILL: the sessions go on at the others, and the grants
/// made meanwhile are neither lost nor doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fleet_survives_a_killed_replica() {
    let Some(mut fleet) = Fleet::start("fleet_kill").await else {
        return;
    };
    let web = fleet.tokens("web", 0).await;
    let mut sids = Vec::new();
    for i in 0..3 {
        sids.push(initialize(&fleet.replica(i), "web", &web.access).await);
    }
    let load = EchoLoad::start(&fleet, &web.access, &sids);
    // One more worker rotates the refresh token through HAProxy: an answer
    // lost with the replica is retried with the same token (within the
    // reuse grace), so the family is never lost.
    let rotations = {
        let (front, client_id, first) = (
            fleet.front_clone(),
            fleet.client_id.clone(),
            web.refresh().to_string(),
        );
        let stop = load.stop.clone();
        tokio::spawn(async move {
            let (mut token, mut rotated, mut retried) = (first, 0u32, 0u32);
            while !stop.load(Ordering::Relaxed) {
                match rotate(&front, &client_id, &token).await {
                    Some(next) => {
                        token = next;
                        rotated += 1;
                    }
                    None => retried += 1,
                }
            }
            (token, rotated, retried)
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let victim = fleet.replicas[1].take().expect("replica 2");
    let pid = victim.pid();
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill");
    let killed_at = load.counts();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (ok, failed) = load.finish().await;
    let (last, rotated, retried) = rotations.await.unwrap();
    eprintln!(
        "killed replica 2 after {killed_at:?} (ok, failed); in all {ok} ok, {failed} failed; \
         {rotated} rotations, {retried} retried"
    );
    assert_eq!(killed_at.1, 0, "failures before the kill");
    assert!(
        ok > killed_at.0 + 20,
        "the sessions did not go on after the kill"
    );
    // Only requests in flight at the replica when it died can fail (HAProxy
    // does not send a request twice): at most one per worker.
    assert!(failed <= sids.len() as u64, "{failed} requests failed");
    // Every session still answers, at every surviving replica.
    for sid in &sids {
        for i in [0, 2] {
            assert_eq!(
                echo(&fleet.replica(i), &web.access, sid, "after").await,
                200
            );
        }
    }
    // The refresh family went on through the kill, and is still the only one.
    assert!(rotated > 5, "too few rotations: {rotated}");
    assert!(
        rotate(&fleet.replica(2), &fleet.client_id, &last)
            .await
            .is_some()
    );
    let store = fleet.schema.as_ref().expect("schema").connect().await;
    let live = mcpgate_store::RefreshTokenStore::list_families(&store, None, flow::now())
        .await
        .expect("families");
    assert_eq!(live.len(), 1, "grants lost or doubled: {live:?}");
    store.close().await;
    fleet.finish().await;
}

/// Every replica restarted in turn (SIGTERM, wait, start again on its port)
/// under load through HAProxy: not one request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fleet_rolling_restart_loses_nothing() {
    let Some(mut fleet) = Fleet::start("fleet_roll").await else {
        return;
    };
    let web = fleet.tokens("web", 0).await;
    let sid = initialize(&fleet.front, "web", &web.access).await;
    let load = EchoLoad::start(&fleet, &web.access, &vec![sid; 4]);
    for i in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let srv = fleet.replicas[i].take().expect("replica");
        let port = srv.port;
        srv.stop().await;
        let again = fleet.env.serve_with(replica_opts(Some(port))).await;
        fleet.replicas[i] = Some(again);
        // HAProxy takes it back after two good checks.
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let (ok, failed) = load.finish().await;
    eprintln!("rolling restart: {ok} ok, {failed} failed");
    assert_eq!(failed, 0);
    assert!(ok > 50, "too little load to show anything: {ok}");
    fleet.finish().await;
}

/// Workers calling `echo` through HAProxy, one per session given, until
/// [`EchoLoad::finish`]; they count what succeeded and what failed.
struct EchoLoad {
    stop: Arc<std::sync::atomic::AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl EchoLoad {
    fn start(fleet: &Fleet, token: &str, sids: &[String]) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let mut workers = Vec::new();
        for (w, sid) in sids.iter().enumerate() {
            let (front, token, sid) = (fleet.front_clone(), token.to_string(), sid.clone());
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            workers.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match echo(&front, &token, &sid, &format!("w{w}")).await {
                        200 => ok.fetch_add(1, Ordering::Relaxed),
                        s => {
                            eprintln!("worker {w}: {s}");
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            }));
        }
        Self {
            stop,
            ok,
            failed,
            workers,
        }
    }

    /// (succeeded, failed) so far.
    fn counts(&self) -> (u64, u64) {
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    /// Stops the workers; (succeeded, failed) in all.
    async fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for w in std::mem::take(&mut self.workers) {
            w.await.unwrap();
        }
        self.counts()
    }
}

/// One refresh through `front`: the new refresh token, or `None` when the
/// request failed on the way (to be retried with the same token).
async fn rotate(front: &Front, client_id: &str, token: &str) -> Option<String> {
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", token),
        ("client_id", client_id),
    ];
    let r = front
        .http
        .post(front.url("/oauth/token"))
        .form(&form)
        .send()
        .await
        .ok()?;
    let status = r.status().as_u16();
    let v: Value = r.json().await.ok()?;
    if status >= 500 {
        return None;
    }
    assert_eq!(status, 200, "refresh refused: {v}");
    v["refresh_token"].as_str().map(str::to_string)
}

impl Fleet {
    fn front_clone(&self) -> Front {
        Front {
            base: self.front.base.clone(),
            issuer: self.front.issuer.clone(),
            resource: self.front.resource.clone(),
            http: http_client(),
        }
    }
}

/// A PostgreSQL server of the test's own, in a temporary directory on a
/// free loopback port (run as the `postgres` user, as PostgreSQL refuses
/// root), so stopping it disturbs no other test.
struct OwnPostgres {
    dir: tempfile::TempDir,
    port: u16,
    bin: std::path::PathBuf,
}

impl OwnPostgres {
    /// `None` when the server programs or the `postgres` user are missing
    /// (and CI does not require them).
    fn start() -> Option<Self> {
        let bin = [
            "/usr/lib/postgresql/15/bin",
            "/usr/local/bin",
            "/usr/lib/postgresql/16/bin",
        ]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists());
        let user = std::process::Command::new("id")
            .arg("postgres")
            .output()
            .ok();
        let (Some(bin), Some(true)) = (bin, user.map(|o| o.status.success())) else {
            assert!(
                !mcpgate_testkit::required_by_ci(),
                "initdb/pg_ctl or the postgres user missing, and {} requires them",
                mcpgate_testkit::REQUIRE_ENV
            );
            eprintln!("skipped: no PostgreSQL server programs");
            return None;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let run = |args: &[&str]| {
            let st = std::process::Command::new("chown")
                .args(["-R", "postgres", dir.path().to_str().unwrap()])
                .status()
                .expect("chown");
            assert!(st.success());
            let out = std::process::Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .args(args)
                .output()
                .expect("runuser");
            assert!(
                out.status.success(),
                "{args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let data = dir.path().join("data");
        run(&[
            bin.join("initdb").to_str().unwrap(),
            "-D",
            data.to_str().unwrap(),
            "-A",
            "trust",
            "-U",
            "postgres",
        ]);
        let pg = Self {
            port: free_port(),
            dir,
            bin,
        };
        pg.ctl("start");
        Some(pg)
    }

    fn ctl(&self, what: &str) {
        let data = self.dir.path().join("data");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log");
        let st = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args([
                "-D",
                data.to_str().unwrap(),
                "-o",
                &opts,
                "-l",
                log.to_str().unwrap(),
            ])
            .args(["-w", "-m", "fast", what])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("pg_ctl");
        assert!(st.success(), "pg_ctl {what}");
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| self.ctl("stop"));
    }
}

/// PostgreSQL stopped and started again while mcpgate serves: while it is down,
/// requests that need it fail fast with 503 and `Retry-After`, sessions the
/// replica holds go on; after, everything works again without restarting
/// mcpgate, and no grant was lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restart_fails_fast_and_recovers() {
    let Some(pg) = OwnPostgres::start() else {
        return;
    };
    let (_upstream, upstream_url) = http_upstream().await;
    let env = Env::with_config(&format!(
        "[store]\nbackend = \"postgres\"\npostgres_url = \"{}\"\n\
         [[upstream]]\nname = \"web\"\nhttp = {{ url = \"{upstream_url}\" }}\n\
         scopes = [\"notes:read\"]\n",
        pg.url()
    ));
    env.add_user(USER, PASSWORD).await;
    let (client_id, _) = env.add_client("Restart app", REDIRECT, &[]).await;
    let srv = env.serve().await;
    let mut b = Browser::new();
    let req = AuthRequest::new(
        &client_id,
        REDIRECT,
        "notes:read offline_access",
        &srv.url("/mcp/web"),
    );
    let code = flow::authorize(&mut b, &srv, &req, USER, PASSWORD).await;
    let tokens = flow::redeem(&srv, &req, &code, None).await;
    let sid = initialize(&srv, "web", &tokens.access).await;
    assert_eq!(echo(&srv, &tokens.access, &sid, "up").await, 200);

    pg.ctl("stop");
    // A refresh needs the database: 503 temporarily_unavailable, soon.
    let asked = Instant::now();
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", tokens.refresh()),
        ("client_id", client_id.as_str()),
    ];
    let r = srv
        .http
        .post(srv.url("/oauth/token"))
        .form(&form)
        .send()
        .await
        .unwrap();
    let waited = asked.elapsed();
    assert_eq!(r.status(), 503, "{}", srv.log_text());
    assert_eq!(
        r.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "temporarily_unavailable", "{v}");
    eprintln!("a refresh with the database down was answered 503 after {waited:?}");
    assert!(
        waited < Duration::from_secs(15),
        "not failing fast: {waited:?}"
    );
    // A new session needs the database too: 503 with Retry-After.
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "fleet-test", "version": "1"}}});
    let (status, _, msg) = mcp(&srv, "web", &tokens.access, None, &init).await;
    assert_eq!(status, 503, "{msg}");
    // The session this replica holds goes on.
    for _ in 0..3 {
        assert_eq!(echo(&srv, &tokens.access, &sid, "down").await, 200);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }

    pg.ctl("start");
    // Back without a restart: the same refresh token rotates (nothing was
    // lost or spent while the database was down), and sessions are made.
    let deadline = Instant::now() + Duration::from_secs(30);
    let fresh = loop {
        if let Some(t) = rotate(&srv, &client_id, tokens.refresh()).await {
            break t;
        }
        assert!(Instant::now() < deadline, "the store never came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(!fresh.is_empty());
    let again = initialize(&srv, "web", &tokens.access).await;
    assert_eq!(echo(&srv, &tokens.access, &again, "again").await, 200);
    assert_eq!(echo(&srv, &tokens.access, &sid, "still").await, 200);
    srv.stop().await;
    drop(pg);
}
