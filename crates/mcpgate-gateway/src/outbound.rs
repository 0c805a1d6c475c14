//! Server→client messages (issue "the gateway decides on exactly what it
//! forwards"): every message an upstream sends towards a client — a
//! response, a server request such as `elicitation/create`, a
//! notification, on a POST stream, a GET stream or a resumed one — is
//! parsed once, strictly ([`jsonrpc::parse`]), decided on here, and
//! forwarded as the gateway's own serialisation of the result.
//!
//! Deciding means:
//! - every list a result holds is filtered by policy, whatever request it
//!   answers ([`policy::filter_response_message`]), so an answer replayed on
//!   a resumed stream is filtered like a fresh one;
//! - a `requestState` handle (SEP-2322 multi round-trip results) is sealed
//!   to the user and upstream it was issued to ([`RequestStates`]); the
//!   client's retry carries the sealed form, and only its owner can open it.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcpgate_guard::Principal;
use mcpgate_jose::{MasterKey, Rng};
use serde_json::Value;

use crate::jsonrpc::{self, ParseError};
use crate::{Upstream, policy};

/// Sealed request states start with this, so a client sending back a
/// state the gateway never sealed gets a precise error.
const SEALED_PREFIX: &str = "mcpgate.rs1.";

/// Seals and opens `requestState` handles: AES-256-GCM under a key of the
/// gateway (derived from the master key, so every replica opens what another
/// sealed), with the owner's (issuer, subject, client_id) and the upstream's
/// name as associated data.
pub struct RequestStates {
    key: MasterKey,
    rng: Arc<dyn Rng>,
}

/// Why a client's `requestState` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateRefusal {
    /// Not a string, or not sealed by this gateway.
    Malformed,
    /// Sealed for another user, client or upstream, or tampered with.
    NotYours,
}

impl RequestStates {
    pub fn new(key: [u8; 32], rng: Arc<dyn Rng>) -> Self {
        Self {
            key: MasterKey::from_bytes(&key).expect("32 bytes is a valid AES-256 key"),
            rng,
        }
    }

    fn aad(p: &Principal, upstream: &str) -> Vec<u8> {
        // NUL cannot occur in an issuer URL, a client id or an upstream name,
        // and separates the fields unambiguously.
        [
            "mcpgate requestState",
            &p.issuer,
            &p.subject,
            &p.client_id,
            upstream,
        ]
        .join("\0")
        .into_bytes()
    }

    /// Seals the upstream's state (any JSON value) for `p` at `upstream`.
    pub fn seal(&self, p: &Principal, upstream: &str, state: &Value) -> String {
        let plain = serde_json::to_vec(state).expect("a JSON value serialises");
        let sealed = self
            .key
            .seal(self.rng.as_ref(), &plain, &Self::aad(p, upstream));
        format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(sealed))
    }

    /// The client's side: a request carrying `params.requestState` gets the
    /// upstream's original state back, if and only if it was sealed for
    /// `p` at `upstream`. A request without one is left as it is.
    pub fn unseal_request(
        &self,
        p: &Principal,
        upstream: &str,
        msg: &mut Value,
    ) -> Result<(), StateRefusal> {
        let Some(state) = msg
            .get_mut("params")
            .and_then(|params| params.get_mut("requestState"))
        else {
            return Ok(());
        };
        *state = self.open(p, upstream, state)?;
        Ok(())
    }

    /// Opens a state the client sent back: the upstream's original value.
    pub fn open(
        &self,
        p: &Principal,
        upstream: &str,
        sealed: &Value,
    ) -> Result<Value, StateRefusal> {
        let raw = sealed
            .as_str()
            .and_then(|s| s.strip_prefix(SEALED_PREFIX))
            .and_then(|b| URL_SAFE_NO_PAD.decode(b).ok())
            .ok_or(StateRefusal::Malformed)?;
        let plain = self
            .key
            .open(&raw, &Self::aad(p, upstream))
            .map_err(|_| StateRefusal::NotYours)?;
        serde_json::from_slice(&plain).map_err(|_| StateRefusal::NotYours)
    }
}

/// The decision on server→client messages for one client request (or GET
/// stream): whose they are and which upstream sent them.
#[derive(Clone)]
pub struct Outbound {
    up: Arc<Upstream>,
    principal: Principal,
    states: Arc<RequestStates>,
}

impl Outbound {
    pub(crate) fn new(up: Arc<Upstream>, principal: Principal, states: Arc<RequestStates>) -> Self {
        Self {
            up,
            principal,
            states,
        }
    }

    /// Decides one message already parsed strictly (a stdio child's line):
    /// lists filtered, request state sealed.
    pub fn decide(&self, msg: &mut Value) {
        policy::filter_response_message(&self.up.cfg, &self.principal, msg);
        if let Some(state) = msg
            .get_mut("result")
            .and_then(|r| r.get_mut("requestState"))
        {
            *state = Value::String(self.states.seal(&self.principal, &self.up.cfg.name, state));
        }
    }

    /// Parses one message an HTTP upstream sent, strictly, and decides on
    /// it: what the client gets is this value serialised.
    pub fn decide_bytes(&self, raw: &[u8]) -> Result<Value, ParseError> {
        let mut v = jsonrpc::parse(raw)?.value;
        self.decide(&mut v);
        Ok(v)
    }

    pub fn upstream(&self) -> &str {
        &self.up.cfg.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpgate_jose::SystemRng;
    use serde_json::json;

    fn who(sub: &str, client: &str) -> Principal {
        Principal {
            issuer: "https://as.example".into(),
            subject: sub.into(),
            client_id: client.into(),
            scopes: Default::default(),
            groups: vec![],
            expires_at: i64::MAX,
            dpop_jkt: None,
        }
    }

    #[test]
    fn a_state_opens_only_for_its_owner() {
        let states = RequestStates::new([7; 32], Arc::new(SystemRng::new()));
        let alice = who("alice", "c1");
        let state = json!("upstream-state-123");
        let sealed = Value::String(states.seal(&alice, "notes", &state));
        assert_eq!(states.open(&alice, "notes", &sealed), Ok(state.clone()));
        // Another user, another client of the same user, another upstream.
        for (p, up) in [
            (who("bob", "c1"), "notes"),
            (who("alice", "c2"), "notes"),
            (alice.clone(), "files"),
        ] {
            assert_eq!(
                states.open(&p, up, &sealed),
                Err(StateRefusal::NotYours),
                "{p:?} {up}"
            );
        }
        // The upstream's own (unsealed) state, tampering, other types.
        assert_eq!(
            states.open(&alice, "notes", &state),
            Err(StateRefusal::Malformed)
        );
        let mut tampered = sealed.as_str().unwrap().to_string();
        tampered.push('A');
        assert!(states.open(&alice, "notes", &json!(tampered)).is_err());
        assert_eq!(
            states.open(&alice, "notes", &json!(1)),
            Err(StateRefusal::Malformed)
        );
        // Another gateway key.
        let other = RequestStates::new([8; 32], Arc::new(SystemRng::new()));
        assert_eq!(
            other.open(&alice, "notes", &sealed),
            Err(StateRefusal::NotYours)
        );
    }
}

/// The key of the gateway's own URL elicitation in an `InputRequiredResult`
/// (2026-07-28), and the marker its sealed `requestState` holds.
const CONNECT_INPUT: &str = "mcpgate-connect";

/// 2026-07-28: a `user_oauth` account to connect, asked as that revision
/// asks: an `InputRequiredResult` holding one URL-mode `elicitation/create`
/// and a `requestState` sealed to this user, client and upstream — if the
/// client declared URL-mode elicitation in this request's capabilities;
/// else -32021.
pub(crate) fn input_required(
    states: &RequestStates,
    p: &Principal,
    upstream: &str,
    env: &jsonrpc::Envelope,
    el: &mcpgate_vault::Elicitation,
) -> crate::refusal::Refusal {
    use crate::refusal::Refusal;
    let declared = env
        .value
        .pointer("/params/_meta")
        .and_then(|m| m.get(jsonrpc::META_CLIENT_CAPABILITIES))
        .and_then(|c| c.get("elicitation"))
        .and_then(|e| e.get("url"))
        .is_some_and(Value::is_object);
    if !declared {
        return Refusal::UrlElicitationUnsupported;
    }
    let state = states.seal(
        p,
        upstream,
        &serde_json::json!({ "mcpgate": CONNECT_INPUT }),
    );
    Refusal::InputRequired(Box::new(serde_json::json!({
        "resultType": "input_required",
        "inputRequests": {
            CONNECT_INPUT: {
                "method": "elicitation/create",
                "params": { "mode": "url", "url": el.url, "message": el.message },
            },
        },
        "requestState": state,
    })))
}

/// 2026-07-28: a retry whose (already opened) `requestState` is the
/// gateway's own answers the gateway's URL elicitation: the state and that
/// answer are removed before the request goes on (the upstream never issued
/// them). A `decline` or `cancel` ends the request. Anything else is left
/// as it is.
pub(crate) fn take_connect_answer(msg: &mut Value) -> Result<(), crate::refusal::Refusal> {
    let Some(params) = msg.get_mut("params").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let ours = params
        .get("requestState")
        .and_then(|s| s.get("mcpgate"))
        .is_some_and(|m| m == CONNECT_INPUT);
    if !ours {
        return Ok(());
    }
    params.remove("requestState");
    let answer = params
        .get_mut("inputResponses")
        .and_then(Value::as_object_mut)
        .and_then(|r| r.remove(CONNECT_INPUT));
    if params
        .get("inputResponses")
        .and_then(Value::as_object)
        .is_some_and(serde_json::Map::is_empty)
    {
        params.remove("inputResponses");
    }
    match answer
        .as_ref()
        .and_then(|a| a.get("action"))
        .and_then(Value::as_str)
    {
        Some("decline" | "cancel") => Err(crate::refusal::Refusal::ConnectDeclined),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod connect_tests {
    use serde_json::json;

    use super::take_connect_answer;
    use crate::refusal::Refusal;

    #[test]
    fn the_gateways_own_state_and_answer_never_reach_the_upstream() {
        let mut m = json!({"params": {"name": "t", "requestState": {"mcpgate": "mcpgate-connect"},
            "inputResponses": {"mcpgate-connect": {"action": "accept"}}}});
        take_connect_answer(&mut m).unwrap();
        assert_eq!(m, json!({"params": {"name": "t"}}));
        // Another input's answer stays.
        let mut m = json!({"params": {"requestState": {"mcpgate": "mcpgate-connect"},
            "inputResponses": {"mcpgate-connect": {"action": "accept"}, "other": {"x": 1}}}});
        take_connect_answer(&mut m).unwrap();
        assert_eq!(
            m,
            json!({"params": {"inputResponses": {"other": {"x": 1}}}})
        );
        // An upstream's own state is left alone.
        let mut m =
            json!({"params": {"requestState": "upstream-state", "inputResponses": {"a": {}}}});
        let before = m.clone();
        take_connect_answer(&mut m).unwrap();
        assert_eq!(m, before);
        // Declined.
        let mut m = json!({"params": {"requestState": {"mcpgate": "mcpgate-connect"},
            "inputResponses": {"mcpgate-connect": {"action": "decline"}}}});
        assert!(matches!(
            take_connect_answer(&mut m),
            Err(Refusal::ConnectDeclined)
        ));
    }
}
