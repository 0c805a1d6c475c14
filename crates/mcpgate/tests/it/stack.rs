//! The composition layer in-process: two replicas started with
//! `mcpgate::serve::Stack` (what `mcpgate serve` runs) on one PostgreSQL
//! schema, and the three steps of stopping one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mcpgate::config::{self, Overrides};
use mcpgate::serve::{Runtime, Stack};

async fn replica(config_file: &std::path::Path, data: &std::path::Path) -> Stack {
    let cfg = config::load(
        Some(config_file),
        &Overrides {
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some(data.to_path_buf()),
            tls_self_signed: false,
        },
    )
    .expect("config");
    let rt = Runtime::open(cfg).await.expect("runtime");
    Stack::start(Arc::new(rt)).await.expect("stack")
}

async fn status(
    http: &reqwest::Client,
    stack_addr: std::net::SocketAddr,
    path: &str,
) -> Option<u16> {
    http.get(format!("http://{stack_addr}{path}"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stacks_in_one_process_share_a_database_and_stop_in_three_steps() {
    let Some(db) = mcpgate_testkit::pg::schema_or_skip("stack_inproc").await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, master) = mcpgate_jose::MasterKey::generate(&mcpgate_jose::SystemRng::new());
    let key = dir.path().join("master.key");
    std::fs::write(&key, master).expect("key");
    let file = dir.path().join("mcpgate.toml");
    std::fs::write(
        &file,
        format!(
            "public_url = \"http://127.0.0.1:1\"\nmaster_key = \"${{file:{}}}\"\n\
             shutdown_delay_secs = 1\n[store]\nbackend = \"postgres\"\npostgres_url = \"{}\"\n",
            key.display(),
            db.url()
        ),
    )
    .expect("config");
    let a = replica(&file, &dir.path().join("a")).await;
    let b = replica(&file, &dir.path().join("b")).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    // One issuer, one key ring: both publish the same JWKS.
    let jwks = |addr| {
        let http = http.clone();
        async move {
            http.get(format!("http://{addr}/oauth/jwks.json"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    assert_eq!(jwks(a.addr()).await, jwks(b.addr()).await);
    for s in [&a, &b] {
        assert_eq!(status(&http, s.addr(), "/readyz").await, Some(200));
    }

    // Stopping A: not ready at once, still serving during the delay, then
    // closed; B never notices.
    let a_addr = a.addr();
    let asked = Instant::now();
    a.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(status(&http, a_addr, "/readyz").await, Some(503));
    assert_eq!(status(&http, a_addr, "/healthz").await, Some(200));
    assert_eq!(status(&http, b.addr(), "/readyz").await, Some(200));
    a.wait().await.expect("A stopped");
    assert!(
        asked.elapsed() >= Duration::from_secs(1),
        "closed before shutdown_delay_secs"
    );
    assert_eq!(
        status(&http, a_addr, "/healthz").await,
        None,
        "A still accepts"
    );
    assert_eq!(status(&http, b.addr(), "/readyz").await, Some(200));
    b.stop();
    b.wait().await.expect("B stopped");
    db.drop_schema().await;
}
