//! The bounds on the whole process (`[limits]`): how many connections it
//! holds, and how much memory all connections together may hold for
//! messages being assembled for a message rule.
//!
//! Connections still at HTTP are bounded apart: in all, and per client
//! address.
//!
//! All are local to the process, whatever the store: they protect this
//! process's file descriptors and memory, which no other instance shares.
//! All hand out guards that give back what they hold when dropped, so no
//! path out of a handshake or a relay can leak a slot or a byte.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use wsgate_policy::limits::ClientKey;

/// Takes `n` from `left` if that many are left.
fn take(left: &AtomicU64, n: u64) -> bool {
    left.fetch_update(Ordering::AcqRel, Ordering::Acquire, |l| l.checked_sub(n))
        .is_ok()
}

/// Connection slots: one per handshake in progress or connection open.
#[derive(Debug)]
pub(crate) struct Slots {
    max: u64,
    left: AtomicU64,
}

/// One taken slot, given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot(Arc<Slots>);

impl Slots {
    pub(crate) fn new(max: u64) -> Arc<Self> {
        Arc::new(Slots {
            max,
            left: AtomicU64::new(max),
        })
    }

    /// A slot, or `None` when all `max` are taken.
    pub(crate) fn take(self: &Arc<Self>) -> Option<Slot> {
        take(&self.left, 1).then(|| Slot(Arc::clone(self)))
    }

    pub(crate) fn max(&self) -> u64 {
        self.max
    }

    pub(crate) fn in_use(&self) -> u64 {
        self.max - self.left.load(Ordering::Acquire)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.left.fetch_add(1, Ordering::AcqRel);
    }
}

/// Connections at HTTP per client address (`[limits] max_http_conns_per_ip`).
#[derive(Debug)]
pub(crate) struct PerAddress {
    max: u32,
    counts: Mutex<HashMap<ClientKey, u32>>,
}

/// One address's place, given back when dropped.
#[derive(Debug)]
pub(crate) struct AddressPlace(Arc<PerAddress>, ClientKey);

impl PerAddress {
    pub(crate) fn new(max: u32) -> Arc<Self> {
        Arc::new(PerAddress {
            max,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// A place for `key`, or `None` when it holds `max` already.
    pub(crate) fn take(self: &Arc<Self>, key: ClientKey) -> Option<AddressPlace> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let n = counts.entry(key).or_insert(0);
        // `max` is at least 1, so a refused address has an entry of its own
        // to keep: nothing is left at 0.
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(AddressPlace(Arc::clone(self), key))
    }

    pub(crate) fn max(&self) -> u32 {
        self.max
    }
}

impl Drop for AddressPlace {
    fn drop(&mut self) {
        let mut counts = (self.0.counts)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Entry::Occupied(mut e) = counts.entry(self.1) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }
}

/// What a connection holds while it speaks HTTP: its place among all such
/// connections and, unless it comes from a trusted proxy, among its
/// address's.
///
/// Held, never read: dropping it gives both back.
#[derive(Debug)]
pub(crate) struct AtHttp {
    pub(crate) _all: Slot,
    pub(crate) _address: Option<AddressPlace>,
}

/// Bytes for assembling messages, shared by all connections.
#[derive(Debug)]
pub(crate) struct Budget {
    max: u64,
    left: AtomicU64,
}

impl Budget {
    pub(crate) fn new(max: u64) -> Arc<Self> {
        Arc::new(Budget {
            max,
            left: AtomicU64::new(max),
        })
    }

    /// Bytes taken by all reservations now.
    pub(crate) fn in_use(&self) -> u64 {
        self.max - self.left.load(Ordering::Acquire)
    }

    pub(crate) fn max(&self) -> u64 {
        self.max
    }
}

/// The bytes one message being assembled holds, given back when dropped.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<Budget>,
    held: u64,
}

impl Reservation {
    pub(crate) fn new(budget: &Arc<Budget>) -> Self {
        Reservation {
            budget: Arc::clone(budget),
            held: 0,
        }
    }

    /// Takes `n` more bytes; `false` when the budget has not that many left.
    pub(crate) fn grow(&mut self, n: usize) -> bool {
        let n = n as u64;
        let ok = take(&self.budget.left, n);
        if ok {
            self.held += n;
        }
        ok
    }

    pub(crate) fn budget(&self) -> &Budget {
        &self.budget
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.left.fetch_add(self.held, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_run_out_and_come_back_when_dropped() {
        let slots = Slots::new(2);
        let a = slots.take().expect("first");
        let b = slots.take().expect("second");
        assert!(slots.take().is_none());
        drop(a);
        let c = slots.take().expect("a's slot again");
        assert!(slots.take().is_none());
        drop((b, c));
        assert_eq!(slots.left.load(Ordering::Acquire), 2);
    }

    #[test]
    fn an_address_holds_at_most_max_places_and_forgets_them() {
        let per = PerAddress::new(2);
        let key = |ip: &str| ClientKey::new(ip.parse().expect("an address"), 64);
        let (a, b, b_too) = (key("192.0.2.1"), key("2001:db8::1"), key("2001:db8::ffff"));
        let held = [per.take(a).expect("first"), per.take(a).expect("second")];
        assert!(per.take(a).is_none());
        let b1 = per.take(b).expect("b's first");
        let _b2 = per.take(b_too).expect("b's second, from its /64");
        assert!(per.take(b).is_none(), "one /64 is one address");
        drop(held);
        drop(b1);
        let counts = per.counts.lock().expect("not poisoned");
        assert_eq!(counts.get(&a), None, "emptied and removed");
        assert_eq!(counts.get(&b), Some(&1));
    }

    #[test]
    fn reservations_share_one_budget_and_give_it_back() {
        let budget = Budget::new(100);
        let mut a = Reservation::new(&budget);
        let mut b = Reservation::new(&budget);
        assert!(a.grow(60));
        assert!(!b.grow(41), "only 40 left");
        assert!(b.grow(40));
        assert_eq!(budget.in_use(), 100);
        assert!(!a.grow(1));
        drop(a);
        assert_eq!(budget.in_use(), 40);
        assert!(b.grow(60));
        drop(b);
        assert_eq!(budget.in_use(), 0);
    }
}
