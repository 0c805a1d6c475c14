//! Errors of the SSRF-safe fetcher. Messages say what failed without internal detail: no
//! resolved addresses, no resolver or TLS internals (those go to `tracing` at debug level), so an
//! authorization server can show them to the party that supplied the URL without turning the
//! fetcher into a network-reconnaissance oracle. Callers should still map them to their own
//! protocol errors (e.g. CIMD failures to `invalid_client`).

/// Why a fetch was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The destination address is in a forbidden special-purpose range (private, loopback,
    /// link-local, metadata, reserved, …); checked before any connection is made.
    #[error("destination not allowed: {reason}")]
    Forbidden {
        /// Which range the address falls into (from [`crate::ip`]).
        reason: &'static str,
    },
    /// The URL's scheme is not `https` (plain `http` is allowed only to loopback destinations
    /// with the development override).
    #[error(
        "only https URLs may be fetched (plain http only to loopback with the development override)"
    )]
    InsecureScheme,
    /// The URL carries userinfo (`https://user:pass@host/`).
    #[error("URLs with credentials (userinfo) are not allowed")]
    Userinfo,
    /// The URL could not be parsed or has no usable host.
    #[error("invalid URL: {0}")]
    BadUrl(&'static str),
    /// The host name did not resolve to any address.
    #[error("could not resolve the host name")]
    Dns,
    /// More redirects than [`crate::FetchPolicy::max_redirects`].
    #[error("too many redirects (limit {max})")]
    TooManyRedirects {
        /// The configured limit.
        max: usize,
    },
    /// The response body is larger than [`crate::FetchPolicy::max_body_bytes`].
    #[error("response body exceeds {limit} bytes")]
    TooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The request did not complete within [`crate::FetchPolicy::timeout`].
    #[error("request timed out")]
    Timeout,
    /// Connection, TLS or HTTP protocol failure.
    #[error("HTTP request failed: {0}")]
    Http(&'static str),
}

impl FetchError {
    /// Maps a transport error, logging its detail at debug level.
    pub(crate) fn from_reqwest(err: &reqwest::Error) -> Self {
        tracing::debug!(error = ?err, "outbound HTTP request failed");
        if err.is_timeout() {
            FetchError::Timeout
        } else if caused_by_tls(err) {
            FetchError::Http("TLS handshake or certificate verification failed")
        } else if err.is_connect() {
            FetchError::Http("could not connect")
        } else if err.is_body() || err.is_decode() {
            FetchError::Http("could not read the response body")
        } else if err.is_builder() {
            FetchError::Http("could not build the request")
        } else {
            FetchError::Http("request failed")
        }
    }
}

/// Whether a rustls error is somewhere in the chain (through `io::Error` wrappers, whose
/// `source()` skips the wrapped error).
fn caused_by_tls(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        if e.is::<rustls::Error>() {
            return true;
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            current = Some(inner);
            continue;
        }
        current = e.source();
    }
    false
}
