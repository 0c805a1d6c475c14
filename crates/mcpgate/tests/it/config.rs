//! Configuration as the binary sees it: `check-config` errors that name the
//! field and the line, the plain-HTTP refusal, secret references, and TLS
//! with a self-signed certificate.

use std::time::Duration;

use crate::harness::{Env, ServeOpts};

#[tokio::test]
async fn check_config_names_the_field_and_line() {
    let env = Env::new();
    let cases = [
        // A value out of range, on line 5.
        (
            "bad-ttl.toml",
            "# a comment\nlisten = \"127.0.0.1:8080\"\n\n[authorization_server]\naccess_token_ttl_secs = 0\n",
            "authorization_server.access_token_ttl_secs",
            5,
        ),
        // An unknown field, on line 3.
        (
            "unknown.toml",
            "public_url = \"http://127.0.0.1:8080\"\nlisten = \"127.0.0.1:8080\"\nbogus = 1\n",
            "bogus",
            3,
        ),
        // A malformed listen address, on line 2.
        (
            "listen.toml",
            "public_url = \"http://127.0.0.1:8080\"\nlisten = \"localhost\"\n",
            "listen",
            2,
        ),
        // A plain secret in the file, on line 1.
        (
            "secret.toml",
            "master_key = \"c2VjcmV0IHNlY3JldCBzZWNyZXQgc2VjcmV0IQ==\"\n",
            "master_key",
            1,
        ),
    ];
    for (name, text, field, line) in cases {
        let p = env.write(name, text);
        let out = env
            .cli(&["--config", p.to_str().unwrap(), "check-config"])
            .await;
        assert!(
            !out.status.success(),
            "{name}: check-config accepted it:\n{}",
            out.stdout
        );
        assert!(
            out.stderr.contains(field),
            "{name}: the error does not name {field}:\n{}",
            out.stderr
        );
        let at = format!("{}:{line}", p.display());
        assert!(
            out.stderr.contains(&at),
            "{name}: the error does not say {at}:\n{}",
            out.stderr
        );
    }
    let out = env
        .cli(&[
            "--config",
            env.path().join("secret.toml").to_str().unwrap(),
            "check-config",
        ])
        .await;
    assert!(
        !out.stderr.contains("c2VjcmV0"),
        "the error echoes the secret:\n{}",
        out.stderr
    );
}

#[tokio::test]
async fn check_config_prints_what_would_run() {
    let env = Env::new();
    let out = env.cli_ok(&["check-config"]).await;
    assert!(
        out.stdout.contains("config: embedded defaults"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("issuer (public_url): http://127.0.0.1:8080\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("http://127.0.0.1:8080/mcp/notes"),
        "{}",
        out.stdout
    );
    for scope in ["notes:read", "notes:write", "notes:admin", "offline_access"] {
        assert!(
            out.stdout.contains(scope),
            "{scope} missing:\n{}",
            out.stdout
        );
    }
}

#[tokio::test]
async fn plain_http_off_loopback_refuses_to_start() {
    let env = Env::new();
    let p = env.write(
        "public.toml",
        "public_url = \"http://example.com\"\nlisten = \"0.0.0.0:8080\"\n",
    );
    let run = env.command().arg("--config").arg(&p).arg("serve").output();
    // kill_on_drop stops it should it start after all.
    let out = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("serve should refuse at once, not run")
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "serve started:\n{stderr}");
    assert!(
        stderr.contains("trust_forwarded_proto"),
        "the message does not say how to fix it:\n{stderr}"
    );
    assert!(stderr.contains("public_url"), "{stderr}");
    assert!(stderr.contains(&format!("{}:1", p.display())), "{stderr}");
}

#[tokio::test]
async fn secret_references_and_config_clients() {
    let env = Env::new();
    let secret_file = env.write("client.secret", "a-client-secret-from-a-file-0123456789\n");
    let toml = move |port: u16| {
        let _ = port;
        format!(
            "master_key = \"${{env:MCPGATE_IT_MASTER_KEY}}\"\n\n[[client]]\nclient_id = \"svc\"\nname = \"Service\"\n\
             auth_method = \"client_secret_basic\"\nclient_secret = \"${{file:{}}}\"\ngrant_types = [\"client_credentials\"]\n",
            secret_file.display()
        )
    };
    let master = "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="; // 32 bytes, base64
    let srv = env
        .serve_with(ServeOpts {
            config: Some(Box::new(toml)),
            env: vec![("MCPGATE_IT_MASTER_KEY".into(), master.into())],
            ..ServeOpts::default()
        })
        .await;
    assert!(
        !env.data_dir().join("master.key").exists(),
        "a configured master key must not generate a file"
    );
    let form = vec![
        ("grant_type".to_string(), "client_credentials".to_string()),
        ("resource".to_string(), srv.resource.clone()),
        ("scope".to_string(), "notes:read".to_string()),
    ];
    let (status, v) = mcpgate_testkit::post_form(
        &srv.http,
        &srv.url("/oauth/token"),
        &form,
        Some(("svc", "a-client-secret-from-a-file-0123456789")),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = mcpgate_testkit::post_form(
        &srv.http,
        &srv.url("/oauth/token"),
        &form,
        Some(("svc", "wrong")),
    )
    .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (401, Some("invalid_client")),
        "{v}"
    );
    let log = srv.stop().await;
    assert!(
        !log.contains(master) && !log.contains("a-client-secret-from-a-file"),
        "a secret reached the log:\n{log}"
    );
}

#[tokio::test]
async fn self_signed_tls_serves_the_https_issuer() {
    let env = Env::new();
    let srv = env
        .serve_with(ServeOpts {
            config: Some(Box::new(|port| {
                format!("public_url = \"https://localhost:{port}\"\n")
            })),
            args: vec!["--tls-self-signed".into()],
            https: true,
            ..ServeOpts::default()
        })
        .await;
    assert_eq!(srv.issuer, format!("https://localhost:{}", srv.port));
    let meta = srv
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert_eq!(meta["issuer"].as_str(), Some(srv.issuer.as_str()), "{meta}");
    assert_eq!(
        meta["token_endpoint"].as_str(),
        Some(srv.url("/oauth/token").as_str()),
        "{meta}"
    );
    let jwks = srv.get_json("/oauth/jwks.json").await;
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(1), "{jwks}");
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = plain
        .get(format!("http://127.0.0.1:{}/healthz", srv.port))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        r.is_err() || !r.unwrap().status().is_success(),
        "plain HTTP answered on the TLS port"
    );
    srv.stop().await;
}

/// `[metrics] listen` moves `/metrics` to a listener of its own (gone from
/// the main one) and `bearer_token` guards it: 401 without the token, the
/// Prometheus text with it.
#[tokio::test]
async fn metrics_on_their_own_listener_behind_a_token() {
    let port = crate::harness::free_port();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("metrics.token");
    let token = "metrics-token-0123456789abcdef";
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let env = Env::with_config(&format!(
        "[metrics]\nlisten = \"127.0.0.1:{port}\"\nbearer_token = \"${{file:{}}}\"\n\n\
         [[upstream]]\nname = \"notes\"\nscopes = [\"notes:read\"]\n\
         stdio = {{ command = \"{}\", args = [\"demo-upstream\"] }}\n",
        token_file.display(),
        crate::harness::bin()
    ));
    let srv = env.serve().await;
    let main = srv.http.get(srv.url("/metrics")).send().await.unwrap();
    assert_eq!(main.status(), 404, "not on the main listener");
    assert_eq!(
        srv.http
            .get(srv.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // One audited request, so there is a counter to read.
    let r = srv.http.post(srv.url("/mcp/notes")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let own = format!("http://127.0.0.1:{port}/metrics");
    let r = srv.http.get(&own).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = srv
        .http
        .get(&own)
        .bearer_auth("wrong-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = srv.http.get(&own).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("# TYPE") || text.is_empty() || text.contains("mcpgate"),
        "{text}"
    );
    // Each listener's connection limit shows on its own.
    for line in [
        "mcpgate_connections_limit{listener=\"main\"} 10000",
        "mcpgate_connections_limit{listener=\"metrics\"} 64",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    srv.stop().await;
}

/// Opens a connection and sends one keep-alive `GET /healthz`; returns the
/// connection (still open) and the first bytes of the answer.
async fn held_connection(addr: &str) -> (tokio::net::TcpStream, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), c.read(&mut buf))
        .await
        .expect("an answer in time")
        .unwrap();
    (c, String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// `max_connections` holds: with every place taken, the next connection
/// is answered 503 with `Retry-After` and closed, the refusal is counted
/// in `/metrics`, and a place that frees is served again.
#[tokio::test]
async fn connections_over_max_connections_get_503() {
    let port = crate::harness::free_port();
    let env = Env::with_config(&format!(
        "max_connections = 3\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"
    ));
    let srv = env.serve().await;
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    let gauge = |text: &str, line: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(line))
            .and_then(|v| v.trim().parse().ok())
    };
    let scrape = || async {
        let r = reqwest::get(&metrics).await.unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    };
    // What the harness itself holds open (its client's pool) counts too.
    let before = gauge(
        &scrape().await,
        "mcpgate_connections_open{listener=\"main\"}",
    )
    .unwrap_or(0.0) as usize;
    assert!(before < 3, "{before} connections open already");
    let addr = srv
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut held = vec![];
    for _ in before..3 {
        let (c, answer) = held_connection(&addr).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        held.push(c);
    }
    let (mut over, answer) = held_connection(&addr).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 5"),
        "{answer}"
    );
    assert!(answer.contains("max_connections"), "{answer}");
    // It is closed after that one answer.
    let mut rest = vec![];
    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_to_end(&mut over, &mut rest),
    )
    .await;
    assert!(closed.is_ok(), "the refused connection stays open");
    let text = scrape().await;
    assert!(
        gauge(
            &text,
            "mcpgate_connections_refused_total{listener=\"main\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert_eq!(
        gauge(&text, "mcpgate_connections_open{listener=\"main\"}"),
        Some(3.0),
        "{text}"
    );
    // A place frees: the next connection is served.
    drop(held.pop());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_c, answer) = held_connection(&addr).await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(
            std::time::Instant::now() < deadline,
            "the freed place was never served"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop(held);
    srv.stop().await;
}
