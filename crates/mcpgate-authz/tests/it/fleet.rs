//! Replicas of one authorization server sharing a store: a key rotation
//! made elsewhere reaches every replica's JWKS within a second (SQLite by
//! polling the change revision, PostgreSQL by its notice: the watch here
//! polls only once a minute), and on PostgreSQL login limits hold across
//! replicas and housekeeping runs on one replica at a time.

use std::time::{Duration, Instant};

use libtest_mimic::Trial;
use mcpgate_store::fleet::{Fleet, Replica};
use mcpgate_store::{DynStore, RevocationWatch};
use mcpgate_testkit::{Browser, Options, TestAs};
use sqlx::Connection;

use crate::common::*;
use crate::pg::Postgres;

pub fn trials(pg: &Postgres) -> Vec<Trial> {
    let m = module_path!();
    vec![
        trial(m, "key_rotation_reaches_jwks::sqlite", || {
            key_rotation_reaches_jwks(None, mcpgate_store::revocation::POLL_INTERVAL)
        }),
        pg.trial(m, "key_rotation_reaches_jwks", |s| {
            key_rotation_reaches_jwks(Some(s), Duration::from_secs(60))
        }),
        pg.trial(
            m,
            "login_limit_across_replicas",
            login_limit_across_replicas,
        ),
        pg.trial(
            m,
            "housekeeping_on_one_replica",
            housekeeping_on_one_replica,
        ),
    ]
}

async fn kids(as_: &TestAs) -> Vec<String> {
    let r = get(as_, "/oauth/jwks.json").await;
    r.json["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_owned())
        .collect()
}

/// `mcpgate keys rotate` (the admin action, as another process runs it on
/// the shared store) reaches the running server's JWKS and its verifier
/// within a second, through the change feed alone: the server's own
/// minute-long maintenance never runs here.
async fn key_rotation_reaches_jwks(store: Option<DynStore>, poll: Duration) {
    let as_ = TestAs::start_with(Options {
        store,
        ..Default::default()
    })
    .await;
    let (watch, first) = RevocationWatch::start(as_.store.clone(), poll).await;
    first.expect("first load");
    let follow = as_.state.follow_changes(watch.subscribe());
    let before = kids(&as_).await;
    let s = as_.state.settings();
    let kid = mcpgate_authz::admin::rotate_keys(
        &as_.admin(),
        &as_.master_key,
        s.signing_alg,
        s.key_grace_secs,
    )
    .await
    .expect("rotate");
    assert!(!before.contains(&kid));
    let start = Instant::now();
    loop {
        let now = kids(&as_).await;
        if now.first() == Some(&kid) {
            assert!(now.contains(&before[0]), "the old key stays in its grace");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "the rotation did not reach the JWKS within 1 s: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The JWKS and the in-process verifier (the gateway's guards) are one
    // `KeySet`, replaced together.
    follow.abort();
}

/// Two replicas of one fleet on one PostgreSQL schema.
async fn two_replicas(
    store: &DynStore,
    tweak: impl Fn(&mut mcpgate_authz::settings::AuthzSettings) + Clone + Send + 'static,
) -> (TestAs, TestAs) {
    let replica = || Replica::with_fleet(store.clone(), Fleet::fixed(2));
    let t = tweak.clone();
    let a = TestAs::start_with(Options {
        store: Some(store.clone()),
        tweak: Box::new(move |s| t(s)),
        replica: Some(replica()),
        ..Default::default()
    })
    .await;
    prepare(&a).await;
    let b = TestAs::start_with(Options {
        store: Some(store.clone()),
        tweak: Box::new(move |s| tweak(s)),
        master_key: Some(a.master_key.clone()),
        replica: Some(replica()),
        ..Default::default()
    })
    .await;
    (a, b)
}

async fn login(as_: &TestAs, b: &mut Browser, password: &str) -> u16 {
    login_page(as_, b, password).await.status
}

async fn login_page(as_: &TestAs, b: &mut Browser, password: &str) -> mcpgate_testkit::Page {
    let form_page = b.get(&as_.url("/login")).await;
    let form = pairs(&[
        ("csrf", &form_page.input("csrf").expect("login csrf")),
        ("return_to", ""),
        ("username", USER),
        ("password", password),
    ]);
    b.post_form(&as_.url("/login"), &form).await
}

/// Guesses spread over two replicas meet one per-account limit, not two.
async fn login_limit_across_replicas(store: DynStore) {
    let (a, b) = two_replicas(&store, |s| {
        s.login.per_account = 4;
        s.login.per_ip = 1000;
        s.login.window_secs = 3600;
    })
    .await;
    let (mut ba, mut bb) = (Browser::new(), Browser::new());
    for i in 0..4 {
        let status = if i % 2 == 0 {
            login(&a, &mut ba, "wrong guess").await
        } else {
            login(&b, &mut bb, "wrong guess").await
        };
        assert_eq!(status, 401, "guess {i}");
    }
    // Each refusal says when the fleet's bucket has a token again: one
    // refills every 3600 s / 4, so at most that, less what the trial took.
    for p in [
        login_page(&a, &mut ba, "wrong guess").await,
        login_page(&b, &mut bb, mcpgate_testkit::PASSWORD).await,
    ] {
        assert_eq!(p.status, 429);
        let retry_after = crate::authorize_attacks::retry_after(&p.headers);
        assert!(
            (450..=900).contains(&retry_after),
            "Retry-After {retry_after} is not the wait for one token (at most 900 s)"
        );
    }
}

/// Of two replicas, one runs a housekeeping round; when its lock's
/// connection dies (a replica killed), the other takes over.
async fn housekeeping_on_one_replica(store: DynStore) {
    let (a, b) = two_replicas(&store, |_| {}).await;
    let mut ha = a.state.housekeeper();
    let mut hb = b.state.housekeeper();
    assert!(
        a.state.housekeeping_round(&mut ha).await,
        "the first runs it"
    );
    assert!(!b.state.housekeeping_round(&mut hb).await, "not both");
    assert!(
        a.state.housekeeping_round(&mut ha).await,
        "the holder goes on"
    );
    let pid = ha.backend_pid().await.expect("the lock's connection");
    let url = std::env::var("MCPGATE_TEST_POSTGRES_URL").expect("PostgreSQL URL");
    let mut admin = sqlx::PgConnection::connect(&url).await.expect("connect");
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&mut admin)
        .await
        .expect("terminate");
    assert!(killed);
    let _ = admin.close().await;
    let start = Instant::now();
    while !b.state.housekeeping_round(&mut hb).await {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the lock did not pass to the other replica"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !a.state.housekeeping_round(&mut ha).await,
        "the old holder lost it"
    );
}
