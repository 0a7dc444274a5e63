//! Memory budgets counted in bytes.
//!
//! The server holds one [`MemoryBudget`] for itself, one per peer host (a child of it, shared
//! by the host's connections; see `HostShares`) and one per connection (a child of its
//! host's). Every buffer that a peer can make the server hold (a frame being read, its decoded message
//! while the request waits or runs, a reply waiting to be sent) is charged to the connection's
//! budget, and through it to its host's and the server's, *before* it is allocated, as a [`Reservation`] that
//! gives the bytes back when it is dropped. A charge that would exceed either budget fails
//! with [`OverBudget`], which the server answers with `Busy`: memory grows only with bytes
//! received and work admitted, and never past the budgets.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use crate::strangers::host_key;

/// A charge refused because it would exceed a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "{wanted} more bytes would exceed the {scope}'s memory budget ({used} of {cap} bytes in use); retry later or send a smaller request"
)]
pub struct OverBudget {
    /// Which budget refused: `"connection"`, `"host"` or `"server"`.
    pub scope: &'static str,
    /// Bytes asked for.
    pub wanted: u64,
    /// Bytes in use when it was refused.
    pub used: u64,
    /// The budget (as it stood: a host's is its share while other hosts are connected).
    pub cap: u64,
}

#[derive(Debug)]
struct Account {
    scope: &'static str,
    cap: u64,
    /// The tighter cap that applies while other accounts of a crowd are alive.
    crowd: Option<Crowd>,
    used: AtomicU64,
    peak: AtomicU64,
    parent: Option<Arc<Account>>,
}

/// Accounts that share a parent and each get a smaller cap while any other is alive: the peer
/// hosts of one server.
#[derive(Debug)]
struct Crowd {
    /// Accounts of the crowd alive now.
    alive: Arc<AtomicUsize>,
    /// The cap while more than one is alive.
    crowded_cap: u64,
}

impl Account {
    /// The cap now.
    fn cap(&self) -> u64 {
        match &self.crowd {
            Some(crowd) if crowd.alive.load(Ordering::Acquire) > 1 => crowd.crowded_cap,
            _ => self.cap,
        }
    }

    /// Adds `bytes` here and in every parent, or nowhere.
    fn charge(&self, bytes: u64) -> Result<(), OverBudget> {
        let cap = self.cap();
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let next = used.saturating_add(bytes);
            if next > cap {
                return Err(OverBudget {
                    scope: self.scope,
                    wanted: bytes,
                    used,
                    cap,
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

impl Drop for Account {
    fn drop(&mut self) {
        if let Some(crowd) = &self.crowd {
            crowd.alive.fetch_sub(1, Ordering::AcqRel);
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
                crowd: None,
                used: AtomicU64::new(0),
                peak: AtomicU64::new(0),
                parent: None,
            }),
        }
    }

    /// A budget of `cap` bytes whose every charge also counts against this one.
    pub fn child(&self, scope: &'static str, cap: u64) -> Self {
        self.child_in(scope, cap, None)
    }

    /// [`MemoryBudget::child`], one of `crowd` when given (counted alive until dropped).
    fn child_in(&self, scope: &'static str, cap: u64, crowd: Option<Crowd>) -> Self {
        if let Some(crowd) = &crowd {
            crowd.alive.fetch_add(1, Ordering::AcqRel);
        }
        MemoryBudget {
            account: Arc::new(Account {
                scope,
                cap,
                crowd,
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

    /// The budget in bytes now (a host's share while other hosts are connected).
    pub fn cap(&self) -> u64 {
        self.account.cap()
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

/// The server's budget shared among peer hosts (an IPv4 address, or an IPv6 /64): each host's
/// connections draw on one budget of the host's, a child of the server's. While more than one
/// host is connected, a host may hold at most its share of the server's budget, so that one
/// host cannot take all of it and starve the others (it is told `Busy` beyond its share). A
/// host alone may hold more, but not all: room is left for a host that connects later to be
/// served at once. A host over its share when another connects keeps what it holds, and is
/// refused until it has given enough back (frames and requests have deadlines).
#[derive(Debug)]
pub(crate) struct HostShares {
    server: MemoryBudget,
    /// A host's cap while it is the only one connected.
    alone_cap: u64,
    /// A host's cap while other hosts are connected.
    share_cap: u64,
    /// Host budgets alive now.
    alive: Arc<AtomicUsize>,
    /// Each host's budget while one of its connections holds it.
    hosts: Mutex<HashMap<IpAddr, Weak<Account>>>,
}

impl HostShares {
    /// Shares of `server`: `alone_cap` bytes for a host alone, `share_cap` per host while
    /// several are connected.
    pub(crate) fn new(server: MemoryBudget, alone_cap: u64, share_cap: u64) -> Self {
        HostShares {
            server,
            alone_cap,
            share_cap,
            alive: Arc::default(),
            hosts: Mutex::default(),
        }
    }

    /// The budget of the host at `ip`, shared by all its connections; it lives while one of
    /// them holds it (a connection's budget is its child).
    pub(crate) fn of(&self, ip: IpAddr) -> MemoryBudget {
        let key = host_key(ip);
        let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(account) = hosts.get(&key).and_then(Weak::upgrade) {
            return MemoryBudget { account };
        }
        // Hosts whose connections are all gone leave the map: it holds the hosts connected now.
        hosts.retain(|_, account| account.strong_count() > 0);
        let crowd = Crowd {
            alive: self.alive.clone(),
            crowded_cap: self.share_cap,
        };
        let budget = self.server.child_in("host", self.alone_cap, Some(crowd));
        hosts.insert(key, Arc::downgrade(&budget.account));
        budget
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

    #[test]
    fn a_host_holds_at_most_its_share_while_another_is_connected() {
        let server = MemoryBudget::new("server", 100);
        let shares = HostShares::new(server.clone(), 100, 50);
        let greedy: std::net::IpAddr = "10.0.0.1".parse().expect("ip");
        let other: std::net::IpAddr = "10.0.0.2".parse().expect("ip");
        // Alone, a host may take everything, over several connections.
        let first = shares.of(greedy).child("connection", 60);
        let second = shares.of(greedy).child("connection", 60);
        let held = first.reserve(60).expect("fits");
        let more = second.reserve(40).expect("fits: alone");
        drop((held, more));
        // With another host connected, it is held to its share, across its connections.
        let polite = shares.of(other).child("connection", 60);
        let held = first.reserve(30).expect("within the share");
        let err = second.reserve(21).expect_err("over the share");
        assert_eq!((err.scope, err.used, err.cap), ("host", 30, 50));
        let theirs = polite.reserve(50).expect("the other host's share is free");
        // The other host gone, the share no longer applies.
        drop(theirs);
        drop(polite);
        let _more = second.reserve(60).expect("alone again");
        drop(held);
        // An IPv6 /64 is one host.
        let a: std::net::IpAddr = "2001:db8::1".parse().expect("ip");
        let b: std::net::IpAddr = "2001:db8::2".parse().expect("ip");
        let kept = shares.of(a);
        assert_eq!(shares.of(b).used(), 0);
        assert!(Arc::ptr_eq(&kept.account, &shares.of(b).account));
    }
}
