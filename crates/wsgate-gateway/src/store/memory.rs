//! The memory store: the shared state of one gateway process.
//!
//! Handshake rates are one keyed GCRA limiter per route (governor), pruned
//! of idle keys as it grows so a spray of addresses cannot grow it without
//! bound. Open connections are counters in one map, removed at zero. Both
//! are keyed by the route's path and take the route's limits at each call,
//! so a reload that reorders routes or changes a limit applies at once (a
//! changed handshake rate starts its route's allowance afresh).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use wsgate_config::Route;
use wsgate_policy::Reason;
use wsgate_policy::limits::ClientKey;

use super::Denied;
use crate::tickets::TicketStore;

/// Checks between prunings of idle handshake-rate keys.
const PRUNE_EVERY: u64 = 1024;

type Keyed<C> = RateLimiter<
    ClientKey,
    DefaultKeyedStateStore<ClientKey>,
    C,
    NoOpMiddleware<<C as Clock>::Instant>,
>;

/// What an open connection is counted under: the route's path and who.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Client(Arc<str>, ClientKey),
    User(Arc<str>, String),
}

/// One route's handshake allowance: its rate, and the limiter for it.
type Allowance<C> = Arc<(u32, Keyed<C>)>;

/// The shared state of this process.
pub(crate) struct Memory<C: Clock = DefaultClock> {
    clock: C,
    /// By route path.
    handshakes: Mutex<HashMap<String, Allowance<C>>>,
    checks: AtomicU64,
    open: Mutex<HashMap<Key, u32>>,
    /// Users refused until the time given.
    revoked: Mutex<HashMap<String, SystemTime>>,
    pub(crate) tickets: TicketStore,
}

/// The counts one connection holds; given back when dropped.
pub(crate) struct Lease {
    store: Arc<Memory>,
    keys: Vec<Key>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("keys", &self.keys).finish()
    }
}

impl Memory<DefaultClock> {
    pub(crate) fn new(ticket_ttl: Duration) -> Arc<Self> {
        Arc::new(Self::with_clock(DefaultClock::default(), ticket_ttl))
    }

    pub(crate) fn open(
        self: &Arc<Self>,
        route: &Route,
        client: ClientKey,
        user: Option<&str>,
    ) -> Result<Lease, Denied> {
        if let Some(user) = user {
            self.check_revoked(user)?;
        }
        let keys = self.take(route, client, user)?;
        Ok(Lease {
            store: Arc::clone(self),
            keys,
        })
    }
}

impl<C: Clock + Clone> Memory<C> {
    fn with_clock(clock: C, ticket_ttl: Duration) -> Self {
        Memory {
            clock,
            handshakes: Mutex::new(HashMap::new()),
            checks: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
            revoked: Mutex::new(HashMap::new()),
            tickets: TicketStore::new(ticket_ttl),
        }
    }

    pub(crate) fn revoke(&self, user: &str, until: SystemTime) {
        let mut revoked = self.revoked.lock().unwrap_or_else(PoisonError::into_inner);
        let now = SystemTime::now();
        revoked.retain(|_, t| *t > now);
        revoked.insert(user.to_owned(), until);
    }

    fn check_revoked(&self, user: &str) -> Result<(), Denied> {
        let revoked = self.revoked.lock().unwrap_or_else(PoisonError::into_inner);
        match revoked
            .get(user)
            .map(|t| t.duration_since(SystemTime::now()))
        {
            Some(Ok(left)) => Err(super::revoked(user, Some(left))),
            _ => Ok(()),
        }
    }

    /// The limiter for `route`'s handshake rate, made afresh when the rate changed.
    fn allowance(&self, route: &Route) -> Option<Allowance<C>> {
        let per_min = route
            .limits
            .handshakes_per_ip_per_min
            .and_then(NonZeroU32::new)?;
        let mut all = self
            .handshakes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(a) = all.get(&route.path)
            && a.0 == per_min.get()
        {
            return Some(Arc::clone(a));
        }
        let fresh = Arc::new((
            per_min.get(),
            RateLimiter::hashmap_with_clock(Quota::per_minute(per_min), self.clock.clone()),
        ));
        all.insert(route.path.clone(), Arc::clone(&fresh));
        Some(fresh)
    }

    pub(crate) fn handshake(&self, route: &Route, client: ClientKey) -> Result<(), Denied> {
        let Some(allowance) = self.allowance(route) else {
            return Ok(());
        };
        let (per_min, limiter) = &*allowance;
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            limiter.retain_recent();
        }
        limiter.check_key(&client).map_err(|not_until| Denied {
            reason: Reason::RateLimited,
            detail: format!("more than {per_min} handshakes per minute from {client}"),
            retry_after: Some(not_until.wait_time_from(self.clock.now())),
            limit: Some("handshakes_per_ip_per_min"),
        })
    }

    /// Counts one connection under each key the route limits, or none if any is full.
    fn take(
        &self,
        route: &Route,
        client: ClientKey,
        user: Option<&str>,
    ) -> Result<Vec<Key>, Denied> {
        let limits = &route.limits;
        let mut wanted = Vec::with_capacity(2);
        let path: Arc<str> = Arc::from(route.path.as_str());
        if let Some(max) = limits.max_conns_per_ip {
            wanted.push((Key::Client(Arc::clone(&path), client), max));
        }
        if let (Some(max), Some(user)) = (limits.max_conns_per_user, user) {
            wanted.push((Key::User(path, user.to_owned()), max));
        }
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        for (key, max) in &wanted {
            if open.get(key).copied().unwrap_or(0) >= *max {
                return Err(full(key, *max));
            }
        }
        for (key, _) in &wanted {
            *open.entry(key.clone()).or_insert(0) += 1;
        }
        Ok(wanted.into_iter().map(|(k, _)| k).collect())
    }

    fn give_back(&self, keys: &[Key]) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        for key in keys {
            if let Some(n) = open.get_mut(key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    open.remove(key);
                }
            }
        }
    }
}

/// The refusal for a full count.
fn full(key: &Key, max: u32) -> Denied {
    match key {
        Key::Client(_, c) => super::full(super::Counted::Client(c), max),
        Key::User(_, u) => super::full(super::Counted::User(u), max),
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.store.give_back(&self.keys);
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;
    use wsgate_config::Limits;

    fn route(limits: Limits) -> Arc<Route> {
        let src = r#"
[[listener]]
bind = "127.0.0.1:0"
[[route]]
path = "/"
upstream = "ws://127.0.0.1:1"
auth = "none"
allow_missing_origin = true
"#;
        let mut r = wsgate_config::parse(src, std::path::Path::new("."))
            .expect("config")
            .routes
            .remove(0);
        r.limits = limits;
        Arc::new(r)
    }

    fn key(ip: &str) -> ClientKey {
        ClientKey::new(ip.parse().expect("ip"), 64)
    }

    #[test]
    fn handshakes_per_minute_refill_and_say_when_to_retry() {
        let clock = FakeRelativeClock::default();
        let limits = Limits {
            handshakes_per_ip_per_min: Some(2),
            ..Limits::default()
        };
        let route = route(limits);
        let store = Memory::with_clock(clock.clone(), Duration::from_secs(1));
        let a = key("192.0.2.1");
        assert_eq!(store.handshake(&route, a), Ok(()));
        assert_eq!(store.handshake(&route, a), Ok(()));
        let denied = store.handshake(&route, a).unwrap_err();
        assert_eq!(denied.reason, Reason::RateLimited);
        assert_eq!(denied.retry_after, Some(Duration::from_secs(30)));
        assert!(denied.detail.contains("192.0.2.1"), "{}", denied.detail);
        // Another address has its own allowance.
        assert_eq!(store.handshake(&route, key("192.0.2.2")), Ok(()));
        clock.advance(Duration::from_secs(30));
        assert_eq!(store.handshake(&route, a), Ok(()));
        assert!(store.handshake(&route, a).is_err());
    }

    #[test]
    fn connection_counts_hold_per_address_and_user_and_are_given_back() {
        let limits = Limits {
            max_conns_per_ip: Some(2),
            max_conns_per_user: Some(1),
            ..Limits::default()
        };
        let route = route(limits);
        let store = Memory::new(Duration::from_secs(1));
        let a = key("2001:db8::1");
        let a_sibling = key("2001:db8::2");
        let first = store.open(&route, a, Some("alice")).expect("first");
        let denied = store.open(&route, a_sibling, Some("alice")).unwrap_err();
        assert_eq!(denied.reason, Reason::TooManyConnections);
        assert!(denied.detail.contains("\"alice\""), "{}", denied.detail);
        // The refused attempt took nothing: the same /64 still has one slot.
        let bob = store.open(&route, a_sibling, Some("bob")).expect("bob");
        let denied = store.open(&route, a, Some("carol")).unwrap_err();
        assert!(denied.detail.contains("2001:db8::/64"), "{}", denied.detail);
        drop(first);
        let again = store.open(&route, a, Some("alice")).expect("alice again");
        drop((bob, again));
        assert!(store.open.lock().unwrap().is_empty());
    }

    #[test]
    fn a_revoked_user_is_refused_until_the_time_given() {
        let route = route(Limits::default());
        let store = Memory::new(Duration::from_secs(1));
        let a = key("192.0.2.1");
        store.revoke("alice", SystemTime::now() + Duration::from_secs(600));
        let denied = store.open(&route, a, Some("alice")).unwrap_err();
        assert_eq!(denied.reason, Reason::Forbidden);
        assert!(denied.detail.contains("revoked for"), "{}", denied.detail);
        assert!(store.open(&route, a, Some("bob")).is_ok());
        store.revoke("alice", SystemTime::now() - Duration::from_secs(1));
        assert!(store.open(&route, a, Some("alice")).is_ok());
    }
}
