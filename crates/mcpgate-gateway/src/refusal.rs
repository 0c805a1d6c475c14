//! Every answer of the MCP endpoint that is not the upstream's: one enum,
//! and one exhaustive mapping from each refusal to its HTTP status, JSON-RPC
//! error code and message, extra headers, and audit decision and reason.
//! The handlers in `mcp.rs` only say *which* refusal applies; how it looks on
//! the wire and in the audit log is decided here, and a snapshot test pins
//! every variant's status, headers and body.

use std::borrow::Cow;
use std::time::Duration;

use axum::response::Response;
use http::{HeaderValue, StatusCode};
use mcpgate_guard::{Challenge, challenge_response};
use mcpgate_types::ScopeSet;
use serde_json::{Value, json};

use crate::capacity::{FULL_RETRY_AFTER, Full};
use crate::jsonrpc::{ParseError, codes};
use crate::outbound::StateRefusal;
use crate::policy::ItemKind;
use crate::relay::{error_response, json_response};

/// Why the gateway answered a request itself instead of forwarding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No upstream of that name (not audited: there is no upstream to name).
    NoSuchEndpoint,
    ShuttingDown,
    /// A present `Origin` that is neither the public URL's nor configured.
    ForeignOrigin,
    /// A `Host` that is not loopback or the public host, on a loopback listener.
    ForeignHost,
    /// The guard's challenge: no token, a bad one (401 / 400) or too little
    /// scope (403 `insufficient_scope`, a step-up).
    Challenge(Challenge),
    /// The gateway holds all the sessions, children or streams it may
    /// (`[gateway.limits]`): 503 with `Retry-After`.
    AtCapacity(Full),
    /// A per-user or per-client rate limit, a user's share of streams, or
    /// an address benched for refused tokens (`reason` names which).
    RateLimited {
        reason: &'static str,
        retry_after: Duration,
    },
    /// `MCP-Protocol-Version` names a version the gateway does not speak.
    UnsupportedVersion {
        requested: String,
    },
    TooLarge,
    /// Not one strict JSON-RPC message.
    Malformed(ParseError),
    /// A request whose params miss what the method needs.
    InvalidParams(Cow<'static, str>),
    /// A method 2026-07-28 removed.
    MethodRemoved,
    /// 2026-07-28: an `Mcp-*` header disagrees with the body.
    HeaderMismatch(&'static str),
    /// Policy: the item is disabled or not on the user's allowlist.
    Denied {
        kind: ItemKind,
        reason: &'static str,
    },
    /// A step-up the user can never satisfy: the authorization server would
    /// not grant `scopes` to them (`grantable_to`). A plain 403, without an
    /// `insufficient_scope` challenge, so the client does not ask again.
    NotEntitled {
        kind: Option<ItemKind>,
        scopes: ScopeSet,
    },
    /// A `requestState` not sealed for this user, client and upstream.
    ForeignRequestState(StateRefusal),
    /// GET or DELETE from a stateless (2026-07-28) client.
    MethodNotAllowed,
    MissingSession,
    /// Unknown, expired, or another principal's session: indistinguishable.
    UnknownSession,
    /// GET without `Accept: text/event-stream`.
    NotAcceptable,
    /// `Last-Event-ID` names no stream this session still holds.
    UnknownEventId,
    /// The upstream ended its session, so the gateway ended its own.
    UpstreamSessionGone,
    /// A session this replica does not hold could not be looked up in the
    /// store shared by the replicas (it is down): 503 with `Retry-After`.
    StoreUnavailable,
    /// The upstream failed: unreachable, refused our credentials, a 5xx, a
    /// malformed answer, a child that did not start or exited. The detail is
    /// logged where it happens; the client learns nothing more.
    Upstream {
        reason: &'static str,
    },
    /// A `user_oauth` upstream and a user without a connected account (or
    /// whose account must be connected again): the URL-elicitation-required
    /// error, pointing at the gateway's connect page.
    ConnectAccount(Box<mcpgate_vault::Elicitation>),
    /// A `user_oauth` upstream and a token of another issuer: connected
    /// accounts belong to users of mcpgate's own authorization server.
    NotLocalUser,
    /// 2026-07-28: the same need as [`Refusal::ConnectAccount`], as that
    /// revision asks it: an `InputRequiredResult` (the value, with its URL
    /// elicitation and the gateway's sealed `requestState`) as the result.
    InputRequired(Box<Value>),
    /// 2026-07-28: the account must be connected, but the client declared no
    /// URL-mode elicitation (-32021).
    UrlElicitationUnsupported,
    /// 2026-07-28: the client's retry answered the gateway's URL elicitation
    /// with `decline` or `cancel`.
    ConnectDeclined,
}

/// What the challenge of a [`Refusal::Challenge`] is built from.
pub struct ChallengeParams<'a> {
    pub resource_metadata_url: &'a str,
    pub baseline: &'a ScopeSet,
}

impl Refusal {
    /// A step-up to `required` scopes for `kind` (or the upstream's baseline).
    pub fn step_up(required: ScopeSet, kind: Option<ItemKind>) -> Self {
        let description = match kind {
            Some(k) => format!("this {} needs more scope", k.noun()),
            None => "this resource needs more scope".to_string(),
        };
        Refusal::Challenge(Challenge::InsufficientScope {
            required,
            description,
        })
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::NoSuchEndpoint | Refusal::UnknownSession | Refusal::UpstreamSessionGone => {
                StatusCode::NOT_FOUND
            }
            Refusal::MethodRemoved => StatusCode::NOT_FOUND,
            Refusal::ShuttingDown | Refusal::AtCapacity(_) | Refusal::StoreUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Refusal::ForeignOrigin
            | Refusal::Denied { .. }
            | Refusal::NotEntitled { .. }
            | Refusal::NotLocalUser
            | Refusal::ConnectDeclined => StatusCode::FORBIDDEN,
            // A JSON-RPC error (or result) the client must read: SDK clients
            // read the error of a 200 answer only.
            Refusal::ConnectAccount(_) | Refusal::InputRequired(_) => StatusCode::OK,
            Refusal::UrlElicitationUnsupported => StatusCode::BAD_REQUEST,
            Refusal::ForeignHost => StatusCode::MISDIRECTED_REQUEST,
            Refusal::Challenge(ch) => mcpgate_guard::challenge::status(ch),
            Refusal::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::UnsupportedVersion { .. }
            | Refusal::Malformed(_)
            | Refusal::InvalidParams(_)
            | Refusal::HeaderMismatch(_)
            | Refusal::ForeignRequestState(_)
            | Refusal::MissingSession
            | Refusal::UnknownEventId => StatusCode::BAD_REQUEST,
            Refusal::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            Refusal::Upstream { .. } => StatusCode::BAD_GATEWAY,
        }
    }

    /// The JSON-RPC error code.
    pub fn code(&self) -> i64 {
        match self {
            Refusal::NoSuchEndpoint
            | Refusal::TooLarge
            | Refusal::MethodNotAllowed
            | Refusal::MissingSession
            | Refusal::UnknownSession
            | Refusal::NotAcceptable
            | Refusal::UnknownEventId
            | Refusal::UpstreamSessionGone => codes::INVALID_REQUEST,
            Refusal::Challenge(_) => mcpgate_guard::AUTH_ERROR_CODE,
            Refusal::ShuttingDown
            | Refusal::AtCapacity(_)
            | Refusal::StoreUnavailable
            | Refusal::ForeignOrigin
            | Refusal::ForeignHost
            | Refusal::RateLimited { .. }
            | Refusal::Denied { .. }
            | Refusal::NotEntitled { .. }
            | Refusal::NotLocalUser
            | Refusal::ConnectDeclined => codes::SERVER_ERROR,
            Refusal::ConnectAccount(_) | Refusal::InputRequired(_) => {
                codes::URL_ELICITATION_REQUIRED
            }
            Refusal::UrlElicitationUnsupported => codes::MISSING_REQUIRED_CLIENT_CAPABILITY,
            Refusal::UnsupportedVersion { .. } => codes::UNSUPPORTED_PROTOCOL_VERSION,
            Refusal::Malformed(e) => e.code(),
            Refusal::InvalidParams(_) | Refusal::ForeignRequestState(_) => codes::INVALID_PARAMS,
            Refusal::MethodRemoved => codes::METHOD_NOT_FOUND,
            Refusal::HeaderMismatch(_) => codes::HEADER_MISMATCH,
            Refusal::Upstream { .. } => codes::UPSTREAM_ERROR,
        }
    }

    pub fn message(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Refusal::NoSuchEndpoint => "no such MCP endpoint",
            Refusal::ShuttingDown => "the gateway is shutting down",
            Refusal::ForeignOrigin => "Origin not allowed",
            Refusal::ForeignHost => "Host not allowed",
            Refusal::Challenge(ch) => {
                return Cow::Owned(mcpgate_guard::challenge::message(ch).to_string());
            }
            Refusal::AtCapacity(Full::Sessions) => "the gateway holds all the sessions it may",
            Refusal::AtCapacity(Full::Children) => {
                "the gateway runs all the server processes it may"
            }
            Refusal::AtCapacity(Full::Streams) => "the gateway holds all the streams it may",
            Refusal::RateLimited { .. } => "rate limit exceeded",
            Refusal::UnsupportedVersion { .. } => "unsupported MCP-Protocol-Version",
            Refusal::TooLarge => "message too large",
            Refusal::Malformed(e) => e.message(),
            Refusal::InvalidParams(m) => return m.clone(),
            Refusal::MethodRemoved => "Method not found (removed in 2026-07-28)",
            Refusal::HeaderMismatch(m) => m,
            Refusal::Denied { kind, .. } => {
                return Cow::Owned(format!("this {} is not available to you", kind.noun()));
            }
            Refusal::NotEntitled { kind, scopes } => {
                let what = kind.map_or("resource", ItemKind::noun);
                return Cow::Owned(format!(
                    "this {what} needs scope {scopes}, which your account cannot be granted"
                ));
            }
            Refusal::ForeignRequestState(StateRefusal::Malformed) => {
                "Invalid params: requestState was not issued by this gateway"
            }
            Refusal::ForeignRequestState(StateRefusal::NotYours) => {
                "Invalid params: requestState was issued to another user, client or server"
            }
            Refusal::MethodNotAllowed => "no sessions in this protocol version",
            Refusal::MissingSession => "Mcp-Session-Id required",
            Refusal::UnknownSession | Refusal::UpstreamSessionGone => "session not found",
            Refusal::StoreUnavailable => "the gateway cannot look up this session now",
            Refusal::NotAcceptable => "GET needs Accept: text/event-stream",
            Refusal::UnknownEventId => {
                "Last-Event-ID names no stream of this session that can be resumed"
            }
            Refusal::Upstream { .. } => "upstream server unavailable",
            Refusal::ConnectAccount(el) => return Cow::Owned(el.message.clone()),
            Refusal::NotLocalUser => {
                "this server acts with each user's own account, for users of this gateway's own \
                 authorization server only"
            }
            Refusal::InputRequired(_) => "the user's account must be connected first",
            Refusal::UrlElicitationUnsupported => {
                "this server acts with your own account, which must be connected first: it needs \
                 a client that declares URL-mode elicitation (elicitation.url)"
            }
            Refusal::ConnectDeclined => "connecting the account was declined",
        })
    }

    /// The audit decision.
    pub fn decision(&self) -> &'static str {
        match self {
            Refusal::Challenge(Challenge::InsufficientScope { .. }) => "step_up",
            Refusal::Challenge(_) => "unauthenticated",
            Refusal::RateLimited { .. } | Refusal::AtCapacity(_) => "rate_limited",
            Refusal::Upstream { .. } | Refusal::UpstreamSessionGone | Refusal::StoreUnavailable => {
                "error"
            }
            Refusal::NoSuchEndpoint
            | Refusal::ShuttingDown
            | Refusal::ForeignOrigin
            | Refusal::ForeignHost
            | Refusal::UnsupportedVersion { .. }
            | Refusal::TooLarge
            | Refusal::Malformed(_)
            | Refusal::InvalidParams(_)
            | Refusal::MethodRemoved
            | Refusal::HeaderMismatch(_)
            | Refusal::Denied { .. }
            | Refusal::NotEntitled { .. }
            | Refusal::ForeignRequestState(_)
            | Refusal::MethodNotAllowed
            | Refusal::MissingSession
            | Refusal::UnknownSession
            | Refusal::NotAcceptable
            | Refusal::UnknownEventId
            | Refusal::NotLocalUser
            | Refusal::UrlElicitationUnsupported
            | Refusal::ConnectDeclined => "deny",
            Refusal::ConnectAccount(_) | Refusal::InputRequired(_) => "connect_account",
        }
    }

    /// The audit reason (also a `reason` label of the decision metric).
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::NoSuchEndpoint => "no_such_endpoint",
            Refusal::ShuttingDown => "shutting_down",
            Refusal::ForeignOrigin => "foreign_origin",
            Refusal::ForeignHost => "foreign_host",
            Refusal::Challenge(Challenge::Missing) => "missing_token",
            Refusal::Challenge(Challenge::InvalidToken(_)) => "invalid_token",
            Refusal::Challenge(Challenge::InvalidRequest(_)) => "invalid_request",
            Refusal::Challenge(Challenge::InvalidDpopProof(_)) => "invalid_dpop_proof",
            Refusal::Challenge(Challenge::UseDpopNonce { .. }) => "use_dpop_nonce",
            Refusal::Challenge(Challenge::InsufficientScope { .. }) => "insufficient_scope",
            Refusal::RateLimited { reason, .. } => reason,
            Refusal::AtCapacity(full) => full.reason(),
            Refusal::UnsupportedVersion { .. } => "unsupported_protocol_version",
            Refusal::TooLarge => "too_large",
            Refusal::Malformed(_) | Refusal::InvalidParams(_) => "malformed",
            Refusal::MethodRemoved => "method_not_found",
            Refusal::HeaderMismatch(_) => "header_mismatch",
            Refusal::Denied { reason, .. } => reason,
            Refusal::NotEntitled { .. } => "not_entitled",
            Refusal::ForeignRequestState(_) => "foreign_request_state",
            Refusal::MethodNotAllowed => "method_not_allowed",
            Refusal::MissingSession => "missing_session",
            Refusal::UnknownSession => "unknown_session",
            Refusal::NotAcceptable => "not_acceptable",
            Refusal::UnknownEventId => "unknown_event_id",
            Refusal::UpstreamSessionGone => "upstream_session_gone",
            Refusal::StoreUnavailable => "store_unavailable",
            Refusal::Upstream { reason } => reason,
            Refusal::ConnectAccount(_) | Refusal::InputRequired(_) => "account_not_connected",
            Refusal::NotLocalUser => "not_a_local_user",
            Refusal::UrlElicitationUnsupported => "url_elicitation_unsupported",
            Refusal::ConnectDeclined => "connect_declined",
        }
    }

    /// The answer: a JSON-RPC error with `id` (when known) and the
    /// variant's headers (`WWW-Authenticate`, `Retry-After`, `Allow`).
    pub fn response(&self, id: Option<&Value>, challenge: &ChallengeParams<'_>) -> Response {
        match self {
            Refusal::Challenge(ch) => {
                challenge_response(ch, challenge.resource_metadata_url, challenge.baseline)
            }
            Refusal::UnsupportedVersion { requested } => {
                // UnsupportedProtocolVersionError: the versions spoken and the
                // one asked for, with the request's id.
                self.error_with_data(
                    id,
                    json!({
                        "supported": crate::mcp::SUPPORTED_VERSIONS,
                        "requested": requested,
                    }),
                )
            }
            Refusal::InputRequired(result) => self.with_body(json!({
                "jsonrpc": "2.0",
                "id": id,
                "result": result,
            })),
            Refusal::ConnectAccount(el) => {
                // URLElicitationRequiredError (2025-11-25 elicitation): the
                // connect page's URL, nothing secret in it, and its id.
                self.error_with_data(
                    id,
                    json!({
                        "elicitations": [{
                            "mode": "url",
                            "elicitationId": el.id,
                            "url": el.url,
                            "message": el.message,
                        }],
                    }),
                )
            }
            _ => {
                let mut r = error_response(self.status(), id, self.code(), &self.message());
                let h = r.headers_mut();
                match self {
                    Refusal::RateLimited { retry_after, .. } => {
                        h.insert(http::header::RETRY_AFTER, retry_after_secs(*retry_after));
                    }
                    Refusal::AtCapacity(_) | Refusal::StoreUnavailable => {
                        h.insert(
                            http::header::RETRY_AFTER,
                            retry_after_secs(FULL_RETRY_AFTER),
                        );
                    }
                    Refusal::MethodNotAllowed => {
                        h.insert(http::header::ALLOW, HeaderValue::from_static("POST"));
                    }
                    _ => {}
                }
                r
            }
        }
    }
}

impl Refusal {
    /// This refusal's JSON-RPC error, with `data`.
    fn error_with_data(&self, id: Option<&Value>, data: Value) -> Response {
        self.with_body(json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {"code": self.code(), "message": self.message(), "data": data},
        }))
    }

    /// A JSON answer of this refusal's status that no cache keeps.
    fn with_body(&self, body: Value) -> Response {
        let mut r = json_response(&body);
        *r.status_mut() = self.status();
        r.headers_mut().insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        r
    }
}

/// Whole seconds, rounded up, at least 1.
fn retry_after_secs(d: Duration) -> HeaderValue {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    HeaderValue::from(secs.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// One of each variant. The `match` has no wildcard: a new variant does
    /// not compile until it is added here, and so to the snapshot.
    fn every_variant() -> Vec<Refusal> {
        let all = vec![
            Refusal::NoSuchEndpoint,
            Refusal::ShuttingDown,
            Refusal::ForeignOrigin,
            Refusal::ForeignHost,
            Refusal::Challenge(Challenge::Missing),
            Refusal::Challenge(Challenge::InvalidToken("expired".into())),
            Refusal::Challenge(Challenge::InvalidRequest("token in query".into())),
            Refusal::step_up(
                ScopeSet::parse("n:read n:write").unwrap(),
                Some(ItemKind::Tool),
            ),
            Refusal::step_up(ScopeSet::parse("n:read").unwrap(), None),
            Refusal::RateLimited {
                reason: "user_rate_limit",
                retry_after: Duration::from_millis(1500),
            },
            Refusal::RateLimited {
                reason: "address_refused_tokens",
                retry_after: Duration::from_millis(200),
            },
            Refusal::AtCapacity(Full::Sessions),
            Refusal::AtCapacity(Full::Children),
            Refusal::AtCapacity(Full::Streams),
            Refusal::UnsupportedVersion {
                requested: "1999-01-01".into(),
            },
            Refusal::TooLarge,
            Refusal::Malformed(ParseError::NotJson),
            Refusal::Malformed(ParseError::Invalid("duplicate key in a JSON object")),
            Refusal::InvalidParams("tools/call needs params.name".into()),
            Refusal::MethodRemoved,
            Refusal::HeaderMismatch("Mcp-Name does not match the body"),
            Refusal::Denied {
                kind: ItemKind::Prompt,
                reason: "prompt_disabled",
            },
            Refusal::NotEntitled {
                kind: Some(ItemKind::Tool),
                scopes: ScopeSet::parse("n:admin").unwrap(),
            },
            Refusal::ForeignRequestState(StateRefusal::Malformed),
            Refusal::ForeignRequestState(StateRefusal::NotYours),
            Refusal::MethodNotAllowed,
            Refusal::MissingSession,
            Refusal::UnknownSession,
            Refusal::NotAcceptable,
            Refusal::UnknownEventId,
            Refusal::UpstreamSessionGone,
            Refusal::StoreUnavailable,
            Refusal::Upstream {
                reason: "upstream_unreachable",
            },
            Refusal::ConnectAccount(Box::new(mcpgate_vault::Elicitation {
                id: "sealed-id".into(),
                url: "https://gw.example/connect/github?elicitation=sealed-id".into(),
                message: "GitHub needs your permission to act on your behalf.".into(),
            })),
            Refusal::NotLocalUser,
            Refusal::InputRequired(Box::new(json!({
                "resultType": "input_required",
                "inputRequests": {"mcpgate-connect": {"method": "elicitation/create", "params": {
                    "mode": "url",
                    "url": "https://gw.example/connect/github?elicitation=sealed-id",
                    "message": "GitHub needs your permission to act on your behalf."}}},
                "requestState": "mcpgate.rs1.sealed",
            }))),
            Refusal::UrlElicitationUnsupported,
            Refusal::ConnectDeclined,
        ];
        for r in &all {
            match r {
                Refusal::NoSuchEndpoint
                | Refusal::ShuttingDown
                | Refusal::ForeignOrigin
                | Refusal::ForeignHost
                | Refusal::Challenge(_)
                | Refusal::AtCapacity(_)
                | Refusal::RateLimited { .. }
                | Refusal::UnsupportedVersion { .. }
                | Refusal::TooLarge
                | Refusal::Malformed(_)
                | Refusal::InvalidParams(_)
                | Refusal::MethodRemoved
                | Refusal::HeaderMismatch(_)
                | Refusal::Denied { .. }
                | Refusal::NotEntitled { .. }
                | Refusal::ForeignRequestState(_)
                | Refusal::MethodNotAllowed
                | Refusal::MissingSession
                | Refusal::UnknownSession
                | Refusal::NotAcceptable
                | Refusal::UnknownEventId
                | Refusal::UpstreamSessionGone
                | Refusal::StoreUnavailable
                | Refusal::Upstream { .. }
                | Refusal::ConnectAccount(_)
                | Refusal::NotLocalUser
                | Refusal::InputRequired(_)
                | Refusal::UrlElicitationUnsupported
                | Refusal::ConnectDeclined => {}
            }
        }
        all
    }

    #[tokio::test]
    async fn every_refusal_on_the_wire() {
        let baseline = ScopeSet::parse("n:read").unwrap();
        let params = ChallengeParams {
            resource_metadata_url: "https://gw.example/.well-known/oauth-protected-resource/mcp/n",
            baseline: &baseline,
        };
        let mut out = String::new();
        for r in every_variant() {
            let resp = r.response(Some(&json!(7)), &params);
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            out.push_str(&format!(
                "{r:?}\n  audit: {} / {}\n  {}\n",
                r.decision(),
                r.reason(),
                parts.status
            ));
            let mut headers: Vec<_> = parts.headers.iter().collect();
            headers.sort_by_key(|(k, _)| k.as_str());
            for (k, v) in headers {
                out.push_str(&format!("  {k}: {}\n", v.to_str().unwrap()));
            }
            out.push_str(&format!("  {}\n\n", String::from_utf8_lossy(&body)));
        }
        insta::assert_snapshot!(out);
    }
}
