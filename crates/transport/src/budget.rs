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

/// Accounts that share a parent and whose caps shrink as more of them are alive: the peer
/// hosts of one server. With n alive, each may hold at most 1/(n + 1) of the parent's cap (and
/// never more than its own cap), so one more account always finds its part free.
#[derive(Debug)]
struct Crowd {
    /// Accounts of the crowd alive now.
    alive: Arc<AtomicUsize>,
    /// The parent's cap, divided among the crowd.
    whole: u64,
}

impl Account {
    /// The cap now.
    fn cap(&self) -> u64 {
        match &self.crowd {
            Some(crowd) => {
                let alive = crowd.alive.load(Ordering::Acquire) as u64;
                self.cap.min(crowd.whole / (alive + 1))
            }
            None => self.cap,
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
/// connections draw on one budget of the host's, a child of the server's. With n hosts
/// connected, a host may hold at most 1/(n + 1) of the server's budget, and never more than
/// its share, so that no number of greedy hosts can starve the others: the hosts connected
/// hold at most n/(n + 1) of the budget together, and a host that connects next finds its part
/// free (beyond its cap a host is told `Busy`). The caps apply to new charges: a host over its
/// cap when another connects keeps what it holds, and is refused until it has given enough
/// back (frames and requests have deadlines).
#[derive(Debug)]
pub(crate) struct HostShares {
    server: MemoryBudget,
    /// A host's cap, however few hosts are connected; the server's budget turns the shares
    /// off.
    share_cap: u64,
    /// Host budgets alive now.
    alive: Arc<AtomicUsize>,
    /// Each host's budget while one of its connections holds it.
    hosts: Mutex<HashMap<IpAddr, Weak<Account>>>,
}

impl HostShares {
    /// Shares of `server`, each at most `share_cap` bytes (the server's whole budget turns
    /// the shares off).
    pub(crate) fn new(server: MemoryBudget, share_cap: u64) -> Self {
        HostShares {
            server,
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
        let whole = self.server.cap();
        let crowd = (self.share_cap < whole).then(|| Crowd {
            alive: self.alive.clone(),
            whole,
        });
        let budget = self.server.child_in("host", self.share_cap, crowd);
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
    fn each_host_leaves_room_for_one_more() {
        let server = MemoryBudget::new("server", 120);
        let shares = HostShares::new(server.clone(), 60);
        let host = |ip: &str| shares.of(ip.parse().expect("ip")).child("connection", 100);
        // Alone, a host may take half, over several connections.
        let a = host("10.0.0.1");
        let a2 = shares
            .of("10.0.0.1".parse().expect("ip"))
            .child("connection", 100);
        let held = a.reserve(40).expect("fits");
        let more = a2.reserve(20).expect("fits: alone");
        let err = a2.reserve(1).expect_err("half is a lone host's");
        assert_eq!((err.scope, err.used, err.cap), ("host", 60, 60));
        drop((held, more));
        // Two greedy hosts take a third each, and a third host finds its third free.
        let b = host("10.0.0.2");
        let _a = a.reserve(40).expect("a third");
        let _b = b.reserve(40).expect("a third");
        assert!(a.reserve(1).is_err() && b.reserve(1).is_err());
        let c = host("10.0.0.3");
        let err = c.reserve(31).expect_err("with three hosts, a quarter");
        assert_eq!((err.scope, err.cap), ("host", 30));
        let _c = c.reserve(30).expect("the newcomer is served");
        assert_eq!(server.used(), 110);
        // The other hosts gone, the caps grow back.
        drop((_b, b, _c, c));
        let _more = a.reserve(20).expect("alone again: half");
        // An IPv6 /64 is one host.
        let x: std::net::IpAddr = "2001:db8::1".parse().expect("ip");
        let y: std::net::IpAddr = "2001:db8::2".parse().expect("ip");
        let kept = shares.of(x);
        assert_eq!(shares.of(y).used(), 0);
        assert!(Arc::ptr_eq(&kept.account, &shares.of(y).account));
    }

    #[test]
    fn the_whole_budget_as_a_share_turns_the_shares_off() {
        let server = MemoryBudget::new("server", 100);
        let shares = HostShares::new(server.clone(), 100);
        let a = shares
            .of("10.0.0.1".parse().expect("ip"))
            .child("connection", 100);
        let _b = shares.of("10.0.0.2".parse().expect("ip"));
        let _all = a.reserve(100).expect("no shares");
    }
}
