//! [`SafeFetcher`]: the one outbound HTTP client for the authorization server (CIMD documents,
//! draft-ietf-oauth-client-id-metadata-document §6 "SSRF Attacks") and the MCP client (PRM,
//! AS metadata, JWKS, token and registration endpoints; MCP Security Best Practices "SSRF").
//!
//! Every request and every redirect hop is vetted by [`crate::vet`] and then sent by a reqwest
//! client built for that hop alone, whose only DNS answer is the vetted address set
//! ([`PinnedDns`]): reqwest never resolves anything itself, so a second (rebinding) answer can
//! never be used. IP-literal hosts are connected to directly after classification. The clients
//! have automatic redirects off, ignore proxy environment variables, keep no cookies and no idle
//! connections, and share one TLS configuration (platform roots via rustls-platform-verifier,
//! aws-lc-rs) built on first use.
//!
//! Redirects (301, 302, 303, 307, 308) are followed for `GET` only, at most
//! [`FetchPolicy::max_redirects`] times, each target re-vetted from scratch. `POST` requests never
//! follow redirects: the 3xx response is returned as is, so a token or registration request is
//! never replayed to a second destination.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use bytes::BytesMut;
use http::header::{ACCEPT, LOCATION};
use reqwest::dns::{Addrs, Name, Resolving};
use url::Url;

use crate::error::FetchError;
use crate::policy::FetchPolicy;
use crate::resolve::{Resolve, SystemResolver};
use crate::response::FetchResponse;
use crate::vet::{Vetted, vet_url};

/// The SSRF-safe fetcher. Cloning is cheap (one `Arc`).
#[derive(Clone)]
pub struct SafeFetcher {
    inner: Arc<Inner>,
}

struct Inner {
    policy: FetchPolicy,
    resolver: Arc<dyn Resolve>,
    tls: OnceLock<Result<rustls::ClientConfig, &'static str>>,
}

impl std::fmt::Debug for SafeFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafeFetcher")
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

enum Body<'a> {
    Get,
    /// GET with `Authorization: Bearer` (a userinfo endpoint). Never follows
    /// redirects, so the token cannot be carried to another host.
    GetBearer(&'a str),
    Form {
        form: &'a [(&'a str, &'a str)],
        basic_auth: Option<(&'a str, &'a str)>,
        /// A DPoP proof for this request (RFC 9449 §5), sent as the `DPoP` header.
        dpop: Option<&'a str>,
    },
    Json(&'a serde_json::Value),
}

enum Hop {
    Done(FetchResponse),
    Redirect(Url),
}

impl SafeFetcher {
    /// A fetcher using the system DNS configuration ([`SystemResolver`]).
    pub fn new(policy: FetchPolicy) -> Self {
        Self::with_resolver(policy, Arc::new(SystemResolver::new()))
    }

    /// A fetcher using `resolver` for every host name.
    pub fn with_resolver(policy: FetchPolicy, resolver: Arc<dyn Resolve>) -> Self {
        Self {
            inner: Arc::new(Inner {
                policy,
                resolver,
                tls: OnceLock::new(),
            }),
        }
    }

    /// The policy this fetcher applies.
    pub fn policy(&self) -> &FetchPolicy {
        &self.inner.policy
    }

    /// Vets `url` exactly as a request would, without connecting: useful to reject a URL at
    /// configuration or registration time.
    pub async fn vet(&self, url: &str) -> Result<Vetted, FetchError> {
        crate::vet::vet(url, &self.inner.policy, self.inner.resolver.as_ref()).await
    }

    /// `GET url` with `Accept: application/json`, following up to
    /// [`FetchPolicy::max_redirects`] vetted redirects. Any status is returned as a response.
    pub async fn get(&self, url: &str) -> Result<FetchResponse, FetchError> {
        self.execute(url, Body::Get).await
    }

    /// `GET url` with `Authorization: Bearer <token>` (RFC 6750 §2.1), e.g. an
    /// OAuth 2.0 userinfo endpoint. Redirects are not followed: a 3xx is
    /// returned as is, so the token never reaches a host it was not meant for.
    pub async fn get_with_bearer(
        &self,
        url: &str,
        token: &str,
    ) -> Result<FetchResponse, FetchError> {
        self.execute(url, Body::GetBearer(token)).await
    }

    /// `POST url` with an `application/x-www-form-urlencoded` body (token, revocation,
    /// introspection requests). With `basic_auth`, sends `Authorization: Basic` with the client
    /// id and secret form-urlencoded first, as RFC 6749 §2.3.1 requires. Redirects are not
    /// followed: a 3xx response is returned as is.
    pub async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
        basic_auth: Option<(&str, &str)>,
    ) -> Result<FetchResponse, FetchError> {
        self.post_form_with_proof(url, form, basic_auth, None).await
    }

    /// [`SafeFetcher::post_form`] with a DPoP proof in the `DPoP` header (RFC 9449 §5), for a
    /// token request that asks for a sender-constrained token.
    pub async fn post_form_with_proof(
        &self,
        url: &str,
        form: &[(&str, &str)],
        basic_auth: Option<(&str, &str)>,
        dpop: Option<&str>,
    ) -> Result<FetchResponse, FetchError> {
        let body = Body::Form {
            form,
            basic_auth,
            dpop,
        };
        self.execute(url, body).await
    }

    /// `POST url` with a JSON body (dynamic client registration). Redirects are not followed:
    /// a 3xx response is returned as is.
    pub async fn post_json(
        &self,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<FetchResponse, FetchError> {
        self.execute(url, Body::Json(body)).await
    }

    /// Runs the request and its redirects under one overall deadline ([`FetchPolicy::timeout`]),
    /// so a chain of slow hops cannot hold the caller longer than a single request would.
    async fn execute(&self, raw: &str, body: Body<'_>) -> Result<FetchResponse, FetchError> {
        let policy = &self.inner.policy;
        let url = Url::parse(raw).map_err(|_| FetchError::BadUrl("not an absolute URL"))?;
        tokio::time::timeout(policy.timeout, self.follow(url, &body))
            .await
            .map_err(|_| FetchError::Timeout)?
    }

    async fn follow(&self, mut url: Url, body: &Body<'_>) -> Result<FetchResponse, FetchError> {
        let max = self.inner.policy.max_redirects;
        let mut followed = 0usize;
        loop {
            match self.hop(url, body).await? {
                Hop::Done(response) => return Ok(response),
                Hop::Redirect(_) if followed >= max => {
                    return Err(FetchError::TooManyRedirects { max });
                }
                Hop::Redirect(next) => {
                    followed += 1;
                    url = next;
                }
            }
        }
    }

    /// One request: vet, pin, send, and either read the body or hand back a redirect target.
    async fn hop(&self, url: Url, body: &Body<'_>) -> Result<Hop, FetchError> {
        let policy = &self.inner.policy;
        let vetted = vet_url(url, policy, self.inner.resolver.as_ref()).await?;
        let client = self.client_for(&vetted)?;
        let target = vetted.url().clone();

        let request = match body {
            Body::Get => client.get(target.clone()),
            Body::GetBearer(token) => client.get(target.clone()).bearer_auth(token),
            Body::Form {
                form,
                basic_auth,
                dpop,
            } => {
                let mut request = client.post(target.clone()).form(form);
                if let Some(proof) = dpop {
                    request = request.header("DPoP", *proof);
                }
                match basic_auth {
                    Some((id, secret)) => {
                        request.basic_auth(form_encode(id), Some(form_encode(secret)))
                    }
                    None => request,
                }
            }
            Body::Json(value) => client.post(target.clone()).json(value),
        };
        let response = request
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| FetchError::from_reqwest(&e))?;
        let status = response.status();
        tracing::debug!(
            host = target.host_str(),
            status = status.as_u16(),
            "outbound HTTP response"
        );

        // Only GET follows redirects; a 3xx without Location is returned as a response.
        let location = match body {
            Body::Get if is_followed_redirect(status.as_u16()) => response.headers().get(LOCATION),
            _ => None,
        };
        if let Some(location) = location {
            let location = location
                .to_str()
                .map_err(|_| FetchError::BadUrl("redirect Location is not valid"))?;
            let next = target
                .join(location)
                .map_err(|_| FetchError::BadUrl("redirect Location is not a valid URL"))?;
            return Ok(Hop::Redirect(next));
        }

        let headers = response.headers().clone();
        let body = read_capped(response, policy.max_body_bytes).await?;
        Ok(Hop::Done(FetchResponse {
            status: status.as_u16(),
            headers,
            body,
            final_url: target.to_string(),
        }))
    }

    /// A reqwest client for one vetted hop: its DNS can only answer the vetted addresses.
    fn client_for(&self, vetted: &Vetted) -> Result<reqwest::Client, FetchError> {
        let policy = &self.inner.policy;
        let tls = self.tls_config()?.clone();
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .dns_resolver(PinnedDns {
                name: vetted.name().map(str::to_owned),
                addrs: vetted.addrs().to_vec(),
            })
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(policy.timeout)
            .connect_timeout(policy.connect_timeout)
            .pool_max_idle_per_host(0)
            .user_agent(policy.user_agent.as_str())
            .build()
            .map_err(|e| FetchError::from_reqwest(&e))
    }

    fn tls_config(&self) -> Result<&rustls::ClientConfig, FetchError> {
        self.inner
            .tls
            .get_or_init(|| build_tls(&self.inner.policy))
            .as_ref()
            .map_err(|what| FetchError::Http(what))
    }
}

/// The redirect statuses that carry a `Location` to follow.
fn is_followed_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// `application/x-www-form-urlencoded` encoding of one value (RFC 6749 §2.3.1, Appendix B).
fn form_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// Reads the body, refusing early on a `Content-Length` over `limit` and stopping as soon as the
/// streamed bytes exceed it.
async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<bytes::Bytes, FetchError> {
    let declared = response.content_length();
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(FetchError::TooLarge { limit });
    }
    let capacity = declared.map_or(8 * 1024, |len| len as usize).min(limit);
    let mut buf = BytesMut::with_capacity(capacity);
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| FetchError::from_reqwest(&e))?
    {
        if buf.len() + chunk.len() > limit {
            return Err(FetchError::TooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// The TLS configuration shared by every hop: aws-lc-rs, platform roots plus
/// [`FetchPolicy::extra_root_certs`]. If the platform has no usable roots, only the extra roots
/// are trusted (with none, every certificate is rejected): failing closed, with a warning.
fn build_tls(policy: &FetchPolicy) -> Result<rustls::ClientConfig, &'static str> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|_| "TLS configuration failed")?;
    let extra = policy.extra_root_certs.iter().cloned();
    match rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider) {
        Ok(verifier) => Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth()),
        Err(err) => {
            tracing::warn!(error = %err, "platform TLS roots unavailable; trusting only configured extra roots");
            let mut roots = rustls::RootCertStore::empty();
            roots.add_parsable_certificates(policy.extra_root_certs.iter().cloned());
            Ok(builder.with_root_certificates(roots).with_no_client_auth())
        }
    }
}

/// reqwest's only resolver for one hop: answers the vetted name with the vetted addresses and
/// refuses every other name, so reqwest can never perform an independent resolution.
struct PinnedDns {
    name: Option<String>,
    addrs: Vec<SocketAddr>,
}

impl reqwest::dns::Resolve for PinnedDns {
    fn resolve(&self, name: Name) -> Resolving {
        let answer = match &self.name {
            Some(pinned) if pinned.eq_ignore_ascii_case(name.as_str()) => Ok(self.addrs.clone()),
            _ => Err(name.as_str().to_owned()),
        };
        Box::pin(async move {
            match answer {
                Ok(addrs) => Ok(Box::new(addrs.into_iter()) as Addrs),
                Err(name) => {
                    tracing::warn!(host = name, "refused an unvetted DNS lookup");
                    Err("host name was not vetted".into())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::dns::Resolve as _;

    async fn ask(dns: &PinnedDns, name: &str) -> Result<Vec<SocketAddr>, String> {
        let name: Name = name.parse().unwrap();
        dns.resolve(name)
            .await
            .map(|addrs| addrs.collect())
            .map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn pinned_dns_answers_only_the_vetted_name() {
        let addrs = vec!["127.0.0.1:8080".parse().unwrap()];
        let dns = PinnedDns {
            name: Some("public.test".into()),
            addrs: addrs.clone(),
        };
        assert_eq!(ask(&dns, "public.test").await.unwrap(), addrs);
        assert_eq!(ask(&dns, "PUBLIC.test").await.unwrap(), addrs);
        assert!(ask(&dns, "other.test").await.is_err());
        assert!(ask(&dns, "public.test.evil").await.is_err());
        let literal = PinnedDns { name: None, addrs };
        assert!(ask(&literal, "public.test").await.is_err());
    }

    #[test]
    fn form_encoding_follows_rfc6749() {
        assert_eq!(form_encode("a b:c%&"), "a+b%3Ac%25%26");
        assert_eq!(form_encode("plain-id_1.2~"), "plain-id_1.2%7E");
    }

    #[test]
    fn redirect_statuses() {
        for s in [301, 302, 303, 307, 308] {
            assert!(is_followed_redirect(s));
        }
        for s in [200, 300, 304, 305, 306, 400] {
            assert!(!is_followed_redirect(s));
        }
    }
}
