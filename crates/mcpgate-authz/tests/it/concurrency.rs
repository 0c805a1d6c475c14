//! Races over HTTP, on SQLite and (with `MCPGATE_TEST_POSTGRES_URL`) on
//! PostgreSQL: 20 parallel redemptions of one code give exactly one token
//! response. 20 parallel refreshes of one refresh token all succeed inside
//! the reuse grace interval (one rotation, siblings for the rest) and the
//! family lives on; with the grace off, exactly one succeeds and the reuse
//! that the race amounts to revokes the whole family.

use libtest_mimic::Trial;
use mcpgate_store::DynStore;
use mcpgate_testkit::{Browser, Options, TestAs};
use tokio::task::JoinSet;

use crate::common::*;
use crate::pg::Postgres;

const PARALLEL: usize = 20;

pub fn trials(pg: &Postgres) -> Vec<Trial> {
    let m = module_path!();
    vec![
        trial(m, "code_redeemed_once::sqlite", || code_redeemed_once(None)),
        pg.trial(m, "code_redeemed_once", |s| code_redeemed_once(Some(s))),
        trial(m, "refresh_rotated_once::sqlite", || {
            refresh_rotated_once(None)
        }),
        pg.trial(m, "refresh_rotated_once", |s| refresh_rotated_once(Some(s))),
        trial(m, "refresh_race_within_grace::sqlite", || {
            refresh_race_within_grace(None)
        }),
        pg.trial(m, "refresh_race_within_grace", |s| {
            refresh_race_within_grace(Some(s))
        }),
        trial(m, "code_race_revokes_the_winner::sqlite", || {
            code_race_revokes_the_winner(None)
        }),
        pg.trial(m, "code_race_revokes_the_winner", |s| {
            code_race_revokes_the_winner(Some(s))
        }),
    ]
}

async fn server(store: Option<DynStore>) -> TestAs {
    server_with_grace(store, 5).await
}

async fn server_with_grace(store: Option<DynStore>, grace: i64) -> TestAs {
    let as_ = TestAs::start_with(Options {
        store,
        tweak: Box::new(move |s| s.refresh_reuse_grace_secs = grace),
        ..Default::default()
    })
    .await;
    prepare(&as_).await;
    as_
}

/// Sends `form` to the token endpoint `PARALLEL` times at once; returns
/// every (status, body).
async fn race(as_: &TestAs, form: Vec<(String, String)>) -> Vec<Resp> {
    let url = as_.url("/oauth/token");
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form.iter())
        .finish();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(PARALLEL));
    let mut set = JoinSet::new();
    for _ in 0..PARALLEL {
        let (url, body, barrier) = (url.clone(), body.clone(), barrier.clone());
        // One client (connection pool) per task, so the requests really overlap.
        let client = http();
        set.spawn(async move {
            barrier.wait().await;
            let r = client
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .expect("POST");
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            let text = r.text().await.unwrap_or_default();
            let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
            Resp {
                status,
                headers,
                json,
                text,
            }
        });
    }
    set.join_all().await
}

/// Exactly one success; every other answer is `invalid_grant` (never a
/// 500 from a lost database race). Returns the success.
#[track_caller]
fn exactly_one_success(results: Vec<Resp>) -> Resp {
    let mut ok: Vec<Resp> = Vec::new();
    for r in results {
        if r.status == 200 {
            ok.push(r);
        } else {
            r.assert_oauth_error(400, "invalid_grant");
        }
    }
    assert_eq!(
        ok.len(),
        1,
        "exactly one of {PARALLEL} parallel requests succeeds"
    );
    ok.pop().expect("one success")
}

async fn code_redeemed_once(store: Option<DynStore>) {
    let as_ = server(store).await;
    let req = app_request(&as_);
    let code = authorize_code(&as_, &mut Browser::new(), &req, USER).await;
    let form = req.token_form(&code);
    let winner = exactly_one_success(race(&as_, form).await);
    verify_access_token(&as_, &winner.str("access_token"), &as_.resource).await;
}

/// A code redeemed in parallel is a replay: OAuth 2.1 §4.1.3 wants what
/// the first use issued revoked, even when the replays arrive while the
/// winner is still being served (between redeeming the code and storing its
/// refresh token). The winner keeps its short-lived access token; no
/// refresh token of that grant may stay usable.
async fn code_race_revokes_the_winner(store: Option<DynStore>) {
    let as_ = server(store).await;
    let rs_secret = add_resource_server(&as_).await;
    // Several rounds, since the interleaving differs from run to run.
    for _ in 0..5 {
        let req = app_request(&as_);
        let code = authorize_code(&as_, &mut Browser::new(), &req, USER).await;
        let form = req.token_form(&code);
        let winner = exactly_one_success(race(&as_, form).await);
        if let Some(rt) = winner.json["refresh_token"].as_str() {
            assert_eq!(
                introspect(&as_, &rs_secret, rt).await.json["active"],
                false,
                "the winner's refresh token is revoked"
            );
            refresh(&as_, rt, Auth::Public("app"))
                .await
                .assert_oauth_error(400, "invalid_grant");
        }
        verify_access_token(&as_, &winner.str("access_token"), &as_.resource).await;
    }
    // No live family is left for the user.
    let user = as_.store.get_user_by_username(USER).await.unwrap();
    let live = as_
        .store
        .list_families(Some(&user.id), mcpgate_jose::Clock::now(&as_.clock))
        .await
        .unwrap();
    assert!(
        live.is_empty(),
        "live families after replays: {}",
        live.len()
    );
}

/// With the reuse grace off (`refresh_reuse_grace_secs = 0`).
async fn refresh_rotated_once(store: Option<DynStore>) {
    let as_ = server_with_grace(store, 0).await;
    let t = tokens_for(&as_, &app_request(&as_), Auth::Public("app")).await;
    let form = pairs(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", &t.refresh),
        ("client_id", "app"),
    ]);
    let winner = exactly_one_success(race(&as_, form).await);
    let successor = winner.str("refresh_token");
    assert_ne!(successor, t.refresh);
    // The race was reuse: the family is revoked, successor included.
    refresh(&as_, &successor, Auth::Public("app"))
        .await
        .assert_oauth_error(400, "invalid_grant");
    refresh(&as_, &t.refresh, Auth::Public("app"))
        .await
        .assert_oauth_error(400, "invalid_grant");
}

/// Inside the grace interval: every parallel refresh succeeds, each with a
/// refresh token of its own, and the family survives: each of them works
/// later. Presenting the original after the interval is reuse again.
async fn refresh_race_within_grace(store: Option<DynStore>) {
    let as_ = server(store).await;
    let t = tokens_for(&as_, &app_request(&as_), Auth::Public("app")).await;
    let form = pairs(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", &t.refresh),
        ("client_id", "app"),
    ]);
    let all = race(&as_, form).await;
    assert!(
        all.iter().all(|r| r.status == 200),
        "{:?}",
        all.iter().map(|r| &r.text).collect::<Vec<_>>()
    );
    let mut successors: Vec<String> = all.iter().map(|r| r.str("refresh_token")).collect();
    successors.sort();
    successors.dedup();
    assert_eq!(successors.len(), PARALLEL, "each gets a token of its own");
    as_.clock.advance(6);
    for s in &successors[..3] {
        let r = refresh(&as_, s, Auth::Public("app")).await;
        assert_eq!(r.status, 200, "a sibling works: {}", r.text);
    }
    // The original, 6 s after its rotation: reuse; the family is revoked.
    refresh(&as_, &t.refresh, Auth::Public("app"))
        .await
        .assert_oauth_error(400, "invalid_grant");
    refresh(&as_, &successors[5], Auth::Public("app"))
        .await
        .assert_oauth_error(400, "invalid_grant");
}
