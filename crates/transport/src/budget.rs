//! Memory budgets counted in bytes.
//!
//! The server holds one [`MemoryBudget`] for itself and one per connection, a child of it.
//! Every buffer that a peer can make the server hold (a frame being read, its decoded message
//! while the request waits or runs, a reply waiting to be sent) is charged to the connection's
//! budget, and through it to the server's, *before* it is allocated, as a [`Reservation`] that
//! gives the bytes back when it is dropped. A charge that would exceed either budget fails
//! with [`OverBudget`], which the server answers with `Busy`: memory grows only with bytes
//! received and work admitted, and never past the budgets.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A charge refused because it would exceed a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "{wanted} more bytes would exceed the {scope}'s memory budget ({used} of {cap} bytes in use); retry later or send a smaller request"
)]
pub struct OverBudget {
    /// Which budget refused: `"connection"` or `"server"`.
    pub scope: &'static str,
    /// Bytes asked for.
    pub wanted: u64,
    /// Bytes in use when it was refused.
    pub used: u64,
    /// The budget.
    pub cap: u64,
}

#[derive(Debug)]
struct Account {
    scope: &'static str,
    cap: u64,
    used: AtomicU64,
    peak: AtomicU64,
    parent: Option<Arc<Account>>,
}

impl Account {
    /// Adds `bytes` here and in every parent, or nowhere.
    fn charge(&self, bytes: u64) -> Result<(), OverBudget> {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let next = used.saturating_add(bytes);
            if next > self.cap {
                return Err(OverBudget {
                    scope: self.scope,
                    wanted: bytes,
                    used,
                    cap: self.cap,
                });
            }
            match self
                .used
                .compare_exchange_weak(used, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.peak.fetch_max(next, Ordering::Relaxed);
                    break;
                }
                Err(now) => used = now,
            }
        }
        if let Some(parent) = &self.parent
            && let Err(e) = parent.charge(bytes)
        {
            self.used.fetch_sub(bytes, Ordering::AcqRel);
            return Err(e);
        }
        Ok(())
    }

    /// Gives `bytes` back here and in every parent.
    fn release(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
        if let Some(parent) = &self.parent {
            parent.release(bytes);
        }
    }
}

/// A budget of bytes that [`Reservation`]s draw from; cloning shares it.
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    account: Arc<Account>,
}

impl MemoryBudget {
    /// A budget of `cap` bytes; `scope` names it in refusals (e.g. `"server"`).
    pub fn new(scope: &'static str, cap: u64) -> Self {
        MemoryBudget {
            account: Arc::new(Account {
                scope,
                cap,
                used: AtomicU64::new(0),
                peak: AtomicU64::new(0),
                parent: None,
            }),
        }
    }

    /// A budget of `cap` bytes whose every charge also counts against this one.
    pub fn child(&self, scope: &'static str, cap: u64) -> Self {
        MemoryBudget {
            account: Arc::new(Account {
                scope,
                cap,
                used: AtomicU64::new(0),
                peak: AtomicU64::new(0),
                parent: Some(self.account.clone()),
            }),
        }
    }

    /// Bytes reserved now.
    pub fn used(&self) -> u64 {
        self.account.used.load(Ordering::Acquire)
    }

    /// The most bytes ever reserved at once.
    pub fn peak(&self) -> u64 {
        self.account.peak.load(Ordering::Acquire)
    }

    /// The budget in bytes.
    pub fn cap(&self) -> u64 {
        self.account.cap
    }

    /// Reserves `bytes`, or refuses when this budget or a parent would go over.
    pub fn reserve(&self, bytes: u64) -> Result<Reservation, OverBudget> {
        let mut reservation = self.reservation();
        reservation.grow(bytes)?;
        Ok(reservation)
    }

    /// An empty reservation that can [`grow`](Reservation::grow).
    pub fn reservation(&self) -> Reservation {
        Reservation {
            account: self.account.clone(),
            bytes: 0,
        }
    }
}

/// Bytes held against a [`MemoryBudget`], given back on drop.
#[derive(Debug)]
pub struct Reservation {
    account: Arc<Account>,
    bytes: u64,
}

impl Reservation {
    /// Reserves `bytes` more, or refuses (and keeps what it held) when a budget would go over.
    pub fn grow(&mut self, bytes: u64) -> Result<(), OverBudget> {
        self.account.charge(bytes)?;
        self.bytes += bytes;
        Ok(())
    }

    /// Gives back everything above `bytes`.
    pub fn shrink_to(&mut self, bytes: u64) {
        if bytes < self.bytes {
            self.account.release(self.bytes - bytes);
            self.bytes = bytes;
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.account.release(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_count_in_the_child_and_the_parent_and_come_back() {
        let server = MemoryBudget::new("server", 100);
        let a = server.child("connection", 60);
        let b = server.child("connection", 60);
        let ra = a.reserve(50).expect("fits");
        let err = a.reserve(11).expect_err("connection over");
        assert_eq!((err.scope, err.used, err.cap), ("connection", 50, 60));
        let err = b.reserve(51).expect_err("server over");
        assert_eq!(err.scope, "server");
        assert_eq!(b.used(), 0, "a refused charge leaves nothing behind");
        let mut rb = b.reserve(50).expect("fits");
        assert_eq!(server.used(), 100);
        rb.shrink_to(20);
        assert_eq!((server.used(), b.used()), (70, 20));
        drop(ra);
        drop(rb);
        assert_eq!((server.used(), a.used(), b.used()), (0, 0, 0));
        assert_eq!(server.peak(), 100);
    }
}
