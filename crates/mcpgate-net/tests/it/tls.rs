//! HTTPS through the pinned connection: a TLS server on 127.0.0.1 with a certificate for
//! `public.test`, reached by name (the fake resolver maps it to 127.0.0.1). Certificate and
//! host name verification still apply to the URL's host, not to the pinned address.

use std::sync::Arc;

use mcpgate_net::{FetchError, FetchPolicy};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::support::{FakeResolver, Server, fetcher, json};

const TLS_FAILED: FetchError = FetchError::Http("TLS handshake or certificate verification failed");

async fn tls_server() -> (Server, CertificateDer<'static>) {
    let ck = rcgen::generate_simple_self_signed(vec!["public.test".to_owned()]).unwrap();
    let cert = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let server = Server::start_with(Arc::new(|_| json(r#"{"tls":true}"#)), Some(acceptor)).await;
    (server, cert)
}

fn resolver() -> Arc<FakeResolver> {
    Arc::new(
        FakeResolver::new()
            .with("public.test", &["127.0.0.1"])
            .with("other.test", &["127.0.0.1"]),
    )
}

#[tokio::test]
async fn https_to_a_pinned_name_verifies_the_certificate() {
    let (server, cert) = tls_server().await;
    let p = server.port();
    let policy = FetchPolicy {
        extra_root_certs: vec![cert],
        ..FetchPolicy::loopback_dev()
    };
    let resolver = resolver();
    let f = fetcher(policy, &resolver);
    let r = f
        .get(&format!("https://public.test:{p}/doc"))
        .await
        .unwrap();
    assert_eq!(r.json::<serde_json::Value>().unwrap()["tls"], true);
    assert_eq!(resolver.queries("public.test"), 1);

    // Same address, wrong name: the certificate does not match.
    let err = f
        .get(&format!("https://other.test:{p}/doc"))
        .await
        .unwrap_err();
    assert_eq!(err, TLS_FAILED);
    // An IP-literal URL does not match the name in the certificate either.
    let err = f.get(&format!("https://127.0.0.1:{p}/")).await.unwrap_err();
    assert_eq!(err, TLS_FAILED);
}

#[tokio::test]
async fn untrusted_certificates_are_refused() {
    let (server, _cert) = tls_server().await;
    let f = fetcher(FetchPolicy::loopback_dev(), &resolver());
    let err = f
        .get(&format!("https://public.test:{}/", server.port()))
        .await
        .unwrap_err();
    assert_eq!(err, TLS_FAILED);
}

#[tokio::test]
async fn without_the_override_the_loopback_tls_server_is_never_contacted() {
    let (server, cert) = tls_server().await;
    let policy = FetchPolicy {
        extra_root_certs: vec![cert],
        ..FetchPolicy::default()
    };
    let f = fetcher(policy, &resolver());
    let err = f
        .get(&format!("https://public.test:{}/", server.port()))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Forbidden { reason } if reason.contains("loopback")));
    assert_eq!(server.accepts(), 0);
}
