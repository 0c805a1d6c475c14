//! Redirects: followed manually for GET only, each hop re-vetted from scratch, at most
//! `max_redirects`. Targets outside 127.0.0.1 are refused before any traffic is sent.

use std::sync::Arc;

use mcpgate_net::{FetchError, FetchPolicy};

use crate::support::{FakeResolver, Server, fetcher, json, redirect, response};

fn resolver() -> Arc<FakeResolver> {
    Arc::new(
        FakeResolver::new()
            .with("public.test", &["127.0.0.1"])
            .with("internal.test", &["10.0.0.1"])
            .with("elsewhere.test", &["93.184.216.34"]),
    )
}

/// A server whose `/r/<n>` redirects to `/r/<n-1>` and `/r/0` answers 200; `/to?<url>` redirects
/// to `<url>` with 302.
async fn redirector() -> Server {
    Server::start(|r| {
        if let Some(n) = r.path.strip_prefix("/r/") {
            let n: u32 = n.parse().unwrap();
            if n == 0 {
                json(r#"{"done":true}"#)
            } else {
                redirect(302, &format!("/r/{}", n - 1))
            }
        } else if let Some(target) = r.path.strip_prefix("/to?") {
            redirect(302, target)
        } else if let Some(rest) = r.path.strip_prefix("/status/") {
            let (status, target) = rest.split_once('?').unwrap();
            redirect(status.parse().unwrap(), target)
        } else {
            response(302, &[], b"no location")
        }
    })
    .await
}

#[tokio::test]
async fn redirects_to_forbidden_destinations_are_refused_before_connecting() {
    let server = redirector().await;
    let p = server.port();
    let f = fetcher(FetchPolicy::loopback_dev(), &resolver());
    let cases: Vec<(String, &str)> = vec![
        ("http://169.254.169.254/latest/meta-data".into(), "metadata"),
        ("http://10.0.0.1/".into(), "10.0.0.0/8"),
        ("http://internal.test/".into(), "10.0.0.0/8"),
        ("http://[::ffff:169.254.169.254]/".into(), "metadata"),
        ("http://0x0a000001/".into(), "10.0.0.0/8"),
        ("https://192.168.0.1/".into(), "192.168.0.0/16"),
        ("http://[fd00:ec2::254]/".into(), "unique local"),
        (
            "http://0.0.0.0:{p}/".replace("{p}", &p.to_string()),
            "this network",
        ),
    ];
    for (target, want) in &cases {
        let url = format!("http://public.test:{p}/to?{target}");
        let err = f.get(&url).await.unwrap_err();
        assert!(
            matches!(&err, FetchError::Forbidden { reason } if reason.contains(want)),
            "{target}: {err:?}"
        );
    }
    assert_eq!(
        server.requests().len(),
        cases.len(),
        "only first hops were served"
    );
    assert_eq!(server.accepts(), cases.len());
}

#[tokio::test]
async fn redirects_that_break_scheme_or_userinfo_rules_are_refused() {
    let server = redirector().await;
    let p = server.port();
    let f = fetcher(FetchPolicy::loopback_dev(), &resolver());
    let cases = [
        (
            "http://elsewhere.test/".to_owned(),
            FetchError::InsecureScheme,
        ),
        ("file:///etc/passwd".to_owned(), FetchError::InsecureScheme),
        ("gopher://127.0.0.1/".to_owned(), FetchError::InsecureScheme),
        (
            format!("http://user:pw@public.test:{p}/r/0"),
            FetchError::Userinfo,
        ),
    ];
    for (target, want) in cases {
        let err = f
            .get(&format!("http://public.test:{p}/to?{target}"))
            .await
            .unwrap_err();
        assert_eq!(err, want, "{target}");
    }
    assert_eq!(server.requests().len(), 4);
}

#[tokio::test]
async fn the_redirect_limit_is_enforced() {
    let server = redirector().await;
    let p = server.port();
    let f = fetcher(FetchPolicy::loopback_dev(), &resolver());
    // Three redirects: allowed.
    let r = f.get(&format!("http://public.test:{p}/r/3")).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.final_url, format!("http://public.test:{p}/r/0"));
    assert_eq!(server.requests().len(), 4);
    // Four redirects: refused after the fourth redirect response, without a fifth request.
    let err = f
        .get(&format!("http://public.test:{p}/r/4"))
        .await
        .unwrap_err();
    assert_eq!(err, FetchError::TooManyRedirects { max: 3 });
    assert_eq!(server.requests().len(), 8);

    let none = fetcher(
        FetchPolicy {
            max_redirects: 0,
            ..FetchPolicy::loopback_dev()
        },
        &resolver(),
    );
    let err = none.get(&server.url("/r/1")).await.unwrap_err();
    assert_eq!(err, FetchError::TooManyRedirects { max: 0 });
}

#[tokio::test]
async fn every_redirect_status_is_followed_and_others_are_returned() {
    let server = redirector().await;
    let p = server.port();
    let f = fetcher(FetchPolicy::loopback_dev(), &resolver());
    for status in [301, 302, 303, 307, 308] {
        let url = format!("http://public.test:{p}/status/{status}?/r/0");
        let r = f.get(&url).await.unwrap();
        assert_eq!(r.status, 200, "{status}");
    }
    // 300 and 304 are not followed; a 302 without Location is returned as is.
    let r = f
        .get(&format!("http://public.test:{p}/status/300?/r/0"))
        .await
        .unwrap();
    assert_eq!(r.status, 300);
    let r = f
        .get(&format!("http://public.test:{p}/plain"))
        .await
        .unwrap();
    assert_eq!(r.status, 302);
    assert_eq!(&r.body[..], b"no location");
}

#[tokio::test]
async fn redirect_to_another_vetted_host_is_followed_and_revetted() {
    let target = Server::start(|_| json(r#"{"hop":2}"#)).await;
    let server = redirector().await;
    let resolver = resolver();
    let f = fetcher(FetchPolicy::loopback_dev(), &resolver);
    let url = format!(
        "http://public.test:{}/to?http://localhost:{}/doc",
        server.port(),
        target.port()
    );
    let r = f.get(&url).await.unwrap();
    assert_eq!(r.json::<serde_json::Value>().unwrap()["hop"], 2);
    assert_eq!(
        r.final_url,
        format!("http://localhost:{}/doc", target.port())
    );
    assert_eq!(resolver.queries("public.test"), 1);
    assert_eq!(target.requests().len(), 1);
}
