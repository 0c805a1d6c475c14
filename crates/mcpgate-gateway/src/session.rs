//! MCP sessions (2025-06-18 / 2025-11-25 Streamable HTTP, checklist §2(e),
//! Security Best Practices "Session hijacking"): the gateway mints its own
//! `Mcp-Session-Id` (256 bits from the OS RNG, base64url — visible ASCII),
//! maps it to the upstream's session (an upstream session id or a stdio
//! child) and binds it to the token's (issuer, subject, client_id). A
//! session presented with another principal's token is indistinguishable
//! from an unknown one. Sessions are never authentication: every request
//! is authenticated before its session is looked up.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mcpgate_guard::Principal;
use mcpgate_jose::Rng;

use crate::capacity::Slot;
use crate::upstream::stdio::StdioChild;

/// Who a session belongs to, from the validated token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner {
    pub issuer: String,
    pub subject: String,
    pub client_id: String,
}

impl Owner {
    pub fn of(p: &Principal) -> Self {
        Self {
            issuer: p.issuer.clone(),
            subject: p.subject.clone(),
            client_id: p.client_id.clone(),
        }
    }

    /// Is `p` this owner (same issuer, subject and client)?
    pub fn is(&self, p: &Principal) -> bool {
        self.issuer == p.issuer && self.subject == p.subject && self.client_id == p.client_id
    }
}

/// What stands behind a gateway session, kept by the transport that made it
/// (an upstream's session id, a stdio child and its streams). Each transport
/// reads its own back with [`Session::backend`].
pub trait Backend: Any + Send + Sync {
    /// The process behind this session, if it has one of its own or shares
    /// one (liveness, process ids, shutdown).
    fn child(&self) -> Option<&Arc<StdioChild>> {
        None
    }
}

/// Where a session is known besides this process's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Only here: the gateway has no shared session store (SQLite, one node).
    Local,
    /// In the shared store, but only this process can serve it (a stdio
    /// child): other replicas answer 404 to it.
    Pinned,
    /// In the shared store with what any replica needs to carry it on (an
    /// HTTP upstream's session id); this process's entry is a cache.
    Portable,
}

pub struct Session {
    pub id: String,
    /// SHA-256 of `id`: the session's key in the shared store.
    pub id_hash: String,
    pub upstream: String,
    pub owner: Owner,
    pub reach: Reach,
    backend: Box<dyn Backend>,
    last_used: Mutex<Instant>,
    /// When this process last confirmed the session in the shared store.
    checked: Mutex<Instant>,
    created: Instant,
    /// Its place under `max_sessions`, freed when the last handle is dropped.
    _slot: Slot,
}

impl Session {
    pub fn touch(&self) {
        *self.last_used.lock().expect("session lock") = Instant::now();
    }

    fn idle_for(&self) -> Duration {
        self.last_used.lock().expect("session lock").elapsed()
    }

    /// Whether the shared store was last asked about this session more than
    /// `every` ago; if so, counts this as asking now.
    pub fn check_due(&self, every: Duration) -> bool {
        let mut checked = self.checked.lock().expect("session lock");
        if checked.elapsed() < every {
            return false;
        }
        *checked = Instant::now();
        true
    }

    /// When this process made or adopted the session.
    pub fn created(&self) -> Instant {
        self.created
    }

    /// The transport's own state of this session, if it is a `T`.
    pub fn backend<T: Backend>(&self) -> Option<&T> {
        (self.backend.as_ref() as &dyn Any).downcast_ref()
    }

    pub fn child(&self) -> Option<&Arc<StdioChild>> {
        self.backend.child()
    }
}

/// The session table of one gateway.
pub struct Sessions {
    map: Mutex<HashMap<String, Arc<Session>>>,
    idle: Duration,
    /// The per-owner cap this table applies itself; `None` when the shared
    /// store applies it fleet-wide.
    cap: Option<usize>,
    rng: Arc<dyn Rng>,
}

impl Sessions {
    /// A table that applies `cap` per owner and upstream itself, or, with
    /// `cap = None`, leaves it to the shared store.
    pub fn new(idle: Duration, cap: Option<usize>, rng: Arc<dyn Rng>) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            idle,
            cap: cap.map(|c| c.max(1)),
            rng,
        }
    }

    /// A fresh session id: 32 random bytes, base64url (43 visible ASCII characters).
    pub fn mint_id(&self) -> String {
        mcpgate_jose::random_token(self.rng.as_ref(), 32)
    }

    /// Stores a new session. When the table applies the cap and the owner
    /// already holds `cap` sessions on this upstream, the least recently
    /// used of them is evicted and returned for the caller to end. A
    /// session of that id already here (adopted by a concurrent request) is
    /// kept and returned instead.
    pub fn insert(
        &self,
        id: String,
        upstream: &str,
        owner: Owner,
        reach: Reach,
        backend: Box<dyn Backend>,
        slot: Slot,
    ) -> (Arc<Session>, Option<Arc<Session>>) {
        let now = Instant::now();
        let s = Arc::new(Session {
            id_hash: mcpgate_types::secret::hash_secret(&id),
            id: id.clone(),
            upstream: upstream.to_string(),
            owner,
            reach,
            backend,
            last_used: Mutex::new(now),
            checked: Mutex::new(now),
            created: now,
            _slot: slot,
        });
        let mut map = self.map.lock().expect("sessions lock");
        if let Some(there) = map.get(&id) {
            return (there.clone(), None);
        }
        let mut mine: Vec<&Arc<Session>> = map
            .values()
            .filter(|x| {
                x.upstream == s.upstream
                    && x.owner.issuer == s.owner.issuer
                    && x.owner.subject == s.owner.subject
            })
            .collect();
        let evicted = if self.cap.is_some_and(|cap| mine.len() >= cap) {
            mine.sort_by_key(|x| std::cmp::Reverse(x.idle_for()));
            let victim = mine[0].id.clone();
            map.remove(&victim)
        } else {
            None
        };
        map.insert(id, s.clone());
        metrics::gauge!("mcpgate_gateway_sessions", "upstream" => upstream.to_string())
            .increment(1.0);
        if let Some(e) = &evicted {
            metrics::gauge!("mcpgate_gateway_sessions", "upstream" => e.upstream.clone())
                .decrement(1.0);
        }
        (s, evicted)
    }

    /// The session `id` if it exists, belongs to `upstream` and to this
    /// principal; `None` otherwise, whatever the reason (→ 404). A portable
    /// session's idleness is the shared store's to judge (it may be in use
    /// at another replica).
    pub fn get(&self, id: &str, upstream: &str, p: &Principal) -> Option<Arc<Session>> {
        match self.find(id, upstream, p) {
            Found::Here(s) => Some(s),
            Found::Refused | Found::Absent => None,
        }
    }

    /// Like [`get`](Self::get), telling a session this table does not hold
    /// (another replica may) from one it holds for someone else or that has
    /// idled out here.
    pub fn find(&self, id: &str, upstream: &str, p: &Principal) -> Found {
        let map = self.map.lock().expect("sessions lock");
        let Some(s) = map.get(id) else {
            return Found::Absent;
        };
        if s.upstream != upstream || !s.owner.is(p) {
            return Found::Refused;
        }
        if s.reach != Reach::Portable && s.idle_for() > self.idle {
            return Found::Refused;
        }
        s.touch();
        Found::Here(s.clone())
    }

    pub fn remove(&self, id: &str) -> Option<Arc<Session>> {
        let s = self.map.lock().expect("sessions lock").remove(id);
        if let Some(s) = &s {
            metrics::gauge!("mcpgate_gateway_sessions", "upstream" => s.upstream.clone())
                .decrement(1.0);
        }
        s
    }

    /// Removes the session whose id hashes to `id_hash` (one evicted or
    /// purged through the shared store), if this table holds it.
    pub fn remove_hashed(&self, id_hash: &str) -> Option<Arc<Session>> {
        let id = {
            let map = self.map.lock().expect("sessions lock");
            map.values()
                .find(|s| s.id_hash == id_hash)
                .map(|s| s.id.clone())
        }?;
        self.remove(&id)
    }

    /// Removes and returns sessions idle longer than the limit, and those
    /// whose dedicated child has exited.
    pub fn take_expired(&self) -> Vec<Arc<Session>> {
        let mut map = self.map.lock().expect("sessions lock");
        let gone: Vec<String> = map
            .values()
            .filter(|s| s.idle_for() > self.idle || s.child().is_some_and(|c| !c.is_alive()))
            .map(|s| s.id.clone())
            .collect();
        let out: Vec<_> = gone.iter().filter_map(|id| map.remove(id)).collect();
        for s in &out {
            metrics::gauge!("mcpgate_gateway_sessions", "upstream" => s.upstream.clone())
                .decrement(1.0);
        }
        out
    }

    /// Removes every session (shutdown).
    pub fn take_all(&self) -> Vec<Arc<Session>> {
        let mut map = self.map.lock().expect("sessions lock");
        let out: Vec<_> = map.drain().map(|(_, s)| s).collect();
        for s in &out {
            metrics::gauge!("mcpgate_gateway_sessions", "upstream" => s.upstream.clone())
                .decrement(1.0);
        }
        out
    }

    pub fn len(&self) -> usize {
        self.map.lock().expect("sessions lock").len()
    }

    /// Every live session (for inspection).
    pub fn snapshot(&self) -> Vec<Arc<Session>> {
        self.map
            .lock()
            .expect("sessions lock")
            .values()
            .cloned()
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What [`Sessions::find`] found.
pub enum Found {
    Here(Arc<Session>),
    /// Held here, but another principal's, another upstream's, or idle.
    Refused,
    /// Not held here.
    Absent,
}

/// (upstream, issuer, subject).
type UserKey = (String, String, String);

/// Per-user stdio children for stateless (2026-07-28) clients, keyed by
/// (upstream, issuer, subject) and never shared across users; and shared
/// children (`shared = true`), keyed by upstream.
#[derive(Default)]
pub struct Children {
    per_user: Mutex<HashMap<UserKey, (Arc<StdioChild>, Instant)>>,
    shared: Mutex<HashMap<String, Arc<StdioChild>>>,
}

impl Children {
    /// The live per-user child, or the one `spawn` makes.
    pub fn per_user<E>(
        &self,
        upstream: &str,
        p: &Principal,
        spawn: impl FnOnce() -> Result<Arc<StdioChild>, E>,
    ) -> Result<Arc<StdioChild>, E> {
        let key = (upstream.to_string(), p.issuer.clone(), p.subject.clone());
        let mut m = self.per_user.lock().expect("children lock");
        if let Some((c, used)) = m.get_mut(&key)
            && c.is_alive()
        {
            *used = Instant::now();
            return Ok(c.clone());
        }
        let c = spawn()?;
        m.insert(key, (c.clone(), Instant::now()));
        Ok(c)
    }

    /// The live shared child of `upstream`, or the one `spawn` makes.
    pub fn shared<E>(
        &self,
        upstream: &str,
        spawn: impl FnOnce() -> Result<Arc<StdioChild>, E>,
    ) -> Result<Arc<StdioChild>, E> {
        let mut m = self.shared.lock().expect("children lock");
        if let Some(c) = m.get(upstream)
            && c.is_alive()
        {
            return Ok(c.clone());
        }
        let c = spawn()?;
        m.insert(upstream.to_string(), c.clone());
        Ok(c)
    }

    /// Kills per-user children idle longer than `idle` (or already dead).
    pub fn reap_idle(&self, idle: Duration) {
        let mut m = self.per_user.lock().expect("children lock");
        m.retain(|_, (c, used)| {
            let keep = c.is_alive() && used.elapsed() <= idle;
            if !keep {
                c.kill();
            }
            keep
        });
        self.shared
            .lock()
            .expect("children lock")
            .retain(|_, c| c.is_alive());
    }

    /// Process ids of the live per-user and shared children.
    pub fn pids(&self) -> Vec<u32> {
        let mut out: Vec<u32> = self
            .per_user
            .lock()
            .expect("children lock")
            .values()
            .filter(|(c, _)| c.is_alive())
            .filter_map(|(c, _)| c.pid)
            .collect();
        out.extend(
            self.shared
                .lock()
                .expect("children lock")
                .values()
                .filter(|c| c.is_alive())
                .filter_map(|c| c.pid),
        );
        out
    }

    /// Kills every child (shutdown).
    pub fn kill_all(&self) -> Vec<Arc<StdioChild>> {
        let mut out: Vec<_> = self
            .per_user
            .lock()
            .expect("children lock")
            .drain()
            .map(|(_, (c, _))| c)
            .collect();
        out.extend(
            self.shared
                .lock()
                .expect("children lock")
                .drain()
                .map(|(_, c)| c),
        );
        for c in &out {
            c.kill();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use mcpgate_jose::SystemRng;
    use mcpgate_types::ScopeSet;

    use super::*;

    fn p(sub: &str, client: &str) -> Principal {
        Principal {
            issuer: "i".into(),
            subject: sub.into(),
            client_id: client.into(),
            scopes: ScopeSet::new(),
            groups: vec![],
            expires_at: 0,
            dpop_jkt: None,
        }
    }

    struct Nothing;
    impl Backend for Nothing {}

    fn http() -> Box<dyn Backend> {
        Box::new(Nothing)
    }

    fn slot() -> Slot {
        crate::capacity::Capacity::new(crate::config::ResourceLimits::default())
            .session()
            .unwrap()
    }

    #[test]
    fn ids_are_long_visible_ascii_and_distinct() {
        let s = Sessions::new(Duration::from_secs(60), Some(4), Arc::new(SystemRng::new()));
        let a = s.mint_id();
        assert!(a.len() >= 43);
        assert!(a.bytes().all(|b| (0x21..=0x7e).contains(&b)));
        assert_ne!(a, s.mint_id());
    }

    #[test]
    fn bound_to_owner_and_upstream() {
        let s = Sessions::new(Duration::from_secs(60), Some(4), Arc::new(SystemRng::new()));
        let id = s.mint_id();
        s.insert(
            id.clone(),
            "a",
            Owner::of(&p("alice", "c")),
            Reach::Local,
            http(),
            slot(),
        );
        assert!(s.get(&id, "a", &p("alice", "c")).is_some());
        assert!(s.get(&id, "a", &p("bob", "c")).is_none());
        assert!(s.get(&id, "a", &p("alice", "other-client")).is_none());
        assert!(s.get(&id, "b", &p("alice", "c")).is_none());
        assert!(s.get("guess", "a", &p("alice", "c")).is_none());
        assert!(s.remove(&id).is_some());
        assert!(s.get(&id, "a", &p("alice", "c")).is_none());
    }

    #[test]
    fn cap_evicts_least_recently_used() {
        let s = Sessions::new(Duration::from_secs(60), Some(2), Arc::new(SystemRng::new()));
        let (a, _) = s.insert(
            "a".into(),
            "u",
            Owner::of(&p("alice", "c")),
            Reach::Local,
            http(),
            slot(),
        );
        std::thread::sleep(Duration::from_millis(5));
        s.insert(
            "b".into(),
            "u",
            Owner::of(&p("alice", "c")),
            Reach::Local,
            http(),
            slot(),
        );
        s.insert(
            "x".into(),
            "u",
            Owner::of(&p("bob", "c")),
            Reach::Local,
            http(),
            slot(),
        );
        let (_, evicted) = s.insert(
            "c".into(),
            "u",
            Owner::of(&p("alice", "c")),
            Reach::Local,
            http(),
            slot(),
        );
        assert_eq!(evicted.unwrap().id, a.id);
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn idle_sessions_expire() {
        let s = Sessions::new(
            Duration::from_millis(1),
            Some(2),
            Arc::new(SystemRng::new()),
        );
        s.insert(
            "a".into(),
            "u",
            Owner::of(&p("alice", "c")),
            Reach::Local,
            http(),
            slot(),
        );
        std::thread::sleep(Duration::from_millis(10));
        assert!(s.get("a", "u", &p("alice", "c")).is_none());
        assert_eq!(s.take_expired().len(), 1);
        assert!(s.is_empty());
    }
}
