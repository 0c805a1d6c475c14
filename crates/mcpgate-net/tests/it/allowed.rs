//! The allowed paths, exercised only through the loopback development override (tests never
//! contact public addresses).

use std::sync::Arc;

use mcpgate_net::{FetchError, FetchPolicy};

use crate::support::{FakeResolver, Server, fetcher, json, response};

#[tokio::test]
async fn loopback_literals_and_names_are_reachable_with_the_override() {
    let server = Server::start(|r| json(&format!(r#"{{"path":"{}"}}"#, r.path))).await;
    let p = server.port();
    let resolver = Arc::new(FakeResolver::new().with("public.test", &["127.0.0.1"]));
    let f = fetcher(FetchPolicy::loopback_dev(), &resolver);
    for url in [
        format!("http://127.0.0.1:{p}/a"),
        format!("http://localhost:{p}/a"),
        format!("http://LOCALHOST.:{p}/a"),
        format!("http://2130706433:{p}/a"),
        format!("http://127.1:{p}/a"),
        format!("http://[::ffff:127.0.0.1]:{p}/a"),
        format!("http://public.test:{p}/a"),
        format!("HTTP://PUBLIC.TEST:{p}/a#frag"),
    ] {
        let r = f.get(&url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(r.status, 200, "{url}");
        let v: serde_json::Value = r.json().unwrap();
        assert_eq!(v["path"], "/a", "{url}");
    }
    assert_eq!(resolver.queries("public.test"), 2);
    assert_eq!(server.requests().len(), 8);
}

#[tokio::test]
async fn requests_carry_expected_headers_and_no_cookies() {
    let server = Server::start(|_| {
        response(
            200,
            &[
                ("set-cookie", "sid=1; Path=/"),
                ("cache-control", "max-age=60"),
            ],
            b"{}",
        )
    })
    .await;
    let resolver = Arc::new(FakeResolver::new());
    let f = fetcher(FetchPolicy::loopback_dev(), &resolver);
    let first = f.get(&server.url("/one")).await.unwrap();
    assert_eq!(first.cache_max_age(), Some(60));
    assert_eq!(first.final_url, server.url("/one"));
    f.get(&server.url("/two")).await.unwrap();
    let reqs = server.requests();
    assert_eq!(reqs[1].header("cookie"), None, "cookies must not be kept");
    assert_eq!(reqs[0].header("accept"), Some("application/json"));
    assert!(
        reqs[0]
            .header("user-agent")
            .unwrap()
            .starts_with("mcpgate/")
    );
    assert_eq!(reqs[0].header("authorization"), None);
}

#[tokio::test]
async fn non_success_statuses_are_returned() {
    let server = Server::start(|_| response(404, &[], b"nope")).await;
    let f = fetcher(FetchPolicy::loopback_dev(), &Arc::new(FakeResolver::new()));
    let r = f.get(&server.url("/missing")).await.unwrap();
    assert_eq!(r.status, 404);
    assert!(!r.is_success());
    assert_eq!(&r.body[..], b"nope");
}

#[tokio::test]
async fn without_the_override_loopback_servers_are_refused() {
    let server = Server::counting().await;
    let resolver = Arc::new(FakeResolver::new().with("public.test", &["127.0.0.1"]));
    let f = fetcher(FetchPolicy::default(), &resolver);
    let p = server.port();
    assert_eq!(
        f.get(&server.url("/")).await.unwrap_err(),
        FetchError::InsecureScheme
    );
    assert!(matches!(
        f.get(&format!("https://public.test:{p}/")).await,
        Err(FetchError::Forbidden { .. })
    ));
    assert_eq!(server.accepts(), 0);
}

#[tokio::test]
async fn a_refused_connection_is_a_transport_error() {
    // Bind and drop to get a port nobody listens on (127.0.0.1 only).
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let f = fetcher(FetchPolicy::loopback_dev(), &Arc::new(FakeResolver::new()));
    let err = f
        .get(&format!("http://127.0.0.1:{port}/"))
        .await
        .unwrap_err();
    assert_eq!(err, FetchError::Http("could not connect"));
}
