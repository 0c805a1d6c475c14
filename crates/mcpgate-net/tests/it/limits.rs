//! Size and time limits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mcpgate_net::{FetchError, FetchPolicy};

use crate::support::{FakeResolver, Reply, Server, fetcher, json, redirect, response};

fn small(limit: usize) -> FetchPolicy {
    FetchPolicy {
        max_body_bytes: limit,
        ..FetchPolicy::loopback_dev()
    }
}

#[tokio::test]
async fn bodies_over_the_cap_are_refused() {
    let server = Server::start(|r| match r.path.as_str() {
        "/declared" => response(200, &[], &vec![b'x'; 2048]),
        "/exact" => response(200, &[], &vec![b'x'; 1024]),
        "/chunked" => Reply::Chunked {
            chunk_size: 100,
            chunks: 50,
        },
        "/chunked-small" => Reply::Chunked {
            chunk_size: 100,
            chunks: 10,
        },
        _ => response(404, &[], b""),
    })
    .await;
    let f = fetcher(small(1024), &Arc::new(FakeResolver::new()));
    assert_eq!(
        f.get(&server.url("/declared")).await.unwrap_err(),
        FetchError::TooLarge { limit: 1024 }
    );
    assert_eq!(f.get(&server.url("/exact")).await.unwrap().body.len(), 1024);
    assert_eq!(
        f.get(&server.url("/chunked")).await.unwrap_err(),
        FetchError::TooLarge { limit: 1024 }
    );
    assert_eq!(
        f.get(&server.url("/chunked-small"))
            .await
            .unwrap()
            .body
            .len(),
        1000
    );
}

#[tokio::test]
async fn the_default_cap_is_256_kib() {
    let server = Server::start(|r| match r.path.as_str() {
        "/big" => Reply::Chunked {
            chunk_size: 16 * 1024,
            chunks: 17,
        },
        _ => Reply::Chunked {
            chunk_size: 16 * 1024,
            chunks: 16,
        },
    })
    .await;
    let f = fetcher(FetchPolicy::loopback_dev(), &Arc::new(FakeResolver::new()));
    assert_eq!(
        f.get(&server.url("/big")).await.unwrap_err(),
        FetchError::TooLarge { limit: 256 * 1024 }
    );
    assert_eq!(
        f.get(&server.url("/fits")).await.unwrap().body.len(),
        256 * 1024
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let server = Server::start(|_| Reply::Hang).await;
    let policy = FetchPolicy {
        timeout: Duration::from_millis(300),
        ..FetchPolicy::loopback_dev()
    };
    let f = fetcher(policy, &Arc::new(FakeResolver::new()));
    let started = Instant::now();
    let err = f.get(&server.url("/")).await.unwrap_err();
    assert_eq!(err, FetchError::Timeout);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(server.accepts(), 1);
}

#[tokio::test]
async fn a_slow_resolver_times_out() {
    struct Slow;
    #[async_trait::async_trait]
    impl mcpgate_net::Resolve for Slow {
        async fn resolve(
            &self,
            _host: &str,
        ) -> Result<Vec<std::net::IpAddr>, mcpgate_net::ResolveError> {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(vec![])
        }
    }
    let policy = FetchPolicy {
        timeout: Duration::from_millis(200),
        ..FetchPolicy::default()
    };
    let f = mcpgate_net::SafeFetcher::with_resolver(policy, Arc::new(Slow));
    assert_eq!(
        f.get("https://slow.test/").await.unwrap_err(),
        FetchError::Timeout
    );
}

#[tokio::test]
async fn the_deadline_covers_the_whole_redirect_chain() {
    // Each hop answers in 150 ms: any single hop fits the 400 ms timeout, the chain does not.
    let server = Server::start(|r| {
        let n: u32 = r.path.trim_start_matches('/').parse().unwrap_or(0);
        let reply = if n == 0 {
            json("{}")
        } else {
            redirect(302, &format!("/{}", n - 1))
        };
        Reply::Delayed(Duration::from_millis(150), Box::new(reply))
    })
    .await;
    let policy = FetchPolicy {
        timeout: Duration::from_millis(400),
        ..FetchPolicy::loopback_dev()
    };
    let f = fetcher(policy, &Arc::new(FakeResolver::new()));
    assert_eq!(f.get(&server.url("/1")).await.unwrap().status, 200);
    assert_eq!(
        f.get(&server.url("/3")).await.unwrap_err(),
        FetchError::Timeout
    );
}

#[tokio::test]
async fn headers_then_a_stalled_body_time_out() {
    let server = Server::start(|r| {
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial".to_vec();
        if r.path == "/stall" {
            Reply::Stall(head)
        } else {
            Reply::Raw(head) // then closes: a truncated body
        }
    })
    .await;
    let policy = FetchPolicy {
        timeout: Duration::from_millis(300),
        ..FetchPolicy::loopback_dev()
    };
    let f = fetcher(policy, &Arc::new(FakeResolver::new()));
    assert_eq!(
        f.get(&server.url("/stall")).await.unwrap_err(),
        FetchError::Timeout
    );
    assert_eq!(
        f.get(&server.url("/truncated")).await.unwrap_err(),
        FetchError::Http("could not read the response body")
    );
}
