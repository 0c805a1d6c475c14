//! The HTTP server itself: clients that trickle their headers lose the
//! connection, and SIGTERM lets in-flight requests finish while refusing
//! new connections.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::Env;

/// Reads until the server closes the connection; returns what it sent.
async fn read_to_close(s: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut buf = Vec::new();
    match tokio::time::timeout(limit, s.read_to_end(&mut buf)).await {
        Ok(_) => Some(String::from_utf8_lossy(&buf).into_owned()),
        Err(_) => None,
    }
}

#[tokio::test]
async fn slow_headers_lose_the_connection() {
    let env = Env::new();
    let srv = env.serve().await;
    let addr = format!("127.0.0.1:{}", srv.port);
    let start = Instant::now();
    // One client sends half a request head and stalls; another sends nothing.
    let mut partial = TcpStream::connect(&addr).await.expect("connect");
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let mut silent = TcpStream::connect(&addr).await.expect("connect");
    let (a, b) = tokio::join!(
        read_to_close(&mut partial, Duration::from_secs(25)),
        read_to_close(&mut silent, Duration::from_secs(25))
    );
    assert!(
        a.is_some(),
        "a client trickling its headers kept the connection for 25 s"
    );
    assert!(b.is_some(), "a silent client kept the connection for 25 s");
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "closed only after {:?}",
        start.elapsed()
    );
    // Well-behaved clients are unaffected. A fresh client: the server's
    // header timeout has also closed the idle connection that `srv.http` pooled
    // while waiting for start-up, and reusing it would race that close.
    let fresh = reqwest::Client::builder().no_proxy().build().unwrap();
    assert_eq!(
        fresh
            .get(srv.url("/healthz"))
            .send()
            .await
            .expect("GET")
            .status(),
        200
    );
    srv.stop().await;
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests() {
    let env = Env::new();
    let mut srv = env.serve().await;
    let addr = format!("127.0.0.1:{}", srv.port);
    // A token request whose body is still on its way when SIGTERM arrives.
    let body = "grant_type=nonsense";
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    let head = format!(
        "POST /oauth/token HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.expect("write");
    s.write_all(&body.as_bytes()[..11]).await.expect("write");
    tokio::time::sleep(Duration::from_millis(300)).await;
    srv.terminate();
    // The listener closes as soon as the signal is handled.
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(&addr).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "a draining server still accepts connections"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(srv.is_running(), "the server quit with a request in flight");
    s.write_all(&body.as_bytes()[11..])
        .await
        .expect("write the rest");
    let resp = read_to_close(&mut s, Duration::from_secs(10))
        .await
        .expect("the in-flight request was answered and the connection closed");
    assert!(
        resp.starts_with("HTTP/1.1 400") || resp.starts_with("HTTP/1.1 401"),
        "{resp}"
    );
    assert!(resp.contains("\"error\""), "{resp}");
    srv.wait_stopped().await;
}
