//! Who is connected to this process, by user, so that a revocation can
//! close their connections (1008 `revoked`) wherever it was asked for.
//!
//! A relay registers its user when it starts and is removed when its
//! [`Registration`] is dropped, however the connection ended.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio_util::sync::CancellationToken;

/// Open connections by user.
#[derive(Debug, Default)]
pub(crate) struct Live {
    users: Mutex<HashMap<String, HashMap<u64, CancellationToken>>>,
}

/// One connection's entry; its token is cancelled when its user is revoked.
#[derive(Debug)]
pub(crate) struct Registration {
    live: Arc<Live>,
    user: String,
    id: u64,
    pub(crate) revoked: CancellationToken,
}

impl Live {
    pub(crate) fn register(self: &Arc<Self>, user: &str, id: u64) -> Registration {
        let revoked = CancellationToken::new();
        self.users
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(user.to_owned())
            .or_default()
            .insert(id, revoked.clone());
        Registration {
            live: Arc::clone(self),
            user: user.to_owned(),
            id,
            revoked,
        }
    }

    /// Closes every connection of `user` in this process; returns how many.
    pub(crate) fn revoke(&self, user: &str) -> usize {
        let users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(conns) = users.get(user) else {
            return 0;
        };
        conns.values().for_each(CancellationToken::cancel);
        conns.len()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut users = self
            .live
            .users
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(conns) = users.get_mut(&self.user) {
            conns.remove(&self.id);
            if conns.is_empty() {
                users.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoking_a_user_cancels_only_their_connections() {
        let live = Arc::new(Live::default());
        let a1 = live.register("alice", 1);
        let a2 = live.register("alice", 2);
        let b = live.register("bob", 3);
        assert_eq!(live.revoke("alice"), 2);
        assert!(a1.revoked.is_cancelled() && a2.revoked.is_cancelled());
        assert!(!b.revoked.is_cancelled());
        drop((a1, a2));
        assert_eq!(live.revoke("alice"), 0);
        drop(b);
        assert!(live.users.lock().unwrap().is_empty());
    }
}
