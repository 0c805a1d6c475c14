//! DNS rebinding: the fetcher resolves once per request (and per redirect hop), vets the answer
//! and pins the connection to it; reqwest never resolves on its own, so a second, different
//! answer can never be used for that connection.

use std::sync::Arc;

use mcpgate_net::{FetchError, FetchPolicy};

use crate::support::{FakeResolver, Server, fetcher, json, redirect};

#[tokio::test]
async fn the_connection_uses_the_vetted_answer_only() {
    let server = Server::start(|_| json(r#"{"ok":true}"#)).await;
    let p = server.port();
    // First answer "public-looking" (loopback stands in for public under the override), every
    // later answer private.
    let resolver = Arc::new(
        FakeResolver::new().with_sequence("rebind.test", &[&["127.0.0.1"], &["10.0.0.1"]]),
    );
    let f = fetcher(FetchPolicy::loopback_dev(), &resolver);

    let r = f.get(&format!("http://rebind.test:{p}/doc")).await.unwrap();
    assert_eq!(r.status, 200);
    // Exactly one resolution for the whole request: nothing resolved the name a second time
    // (a second query would have returned 10.0.0.1).
    assert_eq!(resolver.queries("rebind.test"), 1);
    assert_eq!(server.accepts(), 1);

    // The next request resolves again, gets the private answer and is refused before connecting.
    let err = f
        .get(&format!("http://rebind.test:{p}/doc"))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Forbidden { reason } if reason.contains("10.0.0.0/8")));
    assert_eq!(resolver.queries("rebind.test"), 2);
    assert_eq!(server.accepts(), 1);
}

#[tokio::test]
async fn a_private_first_answer_is_refused_whatever_comes_next() {
    let server = Server::counting().await;
    let p = server.port();
    let resolver = Arc::new(
        FakeResolver::new().with_sequence("rebind.test", &[&["169.254.169.254"], &["127.0.0.1"]]),
    );
    let f = fetcher(FetchPolicy::loopback_dev(), &resolver);
    let err = f
        .get(&format!("http://rebind.test:{p}/"))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Forbidden { reason } if reason.contains("metadata")));
    assert_eq!(resolver.queries("rebind.test"), 1);
    assert_eq!(server.accepts(), 0);
}

#[tokio::test]
async fn rebinding_between_redirect_hops_is_caught() {
    // The server redirects to itself by name; the second resolution turns private.
    let server = Server::start(|r| {
        if r.path == "/start" {
            redirect(302, "/next")
        } else {
            json("{}")
        }
    })
    .await;
    let p = server.port();
    let resolver =
        Arc::new(FakeResolver::new().with_sequence("hop.test", &[&["127.0.0.1"], &["10.0.0.1"]]));
    let f = fetcher(FetchPolicy::loopback_dev(), &resolver);
    let err = f
        .get(&format!("http://hop.test:{p}/start"))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Forbidden { .. }));
    assert_eq!(resolver.queries("hop.test"), 2);
    assert_eq!(server.requests().len(), 1, "only the first hop was sent");
}

#[tokio::test]
async fn a_mixed_answer_is_refused_as_a_whole() {
    let server = Server::counting().await;
    let p = server.port();
    let resolver = Arc::new(FakeResolver::new().with("mix.test", &["127.0.0.1", "192.168.0.1"]));
    let f = fetcher(FetchPolicy::loopback_dev(), &resolver);
    let err = f.get(&format!("http://mix.test:{p}/")).await.unwrap_err();
    assert!(matches!(err, FetchError::Forbidden { reason } if reason.contains("192.168")));
    assert_eq!(server.accepts(), 0);
}
