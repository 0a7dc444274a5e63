//! A userspace UDP relay that makes a link worse: one-way delay, jitter, random loss and an
//! optional rate limit with a bounded queue. It stands in for `netem`, which this kernel lacks,
//! in tests and experiments.
//!
//! Clients send to [`Relay::local_addr`]; the relay forwards each client's datagrams to the
//! upstream server from a socket of its own and sends the answers back. Both directions get the
//! same impairments. Jitter never reorders packets: a packet leaves no earlier than the one
//! before it.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use partition_core::synthetic::SplitMix64;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Largest datagram relayed.
const MAX_DATAGRAM: usize = 65536;

/// How the relay degrades the link, per direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RelayConfig {
    /// One-way delay added to every packet (RTT grows by twice this).
    pub delay: Duration,
    /// Extra delay drawn uniformly from `0..=jitter` per packet.
    pub jitter: Duration,
    /// Probability in [0, 1) that a packet is dropped.
    pub loss_rate: f64,
    /// Rate limit in Mbit/s (10^6 bit/s), if any.
    pub rate_mbps: Option<f64>,
    /// Bytes that may wait for the rate limiter before packets are tail-dropped.
    pub queue_bytes: usize,
    /// Seed of the loss and jitter generator, for reproducible runs.
    pub seed: u64,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss_rate: 0.0,
            rate_mbps: None,
            queue_bytes: 256 * 1024,
            seed: 1,
        }
    }
}

/// Why a relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// A setting is out of range.
    #[error("invalid relay setting: {0}")]
    Config(String),
    /// A socket could not be bound.
    #[error("relay cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The failure.
        source: std::io::Error,
    },
}

/// Packet counters, both directions together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RelayStats {
    /// Packets delivered.
    pub forwarded: u64,
    /// Packets dropped by the loss model.
    pub lost: u64,
    /// Packets dropped because the rate limiter's queue was full.
    pub overflowed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    forwarded: AtomicU64,
    lost: AtomicU64,
    overflowed: AtomicU64,
}

/// A running relay. Dropping it stops it.
#[derive(Debug)]
pub struct Relay {
    local_addr: SocketAddr,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Relay {
    /// Starts relaying from `listen` to `upstream`.
    pub async fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        config: RelayConfig,
    ) -> Result<Relay, RelayError> {
        if !(0.0..1.0).contains(&config.loss_rate) {
            return Err(RelayError::Config(format!(
                "loss rate {} is outside [0, 1)",
                config.loss_rate
            )));
        }
        if let Some(rate) = config.rate_mbps
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(RelayError::Config(format!(
                "rate {rate} Mbit/s is not a finite positive number"
            )));
        }
        let front = UdpSocket::bind(listen)
            .await
            .map_err(|source| RelayError::Bind {
                addr: listen,
                source,
            })?;
        let local_addr = front.local_addr().map_err(|source| RelayError::Bind {
            addr: listen,
            source,
        })?;
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(run_front(
            Arc::new(front),
            upstream,
            config,
            counters.clone(),
        ));
        Ok(Relay {
            local_addr,
            counters,
            task,
        })
    }

    /// Where clients should send.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Packet counters so far.
    pub fn stats(&self) -> RelayStats {
        RelayStats {
            forwarded: self.counters.forwarded.load(Ordering::Relaxed),
            lost: self.counters.lost.load(Ordering::Relaxed),
            overflowed: self.counters.overflowed.load(Ordering::Relaxed),
        }
    }
}

/// One direction of one client's path: impairs packets and hands them to a sender task.
struct Lane {
    config: RelayConfig,
    /// Seeded: good enough for loss and jitter draws.
    rng: SplitMix64,
    busy_until: Instant,
    last_delivery: Instant,
    out: mpsc::UnboundedSender<(Instant, Vec<u8>)>,
    counters: Arc<Counters>,
}

impl Lane {
    fn new(
        config: RelayConfig,
        seed: u64,
        socket: Arc<UdpSocket>,
        dest: SocketAddr,
        counters: Arc<Counters>,
    ) -> Lane {
        let (out, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
        let sent = counters.clone();
        tokio::spawn(async move {
            while let Some((at, packet)) = rx.recv().await {
                tokio::time::sleep_until(at).await;
                if socket.send_to(&packet, dest).await.is_ok() {
                    sent.forwarded.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let now = Instant::now();
        Lane {
            config,
            rng: SplitMix64::new(seed),
            busy_until: now,
            last_delivery: now,
            out,
            counters,
        }
    }

    fn push(&mut self, packet: Vec<u8>) {
        if self.rng.unit() < self.config.loss_rate {
            self.counters.lost.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let now = Instant::now();
        let mut departure = now;
        if let Some(rate) = self.config.rate_mbps {
            let bytes_per_sec = rate * 1e6 / 8.0;
            let start = self.busy_until.max(now);
            let queued = start.duration_since(now).as_secs_f64() * bytes_per_sec;
            if queued > self.config.queue_bytes as f64 {
                self.counters.overflowed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            departure = start + Duration::from_secs_f64(packet.len() as f64 / bytes_per_sec);
            self.busy_until = departure;
        }
        let jitter = self.config.jitter.mul_f64(self.rng.unit());
        let delivery = (departure + self.config.delay + jitter).max(self.last_delivery);
        self.last_delivery = delivery;
        // The sender task only ends when the relay is dropped.
        let _ = self.out.send((delivery, packet));
    }
}

struct AbortOnDrop(Vec<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

async fn run_front(
    front: Arc<UdpSocket>,
    upstream: SocketAddr,
    config: RelayConfig,
    counters: Arc<Counters>,
) {
    let mut clients: HashMap<SocketAddr, Lane> = HashMap::new();
    // The return paths end with the relay: this guard aborts them when the front task is dropped.
    let mut return_paths = AbortOnDrop(Vec::new());
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut next_seed = config.seed;
    loop {
        let Ok((n, client)) = front.recv_from(&mut buf).await else {
            continue;
        };
        let lane = match clients.entry(client) {
            Entry::Occupied(lane) => lane.into_mut(),
            Entry::Vacant(slot) => {
                let bind: SocketAddr = if upstream.is_ipv4() {
                    SocketAddr::from(([0, 0, 0, 0], 0))
                } else {
                    SocketAddr::from(([0u16; 8], 0))
                };
                let Ok(back) = UdpSocket::bind(bind).await else {
                    tracing::warn!(%client, "relay cannot open an upstream socket; dropping packet");
                    continue;
                };
                let back = Arc::new(back);
                next_seed = next_seed.wrapping_add(2);
                let up = Lane::new(config, next_seed, back.clone(), upstream, counters.clone());
                let mut down = Lane::new(
                    config,
                    next_seed.wrapping_add(1),
                    front.clone(),
                    client,
                    counters.clone(),
                );
                return_paths.0.push(tokio::spawn(async move {
                    let mut buf = vec![0u8; MAX_DATAGRAM];
                    while let Ok(n) = back.recv(&mut buf).await {
                        down.push(buf[..n].to_vec());
                    }
                }));
                slot.insert(up)
            }
        };
        lane.push(buf[..n].to_vec());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_and_jitter_draws_are_uniform_enough_and_seeded() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        let draws: Vec<f64> = (0..10_000).map(|_| a.unit()).collect();
        assert!(draws.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
        assert_eq!(b.unit(), draws[0]);
    }

    #[tokio::test]
    async fn refuses_bad_settings() {
        let any: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
        for config in [
            RelayConfig {
                loss_rate: 1.0,
                ..RelayConfig::default()
            },
            RelayConfig {
                rate_mbps: Some(0.0),
                ..RelayConfig::default()
            },
        ] {
            assert!(matches!(
                Relay::start(any, any, config).await,
                Err(RelayError::Config(_))
            ));
        }
    }

    #[tokio::test]
    async fn forwards_both_ways() {
        let server = UdpSocket::bind("127.0.0.1:0").await.expect("binds");
        let relay = Relay::start(
            "127.0.0.1:0".parse().expect("addr"),
            server.local_addr().expect("addr"),
            RelayConfig::default(),
        )
        .await
        .expect("starts");
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("binds");
        client
            .send_to(b"ping", relay.local_addr())
            .await
            .expect("sends");
        let mut buf = [0u8; 16];
        let (n, from) = server.recv_from(&mut buf).await.expect("receives");
        assert_eq!(&buf[..n], b"ping");
        server.send_to(b"pong", from).await.expect("sends");
        let (n, _) = client.recv_from(&mut buf).await.expect("receives");
        assert_eq!(&buf[..n], b"pong");
        assert_eq!(relay.stats().lost, 0);
    }
}
