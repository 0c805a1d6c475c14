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
/// fixture) under three names (`web`; `limited`, rate limited; `guarded`,
/// whose `echo` needs `notes:write` beyond the baseline `notes:read`) and
/// the stdio demo upstream.
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
             rate_limit = {{ per_user_per_minute = {LIMIT}, per_client_per_minute = 100000 }}\n\
             [[upstream]]\nname = \"guarded\"\nhttp = {{ url = \"{upstream_url}\" }}\n\
             scopes = [\"notes:read\"]\n\
             tools = {{ echo = {{ scopes = [\"notes:write\"] }} }}\n",
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
        self.tokens_in(&mut Browser::new(), upstream, at).await
    }

    /// [`Fleet::tokens`] in browser `b`, which stays signed in.
    async fn tokens_in(&self, b: &mut Browser, upstream: &str, at: usize) -> Tokens {
        let req = AuthRequest::new(
            &self.client_id,
            REDIRECT,
            "notes:read offline_access",
            &self.resource(upstream),
        );
        let code = flow::authorize(b, &self.front, &req, USER, PASSWORD).await;
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

/// One MCP request as sent; `None` when the connection failed or closed
/// without an answer.
async fn mcp_send(
    front: &Front,
    upstream: &str,
    token: &str,
    session: Option<&str>,
    body: &Value,
) -> Option<reqwest::Response> {
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
    match req.send().await {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("MCP POST: {e}");
            None
        }
    }
}

/// One MCP request: status, session id header, and the JSON-RPC message
/// (from a JSON body or the first event of a stream). No answer: status 0.
async fn mcp(
    front: &Front,
    upstream: &str,
    token: &str,
    session: Option<&str>,
    body: &Value,
) -> (u16, Option<String>, Value) {
    let Some(r) = mcp_send(front, upstream, token, session, body).await else {
        return (0, None, Value::Null);
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

fn initialize_request() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "fleet-test", "version": "1"}}})
}

async fn initialize(front: &Front, upstream: &str, token: &str) -> String {
    let (status, sid, msg) = mcp(front, upstream, token, None, &initialize_request()).await;
    assert_eq!(status, 200, "initialize: {msg}");
    let sid = sid.expect("a session id");
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let (status, _, _) = mcp(front, upstream, token, Some(&sid), &note).await;
    assert_eq!(status, 202);
    sid
}

/// `DELETE` of a session: the status (0: no answer).
async fn end_session(front: &Front, upstream: &str, token: &str, sid: &str) -> u16 {
    let r = front
        .http
        .delete(front.url(&format!("/mcp/{upstream}")))
        .bearer_auth(token)
        .header("mcp-session-id", sid)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await;
    r.map_or(0, |r| r.status().as_u16())
}

static IDS: AtomicU64 = AtomicU64::new(10);

/// The body of a `tools/call` of `tool`.
fn call_request(tool: &str, args: Value) -> Value {
    let id = IDS.fetch_add(1, Ordering::Relaxed);
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": tool, "arguments": args}})
}

/// `tools/call` of `tool`: the status and the message.
async fn call(
    front: &Front,
    upstream: &str,
    token: &str,
    sid: &str,
    tool: &str,
    args: Value,
) -> (u16, Value) {
    let body = call_request(tool, args);
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
    assert_eq!(
        end_session(&fleet.replica(2), "web", &web.access, &sid).await,
        204
    );
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

/// The scopes a token response granted.
fn granted(t: &Tokens) -> Vec<&str> {
    t.json["scope"]
        .as_str()
        .unwrap_or_default()
        .split(' ')
        .collect()
}

/// Step-up with each step on another replica: a token for the baseline
/// scope, a call of a tool that needs more (403 `insufficient_scope` and the
/// scopes to ask for), the protected resource metadata the challenge names,
/// the user's consent to the wider scope, the call again on the same
/// session, and a refresh that keeps the wider grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fleet_steps_up_and_refreshes_on_any_replica() {
    let Some(fleet) = Fleet::start("fleet_step_up").await else {
        return;
    };
    let resource = fleet.resource("guarded");
    // Signed in through HAProxy for the baseline; the browser stays signed in.
    let mut b = Browser::new();
    let read = fleet.tokens_in(&mut b, "guarded", 0).await;
    assert!(!granted(&read).contains(&"notes:write"), "{}", read.json);
    let sid = initialize(&fleet.replica(1), "guarded", &read.access).await;
    let text = json!({"text": "stepped up"});

    // At r3: 403 with a Bearer challenge naming every scope the call needs.
    let r = mcp_send(
        &fleet.replica(2),
        "guarded",
        &read.access,
        Some(&sid),
        &call_request("echo", text.clone()),
    )
    .await
    .expect("an answer");
    assert_eq!(r.status(), 403);
    let challenge = r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .and_then(mcpgate_types::www_authenticate::find_bearer)
        .expect("a Bearer challenge");
    assert_eq!(challenge.get("error"), Some("insufficient_scope"));
    let wanted = challenge.get("scope").expect("the scopes to ask for");
    let mut wanted: Vec<&str> = wanted.split(' ').collect();
    wanted.sort_unstable();
    assert_eq!(wanted, ["notes:read", "notes:write"]);
    // The metadata it points to, read at r1, names this resource and scope.
    let prm = challenge
        .get("resource_metadata")
        .and_then(|u| u.strip_prefix(fleet.front.issuer.as_str()))
        .expect("resource_metadata on the issuer");
    let prm = fleet.replica(0).get_json(prm).await;
    assert_eq!(prm["resource"], resource.as_str(), "{prm}");

    // Back to the AS for the union of scopes: the request at r2 shows the
    // signed-in user the consent page (the new scope), approved at r3, the
    // code redeemed at r1.
    let wider = AuthRequest::new(
        &fleet.client_id,
        REDIRECT,
        &format!("{} offline_access", wanted.join(" ")),
        &resource,
    );
    let page = b.get(&wider.url(&fleet.replica(1).base)).await;
    assert!(
        flow::is_consent_page(&page),
        "{}: {}",
        page.status,
        page.body
    );
    assert!(page.body.contains("notes:write"), "{}", page.body);
    let page = flow::approve(&mut b, &fleet.replica(2), &page).await;
    let code = flow::code_from(&fleet.front, &wider, &page);
    let wide = flow::redeem(&fleet.replica(0), &wider, &code, None).await;
    assert!(granted(&wide).contains(&"notes:write"), "{}", wide.json);

    // The call again, on the same session, at r2.
    let (status, msg) = call(
        &fleet.replica(1),
        "guarded",
        &wide.access,
        &sid,
        "echo",
        text.clone(),
    )
    .await;
    assert_eq!(status, 200, "{msg}");
    assert!(msg.to_string().contains("stepped up"), "{msg}");

    // A refresh at r3 keeps the wider grant; its token works at r1.
    let refreshed = flow::refresh(&fleet.replica(2), &fleet.client_id, wide.refresh(), None).await;
    assert!(
        granted(&refreshed).contains(&"notes:write"),
        "{}",
        refreshed.json
    );
    assert_ne!(refreshed.refresh(), wide.refresh());
    let (status, msg) = call(
        &fleet.replica(0),
        "guarded",
        &refreshed.access,
        &sid,
        "echo",
        text.clone(),
    )
    .await;
    assert_eq!(status, 200, "{msg}");
    // The baseline token is still refused the tool: the scope came with the
    // new grant, not with the session.
    let (status, _) = call(
        &fleet.replica(2),
        "guarded",
        &read.access,
        &sid,
        "echo",
        text,
    )
    .await;
    assert_eq!(status, 403);
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
    let load = EchoLoad::start(&fleet.front, &web.access, &sids);
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
    // Counted before the signal: once it is sent, a request in flight at the
    // victim may fail (and be counted) before `kill` itself returns.
    let killed_at = load.counts();
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill");
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
    let load = EchoLoad::start(&fleet.front, &web.access, &vec![sid; 4]);
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

/// Workers calling `echo` through `front` (HAProxy, or one server), one per
/// session given, until [`EchoLoad::finish`]; they count what succeeded and
/// what failed.
struct EchoLoad {
    stop: Arc<std::sync::atomic::AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl EchoLoad {
    fn start(front: &Front, token: &str, sids: &[String]) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let mut workers = Vec::new();
        for (w, sid) in sids.iter().enumerate() {
            let (front, token, sid) = (clone_of(front), token.to_string(), sid.clone());
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

/// How one refresh ended.
enum Refreshed {
    /// The new refresh token.
    Rotated(String),
    /// 503 `temporarily_unavailable` with `Retry-After`: not rotated.
    Unavailable,
    /// Anything else: the status (0: no whole answer) and the body.
    Failed(u16, String),
}

/// One refresh of `token` through `front`.
async fn refresh_once(front: &Front, client_id: &str, token: &str) -> Refreshed {
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", token),
        ("client_id", client_id),
    ];
    let r = match front
        .http
        .post(front.url("/oauth/token"))
        .form(&form)
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => return Refreshed::Failed(0, e.to_string()),
    };
    let status = r.status().as_u16();
    let retry_after = r.headers().contains_key("retry-after");
    let text = match r.text().await {
        Ok(t) => t,
        Err(e) => return Refreshed::Failed(0, e.to_string()),
    };
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    match (status, v["refresh_token"].as_str()) {
        (200, Some(t)) => Refreshed::Rotated(t.to_string()),
        (503, _) if retry_after && v["error"] == "temporarily_unavailable" => {
            Refreshed::Unavailable
        }
        _ => Refreshed::Failed(status, text),
    }
}

/// One refresh through `front`: the new refresh token, or `None` when the
/// request failed on the way (to be retried with the same token).
async fn rotate(front: &Front, client_id: &str, token: &str) -> Option<String> {
    match refresh_once(front, client_id, token).await {
        Refreshed::Rotated(t) => Some(t),
        Refreshed::Unavailable => None,
        Refreshed::Failed(s, _) if s == 0 || s >= 500 => None,
        Refreshed::Failed(s, body) => panic!("refresh refused: {s} {body}"),
    }
}

/// `front` again, with a client (and connection pool) of its own.
fn clone_of(front: &Front) -> Front {
    Front {
        base: front.base.clone(),
        issuer: front.issuer.clone(),
        resource: front.resource.clone(),
        http: http_client(),
    }
}

impl Fleet {
    fn front_clone(&self) -> Front {
        clone_of(&self.front)
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

/// What a worker's requests got while the database went away and came back:
/// each must succeed or be refused at once with 503 and `Retry-After`.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    unavailable: AtomicU64,
    /// The slowest 503, for the report.
    slowest_refusal: std::sync::Mutex<Duration>,
    /// Every other answer (a 500, no answer, a refused grant), described.
    wrong: std::sync::Mutex<Vec<String>>,
}

impl Tally {
    fn ok(&self) {
        self.ok.fetch_add(1, Ordering::Relaxed);
    }

    fn unavailable(&self, took: Duration) {
        self.unavailable.fetch_add(1, Ordering::Relaxed);
        let mut s = self.slowest_refusal.lock().unwrap();
        *s = (*s).max(took);
    }

    fn wrong(&self, what: String) {
        eprintln!("{what}");
        self.wrong.lock().unwrap().push(what);
    }

    /// (succeeded, refused with 503) so far.
    fn counts(&self) -> (u64, u64) {
        (
            self.ok.load(Ordering::Relaxed),
            self.unavailable.load(Ordering::Relaxed),
        )
    }
}

/// A worker of the restart trial: its tally, and the task, which returns
/// the last refresh token of its chain (empty for other workers).
struct Worker {
    name: &'static str,
    tally: Arc<Tally>,
    task: tokio::task::JoinHandle<String>,
}

/// Between two requests of one worker, to keep the load a small machine can
/// carry beside the server.
const PACE: Duration = Duration::from_millis(10);

impl Worker {
    /// Rotates a refresh chain: a 503 leaves the token as it was, to be
    /// presented again.
    fn refreshes(
        name: &'static str,
        front: &Front,
        client_id: &str,
        first: String,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        let tally = Arc::new(Tally::default());
        let (front, client_id, t) = (clone_of(front), client_id.to_string(), tally.clone());
        let task = tokio::spawn(async move {
            let mut token = first;
            while !stop.load(Ordering::Relaxed) {
                let asked = Instant::now();
                match refresh_once(&front, &client_id, &token).await {
                    Refreshed::Rotated(next) => {
                        token = next;
                        t.ok();
                    }
                    Refreshed::Unavailable => t.unavailable(asked.elapsed()),
                    Refreshed::Failed(status, body) => {
                        t.wrong(format!("{name}: {status} {body}"));
                    }
                }
                tokio::time::sleep(PACE).await;
            }
            token
        });
        Self { name, tally, task }
    }

    /// Opens sessions of `upstream` and ends each at once (so that the
    /// per-user cap never evicts anyone else's).
    fn sessions(
        name: &'static str,
        front: &Front,
        upstream: &'static str,
        token: &str,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        let tally = Arc::new(Tally::default());
        let (front, token, t) = (clone_of(front), token.to_string(), tally.clone());
        let task = tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let asked = Instant::now();
                let init = mcp_send(&front, upstream, &token, None, &initialize_request()).await;
                let Some(r) = init else {
                    t.wrong(format!("{name}: initialize had no answer"));
                    continue;
                };
                let status = r.status().as_u16();
                let retry_after = r.headers().contains_key("retry-after");
                let sid = r
                    .headers()
                    .get("mcp-session-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let body = r.text().await.unwrap_or_default();
                match (status, sid) {
                    (200, Some(sid)) => {
                        t.ok();
                        match end_session(&front, upstream, &token, &sid).await {
                            204 | 503 => {}
                            s => t.wrong(format!("{name}: DELETE answered {s}")),
                        }
                    }
                    (503, _) if retry_after => t.unavailable(asked.elapsed()),
                    (s, _) => t.wrong(format!("{name}: initialize answered {s}: {body}")),
                }
                tokio::time::sleep(PACE).await;
            }
            String::new()
        });
        Self { name, tally, task }
    }
}

/// Waits until `done(i, tally)` holds for every worker `i` (at most a
/// generous while: a worker that never gets there is stuck, and the test
/// says which).
async fn until_each(workers: &[Worker], what: &str, done: impl Fn(usize, &Tally) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let behind: Vec<&str> = workers
            .iter()
            .enumerate()
            .filter(|(i, w)| !done(*i, &w.tally))
            .map(|(_, w)| w.name)
            .collect();
        if behind.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{behind:?} never {what}: {:?}",
            workers
                .iter()
                .map(|w| (w.name, w.tally.counts()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Log lines the gateway's store-outage warnings (one shared budget) and
/// the audit writer's (one of its own) may write in `lasted`: the budget's
/// lines per window, for every window that can overlap that time.
fn store_warning_lines_allowed(lasted: Duration) -> usize {
    // STORE_WARNINGS lines per STORE_WARNING_WINDOW (mcpgate-gateway's
    // log_budget): 3 per 10 s.
    3 * (lasted.as_secs() as usize / 10 + 2)
}

/// PostgreSQL stopped and started again while mcpgate serves under load:
/// workers rotate two refresh chains, call a tool on a session the replica
/// holds, and open new sessions. While the database is down every request
/// that needs it is refused at once with 503 and `Retry-After` (the sign-in
/// and consent pages too, as an HTML page), none hangs or gets a 500, and
/// the held session goes on; after, everything works again without
/// restarting mcpgate, and no grant was lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restart_fails_fast_and_recovers() {
    let Some(pg) = OwnPostgres::start() else {
        return;
    };
    let (_upstream, upstream_url) = http_upstream().await;
    let env = Env::with_config(&format!(
        "[store]\nbackend = \"postgres\"\npostgres_url = \"{}\"\n\
         [[upstream]]\nname = \"web\"\nhttp = {{ url = \"{upstream_url}\" }}\n\
         scopes = [\"notes:read\"]\n\
         rate_limit = {{ per_user_per_minute = 1000000, per_client_per_minute = 1000000 }}\n",
        pg.url()
    ));
    env.add_user(USER, PASSWORD).await;
    let (client_id, _) = env.add_client("Restart app", REDIRECT, &[]).await;
    let srv = env.serve().await;
    let served_from = Instant::now();
    let request = || {
        AuthRequest::new(
            &client_id,
            REDIRECT,
            "notes:read offline_access",
            &srv.url("/mcp/web"),
        )
    };
    // Three grants: one for the sessions, two refresh chains.
    let mut b = Browser::new();
    let mut grants = Vec::new();
    for _ in 0..3 {
        let req = request();
        let code = flow::authorize(&mut b, &srv, &req, USER, PASSWORD).await;
        grants.push(flow::redeem(&srv, &req, &code, None).await);
    }
    let tokens = grants.remove(0);
    let sid = initialize(&srv, "web", &tokens.access).await;
    assert_eq!(echo(&srv, &tokens.access, &sid, "up").await, 200);
    // A consent form shown now and answered while the database is down.
    let later = request();
    let form = b.get(&later.url(&srv.base)).await;
    assert!(form.consent_step().is_some(), "{}", form.body);

    // The load. The held session needs no database: every call succeeds.
    let held = EchoLoad::start(&srv, &tokens.access, &[sid.clone(), sid.clone()]);
    let stop = held.stop.clone();
    let mut workers = vec![Worker::sessions(
        "new sessions",
        &srv,
        "web",
        &tokens.access,
        stop.clone(),
    )];
    for (name, g) in ["refresh chain 1", "refresh chain 2"]
        .into_iter()
        .zip(&grants)
    {
        workers.push(Worker::refreshes(
            name,
            &srv,
            &client_id,
            g.refresh().to_string(),
            stop.clone(),
        ));
    }
    until_each(&workers, "succeeded before the outage", |_, t| {
        t.counts().0 >= 3
    })
    .await;

    pg.ctl("stop");
    // A refresh needs the database: 503 temporarily_unavailable, soon.
    let asked = Instant::now();
    let form_body = [
        ("grant_type", "refresh_token"),
        ("refresh_token", tokens.refresh()),
        ("client_id", client_id.as_str()),
    ];
    let r = srv
        .http
        .post(srv.url("/oauth/token"))
        .form(&form_body)
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
    let (status, _, msg) = mcp(&srv, "web", &tokens.access, None, &initialize_request()).await;
    assert_eq!(status, 503, "{msg}");
    // The pages a person sees say so too: the authorization request of a
    // signed-in user (its session is in the database), a new sign-in, and
    // the consent form shown before the outage.
    let unavailable_page = |what: &str, p: &mcpgate_testkit::Page| {
        assert_eq!(p.status, 503, "{what}: {}", p.body);
        assert_eq!(
            p.headers.get("retry-after").map(|v| v.as_bytes()),
            Some(&b"1"[..]),
            "{what}"
        );
        assert!(
            p.headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|c| c.starts_with("text/html")),
            "{what}"
        );
        assert!(p.body.contains("try again"), "{what}: {}", p.body);
    };
    let page = b.get(&request().url(&srv.base)).await;
    unavailable_page("authorization request", &page);
    let page = flow::sign_in(
        &mut Browser::new(),
        &srv,
        &request().url(&srv.base),
        USER,
        PASSWORD,
        None,
    )
    .await;
    unavailable_page("sign-in", &page);
    let page = b.decide(&srv.base, &form, "approve").await;
    unavailable_page("consent", &page);
    // Every worker that needs the database is refused, several times.
    until_each(&workers, "were refused while it was down", |_, t| {
        t.counts().1 >= 3
    })
    .await;

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
    // Every worker succeeds again.
    let before: Vec<u64> = workers.iter().map(|w| w.tally.counts().0).collect();
    until_each(&workers, "succeeded after the restart", |i, t| {
        t.counts().0 >= before[i] + 3
    })
    .await;
    let (held_ok, held_failed) = held.finish().await;
    let mut chains = Vec::new();
    for w in workers {
        let last = w.task.await.expect("worker");
        let (ok, refused) = w.tally.counts();
        let slowest = *w.tally.slowest_refusal.lock().unwrap();
        eprintln!(
            "{}: {ok} succeeded, {refused} refused with 503 (slowest {slowest:?})",
            w.name
        );
        let wrong = w.tally.wrong.lock().unwrap();
        assert!(
            wrong.is_empty(),
            "{}: answers other than success or 503: {:?}",
            w.name,
            &wrong[..wrong.len().min(5)]
        );
        if !last.is_empty() {
            chains.push(last);
        }
    }
    eprintln!("held session: {held_ok} calls succeeded, {held_failed} failed");
    assert_eq!(
        held_failed, 0,
        "the held session failed while the database was down"
    );

    // The consent form refused while the database was down was not spent:
    // answered again, it gives its code.
    let page = b.decide(&srv.base, &form, "approve").await;
    let code = flow::code_from(&srv, &later, &page);
    let late = flow::redeem(&srv, &later, &code, None)
        .await
        .refresh()
        .to_string();
    let again = initialize(&srv, "web", &tokens.access).await;
    assert_eq!(echo(&srv, &tokens.access, &again, "again").await, 200);
    assert_eq!(echo(&srv, &tokens.access, &sid, "still").await, 200);

    // Nothing lost or doubled: every chain rotates once more, and each
    // grant is exactly one live family.
    let store = mcpgate_store::PostgresStore::connect(&pg.url())
        .await
        .expect("store");
    let mut families = std::collections::BTreeSet::new();
    for last in chains.iter().chain([&fresh, &late]) {
        let next = rotate(&srv, &client_id, last).await.expect("rotates");
        let hash = mcpgate_types::secret::hash_secret(&next);
        let (tok, fam) = mcpgate_store::RefreshTokenStore::get_refresh_token(&store, &hash)
            .await
            .expect("the new token is stored");
        assert!(
            tok.rotated_at.is_none() && fam.revoked_at.is_none(),
            "{fam:?}"
        );
        families.insert(fam.family_id);
    }
    assert_eq!(families.len(), 4, "one family per grant: {families:?}");
    let live: std::collections::BTreeSet<String> =
        mcpgate_store::RefreshTokenStore::list_families(&store, None, flow::now())
            .await
            .expect("families")
            .into_iter()
            .map(|f| f.family_id)
            .collect();
    assert_eq!(live, families, "grants lost or doubled");
    store.close().await;

    // The outage was logged, within the warnings' budget rather than once
    // per request.
    let log = srv.log_text();
    let lasted = served_from.elapsed();
    let gateway_warnings = log
        .lines()
        .filter(|l| {
            [
                "the shared session store did not answer",
                "storing a new session failed",
                "deleting a session from the shared store failed",
                "purging idle shared sessions failed",
            ]
            .iter()
            .any(|m| l.contains(m))
        })
        .count();
    let audit_warnings = log
        .lines()
        .filter(|l| l.contains("writing audit records to the store failed"))
        .count();
    eprintln!(
        "store warnings over {lasted:?}: {gateway_warnings} by the gateway, {audit_warnings} by the audit writer"
    );
    assert!(gateway_warnings > 0, "the outage was not logged:\n{log}");
    assert!(
        gateway_warnings <= store_warning_lines_allowed(lasted),
        "{gateway_warnings} gateway warnings in {lasted:?}"
    );
    assert!(audit_warnings <= store_warning_lines_allowed(lasted));
    srv.stop().await;
    drop(pg);
}
