//! The bounds on the whole process (`[limits]`): how many connections it
//! holds, and how much memory all connections together may hold for
//! messages being assembled for a message rule.
//!
//! Both are local to the process, whatever the store: they protect this
//! process's file descriptors and memory, which no other instance shares.
//! Both hand out guards that give back what they hold when dropped, so no
//! path out of a handshake or a relay can leak a slot or a byte.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
