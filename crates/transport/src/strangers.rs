//! The server's pool of connections that have not yet authenticated ("strangers").
//!
//! A stranger holds a place from the moment its connection is accepted until its hello is
//! accepted or it ends. The pool is small and shared fairly:
//! - at most `per_address` places per address (IPv4) or /64 (IPv6); a further connection from
//!   that address is refused, so one host cannot take everyone's places;
//! - when the whole pool is full, the oldest stranger is evicted to make room for the newcomer.
//!   Many hosts that hold places without ever saying hello therefore cannot keep a client with
//!   the token out: each newcomer gets the place of whoever has waited longest, and a client
//!   that answers promptly finishes its hello long before it becomes the oldest.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// The pool of unauthenticated connections.
#[derive(Debug)]
pub(crate) struct Strangers {
    max: usize,
    per_address: usize,
    state: Mutex<State>,
}

/// Who holds the places, under one lock.
#[derive(Debug, Default)]
struct State {
    /// The next place's number; places are numbered in arrival order.
    next: u64,
    /// Each place by number: the address it counts under, and the sender whose drop tells the
    /// connection it was evicted.
    held: BTreeMap<u64, (IpAddr, oneshot::Sender<()>)>,
    /// Places held per address key.
    per_key: HashMap<IpAddr, usize>,
}

impl State {
    /// Gives back place `id`, if still held; dropping its sender wakes its [`Place::evicted`].
    fn release(&mut self, id: u64) {
        if let Some((key, _signal)) = self.held.remove(&id)
            && let Some(count) = self.per_key.get_mut(&key)
        {
            *count -= 1;
            if *count == 0 {
                self.per_key.remove(&key);
            }
        }
    }
}

/// Why a stranger was not given a place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AddressFull;

/// One stranger's place, given back on drop.
#[derive(Debug)]
pub(crate) struct Place {
    pool: Arc<Strangers>,
    id: u64,
    /// Resolves (with an error) once a newer stranger took this place.
    pub(crate) evicted: oneshot::Receiver<()>,
}

/// The key an address counts under: the IPv4 address, or the IPv6 /64.
pub(crate) fn host_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
        v4 => v4,
    }
}

impl Strangers {
    /// A pool of `max` places, at most `per_address` of them per address. Both are at least 1
    /// (the server's settings are checked before).
    pub(crate) fn new(max: usize, per_address: usize) -> Arc<Self> {
        Arc::new(Strangers {
            max: max.max(1),
            per_address: per_address.max(1),
            state: Mutex::new(State::default()),
        })
    }

    /// Places held now.
    pub(crate) fn held(&self) -> usize {
        self.lock().held.len()
    }

    /// The pool's size.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// A place for a connection from `ip`, evicting the oldest stranger when the pool is full.
    /// Refused when `ip`'s address already holds its share. The second value says whether
    /// someone was evicted.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<(Place, bool), AddressFull> {
        let key = host_key(ip);
        let mut state = self.lock();
        if state.per_key.get(&key).copied().unwrap_or(0) >= self.per_address {
            return Err(AddressFull);
        }
        let mut evicted = false;
        while state.held.len() >= self.max {
            let Some(&oldest) = state.held.keys().next() else {
                break;
            };
            state.release(oldest);
            evicted = true;
        }
        let id = state.next;
        state.next += 1;
        let (signal, evicted_rx) = oneshot::channel();
        state.held.insert(id, (key, signal));
        *state.per_key.entry(key).or_insert(0) += 1;
        Ok((
            Place {
                pool: self.clone(),
                id,
                evicted: evicted_rx,
            },
            evicted,
        ))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.pool.lock().release(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn an_address_gets_its_share_and_no_more() {
        let pool = Strangers::new(8, 2);
        let a = pool.admit(ip("10.0.0.1")).expect("first");
        let _b = pool.admit(ip("10.0.0.1")).expect("second");
        assert_eq!(
            pool.admit(ip("10.0.0.1")).expect_err("its share is taken"),
            AddressFull
        );
        // Another host is not affected, and a place given back is free again.
        let _c = pool.admit(ip("10.0.0.2")).expect("another host");
        drop(a);
        pool.admit(ip("10.0.0.1")).expect("a place came back");
    }

    #[test]
    fn ipv6_hosts_count_per_64() {
        let pool = Strangers::new(8, 1);
        let _a = pool.admit(ip("2001:db8::1")).expect("first");
        assert!(pool.admit(ip("2001:db8::2")).is_err(), "same /64");
        pool.admit(ip("2001:db8:0:1::1")).expect("another /64");
    }

    #[test]
    fn a_full_pool_evicts_its_oldest_stranger() {
        let pool = Strangers::new(3, 1);
        let (mut first, evicted) = pool.admit(ip("10.0.0.1")).expect("1");
        assert!(!evicted);
        let (mut second, _) = pool.admit(ip("10.0.0.2")).expect("2");
        let (_third, _) = pool.admit(ip("10.0.0.3")).expect("3");
        assert_eq!(pool.held(), 3);
        assert!(
            first
                .evicted
                .try_recv()
                .is_err_and(|e| e == oneshot::error::TryRecvError::Empty)
        );

        let (_fourth, evicted) = pool.admit(ip("10.0.0.4")).expect("4");
        assert!(evicted, "the pool was full");
        assert_eq!(pool.held(), 3);
        // The oldest was told; the second was not.
        assert_eq!(
            first.evicted.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        );
        assert_eq!(
            second.evicted.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        );
        // Its address's share is free again, and dropping its place later changes nothing.
        let (_again, evicted) = pool.admit(ip("10.0.0.1")).expect("10.0.0.1 again");
        assert!(evicted, "the second was the oldest now");
        drop(first);
        assert_eq!(pool.held(), 3);
        assert_eq!(
            second.evicted.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        );
    }
}
