//! The counts that connections share: handshakes per minute and open
//! connections per client address, and open connections per user, each per
//! route.
//!
//! One interface, decided by `[store] kind`: [`memory`] keeps them in this
//! process. Every check is a check-and-count in one step, so two handshakes
//! racing for the last slot cannot both get it. An open connection holds a
//! [`Lease`]; dropping it gives the counts back, whichever way the
//! connection ended.

pub(crate) mod memory;

use std::time::Duration;

use wsgate_config::Route;
use wsgate_policy::Reason;
use wsgate_policy::limits::ClientKey;

/// A limit that refused a handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Denied {
    pub(crate) reason: Reason,
    /// In words, for the log.
    pub(crate) detail: String,
    /// When trying again may succeed (`Retry-After`).
    pub(crate) retry_after: Option<Duration>,
}

/// The counts one open connection holds.
#[derive(Debug)]
pub(crate) enum Lease {
    #[expect(dead_code, reason = "held for what its Drop gives back")]
    Memory(memory::Lease),
}

/// Where the counts live.
pub(crate) enum Store {
    Memory(std::sync::Arc<memory::Memory>),
}

impl Store {
    /// The memory store for these routes.
    pub(crate) fn memory(routes: &[std::sync::Arc<Route>]) -> Self {
        Store::Memory(memory::Memory::new(routes))
    }

    /// Counts one handshake from `client` on route `route`.
    pub(crate) async fn handshake(&self, route: usize, client: ClientKey) -> Result<(), Denied> {
        match self {
            Store::Memory(m) => m.handshake(route, client),
        }
    }

    /// Takes a connection slot for `client` (and `user`) on route `route`.
    pub(crate) async fn open(
        &self,
        route: usize,
        client: ClientKey,
        user: Option<&str>,
    ) -> Result<Lease, Denied> {
        match self {
            Store::Memory(m) => m.open(route, client, user).map(Lease::Memory),
        }
    }
}

/// Seconds to wait, rounded up, at least one (a `Retry-After` of 0 invites a retry storm).
pub(crate) fn retry_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0).max(u64::from(d.is_zero()))
}
